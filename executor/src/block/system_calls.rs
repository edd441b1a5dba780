//! Block-level system calls: EIP-4788 (Cancun) stores the parent beacon block
//! root in the beacon-roots contract before the block's transactions.
//!
//! EIP-2935 (the block-hash history contract) is Prague, not Cancun: it is not
//! called here (see `docs/decisions.md`).

use super::BlockError;
use crate::{engine::ExecutionEnv, state::BlockState};
use alloy_eips::eip4788::{BEACON_ROOTS_ADDRESS, SYSTEM_ADDRESS};
use alloy_primitives::B256;
use alloy_trie::KECCAK_EMPTY;
use revm::{DatabaseCommit, DatabaseRef, ExecuteEvm, SystemCallEvm, context::result::EVMError};

use crate::state::StateDiff;

/// Runs the EIP-4788 beacon-root system call on top of `state` and returns
/// what it changed.
///
/// As the EIP says, the call is made from `SYSTEM_ADDRESS` with a 30M gas
/// allowance that does not count against the block, pays no fee, and is a
/// no-op when the contract has no code. The system address and the
/// beneficiary are taken out of the call's write set (as reth does): the call
/// neither touches nor creates them. At genesis (block 0) there is no call.
pub fn beacon_root_contract_call<DB: DatabaseRef>(
    env: &ExecutionEnv,
    state: &DB,
    parent_beacon_block_root: B256,
) -> Result<StateDiff, BlockError<DB::Error>> {
    if env.block.number.is_zero() {
        return Ok(StateDiff::default());
    }
    let has_code = state
        .basic_ref(BEACON_ROOTS_ADDRESS)
        .map_err(BlockError::Database)?
        .is_some_and(|account| account.code_hash != KECCAK_EMPTY);
    if !has_code {
        return Ok(StateDiff::default());
    }
    let mut overlay = BlockState::new(state);
    let mut evm = env.evm(&mut overlay);
    // A revert (impossible with the canonical code and a 32-byte input) leaves
    // no writes; only a failure of the EVM or the database stops the block.
    evm.system_call_one(BEACON_ROOTS_ADDRESS, parent_beacon_block_root.into()).map_err(
        |e| match e {
            EVMError::Database(e) => BlockError::Database(e),
            other => BlockError::SystemCall(other.to_string()),
        },
    )?;
    let mut changes = evm.finalize();
    drop(evm);
    changes.remove(&SYSTEM_ADDRESS);
    changes.remove(&env.block.beneficiary);
    overlay.commit(changes);
    overlay.into_diff().map_err(BlockError::Database)
}
