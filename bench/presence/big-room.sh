#!/usr/bin/env bash
# 100,000 connections subscribed to one presence channel, then the time of presence reads
# (count only, and a first page of 1000 members) against the same reads with one member.
#   bench/presence/big-room.sh [N]       (BIN defaults to target/release; each process needs N open files and more)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$here/../../target/release}; N=${1:-100000}
ulimit -n "$(ulimit -Hn)"
rm -rf /tmp/herald-presence-big
"$BIN/herald" serve --config "$here/big.toml" > /tmp/herald-presence-big.log 2>&1 &
SPID=$!
trap 'kill $SPID 2>/dev/null; wait $SPID 2>/dev/null' EXIT
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/18093) 2>/dev/null && break; sleep 0.1; done
# herald-bench names channel 0 of namespace room /room/g0/c0.
URL="http://127.0.0.1:18093/event/presence?channel=/room/g0/c0"
reads() { # label: 50 count-only reads and 20 first pages, each timed by curl
  local c p
  c=$(for _ in $(seq 50); do curl -s -o /dev/null -w '%{time_total}\n' -H 'x-api-key: bench-key' "$URL&countOnly=true"; done | sort -n | awk '{a[NR]=$1} END {printf "p50 %.3f ms, max %.3f ms", a[int(NR/2)+1]*1000, a[NR]*1000}')
  p=$(for _ in $(seq 20); do curl -s -o /dev/null -w '%{time_total}\n' -H 'x-api-key: bench-key' "$URL&limit=1000"; done | sort -n | awk '{a[NR]=$1} END {printf "p50 %.3f ms, max %.3f ms", a[int(NR/2)+1]*1000, a[NR]*1000}')
  echo "$1: count $(curl -s -H 'x-api-key: bench-key' "$URL&countOnly=true"); countOnly $c; page of 1000 $p"
}
"$BIN/herald-bench" --ws 127.0.0.1:18093 --api-key bench-key --namespace room idle --connections 1 --subscribe --channels 1 --hold-secs 600 >/dev/null 2>&1 &
B1=$!
until curl -s -H 'x-api-key: bench-key' "$URL&countOnly=true" | grep -q '"count":1'; do sleep 0.2; done
reads "1 member"
kill $B1 2>/dev/null; wait $B1 2>/dev/null
"$BIN/herald-bench" --ws 127.0.0.1:18093 --api-key bench-key --namespace room --server-pid $SPID idle --connections "$N" --concurrency 256 --subscribe --channels 1 --hold-secs 600 > /tmp/herald-presence-big-bench.txt 2>&1 &
BN=$!
start=$(date +%s)
until curl -s -H 'x-api-key: bench-key' "$URL&countOnly=true" | grep -q "\"count\":$N"; do sleep 1; [ $(( $(date +%s) - start )) -gt 300 ] && { echo "members never reached $N"; break; }; done
reads "$N members"
echo "server RSS: $(grep VmRSS /proc/$SPID/status)"
kill $BN 2>/dev/null; wait $BN 2>/dev/null
