#!/usr/bin/env bash
# Runs the same herald-bench scenarios against Herald, nats-server (NATS over WebSocket) and
# Sockudo (Pusher protocol), one server after another on this machine, then prints the medians
# side by side with Herald/peer ratios (the tables in BENCHMARKS.md).
#
#   bench/compare.sh [full|smoke]
#
# Environment: RUNS (repetitions per case, default 3; smoke 1), OUT (results folder),
# SKIP_SOCKUDO=1, SOCKUDO_WAIT (seconds to wait for `cargo install sockudo`, default 3600),
# CASES (space-separated subset of case names), SERVERS (subset of "herald nats sockudo").
# Peers are installed at run time when missing and never committed. Loopback only; every run is
# bounded in time and count.
set -euo pipefail

MODE=${1:-full}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RUNS=${RUNS:-$([ "$MODE" = smoke ] && echo 1 || echo 3)}
OUT=${OUT:-$TARGET_DIR/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
SOCKUDO_WAIT=${SOCKUDO_WAIT:-3600}
SERVERS=${SERVERS:-herald nats sockudo}
want() { [[ " $SERVERS " == *" $1 "* ]]; }
want sockudo || SKIP_SOCKUDO=1
WORK=$(mktemp -d /tmp/herald-compare.XXXXXX)
HERALD_PORT=18080
NATS_PORT=14222
NATS_WS_PORT=19222
SOCKUDO_PORT=16001
mkdir -p "$OUT"
LOG="$OUT/log.txt"
PIDS=()
FAILED=0

log() { echo "== $*" | tee -a "$LOG" >&2; }

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() {
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "port $1 did not open" >&2
    return 1
}

stop_server() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    # Let TIME_WAIT sockets and memory settle between servers.
    sleep 2
}

# --- peers: installed at run time, never committed ------------------------------------------
SOCKUDO_BUILD_PID=""
if ! command -v nats-server >/dev/null; then
    log "installing nats-server"
    apt-get install -y nats-server >>"$LOG" 2>&1 || log "nats-server install failed"
fi
if [ -z "${SKIP_SOCKUDO:-}" ] && ! command -v sockudo >/dev/null; then
    if [ "$MODE" = smoke ]; then
        log "sockudo not installed; smoke mode skips it"
        SKIP_SOCKUDO=1
    else
        command -v protoc >/dev/null || apt-get install -y protobuf-compiler >>"$LOG" 2>&1
        # A long release build on 2 cores: start it now and measure Herald meanwhile.
        log "building sockudo in the background (cargo install sockudo --locked)"
        (cd "$WORK" && CARGO_TARGET_DIR="$WORK/sockudo-target" nice -n 10 cargo install sockudo --locked -j 1 \
            >"$OUT/sockudo-install.log" 2>&1) &
        SOCKUDO_BUILD_PID=$!
    fi
fi

# --- Herald and the bench, release ------------------------------------------------------------
# Smoke runs check the tool and delivery, not speed: a debug build is enough and much quicker.
PROFILE=$([ "$MODE" = smoke ] && echo debug || echo release)
log "building herald and herald-bench ($PROFILE)"
(cd "$ROOT" && cargo build $([ "$PROFILE" = release ] && echo --release) -p herald -p herald-bench) >>"$LOG" 2>&1
HERALD="$TARGET_DIR/$PROFILE/herald"
BENCH="$TARGET_DIR/$PROFILE/herald-bench"
SMOKE=()
[ "$MODE" = smoke ] && SMOKE=(--smoke)

{
    echo "date: $(date -u +%FT%TZ)"
    echo "kernel: $(uname -sr)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
    echo "memory: $(free -m | awk '/Mem:/ {print $2}') MiB"
    echo "nofile limit: $(ulimit -n)"
    echo "herald commit: $(git -C "$ROOT" rev-parse --short HEAD)"
    echo "nats-server: $(nats-server --version 2>/dev/null || echo missing)"
    echo "mode: $MODE, runs per case: $RUNS"
} >"$OUT/machine.txt"

