#!/usr/bin/env bash
# Starts a two-zone MediaMesh cluster on this machine: in each zone a gateway and
# two media nodes, every process on its own loopback address (Linux routes all of
# 127.0.0.0/8 to lo). See README.md next to this script.
#
#   examples/multi-zone/run.sh           generated app secret (mint tokens with it)
#   examples/multi-zone/run.sh --demo    development secret + demo tokens: the demo
#                                        pages work without pasting tokens
#   examples/multi-zone/stop.sh          stops every process
#
# Environment (all optional):
#   MEDIAMESH_BIN             the binary [target/release/mediamesh if present, else
#                             target/debug/mediamesh]
#   MEDIAMESH_SECRET          app secret [generated; with --demo the development one]
#   MEDIAMESH_CLUSTER_SECRET  cluster secret [generated]
#   MULTI_ZONE_STATE_DIR      logs, pid files, secrets [${TMPDIR:-/tmp}/mediamesh-multi-zone]
#   MULTI_ZONE_HTTP_PORT      HTTP port of every node [3000]
#   MULTI_ZONE_MEDIA_PORT     UDP media port of every node [3001]
#   MULTI_ZONE_CLUSTER_PORT   cluster (zenoh) port of the gateways [7447]
#   MULTI_ZONE_GEOIP          auto: a small test database when tests/e2e/.venv exists;
#                             off; or the path of a GeoIP City .mmdb file [auto]
#   MULTI_ZONE_WAIT_S         how long to wait for the cluster to form [30]
#   MULTI_ZONE_MEDIA_ARGS     more flags for every media node, e.g. "--max-sessions 2"
# Every other MEDIAMESH_* variable is cleared for the nodes: the script's flags are
# all they run with.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

die() { echo "run.sh: $*" >&2; exit 1; }

DEMO=false
for arg in "$@"; do
  case "$arg" in
    --demo) DEMO=true ;;
    -h|--help) sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done

command -v curl >/dev/null || die "needs curl"

# --- settings ---------------------------------------------------------------
if [[ -n "${MEDIAMESH_BIN:-}" ]]; then
  BIN=$MEDIAMESH_BIN
elif [[ -x "$REPO/target/release/mediamesh" ]]; then
  BIN=$REPO/target/release/mediamesh
else
  BIN=$REPO/target/debug/mediamesh
fi
[[ -x "$BIN" ]] || die "no mediamesh binary at $BIN (cargo build --release, or set MEDIAMESH_BIN)"
# A binary built before gateways existed would fail on the first gateway flag.
"$BIN" --help 2>/dev/null | grep -q -- '--gateway' \
  || die "$BIN has no --gateway flag (an old build?): rebuild it or set MEDIAMESH_BIN"

STATE=${MULTI_ZONE_STATE_DIR:-${TMPDIR:-/tmp}/mediamesh-multi-zone}
HTTP_PORT=${MULTI_ZONE_HTTP_PORT:-3000}
MEDIA_PORT=${MULTI_ZONE_MEDIA_PORT:-3001}
RTMP_PORT=${MULTI_ZONE_RTMP_PORT:-1935}
SIP_PORT=${MULTI_ZONE_SIP_PORT:-5060}
CLUSTER_PORT=${MULTI_ZONE_CLUSTER_PORT:-7447}
GEOIP=${MULTI_ZONE_GEOIP:-auto}
WAIT_S=${MULTI_ZONE_WAIT_S:-30}
read -r -a MEDIA_ARGS <<<"${MULTI_ZONE_MEDIA_ARGS:-}"
for n in "$HTTP_PORT" "$MEDIA_PORT" "$CLUSTER_PORT" "$WAIT_S"; do
  [[ "$n" =~ ^[0-9]+$ ]] || die "'$n' is not a number"
done

DEV_SECRET=mediamesh-insecure-dev-secret
random_hex() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
if [[ -n "${MEDIAMESH_SECRET:-}" ]]; then
  SECRET=$MEDIAMESH_SECRET
