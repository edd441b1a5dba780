//! One incarnation of one transaction: run it (through the plain-transfer
//! fast path or revm) against its [`TxView`] and turn what it did into a
//! write set for the multi-version memory.

use super::{
    TxIdx,
    handler::DeferredRewardHandler,
    memory::{AccountCore, Location, Write, credit},
    transfer,
    view::{NewCode, ReadRecord, TxView, ViewError},
};
use crate::{
    block::SkipReason,
    engine::{ExecutedTx, ExecutionEnv, sequential::classify},
    state::{AccountChange, BasicAccount},
};
use alloy_primitives::{Address, U256};
use revm::{
    DatabaseRef, ExecuteEvm,
    context::{ContextSetters, TxEnv, result::EVMError},
    handler::{Handler, MainnetContext, MainnetEvm},
    precompile::Precompiles,
    state::Account,
};

/// A worker's EVM, reused for every incarnation it executes in a block.
pub(crate) type WorkerEvm<'a, DB> = MainnetEvm<MainnetContext<TxView<'a, DB>>>;

/// What one incarnation produced.
#[derive(Debug)]
pub(crate) struct TxOutput {
    /// Everything it read, in order.
    pub(crate) reads: Box<[ReadRecord]>,
    /// Everything it wrote, one write per location.
    pub(crate) writes: Box<[(Location, Write)]>,
    /// The highest transaction whose write to an account's fields or to a
    /// slot it read (how close its dependencies are; balances do not count,
    /// credits commute).
    pub(crate) depends_on: Option<TxIdx>,
    /// Its result.
    pub(crate) outcome: Outcome,
}

/// A transaction's result.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// revm rejected it; it changes nothing.
    Invalid(SkipReason),
    /// It is included.
    Executed(ExecutedTx, Box<Changes>),
}

/// The state changes of an included transaction, for the block's diff.
#[derive(Debug)]
pub(crate) enum Changes {
    /// revm's write set, with the fee already added to the beneficiary if
    /// the transaction loaded it; otherwise `reward` is still owed.
    Evm {
        /// revm's per-account changes (touched accounts).
        state: Box<[AccountChange]>,
        /// Fee owed to a beneficiary absent from `state` (`None`: none, and
        /// the beneficiary is not touched).
        owed_reward: Option<U256>,
    },
    /// A plain value transfer done by the fast path.
    Transfer(transfer::PlainTransfer),
}

/// How an incarnation ended.
#[derive(Debug)]
pub(crate) enum Execution {
    /// It ran (successfully, reverted, halted or invalid).
    Done(TxOutput),
    /// It read an estimate of this lower transaction.
    Blocked(TxIdx),
    /// The snapshot or revm failed: the block falls back to sequential
    /// execution, which reports the error.
    Fatal,
}

/// Everything the workers share to execute transactions.
#[derive(Debug)]
pub(crate) struct ExecContext<'a, DB> {
    pub(crate) env: &'a ExecutionEnv,
    pub(crate) base: &'a DB,
    pub(crate) memory: &'a super::memory::MvMemory,
    pub(crate) code: &'a NewCode,
    pub(crate) precompiles: &'static Precompiles,
}

impl<'a, DB: DatabaseRef> ExecContext<'a, DB> {
    /// A worker's EVM for this block.
    pub(crate) fn worker_evm(&self) -> WorkerEvm<'a, DB> {
        let view = TxView {
            tx: 0,
            memory: self.memory,
            base: self.base,
            code: self.code,
            reads: Vec::new(),
            latest_writer: None,
        };
        self.env.evm(view)
    }

    /// Executes one incarnation of transaction `tx`. `writes` is the
    /// worker's scratch buffer (the output gets an exact-size copy, so the
    /// buffers stay warm and nothing oversized is kept until finalization).
    pub(crate) fn execute(
        &self,
        evm: &mut WorkerEvm<'a, DB>,
        tx: TxIdx,
        tx_env: TxEnv,
        writes: &mut Vec<(Location, Write)>,
    ) -> Execution {
        evm.ctx.journaled_state.database.tx = tx;
        evm.ctx.journaled_state.database.reads.clear();
        evm.ctx.journaled_state.database.latest_writer = None;
        writes.clear();
        let result = self.try_execute(evm, tx_env, writes);
        match result {
            Ok(Some(outcome)) => Execution::Done(TxOutput {
                reads: evm.ctx.journaled_state.database.reads.as_slice().into(),
                writes: writes.as_slice().into(),
                depends_on: evm.ctx.journaled_state.database.latest_writer,
                outcome,
            }),
            Ok(None) => Execution::Fatal,
            Err(ViewError::Blocked(i)) => Execution::Blocked(i),
            Err(ViewError::Base(_)) => Execution::Fatal,
        }
    }

    fn try_execute(
        &self,
        evm: &mut WorkerEvm<'a, DB>,
        tx_env: TxEnv,
        writes: &mut Vec<(Location, Write)>,
    ) -> Result<Option<Outcome>, ViewError<DB::Error>> {
        let beneficiary = self.env.block.beneficiary;
        let view = &mut evm.ctx.journaled_state.database;
        if let Some(plain) =
            transfer::try_plain_transfer(self.env, self.precompiles, &tx_env, view)?
        {
            plain.writes(writes);
            beneficiary_writes(view, beneficiary, Some(plain.reward), writes)?;
            let result = ExecutedTx {
                success: true,
                gas_used: transfer::TRANSFER_GAS,
                logs: Vec::new(),
                contract_address: None,
            };
            return Ok(Some(Outcome::Executed(result, Box::new(Changes::Transfer(plain)))));
        }

        let mut handler = DeferredRewardHandler::new();
        evm.ctx.set_tx(tx_env);
        let result = handler.run(evm);
        let mut state = evm.finalize();
        let view = &mut evm.ctx.journaled_state.database;
        let result = match result {
            Ok(result) => result,
            Err(EVMError::Transaction(invalid)) => {
                return Ok(Some(Outcome::Invalid(classify(&invalid))));
            }
            Err(EVMError::Database(e)) => return Err(e),
            Err(_) => return Ok(None),
        };
        let mut owed_reward = handler.reward();
        if let Some(reward) = owed_reward
            && let Some(account) = state.get_mut(&beneficiary)
        {
            account.info.balance = credit(account.info.balance, reward);
            account.mark_touch();
            owed_reward = None;
        }
        for (address, account) in &state {
            account_writes(*address, account, &view.reads, self.code, writes);
        }
        beneficiary_writes(view, beneficiary, owed_reward, writes)?;
        let executed = ExecutedTx {
            success: result.is_success(),
            gas_used: result.tx_gas_used(),
            logs: result.logs().to_vec(),
            contract_address: result.created_address(),
        };
        // Only a compact copy is kept (for accounts whose diff is replayed):
        // revm's maps are freed here, so the next transaction reuses them.
        let state =
            state.iter().filter_map(|(a, account)| AccountChange::new(*a, account)).collect();
        Ok(Some(Outcome::Executed(executed, Box::new(Changes::Evm { state, owed_reward }))))
    }
}

