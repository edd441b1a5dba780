//! Polling filters: `eth_newFilter`, `eth_newBlockFilter`,
//! `eth_newPendingTransactionFilter`, `eth_getFilterChanges`,
//! `eth_getFilterLogs` and `eth_uninstallFilter`, what HTTP clients without
//! subscriptions watch the chain with (ethers' contract events, viem's
//! `watch*` actions when filters are available).
//!
//! A filter remembers where its last poll ended: the next block for block
//! and log filters (it reports only blocks committed after it was
//! installed, as geth does; `eth_getFilterLogs` answers its whole range
//! like `eth_getLogs`), the last arrival order seen for pending-transaction
//! filters (the transactions still pending at the poll that arrived since:
//! one included between two polls is not reported, and arrivals whose group
//! commits finish out of order may be missed; geth's pool feed is best
//! effort too). Filters live in the API process that installed them
//! (replicas behind a load balancer need sticky sessions for them, as any
//! node's filters do), at most [`MAX_FILTERS`] naming at most
//! [`MAX_FILTER_CRITERIA`] addresses and topic values together, a tenth of
//! each per client address (so no one client can take every filter from
//! the others), and one not polled for [`FILTER_IDLE`] is removed, as geth
//! does after five minutes.

use super::{
    Params, RpcContext,
    error::{LIMIT_EXCEEDED, RpcError, SERVER_ERROR},
    eth,
};
use alloy::rpc::types::{Filter, FilterBlockOption};
use alloy_eips::BlockNumberOrTag;
use alloy_primitives::{B256, U128};
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Most filters one API process keeps.
pub const MAX_FILTERS: usize = 10_000;
/// Most addresses and topic values all installed log filters hold together
/// (each costs about 300 bytes with its bloom): 200,000 is about 60 MB, and
/// forty filters at the per-filter limits.
pub const MAX_FILTER_CRITERIA: usize = 200_000;
/// A filter not polled for this long is removed.
pub const FILTER_IDLE: Duration = Duration::from_secs(300);
/// Most blocks one poll of a block or log filter covers; a filter further
/// behind catches up over several polls.
const MAX_BLOCKS_PER_POLL: u64 = 1_000;
/// Most transaction hashes one poll of a pending-transaction filter returns.
const MAX_PENDING_PER_POLL: i64 = 10_000;

/// What a filter watches, and where its last poll ended.
#[derive(Debug, Clone)]
enum Watch {
    /// New blocks' hashes, from block `next` on.
    Blocks { next: u64 },
    /// New blocks' logs that match `filter`, from block `next` on.
    Logs { filter: Box<Filter>, next: u64 },
    /// Transactions that arrived after arrival order `after` (still
    /// pending at the poll).
    Pending { after: i64 },
}

impl Watch {
    /// Where the filter's last poll ended (grows with every poll that
    /// reported something).
    const fn position(&self) -> i64 {
        match self {
            Self::Blocks { next } | Self::Logs { next, .. } => *next as i64,
            Self::Pending { after } => *after,
        }
    }
}

#[derive(Debug)]
struct Installed {
    watch: Watch,
    last_poll: Instant,
    /// The client that installed it.
    owner: Option<IpAddr>,
    /// Its addresses and topic values (log filters).
    criteria: usize,
}

/// The installed filters of one API process.
#[derive(Debug)]
pub struct Filters {
    installed: Mutex<HashMap<U128, Installed>>,
    max: usize,
    max_criteria: usize,
    idle: Duration,
}

impl Default for Filters {
    fn default() -> Self {
        Self::new(MAX_FILTERS, MAX_FILTER_CRITERIA, FILTER_IDLE)
    }
}