elif $DEMO; then
  SECRET=$DEV_SECRET
else
  SECRET=$(random_hex)
fi
CLUSTER_SECRET=${MEDIAMESH_CLUSTER_SECRET:-$(random_hex)}

# The nodes get their settings from the flags below (and the two secrets from
# the environment, which, unlike a command line, other users cannot read).
while read -r var; do unset "$var"; done < <(compgen -e | grep '^MEDIAMESH_' || true)

# --- state directory ----------------------------------------------------------
NODES=(eu-gw eu-m1 eu-m2 ap-gw ap-m1 ap-m2)
if [[ ! -d "$STATE" ]]; then mkdir -p "$(dirname "$STATE")" && mkdir -m 700 "$STATE"; fi
STATE=$(cd "$STATE" && pwd)
for node in "${NODES[@]}"; do
  pidf=$STATE/$node.pid
  if [[ -s "$pidf" ]] && kill -0 "$(cat "$pidf")" 2>/dev/null \
      && tr '\0' ' ' <"/proc/$(cat "$pidf")/cmdline" 2>/dev/null | grep -q -- "--node-id $node "; then
    die "node $node is already running (pid $(cat "$pidf")): $HERE/stop.sh${MULTI_ZONE_STATE_DIR:+ $STATE} first"
  fi
  rm -f "$pidf" "$STATE/$node.log"
done
# Each node writes its cluster credential file to its temp dir (named after the
# node id): one of our own keeps it apart from other clusters on this machine.
[[ -d "$STATE/tmp" ]] || mkdir -m 700 "$STATE/tmp"
umask 077
printf '%s\n' "$SECRET" >"$STATE/secret"
printf '%s\n' "$CLUSTER_SECRET" >"$STATE/cluster-secret"

GEOIP_DB=
case "$GEOIP" in
  off) ;;
  auto)
    py=$REPO/tests/e2e/.venv/bin/python
    if [[ -x "$py" ]]; then
      # Documentation networks stand for clients far away: 198.51.100.0/24 in Paris
      # (nearest zone: eu), 203.0.113.0/24 in Tokyo (nearest zone: ap). Loopback
      # clients (a browser on this machine) are not in it: they go to the zone of
      # the gateway they ask.
      "$py" "$REPO/tests/e2e/lib/make-geoip.py" "$STATE/geoip.mmdb" \
        198.51.100.0/24=48.86,2.35,FR 203.0.113.0/24=35.68,139.69,JP >/dev/null \
        || die "make-geoip.py failed (MULTI_ZONE_GEOIP=off runs without a GeoIP database)"
      GEOIP_DB=$STATE/geoip.mmdb
    fi
    ;;
  *) [[ -r "$GEOIP" ]] || die "MULTI_ZONE_GEOIP=$GEOIP: no such file"; GEOIP_DB=$GEOIP ;;
esac

# --- topology -----------------------------------------------------------------
declare -A ADDR=([eu-gw]=127.0.0.11 [eu-m1]=127.0.0.12 [eu-m2]=127.0.0.13
                 [ap-gw]=127.0.0.21 [ap-m1]=127.0.0.22 [ap-m2]=127.0.0.23)
declare -A LOCATION=([eu]="50.11,8.68" [ap]="1.35,103.82")   # Frankfurt, Singapore
link() { echo "tcp/${ADDR[$1]}:$CLUSTER_PORT"; }

