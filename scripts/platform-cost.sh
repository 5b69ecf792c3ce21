#!/bin/bash
# The platform's cost to ingest after a burst: 20 s of loadgen http --max, then 20 s at
# 80,000 events/s, server CPU per event over the second run; platform on and off, ABAB.
# Needs release binaries (cargo build --release -p playpulse -p loadgen).
B=${B:-$(cd "$(dirname "$0")/.." && pwd)/target/release}
PORT=${PORT:-18181}
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
for mode in on off on off; do
  D=$(mktemp -d)
  if [ $mode = on ]; then enabled=true; else enabled=false; fi
  PLAYPULSE_PLATFORM__ENABLED=$enabled PLAYPULSE_LOG__LEVEL=warn \
    $B/playpulse serve --listen 127.0.0.1:$PORT --data-dir $D/data > $D/log 2>&1 &
  pid=$!
  until curl -sf http://127.0.0.1:$PORT/readyz >/dev/null; do sleep 0.2; done
  $B/loadgen http --url http://127.0.0.1:$PORT --max --duration 20s --batch 1000 --connections 8 \
    --quiet --report $D/burst.json > /dev/null 2>&1
  before=$(cpu $pid)
  $B/loadgen http --url http://127.0.0.1:$PORT --rate 80000 --duration 20s --batch 1000 --connections 8 \
    --quiet --report $D/steady.json > /dev/null 2>&1
  after=$(cpu $pid)
  kill $pid; wait $pid 2>/dev/null
  python3 - "$mode" "$before" "$after" "$D/burst.json" "$D/steady.json" <<'PY'
import json, sys
mode, before, after, burst, steady = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
burst, steady = json.load(open(burst)), json.load(open(steady))
acked = steady["totals"]["events_acked"]
ticks = float(__import__("os").sysconf("SC_CLK_TCK"))
print(f"platform {mode}: --max {burst['events_per_sec']:.0f} events/s; then 80k: {acked} acked, "
      f"server {(after - before) / ticks / acked * 1e6:.2f} us/event")
PY
  rm -rf $D
done
