#!/usr/bin/env bash
# The whole MediaMesh test suite: formatting, lints, unit, HTTP, process and
# end-to-end tests with real clients. Installs what the end-to-end tests need
# (apt, npm, pip) when it is missing. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "test dependencies (apt, npm, pip) when missing"
bash scripts/install-test-deps.sh   # also builds sdk/dist (npm ci + npm run build) when its sources changed

step "unit, HTTP API, process and cluster tests"
cargo test --workspace --locked

step "TypeScript SDK (sdk/): protocol unit tests"
(cd sdk && node --test test/)
# The server embeds web/demo/mediamesh-sdk.js (the SDK bundle of the demo room page):
# it must be what the current SDK sources build to, byte for byte.
sdk_bundle="$(mktemp)"
(cd sdk && npm run --silent bundle:web -- "$sdk_bundle")
if ! cmp -s "$sdk_bundle" web/demo/mediamesh-sdk.js; then
  rm -f "$sdk_bundle"
  echo "web/demo/mediamesh-sdk.js is stale: run (cd sdk && npm run bundle:web)" >&2
  exit 1
fi
rm -f "$sdk_bundle"

step "end-to-end tests (Chromium, aiortc, GStreamer, SDKs)"
cargo build -p mediamesh -p mediamesh-bench --locked   # the bench drives cluster-paths
MEDIAMESH_BIN="$PWD/target/debug/mediamesh" bash scripts/e2e.sh
