//! Synthetic blocks for the engines' differential tests and benchmarks.
//!
//! The contracts are the real ones compiled from `contracts/src`
//! ([`Token`](Contract::Token), an ERC-20; [`Pool`](Contract::Pool), a
//! constant-product AMM; [`Probe`](Contract::Probe) and
//! [`Child`](Contract::Child), which exercise creation, self-destruct,
//! reverts, gas burning and the other behaviours a parallel engine must
//! reproduce). Their runtime code and storage are installed directly into a
//! [`MemoryState`], using each contract's documented storage layout, so a
//! workload needs no deployment transactions.
//!
//! Transactions carry a fixed dummy signature and a known sender
//! ([`Recovered::new_unchecked`]): the engines take recovered senders, and
//! benchmarks measure execution only.
//!
//! ```
//! use rollup_executor::{Engine, InvalidTxPolicy, workload::Workload};
//!
//! let w = Workload::erc20_transfers(8);
//! let out = Engine::Sequential.execute(&w.env, &w.state, &w.txs, InvalidTxPolicy::Skip).unwrap();
//! assert_eq!(out.results.len(), 8);
//! ```

use crate::{
    engine::ExecutionEnv,
    state::{BasicAccount, MemoryState},
    tx::RecoveredTx,
};
use alloy_consensus::{Signed, TxEip1559, TxEnvelope, transaction::Recovered};
use alloy_primitives::{Address, B256, Bytes, Signature, TxKind, U256, keccak256};
use revm::{
    context::{BlockEnv, CfgEnv},
    context_interface::block::BlobExcessGasAndPrice,
    primitives::{eip4844::BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN, hardfork::SpecId},
};

/// Chain id of workload transactions.
pub const CHAIN_ID: u64 = 901;
/// Base fee of workload blocks (wei).
pub const BASE_FEE: u64 = 7;
/// Block number of workload blocks.
pub const BLOCK_NUMBER: u64 = 1_000;

/// A compiled contract from `contracts/artifacts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// ERC-20 (`balanceOf` slot 0, `allowance` slot 1, `totalSupply` slot 2).
    Token,
    /// Constant-product AMM (`token0`, `token1`, `reserve0`, `reserve1` in
    /// slots 0 to 3).
    Pool,
    /// Behaviour probe (`slots[i]` is storage slot `i`).
    Probe,
    /// What `Probe` deploys.
    Child,
}

impl Contract {
    fn artifact(self) -> &'static str {
        match self {
            Self::Token => include_str!("../../contracts/artifacts/Token.json"),
            Self::Pool => include_str!("../../contracts/artifacts/Pool.json"),
            Self::Probe => include_str!("../../contracts/artifacts/Probe.json"),
            Self::Child => include_str!("../../contracts/artifacts/Child.json"),
        }
    }

    fn hex(self, field: &str) -> Bytes {
        let json: serde_json::Value =
            serde_json::from_str(self.artifact()).expect("artifacts are valid JSON");
        let hex = json[field]["object"].as_str().expect("artifact has bytecode");
        hex.parse().expect("artifact bytecode is hex")
    }

    /// Runtime (deployed) code.
    pub fn runtime(self) -> Bytes {
        self.hex("deployedBytecode")
    }

    /// Creation code (constructor arguments not included).
    pub fn creation(self) -> Bytes {
        self.hex("bytecode")
    }
}

/// ABI-encodes a call: the selector of `signature` and 32-byte words.
pub fn calldata(signature: &str, words: &[U256]) -> Bytes {
    let mut out = keccak256(signature.as_bytes())[..4].to_vec();
    for w in words {
        out.extend_from_slice(&w.to_be_bytes::<32>());
    }
    out.into()
}

/// An address as an ABI word.
pub fn word(address: Address) -> U256 {
    U256::from_be_slice(address.as_slice())
}

/// Storage slot of `mapping[key]` for a mapping at `slot`.
pub fn mapping_slot(key: U256, slot: U256) -> U256 {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(&key.to_be_bytes::<32>());
    buf[32..].copy_from_slice(&slot.to_be_bytes::<32>());
    U256::from_be_bytes(keccak256(buf).0)
}

/// `Token.balanceOf[owner]`'s slot.
pub fn token_balance_slot(owner: Address) -> U256 {
    mapping_slot(word(owner), U256::ZERO)
}

/// `Token.allowance[owner][spender]`'s slot.
pub fn token_allowance_slot(owner: Address, spender: Address) -> U256 {
    mapping_slot(word(spender), mapping_slot(word(owner), U256::from(1)))
}

/// The `i`-th user account of a workload.
pub fn user(i: usize) -> Address {
    let mut bytes = [0u8; 20];
    bytes[0] = 0x10;
    bytes[12..].copy_from_slice(&(i as u64).to_be_bytes());
    Address::from(bytes)
}

/// The `i`-th fresh (initially missing) account of a workload.
pub fn fresh(i: usize) -> Address {
    let mut bytes = [0u8; 20];
    bytes[0] = 0x20;
    bytes[12..].copy_from_slice(&(i as u64).to_be_bytes());
    Address::from(bytes)
}

