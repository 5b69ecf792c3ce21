#!/bin/bash
# A cheap outside generator against `playpulse serve` on the embedded default: wrk posting 64
# pre-built bodies of loadgen's audience (1,000 events each), round robin. Prints events/s and
# the server's CPU per event (from /proc). Server settings come from the environment as usual
# (e.g. PLAYPULSE_EMBEDDED__LAYOUT=rows). Needs wrk (apt-get install wrk) and release binaries
# (cargo build --release -p playpulse -p loadgen).
#   bench/wrk/run.sh [DURATION=15s] [CONNECTIONS=8] [THREADS=2]
set -euo pipefail
DURATION=${1:-15s}
CONNECTIONS=${2:-8}
THREADS=${3:-2}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/target/release}
PORT=${PORT:-18095}
WORK=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$BIN/loadgen" bodies --out "$WORK/bodies" --count 64 --batch 1000 >/dev/null
PLAYPULSE_LOG__LEVEL=warn "$BIN/playpulse" serve --listen 127.0.0.1:$PORT \
  --data-dir "$WORK/data" >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
  sleep 0.1
done
ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
BEFORE=$(ticks)
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$ROOT/bench/wrk/post-bodies.lua" \
  "http://127.0.0.1:$PORT" -- "$WORK/bodies" 64 | tee "$WORK/wrk.out"
AFTER=$(ticks)
ACCEPTED=$(curl -s "http://127.0.0.1:$PORT/metrics" |
  awk '/^playpulse_events_accepted_total/ {sum += $2} END {printf "%d", sum}')
kill -INT $SERVER
wait $SERVER 2>/dev/null || true
SECONDS_RUN=${DURATION%s}  # DURATION in seconds: 15s
python3 - "$ACCEPTED" "$BEFORE" "$AFTER" "$SECONDS_RUN" <<'PY'
import os, sys
accepted, before, after, seconds = (float(v) for v in sys.argv[1:])
cpu = (after - before) / os.sysconf("SC_CLK_TCK")
print(f"wrk + playpulse: {accepted / seconds:,.0f} events/s accepted over {seconds:.0f} s; "
      f"server {cpu * 1e6 / max(accepted, 1):.2f} us CPU per event ({cpu / seconds:.2f} cores)")
# No bytes per event on disk: the 64 bodies reposted are the same events again and again.
PY
