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

/// The unit of a [`stamp`]: 10 ms.
pub(crate) const STAMP_UNIT: std::time::Duration = std::time::Duration::from_millis(10);

/// `at` as 10 ms units after [`epoch`] in 32 bits, never 0 (0 stands for
/// "never"). It wraps after 497 days: [`instant_of`] reads it as the most
/// recent such moment, so an age below 497 days is always right. Four
/// bytes, for the two activity stamps every connection carries.
pub(crate) fn stamp(at: Instant) -> u32 {
    let units = at.saturating_duration_since(epoch()).as_millis() / STAMP_UNIT.as_millis();
    (units as u32).wrapping_add(1).max(1)
}

/// The instant a [`stamp`] stands for, as of now (`None` for 0).
pub(crate) fn instant_of(stamp: u32) -> Option<Instant> {
    if stamp == 0 {
        return None;
    }
    let now = Instant::now();
    let age = self::stamp(now).wrapping_sub(stamp);
    Some(now.checked_sub(STAMP_UNIT * age).unwrap_or(now))
}

/// Fixed at the first reactor's start, before any deadline exists.
pub(crate) fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}
