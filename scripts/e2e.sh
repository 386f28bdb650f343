#!/usr/bin/env bash
# End-to-end tests with real WebRTC clients (Chromium + whip-whep, demo pages,
# aiortc, GStreamer) against target/debug/mediamesh (or $MEDIAMESH_BIN).
# Usage: scripts/e2e.sh [test file ...]   e.g. scripts/e2e.sh tests/e2e/test/aiortc.test.js
# Server logs and screenshots land in tests/e2e/logs/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/install-test-deps.sh"

export MEDIAMESH_BIN="${MEDIAMESH_BIN:-$ROOT/target/debug/mediamesh}"
if [ ! -x "$MEDIAMESH_BIN" ]; then
  echo "e2e: $MEDIAMESH_BIN not found; build it first (cargo build) or set MEDIAMESH_BIN" >&2
  exit 1
fi

files=()
for f in "$@"; do files+=("$(cd "$(dirname "$f")" && pwd)/$(basename "$f")"); done
cd "$ROOT/tests/e2e"
if [ "${#files[@]}" -eq 0 ]; then files=(test/*.test.js); fi
# One test file at a time: each starts its own server and Chromium on a 2-core machine.
exec node --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
