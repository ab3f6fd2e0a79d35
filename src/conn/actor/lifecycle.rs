//! A connection's life: opening (options applied), messages deferred
//! until it is established, close with linger, fatal errors, and the
//! final `finish` that releases everything and emits `Closed`.

use super::pools::Pools;
use super::timers::timer_of;
use super::timers::TimerKind;
use super::Core;
use super::Phase;
use super::WorkerCtx;
#[cfg(unix)]
use super::WriteSide;
use crate::conn::shared::ConnShared;
use crate::conn::shared::Msg;
use crate::conn::Event;
use crate::conn::Options;
use crate::error::Error;
use crate::error::TimeoutKind;
use crate::net::stream::Stream;
use socket2::SockRef;
use std::io;
use std::sync::atomic::Ordering;

impl Core {
    pub(super) fn open(&mut self, stream: Stream, w: &mut WorkerCtx) {
        // An accepted socket is non-blocking from `accept` already.
        if !self.accepted {
            crate::sys::tally!(w.poller, nonblocking);
            if let Err(e) = stream.set_nonblocking(true) {
                self.fail(Error::from_io(e), w);
                return;
            }
        }
        if !self.registered {
            match stream.register(&w.poller, self.token) {
                Ok(watched) => self.wr.out_watched = watched,
                Err(e) => {
                    self.sock = Some(stream);
                    self.fail(Error::from_io(e), w);
                    return;
                }
            }
            self.registered = true;
        }
        // An accepted connection's addresses came with it (no lock here).
        let tcp = stream.as_tcp().filter(|_| !self.accepted);
        if let Some(tcp) = tcp.filter(|_| self.shared.peer_addr().is_none()) {
            self.shared
                .set_addrs(tcp.local_addr().ok(), tcp.peer_addr().ok());
        }
        #[cfg(unix)]
        if let Stream::Pipe { write: None, .. } = &stream {
            // Read-only: nothing to write to (the handle refuses writes).
            self.wr.side = WriteSide::Shut;
        }
        self.sock = Some(stream);
        self.phase = Phase::Open;
        self.rd.readable = true;
        self.wr.writable = true;
        self.idle.any = w.now;
        self.idle.read = w.now;
        self.idle.write = w.now;
        self.apply_local_options();
        if !(self.accepted && crate::sys::socket::ACCEPT_INHERITS_OPTIONS) {
            self.apply_socket_options(w);
        }
        let o = &self.opts;
        if o.timeout.is_some() || o.read_timeout.is_some() || o.write_timeout.is_some() {
            for kind in [TimeoutKind::Activity, TimeoutKind::Read, TimeoutKind::Write] {
                self.check_inactivity(timer_of(kind), w);
            }
        }
        if let Some((setup, prefix)) = self.pending_tls.take() {
            self.start_tls_session(setup, prefix, w);
        }
    }

    pub(super) fn apply_options(&mut self, w: &mut WorkerCtx) {
        self.apply_local_options();
        self.apply_socket_options(w);
    }

    /// The options that live outside the socket: the write limit handles
    /// check, the read size.
    fn apply_local_options(&mut self) {
        self.shared
            .wbuf_max
            .store(self.opts.wbuf_max, Ordering::Relaxed);
        if self.rd.size.get() > self.opts.max_read_size {
            self.rd.size.set(self.opts.max_read_size);
        }
    }

    /// `TCP_NODELAY`, `SO_KEEPALIVE`, `SO_OOBINLINE` as the options say
    /// (three `setsockopt`; an accepted socket on Linux inherits them from
    /// its listener instead, see `open`).
    fn apply_socket_options(&mut self, w: &mut WorkerCtx) {
        if let Some(sock) = self.sock.as_ref().and_then(Stream::as_tcp) {
            let s = SockRef::from(sock);
            crate::sys::tally!(w.poller, sockopt);
            let _ = s.set_tcp_nodelay(self.opts.no_delay);
            crate::sys::tally!(w.poller, sockopt);
            let _ = s.set_keepalive(self.opts.keepalive);
            crate::sys::tally!(w.poller, sockopt);
            let _ = s.set_out_of_band_inline(self.opts.oobinline);
        }
    }

