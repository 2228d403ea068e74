#!/usr/bin/env bash
# A/B of the HTTP request path between two builds, interleaved, a fresh server per run, server on
# CPU 0 and herald-bench on CPU 1: `channels-100x1-http` (saturating HTTP publishes; server CPU
# per publish) and `unloaded-1x1`. BASE_BIN and HEAD_BIN are the two `herald` binaries; the
# bench is target/release/herald-bench. Usage: BASE_BIN=… HEAD_BIN=… OUT=dir bench/ab-http.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/target/ab-http-$(date -u +%Y%m%dT%H%M%SZ)}
: "${BASE_BIN:?the base herald binary}" "${HEAD_BIN:?the head herald binary}"
mkdir -p "$OUT"
cat > "$OUT/herald.toml" <<'T'
listen = "127.0.0.1:18090"
[[auth.api_keys]]
key = "bench-key"
[[namespaces]]
name = "default"
[limits]
max_publishes_per_second = 1000000
[admission]
max_http_publishes_per_address_per_second = 1000000
max_connects_per_address_per_second = 1000000
T
BENCH=$ROOT/target/release/herald-bench
for round in 1 2 3 4 5; do
  for side in base head; do
    if [ $side = base ]; then BIN=$BASE_BIN; else BIN=$HEAD_BIN; fi
    for kind in http unloaded; do
      data=$(mktemp -d)
      taskset -c 0 "$BIN" serve --config "$OUT/herald.toml" --data-dir "$data" >/dev/null 2>&1 &
      pid=$!
      for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:18090/healthz && break; sleep 0.1; done
      if [ $kind = http ]; then
        taskset -c 1 "$BENCH" --ws 127.0.0.1:18090 --api-key bench-key --json "$OUT/$kind-$side-$round.json" channels --channels 100 --subscribers 1 --wildcard-share 0 --secs 8 --http-publishers 16 --server-pid $pid >/dev/null 2>&1 || echo "run failed: $kind $side $round"
      else
        taskset -c 1 "$BENCH" --ws 127.0.0.1:18090 --api-key bench-key --json "$OUT/$kind-$side-$round.json" fanout --subscribers 1 --rate 100 --secs 5 --http-publishers 4 --server-pid $pid >/dev/null 2>&1 || echo "run failed: $kind $side $round"
      fi
      kill $pid; wait $pid 2>/dev/null || true; rm -rf "$data"
    done
  done
done
echo "$OUT"
python3 - "$OUT" <<'PY'
import json, statistics, sys
out = sys.argv[1]
for kind in ("http", "unloaded"):
    for side in ("base", "head"):
        runs = [json.load(open(f"{out}/{kind}-{side}-{r}.json"))["result"] for r in range(1, 6)]
        rate = statistics.median(r["published_per_s"] for r in runs)
        p50 = statistics.median(r["latency"]["p50_us"] for r in runs)
        p99 = statistics.median(r["latency"]["p99_us"] for r in runs)
        print(f"{kind} {side}: published/s {rate:.0f}, p50 {p50} us, p99 {p99} us (medians of 5)")
PY
