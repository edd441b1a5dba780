# The two set-up commands are `make dev` and `make test` (see README.md).
# Both install what they need (npm packages, Postgres binaries) themselves.

CARGO ?= cargo
NODE_STAMP := node_modules/.package-lock.json
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
TEST_LOG := target/test-output.log

.PHONY: dev test test-long lint fmt contracts contracts-check deps postgres-bin pr bench-ingress bench-state bench-executor conformance

## dev: run the whole system locally (private Postgres, anvil, all roles).
dev: deps
	$(CARGO) build -p rollup-sequencer --bin rollup-node
	exec target/debug/rollup-node dev

## test: the whole test suite (Rust unit, integration and end-to-end tests,
## contract tests, artifact freshness), against real Postgres and anvil.
test: deps
	$(CARGO) fmt --all --check
	@mkdir -p target
	contracts/test.sh 2>&1 | tee $(TEST_LOG)
	$(CARGO) build -p rollup-devnet --bin with-test-postgres
	$(CARGO) run -q -p rollup-devnet --bin with-test-postgres -- $(CARGO) test --workspace 2>&1 | tee -a $(TEST_LOG)
	@awk '/^test result:/ { p += $$4; f += $$6 } /^Suite result:/ { p += $$4; f += $$6 } \
		END { printf "total: %d passed, %d failed\n", p, f }' $(TEST_LOG)

## test-long: the same suite with long loops turned up.
test-long: export PROPTEST_CASES = 20000
test-long: export FAULT_ROUNDS = 5
test-long: export CONFORMANCE_SLOW = 1
test-long: export EXECUTOR_RACE_REPS = 10
test-long: test

## bench-ingress: accepted tx/s of our node (Postgres fsync on) against anvil
## alone, batched and single requests (release build; knobs BENCH_ACCOUNTS,
## BENCH_TXS_PER_ACCOUNT, BENCH_RUNS, BENCH_WARMUP; see sequencer/loadgen/bench-ingress.sh).
bench-ingress: deps
	CARGO=$(CARGO) sequencer/loadgen/bench-ingress.sh

## bench-state: state-root update time against state size, block commit
## time (Postgres fsync on) and start-up time; one JSON line per case
## (knobs BENCH_RUNS, BENCH_TOTALS, BENCH_TOUCHED, BENCH_COMMIT_TXS, BENCH_CASES).
bench-state: deps
	$(CARGO) build --release -p rollup-store --features bench --bin bench-state
	target/release/bench-state

## conformance: the Ethereum fixtures (BlockchainTests/ValidBlocks, the Cancun
## GeneralStateTests, TrieTests) through the executor. Fixtures from
## ETHEREUM_TESTS_DIR (default ../shared/ethereum-tests); a missing directory
## fails. CONFORMANCE_ENGINE picks the engine (default parallel, forced); extra
## arguments filter: make conformance ARGS="state stRandom".
ETHEREUM_TESTS_DIR ?= $(abspath ../shared/ethereum-tests)
conformance:
	ETHEREUM_TESTS_DIR=$(ETHEREUM_TESTS_DIR) $(CARGO) test -p rollup-executor --test conformance -- $(ARGS)

## bench-executor: sequential against parallel (Block-STM) execution of the
## benchmark workloads at 1 and 2 threads, with the two-halves ceiling; one
## JSON line per workload and thread count (release profile; knobs BENCH_TXS,
## BENCH_RUNS, BENCH_POOLS, BENCH_THREADS, BENCH_ONLY; see executor/benches/executor.rs).
bench-executor:
	$(CARGO) bench -q -p rollup-executor --bench executor

## lint: formatting and clippy with warnings as errors.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## contracts: recompile the Solidity artifacts (commit the result).
contracts: deps
	node contracts/build.js

pr: lint test

deps: $(NODE_STAMP) postgres-bin

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

postgres-bin:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		echo "installing PostgreSQL server binaries"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }
