//! `GeneralStateTests`: each `Cancun` post entry's transaction executed as a
//! one-transaction block through the engine (no system call, no
//! withdrawals), checking the post-state root and the logs hash.

use crate::{
    Filter,
    fixtures::{
        FixtureAccount, Outcome, Report, build_state, case_name, json_files, map_files, read_json,
        state_differences, word,
    },
};
use alloy_consensus::{TxEnvelope, transaction::SignerRecoverable};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, B256, Bytes, Log, U256, keccak256};
use revm::{DatabaseRef, bytecode::Bytecode, primitives::hardfork::SpecId, state::AccountInfo};
use rollup_executor::{
    Engine, InvalidTxPolicy, MemoryState, RecoveredTx, block::BlockEnvironment, engine::TxResult,
};
use serde::Deserialize;
use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

/// The fork whose post entries are run.
const FORK: &str = "Cancun";

/// Fixture files left out of the CI run because of their run time, with the
/// time one file took here (debug build, dependencies at opt-level 3, 2 cores
/// shared with other builds). They pass: `CONFORMANCE_SLOW=1` runs them (the
/// whole state suite then takes about 10 minutes). revm's own state-test
/// runner skips the same files for the same reason.
const SLOW_FILES: &[(&str, &str)] = &[
    ("VMTests/vmPerformance/loopMul.json", "slow: 471 s, an EVM benchmark loop"),
    ("stTimeConsuming/CALLBlake2f_MaxRounds.json", "slow: 137 s, 2^32-1 BLAKE2 rounds"),
    ("VMTests/vmPerformance/loopExp.json", "slow: 63 s, an EVM benchmark loop"),
    ("stTimeConsuming/static_Call50000_sha256.json", "slow: 13 s, 50,000 SHA-256 calls"),
];

