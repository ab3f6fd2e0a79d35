//! The wake-up protocol of a poller whose waker is an edge-triggered
//! eventfd that is never read (`epoll.rs`): many `notify` calls between two
//! waits cost one `write`.
//!
//! The rule: `notify` writes only if it is the first since the last wait
//! *reported* a wake-up; the wait clears the flag right after `epoll_wait`
//! returns and before its caller looks at its queues and commands. So a
//! `notify` that skipped its `write` always precedes that look (it saw the
//! flag still set), and one that comes after the look writes a new edge.
//! Clearing the flag any later — after the look — loses wake-ups: the model
//! test in `reactor/park.rs` (`model_wake_ups_are_never_lost`) deadlocks then.

use crate::sync::{AtomicBool, Ordering};

#[derive(Default)]
pub(crate) struct NotifyFlag {
    pending: AtomicBool,
}

impl NotifyFlag {
    /// `notify`: whether this call must write the wake-up (no other is on
    /// its way).
    pub(crate) fn should_write(&self) -> bool {
        !self.pending.swap(true, Ordering::SeqCst)
    }

    /// The write failed: nothing is on its way after all.
    pub(crate) fn write_failed(&self) {
        self.pending.store(false, Ordering::SeqCst);
    }

    /// A wait reported the wake-up; call before looking at the queues.
    pub(crate) fn seen(&self) {
        self.pending.store(false, Ordering::SeqCst);
    }
}
