//! Per-worker timers: one binary heap of deadlines, no thread or syscall per timer.
//!
//! Entries are never removed early. A connection remembers which deadline it
//! armed for each timer kind; a popped entry that no longer matches is stale
//! and ignored. Resetting an inactivity timer therefore costs nothing: the
//! actor only updates its activity stamp, and when the old entry fires it
//! re-arms at `last_activity + period` (the reference's algorithm).

use super::Token;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// What a timer entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TimerKind {
    Activity = 0,
    Read = 1,
    Write = 2,
    Connect = 3,
    Linger = 4,
    Retry = 5,
    Handshake = 6,
}

pub(crate) const TIMER_KINDS: usize = 7;

#[derive(Default)]
pub(crate) struct TimerHeap {
    heap: BinaryHeap<Reverse<(Instant, usize, TimerKind)>>,
}

impl TimerHeap {
    pub(crate) fn push(&mut self, at: Instant, token: Token, kind: TimerKind) {
        self.heap.push(Reverse((at, token.0, kind)));
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pops one entry due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Token, TimerKind)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => {
                let Reverse((at, tok, kind)) = self.heap.pop()?;
                Some((at, Token(tok), kind))
            }
            _ => None,
        }
    }
}