/// The `i`-th contract address of a workload.
pub fn contract_address(i: usize) -> Address {
    let mut bytes = [0u8; 20];
    bytes[0] = 0xc0;
    bytes[12..].copy_from_slice(&(i as u64).to_be_bytes());
    Address::from(bytes)
}

/// The beneficiary of workload blocks.
pub const BENEFICIARY: Address = Address::repeat_byte(0xbe);

/// The Cancun execution environment of a workload block.
pub fn env(gas_limit: u64, beneficiary: Address) -> ExecutionEnv {
    ExecutionEnv {
        cfg: CfgEnv::new_with_spec(SpecId::CANCUN).with_chain_id(CHAIN_ID),
        block: BlockEnv {
            number: U256::from(BLOCK_NUMBER),
            beneficiary,
            timestamp: U256::from(1_700_000_000u64),
            gas_limit,
            basefee: BASE_FEE,
            difficulty: U256::ZERO,
            prevrandao: Some(B256::repeat_byte(0x42)),
            blob_excess_gas_and_price: Some(BlobExcessGasAndPrice::new(
                0,
                BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN,
            )),
            ..Default::default()
        },
    }
}

/// An EIP-1559 transaction with a known sender and a dummy signature.
#[allow(clippy::too_many_arguments)]
pub fn tx(
    from: Address,
    nonce: u64,
    to: TxKind,
    value: U256,
    input: Bytes,
    gas_limit: u64,
    max_fee: u128,
    priority_fee: u128,
) -> RecoveredTx {
    let tx = TxEip1559 {
        chain_id: CHAIN_ID,
        nonce,
        gas_limit,
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: priority_fee,
        to,
        value,
        access_list: Default::default(),
        input,
    };
    // A distinct hash per transaction; the engines never look at it.
    let mut preimage = from.to_vec();
    preimage.extend_from_slice(&nonce.to_be_bytes());
    preimage.extend_from_slice(&value.to_be_bytes::<32>());
    let hash = keccak256(preimage);
    let signed =
        Signed::new_unchecked(tx, Signature::new(U256::from(1), U256::from(1), false), hash);
    Recovered::new_unchecked(TxEnvelope::Eip1559(signed), from)
}

/// Installs a contract's runtime code at `address`.
pub fn install(state: &mut MemoryState, address: Address, contract: Contract) {
    let code_hash = state.insert_code(contract.runtime());
    state.insert_account(address, BasicAccount { nonce: 1, balance: U256::ZERO, code_hash });
}

/// A block to execute: environment, snapshot and transactions.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Short name (benchmark output).
    pub name: String,
    /// Execution environment.
    pub env: ExecutionEnv,
    /// Snapshot.
    pub state: MemoryState,
    /// Ordered transactions.
    pub txs: Vec<RecoveredTx>,
}

/// Wei every workload user starts with.
pub const USER_BALANCE: u128 = 1_000_000_000_000_000_000_000;
/// Tokens every workload user starts with.
pub const USER_TOKENS: u64 = 1_000_000_000;
const GAS_LIMIT: u64 = 1_000_000_000_000;
const MAX_FEE: u128 = 100;
const TIP: u128 = 2;

fn funded_users(state: &mut MemoryState, n: usize) {
    for i in 0..n {
        state.insert_account(user(i), BasicAccount::with_balance(U256::from(USER_BALANCE)));
    }
}

impl Workload {
    fn new(name: impl Into<String>, state: MemoryState, txs: Vec<RecoveredTx>) -> Self {
        Self { name: name.into(), env: env(GAS_LIMIT, BENEFICIARY), state, txs }
    }

    /// `n` plain transfers from distinct senders to distinct fresh accounts.
    pub fn raw_transfers(n: usize) -> Self {
        let mut state = MemoryState::new();
        funded_users(&mut state, n);
        let txs = (0..n)
            .map(|i| {
                tx(
                    user(i),
                    0,
                    TxKind::Call(fresh(i)),
                    U256::from(1_000 + i),
                    Bytes::new(),
                    21_000,
                    MAX_FEE,
                    TIP,
                )
            })
            .collect();
        Self::new("raw_transfers", state, txs)
    }

    /// `n` ERC-20 transfers from distinct holders to distinct accounts; a
    /// share `hot_percent` of them (spread evenly) go to one hot recipient.
    pub fn erc20_hotspot(n: usize, hot_percent: usize) -> Self {
        let token = contract_address(0);
        let mut state = MemoryState::new();
        funded_users(&mut state, n);
        install(&mut state, token, Contract::Token);
        state.insert_storage_many(
            (0..n).map(|i| (token, token_balance_slot(user(i)), U256::from(USER_TOKENS))),
        );
        state.insert_storage(token, U256::from(2), U256::from(USER_TOKENS) * U256::from(n));
        let hot = fresh(usize::MAX >> 8);
        let txs = (0..n)
            .map(|i| {
                let is_hot = (i * hot_percent) / 100 != ((i + 1) * hot_percent) / 100;
                let to = if is_hot { hot } else { fresh(i) };
                let input =
                    calldata("transfer(address,uint256)", &[word(to), U256::from(1 + i % 1000)]);
                tx(user(i), 0, TxKind::Call(token), U256::ZERO, input, 100_000, MAX_FEE, TIP)
            })
            .collect();
        Self::new(format!("erc20_hotspot_{hot_percent}pct"), state, txs)
    }