# run_case SERVER CASE ARGS...: RUNS repetitions against the running server ($SPID), one JSON
# report each.
run_case() {
    local server=$1 case=$2
    shift 2
    if [ -n "${CASES:-}" ] && ! [[ " $CASES " == *" $case "* ]]; then return 0; fi
    for i in $(seq 1 "$RUNS"); do
        # Memory per idle connection needs a fresh server: one that served earlier cases keeps
        # freed memory in its allocator and reuses it, which hides the per-connection cost.
        [ "$case" = "${FRESH_CASE:-}" ] && { stop_server "$SPID"; "start_$server"; }
        log "$server $case run $i: herald-bench $*"
        echo "load: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$LOG"
        timeout 300 "$BENCH" "${COMMON[@]}" "${SMOKE[@]}" --server-pid "$SPID" --label "$server/$case" \
            --json "$OUT/$server-$case-$i.json" "$@" 2>>"$LOG" | tee -a "$LOG" || {
            log "$server $case run $i failed or was incomplete"
            FAILED=1
        }
    done
}

# The cases, identical for every server except how publishers connect (Herald and Sockudo take
# HTTP publishes; NATS has no HTTP API, so it gets the same number of WebSocket publishers, each
# with one unacknowledged publish at a time like an HTTP publisher).
# Publishers wait for each acknowledgement, so "max rate" cases use many of them.
run_cases() {
    local server=$1
    "start_$server"
    FRESH_CASE=idle-10000
    run_case "$server" idle-10000 idle --connections 10000 --hold-secs 2
    run_case "$server" fanout-1x10000 fanout --subscribers 10000 --secs 10 "${PUB4[@]}"
    # Sockudo answers an HTTP publish only after its fan-out: give every server 32 publishers too.
    run_case "$server" fanout-1x10000-p32 fanout --subscribers 10000 --secs 10 "${PUB32[@]}"
    run_case "$server" channels-1000x10 channels --channels 1000 --subscribers 10 --wildcard-share 0 --batch 5 --secs 10 "${PUB32[@]}"
    run_case "$server" channels-1000x10-wild10 channels --channels 1000 --subscribers 10 --wildcard-share 0.1 --batch 5 --secs 10 "${PUB32[@]}"
    # Many small channels, one event per publish: nothing coalesces, every delivery is a write
    # of its own (issue 13).
    run_case "$server" channels-1000x10-b1 channels --channels 1000 --subscribers 10 --wildcard-share 0 --secs 8 "${PUB16[@]}"
    run_case "$server" channels-10000x1-b1 channels --channels 10000 --subscribers 1 --wildcard-share 0 --secs 8 "${PUB16[@]}"
    run_case "$server" channels-100x1-http channels --channels 100 --subscribers 1 --wildcard-share 0 --secs 8 "${PUB16[@]}"
    # Publishing over the socket; Sockudo's client events need private channels: not compared.
    if [ ${#PUBWS16[@]} -gt 0 ]; then
        run_case "$server" channels-100x1-ws channels --channels 100 --subscribers 1 --wildcard-share 0 --secs 8 "${PUBWS16[@]}"
    fi
    # Herald's extensions (issue 17): the same fan-outs with Server-Sent Events subscribers, and
    # with the channel on every event; compare with fanout-1x10000 and channels-1000x10-wild10.
    if [ "$server" = herald ]; then
        run_case "$server" fanout-1x10000-sse fanout --subscribers 10000 --secs 10 "${PUB4[@]}" --transport sse
        run_case "$server" fanout-1x10000-chan fanout --subscribers 10000 --secs 10 "${PUB4[@]}" --with-channel
        run_case "$server" channels-1000x10-wild10-chan channels --channels 1000 --subscribers 10 --wildcard-share 0.1 --batch 5 --secs 10 "${PUB32[@]}" --with-channel
    fi
    run_case "$server" unloaded-1x1 fanout --subscribers 1 --rate 100 --secs 5 "${PUB4[@]}"
    run_case "$server" unloaded-1x100 fanout --subscribers 100 --rate 100 --secs 5 "${PUB4[@]}"
    run_case "$server" sweep-1x1000 sweep --subscribers 1000 --start-rate 50 --factor 2 --max-steps 12 --step-secs 3 --max-p99-ms 1000 "${PUB32[@]}"
    run_case "$server" connect-20000 connect --connections 20000 --concurrency 64 --secs 10
    stop_server "$SPID"
}

# --- Herald -------------------------------------------------------------------------------------
cat >"$WORK/herald.toml" <<TOML
listen = "127.0.0.1:$HERALD_PORT"
data_dir = "$WORK/herald-data"

[[namespaces]]
name = "default"

[[auth.api_keys]]
key = "bench-key"

[limits]
# Publishers here are the load generator: lift the per-connection WebSocket publish rate.
max_publishes_per_second = 1000000

[admission]
# Every client of a benchmark is one loopback address: lift the per-address bounds.
max_sockets_per_address = 1000000
max_connects_per_address_per_second = 1000000
max_http_publishes_per_address_per_second = 1000000
max_socket_publishes_per_address_per_second = 1000000
TOML
start_herald() {
    log "starting herald"
    "$HERALD" serve --config "$WORK/herald.toml" >>"$OUT/herald.log" 2>&1 &
    SPID=$!
    PIDS+=("$SPID")
    wait_port "$HERALD_PORT"
}
if want herald; then
    COMMON=(--protocol appsync --ws "127.0.0.1:$HERALD_PORT" --api-key bench-key)
    PUB4=(--http-publishers 4)
    PUB16=(--http-publishers 16)
    PUB32=(--http-publishers 32)
    PUBWS16=(--http-publishers 0 --ws-publishers 16 --ws-window 1)
    run_cases herald
fi

# --- nats-server (WebSocket listener) -----------------------------------------------------------
cat >"$WORK/nats.conf" <<CONF
listen: "127.0.0.1:$NATS_PORT"
websocket { listen: "127.0.0.1:$NATS_WS_PORT", no_tls: true }
CONF
start_nats() {
    log "starting nats-server"
    nats-server -c "$WORK/nats.conf" >>"$OUT/nats.log" 2>&1 &
    SPID=$!
    PIDS+=("$SPID")
    wait_port "$NATS_WS_PORT"
}
if want nats && command -v nats-server >/dev/null; then
    COMMON=(--protocol nats --ws "127.0.0.1:$NATS_WS_PORT" --namespace default)
    PUB4=(--http-publishers 0 --ws-publishers 4 --ws-window 1)
    PUB16=(--http-publishers 0 --ws-publishers 16 --ws-window 1)
    PUB32=(--http-publishers 0 --ws-publishers 32 --ws-window 1)
    PUBWS16=("${PUB16[@]}")
    run_cases nats
fi

# --- Sockudo (Pusher protocol) ------------------------------------------------------------------
start_sockudo() {
    mkdir -p "$WORK/sockudo-run"
    log "starting sockudo"
    # Run from an empty folder so no config file is read; lift the default app's limits.
    (cd "$WORK/sockudo-run" && exec env HOST=127.0.0.1 PORT=$SOCKUDO_PORT METRICS_HOST=127.0.0.1 METRICS_PORT=19601 \
        SOCKUDO_DEFAULT_APP_ID=app-id SOCKUDO_DEFAULT_APP_KEY=app-key SOCKUDO_DEFAULT_APP_SECRET=app-secret \
        SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=1000000 SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND=10000000 \
        SOCKUDO_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND=10000000 SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND=10000000 \
        RATE_LIMITER_ENABLED=false RUST_LOG=warn sockudo) >>"$OUT/sockudo.log" 2>&1 &
    SPID=$!
    PIDS+=("$SPID")
    wait_port "$SOCKUDO_PORT"
}
if [ -z "${SKIP_SOCKUDO:-}" ]; then
    if [ -n "$SOCKUDO_BUILD_PID" ]; then
        log "waiting up to ${SOCKUDO_WAIT}s for the sockudo build"
        waited=0
        while kill -0 "$SOCKUDO_BUILD_PID" 2>/dev/null && [ "$waited" -lt "$SOCKUDO_WAIT" ]; do
            sleep 10
            waited=$((waited + 10))
        done
    fi
    if command -v sockudo >/dev/null; then
        echo "sockudo: $(sockudo --version 2>/dev/null | head -1 || echo unknown)" >>"$OUT/machine.txt"
        COMMON=(--protocol pusher --ws "127.0.0.1:$SOCKUDO_PORT")
        PUB4=(--http-publishers 4)
        PUB16=(--http-publishers 16)
        PUB32=(--http-publishers 32)
        PUBWS16=()
        run_cases sockudo
    else
        log "sockudo is not installed (build still running or failed): no Sockudo figures this time"
    fi
fi

"$BENCH" summarize "$OUT" | tee "$OUT/summary.md"
log "results in $OUT"
# Smoke runs (CI) fail when any run failed or lost, duplicated or reordered an event.
if [ "$MODE" = smoke ] && [ "$FAILED" -ne 0 ]; then
    exit 1
fi
