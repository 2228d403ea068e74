#!/usr/bin/env bash
# The SQL data-source cost of BENCHMARKS.md ("Issue 16: publishing through a SQL data source"):
# needs the machine's PostgreSQL (postgres@127.0.0.1:5432, trust) and MariaDB (root@127.0.0.1:3306) and
# a release build. NS is default, js, pg or maria.
# run.sh NS OUT.json: fresh tables, fresh server on CPU 0, bench on CPU 1.
set -euo pipefail
NS=$1; OUT=$2; BIN=${BIN:-"$(dirname "$0")/../../target/release"}
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS herald_bench WITH (FORCE)" -c "CREATE DATABASE herald_bench" >/dev/null
psql -h 127.0.0.1 -U postgres -d herald_bench -qc "CREATE TABLE messages (channel text NOT NULL, id text NOT NULL, body jsonb NOT NULL, sender text, PRIMARY KEY (channel, id))"
mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS herald_bench; CREATE DATABASE herald_bench; CREATE TABLE herald_bench.messages (channel varchar(200) NOT NULL, id varchar(64) NOT NULL, body json NOT NULL, PRIMARY KEY (channel, id))"
rm -rf /tmp/herald-ds-data
taskset -c 0 $BIN/herald serve --config "$(dirname "$0")/herald.toml" > /tmp/ds-herald.log 2>&1 &
SPID=$!
for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/18080) 2>/dev/null && break; sleep 0.1; done
taskset -c 1 $BIN/herald-bench --ws 127.0.0.1:18080 --api-key bench-key --namespace $NS --server-pid $SPID --json $OUT \
  fanout --subscribers 10 --http-publishers 8 --secs 8 > $OUT.txt 2>&1 || true
kill $SPID; wait $SPID 2>/dev/null || true
psql -h 127.0.0.1 -U postgres -d herald_bench -Atc "SELECT count(*) FROM messages" > $OUT.pgrows
mariadb -h 127.0.0.1 -u root -N -e "SELECT count(*) FROM herald_bench.messages" > $OUT.myrows