# The flags of one node.
node_args() {
  local node=$1 zone=${1%%-*} addr=${ADDR[$1]}
  ARGS=(--node-id "$node" --zone "$zone" --zone-location "${LOCATION[$zone]}"
        --http-listen "$addr:$HTTP_PORT" --media-listen "$addr:$MEDIA_PORT"
        --cluster-role router --cluster-listen "tcp/$addr:$CLUSTER_PORT")
  # Links: no node is a cut vertex, so any one (a gateway included) can die
  # without splitting the cluster. In a zone, m1 links to the gateway, m2 to the
  # gateway and m1. Between the zones, two links: ap-gw - eu-gw and ap-m1 - eu-m1
  # (link weights follow their measured RTT). All nodes are routers: zenoh does not
  # relay between two peers of one router, so media nodes in peer mode would need a
  # link to every other peer.
  case "$node" in
    eu-gw) ;;
    ap-gw) ARGS+=(--cluster-connect "$(link eu-gw)") ;;
    eu-m1) ARGS+=(--cluster-connect "$(link eu-gw)") ;;
    ap-m1) ARGS+=(--cluster-connect "$(link ap-gw)" --cluster-connect "$(link eu-m1)") ;;
    *-m2) ARGS+=(--cluster-connect "$(link "$zone-gw")" --cluster-connect "$(link "$zone-m1")") ;;
  esac
  # RTMP ingest goes straight to a media node (rtmp://ADDR:1935/live/KEY).
  [[ "$node" == *-gw ]] || ARGS+=(--rtmp-listen "$addr:$RTMP_PORT" --sip-listen "$addr:$SIP_PORT")
  if [[ "$node" == *-gw ]]; then
    # A gateway serves the public API and places sessions. Proxies on this machine
    # are believed about the client's address (X-Forwarded-For), as a load
    # balancer would be.
    ARGS+=(--gateway true --trusted-proxies 127.0.0.1 --rtmp-listen off --sip-listen off)
    [[ -n "$GEOIP_DB" ]] && ARGS+=(--geoip-db "$GEOIP_DB")
  fi
  [[ "$node" == *-gw ]] || ARGS+=(${MEDIA_ARGS[@]+"${MEDIA_ARGS[@]}"})
  if $DEMO; then ARGS+=(--demo-tokens true); fi
  return 0
}

if command -v setsid >/dev/null; then DETACH=(setsid); else DETACH=(nohup); fi

# Starts one node in the background, in a session of its own (closing this
# terminal does not stop it); the node's pid goes to STATE/NODE.pid.
launch() {
  local node=$1
  node_args "$node"
  echo "$BIN ${ARGS[*]}" >"$STATE/$node.cmd"
  # The inner sh writes its own pid (which exec hands to the node), whether or not
  # setsid had to fork.
  # shellcheck disable=SC2016
  MEDIAMESH_SECRET=$SECRET MEDIAMESH_CLUSTER_SECRET=$CLUSTER_SECRET TMPDIR=$STATE/tmp \
    "${DETACH[@]}" sh -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
    "$STATE/$node.pid" "$BIN" "${ARGS[@]}" </dev/null >"$STATE/$node.log" 2>&1 &
}

log_tails() {
  local node
  for node in "${NODES[@]}"; do
    echo "--- $node ($(cat "$STATE/$node.cmd" 2>/dev/null || echo 'not started'))" >&2
    echo "--- last lines of $STATE/$node.log:" >&2
    tail -n 15 "$STATE/$node.log" 2>/dev/null | sed 's/^/    /' >&2 || true
  done
}

