//! The wake-up protocol of a poller whose waker is an edge-triggered
//! eventfd that is never read (`epoll.rs`): many `notify` calls between two
//! waits cost one `write`.
//!
//! The rule: `notify` writes only if it is the first since the last wait
//! *reported* a wake-up; the wait clears the flag once it has consumed the
//! edge, and before it waits again. A `notify` that skipped its `write`
//! then always had its edge reported by a wait that comes after it (or by
//! the one that is just returning, whose caller looks at its queues next).
//! Clearing the flag *before* the edge is consumed loses wake-ups: a
//! `notify` in between sets the flag, its edge is consumed by the wait that
//! is returning, and from then on every `notify` skips its write while no
//! edge is left for the next wait — the model test in `reactor/park.rs`
//! (`model_wake_ups_are_never_lost`) deadlocks then.

use crate::sync::{AtomicBool, Ordering};

#[derive(Default)]
pub(crate) struct NotifyFlag {
    pending: AtomicBool,
}

impl NotifyFlag {
    /// `notify`: whether this call must write the wake-up (no other is on
    /// its way).
    #[inline]
    pub(crate) fn should_write(&self) -> bool {
        !self.pending.swap(true, Ordering::SeqCst)
    }

    /// The write failed: nothing is on its way after all.
    pub(crate) fn write_failed(&self) {
        self.pending.store(false, Ordering::SeqCst);
    }

    /// A wait consumed the wake-up's edge; call before waiting again.
    #[inline]
    pub(crate) fn seen(&self) {
        self.pending.store(false, Ordering::SeqCst);
    }
}
