//! Ethereum conformance: runs the Ethereum Foundation's fixtures
//! (`BlockchainTests/ValidBlocks`, the Cancun cases of `GeneralStateTests`,
//! `TrieTests`) against the executor.
//!
//! Fixtures are read from `ETHEREUM_TESTS_DIR` (default
//! `../shared/ethereum-tests` beside the checkout); a missing directory is a
//! failure, never a silent pass. The engine is chosen in one place,
//! [`engine`] (`CONFORMANCE_ENGINE`, default `parallel`, forced).
//!
//! Usage: `cargo test -p rollup-executor --test conformance [-- FILTER...]`,
//! where a filter is a suite name (`blockchain`, `state`, `trie`) or a
//! substring of a case name (`file::test`). Each suite prints
//! `N passed, N failed, N skipped`, the failures and the skips with their
//! reasons, and the process exits non-zero if any case failed.

mod blockchain;
mod fixtures;
mod state;
mod trie;

use fixtures::Report;
use rollup_executor::Engine;
use std::{process::ExitCode, time::Instant};

/// The engine every runner executes blocks with.
///
/// `CONFORMANCE_ENGINE`: `parallel` (the default: Block-STM forced for
/// every block, even one-transaction ones, so no case is decided by the
/// sequential fallback) or `sequential` (the reference).
fn engine() -> Engine {
    match std::env::var("CONFORMANCE_ENGINE").as_deref() {
        Err(_) | Ok("parallel") => Engine::parallel_forced(0),
        Ok("sequential") => Engine::Sequential,
        Ok(other) => panic!("CONFORMANCE_ENGINE={other}: known engines are parallel, sequential"),
    }
}

/// Which cases to run: the suite names and name substrings given on the
/// command line (options such as `--nocapture` are ignored).
#[derive(Debug)]
struct Filter {
    suites: Vec<String>,
    names: Vec<String>,
}

impl Filter {
    fn from_args() -> Self {
        let mut suites = Vec::new();
        let mut names = Vec::new();
        for arg in std::env::args().skip(1).filter(|a| !a.starts_with('-')) {
            if matches!(arg.as_str(), "blockchain" | "state" | "trie") {
                suites.push(arg);
            } else {
                names.push(arg);
            }
        }
        Self { suites, names }
    }

    fn suite(&self, name: &str) -> bool {
        self.suites.is_empty() || self.suites.iter().any(|s| s == name)
    }

    fn case(&self, name: &str) -> bool {
        self.names.is_empty() || self.names.iter().any(|n| name.contains(n.as_str()))
    }
}

/// A suite's runner: fixtures directory, engine, filter.
type Suite = fn(&std::path::Path, Engine, &Filter) -> Report;

fn main() -> ExitCode {
    let dir = fixtures::fixtures_dir();
    let filter = Filter::from_args();
    let engine = engine();
    println!("conformance: fixtures {}, engine {engine:?}", dir.display());
    let suites: [(&str, Suite); 3] =
        [("blockchain", blockchain::run), ("state", state::run), ("trie", trie::run)];
    let started = Instant::now();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (name, run) in suites {
        if !filter.suite(name) {
            continue;
        }
        let suite_started = Instant::now();
        let report = run(&dir, engine, &filter);
        report.print(suite_started.elapsed());
        passed += report.passed;
        failed += report.failed.len();
        skipped += report.skipped.len();
    }
    // The libtest summary line, so `make test` counts these cases too.
    println!(
        "test result: {}. {passed} passed; {failed} failed; {skipped} ignored; 0 measured; \
         0 filtered out; finished in {:.2}s",
        if failed == 0 { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
