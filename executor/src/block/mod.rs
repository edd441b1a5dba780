//! Block building: executing an ordered list of transactions into a block.
//!
//! The sequencer's block producer and the verifier both call
//! [`execute_block`], so a block derived from L1 is rebuilt by exactly the code
//! that produced it. The producer skips transactions that turn out invalid
//! ([`InvalidTxPolicy::Skip`]); a verifier refuses the block instead
//! ([`InvalidTxPolicy::Reject`]), since the sequencer never posts them.
//!
//! [`execute_block`] derives the block's [`BlockEnvironment`] from the chain
//! config and the parent; [`execute_block_in`] executes a block from an
//! explicit environment (the Ethereum conformance fixtures use it). Both run
//! Ethereum's Cancun block semantics in order:
//!
//! 1. the EIP-4788 beacon-root system call ([`system_calls`]);
//! 2. the transactions, through any [`Engine`], on top of the system call's
//!    writes ([`DiffOverlay`]);
//! 3. the EIP-4895 withdrawals as balance increments ([`withdrawals`]);
//!
//! and join the three stages' diffs into the block's one [`StateDiff`]
//! ([`StateDiff::then`]). The header gets the transactions, receipts and
//! withdrawals roots, the logs bloom, gas used and blob gas used.

pub mod system_calls;
pub mod withdrawals;

use crate::{
    ChainConfig,
    engine::{Engine, EngineError, ExecutionEnv, TxResult},
    state::{DiffOverlay, StateDiff},
    tx::RecoveredTx,
};
use alloy_consensus::{
    EMPTY_OMMER_ROOT_HASH, Eip658Value, Header, Receipt, ReceiptEnvelope, ReceiptWithBloom,
    TxEnvelope, TxType, proofs,
};
use alloy_eips::Typed2718;
use alloy_eips::eip4895::Withdrawal;
use alloy_primitives::{Address, B256, Bloom, Bytes, U256};
use alloy_trie::EMPTY_ROOT_HASH;
use revm::{
    DatabaseRef,
    context::{BlockEnv, CfgEnv},
    context_interface::block::BlobExcessGasAndPrice,
    primitives::{
        eip4844::{
            BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN, MAX_BLOB_GAS_PER_BLOCK_CANCUN,
            MAX_BLOB_NUMBER_PER_BLOCK_CANCUN,
        },
        hardfork::SpecId,
    },
};

/// What to do with a transaction that cannot be included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidTxPolicy {
    /// Leave it out of the block and report why (block production).
    Skip,
    /// Fail the whole block (verification of a posted block).
    Reject,
}

/// Why a transaction was left out of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// It may become valid later (nonce gap, block full, fee below base fee):
    /// keep it in the pool.
    Deferred(String),
    /// It can never be included (nonce too low, cannot pay): drop it.
    Invalid(String),
}

/// A transaction the producer left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedTx {
    /// Its hash.
    pub hash: B256,
    /// Why.
    pub reason: SkipReason,
}

/// Per-transaction facts a receipt does not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxOutcome {
    /// Gas this transaction used.
    pub gas_used: u64,
    /// Price per gas it paid (base fee + tip).
    pub effective_gas_price: u128,
    /// Address of the contract it created, if any.
    pub contract_address: Option<Address>,
}

/// The parent a new block builds on.
#[derive(Debug, Clone, Copy)]
pub struct ParentBlock<'a> {
    /// The parent's header.
    pub header: &'a Header,
    /// The parent's hash.
    pub hash: B256,
}

/// A block executed but not yet sealed with its state root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutedBlock {
    /// The header; `state_root` is filled by [`ExecutedBlock::seal`].
    pub header: Header,
    /// The included transactions, in order.
    pub transactions: Vec<RecoveredTx>,
    /// One receipt per included transaction.
    pub receipts: Vec<ReceiptEnvelope>,
    /// One outcome per included transaction.
    pub outcomes: Vec<TxOutcome>,
    /// Transactions left out (only with [`InvalidTxPolicy::Skip`]).
    pub skipped: Vec<SkippedTx>,
    /// What the block changed.
    pub diff: StateDiff,
}

/// A block with its state root and hash.
#[derive(Debug, Clone)]
pub struct SealedBlock {
    /// Block hash: keccak256 of the RLP header, as on Ethereum.
    pub hash: B256,
    /// Everything the execution produced.
    pub block: ExecutedBlock,
}

