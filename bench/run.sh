#!/usr/bin/env bash
# Runs one mediamesh-bench scenario against a fresh release build of MediaMesh
# and appends its rows to BENCHMARKS.md (command, commit, machine, date).
#
#   bench/run.sh fanout --subscribers 10,50,100,200 --step-secs 10
#   bench/run.sh rooms --rooms 4 --participants 4
#   bench/run.sh join --cycles 1000
#
# On a machine with two or more cores the server is pinned to core 0 and the
# generator to core 1 (taskset), so neither steals the other's CPU and the
# server's cost per packet is its own. Set NO_RECORD=1 to skip BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,12p' "$0"; exit 2; }

cargo build --release --locked -p mediamesh -p mediamesh-bench >&2
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
uport() { python3 -c 'import socket; s=socket.socket(type=socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(port); MEDIA=$(uport)
SECRET="bench-$RANDOM$RANDOM"
pin_server=(); pin_bench=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  pin_server=(taskset -c 0); pin_bench=(taskset -c 1)
fi
LOG=$(mktemp /tmp/mediamesh-bench-server.XXXXXX.log)
"${pin_server[@]}" target/release/mediamesh --http-listen "127.0.0.1:$HTTP" \
  --media-listen "127.0.0.1:$MEDIA" --rtmp-listen off --sip-listen off --secret "$SECRET" 2>"$LOG" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$HTTP/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

OUT=$(mktemp /tmp/mediamesh-bench.XXXXXX.json)
"${pin_bench[@]}" target/release/mediamesh-bench --url "http://127.0.0.1:$HTTP" --secret "$SECRET" \
  --server-pid "$SERVER" --json "$@" > "$OUT"

python3 - "$OUT" "$*" <<'PY'
import json, subprocess, sys, platform, datetime, os
reports = json.load(open(sys.argv[1]))
args = sys.argv[2]
def f(v, d=1):
    return "-" if v is None else f"{v:.{d}f}"
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!BENCHMARKS.md"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
machine = f"{os.cpu_count()} x {cpu}, Linux {platform.release()}"
date = datetime.date.today().isoformat()
rows = []
for r in reports:
    lat, first = r["latency_ms"], r["first_packet_ms"]
    rows.append(
        f"| {date} | {commit}{'+' if dirty else ''} | {r['scenario']} {r['step']} | {r['sessions_up']} | {f(r['loss_pct'], 2)} | "
        f"{f(lat['p50'], 2)} / {f(lat['p99'], 2)} / {f(lat['p999'], 2)} | "
        f"{f(first['p50']) if first['count'] else '-'} / {f(first['p99']) if first['count'] else '-'} | {f(r['egress_mbps'])} | "
        f"{f(r['server_cpu_pct'])} | {f(r['server_cpu_us_per_packet'])} | {f(r.get('server_rss_start_mib'))} -> {f(r['server_rss_mib'])} | "
        f"{f(r['bench_cpu_pct'])} | {f(r['bench_cpu_us_per_packet'])} |")
print("\n".join(rows))
if os.environ.get("NO_RECORD") != "1":
    text = open("BENCHMARKS.md").read()
    marker = "<!-- bench/run.sh inserts runs below, newest first -->\n"
    if marker not in text:
        sys.exit("BENCHMARKS.md lacks the bench/run.sh marker")
    header = ("| date | commit | step | sessions up | loss % | latency ms p50 / p99 / p99.9 | first packet ms p50 / p99 "
              "| egress Mbps | server CPU % | server µs/packet | server RSS MiB | generator CPU % | generator µs/packet |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    entry = f"\n`bench/run.sh {args}` on {machine}, {date}:\n\n" + header + "\n".join(rows) + "\n"
    head, tail = text.split(marker, 1)
    open("BENCHMARKS.md", "w").write(head + marker + entry + tail)
PY
