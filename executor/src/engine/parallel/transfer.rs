//! The plain-transfer fast path: a value transfer to an account without code,
//! applied without revm, with the recipient credited lazily.
//!
//! It only runs when the outcome is certain to be revm's: a legacy, EIP-2930
//! or EIP-1559 call with no input and no access list, a non-zero value, to
//! an address that is neither the sender, the beneficiary, nor a precompile,
//! under a fork from London up to Prague with every mainnet check enabled,
//! whose fee fields, gas limit (at least 21,000, within the block's),
//! sender (no code: EIP-3607; exact nonce; balance covering
//! `gas_limit * max_fee + value`) and recipient (no code) pass every check
//! revm makes. Then revm would charge exactly the intrinsic 21,000 gas, with
//! no refund, bump the nonce, move the value and pay
//! `(effective_price - base_fee) * 21,000` to the beneficiary; that is what
//! this does. Anything else, including every invalid transaction, goes to
//! revm, so error texts stay revm's.

use super::{
    memory::{AccountCore, Location, Write, credit},
    view::{TxView, ViewError},
};
use crate::{engine::ExecutionEnv, state::BasicAccount};
use alloy_primitives::{Address, TxKind, U256};
use alloy_trie::KECCAK_EMPTY;
use revm::{
    DatabaseRef,
    context::{Cfg, Transaction, TxEnv},
    precompile::Precompiles,
    primitives::hardfork::SpecId,
};

/// Gas of a plain transfer (the intrinsic gas of a call without data).
pub(crate) const TRANSFER_GAS: u64 = 21_000;

/// A transfer done by the fast path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlainTransfer {
    /// Sender.
    pub(crate) sender: Address,
    /// Sender after the transfer (fee paid, nonce bumped).
    pub(crate) sender_after: BasicAccount,
    /// Recipient, credited lazily.
    pub(crate) to: Address,
    /// Value.
    pub(crate) value: U256,
    /// Fee owed to the beneficiary (already in `sender_after` if the sender
    /// is the beneficiary).
    pub(crate) reward: U256,
}

impl PlainTransfer {
    /// Appends the transfer's writes, except the beneficiary's.
    pub(crate) fn writes(&self, writes: &mut Vec<(Location, Write)>) {
        writes.extend([
            (
                Location::Basic(self.sender),
                Write::Basic(Some(AccountCore {
                    nonce: self.sender_after.nonce,
                    code_hash: self.sender_after.code_hash,
                })),
            ),
            (Location::Balance(self.sender), Write::SetBalance(self.sender_after.balance)),
            (Location::Balance(self.to), Write::AddBalance(self.value)),
        ]);
    }
}

/// Whether the transaction and config alone allow the fast path.
fn eligible(env: &ExecutionEnv, precompiles: &Precompiles, tx: &TxEnv) -> Option<Address> {
    let cfg = &env.cfg;
    let spec = cfg.spec;
    let TxKind::Call(to) = tx.kind else { return None };
    let checks_enabled = !cfg.is_base_fee_check_disabled()
        && !cfg.is_priority_fee_check_disabled()
        && !cfg.is_block_gas_limit_disabled()
        && !cfg.is_nonce_check_disabled()
        && !cfg.is_balance_check_disabled()
        && !cfg.is_eip3607_disabled()
        && !cfg.is_fee_charge_disabled()
        && !cfg.is_eip7623_disabled()
        && cfg.tx_chain_id_check();
    let basefee = env.block.basefee as u128;
    let fees_ok = match tx.tx_type {
        0 | 1 => tx.gas_price >= basefee,
        2 => tx.gas_priority_fee.is_some_and(|p| p <= tx.gas_price) && tx.gas_price >= basefee,
        _ => false,
    };
    let ok = checks_enabled
        && spec.is_enabled_in(SpecId::LONDON)
        && !spec.is_enabled_in(SpecId::OSAKA)
        && fees_ok
        && tx.chain_id == Some(cfg.chain_id)
        && tx.data.is_empty()
        && tx.access_list.0.is_empty()
        && tx.authorization_list.is_empty()
        && tx.blob_hashes.is_empty()
        && !tx.value.is_zero()
        && tx.gas_limit >= TRANSFER_GAS
        && tx.gas_limit <= env.block.gas_limit
        && tx.gas_limit <= cfg.tx_gas_limit_cap()
        && tx.nonce != u64::MAX
        && to != tx.caller
        && to != env.block.beneficiary
        && !precompiles.contains(&to);
    ok.then_some(to)
}

/// Applies `tx` as a plain transfer if it is one and revm would accept it;
/// `None` sends it to revm.
pub(crate) fn try_plain_transfer<DB: DatabaseRef>(
    env: &ExecutionEnv,
    precompiles: &Precompiles,
    tx: &TxEnv,
    view: &mut TxView<'_, DB>,
) -> Result<Option<PlainTransfer>, ViewError<DB::Error>> {
    let Some(to) = eligible(env, precompiles, tx) else { return Ok(None) };
    // A missing sender may still hold lazily credited wei: nonce 0, no code.
    let (sender, balance) = view.account(tx.caller)?;
    let sender = sender.unwrap_or(AccountCore { nonce: 0, code_hash: KECCAK_EMPTY });
    if sender.code_hash != KECCAK_EMPTY || sender.nonce != tx.nonce {
        return Ok(None);
    }
    match tx.max_balance_spending() {
        Ok(max) if max <= balance => {}
        _ => return Ok(None),
    }
    if view.core(to)?.is_some_and(|c| c.code_hash != KECCAK_EMPTY) {
        return Ok(None);
    }
    let basefee = env.block.basefee as u128;
    let price = tx.effective_gas_price(basefee);
    let fee = U256::from(price * TRANSFER_GAS as u128);
    let reward = U256::from((price - basefee) * TRANSFER_GAS as u128);
    let mut sender_balance = balance - fee - tx.value;
    if tx.caller == env.block.beneficiary {
        sender_balance = credit(sender_balance, reward);
    }
    Ok(Some(PlainTransfer {
        sender: tx.caller,
        sender_after: BasicAccount {
            nonce: tx.nonce + 1,
            balance: sender_balance,
            code_hash: KECCAK_EMPTY,
        },
        to,
        value: tx.value,
        reward,
    }))
}
