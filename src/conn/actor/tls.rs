//! The actor's TLS pump: ciphertext between the socket and the engine
//! (`crate::tls::TlsSession`), plaintext between the engine and the
//! actor's read buffer and write queue.

use super::pools::Pools;
use super::read::recv_into;
use super::read::Recv;
use super::timers::TimerKind;
use super::write::gather;
use super::write::pop_front_bytes;
use super::Core;
use super::Phase;
use super::WorkerCtx;
use super::WriteSide;
use super::MAX_IOV;
use crate::conn::shared::Msg;
use crate::conn::shared::TlsState;
use crate::conn::Event;
use crate::error::Error;
use crate::error::Result;
use crate::metrics::tls_version_idx;
use crate::reactor::timers::{stamp, STAMP_UNIT};
use crate::tls::TlsSession;
use crate::tls::TlsSetup;
use bytes::Bytes;
use bytes::BytesMut;
use std::collections::VecDeque;
use std::io;
use std::io::IoSlice;
use std::time::Duration;

/// How long an established TLS 1.3 connection goes without reading or
/// writing before its record keys' AEAD contexts are released (~1.2 KiB
/// with aws-lc-rs; rebuilt by the next record in well under a
/// microsecond). Short, so that connections that went quiet give the
/// memory back soon; an active connection pays one timer entry per period.
pub(super) const KEY_IDLE: Duration = Duration::from_millis(250);

/// Moves one chunk of queued plaintext into the engine (its records go to
/// the session's outgoing buffer, lent from the worker's pool and given
/// back once sent) and takes it off the queue; returns how much it took.
fn encrypt_queued(
    t: &mut TlsSession,
    queue: &mut VecDeque<Bytes>,
    w: &mut WorkerCtx,
    rbuf: &mut BytesMut,
) -> Result<usize> {
    let pool = &mut w.local.bufs;
    t.lend_outgoing(|| pool.pop());
    let n = t.write_plain(queue, None, &mut w.local.coalesce, rbuf)?;
    pop_front_bytes(queue, n);
    Ok(n)
}

/// Room a new buffer for a handshake's records starts with: a server's
/// flight with a certificate or two, with its session tickets.
const FLIGHT: usize = 4 << 10;

/// Most ciphertext the engine queued on its own (session tickets: a few
/// hundred bytes) that queued plaintext is encrypted behind, to share its
/// `send`.
const PIGGYBACK_MAX: usize = 4 << 10;

impl Core {
    /// Whether nothing TLS-specific remains to be written before FIN or the
    /// end of a close. Called with an empty write queue; sends close_notify
    /// once everything queued has gone through the engine.
    pub(super) fn tls_close_ready(&mut self, w: &mut WorkerCtx) -> bool {
        let closing = self.phase == Phase::Closing;
        let Some(t) = self.tls.as_mut() else {
            return true;
        };
        if t.is_handshaking() {
            // Nothing was sent under TLS yet: a close ends here; a half-close
            // waits for the handshake, so the peer can still talk to us.
            return closing;
        }
        if !t.close_sent() {
            // The alert's record goes to a pooled buffer, not one of its own.
            let pool = &mut w.local.bufs;
            t.lend_outgoing(|| pool.pop());
            if let Err(e) = t.close_notify(&mut self.rd.buf) {
                self.tls_fail_sending(e, w);
                return false;
            }
            self.tls_flush(w);
        }
        self.phase != Phase::Closed && self.tls.as_ref().is_none_or(|t| !t.wants_write())
    }

    /// The error a read request still pending at EOF gets.
    pub(super) fn eof_error(&self) -> Error {
        if self.tls_truncated {
            Error::TlsTruncated
        } else {
            Error::UnexpectedEof
        }
    }