impl ExecutedBlock {
    /// Fills in the post-state root and hashes the header.
    pub fn seal(mut self, state_root: B256) -> SealedBlock {
        self.header.state_root = state_root;
        SealedBlock { hash: self.header.hash_slow(), block: self }
    }
}

/// Errors that stop a block from being built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError<DbError> {
    /// The state snapshot failed (fatal: the snapshot is broken).
    #[error("state read failed: {0}")]
    Database(DbError),
    /// A transaction is invalid and the policy is [`InvalidTxPolicy::Reject`].
    #[error("transaction {index} ({hash}) is invalid: {reason}")]
    InvalidTransaction {
        /// Position in the block.
        index: usize,
        /// Its hash.
        hash: B256,
        /// Why.
        reason: String,
    },
    /// revm failed for a reason that is not the transaction's fault.
    #[error("evm failure: {0}")]
    Evm(String),
    /// The included transactions carry more blobs than a block may hold.
    #[error("blob gas used {used} exceeds the block maximum {max}")]
    BlobGasExceeded {
        /// Blob gas of the included transactions.
        used: u64,
        /// The fork's maximum per block.
        max: u64,
    },
    /// A block-level system call failed in the EVM (fatal).
    #[error("system call failed: {0}")]
    SystemCall(String),
}

/// Everything a block's execution depends on besides the state and the
/// transactions: the header fields known before execution, and the fork.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEnvironment {
    /// The fork's revm spec.
    pub spec: SpecId,
    /// Chain id transactions must carry.
    pub chain_id: u64,
    /// The parent block's hash.
    pub parent_hash: B256,
    /// Block number.
    pub number: u64,
    /// Block timestamp (seconds).
    pub timestamp: u64,
    /// Fee recipient (`COINBASE`).
    pub beneficiary: Address,
    /// Block gas limit.
    pub gas_limit: u64,
    /// EIP-1559 base fee per gas.
    pub base_fee: u64,
    /// `PREVRANDAO` (the header's `mixHash`).
    pub prevrandao: B256,
    /// Header extra data.
    pub extra_data: Bytes,
    /// EIP-4844 excess blob gas (sets the blob gas price).
    pub excess_blob_gas: u64,
    /// EIP-4788 parent beacon block root; `None` skips the system call (and
    /// the header field), as before Cancun.
    pub parent_beacon_block_root: Option<B256>,
    /// EIP-4895 withdrawals, credited after the transactions.
    pub withdrawals: Vec<Withdrawal>,
}

impl BlockEnvironment {
    /// The revm environment the block's transactions execute under.
    pub fn execution_env(&self) -> ExecutionEnv {
        ExecutionEnv {
            // Cancun has no per-transaction blob limit of its own, but a
            // transaction with more blobs than a block may hold is never valid.
            cfg: CfgEnv::new_with_spec(self.spec)
                .with_chain_id(self.chain_id)
                .with_max_blobs_per_tx(MAX_BLOB_NUMBER_PER_BLOCK_CANCUN),
            block: BlockEnv {
                number: U256::from(self.number),
                beneficiary: self.beneficiary,
                timestamp: U256::from(self.timestamp),
                gas_limit: self.gas_limit,
                basefee: self.base_fee,
                difficulty: U256::ZERO,
                prevrandao: Some(self.prevrandao),
                blob_excess_gas_and_price: Some(BlobExcessGasAndPrice::new(
                    self.excess_blob_gas,
                    BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN,
                )),
                slot_num: 0,
            },
        }
    }

    /// The environment of our chain's block after `parent` at `timestamp`:
    /// gas limit, fee recipient and base fee from the chain config; no
    /// beacon chain (zero `prevrandao` and parent beacon root, no
    /// withdrawals) and no blobs (excess blob gas zero).
    pub fn for_chain(config: &ChainConfig, parent: ParentBlock<'_>, timestamp: u64) -> Self {
        Self {
            spec: config.fork.spec_id(),
            chain_id: config.chain_id,
            parent_hash: parent.hash,
            number: parent.header.number + 1,
            timestamp,
            beneficiary: config.fee_recipient,
            gas_limit: config.block_gas_limit,
            base_fee: config.next_base_fee(
                parent.header.gas_used,
                parent.header.base_fee_per_gas.unwrap_or(config.eip1559.initial_base_fee),
            ),
            prevrandao: B256::ZERO,
            extra_data: Bytes::new(),
            excess_blob_gas: 0,
            parent_beacon_block_root: Some(B256::ZERO),
            withdrawals: Vec::new(),
        }
    }
}