impl Filters {
    /// At most `max` filters holding at most `max_criteria` addresses and
    /// topic values together, each removed after `idle` without a poll.
    pub fn new(max: usize, max_criteria: usize, idle: Duration) -> Self {
        Self { installed: Mutex::default(), max, max_criteria, idle }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<U128, Installed>> {
        self.installed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Installs `watch` for `owner`; its id. Idle filters are removed first.
    fn install(&self, watch: Watch, owner: Option<IpAddr>) -> Result<U128, RpcError> {
        let criteria = match &watch {
            Watch::Logs { filter, .. } => eth::criteria_of(filter),
            _ => 0,
        };
        let mut installed = self.lock();
        installed.retain(|_, filter| filter.last_poll.elapsed() < self.idle);
        if installed.len() >= self.max {
            return Err(RpcError::new(
                LIMIT_EXCEEDED,
                format!("too many filters: at most {}, uninstall some", self.max),
            ));
        }
        // One pass: what all filters hold, and what the owner's hold.
        let (mut held, mut owned, mut owner_held) = (0, 0, 0);
        for filter in installed.values() {
            held += filter.criteria;
            if owner.is_some() && filter.owner == owner {
                owned += 1;
                owner_held += filter.criteria;
            }
        }
        if held + criteria > self.max_criteria {
            return Err(RpcError::new(
                LIMIT_EXCEEDED,
                "installed filters hold too many addresses and topics, uninstall some",
            ));
        }
        if owner.is_some()
            && (owned >= self.max / 10 || owner_held + criteria > self.max_criteria / 10)
        {
            return Err(RpcError::new(
                LIMIT_EXCEEDED,
                "too many filters from this client, uninstall some",
            ));
        }
        let id = random_id();
        installed.insert(id, Installed { watch, last_poll: Instant::now(), owner, criteria });
        Ok(id)
    }

    /// The filter `id` as of now, its poll time renewed.
    fn poll(&self, id: U128) -> Result<Watch, RpcError> {
        let mut installed = self.lock();
        match installed.get_mut(&id) {
            Some(filter) if filter.last_poll.elapsed() < self.idle => {
                filter.last_poll = Instant::now();
                Ok(filter.watch.clone())
            }
            Some(_) => {
                installed.remove(&id);
                Err(not_found())
            }
            None => Err(not_found()),
        }
    }

    /// Records where filter `id`'s last poll ended (a no-op if it was
    /// uninstalled meanwhile). Only forward: of two polls at once, the one
    /// that ends earlier never moves the filter back.
    fn advance(&self, id: U128, watch: Watch) {
        if let Some(filter) = self.lock().get_mut(&id)
            && watch.position() > filter.watch.position()
        {
            filter.watch = watch;
        }
    }

    /// Removes filter `id`; whether it was installed.
    fn uninstall(&self, id: U128) -> bool {
        self.lock().remove(&id).is_some()
    }

    /// Number of installed filters (idle ones included until swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is installed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An unguessable filter id: another client cannot poll (and so consume)
/// or uninstall a filter it did not install. A quantity, as geth's (16
/// random bytes, leading zeros trimmed): clients such as alloy hold ids as
/// numbers and send them back that way.
fn random_id() -> U128 {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    U128::from_be_bytes(bytes)
}

/// The filter id parameter: a string; one that is no id of ours names no
/// filter (geth's answer, not a parameter error).
fn filter_id(params: &Params) -> Result<U128, RpcError> {
    let id: String = params.required(0, "id")?;
    id.parse().map_err(|_| not_found())
}

/// geth's answer for an unknown or expired filter.
fn not_found() -> RpcError {
    RpcError::new(SERVER_ERROR, "filter not found")
}

/// Runs one filter method for `client`.
pub(super) async fn dispatch(
    ctx: &RpcContext,
    method: &str,
    params: Params,
    client: Option<IpAddr>,
) -> Result<Value, RpcError> {
    match method {
        "eth_newFilter" => {
            params.at_most(1)?;
            let filter: Filter = params.required(0, "filter")?;
            eth::check_log_filter(&filter)?;
            let next = ctx.view.number() + 1;
            Ok(json!(ctx.filters.install(Watch::Logs { filter: Box::new(filter), next }, client)?))
        }
        "eth_newBlockFilter" => {
            params.at_most(0)?;
            Ok(json!(ctx.filters.install(Watch::Blocks { next: ctx.view.number() + 1 }, client)?))
        }
        "eth_newPendingTransactionFilter" => {
            params.at_most(1)?;
            // geth's optional `fullTx` flag: hashes only here.
            if params.optional::<bool>(0, "fullTx")?.unwrap_or(false) {
                return Err(RpcError::invalid_params("full pending transactions are not served"));
            }
            let after = ctx.store.latest_arrival().await?;
            Ok(json!(ctx.filters.install(Watch::Pending { after }, client)?))
        }
        "eth_getFilterChanges" => {
            params.at_most(1)?;
            let id = filter_id(&params)?;
            let watch = ctx.filters.poll(id)?;
            let (changes, watch) = changes(ctx, watch).await?;
            ctx.filters.advance(id, watch);
            Ok(changes)
        }
        "eth_getFilterLogs" => {
            params.at_most(1)?;
            let id = filter_id(&params)?;
            match ctx.filters.poll(id)? {
                Watch::Logs { filter, .. } => eth::get_logs(ctx, &filter).await,
                // geth's answer when the id names no log filter.
                _ => Err(not_found()),
            }
        }
        "eth_uninstallFilter" => {
            params.at_most(1)?;
            // Any string names a filter, as in geth: false for one that is
            // not installed (or cannot be an id of ours).
            let id: String = params.required(0, "id")?;
            Ok(json!(id.parse::<U128>().is_ok_and(|id| ctx.filters.uninstall(id))))
        }
        other => unreachable!("{other} is not a filter method"),
    }
}

/// What happened since `watch`'s last poll, and where this poll ends.
async fn changes(ctx: &RpcContext, watch: Watch) -> Result<(Value, Watch), RpcError> {
    let head = ctx.view.number();
    match watch {
        Watch::Blocks { next } => {
            if next > head {
                return Ok((json!([]), Watch::Blocks { next }));
            }
            let last = head.min(next + MAX_BLOCKS_PER_POLL - 1);
            let hashes = ctx.store.block_hashes(next, last).await?;
            Ok((json!(hashes), Watch::Blocks { next: last + 1 }))
        }
        Watch::Logs { filter, next } => {
            let (from, to) = range_of(&filter);
            let first = next.max(from);
            let last = head.min(to).min(first.saturating_add(MAX_BLOCKS_PER_POLL - 1));
            if first > last {
                return Ok((json!([]), Watch::Logs { filter, next }));
            }
            let (logs, last) = eth::logs_between(ctx, &filter, first, last, eth::MAX_LOGS).await?;
            Ok((json!(logs), Watch::Logs { filter, next: last + 1 }))
        }
        Watch::Pending { after } => {
            let arrived = ctx.store.pending_hashes(after, MAX_PENDING_PER_POLL).await?;
            let after = arrived.last().map_or(after, |(seq, _)| *seq);
            let hashes: Vec<B256> = arrived.into_iter().map(|(_, hash)| hash).collect();
            Ok((json!(hashes), Watch::Pending { after }))
        }
    }
}

/// The block range a log filter's own bounds allow (a block-hash filter:
/// none after its install, as geth's).
fn range_of(filter: &Filter) -> (u64, u64) {
    match filter.block_option {
        FilterBlockOption::AtBlockHash(_) => (1, 0),
        FilterBlockOption::Range { from_block, to_block } => {
            let bound = |tag: Option<BlockNumberOrTag>, open: u64| match tag {
                Some(BlockNumberOrTag::Number(n)) => n,
                Some(BlockNumberOrTag::Earliest) => 0,
                _ => open,
            };
            (bound(from_block, 0), bound(to_block, u64::MAX))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_capped_expire_when_idle_and_uninstall_once() {
        let filters = Filters::new(2, 10, Duration::from_millis(200));
        let a = filters.install(Watch::Blocks { next: 1 }, None).unwrap();
        let b = filters.install(Watch::Pending { after: 0 }, None).unwrap();
        assert_ne!(a, b);
        let full = filters.install(Watch::Blocks { next: 1 }, None).unwrap_err();
        assert_eq!(full.code, LIMIT_EXCEEDED);

        // A poll sees where the last one ended.
        filters.advance(a, Watch::Blocks { next: 7 });
        assert!(matches!(filters.poll(a), Ok(Watch::Blocks { next: 7 })));
        assert!(filters.uninstall(b));
        assert!(!filters.uninstall(b));
        assert_eq!(filters.poll(b).unwrap_err().message, "filter not found");

        // Unpolled past the idle time: gone, and its room is free again.
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(filters.poll(a).unwrap_err().message, "filter not found");
        filters.install(Watch::Blocks { next: 1 }, None).unwrap();
        filters.install(Watch::Blocks { next: 1 }, None).unwrap();
        assert_eq!(filters.len(), 2);
    }

    #[test]
    fn log_filters_share_a_budget_of_addresses_and_topics() {
        let filters = Filters::new(10, 5, FILTER_IDLE);
        let logs = |addresses: u8| {
            let filter = Filter::new().address(
                (0..addresses).map(alloy_primitives::Address::repeat_byte).collect::<Vec<_>>(),
            );
            Watch::Logs { filter: Box::new(filter), next: 1 }
        };
        let three = filters.install(logs(3), None).unwrap();
        let full = filters.install(logs(3), None).unwrap_err();
        assert_eq!(full.code, LIMIT_EXCEEDED);
        filters.install(logs(2), None).unwrap();
        // Block filters hold no criteria.
        filters.install(Watch::Blocks { next: 1 }, None).unwrap();
        assert!(filters.uninstall(three));
        filters.install(logs(3), None).unwrap();
    }

    #[test]
    fn one_client_gets_a_tenth_of_the_filters() {
        let filters = Filters::new(20, 1_000, FILTER_IDLE);
        let (a, b) = (Some(IpAddr::from([10, 0, 0, 1])), Some(IpAddr::from([10, 0, 0, 2])));
        filters.install(Watch::Blocks { next: 1 }, a).unwrap();
        filters.install(Watch::Blocks { next: 1 }, a).unwrap();
        let refused = filters.install(Watch::Blocks { next: 1 }, a).unwrap_err();
        assert_eq!(refused.code, LIMIT_EXCEEDED);
        filters.install(Watch::Blocks { next: 1 }, b).unwrap();
    }

    #[test]
    fn ids_are_quantities_and_parse_back() {
        let id = random_id();
        let text = serde_json::to_value(id).unwrap();
        let text = text.as_str().unwrap();
        assert!(text.starts_with("0x") && !text.starts_with("0x0") || text == "0x0");
        assert_eq!(text.parse::<U128>().unwrap(), id);
        // Leading zeros, as some clients pad them, name the same filter.
        let padded = format!("0x{:032x}", id);
        assert_eq!(padded.parse::<U128>().unwrap(), id);
    }

    #[test]
    fn a_log_filter_bounds_its_changes_by_its_own_range() {
        let open = Filter::new();
        assert_eq!(range_of(&open), (0, u64::MAX));
        let bounded = Filter::new().from_block(5u64).to_block(9u64);
        assert_eq!(range_of(&bounded), (5, 9));
        let at_hash = Filter::new().at_block_hash(B256::ZERO);
        let (from, to) = range_of(&at_hash);
        assert!(from > to, "a block-hash filter has no new blocks");
    }
}
