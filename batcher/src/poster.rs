//! The batch poster: turns new L2 blocks into batches and appends them to the
//! settlement contract, exactly once each.
//!
//! Each step first finishes the newest recorded batch (a batch row is written
//! before it is sent and never changes), then builds the next one. Before
//! sending, it asks the contract how many batches it holds: a batch the
//! contract already has (we crashed after sending) is only marked posted,
//! never sent twice; the contract's index check refuses duplicates anyway.

use crate::{
    L1Error, L1Metrics,
    codec::{BatchBlock, fit_batch},
    settlement::Settlement::{self, SettlementInstance},
};
use alloy::{
    eips::BlockNumberOrTag,
    primitives::{Address, U256, keccak256},
    providers::{DynProvider, Provider},
};
use rollup_store::{BatchRecord, Store};
use std::time::Duration;

/// Batcher settings.
#[derive(Debug, Clone)]
pub struct BatcherConfig {
    /// At most this many L2 blocks per batch.
    pub max_blocks_per_batch: u64,
    /// At most this many compressed bytes per batch (L1 nodes refuse
    /// transactions above 128 KiB).
    pub max_batch_bytes: usize,
    /// How often to look for new blocks.
    pub poll_interval: Duration,
    /// L1 block to search for our own batch events from.
    pub l1_start_block: u64,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        Self {
            max_blocks_per_batch: 1_000,
            max_batch_bytes: 120_000,
            poll_interval: Duration::from_secs(1),
            l1_start_block: 0,
        }
    }
}

/// Blocks read from the store per query while a batch is gathered.
const READ_CHUNK_BLOCKS: u64 = 8;
/// Raw transaction bytes gathered per byte of the batch limit before the
/// first encoding (transfers compress to about 0.8 of their raw size, ERC-20
/// calls to about 0.5; more compressible data gathers more, see `build`).
const RAW_BYTES_PER_BATCH_BYTE: usize = 2;

/// Posts batches; see the module docs.
#[derive(Debug)]
pub struct BatchPoster {
    store: Store,
    contract: SettlementInstance<DynProvider>,
    config: BatcherConfig,
    metrics: L1Metrics,
}

impl BatchPoster {
    /// A poster that sends with `provider` (which signs as the batcher).
    pub fn new(
        store: Store,
        provider: DynProvider,
        contract: Address,
        config: BatcherConfig,
        metrics: L1Metrics,
    ) -> Self {
        Self { store, contract: Settlement::new(contract, provider), config, metrics }
    }

    /// Runs until `shutdown` fires, logging and counting errors and retrying.
    pub async fn run(self, shutdown: tokio::sync::watch::Receiver<bool>) {
        crate::l1::drive("batcher", self.config.poll_interval, &self.metrics, shutdown, || {
            self.step()
        })
        .await;
    }

    /// Records L1's `finalized` block, which moves posted transactions to
    /// the `finalized` stage of their lifecycle.
    async fn track_l1_finality(&self) -> Result<(), L1Error> {
        let finalized = self
            .contract
            .provider()
            .get_block_by_number(BlockNumberOrTag::Finalized)
            .await
            .map_err(L1Error::rpc)?;
        if let Some(block) = finalized {
            self.store.set_l1_finalized_block(block.header.number).await?;
        }
        Ok(())
    }

    /// One step: reconcile with L1, then finish the oldest unposted batch or
    /// build and post the next one. Returns the index of a batch now on L1.
    pub async fn step(&self) -> Result<Option<u64>, L1Error> {
        self.track_l1_finality().await?;
        let on_l1: U256 = self.contract.batchCount().call().await.map_err(L1Error::rpc)?;
        let on_l1: u64 = on_l1.saturating_to();
        let lost = self.store.unmark_batches_from(on_l1).await?;
        if lost > 0 {
            tracing::warn!(
                lost,
                on_l1,
                "L1 no longer holds batches we posted (reorg or reset); reposting"
            );
        }
        let batch = match self.store.first_unposted_batch().await? {
            Some(batch) => batch,
            None => {
                let latest = self.store.latest_batch().await?;
                let head = self.store.head_number().await?;
                let next_block = latest.as_ref().map_or(1, |b| b.last_block + 1);
                self.metrics.unbatched_blocks.set((head + 1).saturating_sub(next_block) as i64);
                if head < next_block {
                    return Ok(None);
                }
                let index = latest.map_or(0, |b| b.index + 1);
                let batch = self.build(index, next_block, head).await?;
                self.store.insert_batch(&batch).await?;
                tracing::info!(
                    index,
                    first = batch.first_block,
                    last = batch.last_block,
                    bytes = batch.data.len(),
                    "built batch"
                );
                batch
            }
        };
        if batch.index < on_l1 {
            return self.adopt_posted(&batch).await.map(Some);
        }
        if batch.index > on_l1 {
            return Err(L1Error::Inconsistent(format!(
                "the contract holds {on_l1} batches but batch {} is next here",
                batch.index
            )));
        }
        self.send(&batch).await.map(Some)
    }

