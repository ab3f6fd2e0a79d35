//! The actor's timers: which kinds there are (the reactor's timer heap
//! carries them as opaque tags) and which deadline is armed per kind.

use super::{Core, Event, Phase, WorkerCtx};
use crate::error::Inactivity as Timer;
use crate::error::TimeoutKind;
use crate::reactor::timers::epoch;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Last activity per inactivity timer: resetting one is a store; the
/// armed entry re-evaluates against it when it fires.
pub(super) struct Inactivity {
    pub(super) any: Instant,
    pub(super) read: Instant,
    pub(super) write: Instant,
}

impl Inactivity {
    pub(super) fn new(now: Instant) -> Self {
        Inactivity {
            any: now,
            read: now,
            write: now,
        }
    }

    pub(super) fn touch_read(&mut self, now: Instant) {
        self.any = now;
        self.read = now;
    }

    pub(super) fn touch_write(&mut self, now: Instant) {
        self.any = now;
        self.write = now;
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

impl Core {
    pub(super) fn arm(&mut self, kind: TimerKind, at: Instant, w: &mut WorkerCtx) {
        if let Some(cur) = self.armed.get(kind) {
            if cur <= at {
                return; // the earlier entry re-evaluates when it fires
            }
        }
        self.armed.set(kind, at);
        w.arm(at, self.token, kind as u8);
    }

    pub(super) fn period_of(&self, kind: TimerKind) -> Option<(Duration, Instant)> {
        match kind {
            TimerKind::Activity => self.opts.timeout.map(|p| (p, self.idle.any)),
            TimerKind::Read => self.opts.read_timeout.map(|p| (p, self.idle.read)),
            TimerKind::Write => self.opts.write_timeout.map(|p| (p, self.idle.write)),
            _ => None,
        }
    }

    pub(super) fn check_inactivity(&mut self, kind: TimerKind, w: &mut WorkerCtx) {
        if self.phase != Phase::Open {
            return;
        }
        let Some((period, stamp)) = self.period_of(kind) else {
            return;
        };
        if period.is_zero() {
            return;
        }
        let due = stamp + period;
        if w.now >= due {
            match kind {
                TimerKind::Activity => self.idle.any = w.now,
                TimerKind::Read => self.idle.read = w.now,
                _ => self.idle.write = w.now,
            }
            self.outbox.push(
                &mut w.local,
                Event::Timeout(match kind {
                    TimerKind::Activity => TimeoutKind::Activity,
                    TimerKind::Read => TimeoutKind::Read,
                    _ => TimeoutKind::Write,
                }),
            );
            let at = w.now + period;
            self.arm(kind, at, w);
        } else {
            self.arm(kind, due, w);
        }
    }

    pub(super) fn set_timeout(&mut self, kind: Timer, period: Option<Duration>, w: &mut WorkerCtx) {
        let opts = Arc::make_mut(&mut self.opts);
        match kind {
            Timer::Any => opts.timeout = period,
            Timer::Read => opts.read_timeout = period,
            Timer::Write => opts.write_timeout = period,
        }
        self.check_inactivity(timer_of(kind.into()), w);
    }

    pub(super) fn reset_timeout(&mut self, kind: Timer, now: Instant) {
        match kind {
            Timer::Any => self.idle.any = now,
            Timer::Read => self.idle.read = now,
            Timer::Write => self.idle.write = now,
        }
    }
}

pub(super) fn timer_of(kind: TimeoutKind) -> TimerKind {
    match kind {
        TimeoutKind::Read => TimerKind::Read,
        TimeoutKind::Write => TimerKind::Write,
        _ => TimerKind::Activity,
    }
}