    /// Options changed: apply them, and treat a new low-water mark like the
    /// reference's `on_drain` setter — `Drain` at once if the queue is
    /// already at or below it.
    pub(super) fn configured(&mut self, before: &Options, w: &mut WorkerCtx) {
        self.apply_options(w);
        // Changed inactivity timeouts take effect at once, as with `set_timeout`.
        let timers = [
            (before.timeout, self.opts.timeout, TimerKind::Activity),
            (before.read_timeout, self.opts.read_timeout, TimerKind::Read),
            (
                before.write_timeout,
                self.opts.write_timeout,
                TimerKind::Write,
            ),
        ];
        for (old, new, kind) in timers {
            if old != new {
                self.check_inactivity(kind, w);
            }
        }
        // `lwm`: none once the write side is shut (Drain stopped with it).
        let lwm = self.lwm();
        if self.opts.low_water_mark != before.low_water_mark {
            self.wr.above_lwm = false;
            if let Some(m) = lwm {
                if self.wr.len > m {
                    self.wr.above_lwm = true;
                } else {
                    self.request_drain(&mut w.local);
                }
            }
        }
    }

    /// While this holds, a `stoptls` (or a `close` with writes queued)
    /// cannot apply yet: the TCP connection or its TLS handshake is still
    /// being set up.
    pub(super) fn establishing(&self) -> bool {
        matches!(self.phase, Phase::Resolving | Phase::Connecting)
            || self.pending_tls.is_some()
            || self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// The outgoing connection is not up yet: resolving, connecting, or in
    /// the TLS handshake that is part of its connect.
    pub(super) fn connecting(&self) -> bool {
        matches!(self.phase, Phase::Resolving | Phase::Connecting)
            || (self.phase == Phase::Open
                && self.connect_handshake
                && self.tls.as_ref().is_some_and(|t| t.is_handshaking()))
    }

    /// `close` from the application (mailbox or `Ctx`). Behind deferred
    /// messages it waits in order, bounded by linger from now — unless
    /// nothing waits to be sent, then what is deferred is answered and the
    /// close applies at once.
    pub(super) fn close_requested(&mut self, w: &mut WorkerCtx) {
        if self.deferred.is_none() {
            self.close(w);
            return;
        }
        self.shared.closing.store(true, Ordering::Release);
        if self.unsent() == 0 || self.opts.linger.is_zero() {
            if let Some(q) = self.deferred.take() {
                self.discard_mail(*q, &Error::Closed);
            }
            self.close_pending = false;
            self.close(w);
            return;
        }
        self.defer_close(w);
    }

    /// A close that must wait for the connection (see `close_pending`):
    /// it is deferred, bounded by linger from now; nothing more is read
    /// for the application (reading stays on for a handshake only).
    pub(super) fn defer_close(&mut self, w: &mut WorkerCtx) {
        if self.close_pending {
            return;
        }
        self.close_pending = true;
        self.rd.stream = None;
        self.fail_reads(Error::Closed);
        let at = w.now + self.opts.linger;
        self.arm(TimerKind::Linger, at, w);
        self.defer(Msg::Close);
    }

    /// Keeps `msg` until the connection is established (see `deferred`).
    pub(super) fn defer(&mut self, msg: Msg) {
        self.deferred
            .get_or_insert_with(Default::default)
            .push_back(msg);
    }

    /// Bytes accepted for writing that a close is about to give up on.
    pub(super) fn unsent(&self) -> usize {
        let deferred: usize = self.deferred.as_deref().map_or(0, |q| {
            q.iter()
                .map(|m| match m {
                    Msg::Write(b) => b.len(),
                    Msg::WriteParts(v) => v.iter().map(|b| b.len()).sum(),
                    _ => 0,
                })
                .sum()
        });
        self.wr.len + deferred
    }

    /// Tells the application what a close gives up on (nothing is dropped
    /// silently): a non-fatal `Error::Unsent` before `Closed`.
    pub(super) fn report_unsent(&mut self, pools: &mut Pools) {
        let bytes = self.unsent();
        if bytes > 0 {
            log::debug!("{}: closing with {bytes} bytes unsent", self.shared.id);
            self.outbox.push(
                pools,
                Event::Error {
                    error: Error::Unsent { bytes },
                    fatal: false,
                },
            );
        }
    }

    pub(super) fn close(&mut self, w: &mut WorkerCtx) {
        self.shared.closing.store(true, Ordering::Release);
        if self.close_pending && self.deferred.is_none() {
            // The deferred close is being replayed: the connection is up.
            self.close_pending = false;
        }
        let connecting = self.connecting();
        match self.phase {
            Phase::Closing | Phase::Closed => return,
            _ if connecting => {
                if self.unsent() == 0 || self.opts.linger.is_zero() {
                    // Nothing to deliver: cancel the connect (as the reference).
                    self.report_unsent(&mut w.local);
                    self.finish(w);
                    return;
                }
                // Writes were accepted: connect (and finish the TLS
                // handshake), flush them, then close — all within linger,
                // counted from now. A failed connect reports its error.
                self.defer_close(w);
                return;
            }
            _ => {}
        }
        self.rd.stream = None;
        self.rd.stopped = true;
        self.fail_reads_with(|| Error::Closed);
        if self.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
            // Mid-handshake (accepted, or STARTTLS) nothing can be flushed:
            // plaintext waits for the handshake, and a peer that is being
            // closed on will not finish it. Close at once, saying what was
            // not sent.
            self.report_unsent(&mut w.local);
            self.finish(w);
            return;
        }
        // Under TLS, `flush` sends close_notify once the queue is through.
        if (self.wr.queue.is_empty() && self.tls.is_none())
            || self.opts.linger.is_zero()
            || self.sock.is_none()
        {
            self.report_unsent(&mut w.local);
            self.finish(w);
            return;
        }
        self.phase = Phase::Closing;
        let at = w.now + self.opts.linger;
        self.arm(TimerKind::Linger, at, w);
        self.flush(w);
    }

