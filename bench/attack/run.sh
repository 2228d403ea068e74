#!/usr/bin/env bash
# One attack run of BENCHMARKS.md ("Under attack (issue 20)"), placement B: a fresh server and the
# bench on CPU 0, the attacker's threads on CPU 1, the victim at 400 events/s for 25 s.
#   bench/attack/run.sh OUT.json KIND [extra attack args]
# KIND: none, slow-body, socket-flood, connect-flood, non-reader, half-message, resume-storm,
# resume-storm-2k (16 KiB events by default; 2 KiB here), history-flood. A baseline run
# (`none`) saved as BASELINE=path makes the others report their ratio to it.
# BIN (default target/release) holds herald and herald-bench; CONF overrides the config.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$here/../../target/release}; CONF=${CONF:-$here/herald.toml}
OUT=$1; KIND=$2; shift 2
NS=default; case $KIND in resume-storm*|history-flood) NS=hist;; esac
K=$KIND; [ "$KIND" = resume-storm-2k ] && { K=resume-storm; set -- "$@" --big-bytes 2048; }
rm -rf /tmp/atk/data; mkdir -p /tmp/atk
taskset -c 0 "$BIN/herald" serve --config "$CONF" > /tmp/atk/herald.log 2>&1 &
SPID=$!
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/18091) 2>/dev/null && break; sleep 0.1; done
BASE=(); [ -n "${BASELINE:-}" ] && [ "$KIND" != none ] && BASE=(--baseline "$BASELINE")
taskset -c 0 "$BIN/herald-bench" --ws 127.0.0.1:18091 --api-key bench-key --namespace $NS --server-pid $SPID \
  --json "$OUT" attack --kind $K --secs 25 --rate 400 --attacker-cpus 1 "${BASE[@]}" "$@" > "$OUT.txt" 2>&1
kill $SPID; wait $SPID 2>/dev/null
tail -1 "$OUT.txt"
