#!/usr/bin/env bash
# One presence-cost run (BENCHMARKS.md, issue 15): a fresh server, then one bench scenario on a
# namespace without presence (plain) or with it (room).
#   bench/presence/run.sh OUT.json NAMESPACE connect|idle
# connect: 20,000 connect + subscribe (one of 1000 channels) + close, 64 at once.
# idle: 10,000 connections held open, each subscribed to one of 1000 channels; RSS per connection.
# BIN (default target/release) holds herald and herald-bench.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$here/../../target/release}
OUT=$1; NS=$2; KIND=$3
rm -rf /tmp/herald-presence-bench
"$BIN/herald" serve --config "$here/herald.toml" > /tmp/herald-presence-bench.log 2>&1 &
SPID=$!
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/18092) 2>/dev/null && break; sleep 0.1; done
case $KIND in
  connect) ARGS=(connect --connections 20000 --concurrency 64 --secs 30 --subscribe);;
  idle) ARGS=(idle --connections 10000 --subscribe);;
esac
"$BIN/herald-bench" --ws 127.0.0.1:18092 --api-key bench-key --namespace "$NS" --server-pid $SPID \
  --json "$OUT" "${ARGS[@]}" > "$OUT.txt" 2>&1
kill $SPID; wait $SPID 2>/dev/null
tail -3 "$OUT.txt"
