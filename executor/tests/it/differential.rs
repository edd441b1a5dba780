//! Randomized blocks under both engines: plain transfers (to fresh, empty,
//! contract and precompile accounts and to the beneficiary), ERC-20
//! transfers, AMM swaps, CREATE and CREATE2 (also over an address that
//! already has storage), self-destruct (same-transaction and old
//! contracts), reverts, out-of-gas, nonce-too-high/low and
//! insufficient-balance failures, hot storage slots, read-after-write
//! chains, reads of and payments to the beneficiary, transient storage,
//! BLOCKHASH and precompiles; with zero and non-zero tips, several
//! beneficiaries (missing, funded, a sender, a recipient) and small block gas
//! limits. Every block runs under the parallel engine with several thread
//! counts, several times, and must match the sequential engine exactly.
//!
//! Knobs: `PROPTEST_CASES` (default 48) and `EXECUTOR_RACE_REPS`.

use crate::common::assert_engines_agree;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, keccak256};
use proptest::prelude::*;
use rollup_executor::{
    InvalidTxPolicy, MemoryState,
    engine::TxResult,
    state::BasicAccount,
    tx::RecoveredTx,
    workload::{
        self, Contract, calldata, contract_address, fresh, install, token_allowance_slot,
        token_balance_slot, user, word,
    },
};

const SENDERS: usize = 8;
const POOR: usize = 6;
const TOKEN0: usize = 0;
const TOKEN1: usize = 1;
const PROBE: usize = 2;
const OLD_CHILD: usize = 3;
const POOLS: [usize; 2] = [100, 101];
/// Salt whose CREATE2 address is seeded with storage before the block.
const COLLIDING_SALT: u64 = 1;
const COLLIDING_VALUE: u64 = 7;

fn empty_existing() -> Address {
    Address::repeat_byte(0xe0)
}

fn create2_address(deployer: Address, salt: B256, init_code: &[u8]) -> Address {
    deployer.create2(salt, keccak256(init_code))
}

fn child_init_code(value: u64) -> Vec<u8> {
    let mut code = Contract::Child.creation().to_vec();
    code.extend_from_slice(&U256::from(value).to_be_bytes::<32>());
    code
}

#[derive(Debug, Clone, Copy)]
enum Beneficiary {
    Missing,
    Funded,
    Sender,
    Recipient,
}

impl Beneficiary {
    fn address(self) -> Address {
        match self {
            Self::Missing | Self::Funded => workload::BENEFICIARY,
            Self::Sender => user(0),
            Self::Recipient => fresh(0),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Transfer { target: u8, value: u8 },
    Erc20 { target: u8, amount: u8 },
    Swap { pool: u8, zero_for_one: bool, amount: u8 },
    Bump { slot: u8 },
    Chain { from: u8, to: u8 },
    Fail { slot: u8 },
    Burn { rounds: u8, low_gas: bool },
    Create { salt: u8, value: u8 },
    CreateAndDestroy { salt: u8, target: u8 },
    DestroyOld { target: u8 },
    CoinbaseBalance,
    PayCoinbase { value: u8 },
    Transient,
    PreviousHash,
    Precompiles,
    NonceTooHigh,
    NonceTooLow,
    Insufficient,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), any::<u8>()).prop_map(|(target, value)| Op::Transfer { target, value }),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(target, amount)| Op::Erc20 { target, amount }),
        2 => (any::<u8>(), any::<bool>(), any::<u8>())
            .prop_map(|(pool, zero_for_one, amount)| Op::Swap { pool, zero_for_one, amount }),
        2 => any::<u8>().prop_map(|slot| Op::Bump { slot }),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(from, to)| Op::Chain { from, to }),
        1 => any::<u8>().prop_map(|slot| Op::Fail { slot }),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(rounds, low_gas)| Op::Burn { rounds, low_gas }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(salt, value)| Op::Create { salt, value }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(salt, target)| Op::CreateAndDestroy { salt, target }),
        1 => any::<u8>().prop_map(|target| Op::DestroyOld { target }),
        1 => Just(Op::CoinbaseBalance),
        1 => any::<u8>().prop_map(|value| Op::PayCoinbase { value }),
        1 => Just(Op::Transient),
        1 => Just(Op::PreviousHash),
        1 => Just(Op::Precompiles),
        1 => Just(Op::NonceTooHigh),
        1 => Just(Op::NonceTooLow),
        1 => Just(Op::Insufficient),
    ]
}

