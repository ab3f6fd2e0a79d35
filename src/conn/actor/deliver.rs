//! Delivery: events and read completions to the sink — a handler called
//! on the worker, or the application's bounded channel, with back-pressure
//! (events held back and retried on a timer when the channel is full).

use super::ctx::Ctx;
use super::handler::ActorSink;
use super::handler::Handler;
use super::pools::Pools;
use super::requests::ReadRequest;
use super::timers::TimerKind;
use super::Actor;
use super::Core;
use super::WorkerCtx;
use super::RETRY_MS_MAX;
use super::RETRY_MS_MIN;
use crate::conn::deque::Deque;
use crate::conn::Event;
use crate::error::Error;
use crate::framing::Frame;
use crate::reactor::worker::panic_message;
use crossbeam_channel::TrySendError;
use std::panic::catch_unwind;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use std::time::Instant;

/// Events and read completions on their way to the sink.
pub(super) struct Outbox {
    /// Queued for the next delivery.
    pub(super) events: Vec<Event>,
    /// Held back by a full event channel, retried on a timer.
    pub(super) overflow: Deque<Event>,
    /// Read completions answered outside a decode pass (an error ended
    /// them): run by the next delivery, before events.
    /// Boxed: rare, and the actor stays small.
    #[allow(clippy::box_collection)]
    pub(super) completions: Option<Box<Vec<Box<dyn ReadRequest>>>>,
    /// `Event::Closed` waits for delivery, after everything above: a flag
    /// rather than a queued event, because it is always the last one, and
    /// a connection that ran its course then hands it to its handler
    /// without taking a vector from the pool and giving it back.
    pub(super) closed: bool,
    /// The next retry's delay while the channel stays full, in
    /// milliseconds (1 doubling to 50: two bytes, where a `Duration` would
    /// take sixteen in every actor).
    retry_ms: u16,
}

impl Outbox {
    pub(super) fn new() -> Self {
        Outbox {
            events: Vec::new(),
            overflow: Deque::new(),
            completions: None,
            closed: false,
            retry_ms: RETRY_MS_MIN,
        }
    }

    /// Nothing waits for delivery (the check every delivery starts with).
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.events.is_empty()
            && !self.closed
            && self.overflow.is_empty()
            && self.completions.is_none()
    }

    /// When to retry a full channel, from `now`.
    pub(super) fn retry_at(&self, now: Instant) -> Instant {
        now + Duration::from_millis(self.retry_ms.into())
    }

    /// The consumer took something (`progressed`), or nothing: retry at
    /// the short delay, or back off (doubling, up to 50 ms).
    pub(super) fn back_off(&mut self, progressed: bool) {
        self.retry_ms = if progressed {
            RETRY_MS_MIN
        } else {
            (self.retry_ms * 2).min(RETRY_MS_MAX)
        };
    }

    /// Queues an event, in a vector from the worker's pool: a connection
    /// holds none between turns, and a turn that delivers nothing through
    /// the queue (a frame goes to a handler directly) takes none.
    #[inline]
    pub(super) fn push(&mut self, pools: &mut Pools, ev: Event) {
        if self.events.capacity() == 0 {
            if let Some(v) = pools.event_vecs.pop() {
                self.events = v;
            }
        }
        self.events.push(ev);
    }

    /// Keeps a read whose answer is a completion, for the next delivery.
    pub(super) fn push_completion(&mut self, r: Box<dyn ReadRequest>) {
        self.completions
            .get_or_insert_with(Default::default)
            .push(r);
    }
}

impl Actor {
    /// Hands queued events to the sink (called several times a turn, most
    /// often with nothing to do: that check stays inline at the call site).
    #[inline]
    pub(super) fn deliver(&mut self, w: &mut WorkerCtx) {
        if self.core.outbox.is_empty() {
            return;
        }
        self.deliver_queued(w);
    }

    /// Hands one event to the sink: straight to a handler when nothing is
    /// queued ahead of it (as [`deliver_frame`](Self::deliver_frame)), else
    /// in order behind what is.
    pub(super) fn emit(&mut self, ev: Event, w: &mut WorkerCtx) {
        if let (Some(ActorSink::Handler(h)), true) =
            (self.sink.as_mut(), self.core.outbox.is_empty())
        {
            self.core.call_handler(&mut **h, ev, w);
        } else {
            self.core.outbox.push(&mut w.local, ev);
        }
        self.deliver(w);
    }

    /// Runs a finished read's completion, after the events queued ahead of it.
    pub(super) fn complete_read(&mut self, r: Box<dyn ReadRequest>, w: &mut WorkerCtx) {
        self.deliver(w);
        self.run_completion(r, w);
    }

    /// Runs one read completion (application code: a panic fails only this
    /// connection).
    pub(super) fn run_completion(&mut self, r: Box<dyn ReadRequest>, w: &mut WorkerCtx) {
        w.metrics.conn.events.inc();
        let res = {
            let mut ctx = Ctx {
                core: &mut self.core,
                w,
            };
            catch_unwind(AssertUnwindSafe(|| r.complete(&mut ctx)))
        };
        if let Err(p) = res {
            self.core.fail(Error::Panicked(panic_message(&p)), w);
        }
    }

