#!/usr/bin/env bash
# Stops the nodes run.sh started: SIGTERM (a node closes its sessions and exits),
# then SIGKILL for any still running after MULTI_ZONE_STOP_WAIT_S seconds [10].
#
#   examples/multi-zone/stop.sh [STATE_DIR]
#
# STATE_DIR: where run.sh wrote the pid files [$MULTI_ZONE_STATE_DIR, else
# ${TMPDIR:-/tmp}/mediamesh-multi-zone]. Only processes whose command line is that
# node's (--node-id NODE) are signalled, so a stale pid file cannot hit another
# process that reused the pid.
set -euo pipefail

STATE=${1:-${MULTI_ZONE_STATE_DIR:-${TMPDIR:-/tmp}/mediamesh-multi-zone}}
WAIT_S=${MULTI_ZONE_STOP_WAIT_S:-10}
[[ "$WAIT_S" =~ ^[0-9]+$ ]] || { echo "stop.sh: MULTI_ZONE_STOP_WAIT_S=$WAIT_S is not a number" >&2; exit 1; }
[[ -d "$STATE" ]] || { echo "stop.sh: no state directory $STATE: nothing to stop"; exit 0; }

NODES=(eu-gw eu-m1 eu-m2 ap-gw ap-m1 ap-m2)

# The command line of a live process, arguments separated by spaces.
cmdline() {
  if [[ -r "/proc/$1/cmdline" ]]; then
    tr '\0' ' ' <"/proc/$1/cmdline"
  else
    ps -p "$1" -o args= 2>/dev/null || true
  fi
}

# The pid of node $1 if it runs, else nothing.
live_pid() {
  local pidf=$STATE/$1.pid pid
  [[ -s "$pidf" ]] || return 0
  pid=$(cat "$pidf")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  [[ " $(cmdline "$pid") " == *" --node-id $1 "* ]] || return 0
  echo "$pid"
}

declare -A PID=()
for node in "${NODES[@]}"; do
  pid=$(live_pid "$node")
  if [[ -n "$pid" ]]; then
    PID[$node]=$pid
    kill -TERM "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/$node.pid.tmp"
done
if [[ ${#PID[@]} -eq 0 ]]; then
  echo "stop.sh: no node of $STATE is running"
  exit 0
fi
echo "stop.sh: sent SIGTERM to ${!PID[*]}"

deadline=$((SECONDS + WAIT_S))
while :; do
  left=()
  for node in "${!PID[@]}"; do
    [[ -n "$(live_pid "$node")" ]] && left+=("$node")
  done
  [[ ${#left[@]} -eq 0 ]] && break
  if ((SECONDS >= deadline)); then
    echo "stop.sh: ${left[*]} still running after ${WAIT_S} s: SIGKILL" >&2
    for node in "${left[@]}"; do kill -KILL "${PID[$node]}" 2>/dev/null || true; done
    sleep 0.2
    break
  fi
  sleep 0.1
done
for node in "${!PID[@]}"; do
  if [[ -n "$(live_pid "$node")" ]]; then
    echo "stop.sh: node $node (pid ${PID[$node]}) did not exit" >&2
    exit 1
  fi
  rm -f "$STATE/$node.pid"
done
echo "stop.sh: stopped (logs stay in $STATE)"
