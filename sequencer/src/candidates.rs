//! The block producer's candidates: the oldest pending transactions that
//! can run in the next block, in the order the executor takes them.
//!
//! The mempool keeps transactions that cannot run yet (a nonce gap, a max
//! fee below the base fee) in the same arrival order as those that can. A
//! read of a fixed number of the oldest would let waiting transactions at
//! the front fill it: a few dozen funded accounts sending nonce-gapped
//! transactions would keep every later transaction out of blocks until
//! theirs expire. So the producer reads pages in arrival order, each twice
//! the last, until the runnable transactions read could fill a block, the
//! mempool is read to its end, or [`MAX_PAGES`] pages are read, and offers
//! the executor only the runnable ones (the others stay pending, untouched).

use alloy_consensus::{Transaction, TxEnvelope};
use alloy_eips::Decodable2718;
use alloy_primitives::Address;
use rollup_executor::{
    ChainConfig, MemoryState, RecoveredTx,
    block::{SkipReason, SkippedTx},
};
use rollup_store::{PendingTransaction, Store, StoreError};
use std::{cmp::Reverse, collections::HashMap};

/// Gas of the cheapest transaction: a block holds at most the block gas
/// limit over this many.
const MIN_TX_GAS: u64 = 21_000;

/// Most pages read for one block. Each page is twice the size of the one
/// before (ordering what was read is redone per page: doubling keeps that
/// linear), so eight pages are 255 first pages' worth: 455,000 transactions
/// at a 30M gas limit, more than the pool-wide cap of 200,000. Past that
/// many waiting transactions at the front of the mempool, later ones wait
/// for those to expire.
pub const MAX_PAGES: usize = 8;

/// Most transactions a block holds (all plain transfers).
fn block_room(config: &ChainConfig) -> u64 {
    (config.block_gas_limit / MIN_TX_GAS).max(1)
}

/// Transactions in the first page: a quarter more than fit in a block if
/// all were plain transfers (some will be dropped), at most 10,000. What a
/// block leaves is read again for the next one, so a larger page costs
/// reads; a block short of runnable transactions reads another page.
pub fn page_size(config: &ChainConfig) -> i64 {
    let room = block_room(config);
    (room + room / 4).min(10_000) as i64
}

/// What one read of the mempool offers the next block.
#[derive(Debug, Default)]
pub struct Candidates {
    /// The runnable transactions, in execution order.
    pub runnable: Vec<RecoveredTx>,
    /// Transactions whose bytes do not decode (to be dropped).
    pub undecodable: Vec<SkippedTx>,
    /// Transactions read that cannot run yet (left pending).
    pub waiting: usize,
    /// Transactions read.
    pub read: usize,
    /// Whether the read reached the end of the mempool (`read` is then every
    /// pending transaction).
    pub exhausted: bool,
}

/// Reads the candidates for the block after the one `state` is at, whose
/// base fee is `base_fee`.
pub async fn read(
    store: &Store,
    config: &ChainConfig,
    state: &MemoryState,
    base_fee: u64,
) -> Result<Candidates, StoreError> {
    let mut page_size = page_size(config);
    let block_room = block_room(config) as usize;
    let mut decoded = Vec::new();
    let mut candidates = Candidates::default();
    let mut after_seq = 0;
    let mut pages = 0;
    let (order, runnable) = loop {
        let page = store.pending_transactions(after_seq, page_size).await?;
        pages += 1;
        candidates.read += page.len();
        candidates.exhausted = (page.len() as i64) < page_size;
        after_seq = page.last().map_or(after_seq, |p| p.seq);
        let (txs, undecodable) = decode(page);
        decoded.extend(txs);
        candidates.undecodable.extend(undecodable);
        let order = nonce_order(&decoded);
        let runnable = runnable(&decoded, &order, state, base_fee);
        let block_filled = runnable.iter().filter(|r| **r).count() >= block_room;
        if candidates.exhausted || block_filled || pages == MAX_PAGES {
            break (order, runnable);
        }
        page_size = page_size.saturating_mul(2);
    };
    let mut slots: Vec<Option<RecoveredTx>> = decoded.into_iter().map(Some).collect();
    for (index, runs) in order.into_iter().zip(runnable) {
        match slots[index].take() {
            Some(tx) if runs => candidates.runnable.push(tx),
            _ => candidates.waiting += 1,
        }
    }
    Ok(candidates)
}

/// Decodes pending transactions; those that do not decode are returned as
/// invalid.
fn decode(pending: Vec<PendingTransaction>) -> (Vec<RecoveredTx>, Vec<SkippedTx>) {
    let mut decoded = Vec::with_capacity(pending.len());
    let mut bad = Vec::new();
    for p in pending {
        match TxEnvelope::decode_2718_exact(&p.raw) {
            Ok(tx) => decoded.push(RecoveredTx::new_unchecked(tx, p.sender)),
            Err(e) => {
                bad.push(SkippedTx { hash: p.hash, reason: SkipReason::Invalid(e.to_string()) })
            }
        }
    }
    (decoded, bad)
}

