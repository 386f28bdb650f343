#!/usr/bin/env bash
# What the cluster costs: the same fanout load through 0, 1 and 2 relay hops,
# and the idle cost of a node. Release builds, nodes on 127.0.0.x, the nodes
# pinned to core 0 and the generator to core 1 (on 2+ cores).
#
#   bench/cluster.sh [PUBLISHERS] [STEP_SECS]     default: 100 publishers (200 tracks), 10 s
#
# Publishers (audio + video each) publish by WHIP to node A; one WHEP subscriber
# per publisher plays from node A (0 hops), node B linked to A (1 hop), or node C
# linked to B only (2 hops: A -> B -> C). The generator stamps each packet with its
# send time, so the latency is one-way and on one clock. CPU per packet is read
# from /proc for each node. Prints a Markdown table; records nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
P=${1:-100}
STEP=${2:-10}

cargo build --release --locked -p mediamesh -p mediamesh-bench >&2
pin_node=(); pin_bench=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  pin_node=(taskset -c 0); pin_bench=(taskset -c 1)
fi
port() { python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"; }
SECRET="bench-$RANDOM$RANDOM"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# start_node NAME HOST [extra args...]: prints "pid http_port"
start_node() {
  local name=$1 host=$2; shift 2
  local http; http=$(port "$host")
  "${pin_node[@]}" target/release/mediamesh --node-id "$name" --http-listen "$host:$http" \
    --media-listen "$host:0" --rtmp-listen off --sip-listen off --secret "$SECRET" "$@" 2>"/tmp/mediamesh-cluster-bench-$name.log" &
  local pid=$!
  for _ in $(seq 100); do
    curl -sf "http://$host:$http/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "$pid $http"
}

wait_nodes() { # wait_nodes HOST HTTP COUNT
  for _ in $(seq 100); do
    n=$(curl -sf -H "Authorization: Bearer $SECRET" "http://$1:$2/api/node" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["cluster"]["nodes"]))' 2>/dev/null || echo 0)
    [ "$n" -ge "$3" ] && return 0
    sleep 0.1
  done
  echo "cluster did not form" >&2; exit 1
}

AP=$(port 127.0.0.1)
read -r A AH < <(start_node a 127.0.0.1 --cluster-listen "tcp/127.0.0.1:$AP"); PIDS+=("$A")
BP=$(port 127.0.0.2)
read -r B BH < <(start_node b 127.0.0.2 --cluster-listen "tcp/127.0.0.2:$BP" --cluster-connect "tcp/127.0.0.1:$AP"); PIDS+=("$B")
read -r C CH < <(start_node c 127.0.0.3 --cluster-connect "tcp/127.0.0.2:$BP"); PIDS+=("$C")
wait_nodes 127.0.0.3 "$CH" 3

idle() { # idle PID SECS: % of one core over SECS
  local t0 t1; t0=$(awk '{print $14+$15}' "/proc/$1/stat"); sleep "$2"; t1=$(awk '{print $14+$15}' "/proc/$1/stat")
  python3 -c "import os,sys; print(f'{(int(sys.argv[2])-int(sys.argv[1]))/os.sysconf(\"SC_CLK_TCK\")/int(sys.argv[3])*100:.2f}')" "$t0" "$t1" "$2"
}
echo "idle (3 linked nodes, no sessions, 10 s): a $(idle "$A" 10)%  b $(idle "$B" 10)%  c $(idle "$C" 10)% of a core; threads: $(ls /proc/"$A"/task | wc -l)" >&2

run() { # run LABEL WHEP_HOST WHEP_HTTP PID...
  local label=$1 host=$2 http=$3; shift 3
  local out; out=$(mktemp)
  local pids=("$@")
  local t0=(); for p in "${pids[@]}"; do t0+=("$(awk '{print $14+$15}' "/proc/$p/stat")"); done
  "${pin_bench[@]}" target/release/mediamesh-bench --url "http://127.0.0.1:$AH" \
    --whep-url "http://$host:$http/whep/endpoint" --secret "$SECRET" --json --server-pid "${pids[-1]}" \
    fanout --publishers "$P" --subscribers 1 --step-secs "$STEP" > "$out"
  local t1=(); for p in "${pids[@]}"; do t1+=("$(awk '{print $14+$15}' "/proc/$p/stat")"); done
  python3 - "$out" "$label" "${t0[*]}" "${t1[*]}" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))[-1]
t0 = [int(x) for x in sys.argv[3].split()]
t1 = [int(x) for x in sys.argv[4].split()]
tck = os.sysconf("SC_CLK_TCK")
per_node = [(b - a) / tck for a, b in zip(t0, t1)]
cpu = sum(per_node)
split = " + ".join(f"{x:.1f}" for x in per_node)
recv = r.get("received") or r.get("packets_received") or 0
lat = r.get("latency_ms") or {}
def g(k):
    v = lat.get(k) if isinstance(lat, dict) else None
    return "-" if v is None else f"{v:.2f}"
last = r.get("server_cpu_us_per_packet")
last = "-" if last is None else f"{last:.1f}"
relay = f"{per_node[1] / recv * 1e6:.1f}" if len(per_node) == 3 and recv else "-"
print(f"| {sys.argv[2]} | {r.get('sessions_up', '-')} | {recv} | {r.get('loss_pct', 0):.2f} | {g('p50')} | {g('p99')} | {split} | {last} | {relay} |")
PY
  rm -f "$out"
}

echo "| path | sessions | packets received | loss % | one-way p50 ms | p99 ms | CPU s per node, a + b + c (whole run, with session setup) | viewers' node µs CPU per packet (measured step) | relay b µs CPU per relayed packet (whole run) |"
echo "|---|---|---|---|---|---|---|---|---|"
run "A (0 hops)" 127.0.0.1 "$AH" "$A"
run "A -> B (1 hop)" 127.0.0.2 "$BH" "$A" "$B"
run "A -> B -> C (2 hops)" 127.0.0.3 "$CH" "$A" "$B" "$C"