    pub(super) fn starttls(&mut self, setup: TlsSetup, w: &mut WorkerCtx) {
        if self.deferred.is_some() {
            // Behind a message that waits for the connection: in order.
            self.defer(Msg::StartTls(setup));
            return;
        }
        match self.phase {
            Phase::Resolving | Phase::Connecting if self.pending_tls.is_some() => {
                self.outbox.push(
                    &mut w.local,
                    Event::Error {
                        error: Error::InvalidInput("starttls while TLS is already set up".into()),
                        fatal: false,
                    },
                );
                return;
            }
            Phase::Resolving | Phase::Connecting => {
                self.connect_handshake = true;
                // Writes queued so far still go out in clear first.
                self.pending_tls = Some((setup, self.wr.len));
                return;
            }
            Phase::Open => {}
            _ => return,
        }
        // What was written in clear before this call (gathered when more
        // input was buffered: typically the `220` that invites the
        // handshake, with the client's hello already here) leaves now. The
        // peer may have pipelined bytes that fail the handshake in this very
        // turn, and the reply must reach it before that error ends the
        // connection.
        if self.tls.is_none() {
            self.flush(w);
            if self.phase != Phase::Open {
                return;
            }
        }
        let prefix = self.wr.len;
        self.start_tls_session(setup, prefix, w);
    }

    /// Starts TLS on the open connection; the first `plain_prefix` queued
    /// bytes are sent in clear before the handshake.
    pub(super) fn start_tls_session(
        &mut self,
        setup: TlsSetup,
        plain_prefix: usize,
        w: &mut WorkerCtx,
    ) {
        if self.phase != Phase::Open {
            return;
        }
        if self.tls.is_some() {
            self.outbox.push(
                &mut w.local,
                Event::Error {
                    error: Error::InvalidInput("starttls while TLS is already active".into()),
                    fatal: false,
                },
            );
            return;
        }
        let mut session = match TlsSession::new(setup) {
            Ok(s) => s,
            Err(e) => {
                self.fail(e, w);
                return;
            }
        };
        if let Err(e) = session.start() {
            self.fail(e, w);
            return;
        }
        // Writes queued before starttls go out in clear, before any record.
        session.plain_prefix = plain_prefix.min(self.wr.len);
        self.tls = Some(session);
        self.shared.counters.set_tls(TlsState::Handshaking, None);
        self.tls_truncated = false;
        self.armed.clear(TimerKind::Handshake);
        let until = w.now + self.opts.handshake_timeout;
        if let Some(t) = self.tls.as_mut() {
            // Rounded up to the next 10 ms unit: never earlier than asked.
            t.handshake_until = stamp(until + STAMP_UNIT);
        }
        // One timer entry for the handshake and then for the idle keys
        // (`tls_watch_keys`): due within KEY_IDLE, so a connection that
        // ends early leaves its entry in the worker's heap for at most
        // that long, not the whole handshake timeout (10 s by default:
        // under churn, tens of thousands of stale entries per worker).
        self.arm(TimerKind::Handshake, until.min(w.now + KEY_IDLE), w);
        // Bytes already buffered are ciphertext (the ClientHello behind a
        // STARTTLS command, or injected commands): never plaintext for the app.
        // (Nothing split off an empty buffer: splitting one not yet shared
        // allocates the header that shares it.)
        let buffered = if self.rd.buf.is_empty() {
            BytesMut::new()
        } else {
            self.rd.buf.split()
        };
        self.rbuf_front_changed();
        if !buffered.is_empty() {
            let n = buffered.len();
            if let Some(t) = self.tls.as_mut() {
                t.push_incoming(buffered);
            }
            if let Err(e) = self.tls_input(n, w) {
                self.fail(e, w);
                return;
            }
        }
        self.tls_flush(w);
    }

    pub(super) fn stoptls(&mut self, w: &mut WorkerCtx) {
        if self.deferred.is_some() || self.establishing() {
            // Not yet connected, or the handshake is not done: it applies
            // once it is, in order with the writes around it.
            self.defer(Msg::StopTls);
            return;
        }
        if self.phase != Phase::Open {
            return;
        }
        let why = match self.tls.as_ref() {
            None => "stoptls without TLS",
            Some(t) if t.stopping || t.close_sent() => return,
            Some(_) => {
                if let Err(e) = self.tls_begin_stop(&mut w.local.coalesce) {
                    self.tls_fail_sending(e, w);
                    return;
                }
                self.tls_flush(w);
                return;
            }
        };
        self.outbox.push(
            &mut w.local,
            Event::Error {
                error: Error::InvalidInput(why.into()),
                fatal: false,
            },
        );
    }