STARTED=false
on_exit() {
  local rc=$?
  if [[ $rc -ne 0 ]] && $STARTED; then
    echo "run.sh: stopping the nodes it started (logs stay in $STATE)" >&2
    "$HERE/stop.sh" "$STATE" >&2 || true
  fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM

STARTED=true
for node in "${NODES[@]}"; do launch "$node"; done

# --- wait until the cluster is formed -------------------------------------------
# What a node's GET /api/node says, as "NODES LOADS" (counts), parsed with sed:
# {"node":..,"cluster":{"nodes":["ap-gw",..],..},"loads":{"ap-m1":{"zone":..,..},..}}
node_status() {
  local json nodes loads
  json=$(curl -fsS --max-time 2 -H "Authorization: Bearer $SECRET" "http://${ADDR[$1]}:$HTTP_PORT/api/node" 2>/dev/null) \
    || { echo "? ?"; return; }
  nodes=$(sed -n 's/.*"nodes":\[\([^]]*\)\].*/\1/p' <<<"$json" | tr ',' '\n' | grep -c '"' || true)
  # Every load report carries "draining"; nothing else in the answer does.
  loads=$(grep -o '"draining":' <<<"$json" | wc -l | tr -d ' ')
  echo "${nodes:-0} ${loads:-0}"
}

# Ready: every node sees all 6, and every gateway has the load reports of the 4
# media nodes (which it places sessions by).
deadline=$((SECONDS + WAIT_S))
declare -A STATUS=()
while :; do
  for node in "${NODES[@]}"; do
    pidf=$STATE/$node.pid
    if [[ -s "$pidf" ]] && ! kill -0 "$(cat "$pidf")" 2>/dev/null; then
      echo "run.sh: node $node exited during startup" >&2
      log_tails
      exit 1
    fi
  done
  ready=true
  for node in "${NODES[@]}"; do
    STATUS[$node]=$(node_status "$node")
    case "$node" in
      *-gw) [[ "${STATUS[$node]}" == "6 4" ]] || ready=false ;;
      *) [[ "${STATUS[$node]% *}" == 6 ]] || ready=false ;;
    esac
  done
  $ready && break
  if ((SECONDS >= deadline)); then
    {
      echo "run.sh: the cluster did not form within ${WAIT_S} s (every node should see 6 nodes, every gateway 4 load reports):"
      for node in "${NODES[@]}"; do
        if [[ "${STATUS[$node]}" == "? ?" ]]; then
          echo "    $node does not answer GET /api/node"
        elif [[ "$node" == *-gw ]]; then
          echo "    $node sees ${STATUS[$node]% *} nodes and ${STATUS[$node]#* } load reports"
        else
          echo "    $node sees ${STATUS[$node]% *} nodes"
        fi
      done
    } >&2
    log_tails
    exit 1
  fi
  sleep 0.2
done

EU=http://${ADDR[eu-gw]}:$HTTP_PORT
AP=http://${ADDR[ap-gw]}:$HTTP_PORT
{
  echo "SECRET=$SECRET"
  echo "GATEWAY_EU=$EU"
  echo "GATEWAY_AP=$AP"
  echo "GEOIP_DB=$GEOIP_DB"
} >"$STATE/env"

cat <<EOF
MediaMesh multi-zone cluster is up: 6 nodes see each other, both gateways have the load reports of the 4 media nodes.

  zone eu (Frankfurt):  gateway $EU    media http://${ADDR[eu-m1]}:$HTTP_PORT, http://${ADDR[eu-m2]}:$HTTP_PORT
  zone ap (Singapore):  gateway $AP    media http://${ADDR[ap-m1]}:$HTTP_PORT, http://${ADDR[ap-m2]}:$HTTP_PORT

  demo pages:   $EU/demo/whip  $EU/demo/whep  $EU/demo/room
                $AP/demo/whip  $AP/demo/whep  $AP/demo/room
  app secret:   $SECRET
  cluster view: curl -H 'Authorization: Bearer $SECRET' $EU/api/node
EOF
if $DEMO; then
  echo "  tokens:       the demo pages fetch their own (--demo: GET /demo/token/* is on)"
else
  echo "  tokens:       curl -X POST $EU/token/whep -H 'Authorization: Bearer $SECRET' -d '{\"room\":\"demo\",\"ttl\":3600}'"
fi
if [[ -n "$GEOIP_DB" ]]; then
  echo "  GeoIP:        $GEOIP_DB (gateways believe X-Forwarded-For from 127.0.0.1)"
else
  echo "  GeoIP:        none (clients go to the zone of the gateway they ask)"
fi
cat <<EOF
  logs, pids:   $STATE
  stop:         $HERE/stop.sh${MULTI_ZONE_STATE_DIR:+ $STATE}
EOF