#[derive(Debug, Clone)]
struct Block {
    beneficiary: Beneficiary,
    tip: u128,
    small_gas_limit: bool,
    ops: Vec<(u8, Op)>,
}

fn block() -> impl Strategy<Value = Block> {
    (
        prop_oneof![
            Just(Beneficiary::Missing),
            Just(Beneficiary::Funded),
            Just(Beneficiary::Sender),
            Just(Beneficiary::Recipient)
        ],
        prop_oneof![Just(0u128), Just(2u128)],
        proptest::bool::weighted(0.15),
        proptest::collection::vec((any::<u8>(), op()), 1..48),
    )
        .prop_map(|(beneficiary, tip, small_gas_limit, ops)| Block {
            beneficiary,
            tip,
            small_gas_limit,
            ops,
        })
}

fn snapshot(beneficiary: Beneficiary) -> MemoryState {
    let mut state = MemoryState::new();
    for i in 0..SENDERS {
        let balance = if i >= POOR { 3_000_000u64 * 100 } else { 1u64 << 62 };
        state.insert_account(user(i), BasicAccount::with_balance(U256::from(balance)));
    }
    state.insert_account(empty_existing(), BasicAccount::with_balance(U256::ZERO));
    if matches!(beneficiary, Beneficiary::Funded) {
        state.insert_account(workload::BENEFICIARY, BasicAccount::with_balance(U256::from(5)));
    }
    install(&mut state, contract_address(TOKEN0), Contract::Token);
    install(&mut state, contract_address(TOKEN1), Contract::Token);
    install(&mut state, contract_address(PROBE), Contract::Probe);
    install(&mut state, contract_address(OLD_CHILD), Contract::Child);
    state.insert_account(
        contract_address(OLD_CHILD),
        BasicAccount {
            balance: U256::from(1_000),
            ..state.account(&contract_address(OLD_CHILD)).expect("installed")
        },
    );
    let mut slots = vec![(contract_address(OLD_CHILD), U256::ZERO, U256::from(3))];
    for p in POOLS {
        install(&mut state, contract_address(p), Contract::Pool);
        let reserve = U256::from(1_000_000u64);
        slots.extend([
            (contract_address(p), U256::ZERO, word(contract_address(TOKEN0))),
            (contract_address(p), U256::from(1), word(contract_address(TOKEN1))),
            (contract_address(p), U256::from(2), reserve),
            (contract_address(p), U256::from(3), reserve),
            (contract_address(TOKEN0), token_balance_slot(contract_address(p)), reserve),
            (contract_address(TOKEN1), token_balance_slot(contract_address(p)), reserve),
        ]);
        for i in 0..SENDERS {
            for t in [TOKEN0, TOKEN1] {
                slots.push((
                    contract_address(t),
                    token_allowance_slot(user(i), contract_address(p)),
                    U256::MAX,
                ));
            }
        }
    }
    for i in 0..SENDERS {
        for t in [TOKEN0, TOKEN1] {
            slots.push((contract_address(t), token_balance_slot(user(i)), U256::from(500)));
        }
    }
    for s in 0..4u64 {
        slots.push((contract_address(PROBE), U256::from(s), U256::from(s * 10)));
    }
    // Storage left at an address a CREATE2 will deploy to (no code, no nonce).
    let colliding = create2_address(
        contract_address(PROBE),
        B256::from(U256::from(COLLIDING_SALT)),
        &child_init_code(COLLIDING_VALUE),
    );
    slots.push((colliding, U256::from(9), U256::from(99)));
    state.insert_storage_many(slots);
    for n in workload::BLOCK_NUMBER - 3..workload::BLOCK_NUMBER {
        state.insert_block_hash(n, keccak256(n.to_be_bytes()));
    }
    state
}