    /// `n` independent ERC-20 transfers.
    pub fn erc20_transfers(n: usize) -> Self {
        Self { name: "erc20_transfers".into(), ..Self::erc20_hotspot(n, 0) }
    }

    /// `n` plain transfers of which a share `hot_percent` go to one account
    /// (lazy credits: these should not conflict).
    pub fn transfer_hotspot(n: usize, hot_percent: usize) -> Self {
        let mut w = Self::raw_transfers(n);
        let hot = fresh(usize::MAX >> 8);
        for (i, t) in w.txs.iter_mut().enumerate() {
            if (i * hot_percent) / 100 != ((i + 1) * hot_percent) / 100 {
                *t = tx(
                    user(i),
                    0,
                    TxKind::Call(hot),
                    U256::from(1_000 + i),
                    Bytes::new(),
                    21_000,
                    MAX_FEE,
                    TIP,
                );
            }
        }
        w.name = format!("transfer_hotspot_{hot_percent}pct");
        w
    }

    /// `n` swaps spread round-robin over `pools` constant-product pools
    /// (two shared tokens), each by a distinct trader.
    pub fn amm_swaps(n: usize, pools: usize) -> Self {
        let token0 = contract_address(0);
        let token1 = contract_address(1);
        let pool = |p: usize| contract_address(100 + p);
        let mut state = MemoryState::new();
        funded_users(&mut state, n);
        install(&mut state, token0, Contract::Token);
        install(&mut state, token1, Contract::Token);
        let reserve = U256::from(1_000_000_000_000u64);
        let mut slots = Vec::new();
        for p in 0..pools {
            install(&mut state, pool(p), Contract::Pool);
            slots.extend([
                (pool(p), U256::ZERO, word(token0)),
                (pool(p), U256::from(1), word(token1)),
                (pool(p), U256::from(2), reserve),
                (pool(p), U256::from(3), reserve),
                (token0, token_balance_slot(pool(p)), reserve),
                (token1, token_balance_slot(pool(p)), reserve),
            ]);
        }
        for i in 0..n {
            let (token, p) =
                (if (i / pools).is_multiple_of(2) { token0 } else { token1 }, i % pools);
            slots.push((token, token_balance_slot(user(i)), U256::from(USER_TOKENS)));
            slots.push((token, token_allowance_slot(user(i), pool(p)), U256::MAX));
        }
        state.insert_storage_many(slots);
        let txs = (0..n)
            .map(|i| {
                let zero_for_one = (i / pools).is_multiple_of(2);
                let input = calldata(
                    "swap(uint256,bool,uint256)",
                    &[U256::from(1_000 + i), U256::from(zero_for_one as u8), U256::from(1)],
                );
                tx(
                    user(i),
                    0,
                    TxKind::Call(pool(i % pools)),
                    U256::ZERO,
                    input,
                    200_000,
                    MAX_FEE,
                    TIP,
                )
            })
            .collect();
        Self::new(format!("amm_swaps_{pools}_pools"), state, txs)
    }

    /// `n` transactions that each increment the same storage slot: every one
    /// depends on the one before.
    pub fn dependent_chain(n: usize) -> Self {
        let probe = contract_address(0);
        let mut state = MemoryState::new();
        funded_users(&mut state, n);
        install(&mut state, probe, Contract::Probe);
        let input = calldata("bump(uint256)", &[U256::ZERO]);
        let txs = (0..n)
            .map(|i| {
                tx(
                    user(i),
                    0,
                    TxKind::Call(probe),
                    U256::ZERO,
                    input.clone(),
                    100_000,
                    MAX_FEE,
                    TIP,
                )
            })
            .collect();
        Self::new("dependent_chain", state, txs)
    }

    /// The first `len` transactions and the rest, as two workloads over the
    /// same snapshot (the benchmark's "ceiling": two halves run apart).
    pub fn split(&self, len: usize) -> (Self, Self) {
        let (a, b) = self.txs.split_at(len.min(self.txs.len()));
        (Self { txs: a.to_vec(), ..self.clone() }, Self { txs: b.to_vec(), ..self.clone() })
    }

    /// Total gas the block uses, for throughput figures.
    pub fn total_gas(&self, results: &[crate::engine::TxResult]) -> u64 {
        results
            .iter()
            .map(|r| match r {
                crate::engine::TxResult::Executed(e) => e.gas_used,
                crate::engine::TxResult::Skipped(_) => 0,
            })
            .sum()
    }
}