    /// Delivers a streaming frame now: straight to a handler when nothing
    /// is queued ahead of it (no trip through the event vector), else in
    /// order. Counted here as a decoded frame — and, on the direct path,
    /// as the event too, with one increment (`direct_frames`).
    ///
    /// The event is built in each branch, not once ahead of the test: the
    /// direct call then gets it built in place (one 64-byte copy fewer).
    pub(super) fn deliver_frame(&mut self, frame: Frame, w: &mut WorkerCtx) {
        if let (Some(ActorSink::Handler(h)), true) =
            (self.sink.as_mut(), self.core.outbox.events.is_empty())
        {
            self.core
                .call_handler_uncounted(&mut **h, Event::Read(frame), w);
            // Counted after the call, never between building the event and
            // handing it over: a store there keeps the compiler from
            // building the 64-byte event in place (one more copy, 16
            // instructions a message).
            w.metrics.conn.direct_frames.inc();
        } else {
            self.queue_frame(frame, w);
        }
        self.deliver(w);
    }

    /// A frame that waits behind queued events (or for a sink).
    #[cold]
    #[inline(never)]
    fn queue_frame(&mut self, frame: Frame, w: &mut WorkerCtx) {
        self.core.outbox.push(&mut w.local, Event::Read(frame));
        w.metrics.conn.frames.inc();
    }

    pub(super) fn deliver_queued(&mut self, w: &mut WorkerCtx) {
        loop {
            // Reads an error ended outside a decode pass (also one a handler
            // below just caused, by closing): answered before the events
            // that report it, `Closed` included.
            while let Some(batch) = self.core.outbox.completions.take() {
                for r in *batch {
                    self.run_completion(r, w);
                }
            }
            if self.core.outbox.events.is_empty() {
                if !self.core.outbox.closed {
                    break;
                }
                // `Closed`, after everything else.
                self.core.outbox.closed = false;
                if let Some(ActorSink::Handler(h)) = self.sink.as_mut() {
                    self.core.call_handler(&mut **h, Event::Closed, w);
                    continue;
                }
                // A channel (or no sink yet): in order through the queue,
                // with its back-pressure.
                self.core.outbox.push(&mut w.local, Event::Closed);
            }
            // Taken whole: what the handler causes meanwhile (an error its
            // write reports) queues behind, in a vector of its own from the
            // worker's pool, and runs in the next round (`Closed` after
            // it). This one goes back to the pool.
            let mut events = std::mem::take(&mut self.core.outbox.events);
            match self.sink.as_mut() {
                None => {
                    // The handler factory has not run yet: keep them.
                    self.core.outbox.events = events;
                    return;
                }
                Some(ActorSink::Channel(tx)) => {
                    let id = self.core.shared.id;
                    for ev in events.drain(..) {
                        if !self.core.outbox.overflow.is_empty() {
                            self.core.outbox.overflow.push_back(ev);
                            continue;
                        }
                        match tx.try_send((id, ev)) {
                            Ok(()) => w.metrics.conn.events.inc(),
                            Err(TrySendError::Full((_, ev))) => {
                                self.core.outbox.overflow.push_back(ev);
                            }
                            Err(TrySendError::Disconnected(_)) => {}
                        }
                    }
                    if !self.core.outbox.overflow.is_empty() {
                        let at = self.core.outbox.retry_at(w.now);
                        self.core.arm(TimerKind::Retry, at, w);
                    }
                }
                Some(ActorSink::Handler(h)) => {
                    if events.len() == 1 {
                        // The usual case (one event): no drain.
                        if let Some(ev) = events.pop() {
                            self.core.call_handler(&mut **h, ev, w);
                        }
                    } else {
                        for ev in events.drain(..) {
                            self.core.call_handler(&mut **h, ev, w);
                        }
                    }
                }
            }
            w.local.recycle_events(events);
        }
        self.retry_overflow(w);
    }

    pub(super) fn retry_overflow(&mut self, w: &mut WorkerCtx) {
        if self.core.outbox.overflow.is_empty() {
            return;
        }
        let Some(ActorSink::Channel(tx)) = self.sink.as_ref() else {
            return;
        };
        let id = self.core.shared.id;
        let mut progressed = false;
        while let Some(ev) = self.core.outbox.overflow.pop_front() {
            match tx.try_send((id, ev)) {
                Ok(()) => {
                    w.metrics.conn.events.inc();
                    progressed = true;
                }
                Err(TrySendError::Full((_, ev))) => {
                    self.core.outbox.overflow.push_front(ev);
                    // Back off only while the consumer makes no progress at all;
                    // one that keeps up (merely a small channel) is served at
                    // the short delay, not at 2 events per 50 ms.
                    self.core.outbox.back_off(progressed);
                    let at = self.core.outbox.retry_at(w.now);
                    self.core.arm(TimerKind::Retry, at, w);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.core.outbox.overflow.clear();
                }
            }
        }
        self.core.outbox.retry_ms = RETRY_MS_MIN;
    }
}

impl Core {
    /// Runs the handler on one event; a panic in it fails the connection.
    pub(super) fn call_handler(&mut self, h: &mut dyn Handler, ev: Event, w: &mut WorkerCtx) {
        self.call_handler_uncounted(h, ev, w);
        // After the call: see `deliver_frame`.
        w.metrics.conn.events.inc();
    }

    /// [`call_handler`](Self::call_handler) for an event counted by the caller.
    #[inline]
    pub(super) fn call_handler_uncounted(
        &mut self,
        h: &mut dyn Handler,
        ev: Event,
        w: &mut WorkerCtx,
    ) {
        let r = {
            let mut ctx = Ctx { core: self, w };
            catch_unwind(AssertUnwindSafe(|| h.on_event(&mut ctx, ev)))
        };
        if let Err(p) = r {
            self.fail(Error::Panicked(panic_message(&p)), w);
        }
    }

    /// Events or read completions wait for delivery.
    pub(super) fn has_output(&self) -> bool {
        !self.outbox.events.is_empty() || self.outbox.closed || self.outbox.completions.is_some()
    }
}
