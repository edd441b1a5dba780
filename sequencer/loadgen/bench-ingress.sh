#!/usr/bin/env bash
# Ingress benchmark: accepted eth_sendRawTransaction per second of our node
# (`rollup-node dev`: its own Postgres with fsync on, anvil L1, all roles)
# against anvil alone (`--no-mining`, in memory), with the same pre-signed
# loads from `loadgen`, in JSON-RPC batches and in single requests.
#
#   sequencer/loadgen/bench-ingress.sh          (or: make bench-ingress)
#
# Knobs (environment):
#   BENCH_ACCOUNTS          sending accounts                     (1000)
#   BENCH_TXS_PER_ACCOUNT   transfers per account and run        (30; our mempool
#                           holds at most 64 per sender: more gives "account limit exceeded")
#   BENCH_RUNS              measurements per target and mode     (3)
#   BENCH_WARMUP            unrecorded batched runs per target first (1)
#   BENCH_CONCURRENCY       requests in flight                   (64)
#   BENCH_BATCH_SIZE        transactions per JSON-RPC batch      (100)
#   BENCH_DRAIN_TIMEOUT     seconds to wait for our mempool to empty between runs (600)
#   BENCH_SKIP_BUILD=1      use the existing release binaries
#   BENCH_KEEP_TMP=1        keep the temporary folder (logs, results) and print its path
#
# After each measurement of our node the script waits until the block
# producer has emptied the mempool (`rollup_mempool_pending` 0), so anvil's
# run and the next one start with our node idle; the wait is printed as
# "drained in". Our node's CPU per accepted transaction (the rollup-node
# process, and Postgres: the postmaster with its children, live and
# reaped) is counted from the start of its measurement to the end of that
# wait, so the block producer's, checkpoint's and batcher's work for the
# load is included; loadgen reports its own CPU while sending. Likewise
# anvil's pool is mined empty (`anvil_mine`) after each of its measurements:
# left in the pool, its pending-nonce queries slow down with the pool's size
# (minutes at 100,000 transactions). Every run continues from the accounts'
# pending nonces. Our node also produces blocks and posts batches during its
# measurements (all roles run); anvil only pools. The node is given
# 10 + BENCH_ACCOUNTS funded accounts (loadgen skips accounts 0-9). Everything
# started is stopped on exit and the temporary folder removed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

CARGO="${CARGO:-cargo}"
ACCOUNTS="${BENCH_ACCOUNTS:-1000}"
TXS_PER_ACCOUNT="${BENCH_TXS_PER_ACCOUNT:-30}"
RUNS="${BENCH_RUNS:-3}"
WARMUP="${BENCH_WARMUP:-1}"
CONCURRENCY="${BENCH_CONCURRENCY:-64}"
BATCH_SIZE="${BENCH_BATCH_SIZE:-100}"
DRAIN_TIMEOUT="${BENCH_DRAIN_TIMEOUT:-600}"
# Accounts 0-9 are left to other tools (L1 owner, batcher, proposer, ...).
FIRST_ACCOUNT=10
FUNDED=$((FIRST_ACCOUNT + ACCOUNTS))

ANVIL="$ROOT/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
NODE_BIN="$ROOT/target/release/rollup-node"
LOADGEN="$ROOT/target/release/loadgen"

log() { echo "bench-ingress: $*" >&2; }

if [[ ! -x "$ANVIL" ]]; then
    log "anvil not found at $ANVIL (run: npm ci)"
    exit 1
fi

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "building release binaries"
    "$CARGO" build --release -p rollup-sequencer -p rollup-loadgen
fi

TMP="$(mktemp -d /tmp/bench-ingress.XXXXXX)"
# The postgres user must reach the node's data folder through this one.
chmod 755 "$TMP"
NODE_PID=""
ANVIL_PID=""

