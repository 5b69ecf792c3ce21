#!/bin/bash
# Side by side: the same binary with auth off and on, ABAB, 10 s of loadgen http --max each.
B=${B:-$(cd "$(dirname "$0")/.." && pwd)/target/release}
run() { # $1 = off|on, $2 = round
  D=/tmp/ac-$1-$2; rm -rf $D; mkdir -p $D
  ENV=""
  KEY=""
  if [ "$1" = on ]; then
    KEY=$($B/playpulse keys create --role ingest --name bench --data-dir $D 2>/dev/null)
    ENV="PLAYPULSE_AUTH__ENABLED=true"
  fi
  env $ENV PLAYPULSE_LOG__LEVEL=warn $B/playpulse serve --listen 127.0.0.1:18090 --data-dir $D > $D/log 2>&1 &
  PID=$!
  for i in $(seq 50); do curl -sf localhost:18090/readyz >/dev/null && break; sleep 0.2; done
  T0=$(awk '{print $14+$15}' /proc/$PID/stat)
  PLAYPULSE_API_KEY=$KEY $B/loadgen http --url http://127.0.0.1:18090 --max --duration 10s --batch 1000 --connections 8 --quiet --report $D/r.json > /dev/null 2>&1
  T1=$(awk '{print $14+$15}' /proc/$PID/stat)
  kill $PID; wait $PID 2>/dev/null
  python3 - "$1" "$2" "$T0" "$T1" "$D/r.json" <<'PY'
import json, sys, os
mode, rnd, t0, t1, path = sys.argv[1:]
r = json.load(open(path))
ticks = os.sysconf('SC_CLK_TCK')
cpu = (int(t1) - int(t0)) / ticks
acked = r['totals']['events_acked']
print(f"auth {mode} round {rnd}: {r['events_per_sec']:.0f} events/s, server {cpu*1e6/acked:.2f} us CPU/event, {cpu/r['wall_seconds']:.2f} cores, p99 {r['latency_ms']['p99']:.1f} ms, errors {r['error_count']}")
PY
}
for round in 1 2; do run off $round; run on $round; done
