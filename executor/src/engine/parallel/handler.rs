//! A revm handler that computes the beneficiary's fee instead of paying it.
//!
//! Mainnet revm credits the fee to the block's beneficiary at the end of each
//! transaction, which reads and writes the beneficiary's balance: every
//! transaction would conflict with every other. [`DeferredRewardHandler`] is
//! the mainnet handler with one change: `reward_beneficiary` computes the
//! exact same amount and keeps it. The engine records it as a lazy credit,
//! and the block's finalization adds it in order.

use alloy_primitives::U256;
use revm::{
    Database,
    context::{
        ContextTr, Transaction,
        result::{EVMError, HaltReason},
    },
    context_interface::{Block, Cfg},
    handler::{EvmTr, FrameResult, Handler, MainnetContext, MainnetEvm},
    primitives::hardfork::SpecId,
};
use std::{cell::Cell, marker::PhantomData};

/// The mainnet handler, except that the beneficiary's fee is returned, not
/// paid.
#[derive(Debug)]
pub(crate) struct DeferredRewardHandler<DB> {
    reward: Cell<Option<U256>>,
    _db: PhantomData<DB>,
}

impl<DB> DeferredRewardHandler<DB> {
    /// A fresh handler.
    pub(crate) fn new() -> Self {
        Self { reward: Cell::new(None), _db: PhantomData }
    }

    /// The fee owed to the beneficiary (`None`: fees are not charged, and
    /// mainnet would not touch the beneficiary).
    pub(crate) fn reward(&self) -> Option<U256> {
        self.reward.get()
    }
}

impl<DB: Database> Handler for DeferredRewardHandler<DB> {
    type Evm = MainnetEvm<MainnetContext<DB>>;
    type Error = EVMError<DB::Error>;
    type HaltReason = HaltReason;

    fn reward_beneficiary(
        &self,
        evm: &mut Self::Evm,
        exec_result: &mut FrameResult,
    ) -> Result<(), Self::Error> {
        // The same computation as `revm::handler::post_execution::reward_beneficiary`.
        let context = evm.ctx();
        if context.cfg().is_fee_charge_disabled() {
            return Ok(());
        }
        let basefee = context.block().basefee() as u128;
        let effective_gas_price = context.tx().effective_gas_price(basefee);
        let coinbase_gas_price = if context.cfg().spec().is_enabled_in(SpecId::LONDON) {
            effective_gas_price.saturating_sub(basefee)
        } else {
            effective_gas_price
        };
        let gas = exec_result.gas();
        let effective_used = gas.used().saturating_sub(gas.reservoir());
        self.reward.set(Some(U256::from(coinbase_gas_price * effective_used as u128)));
        Ok(())
    }
}
