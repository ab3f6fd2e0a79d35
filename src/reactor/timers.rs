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

/// Which deadline a connection armed per timer kind, 8 bytes a kind
/// (nanoseconds after a process-wide epoch; 0 = none) instead of the 16 of
/// an `Option<Instant>`: it sits in every connection.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Armed([u64; TIMER_KINDS]);

/// Fixed at the first reactor's start, before any deadline exists.
pub(crate) fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn ticks(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_nanos() as u64 + 1
}

impl Armed {
    pub(crate) fn get(&self, kind: TimerKind) -> Option<Instant> {
        match self.0[kind as usize] {
            0 => None,
            t => Some(epoch() + std::time::Duration::from_nanos(t - 1)),
        }
    }

    pub(crate) fn is(&self, kind: TimerKind, at: Instant) -> bool {
        self.0[kind as usize] == ticks(at)
    }

    pub(crate) fn set(&mut self, kind: TimerKind, at: Instant) {
        self.0[kind as usize] = ticks(at);
    }

    pub(crate) fn clear(&mut self, kind: TimerKind) {
        self.0[kind as usize] = 0;
    }

    pub(crate) fn clear_all(&mut self) {
        self.0 = [0; TIMER_KINDS];
    }
}