fn target(t: u8) -> Address {
    match t % 10 {
        0 | 1 => user(t as usize % SENDERS),
        2 | 3 => fresh(t as usize % 4),
        4 => workload::BENEFICIARY,
        5 => contract_address(PROBE),
        6 => Address::with_last_byte(4),
        7 => contract_address(OLD_CHILD),
        8 => empty_existing(),
        _ => fresh(100 + t as usize),
    }
}

fn transactions(block: &Block) -> Vec<RecoveredTx> {
    let mut nonces = [0u64; SENDERS];
    let probe = contract_address(PROBE);
    let mut out = Vec::new();
    for (sender, op) in &block.ops {
        let s = *sender as usize % SENDERS;
        let from = user(s);
        let mut nonce = nonces[s];
        let mut bump_nonce = true;
        let call = |to: Address, value: U256, input: Bytes, gas: u64| {
            (TxKind::Call(to), value, input, gas)
        };
        let probe_call = |sig: &str, words: &[U256], value: U256, gas: u64| {
            call(probe, value, calldata(sig, words), gas)
        };
        let (kind, value, input, gas) = match *op {
            Op::Transfer { target: t, value } => {
                let value = match value % 3 {
                    0 => U256::ZERO,
                    1 => U256::from(1),
                    _ => U256::from(value) * U256::from(1_000_000_000u64),
                };
                call(target(t), value, Bytes::new(), 30_000 + (t as u64 % 2) * 50_000)
            }
            Op::Erc20 { target: t, amount } => call(
                contract_address(if amount % 2 == 0 { TOKEN0 } else { TOKEN1 }),
                U256::ZERO,
                calldata(
                    "transfer(address,uint256)",
                    &[word(target(t)), U256::from(amount as u64 * 3)],
                ),
                100_000,
            ),
            Op::Swap { pool, zero_for_one, amount } => call(
                contract_address(POOLS[pool as usize % 2]),
                U256::ZERO,
                calldata(
                    "swap(uint256,bool,uint256)",
                    &[
                        U256::from(amount as u64 * 4 + 1),
                        U256::from(zero_for_one as u8),
                        U256::from(1),
                    ],
                ),
                200_000,
            ),
            Op::Bump { slot } => {
                probe_call("bump(uint256)", &[U256::from(slot % 3)], U256::ZERO, 100_000)
            }
            Op::Chain { from: a, to: b } => probe_call(
                "chain(uint256,uint256)",
                &[U256::from(a % 4), U256::from(b % 4)],
                U256::ZERO,
                100_000,
            ),
            Op::Fail { slot } => {
                probe_call("fail(uint256)", &[U256::from(slot % 4)], U256::ZERO, 100_000)
            }
            Op::Burn { rounds, low_gas } => probe_call(
                "burn(uint256)",
                &[U256::from(rounds)],
                U256::ZERO,
                if low_gas { 40_000 } else { 2_000_000 },
            ),
            Op::Create { salt, value } => {
                let salt = salt as u64 % 4;
                let v = if salt == COLLIDING_SALT { COLLIDING_VALUE } else { value as u64 };
                probe_call(
                    "create(bytes32,uint256)",
                    &[U256::from(salt), U256::from(v)],
                    U256::from(value % 2),
                    500_000,
                )
            }
            Op::CreateAndDestroy { salt, target: t } => probe_call(
                "createAndDestroy(bytes32,address)",
                &[U256::from(10 + salt as u64 % 3), word(target(t))],
                U256::from(salt % 3),
                500_000,
            ),
            Op::DestroyOld { target: t } => probe_call(
                "destroy(address,address)",
                &[word(contract_address(OLD_CHILD)), word(target(t))],
                U256::ZERO,
                100_000,
            ),
            Op::CoinbaseBalance => probe_call("coinbaseBalance()", &[], U256::ZERO, 100_000),
            Op::PayCoinbase { value } => probe_call(
                "pay(address)",
                &[word(workload::BENEFICIARY)],
                U256::from(value),
                100_000,
            ),
            Op::Transient => {
                probe_call("useTransient(uint256)", &[U256::from(5)], U256::ZERO, 100_000)
            }
            Op::PreviousHash => probe_call("previousHash()", &[], U256::ZERO, 100_000),
            Op::Precompiles => {
                let mut input = calldata("precompiles(bytes)", &[U256::from(32), U256::from(3)]);
                let mut data = input.to_vec();
                data.extend_from_slice(&[0xab; 32]);
                input = data.into();
                call(probe, U256::ZERO, input, 200_000)
            }
            Op::NonceTooHigh => {
                nonce += 1;
                bump_nonce = false;
                call(fresh(1), U256::from(1), Bytes::new(), 21_000)
            }
            Op::NonceTooLow => {
                nonce = nonce.saturating_sub(1);
                bump_nonce = nonce != nonces[s];
                call(fresh(1), U256::from(1), Bytes::new(), 21_000)
            }
            Op::Insufficient => {
                bump_nonce = false;
                call(fresh(2), U256::from(1u128 << 100), Bytes::new(), 21_000)
            }
        };
        if bump_nonce {
            nonces[s] += 1;
        }
        let tip = if block.tip == 0 { 0 } else { 1 + (s as u128 % 3) };
        out.push(workload::tx(from, nonce, kind, value, input, gas, 100, tip));
    }
    out
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_blocks_match_sequential(block in block()) {
        let state = snapshot(block.beneficiary);
        let gas_limit = if block.small_gas_limit { 400_000 } else { 30_000_000 };
        let env = workload::env(gas_limit, block.beneficiary.address());
        let txs = transactions(&block);
        let out = assert_engines_agree(&env, &state, &txs, InvalidTxPolicy::Skip);
        prop_assert!(out.is_ok(), "{}", out.err().unwrap_or_default());
        let out = assert_engines_agree(&env, &state, &txs, InvalidTxPolicy::Reject);
        // With the reject policy either both fail at the same index or both succeed.
        prop_assert!(out.is_ok() || out.as_ref().is_err_and(|e| e.starts_with("sequential failed")),
            "{}", out.err().unwrap_or_default());
    }
}

