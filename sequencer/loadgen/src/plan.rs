//! The order of the load: which transaction goes in which request, and which
//! earlier requests a request must wait for.
//!
//! Transactions are interleaved across accounts (every account's first
//! transaction, then every account's second, …) so consecutive requests come
//! from different senders. A request may be sent only once every earlier
//! request holding the previous nonce of one of its senders has been answered,
//! so each sender's nonces reach the node in order even with many requests in
//! flight.

/// One transaction of the load: the `index`-th transaction (nonce offset) of
/// account `account` (offset within the accounts used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Account offset (0 is the first account used).
    pub account: u32,
    /// Which of the account's transactions (0 uses its pending nonce).
    pub index: u32,
}

/// Every transaction of `accounts` accounts × `per_account` transactions, in
/// interleaved order: round `i` holds transaction `i` of every account.
pub fn interleave(accounts: u32, per_account: u32) -> Vec<Slot> {
    let mut slots = Vec::with_capacity(accounts as usize * per_account as usize);
    for index in 0..per_account {
        slots.extend((0..accounts).map(|account| Slot { account, index }));
    }
    slots
}

/// For requests made of consecutive chunks of `per_request` slots: for each
/// request, the earlier requests (ascending, no repeats) that hold the
/// previous transaction of one of its senders. A sender's earlier transaction
/// in the same request is not a dependency (a request is one unit).
///
/// # Panics
/// If `per_request` is 0.
pub fn dependencies(accounts: u32, slots: &[Slot], per_request: usize) -> Vec<Vec<u32>> {
    assert!(per_request > 0, "requests hold at least one transaction");
    let mut last_request: Vec<Option<u32>> = vec![None; accounts as usize];
    slots
        .chunks(per_request)
        .enumerate()
        .map(|(request, chunk)| {
            let request = request as u32;
            let mut deps = Vec::new();
            for slot in chunk {
                let last = &mut last_request[slot.account as usize];
                if let Some(previous) = *last
                    && previous != request
                {
                    deps.push(previous);
                }
                *last = Some(request);
            }
            deps.sort_unstable();
            deps.dedup();
            deps
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sending request `r` only after its dependencies were answered must be
    /// a valid schedule in which every sender's nonces go out in order.
    fn check_schedule(accounts: u32, per_account: u32, per_request: usize) {
        let slots = interleave(accounts, per_account);
        assert_eq!(slots.len(), (accounts * per_account) as usize);
        let deps = dependencies(accounts, &slots, per_request);
        assert_eq!(deps.len(), slots.len().div_ceil(per_request));
        // Request of every (account, index).
        let mut request_of = vec![vec![u32::MAX; per_account as usize]; accounts as usize];
        for (i, slot) in slots.iter().enumerate() {
            request_of[slot.account as usize][slot.index as usize] = (i / per_request) as u32;
        }
        for (account, requests) in request_of.iter().enumerate() {
            for index in 1..per_account as usize {
                let (before, this) = (requests[index - 1], requests[index]);
                assert!(before <= this, "account {account}: nonce order broken");
                if before != this {
                    assert!(
                        deps[this as usize].contains(&before),
                        "account {account} tx {index}: request {this} does not wait for {before}"
                    );
                }
            }
        }
        for (request, list) in deps.iter().enumerate() {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
            assert!(list.iter().all(|&d| (d as usize) < request), "only earlier requests");
        }
    }

    #[test]
    fn interleaving_alternates_senders_and_keeps_nonce_order() {
        let slots = interleave(3, 2);
        let expected = [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)];
        let got: Vec<(u32, u32)> = slots.iter().map(|s| (s.account, s.index)).collect();
        assert_eq!(got, expected);
        // Consecutive transactions come from different senders.
        assert!(slots.windows(2).all(|w| w[0].account != w[1].account));
        // Within each sender, indexes (nonce offsets) increase by one.
        for account in 0..3 {
            let indexes: Vec<u32> =
                slots.iter().filter(|s| s.account == account).map(|s| s.index).collect();
            assert_eq!(indexes, [0, 1]);
        }
    }

    #[test]
    fn single_requests_wait_for_the_senders_previous_request() {
        let slots = interleave(4, 3);
        let deps = dependencies(4, &slots, 1);
        assert!(deps[..4].iter().all(Vec::is_empty));
        for (request, list) in deps.iter().enumerate().skip(4) {
            assert_eq!(list, &[request as u32 - 4]);
        }
        check_schedule(4, 3, 1);
    }

    #[test]
    fn batches_wait_for_the_batches_holding_previous_nonces() {
        // 10 accounts, batches of 4: batch 2 = slots 8..12 = (8,0) (9,0) (0,1) (1,1).
        let slots = interleave(10, 3);
        let deps = dependencies(10, &slots, 4);
        assert_eq!(deps[0], Vec::<u32>::new());
        assert_eq!(deps[2], vec![0]);
        // Batch 3 = (2,1) (3,1) (4,1) (5,1): previous nonces all in batch 0 and 1.
        assert_eq!(deps[3], vec![0, 1]);
        for (accounts, per_account, batch) in
            [(10, 3, 4), (1000, 30, 100), (7, 5, 3), (1, 10, 1), (2, 10, 5), (5, 4, 100)]
        {
            check_schedule(accounts, per_account, batch);
        }
    }

    #[test]
    fn one_sender_in_a_batch_is_not_its_own_dependency() {
        let slots = interleave(1, 6);
        let deps = dependencies(1, &slots, 3);
        assert_eq!(deps, vec![vec![], vec![0]]);
    }
}