/// The order the executor takes `txs` (in arrival order) in, as indices:
/// arrival order overall, but each sender's transactions by nonce (a
/// sender's slots, in arrival order, are filled with its transactions sorted
/// by nonce). Of several pending transactions with one sender and nonce (a
/// replacement whose commit ran beside the replaced one's, or two API
/// replicas admitting different transactions), the latest arrival comes
/// first; the others then fail with a nonce too low and are dropped.
fn nonce_order(txs: &[RecoveredTx]) -> Vec<usize> {
    let mut by_sender: HashMap<Address, Vec<usize>> = HashMap::new();
    for (index, tx) in txs.iter().enumerate() {
        by_sender.entry(tx.signer()).or_default().push(index);
    }
    for indices in by_sender.values_mut() {
        // Highest nonce first and, within a nonce, the earliest arrival
        // first: `pop` yields the lowest nonce's latest arrival.
        indices.sort_by_key(|&index| (Reverse(txs[index].inner().nonce()), index));
    }
    txs.iter().filter_map(|tx| by_sender.get_mut(&tx.signer()).and_then(Vec::pop)).collect()
}

/// Whether each transaction, taken in `order`, can run in the next block:
/// a sender's nonces from its nonce in `state` on, without a gap, each with
/// a max fee of at least `base_fee`. After the first that cannot run, none
/// of the sender's can. Nonces below the next one stay runnable: the
/// executor drops them as too low.
fn runnable(txs: &[RecoveredTx], order: &[usize], state: &MemoryState, base_fee: u64) -> Vec<bool> {
    // Each sender's next nonce, `None` once one of its transactions waits.
    let mut next_nonce: HashMap<Address, Option<u64>> = HashMap::new();
    order
        .iter()
        .map(|&index| {
            let tx = &txs[index];
            let next = next_nonce
                .entry(tx.signer())
                .or_insert_with(|| Some(state.account(&tx.signer()).map_or(0, |a| a.nonce)));
            let Some(expected) = *next else { return false };
            let nonce = tx.inner().nonce();
            if nonce < expected {
                return true;
            }
            if nonce == expected && tx.inner().max_fee_per_gas() >= u128::from(base_fee) {
                *next = expected.checked_add(1);
                return true;
            }
            *next = None;
            false
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::tests::tx;
    use alloy_eips::Encodable2718;
    use alloy_primitives::{B256, KECCAK256_EMPTY, U256};
    use alloy_signer_local::PrivateKeySigner;
    use rollup_executor::state::BasicAccount;

    fn pending(seq: i64, tx: &RecoveredTx) -> PendingTransaction {
        PendingTransaction {
            seq,
            hash: *tx.inner().tx_hash(),
            sender: tx.signer(),
            nonce: tx.inner().nonce(),
            raw: tx.inner().encoded_2718().into(),
        }
    }

    fn hashes<'a>(txs: impl IntoIterator<Item = &'a RecoveredTx>) -> Vec<B256> {
        txs.into_iter().map(|t| *t.inner().tx_hash()).collect()
    }

    #[test]
    fn senders_run_in_nonce_order_and_the_latest_arrival_of_a_nonce_first() {
        let (a, b) = (PrivateKeySigner::random(), PrivateKeySigner::random());
        let a1 = tx(&a, 1, 100, 10, 1);
        let a0 = tx(&a, 0, 100, 10, 1);
        let b0 = tx(&b, 0, 100, 10, 1);
        let a0_bumped = tx(&a, 0, 200, 20, 1);
        let arrivals = [&a1, &a0, &b0, &a0_bumped];
        let mut pending: Vec<_> =
            arrivals.iter().enumerate().map(|(seq, tx)| pending(seq as i64, tx)).collect();
        pending.push(PendingTransaction { raw: vec![0xc0].into(), ..pending[0].clone() });

        let (decoded, undecodable) = decode(pending);
        let ordered = nonce_order(&decoded).into_iter().map(|i| &decoded[i]);
        assert_eq!(hashes(ordered), hashes([&a0_bumped, &a0, &b0, &a1]));
        assert_eq!(undecodable.len(), 1);
        assert_eq!(undecodable[0].hash, *a1.inner().tx_hash());
    }

    #[test]
    fn a_gap_or_a_fee_below_the_base_fee_holds_back_the_rest_of_the_sender() {
        let (gapped, cheap, known) =
            (PrivateKeySigner::random(), PrivateKeySigner::random(), PrivateKeySigner::random());
        let mut state = MemoryState::default();
        let account =
            BasicAccount { nonce: 5, balance: U256::from(1u64 << 60), code_hash: KECCAK256_EMPTY };
        state.insert_account(known.address(), account);
        let base_fee = 50;
        let arrivals = [
            tx(&gapped, 0, 100, 10, 1),
            tx(&gapped, 2, 100, 10, 1), // nonce 1 missing: waits
            tx(&gapped, 3, 100, 10, 1),
            tx(&cheap, 0, 49, 1, 1), // max fee below the base fee: waits
            tx(&cheap, 1, 100, 10, 1),
            tx(&known, 4, 100, 10, 1), // below the state's nonce: the executor drops it
            tx(&known, 5, 100, 10, 1),
            tx(&known, 6, 100, 10, 1),
        ];
        let order = nonce_order(&arrivals);
        let runs = runnable(&arrivals, &order, &state, base_fee);
        let runnable: Vec<_> =
            order.iter().zip(&runs).filter(|(_, r)| **r).map(|(i, _)| &arrivals[*i]).collect();
        assert_eq!(
            hashes(runnable),
            hashes([&arrivals[0], &arrivals[5], &arrivals[6], &arrivals[7]])
        );
    }
}
