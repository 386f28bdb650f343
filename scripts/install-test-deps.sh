#!/usr/bin/env bash
# Installs what the end-to-end tests (tests/e2e) need, only what is missing.
# Idempotent and fast when everything is present (a few dpkg/stamp checks).
#   apt:  openssl (certificates for the cluster TLS test), Chromium, fonts, GStreamer with
#         webrtcbin and its Python bindings, ffmpeg (an RTMP publisher), SIPp and baresip
#         (SIP phones)
#   npm:  tests/e2e/node_modules from package-lock.json (npm ci), then
#         tests/e2e/build/atm0s-sdk.js: the atm0s SDK bundled for the browser (esbuild)
#         sdk/: npm ci + npm run build (our SDK; dist/mediamesh-sdk.js for the pages)
#         tests/e2e/build/react-app.js: the React hooks test app with react-dom and sdk/dist
#   pip:  tests/e2e/.venv with aiortc, aiohttp and mmdb-writer (tests/e2e/python/requirements.txt)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
E2E="$ROOT/tests/e2e"

log() { echo "install-test-deps: $*" >&2; }

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ---------------------------------------------------------------- apt
APT_PACKAGES=(
  openssl
  chromium fonts-liberation
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  gstreamer1.0-nice python3-gst-1.0 gir1.2-gst-plugins-bad-1.0
  ffmpeg
  sip-tester baresip-core
)

# python3 used for the venv: the first python3 on PATH if it can make venvs,
# else Debian's (which needs python3-venv).
VENV_PY="${E2E_VENV_PYTHON:-}"
if [ -z "$VENV_PY" ]; then
  if command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    VENV_PY="$(command -v python3)"
  else
    VENV_PY=/usr/bin/python3
    APT_PACKAGES+=(python3-venv)
  fi
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  sudo_if_needed apt-get update -qq
  sudo_if_needed apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "apt packages present"
fi

# ---------------------------------------------------------------- npm
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "node and npm are required (Node >= 20)"; exit 1
fi
lock_sum="$(sha256sum "$E2E/package-lock.json" | cut -d' ' -f1)"
stamp="$E2E/node_modules/.mediamesh-e2e-stamp"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_sum" ]; then
  log "node_modules up to date"
else
  log "npm ci in tests/e2e"
  (cd "$E2E" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" > "$stamp"
fi
# Rebuilt only when its inputs change (lib/bundle.js checks a hash; ~0.1 s either way).
node "$E2E/lib/bundle.js"

# ---------------------------------------------------------------- our SDK (sdk/)
# npm ci + npm run build in sdk/ (tsc -> dist, esbuild -> dist/mediamesh-sdk.js for the
# test pages), only when its sources, lock or build config changed since the last build.
SDK="$ROOT/sdk"
sdk_sum="$(cd "$SDK" && { find src scripts -type f | LC_ALL=C sort; echo package.json package-lock.json tsconfig.json; } \
  | xargs sha256sum | sha256sum | cut -d' ' -f1)"
sdk_stamp="$SDK/dist/.mediamesh-build-stamp"
if [ -f "$sdk_stamp" ] && [ "$(cat "$sdk_stamp")" = "$sdk_sum" ] && [ -f "$SDK/dist/mediamesh-sdk.js" ]; then
  log "sdk/dist up to date"
else
  lock_sdk="$(sha256sum "$SDK/package-lock.json" | cut -d' ' -f1)"
  nm_stamp="$SDK/node_modules/.mediamesh-sdk-stamp"
  if [ ! -f "$nm_stamp" ] || [ "$(cat "$nm_stamp")" != "$lock_sdk" ]; then
    log "npm ci in sdk"
    (cd "$SDK" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sdk" > "$nm_stamp"
  fi
  log "npm run build in sdk"
  (cd "$SDK" && npm run --silent build)
  echo "$sdk_sum" > "$sdk_stamp"
fi
# The React hooks test app (tests/e2e/react/app.jsx) with react-dom and sdk/dist: rebuilt
# only when its inputs change (lib/bundle-react.js checks a hash; ~0.1 s either way).
node "$E2E/lib/bundle-react.js"

# ---------------------------------------------------------------- python venv
req="$E2E/python/requirements.txt"
req_sum="$(sha256sum "$req" | cut -d' ' -f1)"
vstamp="$E2E/.venv/.mediamesh-e2e-stamp"
if [ -x "$E2E/.venv/bin/python" ] && [ -f "$vstamp" ] && [ "$(cat "$vstamp")" = "$req_sum" ] \
   && "$E2E/.venv/bin/python" -c 'import aiortc, aiohttp, mmdb_writer' >/dev/null 2>&1; then
  log "python venv up to date"
else
  log "creating tests/e2e/.venv with $VENV_PY"
  rm -rf "$E2E/.venv"
  "$VENV_PY" -m venv "$E2E/.venv"
  "$E2E/.venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$req_sum" > "$vstamp"
fi

# ---------------------------------------------------------------- sanity
/usr/bin/python3 -c "import gi; gi.require_version('Gst','1.0'); gi.require_version('GstWebRTC','1.0'); from gi.repository import Gst, GstWebRTC" \
  || { log "GStreamer Python bindings (gi) not importable by /usr/bin/python3"; exit 1; }
log "ok"