    /// Reports a fatal error and closes.
    pub(crate) fn fail(&mut self, e: Error, w: &mut WorkerCtx) {
        if self.phase == Phase::Closed {
            return;
        }
        let socket_dead = matches!(
            e,
            Error::BrokenPipe
                | Error::ConnectionReset
                | Error::ConnectionRefused
                | Error::Unreachable
                | Error::Io(_)
                | Error::Tls(_)
                | Error::TlsTruncated
                | Error::NoAddress(_)
        );
        if self.phase != Phase::Closing {
            // The error that ends the connection (connecting or open) — not
            // one met while an orderly close lingers: reads then get `Closed`.
            self.failure.get_or_insert_with(|| Box::new(e.clone()));
        }
        self.fail_reads(e.clone());
        self.outbox.push(
            &mut w.local,
            Event::Error {
                error: e,
                fatal: true,
            },
        );
        if socket_dead || self.phase != Phase::Open || self.connecting() {
            self.finish(w);
        } else {
            self.close(w);
        }
    }

    /// Messages that will never run: their reserved write bytes are
    /// released and their reads answered with `why`.
    pub(super) fn discard_mail(&mut self, msgs: impl IntoIterator<Item = Msg>, why: &Error) {
        for msg in msgs {
            match msg {
                Msg::Write(b) => self.shared.release_write(b.len()),
                Msg::WriteParts(v) => self.shared.release_write(v.iter().map(|b| b.len()).sum()),
                Msg::PushRead(mut r) | Msg::UnshiftRead(mut r) => {
                    r.fail(why.clone());
                    if r.has_completion() {
                        self.outbox.push_completion(r);
                    }
                }
                Msg::Drained(tx) => {
                    let _ = tx.try_send(Err(why.clone()));
                }
                _ => {}
            }
        }
    }

