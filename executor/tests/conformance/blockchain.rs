//! `BlockchainTests/ValidBlocks`: Cancun chains executed block by block
//! through `execute_block_in`, checking every header and the final state.

use crate::{
    Filter,
    fixtures::{
        FixtureAccount, Outcome, Report, build_state, case_name, json_files, map_files, read_json,
        state_differences,
    },
};
use alloy_consensus::{Block, Header, TxEnvelope, transaction::SignerRecoverable};
use alloy_primitives::{Address, B256, Bloom, Bytes, U256};
use alloy_rlp::Decodable;
use revm::primitives::hardfork::SpecId;
use rollup_executor::{
    Engine, InvalidTxPolicy, MemoryState, RecoveredTx,
    block::{BlockEnvironment, execute_block_in},
};
use serde::Deserialize;
use std::{collections::BTreeMap, path::Path};

/// Mainnet's chain id, which the fixtures' transactions are signed for.
const CHAIN_ID: u64 = 1;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockchainTest {
    network: String,
    pre: BTreeMap<Address, FixtureAccount>,
    genesis_block_header: FixtureHeader,
    #[serde(rename = "genesisRLP")]
    genesis_rlp: Bytes,
    blocks: Vec<FixtureBlock>,
    post_state: Option<BTreeMap<Address, FixtureAccount>>,
    post_state_hash: Option<B256>,
    lastblockhash: B256,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FixtureBlock {
    rlp: Bytes,
    block_header: Option<FixtureHeader>,
    expect_exception: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FixtureHeader {
    hash: B256,
    state_root: B256,
    receipt_trie: B256,
    bloom: Bloom,
    gas_used: U256,
}

/// Runs every Cancun test under `BlockchainTests/ValidBlocks`.
pub(crate) fn run(dir: &Path, engine: Engine, filter: &Filter) -> Report {
    let root = dir.join("BlockchainTests");
    let files = json_files(&root.join("ValidBlocks"));
    let results: Vec<(String, Outcome)> = map_files(&files, |file| -> Vec<(String, Outcome)> {
        let tests: BTreeMap<String, BlockchainTest> = match read_json(file) {
            Ok(tests) => tests,
            Err(e) => {
                return vec![(case_name(&root, file, "*"), Outcome::Failed(e))];
            }
        };
        tests
            .into_iter()
            .map(|(name, test)| (case_name(&root, file, &name), test))
            .filter(|(name, _)| filter.case(name))
            .map(|(name, test)| {
                let outcome = if test.network == "Cancun" {
                    match run_test(&test, engine) {
                        Ok(()) => Outcome::Passed,
                        Err(e) => Outcome::Failed(e),
                    }
                } else {
                    Outcome::Skipped(format!("network {} (only Cancun is run)", test.network))
                };
                (name, outcome)
            })
            .collect()
    })
    .into_iter()
    .flatten()
    .collect();
    let mut report = Report::new("blockchain");
    for (name, outcome) in results {
        report.record(name, outcome);
    }
    report
}

fn run_test(test: &BlockchainTest, engine: Engine) -> Result<(), String> {
    let mut state = build_state(&test.pre);
    let genesis = Header::decode(&mut &test.genesis_rlp[..])
        .or_else(|_| {
            Block::<TxEnvelope>::decode(&mut &test.genesis_rlp[..]).map(|block| block.header)
        })
        .map_err(|e| format!("genesis RLP: {e}"))?;
    let pre_root = state.state_root();
    if genesis.state_root != pre_root {
        return Err(format!(
            "pre-state root {pre_root}, genesis header has {}",
            genesis.state_root
        ));
    }
    let genesis_hash = genesis.hash_slow();
    if genesis_hash != test.genesis_block_header.hash {
        return Err(format!(
            "genesis hash {genesis_hash}, fixture says {}",
            test.genesis_block_header.hash
        ));
    }
    state.insert_block_hash(genesis.number, genesis_hash);

    let mut head = genesis_hash;
    for (index, fixture) in test.blocks.iter().enumerate() {
        if let Some(exception) = &fixture.expect_exception {
            return Err(format!("block {index}: expects exception {exception} in ValidBlocks"));
        }
        head = run_block(&mut state, head, fixture, engine)
            .map_err(|e| format!("block {index}: {e}"))?;
    }
    if head != test.lastblockhash {
        return Err(format!("last block hash {head}, fixture says {}", test.lastblockhash));
    }
    let root = state.state_root();
    if let Some(post) = &test.post_state {
        let expected = build_state(post).state_root();
        if root != expected {
            return Err(format!(
                "post-state root {root}, expected {expected}: {}",
                state_differences(post, &state, 8).join("; ")
            ));
        }
    }
    if let Some(expected) = test.post_state_hash
        && root != expected
    {
        return Err(format!("post-state root {root}, expected {expected}"));
    }
    Ok(())
}

/// Executes one block on `state` (which moves to its post-state) and returns
/// its hash.
fn run_block(
    state: &mut MemoryState,
    parent_hash: B256,
    fixture: &FixtureBlock,
    engine: Engine,
) -> Result<B256, String> {
    let block = Block::<TxEnvelope>::decode(&mut &fixture.rlp[..])
        .map_err(|e| format!("block RLP: {e}"))?;
    let header = &block.header;
    if header.parent_hash != parent_hash {
        return Err(format!(
            "parent hash {}, the chain's head is {parent_hash}",
            header.parent_hash
        ));
    }
    if !block.body.ommers.is_empty() {
        return Err("ommers in a post-merge block".into());
    }
    let transactions = block
        .body
        .transactions
        .iter()
        .map(|tx| {
            let sender = tx.recover_signer().map_err(|e| format!("sender recovery: {e}"))?;
            Ok(RecoveredTx::new_unchecked(tx.clone(), sender))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let env = BlockEnvironment {
        spec: SpecId::CANCUN,
        chain_id: CHAIN_ID,
        parent_hash,
        number: header.number,
        timestamp: header.timestamp,
        beneficiary: header.beneficiary,
        gas_limit: header.gas_limit,
        base_fee: header.base_fee_per_gas.ok_or("no base fee")?,
        prevrandao: header.mix_hash,
        extra_data: header.extra_data.clone(),
        excess_blob_gas: header.excess_blob_gas.ok_or("no excess blob gas")?,
        parent_beacon_block_root: header.parent_beacon_block_root,
        withdrawals: block.body.withdrawals.clone().map(|w| w.into_inner()).unwrap_or_default(),
    };
    let executed = execute_block_in(&env, engine, &*state, transactions, InvalidTxPolicy::Reject)
        .map_err(|e| e.to_string())?;
    state.apply(&executed.diff);
    let sealed = executed.seal(state.state_root());
    let ours = &sealed.block.header;

    let mut errors = Vec::new();
    let mut check = |what: &str, got: String, want: String| {
        if got != want {
            errors.push(format!("{what} {got}, expected {want}"));
        }
    };
    check("stateRoot", ours.state_root.to_string(), header.state_root.to_string());
    check("receiptTrie", ours.receipts_root.to_string(), header.receipts_root.to_string());
    check("bloom", ours.logs_bloom.to_string(), header.logs_bloom.to_string());
    check("gasUsed", ours.gas_used.to_string(), header.gas_used.to_string());
    check(
        "blobGasUsed",
        format!("{:?}", ours.blob_gas_used),
        format!("{:?}", header.blob_gas_used),
    );
    check(
        "withdrawalsRoot",
        format!("{:?}", ours.withdrawals_root),
        format!("{:?}", header.withdrawals_root),
    );
    check(
        "transactionsTrie",
        ours.transactions_root.to_string(),
        header.transactions_root.to_string(),
    );
    if let Some(fixture_header) = &fixture.block_header {
        check(
            "stateRoot (JSON)",
            ours.state_root.to_string(),
            fixture_header.state_root.to_string(),
        );
        check(
            "receiptTrie (JSON)",
            ours.receipts_root.to_string(),
            fixture_header.receipt_trie.to_string(),
        );
        check("bloom (JSON)", ours.logs_bloom.to_string(), fixture_header.bloom.to_string());
        check(
            "gasUsed (JSON)",
            U256::from(ours.gas_used).to_string(),
            fixture_header.gas_used.to_string(),
        );
        check("hash (JSON)", sealed.hash.to_string(), fixture_header.hash.to_string());
    }
    check("hash", sealed.hash.to_string(), header.hash_slow().to_string());
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    state.insert_block_hash(header.number, sealed.hash);
    Ok(sealed.hash)
}
