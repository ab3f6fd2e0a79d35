//! Delivery: events and read completions to the sink — a handler called
//! on the worker, or the application's bounded channel, with back-pressure
//! (events held back and retried on a timer when the channel is full).

use super::*;

impl Actor {
    /// Hands queued events to the sink (called several times a turn, most
    /// often with nothing to do: that check stays inline at the call site).
    #[inline]
    pub(super) fn deliver(&mut self, w: &mut WorkerCtx) {
        if self.core.out.is_empty()
            && self.core.overflow.is_empty()
            && self.core.completions.is_none()
        {
            return;
        }
        self.deliver_queued(w);
    }

    /// Runs a finished read's completion, after the events queued ahead of it.
    pub(super) fn complete_read(&mut self, r: Box<dyn ReadRequest>, w: &mut WorkerCtx) {
        self.deliver(w);
        self.run_completion(r, w);
    }

    /// Runs one read completion (application code: a panic fails only this
    /// connection).
    pub(super) fn run_completion(&mut self, r: Box<dyn ReadRequest>, w: &mut WorkerCtx) {
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

    /// Delivers one event now: straight to a handler when nothing is queued
    /// ahead of it (no trip through the event vector), else in order.
    pub(super) fn deliver_one(&mut self, ev: Event, w: &mut WorkerCtx) {
        if let (Some(Sink::Handler(h)), true) = (self.sink.as_mut(), self.core.out.is_empty()) {
            self.core.call_handler(h, ev, w);
        } else {
            self.core.out.push(ev);
        }
        self.deliver(w);
    }

    pub(super) fn deliver_queued(&mut self, w: &mut WorkerCtx) {
        loop {
            // Reads an error ended outside a decode pass (also one a handler
            // below just caused, by closing): answered before the events
            // that report it, `Closed` included.
            while let Some(batch) = self.core.completions.take() {
                for r in *batch {
                    self.run_completion(r, w);
                }
            }
            if self.core.out.is_empty() {
                break;
            }
            // Event vectors circulate through the worker's pool: no
            // allocation per event, and an idle connection holds none.
            let spare = w.local.event_vecs.pop().unwrap_or_default();
            let mut events = std::mem::replace(&mut self.core.out, spare);
            match self.sink.as_mut() {
                None => {
                    // The handler factory has not run yet: keep them.
                    std::mem::swap(&mut self.core.out, &mut events);
                    self.core.out.append(&mut events);
                    w.local.recycle_events(events);
                    return;
                }
                Some(Sink::Channel(tx)) => {
                    let id = self.core.shared.id;
                    for ev in events.drain(..) {
                        if !self.core.overflow.is_empty() {
                            self.core.overflow.push_back(ev);
                            continue;
                        }
                        match tx.try_send((id, ev)) {
                            Ok(()) => {}
                            Err(TrySendError::Full((_, ev))) => {
                                self.core.overflow.push_back(ev);
                            }
                            Err(TrySendError::Disconnected(_)) => {}
                        }
                    }
                    if !self.core.overflow.is_empty() {
                        let at = w.now + self.core.retry_delay;
                        self.core.arm(TimerKind::Retry, at, w);
                    }
                }
                Some(Sink::Handler(h)) => {
                    for ev in events.drain(..) {
                        self.core.call_handler(h, ev, w);
                    }
                }
            }
            w.local.recycle_events(events);
        }
        self.retry_overflow(w);
    }

    pub(super) fn retry_overflow(&mut self, w: &mut WorkerCtx) {
        if self.core.overflow.is_empty() {
            return;
        }
        let Some(Sink::Channel(tx)) = self.sink.as_ref() else {
            return;
        };
        let id = self.core.shared.id;
        let mut progressed = false;
        while let Some(ev) = self.core.overflow.pop_front() {
            match tx.try_send((id, ev)) {
                Ok(()) => progressed = true,
                Err(TrySendError::Full((_, ev))) => {
                    self.core.overflow.push_front(ev);
                    // Back off only while the consumer makes no progress at all;
                    // one that keeps up (merely a small channel) is served at
                    // the short delay, not at 2 events per 50 ms.
                    self.core.retry_delay = if progressed {
                        RETRY_DELAY
                    } else {
                        (self.core.retry_delay * 2).min(Duration::from_millis(50))
                    };
                    let at = w.now + self.core.retry_delay;
                    self.core.arm(TimerKind::Retry, at, w);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.core.overflow.clear();
                }
            }
        }
        self.core.retry_delay = RETRY_DELAY;
    }
}

impl Core {
    /// Runs the handler on one event; a panic in it fails the connection.
    pub(super) fn call_handler(&mut self, h: &mut Box<dyn Handler>, ev: Event, w: &mut WorkerCtx) {
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
        !self.out.is_empty() || self.completions.is_some()
    }

    /// Keeps a read whose answer is a completion, for the next delivery.
    pub(super) fn push_completion(&mut self, r: Box<dyn ReadRequest>) {
        self.completions
            .get_or_insert_with(Default::default)
            .push(r);
    }
}