/// What the incarnation read of an account (its last read of each field).
fn read_of(reads: &[ReadRecord], address: Address) -> (Option<Option<AccountCore>>, Option<U256>) {
    let mut core = None;
    let mut balance = None;
    for read in reads {
        match *read {
            ReadRecord::Basic(a, c, _) if a == address => core = Some(c),
            ReadRecord::Balance(a, b, _) if a == address => balance = Some(b),
            _ => {}
        }
    }
    (core, balance)
}

/// The writes of one account of revm's write set: the same decisions as
/// [`crate::state::BlockState`]'s commit (destroyed or touched-empty accounts
/// leave with their storage; created ones wipe it), expressed per location,
/// writing only what changed.
fn account_writes(
    address: Address,
    account: &Account,
    reads: &[ReadRecord],
    code: &NewCode,
    writes: &mut Vec<(Location, Write)>,
) {
    if !account.is_touched() {
        return;
    }
    let (read_core, read_balance) = read_of(reads, address);
    if account.is_selfdestructed() || account.is_empty() {
        if read_core != Some(None) {
            writes.push((Location::Basic(address), Write::Basic(None)));
        }
        if read_balance != Some(U256::ZERO) {
            writes.push((Location::Balance(address), Write::SetBalance(U256::ZERO)));
        }
        writes.push((Location::Clear(address), Write::Clear));
        return;
    }
    if account.is_created() {
        writes.push((Location::Clear(address), Write::Clear));
    }
    if account.is_created()
        && let Some(bytecode) = &account.info.code
        && !bytecode.is_empty()
        && !code.contains_key(&account.info.code_hash)
    {
        code.insert(account.info.code_hash, bytecode.clone());
    }
    let core = Some(AccountCore { nonce: account.info.nonce, code_hash: account.info.code_hash });
    if read_core != Some(core) {
        writes.push((Location::Basic(address), Write::Basic(core)));
    }
    if read_balance != Some(account.info.balance) {
        writes.push((Location::Balance(address), Write::SetBalance(account.info.balance)));
    }
    for (slot, value) in &account.storage {
        if value.is_changed() {
            writes.push((Location::Storage(address, *slot), Write::Storage(value.present_value())));
        }
    }
}

/// The beneficiary's writes when the transaction itself did not load it: a
/// lazy credit of the fee; a zero fee only touches it, which ends it if it
/// is empty (EIP-161), so then it is read.
pub(crate) fn beneficiary_writes<DB: DatabaseRef>(
    view: &mut TxView<'_, DB>,
    beneficiary: Address,
    owed_reward: Option<U256>,
    writes: &mut Vec<(Location, Write)>,
) -> Result<(), ViewError<DB::Error>> {
    let Some(reward) = owed_reward else { return Ok(()) };
    if writes.iter().any(|(l, _)| *l == Location::Balance(beneficiary)) {
        // The fast path already credited a beneficiary that is the sender.
        return Ok(());
    }
    if !reward.is_zero() {
        writes.push((Location::Balance(beneficiary), Write::AddBalance(reward)));
        return Ok(());
    }
    let (core, balance) = view.account(beneficiary)?;
    let empty = balance.is_zero()
        && core.is_none_or(|c| c.nonce == 0 && c.code_hash == alloy_trie::KECCAK_EMPTY);
    if empty {
        if core.is_some() {
            writes.push((Location::Basic(beneficiary), Write::Basic(None)));
        }
        writes.push((Location::Clear(beneficiary), Write::Clear));
    }
    Ok(())
}

/// The account a lazily credited address ends up as (for the diff).
pub(crate) fn touched(info: Option<revm::state::AccountInfo>, amount: U256) -> Option<Account> {
    let mut info = info.unwrap_or_default();
    info.balance = info.balance.checked_add(amount)?;
    let mut account = Account::from(info);
    account.mark_touch();
    Some(account)
}

/// An account whose basic fields the engine computed.
pub(crate) fn computed(account: BasicAccount) -> Account {
    let mut account = Account::from(account.to_info());
    account.mark_touch();
    account
}