#[derive(Debug, Deserialize)]
struct StateTest {
    env: StateEnv,
    pre: BTreeMap<Address, FixtureAccount>,
    post: BTreeMap<String, Vec<PostEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateEnv {
    current_coinbase: Address,
    current_gas_limit: U256,
    current_number: U256,
    current_timestamp: U256,
    current_base_fee: Option<U256>,
    current_random: Option<U256>,
    current_excess_blob_gas: Option<U256>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostEntry {
    hash: B256,
    logs: B256,
    txbytes: Bytes,
    expect_exception: Option<String>,
    indexes: Indexes,
    state: Option<BTreeMap<Address, FixtureAccount>>,
}

#[derive(Debug, Deserialize)]
struct Indexes {
    data: usize,
    gas: usize,
    value: usize,
}

/// Named case outcomes.
type Cases = Vec<(String, Outcome)>;

/// Runs the Cancun post entries of every `GeneralStateTests` file.
pub(crate) fn run(dir: &Path, engine: Engine, filter: &Filter) -> Report {
    let root = dir.join("GeneralStateTests");
    let files = json_files(&root);
    let results: Vec<(String, Cases, Duration)> = map_files(&files, |file| {
        let started = Instant::now();
        let outcomes = run_file(&root, file, engine, filter);
        (case_name(&root, file, "*"), outcomes, started.elapsed())
    });
    let mut report = Report::new("state");
    for (file, outcomes, elapsed) in results {
        report.time_file(file, elapsed);
        for (name, outcome) in outcomes {
            report.record(name, outcome);
        }
    }
    report
}

fn run_file(root: &Path, file: &Path, engine: Engine, filter: &Filter) -> Cases {
    let relative = file.strip_prefix(root).unwrap_or(file).to_string_lossy().into_owned();
    let slow = SLOW_FILES
        .iter()
        .find(|(slow, _)| relative == *slow)
        .filter(|_| std::env::var_os("CONFORMANCE_SLOW").is_none())
        .map(|(_, reason)| format!("{reason}; CONFORMANCE_SLOW=1 runs it"));
    let tests: BTreeMap<String, StateTest> = match read_json(file) {
        Ok(tests) => tests,
        Err(e) => return vec![(case_name(root, file, "*"), Outcome::Failed(e))],
    };
    let mut out = Vec::new();
    for (name, test) in tests {
        let Some(entries) = test.post.get(FORK) else { continue };
        let test_name = case_name(root, file, &name);
        if !filter.case(&test_name) {
            continue;
        }
        let pre = build_state(&test.pre);
        for entry in entries {
            let Indexes { data, gas, value } = entry.indexes;
            let name = format!("{test_name}[d{data},g{gas},v{value}]");
            let outcome = match &slow {
                Some(reason) => Outcome::Skipped(reason.clone()),
                None => run_entry(&test.env, &pre, entry, engine),
            };
            out.push((name, outcome));
        }
    }
    out
}

fn run_entry(env: &StateEnv, pre: &MemoryState, entry: &PostEntry, engine: Engine) -> Outcome {
    match check_entry(env, pre, entry, engine) {
        Ok(()) => Outcome::Passed,
        Err(e) => Outcome::Failed(e),
    }
}

fn check_entry(
    env: &StateEnv,
    pre: &MemoryState,
    entry: &PostEntry,
    engine: Engine,
) -> Result<(), String> {
    let tx = match decode(&entry.txbytes) {
        Ok(tx) => tx,
        // Refused before execution: the state stays as it was.
        Err(_) if entry.expect_exception.is_some() => {
            return expect_unchanged(pre, entry);
        }
        Err(e) => return Err(e),
    };
    let block = BlockEnvironment {
        spec: SpecId::CANCUN,
        chain_id: 1,
        parent_hash: B256::ZERO,
        number: env.current_number.saturating_to(),
        timestamp: env.current_timestamp.saturating_to(),
        beneficiary: env.current_coinbase,
        gas_limit: env.current_gas_limit.saturating_to(),
        base_fee: env.current_base_fee.unwrap_or_default().saturating_to(),
        prevrandao: word(env.current_random.unwrap_or_default()),
        extra_data: Bytes::new(),
        excess_blob_gas: env.current_excess_blob_gas.unwrap_or_default().saturating_to(),
        parent_beacon_block_root: None,
        withdrawals: Vec::new(),
    };
    let output = engine
        .execute(&block.execution_env(), &StateTestDb(pre), &[tx], InvalidTxPolicy::Skip)
        .map_err(|e| format!("engine: {e}"))?;
    match (&output.results[0], &entry.expect_exception) {
        (TxResult::Skipped(reason), Some(_)) => {
            if !output.diff.accounts.is_empty() {
                return Err(format!("rejected ({reason:?}) but the state changed"));
            }
            expect_unchanged(pre, entry)
        }
        (TxResult::Skipped(reason), None) => Err(format!("transaction rejected: {reason:?}")),
        (TxResult::Executed(_), Some(exception)) => {
            Err(format!("transaction included, expected exception {exception}"))
        }
        (TxResult::Executed(executed), None) => {
            let mut post = pre.clone();
            post.apply(&output.diff);
            let mut errors = Vec::new();
            let root = post.state_root();
            if root != entry.hash {
                let mut message = format!("post-state root {root}, expected {}", entry.hash);
                if let Some(expected) = &entry.state {
                    message += &format!(": {}", state_differences(expected, &post, 8).join("; "));
                }
                errors.push(message);
            }
            let logs = logs_hash(&executed.logs);
            if logs != entry.logs {
                errors.push(format!("logs hash {logs}, expected {}", entry.logs));
            }
            if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
        }
    }
}

fn expect_unchanged(pre: &MemoryState, entry: &PostEntry) -> Result<(), String> {
    let root = pre.clone().state_root();
    if root != entry.hash {
        return Err(format!("state unchanged ({root}), expected {}", entry.hash));
    }
    if entry.logs != logs_hash(&[]) {
        return Err(format!("no logs, expected logs hash {}", entry.logs));
    }
    Ok(())
}

fn decode(bytes: &[u8]) -> Result<RecoveredTx, String> {
    let tx = TxEnvelope::decode_2718_exact(bytes).map_err(|e| format!("transaction RLP: {e}"))?;
    let sender = tx.recover_signer().map_err(|e| format!("sender recovery: {e}"))?;
    Ok(RecoveredTx::new_unchecked(tx, sender))
}

/// keccak256 of the RLP list of logs, as the fixtures' `logs` field.
fn logs_hash(logs: &[Log]) -> B256 {
    let mut out = Vec::new();
    alloy_rlp::encode_list(logs, &mut out);
    keccak256(out)
}

/// The pre-state as the state tests see it: `BLOCKHASH(n)` is
/// keccak256 of `n` in decimal (the convention of geth's and revm's state
/// test runners; the fixtures have no chain).
#[derive(Debug)]
struct StateTestDb<'a>(&'a MemoryState);

impl DatabaseRef for StateTestDb<'_> {
    type Error = std::convert::Infallible;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        self.0.basic_ref(address)
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        self.0.code_by_hash_ref(code_hash)
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        self.0.storage_ref(address, index)
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        Ok(keccak256(number.to_string().as_bytes()))
    }
}