/// The genesis header of a chain with the given state root.
pub fn genesis_header(config: &ChainConfig, timestamp: u64, state_root: B256) -> Header {
    Header {
        number: 0,
        timestamp,
        gas_limit: config.block_gas_limit,
        base_fee_per_gas: Some(config.eip1559.initial_base_fee),
        state_root,
        ..cancun_header_defaults()
    }
}

fn cancun_header_defaults() -> Header {
    Header {
        ommers_hash: EMPTY_OMMER_ROOT_HASH,
        transactions_root: EMPTY_ROOT_HASH,
        receipts_root: EMPTY_ROOT_HASH,
        withdrawals_root: Some(EMPTY_ROOT_HASH),
        blob_gas_used: Some(0),
        excess_blob_gas: Some(0),
        parent_beacon_block_root: Some(B256::ZERO),
        ..Header::default()
    }
}

/// Executes `transactions` in order as the child of `parent` at `timestamp`,
/// reading state from `state`, with the given engine.
///
/// Fees: priority fees go to the configured fee recipient and the base fee is
/// burned, exactly as revm's mainnet handler does on Ethereum.
pub fn execute_block<DB: DatabaseRef + Sync>(
    config: &ChainConfig,
    engine: Engine,
    state: &DB,
    parent: ParentBlock<'_>,
    timestamp: u64,
    transactions: Vec<RecoveredTx>,
    policy: InvalidTxPolicy,
) -> Result<ExecutedBlock, BlockError<DB::Error>> {
    let env = BlockEnvironment::for_chain(config, parent, timestamp);
    execute_block_in(&env, engine, state, transactions, policy)
}