    /// Encrypts everything queued so far (it was written while TLS was on),
    /// then sends close_notify; later writes wait for plaintext.
    pub(super) fn tls_begin_stop(&mut self, coalesce: &mut Vec<u8>) -> Result<()> {
        let Some(t) = self.tls.as_mut() else {
            return Ok(());
        };
        while !self.wr.queue.is_empty() {
            let n = t.write_plain(&self.wr.queue, Some(usize::MAX), coalesce, &mut self.rd.buf)?;
            if n == 0 {
                break;
            }
            pop_front_bytes(&mut self.wr.queue, n);
        }
        t.stopping = true;
        t.close_notify(&mut self.rd.buf)
    }

    /// Completes a `stoptls` once both close_notify alerts are through.
    pub(super) fn tls_check_stop(&mut self, pools: &mut Pools) {
        let done = self
            .tls
            .as_ref()
            .is_some_and(|t| t.stopping && t.peer_closed && t.close_sent() && !t.wants_write());
        if !done {
            return;
        }
        let Some(t) = self.tls.take() else {
            return;
        };
        self.release_in_engine(t.in_engine);
        // What followed the peer's close_notify is the plaintext stream.
        if let Some(rest) = &t.leftover {
            self.rd.buf.extend_from_slice(rest);
            // It came with a read that was likely short (no more reads
            // then), and the pump dispatches again only around a read:
            // one more read (once per `stoptls`) gets it delivered now.
            self.rd.readable = true;
        }
        self.armed.clear(TimerKind::Handshake);
        self.shared.set_tls_info(None);
        self.shared.counters.set_tls(TlsState::None, None);
        self.outbox.push(pools, Event::TlsStopped);
    }

    pub(super) fn release_in_engine(&mut self, n: usize) {
        if n > 0 {
            self.wr.len -= n;
            self.shared.release_write(n);
        }
    }

    /// Has the engine process the ciphertext it holds (of which the last
    /// `new` bytes just arrived) and acts on what changed.
    pub(super) fn tls_input(&mut self, new: usize, w: &mut WorkerCtx) -> Result<()> {
        let Some(t) = self.tls.as_mut() else {
            return Ok(());
        };
        if t.peer_closed {
            // Reads pause after close_notify; anything that came anyway is
            // kept (after a `stoptls`) by the session.
            return t.input(new, &mut self.rd.buf);
        }
        if let Err(e) = t.input(new, &mut self.rd.buf) {
            self.tls_send_alert();
            return Err(e);
        }
        if t.take_established() {
            self.connect_handshake = false;
            // The handshake timer's entry stays: it watches the idle keys
            // from here on (`tls_keys_idle`).
            let v = t.protocol_version();
            self.shared.counters.set_tls(TlsState::Established, v);
            self.shared.worker_of(self.token).metrics.conn.tls_done[tls_version_idx(v)].inc();
            log::debug!("{}: TLS established ({v:?})", self.shared.id);
            self.shared.set_tls_info(Some(t.info()));
            self.outbox.push(&mut w.local, Event::TlsEstablished);
        }
        if t.peer_closed {
            let answer = !t.stopping && !t.close_sent() && self.opts.follow_stoptls;
            if !(t.stopping || answer) {
                t.leftover = None;
            }
            // Otherwise close_notify is a clean EOF (bytes after it are
            // ignored, RFC 8446 §6.1), applied by `tls_after_dispatch`.
            // Answered by `tls_after_dispatch`, once the frames decrypted
            // before the alert were handled.
            t.answer_pending = answer;
        }
        Ok(())
    }

    /// After a dispatch pass, acts on the peer's close_notify; returns
    /// whether to dispatch again.
    ///
    /// * With `follow_stoptls` it is answered only now, so the application's
    ///   replies to data that came before it are still encrypted, as in the
    ///   reference.
    /// * Otherwise it is EOF — once someone reads. Handshake reads can pull
    ///   in data and the alert before the application has set up a reader;
    ///   as in plaintext mode, EOF is only noticed by a reader, so that data
    ///   is delivered first.
    #[inline(never)]
    pub(super) fn tls_after_dispatch(&mut self, w: &mut WorkerCtx) -> bool {
        let Some(t) = self.tls.as_mut() else {
            return false;
        };
        if std::mem::take(&mut t.answer_pending) {
            if let Err(e) = self.tls_begin_stop(&mut w.local.coalesce) {
                self.tls_fail_sending(e, w);
            }
            return false;
        }
        if t.peer_closed
            && !t.stopping
            && !self.rd.eof
            && !self.rd.stopped
            && self.rd.has_consumer()
        {
            self.rd.eof = true;
            return true;
        }
        false
    }