    /// What a read that can no longer be served is told: the fatal error
    /// that ended the connection, or `Closed` after an orderly close.
    pub(super) fn end_error(&self) -> Error {
        self.failure.as_deref().cloned().unwrap_or(Error::Closed)
    }

    /// Fails every queued read with `e` (built only if there is one: a
    /// short connection closes with none).
    #[inline]
    pub(super) fn fail_reads_with(&mut self, e: impl FnOnce() -> Error) {
        if !self.rd.reads.is_empty() {
            self.fail_reads(e());
        }
    }

    #[inline(never)]
    pub(super) fn fail_reads(&mut self, e: Error) {
        if self.rd.reads.is_empty() {
            return;
        }
        let Core { rd, outbox, .. } = self;
        for mut r in rd.reads.drain(..) {
            r.fail(e.clone());
            if r.has_completion() {
                outbox.push_completion(r);
            }
        }
    }

    /// Releases everything and emits `Closed`.
    pub(super) fn finish(&mut self, w: &mut WorkerCtx) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        self.record_close(w);
        if let Some(sock) = self.sock.take() {
            // Closing the only descriptor of an accepted socket takes it
            // out of the poller too: one `epoll_ctl` saved.
            if self.registered && !(self.accepted && crate::sys::CLOSE_DEREGISTERS) {
                sock.deregister(&w.poller);
            }
            self.registered = false;
            // After the peer's EOF (or its close_notify) nothing can be
            // unread: the `recv` would only say so.
            if !self.rd.eof {
                discard_unread(&sock, w);
            }
            sock.close();
        }
        self.tls = None;
        self.shared.write_shut.store(true, Ordering::Release);
        // What follows is for connections that end with something left (a
        // queue, deferred mail, waiters, reads); a short one that ran its
        // course has none of it, and skips it with one test each.
        if self.wr.len > 0 {
            self.shared.release_write(self.wr.len);
            self.wr.len = 0;
        }
        if !self.wr.queue.is_empty() {
            self.wr.queue.clear();
        }
        self.close_pending = false;
        // The connection-limit slot (`_limit`) is given back when the
        // worker drops the actor — after `Closed` has been handed to the
        // handler or the channel — so code that counts its connections by
        // start and `Closed` never sees more than the limit open at once.
        // Out of the registry first: a handle can then be made only from
        // another handle, so with none left the mailbox is closed without
        // its lock (nobody can post).
        self.unlist();
        let left = ConnShared::close_mailbox(&mut self.shared);
        if self.deferred.is_some()
            || self.wr.drain_waiters.is_some()
            || left.is_some()
            || !self.rd.reads.is_empty()
        {
            let why = self.end_error();
            if let Some(q) = self.deferred.take() {
                self.discard_mail(*q, &why);
            }
            for tx in self.wr.drain_waiters.take().into_iter().flat_map(|v| *v) {
                let _ = tx.try_send(Err(why.clone()));
            }
            if let Some(left) = left {
                self.discard_mail(left, &why);
            }
            self.fail_reads(why);
        }
        self.rd.stream = None;
        // Back to the worker's pool, not to the allocator: the next
        // connection reads into it (a short-lived connection would
        // otherwise cost a buffer allocation, and another for the shared
        // header its first frame split adds).
        let buf = std::mem::take(&mut self.rd.buf);
        if buf.capacity() > 0 {
            w.local.recycle(buf);
        }
        self.armed.clear_all();
        self.publish(w);
        self.outbox.closed = true;
    }
}

/// Reads and drops input nobody consumed before the socket is closed: Linux
/// answers `close()` on a socket with unread input with RST instead of FIN,
/// which throws away output the kernel has not sent yet (the tail of a
/// lingering close) and shows the peer a reset instead of EOF. Bounded: a
/// peer that keeps sending more than this gets the reset.
pub(super) fn discard_unread(sock: &Stream, w: &WorkerCtx) {
    // The actor's sockets are always non-blocking: this stops at WouldBlock.
    let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    for _ in 0..64 {
        crate::sys::tally!(w.poller, discard_recv);
        match sock.recv(&mut scratch) {
            Ok(got) if !got.is_empty() => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}
