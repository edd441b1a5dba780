//! What the runners share: the fixtures directory, JSON account maps, the
//! report.

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use rollup_executor::{
    MemoryState,
    state::{AccountSnapshot, BasicAccount},
};
use serde::Deserialize;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

/// The fixtures directory: `ETHEREUM_TESTS_DIR`, or `../shared/ethereum-tests`
/// relative to the repository root. Panics (fails the run) if it is missing.
pub(crate) fn fixtures_dir() -> PathBuf {
    let dir = match std::env::var_os("ETHEREUM_TESTS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/ethereum-tests"),
    };
    assert!(
        dir.join("BlockchainTests").is_dir()
            && dir.join("GeneralStateTests").is_dir()
            && dir.join("TrieTests").is_dir(),
        "Ethereum fixtures not found at {}: set ETHEREUM_TESTS_DIR to a checkout of \
         ethereum/tests (BlockchainTests, GeneralStateTests, TrieTests)",
        dir.display()
    );
    dir
}

/// Every `.json` file under `dir`, sorted. Panics if there is none.
pub(crate) fn json_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read fixtures directory {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "json") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    assert!(!out.is_empty(), "no fixtures under {}", dir.display());
    out
}

/// Reads and parses one fixture file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("parse: {e}"))
}

/// A case's name: its file relative to `root`, then the test's name.
pub(crate) fn case_name(root: &Path, file: &Path, test: &str) -> String {
    let file = file.strip_prefix(root).unwrap_or(file).with_extension("");
    format!("{}::{test}", file.display())
}

/// An account of a fixture's `pre` or `postState`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct FixtureAccount {
    balance: U256,
    nonce: U256,
    code: Bytes,
    storage: BTreeMap<U256, U256>,
}

/// The state a fixture's account map describes.
pub(crate) fn build_state(accounts: &BTreeMap<Address, FixtureAccount>) -> MemoryState {
    let mut state = MemoryState::new();
    for (address, account) in accounts {
        let code_hash = state.insert_code(account.code.clone());
        state.insert_account(
            *address,
            BasicAccount {
                nonce: account.nonce.saturating_to(),
                balance: account.balance,
                code_hash,
            },
        );
    }
    state.insert_storage_many(accounts.iter().flat_map(|(address, account)| {
        account.storage.iter().map(move |(slot, value)| (*address, *slot, *value))
    }));
    state
}

/// Where `actual` differs from the `expected` accounts, one line each (at
/// most `limit` lines), to explain a state-root mismatch.
pub(crate) fn state_differences(
    expected: &BTreeMap<Address, FixtureAccount>,
    actual: &MemoryState,
    limit: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let actual: BTreeMap<Address, AccountSnapshot> =
        actual.accounts_snapshot().into_iter().map(|a| (a.address, a)).collect();
    for (address, want) in expected {
        let Some(got) = actual.get(address) else {
            out.push(format!("{address}: missing"));
            continue;
        };
        let want_nonce: u64 = want.nonce.saturating_to();
        if got.account.nonce != want_nonce || got.account.balance != want.balance {
            out.push(format!(
                "{address}: nonce {} balance {}, expected nonce {want_nonce} balance {}",
                got.account.nonce, got.account.balance, want.balance
            ));
        }
        if got.account.code_hash != keccak256(&want.code) {
            out.push(format!("{address}: code differs"));
        }
        let want_storage: Vec<(U256, U256)> =
            want.storage.iter().filter(|(_, v)| !v.is_zero()).map(|(k, v)| (*k, *v)).collect();
        if got.storage != want_storage {
            out.push(format!("{address}: storage {:?}, expected {want_storage:?}", got.storage));
        }
    }
    for address in actual.keys().filter(|a| !expected.contains_key(*a)) {
        out.push(format!("{address}: exists, expected absent"));
    }
    out.truncate(limit);
    out
}

/// A 32-byte big-endian word from a fixture number.
pub(crate) fn word(value: U256) -> B256 {
    B256::from(value)
}

/// How many of the slowest fixture files a report lists.
const SLOWEST_FILES: usize = 10;

/// One suite's outcome.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Suite name.
    pub(crate) suite: &'static str,
    /// Cases that passed.
    pub(crate) passed: usize,
    /// Failed cases and why.
    pub(crate) failed: Vec<(String, String)>,
    /// Skipped cases and why.
    pub(crate) skipped: Vec<(String, String)>,
    /// How long each fixture file took, when measured.
    pub(crate) file_times: Vec<(String, Duration)>,
}

impl Report {
    /// A new, empty report.
    pub(crate) fn new(suite: &'static str) -> Self {
        Self { suite, ..Self::default() }
    }

    /// Records one case.
    pub(crate) fn record(&mut self, name: String, outcome: Outcome) {
        match outcome {
            Outcome::Passed => self.passed += 1,
            Outcome::Failed(reason) => self.failed.push((name, reason)),
            Outcome::Skipped(reason) => self.skipped.push((name, reason)),
        }
    }

    /// Records how long one fixture file took.
    pub(crate) fn time_file(&mut self, file: String, elapsed: Duration) {
        self.file_times.push((file, elapsed));
    }

    /// Prints the summary, failures, skips and slowest files.
    pub(crate) fn print(&self, elapsed: Duration) {
        let suite = self.suite;
        for (name, reason) in &self.failed {
            println!("{suite}: FAILED {name}: {reason}");
        }
        let mut reasons: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, reason) in &self.skipped {
            reasons.entry(reason).or_default().push(name);
        }
        for (reason, names) in reasons {
            println!("{suite}: skipped {} ({reason}):", names.len());
            for name in names {
                println!("    {name}");
            }
        }
        let mut times = self.file_times.clone();
        times.sort_by_key(|(_, elapsed)| std::cmp::Reverse(*elapsed));
        for (file, elapsed) in times.iter().take(SLOWEST_FILES) {
            println!("{suite}: slow file {file}: {:.2} s", elapsed.as_secs_f64());
        }
        println!(
            "{suite}: {} passed, {} failed, {} skipped in {:.1} s",
            self.passed,
            self.failed.len(),
            self.skipped.len(),
            elapsed.as_secs_f64()
        );
    }
}

/// One case's outcome.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Matches the fixture.
    Passed,
    /// Differs from the fixture (why).
    Failed(String),
    /// Not run (why).
    Skipped(String),
}

/// Stack of each runner thread: fixtures nest deeply and calls go 1,024
/// frames deep, more than the 2 MiB default holds in unoptimized builds.
const RUNNER_STACK_BYTES: usize = 64 * 1024 * 1024;

/// `f` over every file on one plain thread per core, results in file order.
///
/// Plain threads, not rayon's pool: a rayon worker waiting for the parallel
/// engine's pool steals other cases onto its own stack, nesting them until
/// the stack overflows.
pub(crate) fn map_files<T: Send>(files: &[PathBuf], f: impl Fn(&PathBuf) -> T + Sync) -> Vec<T> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(files.len());
    let mut results: Vec<(usize, T)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                std::thread::Builder::new()
                    .stack_size(RUNNER_STACK_BYTES)
                    .spawn_scoped(scope, || {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(file) = files.get(i) else { return done };
                            done.push((i, f(file)));
                        }
                    })
                    .expect("spawn a runner thread")
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("runner thread")).collect()
    });
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, result)| result).collect()
}