    /// Whether the last records may wait in the kernel for the FIN
    /// (`send_before_fin`): only when nothing can stop that FIN or throw
    /// them away — the peer has finished sending (a `close` with input
    /// still arriving is answered with a reset, which discards what the
    /// kernel holds; sent at once, the peer would have had them), and the
    /// socket is an accepted one, whose only descriptor this is (with a
    /// duplicate open elsewhere, `close` sends no FIN, and the records
    /// would wait for the kernel's timer, ~200 ms).
    fn fin_may_share_segment(&self) -> bool {
        self.rd.eof && self.accepted
    }

    /// Best effort: flush the alert rustls queued for a fatal error, so the
    /// peer learns why (e.g. "bad certificate") before the socket closes.
    pub(super) fn tls_send_alert(&mut self) {
        let before_fin = self.fin_may_share_segment();
        if let (Some(t), Some(sock)) = (self.tls.as_mut(), self.sock.as_ref()) {
            if t.plain_prefix > 0 {
                return;
            }
            for _ in 0..4 {
                // The socket closes right after: the alert and the FIN
                // may share a segment.
                if !t.wants_write() || t.send_to(sock, before_fin).is_err() {
                    break;
                }
            }
        }
    }

    /// The engine failed while encrypting (plaintext, close_notify): as on
    /// the read path, what rustls queued for the peer — the fatal alert,
    /// or the close_notify it sends when the keys are exhausted — goes out
    /// first, best effort (never waiting for the socket), then the
    /// connection fails. (When rustls queued nothing, as when the record
    /// sequence numbers are used up, nothing can be encrypted any more.)
    pub(super) fn tls_fail_sending(&mut self, e: Error, w: &mut WorkerCtx) {
        self.tls_send_alert();
        self.fail(e, w);
    }

    /// One socket read, through TLS.
    pub(super) fn tls_read(&mut self, w: &mut WorkerCtx) -> Result<usize> {
        let Some(sock) = self.sock.as_ref() else {
            self.rd.readable = false;
            return Ok(0);
        };
        let Some(t) = self.tls.as_mut() else {
            return Ok(0);
        };
        // Ciphertext is read into the session's buffer, which holds what
        // rustls has not consumed yet (a partial record); when it holds
        // nothing it has no allocation, and one is lent from the pool.
        let pool = &mut w.local.bufs;
        let incoming = t.incoming(|| pool.pop().unwrap_or_default());
        let max = self.opts.max_read_size;
        let res = match recv_into(sock, incoming, &mut self.rd.size, max) {
            Ok(Recv::Eof) => {
                self.rd.readable = false;
                self.tls_eof().map(|()| 0)
            }
            Ok(Recv::Data { n, short }) => {
                // As on the plain path: a short read emptied the kernel
                // buffer, and the edge-triggered registration raises a new
                // edge for later data, so the `recv` that would only say
                // EAGAIN is skipped — unless the poller reported RDHUP/HUP
                // (a FIN after the data is only seen by the next recv).
                if short && !self.rd.peer_hup {
                    self.rd.readable = false;
                }
                self.note_read(n, w.now);
                // Decrypted bytes go to the read buffer: one from the pool,
                // as on the plain path (given back at the end of the turn
                // if nothing came), rather than one of their own (and the
                // shared header their first frame's split adds).
                if self.rd.buf.capacity() == 0 {
                    if let Some(b) = w.local.bufs.pop() {
                        self.rd.buf = b;
                    }
                }
                // Likewise the records a handshake answers with (the
                // server's flight): written into a pooled buffer (a new
                // one of a flight's size if the pool has none, pooled
                // afterwards), not one grown record by record.
                if let Some(t) = self.tls.as_mut().filter(|t| t.is_handshaking()) {
                    let pool = &mut w.local.bufs;
                    t.lend_outgoing(|| {
                        Some(
                            pool.pop()
                                .unwrap_or_else(|| BytesMut::with_capacity(FLIGHT)),
                        )
                    });
                }
                let r = self.tls_input(n, w).map(|()| n);
                if self.phase == Phase::Closing {
                    // Closing reads only to finish the handshake; data is dropped.
                    self.rd.buf.clear();
                }
                r
            }
            Ok(Recv::WouldBlock) => {
                // Not the read a new connection makes on spec (its hello
                // may not be there yet): the ones that follow reads.
                #[cfg(test)]
                if self
                    .shared
                    .counters
                    .read_calls
                    .load(std::sync::atomic::Ordering::Relaxed)
                    > 0
                {
                    crate::sys::tally!(w.poller, tls_recv_again);
                }
                self.rd.readable = false;
                Ok(0)
            }
            Ok(Recv::Interrupted) => Ok(0),
            Err(e) => Err(e),
        };
        self.tls_release_buffers(false, w);
        res
    }

