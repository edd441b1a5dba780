//! The state-root proposer: at an interval, proposes (L2 block number, block
//! hash, state root) for the newest block whose batch is on L1.

use crate::{
    L1Error, L1Metrics,
    settlement::Settlement::{self, SettlementInstance},
};
use alloy::{primitives::Address, providers::DynProvider};
use rollup_store::{ProposalRecord, Store};
use std::time::Duration;

/// Proposes state roots; see the module docs.
#[derive(Debug)]
pub struct Proposer {
    store: Store,
    contract: SettlementInstance<DynProvider>,
    interval: Duration,
    metrics: L1Metrics,
}

impl Proposer {
    /// A proposer that sends with `provider` (which signs as the proposer).
    pub fn new(
        store: Store,
        provider: DynProvider,
        contract: Address,
        interval: Duration,
        metrics: L1Metrics,
    ) -> Self {
        Self { store, contract: Settlement::new(contract, provider), interval, metrics }
    }

    /// Runs until `shutdown` fires, logging and counting errors and retrying.
    pub async fn run(self, shutdown: tokio::sync::watch::Receiver<bool>) {
        crate::l1::drive("proposer", self.interval, &self.metrics, shutdown, || self.step()).await;
    }

    /// Proposes the newest batched block if L1 does not have it yet.
    /// Returns the proposed L2 block number.
    pub async fn step(&self) -> Result<Option<u64>, L1Error> {
        let batched = self.store.last_posted_block().await?;
        if batched == 0 {
            return Ok(None);
        }
        let on_l1 = self.contract.latestProposedBlock().call().await.map_err(L1Error::rpc)?;
        if on_l1 >= batched {
            return Ok(None);
        }
        let block = self.store.block_by_number(batched).await?.ok_or_else(|| {
            L1Error::Inconsistent(format!("batched block {batched} is missing from the store"))
        })?;
        let receipt = self
            .contract
            .proposeStateRoot(batched, block.hash, block.header.state_root)
            .send()
            .await
            .map_err(L1Error::rpc)?
            .with_timeout(Some(Duration::from_secs(60)))
            .get_receipt()
            .await
            .map_err(L1Error::rpc)?;
        if !receipt.status() {
            return Err(L1Error::Rpc(format!(
                "proposeStateRoot {batched} reverted in {}",
                receipt.transaction_hash
            )));
        }
        self.store
            .record_proposal(&ProposalRecord {
                l2_block: batched,
                block_hash: block.hash,
                state_root: block.header.state_root,
                l1_tx_hash: receipt.transaction_hash,
            })
            .await?;
        self.metrics.proposals_posted.inc();
        tracing::info!(l2_block = batched, state_root = %block.header.state_root, "state root proposed");
        Ok(Some(batched))
    }
}
