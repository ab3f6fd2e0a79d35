//! Connection limits: how many connections a listener, and the whole
//! reactor, may have open at once. At the limit a listener stops accepting
//! (the kernel backlog holds the rest) until a connection closes.
//!
//! Counted exactly: a slot is taken before a connection is accepted (or a
//! connect/adopt admitted) and given back when the worker drops its actor
//! (closed, its last event handed over), by a guard the actor owns — also
//! when it ends by a panic or at shutdown.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Open connections and their maximum (`usize::MAX`: none).
#[derive(Debug)]
pub(crate) struct ConnLimit {
    open: AtomicUsize,
    max: usize,
}

impl ConnLimit {
    pub(crate) fn new(max: Option<usize>) -> Self {
        ConnLimit {
            open: AtomicUsize::new(0),
            max: max.unwrap_or(usize::MAX),
        }
    }

    pub(crate) fn is_limited(&self) -> bool {
        self.max != usize::MAX
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Takes a slot if one is free.
    pub(crate) fn try_acquire(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives a slot back; whether the count was at the maximum.
    fn release(&self) -> bool {
        self.open.fetch_sub(1, Ordering::AcqRel) == self.max
    }
}

/// The reactor-wide limit plus the wake-up of the poller when a slot frees
/// at the limit (paused listeners then resume).
pub(crate) struct Limits {
    pub(crate) reactor: ConnLimit,
    /// A slot was freed at a limit: the poller resumes paused listeners.
    pub(crate) freed: AtomicBool,
    poller: Arc<crate::sys::Poller>,
}

impl Limits {
    pub(crate) fn new(max: Option<usize>, poller: Arc<crate::sys::Poller>) -> Self {
        Limits {
            reactor: ConnLimit::new(max),
            freed: AtomicBool::new(false),
            poller,
        }
    }
}

/// The slots one connection holds; given back on drop.
pub(crate) struct LimitGuard {
    limits: Arc<Limits>,
    reactor: bool,
    listener: Option<Arc<ConnLimit>>,
}

impl LimitGuard {
    /// Takes a reactor slot (if the reactor is limited) and a listener slot
    /// (if given and limited); `None` when either is full (nothing held).
    /// `Some(None)`: no limit applies, nothing to hold.
    pub(crate) fn acquire(
        limits: &Arc<Limits>,
        listener: Option<&Arc<ConnLimit>>,
    ) -> Option<Option<LimitGuard>> {
        let listener = listener.filter(|l| l.is_limited());
        let reactor = limits.reactor.is_limited();
        if !reactor && listener.is_none() {
            return Some(None);
        }
        if reactor && !limits.reactor.try_acquire() {
            return None;
        }
        if let Some(l) = listener {
            if !l.try_acquire() {
                if reactor {
                    limits.reactor.release();
                }
                return None;
            }
        }
        Some(Some(LimitGuard {
            limits: limits.clone(),
            reactor,
            listener: listener.cloned(),
        }))
    }
}

impl Drop for LimitGuard {
    fn drop(&mut self) {
        let mut was_full = self.reactor && self.limits.reactor.release();
        if let Some(l) = &self.listener {
            was_full |= l.release();
        }
        if was_full {
            self.limits.freed.store(true, Ordering::Release);
            let _ = self.limits.poller.notify();
        }
    }
}

impl std::fmt::Debug for LimitGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitGuard").finish_non_exhaustive()
    }
}