    /// Gives the session's empty buffers back to the worker's pool: an
    /// idle TLS connection holds none. `end_of_turn`: also moves a small
    /// partial record out of a large buffer.
    pub(super) fn tls_release_buffers(&mut self, end_of_turn: bool, w: &mut WorkerCtx) {
        if let Some(t) = self.tls.as_mut() {
            t.take_idle_buffers(end_of_turn, |b| w.local.recycle(b));
            if end_of_turn && t.has_lazy_keys() && !t.is_handshaking() {
                self.tls_watch_keys(w);
            }
        }
    }

    /// End of a turn of an established session with lazy keys. A
    /// connection that woke from idle (its keys had been released) for one
    /// exchange gives the keys back at once, unless it already woke less
    /// than [`KEY_IDLE`] ago (the handshake timer, armed at each such wake,
    /// tells): a server whose idle connections each speak now and then
    /// never holds many contexts at a time. Keys in use are watched with
    /// the handshake timer (free once established) and released after
    /// [`KEY_IDLE`] without reads or writes.
    fn tls_watch_keys(&mut self, w: &mut WorkerCtx) {
        let nothing_queued = self.wr.len == 0;
        let watched = self.armed.get(TimerKind::Handshake).is_some();
        let Some(t) = self.tls.as_mut() else {
            return;
        };
        if t.take_keys_woke() && !watched && nothing_queued && t.pending_records() == 0 {
            t.release_keys();
        } else if t.keys_released() || watched {
            return;
        }
        let at = w.now + KEY_IDLE;
        self.arm(TimerKind::Handshake, at, w);
    }

    /// The handshake timer during the handshake: fails it once its time is
    /// up, or looks in again (at most [`KEY_IDLE`] later).
    pub(super) fn tls_handshake_timer(&mut self, w: &mut WorkerCtx) {
        let Some(until) = self.tls.as_ref().map(|t| t.handshake_until) else {
            return;
        };
        // Stamps wrap (after 497 days): compared as a signed distance.
        let left = until.wrapping_sub(stamp(w.now)) as i32;
        if left <= 0 {
            self.fail(Error::TimedOut(crate::error::TimeoutKind::Handshake), w);
        } else {
            let left = STAMP_UNIT * left as u32;
            self.arm(TimerKind::Handshake, w.now + left.min(KEY_IDLE), w);
        }
    }

    /// The handshake timer of an established session: releases the record
    /// keys' AEAD contexts once the connection has been idle for
    /// [`KEY_IDLE`] (tls/idle_keys.rs), or watches again.
    pub(super) fn tls_keys_idle(&mut self, w: &mut WorkerCtx) {
        let Some(t) = self.tls.as_mut() else {
            return;
        };
        if !t.has_lazy_keys() || t.keys_released() {
            return;
        }
        let due = self.idle.any + KEY_IDLE;
        if w.now >= due {
            t.release_keys();
        } else {
            self.arm(TimerKind::Handshake, due, w);
        }
    }

    /// TCP EOF under TLS.
    pub(super) fn tls_eof(&mut self) -> Result<()> {
        let Some(t) = self.tls.as_ref() else {
            self.rd.eof = true;
            return Ok(());
        };
        if t.is_handshaking() {
            return Err(Error::Tls(crate::error::TlsError::HandshakeEof));
        }
        if !t.peer_closed {
            // No close_notify: the data may have been cut short by an attacker.
            self.tls_truncated = true;
        }
        self.rd.eof = true;
        Ok(())
    }