/// Executes a block from an explicit environment: the beacon-root system
/// call, `transactions` in order with `engine`, then the withdrawals (see the
/// module docs). The header is complete except for `state_root`
/// ([`ExecutedBlock::seal`]).
pub fn execute_block_in<DB: DatabaseRef + Sync>(
    env: &BlockEnvironment,
    engine: Engine,
    state: &DB,
    transactions: Vec<RecoveredTx>,
    policy: InvalidTxPolicy,
) -> Result<ExecutedBlock, BlockError<DB::Error>> {
    let execution_env = env.execution_env();
    let system_diff = match env.parent_beacon_block_root {
        Some(root) => system_calls::beacon_root_contract_call(&execution_env, state, root)?,
        None => StateDiff::default(),
    };
    let output = engine
        .execute(&execution_env, &DiffOverlay::new(state, &system_diff), &transactions, policy)
        .map_err(|e| match e {
            EngineError::Database(e) => BlockError::Database(e),
            EngineError::InvalidTransaction { index, reason } => BlockError::InvalidTransaction {
                index,
                hash: *transactions[index].inner().tx_hash(),
                reason,
            },
            EngineError::Evm(e) => BlockError::Evm(e),
        })?;
    let diff = system_diff.then(output.diff, state).map_err(BlockError::Database)?;
    let withdrawal_diff =
        withdrawals::apply_withdrawals(&DiffOverlay::new(state, &diff), &env.withdrawals)
            .map_err(BlockError::Database)?;
    let diff = diff.then(withdrawal_diff, state).map_err(BlockError::Database)?;
    let base_fee = env.base_fee;

    let mut included = Vec::with_capacity(transactions.len());
    let mut receipts = Vec::with_capacity(transactions.len());
    let mut outcomes = Vec::with_capacity(transactions.len());
    let mut skipped = Vec::new();
    let mut cumulative_gas = 0u64;
    let mut logs_bloom = Bloom::ZERO;
    let mut blob_gas_used = 0u64;
    for (tx, result) in transactions.into_iter().zip(output.results) {
        let executed = match result {
            TxResult::Executed(executed) => executed,
            TxResult::Skipped(reason) => {
                skipped.push(SkippedTx { hash: *tx.inner().tx_hash(), reason });
                continue;
            }
        };
        cumulative_gas += executed.gas_used;
        let receipt = Receipt {
            status: Eip658Value::Eip658(executed.success),
            cumulative_gas_used: cumulative_gas,
            logs: executed.logs,
        };
        let bloom = receipt.bloom_slow();
        logs_bloom |= bloom;
        let tx_type = TxType::try_from(tx.inner().ty()).unwrap_or(TxType::Legacy);
        receipts.push(ReceiptEnvelope::from_typed(tx_type, ReceiptWithBloom::new(receipt, bloom)));
        outcomes.push(TxOutcome {
            gas_used: executed.gas_used,
            effective_gas_price: alloy_consensus::Transaction::effective_gas_price(
                tx.inner(),
                Some(base_fee),
            ),
            contract_address: executed.contract_address,
        });
        blob_gas_used += alloy_consensus::Transaction::blob_gas_used(tx.inner()).unwrap_or(0);
        included.push(tx);
    }

    if blob_gas_used > MAX_BLOB_GAS_PER_BLOCK_CANCUN {
        return Err(BlockError::BlobGasExceeded {
            used: blob_gas_used,
            max: MAX_BLOB_GAS_PER_BLOCK_CANCUN,
        });
    }
    let envelopes: Vec<&TxEnvelope> = included.iter().map(|tx| tx.inner()).collect();
    let header = Header {
        parent_hash: env.parent_hash,
        ommers_hash: EMPTY_OMMER_ROOT_HASH,
        beneficiary: env.beneficiary,
        state_root: B256::ZERO,
        transactions_root: proofs::calculate_transaction_root(&envelopes),
        receipts_root: proofs::calculate_receipt_root(&receipts),
        logs_bloom,
        difficulty: U256::ZERO,
        number: env.number,
        gas_limit: env.gas_limit,
        gas_used: cumulative_gas,
        timestamp: env.timestamp,
        extra_data: env.extra_data.clone(),
        mix_hash: env.prevrandao,
        nonce: Default::default(),
        base_fee_per_gas: Some(base_fee),
        withdrawals_root: Some(proofs::calculate_withdrawals_root(&env.withdrawals)),
        blob_gas_used: Some(blob_gas_used),
        excess_blob_gas: Some(env.excess_blob_gas),
        parent_beacon_block_root: env.parent_beacon_block_root,
        requests_hash: None,
        ..Header::default()
    };
    Ok(ExecutedBlock { header, transactions: included, receipts, outcomes, skipped, diff })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        genesis::{ChainGenesis, funded_genesis},
        state::MemoryState,
    };
    use alloy_consensus::{SignableTransaction, TxEip1559, TxLegacy};
    use alloy_eips::eip4788::BEACON_ROOTS_ADDRESS;
    use alloy_primitives::{TxKind, address};
    use alloy_signer::SignerSync;
    use alloy_signer_local::PrivateKeySigner;

    const BOB: Address = address!("0x0000000000000000000000000000000000000b0b");

    fn setup() -> (ChainConfig, PrivateKeySigner, ChainGenesis) {
        let config = ChainConfig::dev_defaults();
        let signer = PrivateKeySigner::from_bytes(&B256::repeat_byte(0x11)).unwrap();
        let genesis =
            funded_genesis(&config, 1_000, [signer.address()], U256::from(10u128.pow(18)));
        let chain = ChainGenesis::from_genesis(&config, &genesis);
        (config, signer, chain)
    }

    fn transfer(
        config: &ChainConfig,
        signer: &PrivateKeySigner,
        nonce: u64,
        value: u64,
    ) -> RecoveredTx {
        let tx = TxEip1559 {
            chain_id: config.chain_id,
            nonce,
            gas_limit: 21_000,
            max_fee_per_gas: 3_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            to: TxKind::Call(BOB),
            value: U256::from(value),
            ..Default::default()
        };
        let signature = signer.sign_hash_sync(&tx.signature_hash()).unwrap();
        RecoveredTx::new_unchecked(tx.into_signed(signature).into(), signer.address())
    }

    fn build(
        config: &ChainConfig,
        state: &mut MemoryState,
        parent: &Header,
        txs: Vec<RecoveredTx>,
    ) -> SealedBlock {
        let parent = ParentBlock { header: parent, hash: parent.hash_slow() };
        let executed = execute_block(
            config,
            Engine::Sequential,
            state,
            parent,
            2_000,
            txs,
            InvalidTxPolicy::Skip,
        )
        .unwrap();
        state.apply(&executed.diff);
        executed.seal(state.state_root())
    }

    #[test]
    fn transfer_pays_tip_to_fee_recipient_and_burns_base_fee() {
        let (config, signer, mut chain) = setup();
        let sealed =
            build(&config, &mut chain.state, &chain.header, vec![transfer(&config, &signer, 0, 5)]);
        let block = &sealed.block;
        assert_eq!(block.header.number, 1);
        assert_eq!(block.header.parent_hash, chain.hash);
        assert_eq!(block.header.gas_used, 21_000);
        assert_eq!(block.receipts.len(), 1);
        assert!(block.receipts[0].is_success());
        assert_eq!(sealed.hash, block.header.hash_slow());

        let base_fee = block.header.base_fee_per_gas.unwrap() as u128;
        let tip = 1_000_000_000u128.min(3_000_000_000 - base_fee);
        let state = &mut chain.state;
        assert_eq!(state.account(&BOB).unwrap().balance, U256::from(5));
        assert_eq!(state.account(&config.fee_recipient).unwrap().balance, U256::from(21_000 * tip));
        let sender = state.account(&signer.address()).unwrap();
        assert_eq!(sender.nonce, 1);
        assert_eq!(
            sender.balance,
            U256::from(10u128.pow(18) - 5 - 21_000 * (base_fee + tip)),
            "the sender pays base fee and tip; only the tip reaches the fee recipient"
        );
        assert_eq!(block.header.state_root, state.state_root());
    }

    #[test]
    fn invalid_transactions_are_skipped_or_reject_the_block() {
        let (config, signer, chain) = setup();
        let mut state = chain.state.clone();
        // Nonce 1 before nonce 0 is deferred; a replayed nonce 0 is invalid.
        let txs = vec![
            transfer(&config, &signer, 1, 1),
            transfer(&config, &signer, 0, 1),
            transfer(&config, &signer, 0, 2),
        ];
        let sealed = build(&config, &mut state, &chain.header, txs.clone());
        assert_eq!(sealed.block.transactions.len(), 1);
        assert!(matches!(sealed.block.skipped[0].reason, SkipReason::Deferred(_)));
        assert_eq!(sealed.block.skipped[1].reason, SkipReason::Invalid("nonce too low".into()));

        let parent = ParentBlock { header: &chain.header, hash: chain.hash };
        let err = execute_block(
            &config,
            Engine::Sequential,
            &chain.state,
            parent,
            2_000,
            txs,
            InvalidTxPolicy::Reject,
        )
        .unwrap_err();
        assert!(matches!(err, BlockError::InvalidTransaction { index: 0, .. }), "{err}");
    }

    #[test]
    fn contract_creation_persists_code_and_storage() {
        let (config, signer, chain) = setup();
        let mut state = chain.state.clone();
        // Init code: SSTORE(0, 42); return a 1-byte runtime `STOP`.
        let init = alloy_primitives::hex!("602a60005560016000f3");
        let tx = TxLegacy {
            chain_id: Some(config.chain_id),
            nonce: 0,
            gas_price: 2_000_000_000,
            gas_limit: 100_000,
            to: TxKind::Create,
            value: U256::ZERO,
            input: Bytes::copy_from_slice(&init),
        };
        let signature = signer.sign_hash_sync(&tx.signature_hash()).unwrap();
        let tx = RecoveredTx::new_unchecked(tx.into_signed(signature).into(), signer.address());
        let sealed = build(&config, &mut state, &chain.header, vec![tx]);
        let created = sealed.block.outcomes[0].contract_address.expect("created");
        assert_eq!(created, signer.address().create(0));
        assert_eq!(state.storage_ref(created, U256::ZERO).unwrap(), U256::from(42));
        assert_eq!(sealed.block.diff.code.len(), 1);
        // Rebuilding the state from scratch with the diff gives the same root.
        let mut replay = chain.state.clone();
        replay.apply(&sealed.block.diff);
        assert_eq!(replay.state_root(), sealed.block.header.state_root);
    }

    #[test]
    fn the_predeployed_create2_deployer_deploys_at_the_predicted_address() {
        let (config, signer, chain) = setup();
        let mut state = chain.state.clone();
        let init = alloy_primitives::hex!("602a60005560016000f3");
        let salt = B256::repeat_byte(0x5a);
        let tx = TxEip1559 {
            chain_id: config.chain_id,
            nonce: 0,
            gas_limit: 200_000,
            max_fee_per_gas: 3_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            to: TxKind::Call(crate::genesis::CREATE2_DEPLOYER_ADDRESS),
            input: [salt.as_slice(), &init].concat().into(),
            ..Default::default()
        };
        let signature = signer.sign_hash_sync(&tx.signature_hash()).unwrap();
        let tx = RecoveredTx::new_unchecked(tx.into_signed(signature).into(), signer.address());
        let sealed = build(&config, &mut state, &chain.header, vec![tx]);
        assert!(sealed.block.receipts[0].status());
        let created = crate::genesis::CREATE2_DEPLOYER_ADDRESS.create2_from_code(salt, init);
        assert_eq!(state.storage_ref(created, U256::ZERO).unwrap(), U256::from(42));
        let code_hash = state.basic_ref(created).unwrap().expect("created").code_hash;
        assert_eq!(code_hash, alloy_primitives::keccak256([0u8]));
    }

    /// An empty block after the genesis of `chain` under `env`'s changes.
    fn empty_block(
        config: &ChainConfig,
        chain: &ChainGenesis,
        change: impl FnOnce(&mut BlockEnvironment),
    ) -> (BlockEnvironment, MemoryState, SealedBlock) {
        let parent = ParentBlock { header: &chain.header, hash: chain.hash };
        let mut env = BlockEnvironment::for_chain(config, parent, 1_234_567);
        change(&mut env);
        let mut state = chain.state.clone();
        let executed =
            execute_block_in(&env, Engine::Sequential, &state, vec![], InvalidTxPolicy::Reject)
                .unwrap();
        state.apply(&executed.diff);
        let sealed = executed.seal(state.state_root());
        (env, state, sealed)
    }

    #[test]
    fn beacon_root_system_call_stores_the_root_by_timestamp() {
        let (config, _, chain) = setup();
        let root = B256::repeat_byte(0xbe);
        let (env, state, sealed) =
            empty_block(&config, &chain, |env| env.parent_beacon_block_root = Some(root));
        // EIP-4788 ring buffer: slot `t % 8191` holds t, slot `t % 8191 + 8191` the root.
        let slot = U256::from(env.timestamp % 8191);
        assert_eq!(state.storage_ref(BEACON_ROOTS_ADDRESS, slot).unwrap(), U256::from(1_234_567));
        assert_eq!(
            state.storage_ref(BEACON_ROOTS_ADDRESS, slot + U256::from(8191)).unwrap(),
            U256::from_be_bytes(root.0)
        );
        let diff = &sealed.block.diff;
        assert_eq!(diff.accounts.keys().collect::<Vec<_>>(), [&BEACON_ROOTS_ADDRESS]);
        assert_eq!(diff.accounts[&BEACON_ROOTS_ADDRESS].storage.len(), 2);
        assert_eq!(sealed.block.header.parent_beacon_block_root, Some(root));
        assert_eq!(sealed.block.header.gas_used, 0, "system calls use no block gas");
    }

    #[test]
    fn without_the_beacon_roots_contract_the_system_call_is_a_no_op() {
        let (config, signer, mut chain) = setup();
        chain.state.apply(&StateDiff {
            accounts: [(
                BEACON_ROOTS_ADDRESS,
                crate::state::AccountDiff {
                    before: chain.state.account(&BEACON_ROOTS_ADDRESS),
                    after: None,
                    storage_cleared: true,
                    storage: Default::default(),
                },
            )]
            .into(),
            code: Default::default(),
        });
        let (_, _, sealed) = empty_block(&config, &chain, |env| {
            env.parent_beacon_block_root = Some(B256::repeat_byte(1));
        });
        assert!(sealed.block.diff.accounts.is_empty());
        assert!(chain.state.account(&signer.address()).is_some());
    }

    #[test]
    fn withdrawals_credit_gwei_after_the_transactions() {
        let (config, signer, chain) = setup();
        let funded = signer.address();
        let fresh = Address::repeat_byte(0x77);
        let untouched = Address::repeat_byte(0x78);
        let withdrawal =
            |index, address, amount| Withdrawal { index, validator_index: 9, address, amount };
        let withdrawals = vec![
            withdrawal(0, funded, 5),
            withdrawal(1, fresh, 2),
            withdrawal(2, fresh, 3),
            // A zero amount to a missing account creates nothing (EIP-161).
            withdrawal(3, untouched, 0),
        ];
        let (_, state, sealed) =
            empty_block(&config, &chain, |env| env.withdrawals = withdrawals.clone());
        let gwei = U256::from(1_000_000_000u64);
        assert_eq!(
            state.account(&funded).unwrap().balance,
            U256::from(10u128.pow(18)) + U256::from(5) * gwei
        );
        assert_eq!(state.account(&fresh).unwrap().balance, U256::from(5) * gwei);
        assert_eq!(state.account(&untouched), None);
        assert!(!sealed.block.diff.accounts.contains_key(&untouched));
        assert_eq!(sealed.block.diff.accounts[&fresh].before, None);
        assert_eq!(
            sealed.block.header.withdrawals_root,
            Some(proofs::calculate_withdrawals_root(&withdrawals))
        );
    }
}