/// One block that contains every kind of operation, so each behaviour is
/// covered whatever proptest draws.
#[test]
fn every_operation_in_one_block() {
    let ops = [
        Op::Transfer { target: 2, value: 2 },
        Op::Transfer { target: 4, value: 1 },
        Op::Transfer { target: 6, value: 1 },
        Op::Transfer { target: 8, value: 0 },
        Op::Erc20 { target: 1, amount: 4 },
        Op::Swap { pool: 0, zero_for_one: true, amount: 9 },
        Op::Bump { slot: 0 },
        Op::Chain { from: 0, to: 1 },
        Op::Fail { slot: 1 },
        Op::Burn { rounds: 200, low_gas: true },
        Op::Create { salt: 0, value: 3 },
        Op::Create { salt: 1, value: 3 },
        Op::CreateAndDestroy { salt: 0, target: 4 },
        Op::DestroyOld { target: 2 },
        Op::CoinbaseBalance,
        Op::PayCoinbase { value: 9 },
        Op::Transient,
        Op::PreviousHash,
        Op::Precompiles,
        Op::NonceTooHigh,
        Op::NonceTooLow,
        Op::Insufficient,
    ];
    for beneficiary in
        [Beneficiary::Missing, Beneficiary::Funded, Beneficiary::Sender, Beneficiary::Recipient]
    {
        for tip in [0, 2] {
            let block = Block {
                beneficiary,
                tip,
                small_gas_limit: false,
                ops: ops.iter().enumerate().map(|(i, op)| (i as u8, *op)).collect(),
            };
            let state = snapshot(beneficiary);
            let env = workload::env(30_000_000, beneficiary.address());
            let txs = transactions(&block);
            let out = assert_engines_agree(&env, &state, &txs, InvalidTxPolicy::Skip)
                .unwrap_or_else(|e| panic!("{beneficiary:?} tip {tip}: {e}"));
            let executed =
                |pred: &dyn Fn(&TxResult) -> bool| out.results.iter().filter(|r| pred(r)).count();
            assert!(executed(&|r| matches!(r, TxResult::Executed(e) if e.success)) >= 12);
            assert!(executed(&|r| matches!(r, TxResult::Executed(e) if !e.success)) >= 2);
            assert!(executed(&|r| matches!(r, TxResult::Skipped(_))) >= 2);
            assert!(out.diff.accounts.values().any(|a| a.storage_cleared));
        }
    }
}