    /// Writes what TLS has to write: first the plaintext queued before
    /// `starttls`, then records; moves queued plaintext into the engine one
    /// chunk at a time, only when its record buffer is empty.
    pub(super) fn tls_flush(&mut self, w: &mut WorkerCtx) {
        if self.tls.as_ref().is_some_and(|t| t.plain_prefix > 0) {
            self.tls_flush_prefix(w);
            if self.phase == Phase::Closed || self.tls.as_ref().is_some_and(|t| t.plain_prefix > 0)
            {
                return;
            }
        }
        let mut failed = None;
        // The engine failed (not the socket): rustls may have queued the
        // alert that tells the peer why.
        let mut engine_failed = false;
        // Closing or shutting down: once the close_notify is queued, the
        // FIN follows the last record at once (`flush_queued`), so the two
        // can share a segment (`send_before_fin`). Not for a `stoptls`,
        // after which the connection goes on in plaintext.
        let fin_follows = (self.phase == Phase::Closing || self.wr.side != WriteSide::Open)
            && self.fin_may_share_segment();
        loop {
            let (Some(t), Some(sock)) = (self.tls.as_mut(), self.sock.as_ref()) else {
                return;
            };
            // Records the engine queued on its own — the session tickets a
            // server sends after the handshake — go out with the reply the
            // same turn queued: it is encrypted behind them first, so one
            // `send` carries both instead of one each. Only behind a few
            // such bytes, none of them queued plaintext (`in_engine`).
            if self.wr.writable
                && t.wants_write()
                && t.in_engine == 0
                && t.pending_records() <= PIGGYBACK_MAX
                && t.accepts_plaintext()
                && !self.wr.queue.is_empty()
            {
                if let Err(e) = encrypt_queued(t, &mut self.wr.queue, w, &mut self.rd.buf) {
                    failed = Some(e);
                    engine_failed = true;
                    break;
                }
            }
            while self.wr.writable && t.wants_write() {
                crate::sys::tally!(w.poller, tls_send);
                let before_fin = fin_follows && t.close_sent() && !t.stopping;
                match t.send_to(sock, before_fin) {
                    Ok(n) => {
                        let c = &self.shared.counters;
                        c.add_write(n);
                        self.idle.touch_write(w.now);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wr.writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failed = Some(Error::from_io(e));
                        break;
                    }
                }
            }
            if failed.is_some() || t.wants_write() {
                break;
            }
            // The record buffer is empty: what went into the engine is in the kernel.
            let sent = std::mem::take(&mut t.in_engine);
            if !t.accepts_plaintext() || self.wr.queue.is_empty() {
                self.release_in_engine(sent);
                break;
            }
            let n = match encrypt_queued(t, &mut self.wr.queue, w, &mut self.rd.buf) {
                Ok(n) => n,
                Err(e) => {
                    failed = Some(e);
                    engine_failed = true;
                    break;
                }
            };
            self.release_in_engine(sent);
            if n == 0 {
                break;
            }
        }
        if let Some(e) = failed {
            if engine_failed {
                self.tls_fail_sending(e, w);
            } else {
                self.fail(e, w);
            }
            return;
        }
        self.tls_check_stop(&mut w.local);
        self.tls_release_buffers(false, w);
    }

    /// Sends the bytes queued in clear before `starttls`.
    pub(super) fn tls_flush_prefix(&mut self, w: &mut WorkerCtx) {
        while self.wr.writable {
            let prefix = self.tls.as_ref().map_or(0, |t| t.plain_prefix);
            let Some(sock) = self.sock.as_ref() else {
                return;
            };
            if prefix == 0 {
                return;
            }
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let (k, _) = gather(&self.wr.queue, prefix, &mut iov);
            match sock.send_vectored(&iov[..k]) {
                Ok(n) => {
                    self.consume_written(n);
                    self.note_write(n, w.now);
                    if let Some(t) = self.tls.as_mut() {
                        t.plain_prefix -= n;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wr.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(Error::from_io(e), w);
                    return;
                }
            }
        }
    }
}
