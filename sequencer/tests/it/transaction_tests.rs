//! Ethereum Foundation `TransactionTests` through the admission layer's
//! decode-and-recover step, at fork Cancun (fixtures with no Cancun result
//! use the newest fork they list: they are RLP-shape cases whose verdict no
//! later fork changes). Every invalid fixture must be rejected; every valid
//! one must decode to the expected sender, hash and intrinsic gas.
//!
//! The fixtures are filled for chain id 1; the RPC's chain-id policy
//! (EIP-155 required, our chain id) is tested separately.

use alloy::primitives::{Address, B256, Bytes};
use rollup_sequencer::admission::{decode_and_recover, intrinsic_gas};
use serde::Deserialize;
use std::{collections::BTreeMap, path::PathBuf};

const FORKS: &[&str] = &["Cancun", "Shanghai", "Paris", "London"];

/// Valid fixtures we refuse on purpose, with the reason.
const KNOWN_DEVIATIONS: &[(&str, &str)] = &[(
    "GasLimitPriceProductOverflowtMinusOne",
    "its max fee per gas needs 248 bits; alloy's fee fields are u128 (3.4e38 wei), and no account \
     can pay such a fee, so refusing it at decoding changes no outcome",
)];

#[derive(Deserialize)]
struct Fixture {
    txbytes: Bytes,
    result: BTreeMap<String, Expectation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Expectation {
    exception: Option<String>,
    hash: Option<B256>,
    sender: Option<Address>,
    intrinsic_gas: Option<String>,
}

/// The fixture folder: `$ETHEREUM_TESTS_DIR`, else `../shared/ethereum-tests`
/// beside the checkout.
pub(crate) fn ethereum_tests_dir() -> PathBuf {
    std::env::var_os("ETHEREUM_TESTS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/ethereum-tests")
    })
}

fn json_files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

#[test]
fn transaction_tests_decode_and_recover_at_cancun() {
    let root = ethereum_tests_dir().join("TransactionTests");
    let mut files = Vec::new();
    json_files(&root, &mut files);
    assert!(!files.is_empty(), "no fixtures under {}", root.display());

    let (mut passed, mut failures, mut skipped, mut deviations) =
        (0, Vec::new(), Vec::new(), Vec::new());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let fixtures: BTreeMap<String, Fixture> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (name, fixture) in fixtures {
            let Some(expected) = FORKS.iter().find_map(|fork| fixture.result.get(*fork)) else {
                skipped
                    .push(format!("{name}: no result for Cancun or an earlier post-London fork"));
                continue;
            };
            let outcome = decode_and_recover(&fixture.txbytes, 1);
            if let Some((_, reason)) = KNOWN_DEVIATIONS.iter().find(|(n, _)| *n == name) {
                assert!(outcome.is_err(), "{name} is listed as a deviation but now decodes");
                deviations.push(format!("{name}: {reason}"));
                continue;
            }
            let verdict = match (&expected.exception, outcome) {
                (Some(_), Err(_)) => Ok(()),
                (Some(exception), Ok(tx)) => Err(format!(
                    "expected {exception}, decoded {} from {}",
                    tx.inner().tx_hash(),
                    tx.signer()
                )),
                (None, Err(error)) => Err(format!("valid fixture rejected: {error}")),
                (None, Ok(tx)) => {
                    let gas = expected
                        .intrinsic_gas
                        .as_deref()
                        .map(|g| u64::from_str_radix(g.trim_start_matches("0x"), 16).unwrap());
                    if Some(*tx.inner().tx_hash()) != expected.hash {
                        Err(format!("hash {} != {:?}", tx.inner().tx_hash(), expected.hash))
                    } else if Some(tx.signer()) != expected.sender {
                        Err(format!("sender {} != {:?}", tx.signer(), expected.sender))
                    } else if gas.is_some_and(|g| g != intrinsic_gas(tx.inner())) {
                        Err(format!("intrinsic gas {} != {gas:?}", intrinsic_gas(tx.inner())))
                    } else {
                        Ok(())
                    }
                }
            };
            match verdict {
                Ok(()) => passed += 1,
                Err(reason) => failures.push(format!("{name}: {reason}")),
            }
        }
    }
    for skip in &skipped {
        println!("skipped {skip}");
    }
    for deviation in &deviations {
        println!("deviation {deviation}");
    }
    for failure in &failures {
        println!("FAILED {failure}");
    }
    println!(
        "TransactionTests: {passed} passed, {} failed, {} skipped, {} known deviations",
        failures.len(),
        skipped.len(),
        deviations.len()
    );
    assert!(
        failures.is_empty(),
        "{} TransactionTests fixtures failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(skipped.is_empty(), "unexplained skips: {skipped:?}");
}