stop() {
    local pid="$1" name="$2"
    [[ -n "$pid" ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name did not stop in 30 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    stop "$NODE_PID" "rollup-node"
    stop "$ANVIL_PID" "anvil"
    if [[ "${BENCH_KEEP_TMP:-0}" == 1 ]]; then
        log "kept $TMP (node.log, anvil.log, results.jsonl)"
    else
        rm -rf "$TMP"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

read -r RPC_PORT METRICS_PORT PG_PORT L1_PORT ANVIL_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
')

# --- our node -----------------------------------------------------------
DATA_DIR="$TMP/node"
log "starting rollup-node dev (data $DATA_DIR, $FUNDED funded accounts)"
"$NODE_BIN" dev --data-dir "$DATA_DIR" --accounts "$FUNDED" \
    --rpc-addr "127.0.0.1:$RPC_PORT" --metrics-addr "127.0.0.1:$METRICS_PORT" \
    --pg-port "$PG_PORT" --l1-port "$L1_PORT" >"$TMP/node.log" 2>&1 &
NODE_PID=$!

for _ in $(seq 1 1800); do
    [[ -s "$DATA_DIR/endpoints.json" ]] && break
    if ! kill -0 "$NODE_PID" 2>/dev/null; then
        log "rollup-node exited during start-up:"
        tail -n 40 "$TMP/node.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ ! -s "$DATA_DIR/endpoints.json" ]]; then
    log "rollup-node wrote no endpoints.json in 180 s:"
    tail -n 40 "$TMP/node.log" >&2
    exit 1
fi
endpoint() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
        "$DATA_DIR/endpoints.json" "$1"
}
OURS_RPC="$(endpoint l2_rpc)"
METRICS_URL="$(endpoint metrics_url)"
log "our node answers at $OURS_RPC"

# --- anvil alone --------------------------------------------------------
"$ANVIL" --no-mining --accounts "$FUNDED" --port "$ANVIL_PORT" --host 127.0.0.1 \
    >"$TMP/anvil.log" 2>&1 &
ANVIL_PID=$!
ANVIL_RPC="http://127.0.0.1:$ANVIL_PORT"
for _ in $(seq 1 600); do
    if curl -sf -H 'content-type: application/json' \
        -d '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' \
        "$ANVIL_RPC" >/dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$ANVIL_PID" 2>/dev/null; then
        log "anvil exited during start-up:"
        tail -n 20 "$TMP/anvil.log" >&2
        exit 1
    fi
    sleep 0.1
done
log "anvil answers at $ANVIL_RPC"

# --- measurements -------------------------------------------------------
RESULTS="$TMP/results.jsonl"
: >"$RESULTS"

# Pending transactions in our mempool per the metrics ("" if unknown).
mempool_pending() {
    curl -sf "$METRICS_URL" 2>/dev/null |
        awk '$1 == "rollup_mempool_pending" { print int($2); exit }' || true
}

wait_for_drain() {
    local started now pending
    started=$(date +%s.%N)
    while :; do
        pending="$(mempool_pending)"
        if [[ -z "$pending" ]]; then
            log "no rollup_mempool_pending metric; not waiting for the mempool"
            return 0
        fi
        [[ "$pending" == 0 ]] && break
        now=$(date +%s.%N)
        if python3 -c "import sys; sys.exit(0 if $now - $started > $DRAIN_TIMEOUT else 1)"; then
            log "the mempool still holds $pending transactions after ${DRAIN_TIMEOUT} s; measuring anyway"
            return 0
        fi
        sleep 0.25
    done
    now=$(date +%s.%N)
    python3 -c "print(f'bench-ingress: mempool drained in {$now - $started:.1f} s')" >&2
}

# One JSON-RPC call to anvil; prints the result as JSON.
anvil_call() {
    curl -sf -H 'content-type: application/json' \
        -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":$2}" "$ANVIL_RPC" |
        python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin).get("result")))'
}

# Mines anvil's pool empty (not measured).
anvil_drain() {
    local status
    for _ in $(seq 1 100); do
        status="$(anvil_call txpool_status '[]')"
        if python3 -c 'import json, sys; s = json.loads(sys.argv[1]); sys.exit(0 if int(s["pending"], 16) + int(s["queued"], 16) == 0 else 1)' "$status"; then
            return 0
        fi
        anvil_call anvil_mine '["0x20"]' >/dev/null
    done
    log "anvil's pool is still not empty: $status"
}

CLOCK_TICKS="$(getconf CLK_TCK)"

# CPU ticks (user and system) of process $1 and its threads, plus its
# reaped children's when $2 is "with-reaped".
ticks_of() {
    local fields
    fields="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null)" || { echo 0; return; }
    # Fields after the command: utime is the 12th, stime 13th, cutime 14th, cstime 15th.
    awk -v reaped="${2:-}" '{ t = $12 + $13; if (reaped == "with-reaped") t += $14 + $15; print t }' <<<"$fields"
}

# CPU ticks of our node's Postgres: the postmaster (with the backends it
# has reaped) and its live children.
postgres_ticks() {
    local postmaster total child
    postmaster="$(pgrep -P "$NODE_PID" -x postgres | head -n 1)"
    [[ -n "$postmaster" ]] || { echo 0; return; }
    total="$(ticks_of "$postmaster" with-reaped)"
    for child in $(pgrep -P "$postmaster"); do
        total=$((total + $(ticks_of "$child")))
    done
    echo "$total"
}

