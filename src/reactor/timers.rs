//! Per-worker timers: one binary heap of deadlines, no thread or syscall per timer.
//!
//! Entries are not cancelled one by one. Each carries a tag (a `u8`) that
//! only the source that armed it interprets (a connection's timer kind); a
//! source remembers which deadline it armed per tag, so a popped entry that
//! no longer matches is stale and ignored. Resetting an inactivity timer
//! therefore costs nothing: the actor only updates its activity stamp, and
//! when the old entry fires it re-arms at `last_activity + period` (the
//! reference's algorithm).
//!
//! What stale entries may not do is pile up: a connection that closes
//! leaves its entries behind (a TLS handshake timeout, an idle timeout of
//! an hour), so under churn the heap would hold one per connection of the
//! last timeout period — unbounded memory, and each popped late at the
//! cost of a sift through a heap far larger than the live timers. So the
//! heap is compacted (`retain_live`, run by the worker, which asks each
//! entry's source) whenever it has doubled since it last was: its size
//! stays within twice the live entries (at least [`COMPACT_MIN`]), at an
//! amortised cost of a couple of sequential visits per entry armed.

use super::Token;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Below this many entries the heap is never compacted.
pub(crate) const COMPACT_MIN: usize = 1024;

pub(crate) struct TimerHeap {
    heap: BinaryHeap<Reverse<(Instant, usize, u8)>>,
    /// Compact once the heap is larger than this.
    compact_at: usize,
}

impl Default for TimerHeap {
    fn default() -> Self {
        TimerHeap {
            heap: BinaryHeap::new(),
            compact_at: COMPACT_MIN,
        }
    }
}

impl TimerHeap {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Stale entries may have piled up since the last compaction (the
    /// heap doubled).
    #[inline]
    pub(crate) fn wants_compaction(&self) -> bool {
        self.heap.len() > self.compact_at
    }

    /// Keeps the entries `live` says may still fire; the next compaction
    /// is due when the heap has doubled again.
    pub(crate) fn retain_live(&mut self, mut live: impl FnMut(Instant, Token, u8) -> bool) {
        self.heap
            .retain(|Reverse((at, tok, tag))| live(*at, Token(*tok), *tag));
        self.compact_at = (self.heap.len() * 2).max(COMPACT_MIN);
    }

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

/// 10 ms units after [`epoch`], in 64-bit arithmetic (`as_millis` is
/// 128-bit: a TLS connection converts on every socket read and write).
fn units(at: Instant) -> u64 {
    const PER_SEC: u64 = 1_000_000_000 / STAMP_UNIT.as_nanos() as u64;
    let d = at.saturating_duration_since(epoch());
    d.as_secs() * PER_SEC + (d.subsec_nanos() / STAMP_UNIT.subsec_nanos()) as u64
}

/// `at` as 10 ms units after [`epoch`] in 32 bits, plus one, never 0 (0
/// stands for "never"). It wraps after 497 days: [`instant_of`] reads it as
/// the most recent such moment, so an age below 497 days is always right.
/// Four bytes, for the two activity stamps every connection carries.
pub(crate) fn stamp(at: Instant) -> u32 {
    (units(at) as u32).wrapping_add(1).max(1)
}

/// The instant a [`stamp`] stands for (`None` for 0): the latest moment
/// at or before `now` with that stamp. The same stamp gives the same
/// instant whenever it is read (until it is 497 days old).
pub(crate) fn instant_of(stamp: u32, now: Instant) -> Option<Instant> {
    if stamp == 0 {
        return None;
    }
    let cur = units(now);
    let age = (cur as u32).wrapping_sub(stamp - 1) as u64;
    let at = cur.saturating_sub(age);
    Some(epoch() + std::time::Duration::from_millis(at * STAMP_UNIT.as_millis() as u64))
}

/// Fixed at the first reactor's start, before any deadline exists.
pub(crate) fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

#[cfg(test)]
mod stamp_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_stamp_reads_back_the_same_instant_whenever_it_is_read() {
        let at = epoch() + Duration::from_millis(12_345);
        let s = stamp(at);
        let first = instant_of(s, at + Duration::from_millis(5)).unwrap();
        let later = instant_of(s, at + Duration::from_secs(3600)).unwrap();
        assert_eq!(first, later);
        assert!(first <= at && at - first < STAMP_UNIT);
        assert_eq!(instant_of(0, at), None);
    }
}