    /// Encodes blocks `first..=head` (or fewer, to fit the limits) into a batch.
    ///
    /// Blocks are read a few at a time until their raw transactions hold
    /// [`RAW_BYTES_PER_BATCH_BYTE`] times the batch limit, not the whole
    /// backlog: a batch holds about 1,250 transfers, and compressing a backlog
    /// of tens of thousands to keep a prefix of them cost more CPU than the
    /// node's HTTP intake under load. If everything gathered fits with room to
    /// spare (data that compresses better than that), more is gathered.
    /// Compression runs on the blocking pool, off the tokio workers.
    async fn build(&self, index: u64, first: u64, head: u64) -> Result<BatchRecord, L1Error> {
        let last = head.min(first + self.config.max_blocks_per_batch - 1);
        let max_bytes = self.config.max_batch_bytes;
        let mut budget = max_bytes.saturating_mul(RAW_BYTES_PER_BATCH_BYTE);
        let mut blocks: Vec<BatchBlock> = Vec::new();
        let mut raw_bytes = 0usize;
        let mut next = first;
        loop {
            while next <= last && raw_bytes <= budget {
                let to = last.min(next + READ_CHUNK_BLOCKS - 1);
                let chunk = self.store.blocks_for_batch(next, to).await?;
                if chunk.is_empty() {
                    next = last + 1;
                    break;
                }
                for (number, timestamp, transactions) in chunk {
                    raw_bytes += transactions.iter().map(|t| t.len()).sum::<usize>();
                    blocks.push(BatchBlock { number, timestamp, transactions });
                }
                next = to + 1;
            }
            if blocks.is_empty() {
                // The head moved back under us: a store error, retried next step.
                return Err(rollup_store::StoreError::Corrupt(format!(
                    "no blocks {first}..={last}"
                ))
                .into());
            }
            let (gathered, count, data) = tokio::task::spawn_blocking(move || {
                let (count, data) = fit_batch(&blocks, max_bytes);
                (blocks, count, data)
            })
            .await
            .map_err(|e| L1Error::Inconsistent(format!("batch encoding did not finish: {e}")))?;
            blocks = gathered;
            if count == blocks.len() && next <= last && data.len() < max_bytes {
                budget = budget.saturating_mul(2);
                continue;
            }
            return Ok(BatchRecord {
                index,
                first_block: first,
                last_block: first + count as u64 - 1,
                data_hash: keccak256(&data),
                data,
                l1_tx_hash: None,
                l1_block: None,
            });
        }
    }

    /// Appends `batch` on L1 (the contract holds exactly `batch.index` batches).
    async fn send(&self, batch: &BatchRecord) -> Result<u64, L1Error> {
        let receipt = self
            .contract
            .appendBatch(
                U256::from(batch.index),
                batch.first_block,
                batch.last_block,
                batch.data.clone(),
            )
            .send()
            .await
            .map_err(L1Error::rpc)?
            .with_timeout(Some(Duration::from_secs(60)))
            .get_receipt()
            .await
            .map_err(L1Error::rpc)?;
        if !receipt.status() {
            // Someone (an earlier run of ours) may have appended it meanwhile;
            // the next step re-reads the contract.
            return Err(L1Error::Rpc(format!(
                "appendBatch {} reverted in {}",
                batch.index, receipt.transaction_hash
            )));
        }
        let l1_block = receipt.block_number.unwrap_or_default();
        self.store.mark_batch_posted(batch.index, receipt.transaction_hash, l1_block).await?;
        self.metrics.batches_posted.inc();
        self.metrics.batch_bytes_posted.inc_by(batch.data.len() as u64);
        tracing::info!(index = batch.index, l1_tx = %receipt.transaction_hash, l1_block, "batch posted");
        Ok(batch.index)
    }

    /// The contract already holds this batch index: check it is ours and mark it.
    async fn adopt_posted(&self, batch: &BatchRecord) -> Result<u64, L1Error> {
        let events = self
            .contract
            .BatchAppended_filter()
            .topic1(U256::from(batch.index))
            .from_block(self.config.l1_start_block)
            .query()
            .await
            .map_err(L1Error::rpc)?;
        let (event, log) = events.into_iter().next().ok_or_else(|| {
            L1Error::Rpc(format!(
                "batch {} is counted on L1 but its event is not visible yet",
                batch.index
            ))
        })?;
        if event.dataHash != batch.data_hash
            || event.firstBlock != batch.first_block
            || event.lastBlock != batch.last_block
        {
            return Err(L1Error::Inconsistent(format!(
                "L1 batch {} differs from ours (blocks {}..={}, hash {})",
                batch.index, event.firstBlock, event.lastBlock, event.dataHash
            )));
        }
        let tx_hash = log.transaction_hash.unwrap_or_default();
        self.store
            .mark_batch_posted(batch.index, tx_hash, log.block_number.unwrap_or_default())
            .await?;
        tracing::info!(index = batch.index, l1_tx = %tx_hash, "batch was already on L1; marked posted");
        Ok(batch.index)
    }
}
