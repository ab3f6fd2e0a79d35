//! Per-worker timers: one binary heap of deadlines, no thread or syscall per timer.
//!
//! Entries are never removed early. Each carries a tag (a `u8`) that only
//! the source that armed it interprets (a connection's timer kind); a
//! source remembers which deadline it armed per tag, so a popped entry that
//! no longer matches is stale and ignored. Resetting an inactivity timer
//! therefore costs nothing: the actor only updates its activity stamp, and
//! when the old entry fires it re-arms at `last_activity + period` (the
//! reference's algorithm).

use super::Token;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Default)]
pub(crate) struct TimerHeap {
    heap: BinaryHeap<Reverse<(Instant, usize, u8)>>,
}

impl TimerHeap {
    pub(crate) fn push(&mut self, at: Instant, token: Token, tag: u8) {
        self.heap.push(Reverse((at, token.0, tag)));
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pops one entry due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Token, u8)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => {
                let Reverse((at, tok, tag)) = self.heap.pop()?;
                Some((at, Token(tok), tag))
            }
            _ => None,
        }
    }
}

/// Fixed at the first reactor's start, before any deadline exists.
pub(crate) fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}
