//! Crash injection for fault tests: `ROLLUP_FAILPOINT=<name>[:<n>]` makes
//! the process abort (as a crash would: no unwinding, no cleanup, open
//! database transactions left to roll back) the `n`-th time (default: first)
//! execution reaches [`hit`]`(name)`.
//!
//! Always compiled in, so the binary under test is the binary that ships;
//! unset, a point costs one load of an initialized `OnceLock`. Whoever can
//! set a process's environment can kill it anyway.

use std::sync::{
    OnceLock,
    atomic::{AtomicU64, Ordering},
};

struct Armed {
    name: String,
    remaining: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var("ROLLUP_FAILPOINT").ok()?;
            let (name, nth) = match value.rsplit_once(':') {
                Some((name, nth)) if nth.chars().all(|c| c.is_ascii_digit()) => {
                    (name.to_owned(), nth.parse().unwrap_or(1))
                }
                _ => (value, 1),
            };
            Some(Armed { name, remaining: AtomicU64::new(nth) })
        })
        .as_ref()
}

/// Aborts the process here if `ROLLUP_FAILPOINT` names this point.
#[inline]
pub fn hit(name: &str) {
    let Some(armed) = armed() else { return };
    if armed.name == name && armed.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
        tracing::error!(failpoint = name, "failpoint reached: aborting");
        std::process::abort();
    }
}
