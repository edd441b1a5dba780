//! Settings of mimalloc, the global allocator of the node and of the
//! executor's benchmarks.
//!
//! A block allocates and frees a few hundred MiB of short-lived memory
//! (read and write sets, revm's journals, the overlay). With mimalloc's
//! default purge delay the freed pages go back to the kernel within a
//! second, and the next block faults them in again: each fault of a
//! transparent huge page zeroes 2 MiB, 8% of a parallel ERC-20 block and
//! 5% of a sequential one (`perf`: `clear_page_erms` under
//! `mi_page_free_list_extend`). Blocks come every second or two, so the
//! memory is kept for [`PURGE_DELAY_MS`] instead: an idle node still returns it.

/// How long freed memory stays with the process before mimalloc returns it.
pub const PURGE_DELAY_MS: i64 = 10_000;

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_t`; the
/// Rust bindings do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Applies the settings above. Call it first thing in `main` of a binary
/// whose global allocator is mimalloc; elsewhere it changes nothing.
pub fn tune_mimalloc() {
    // SAFETY: `mi_option_set` only stores an option value; it is safe to
    // call at any time, from any thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as _) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purge_delay() -> i64 {
        // SAFETY: reading an option value.
        unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) as i64 }
    }

    #[test]
    fn option_15_is_the_purge_delay_and_tuning_sets_it() {
        // mimalloc 3's default purge delay is 1,000 ms (no other option
        // defaults to that): the position is right for the bundled version.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay(), 1_000);
        }
        tune_mimalloc();
        assert_eq!(purge_delay(), PURGE_DELAY_MS);
    }
}
