//! The actor's timers: which kinds there are (the reactor's timer heap
//! carries them as opaque tags) and which deadline is armed per kind.

use crate::reactor::timers::epoch;
use std::time::Instant;

/// What a timer entry is for (its tag in the worker's timer heap).
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

impl TimerKind {
    /// The kind a tag stands for (`None`: not one of ours).
    pub(crate) fn from_tag(tag: u8) -> Option<TimerKind> {
        Some(match tag {
            0 => TimerKind::Activity,
            1 => TimerKind::Read,
            2 => TimerKind::Write,
            3 => TimerKind::Connect,
            4 => TimerKind::Linger,
            5 => TimerKind::Retry,
            6 => TimerKind::Handshake,
            _ => return None,
        })
    }
}

/// Which deadline a connection armed per timer kind, 8 bytes a kind
/// (nanoseconds after a process-wide epoch; 0 = none) instead of the 16 of
/// an `Option<Instant>`: it sits in every connection.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Armed([u64; TIMER_KINDS]);

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