# Runs loadgen once; prints its JSON line. `run` is the run's label.
measure() {
    local target="$1" url="$2" mode="$3" run="$4"
    log "$run: $target, $mode"
    "$LOADGEN" --rpc-url "$url" --accounts "$ACCOUNTS" \
        --txs-per-account "$TXS_PER_ACCOUNT" --mode "$mode" \
        --concurrency "$CONCURRENCY" --batch-size "$BATCH_SIZE" \
        --first-account "$FIRST_ACCOUNT" --label "$target"
}

# Keeps one result line, and shows it.
record() {
    echo "$1" >&2
    echo "$1" >>"$RESULTS"
}

# Our result line $1 with our node's and its Postgres' CPU per accepted
# transaction since the counts $2 (node) and $3 (Postgres).
with_node_cpu() {
    python3 -c '
import json, sys
line = json.loads(sys.argv[1])
node0, pg0, node1, pg1, hz = map(int, sys.argv[2:])
accepted = max(line["accepted"], 1)
line["node_cpu_us_per_tx"] = round((node1 - node0) / hz * 1e6 / accepted, 1)
line["postgres_cpu_us_per_tx"] = round((pg1 - pg0) / hz * 1e6 / accepted, 1)
print(json.dumps(line))' "$1" "$2" "$3" "$(ticks_of "$NODE_PID")" "$(postgres_ticks)" "$CLOCK_TICKS"
}

# Warm-up, not recorded: the first run against a fresh node or anvil pays
# one-time costs (the allocators' first page faults, the mempool table's
# first growth, anvil's first pool). Without it the first batched run was
# the slowest of each of three sets of three.
for warmup in $(seq 1 "$WARMUP"); do
    wait_for_drain
    measure ours "$OURS_RPC" batch "warm-up $warmup/$WARMUP" >/dev/null
    wait_for_drain
    measure anvil "$ANVIL_RPC" batch "warm-up $warmup/$WARMUP" >/dev/null
    anvil_drain
done

for run in $(seq 1 "$RUNS"); do
    for mode in batch single; do
        wait_for_drain
        node_start="$(ticks_of "$NODE_PID")"
        postgres_start="$(postgres_ticks)"
        ours="$(measure ours "$OURS_RPC" "$mode" "run $run/$RUNS")"
        wait_for_drain
        ours="$(with_node_cpu "$ours" "$node_start" "$postgres_start")"
        record "$ours"
        anvil="$(measure anvil "$ANVIL_RPC" "$mode" "run $run/$RUNS")"
        record "$anvil"
        anvil_drain
    done
done

# --- table --------------------------------------------------------------
python3 - "$RESULTS" "$ACCOUNTS" "$TXS_PER_ACCOUNT" "$RUNS" "$CONCURRENCY" "$BATCH_SIZE" <<'EOF'
import json, statistics, sys

path, accounts, per_account, runs, concurrency, batch = sys.argv[1:]
rows = [json.loads(line) for line in open(path) if line.strip()]
print()
print(f"ingress: {accounts} accounts x {per_account} txs = {int(accounts) * int(per_account)} txs "
      f"per measurement, {runs} runs, concurrency {concurrency}, batch size {batch} "
      f"(medians over runs)")
header = (f"{'mode':<7} {'target':<6} {'tx/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'accepted':>10} "
          f"{'errors':>8} {'node µs/tx':>11} {'pg µs/tx':>9} {'loadgen µs/tx':>14}")
print(header)
print("-" * len(header))
medians = {}
for mode in ("batch", "single"):
    for target in ("ours", "anvil"):
        sel = [r for r in rows if r["mode"] == mode and r["label"] == target]
        if not sel:
            continue
        tps = statistics.median(r["tx_per_s"] for r in sel)
        p50 = statistics.median(r["p50_ms"] for r in sel)
        p99 = statistics.median(r["p99_ms"] for r in sel)
        accepted = sum(r["accepted"] for r in sel)
        txs = sum(r["txs"] for r in sel)
        errors = sum(r["errors"] for r in sel)
        medians[(mode, target)] = (tps, p99)
        def cpu(key):
            values = [r[key] for r in sel if key in r]
            return f"{statistics.median(values):.1f}" if values else "-"
        print(f"{mode:<7} {target:<6} {tps:>9.0f} {p50:>8.2f} {p99:>8.2f} "
              f"{f'{accepted}/{txs}':>10} {errors:>8} {cpu('node_cpu_us_per_tx'):>11} "
              f"{cpu('postgres_cpu_us_per_tx'):>9} {cpu('loadgen_cpu_us_per_tx'):>14}")
print()
for mode in ("batch", "single"):
    ours, anvil = medians.get((mode, "ours")), medians.get((mode, "anvil"))
    if ours and anvil and anvil[0] > 0:
        print(f"{mode:<7} ours/anvil: {ours[0] / anvil[0]:.2f}x tx/s, p99 {ours[1]:.2f} vs {anvil[1]:.2f} ms")
EOF
