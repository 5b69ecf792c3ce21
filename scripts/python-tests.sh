#!/usr/bin/env bash
# The suites that run outside cargo, against a real `playpulse serve` this script starts (auth
# on, an admin key made for the tests): the Python client's (clients/python/tests) and the
# operator dashboard's in headless Chromium (playpulse/tests/browser). scripts/test-all.sh runs
# it after `cargo test`; alone it needs Debian's chromium and chromium-driver.
#
# Usage: scripts/python-tests.sh [PYTEST ARGS...]
#
# The venv lives in the cargo target directory, so a second run reuses it; the binaries are the
# debug ones `cargo test` already built.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --quiet -p playpulse -p loadgen
playpulse="$target/debug/playpulse"
loadgen="$target/debug/loadgen"

venv="$target/python-venv"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check './clients/python[test]' 'selenium==4.35.0'

output="$target/test-output"
mkdir -p "$output"
work="$(mktemp -d)"
service_pid=""
cleanup() {
    if [[ -n "$service_pid" ]]; then
        kill -TERM "$service_pid" 2>/dev/null || true
        wait "$service_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
key="$("$playpulse" keys create --role admin --name python-tests --data-dir "$work/data" 2>/dev/null)"
read_key="$("$playpulse" keys create --role read --name python-tests-read --data-dir "$work/data" 2>/dev/null)"
PLAYPULSE_AUTH__ENABLED=true "$playpulse" serve --listen "127.0.0.1:$port" --data-dir "$work/data" \
    >"$output/python-tests-serve.log" 2>&1 &
service_pid=$!
url="http://127.0.0.1:$port"
for _ in $(seq 1 120); do
    if curl -sf "$url/readyz" >/dev/null; then
        break
    fi
    if ! kill -0 "$service_pid" 2>/dev/null; then
        echo "playpulse serve exited during start-up; its log:" >&2
        cat "$output/python-tests-serve.log" >&2
        exit 1
    fi
    sleep 0.5
done
curl -sf "$url/readyz" >/dev/null || { echo "playpulse serve is not ready after 60 s" >&2; exit 1; }

export PLAYPULSE_URL="$url" PLAYPULSE_API_KEY="$key" PLAYPULSE_READ_KEY="$read_key" PLAYPULSE_BIN="$playpulse" \
    PLAYPULSE_LOADGEN="$loadgen" PLAYPULSE_TEST_OUTPUT="$output" SE_OFFLINE=true
# Arguments, if any, choose what pytest runs (a directory, `-k name`); by default both suites.
if (($#)); then
    "$venv/bin/pytest" -q -p no:cacheprovider "$@"
else
    "$venv/bin/pytest" -q -p no:cacheprovider clients/python/tests playpulse/tests/browser
fi
