//! The turn driver: one turn applies the mailbox in order, then pumps —
//! decode, flush, read — until nothing more can happen without new
//! readiness, then delivers events.

use super::ctx::Ctx;
use super::Actor;
use super::Core;
use super::Phase;
use super::WorkerCtx;
use super::WriteSide;
use super::MAX_DELIVERY_ROUNDS;
use super::READ_BUDGET;
use crate::conn::shared::Msg;
use crate::error::Error;
use crate::reactor::worker::panic_message;
use std::panic::catch_unwind;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

impl Actor {
    /// One turn: mailbox, then pump, then event delivery.
    pub(crate) fn run(&mut self, w: &mut WorkerCtx) {
        loop {
            if self.core.deferred.is_some() && !self.core.establishing() {
                self.replay_deferred(w);
            }
            // Most turns (readiness) find no mail: skip the buffer shuffle
            // (and keep the mail path out of this function's code).
            if self.core.shared.has_mail() {
                self.apply_mail(w);
            }
            self.pump(w);
            // The connection (or its handshake) may have completed in this
            // pump: what waited for it applies now, in the same turn.
            if self.core.deferred.is_some()
                && !self.core.establishing()
                && self.core.phase != Phase::Closed
            {
                continue;
            }
            break;
        }
        self.deliver(w);
        if self.core.outbox.events.is_empty() && self.core.outbox.events.capacity() > 0 {
            w.local
                .recycle_events(std::mem::take(&mut self.core.outbox.events));
        }
        self.count_turn(w);
    }

    /// Applies everything in the mailbox, in order.
    #[inline(never)]
    fn apply_mail(&mut self, w: &mut WorkerCtx) {
        let mut mail = std::mem::take(&mut w.local.mail);
        loop {
            self.core.shared.take_mail(&mut mail);
            if mail.is_empty() {
                break;
            }
            w.metrics.conn.mail.add(mail.len() as u64);
            while let Some(msg) = mail.pop_front() {
                if self.apply_or_discard_rest(msg, &mut mail, w) {
                    break;
                }
            }
        }
        w.local.mail = mail;
    }

    /// Applies the messages that waited for the connection to be
    /// established, in order, ahead of anything newer.
    #[inline(never)]
    pub(super) fn replay_deferred(&mut self, w: &mut WorkerCtx) {
        let Some(mut q) = self.core.deferred.take() else {
            return;
        };
        while let Some(msg) = q.pop_front() {
            if self.apply_or_discard_rest(msg, &mut q, w) {
                return;
            }
            if let Some(d) = self.core.deferred.as_mut() {
                // It had to wait again: the rest stays behind it, in order.
                d.extend(q.drain(..));
                return;
            }
        }
    }

    /// Applies `msg`; if that closed the connection, what `rest` still
    /// holds is answered like what `finish` found left in the mailbox, and
    /// `true` says so.
    fn apply_or_discard_rest(
        &mut self,
        msg: Msg,
        rest: &mut std::collections::VecDeque<Msg>,
        w: &mut WorkerCtx,
    ) -> bool {
        self.apply(msg, w);
        if self.core.phase != Phase::Closed {
            return false;
        }
        let why = self.core.end_error();
        self.core.discard_mail(rest.drain(..), &why);
        true
    }

    pub(super) fn apply(&mut self, msg: Msg, w: &mut WorkerCtx) {
        if let Msg::Resolved(res) = msg {
            // Never deferred: what is deferred waits for this.
            self.on_resolved(res, w);
            self.deliver(w);
            return;
        }
        let core = &mut self.core;
        if let Some(d) = core.deferred.as_mut() {
            if let Msg::Close = msg {
                core.close_requested(w);
                self.deliver(w);
            } else {
                // Something ahead waits for the connection: so does this.
                d.push_back(msg);
            }
            return;
        }
        match msg {
            Msg::Write(data) => core.enqueue(data, &mut w.local),
            Msg::WriteParts(parts) => {
                for data in parts {
                    core.enqueue(data, &mut w.local);
                }
            }
            Msg::PushRead(r) => core.push_read_req(r, false),
            Msg::UnshiftRead(r) => core.push_read_req(r, true),
            Msg::Streaming(s) => {
                if s.is_some() {
                    core.rd.in_place = false;
                }
                core.rd.stream = s;
            }
            Msg::StopRead => core.rd.stopped = true,
            Msg::StartRead => core.rd.stopped = false,
            Msg::Shutdown => core.shutdown(w),
            Msg::Close => core.close(w),
            Msg::SetTimeout(kind, period) => core.set_timeout(kind, period, w),
            Msg::ResetTimeout(kind) => core.reset_timeout(kind, w.now),
            Msg::Configure(f) => {
                // Application code: a panic fails this connection only.
                let before = core.opts.clone();
                match catch_unwind(AssertUnwindSafe(|| f(Arc::make_mut(&mut core.opts)))) {
                    Ok(()) => core.configured(&before, w),
                    Err(p) => core.fail(Error::Panicked(panic_message(&p)), w),
                }
            }
            Msg::Call(f) => {
                let r = {
                    let mut ctx = Ctx { core, w };
                    catch_unwind(AssertUnwindSafe(|| f(&mut ctx)))
                };
                if let Err(p) = r {
                    self.core.fail(Error::Panicked(panic_message(&p)), w);
                }
            }
            Msg::StartTls(setup) => core.starttls(setup, w),
            Msg::StopTls => core.stoptls(w),
            Msg::RequestDrain => core.request_drain(&mut w.local),
            Msg::Drained(tx) => core.add_drain_waiter(tx),
            Msg::Resolved(_) => {} // applied above
        }
        self.deliver(w);
    }

    /// Decode, flush and read until nothing more can happen without new readiness.
    pub(super) fn pump(&mut self, w: &mut WorkerCtx) {
        let mut budget = READ_BUDGET;
        let mut rounds = 0;
        'turn: loop {
            self.pump_once(&mut budget, w);
            let delivered = self.core.has_output();
            self.deliver(w);
            if delivered && matches!(self.core.phase, Phase::Open | Phase::Closing) {
                // Handlers that just got events (`Drain`, `Timeout`, …) may
                // have written (queued only, with autocork) after this
                // turn's flush. The socket is edge-triggered: no later
                // writable edge comes for those bytes, so they leave now —
                // or wait on a real EAGAIN. A `Drain` that produces starts
                // another round; a handler that writes on every `Drain`
                // yields to the worker's other connections now and then.
                self.core.flush(w);
                if self.core.has_output() {
                    rounds += 1;
                    if rounds < MAX_DELIVERY_ROUNDS {
                        continue 'turn;
                    }
                    w.again(self.core.token);
                    break;
                }
            }
            // A handler that just got an event (typically `Drain`) may have
            // resumed reading: bytes already waiting in the socket raise no
            // new edge, so read them in this turn or never.
            let core = &self.core;
            if core.phase == Phase::Open && core.rd.readable && core.wants_read() && budget > 0 {
                continue 'turn;
            }
            break;
        }
        self.core.end_of_turn(w);
    }

    pub(super) fn pump_once(&mut self, budget: &mut usize, w: &mut WorkerCtx) {
        loop {
            self.dispatch(w);
            if !matches!(self.core.phase, Phase::Open | Phase::Closing) {
                break;
            }
            if self.core.tls.is_some() && self.core.tls_after_dispatch(w) {
                continue;
            }
            self.core.flush(w);
            let core = &mut self.core;
            if !(core.rd.readable && core.wants_read()) {
                break;
            }
            if *budget == 0 {
                w.again(core.token);
                break;
            }
            match core.read_some(w) {
                Ok(n) => *budget = budget.saturating_sub(n),
                Err(e) => {
                    core.fail(e, w);
                    break;
                }
            }
        }
    }
}

impl Core {
    pub(super) fn end_of_turn(&mut self, w: &mut WorkerCtx) {
        // Both directions are finished: nothing more can happen on this socket.
        if self.phase == Phase::Open && self.rd.eof_reported && self.wr.side == WriteSide::Shut {
            self.close(w);
        }
        // A write blocked: only now is writability worth an event (the
        // modify reports room that came since, so no edge is lost).
        if !self.wr.writable && !self.wr.out_watched && self.registered {
            self.watch_writable(w);
        }
        self.publish(w);
        // An idle connection keeps no read buffer: return it to the worker's pool.
        if self.rd.buf.is_empty() && self.rd.buf.capacity() > 0 {
            let buf = std::mem::take(&mut self.rd.buf);
            w.local.recycle(buf);
        }
        // Nor TLS buffers.
        self.tls_release_buffers(true, w);
        // Nor an empty write queue's allocation.
        if self.wr.queue.is_empty() && self.wr.queue.capacity() > 0 {
            w.local
                .recycle_write_queue(std::mem::take(&mut self.wr.queue).into_inner());
        }
    }

    /// Asks the poller for writability (the first blocked write).
    #[cold]
    #[inline(never)]
    fn watch_writable(&mut self, w: &mut WorkerCtx) {
        let Some(sock) = self.sock.as_ref() else {
            return;
        };
        match sock.watch_writable(&w.poller, self.token) {
            Ok(()) => self.wr.out_watched = true,
            Err(e) => self.fail(Error::from_io(e), w),
        }
    }
}
