//! Writing: the write queue, the direct path for a write with nothing
//! queued ahead, vectored flushes, half-close, and `Drain`.

use super::pools::Pools;
use super::Core;
use super::Phase;
use super::WorkerCtx;
use super::WriteSide;
use super::MAX_IOV;
use crate::conn::deque::Deque;
use crate::conn::Event;
use crate::error::Error;
use crate::error::Result;
use bytes::Buf;
use bytes::Bytes;
use crossbeam_channel::Sender;
use std::collections::VecDeque;
use std::io;
use std::io::IoSlice;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Queued bytes up to this total, in buffers of at most [`COALESCE_AVG`]
/// bytes on average, are copied into one buffer before they are sent.
const COALESCE_MAX: usize = 16 << 10;
const COALESCE_AVG: usize = 1024;

/// The write half of a connection.
pub(super) struct WriteHalf {
    /// Bytes waiting for the socket (or, under TLS, for the engine).
    pub(super) queue: Deque<Bytes>,
    /// Bytes accepted and not yet handed to the kernel: the queue plus,
    /// under TLS, what sits in the engine (`TlsSession::in_engine`).
    pub(super) len: usize,
    pub(super) side: WriteSide,
    /// The socket may take more (forgotten only on EAGAIN or a short write).
    pub(super) writable: bool,
    /// The poller reports writability for this socket. Not at first: a
    /// fresh socket is writable, and asking at once costs every connection
    /// an event that says nothing (a turn, often a hand-off). Asked for at
    /// the end of the turn in which a write first blocked
    /// (`Core::end_of_turn`), and kept from then on.
    pub(super) out_watched: bool,
    /// The queue went above the low-water mark: `Drain` once it is back.
    pub(super) above_lwm: bool,
    /// One `Drain` was asked for ([`Ctx::request_drain`]).
    pub(super) drain_requested: bool,
    /// Threads waiting (`Connection::drained`) for the queue to be at or
    /// below the mark. Boxed: rare, and the actor stays small.
    #[allow(clippy::box_collection)]
    pub(super) drain_waiters: Option<Box<Vec<Sender<Result<()>>>>>,
}

impl WriteHalf {
    pub(super) fn new() -> Self {
        WriteHalf {
            queue: Deque::new(),
            len: 0,
            side: WriteSide::Open,
            writable: false,
            out_watched: false,
            above_lwm: false,
            drain_requested: false,
            drain_waiters: None,
        }
    }

    /// Queues `data`, keeping `len` in step.
    pub(super) fn push(&mut self, data: Bytes) {
        self.len += data.len();
        self.queue.push_back(data);
    }

    /// `n` bytes from the front of the queue reached the kernel.
    pub(super) fn consume(&mut self, n: usize) {
        self.len -= n;
        pop_front_bytes(&mut self.queue, n);
    }
}

impl Core {
    /// Counts a write of `n` bytes at `now` (the TLS pump's entry: see
    /// `note_read`).
    pub(super) fn note_write(&mut self, n: usize, now: Instant) {
        self.note_write_at(n, now, crate::reactor::timers::stamp(now));
    }

    /// Counts a write of `n` bytes at `now` and publishes `stamp` for
    /// `Stats::last_write` (see `note_read_at`).
    #[inline]
    pub(super) fn note_write_at(&mut self, n: usize, now: Instant, stamp: u32) {
        let c = &self.shared.counters;
        c.add_write(n);
        c.last_write
            .store(stamp, std::sync::atomic::Ordering::Relaxed);
        self.idle.touch_write(now);
    }

    /// Queues bytes that were already reserved against `wbuf_max`. The
    /// queue's allocation comes from the worker's pool when it has none
    /// (most turns write straight from the caller's buffer and need none).
    pub(super) fn enqueue(&mut self, data: Bytes, pools: &mut Pools) {
        if self.wr.side != WriteSide::Open || matches!(self.phase, Phase::Closing | Phase::Closed) {
            // Refused at the handle already; a race with shutdown/close ends here.
            self.shared.release_write(data.len());
            return;
        }
        if self.wr.queue.capacity() == 0 {
            if let Some(q) = pools.write_queues.pop() {
                self.wr.queue = Deque::from(q);
            }
        }
        self.wr.push(data);
        if let Some(lwm) = self.opts.low_water_mark {
            if self.wr.len > lwm {
                self.wr.above_lwm = true;
            }
        }
    }

    /// Writes `data` (not yet reserved) now: straight from the caller's
    /// buffer when nothing is queued ahead of it (no queue allocation, one
    /// `send`), else through the queue. The direct path only *checks* the
    /// limit and counts as queued just what the kernel did not take — two
    /// atomic read-modify-writes per message saved on the hot path. (A
    /// concurrent reservation from another thread may then find the limit
    /// passed by at most this one write's remainder.)
    // Its only caller is `Ctx::write_bytes` (another codegen unit): inlined
    // there, a handler's write is one call down to `send`.
    #[inline]
    pub(super) fn write_through(&mut self, data: Bytes, w: &mut WorkerCtx) -> Result<()> {
        let direct = self.tls.is_none()
            && self.phase == Phase::Open
            && self.wr.side == WriteSide::Open
            && self.wr.writable
            && self.wr.queue.is_empty();
        let Some(sock) = self.sock.as_ref().filter(|_| direct) else {
            self.shared.reserve_write(data.len())?;
            self.enqueue(data, &mut w.local);
            self.flush(w);
            return Ok(());
        };
        self.shared.check_room(data.len())?;
        match sock.send(&data) {
            Ok(n) => {
                self.note_write_at(n, w.now, w.stamp());
                if n < data.len() {
                    self.wr.writable = false;
                    self.shared.add_queued(data.len() - n);
                    self.enqueue(data.slice(n..), &mut w.local);
                }
                // `Drain` as if the bytes had gone through the queue (as a
                // `Connection::write` does): above the mark, then at or below.
                if self.opts.low_water_mark.is_some_and(|m| data.len() > m) {
                    self.wr.above_lwm = true;
                    self.check_drain(&mut w.local);
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.wr.writable = false;
                self.shared.add_queued(data.len());
                self.enqueue(data, &mut w.local);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.shared.add_queued(data.len());
                self.enqueue(data, &mut w.local);
                self.flush(w);
                Ok(())
            }
            Err(e) => {
                let e = Error::from_io(e);
                self.fail(e.clone(), w);
                Err(e)
            }
        }
    }

    /// Writes as much of the queue as the socket takes.
    #[inline]
    pub(super) fn flush(&mut self, w: &mut WorkerCtx) {
        // The common case decides nothing: open, plaintext, nothing queued,
        // no shutdown or Drain event pending (checked inline at the caller).
        if self.phase == Phase::Open
            && self.wr.queue.is_empty()
            && self.tls.is_none()
            && !self.wr.above_lwm
            && !self.wr.drain_requested
            && self.wr.drain_waiters.is_none()
            && self.wr.side != WriteSide::ShutdownPending
        {
            return;
        }
        self.flush_queued(w);
    }

    pub(super) fn flush_queued(&mut self, w: &mut WorkerCtx) {
        if !matches!(self.phase, Phase::Open | Phase::Closing) {
            return;
        }
        if self.tls.is_some() {
            self.tls_flush(w);
        }
        // Not `else`: a completed `stoptls` leaves plaintext to send.
        if self.tls.is_none() {
            self.flush_plain(w);
        }
        if self.phase == Phase::Closed {
            return;
        }
        if self.wr.queue.is_empty()
            && (self.wr.side == WriteSide::ShutdownPending || self.phase == Phase::Closing)
            // Under TLS: close_notify first (the reference sent a bare FIN,
            // indistinguishable from truncation).
            && self.tls_close_ready(w)
        {
            if self.wr.side == WriteSide::ShutdownPending {
                self.wr.side = WriteSide::Shut;
                // Both directions done (the application has seen EOF): the
                // turn closes the socket when it ends (`end_of_turn`), and
                // closing sends the FIN — a `shutdown` first would cost a
                // system call per connection and change nothing on the wire.
                // (Under TLS the close_notify has gone out: it is sent
                // before this point, `tls_close_ready`.)
                let closing_anyway = self.phase == Phase::Open && self.rd.eof_reported;
                if let Some(sock) = self.sock.as_mut().filter(|_| !closing_anyway) {
                    crate::sys::tally!(w.poller, shutdown);
                    let _ = sock.shutdown_write(&w.poller);
                }
            }
            if self.phase == Phase::Closing {
                self.finish(w);
                return;
            }
        }
        if self.phase == Phase::Closed {
            return;
        }
        self.check_drain(&mut w.local);
    }

    pub(super) fn flush_plain(&mut self, w: &mut WorkerCtx) {
        while self.wr.writable && !self.wr.queue.is_empty() {
            let Some(sock) = self.sock.as_ref() else {
                return;
            };
            // One buffer — the answer to one request, corked by default —
            // goes out with a plain `send`: building the iovec array costs
            // more than the rest of the flush (callgrind: ping-pong echo
            // 1902 → 1565 instructions per round trip).
            let (sent, offered) = if self.wr.queue.len() == 1 {
                let one = &self.wr.queue[0];
                (sock.send(one), one.len())
            } else {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let (k, offered) = gather(&self.wr.queue, usize::MAX, &mut iov);
                if offered <= COALESCE_MAX && offered <= k * COALESCE_AVG {
                    // Many small buffers (the answers to pipelined requests,
                    // each in parts) are copied into one and sent with a
                    // plain `send`: the kernel's per-segment cost dominates
                    // otherwise (perf, HTTP pipelined ×16, 48 segments per
                    // send: `_copy_from_iter` 12 % of the server's CPU, vs
                    // 1 % for may_minihttp's one contiguous buffer).
                    let buf = &mut w.local.coalesce;
                    buf.clear();
                    for s in &iov[..k] {
                        buf.extend_from_slice(s);
                    }
                    (sock.send(buf), offered)
                } else {
                    (sock.send_vectored(&iov[..k]), offered)
                }
            };
            match sent {
                Ok(n) => {
                    self.consume_written(n);
                    self.note_write_at(n, w.now, w.stamp());
                    if n < offered {
                        // The send buffer is full; the next edge says when it has room.
                        self.wr.writable = false;
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

    /// Drops `n` written bytes from the front of the write queue.
    pub(super) fn consume_written(&mut self, n: usize) {
        self.wr.consume(n);
        self.shared.release_write(n);
    }

    /// The low-water mark in force: none once the write side is shut.
    #[inline]
    pub(super) fn lwm(&self) -> Option<usize> {
        if self.wr.side == WriteSide::Open {
            self.opts.low_water_mark
        } else {
            None
        }
    }

    /// `Drain`, defined once for every write path: the queue is at or below
    /// the low-water mark after having been above it, or a drain was asked
    /// for ([`Ctx::request_drain`], or setting the mark) and the queue is
    /// at or below the mark (empty, without one).
    pub(super) fn check_drain(&mut self, pools: &mut Pools) {
        if self.wr.drain_waiters.is_some() && self.wr.len <= self.lwm().unwrap_or(0) {
            for tx in self.wr.drain_waiters.take().into_iter().flat_map(|v| *v) {
                let _ = tx.try_send(Ok(()));
            }
        }
        if !(self.wr.above_lwm || self.wr.drain_requested) {
            return;
        }
        if self.wr.len <= self.lwm().unwrap_or(0) {
            self.wr.above_lwm = false;
            self.wr.drain_requested = false;
            self.outbox.push(pools, Event::Drain);
        }
    }

    /// Answers `tx` once the queue is at or below the mark (at once if it
    /// is); with the error that ends the connection if that comes first.
    pub(super) fn add_drain_waiter(&mut self, tx: Sender<Result<()>>) {
        match self.phase {
            Phase::Closing | Phase::Closed => {
                let _ = tx.try_send(Err(self.end_error()));
            }
            Phase::Open if self.wr.len <= self.lwm().unwrap_or(0) => {
                let _ = tx.try_send(Ok(()));
            }
            _ => self
                .wr
                .drain_waiters
                .get_or_insert_with(Default::default)
                .push(tx),
        }
    }

    /// One `Drain` once the queue is at or below the mark: at once if it is.
    pub(super) fn request_drain(&mut self, pools: &mut Pools) {
        if matches!(self.phase, Phase::Closing | Phase::Closed) {
            return;
        }
        self.wr.drain_requested = true;
        if matches!(self.phase, Phase::Open) {
            self.check_drain(pools);
        }
    }

    pub(super) fn shutdown(&mut self, w: &mut WorkerCtx) {
        self.shared.write_shut.store(true, Ordering::Release);
        if self.wr.side == WriteSide::Open {
            self.wr.side = WriteSide::ShutdownPending;
            // Drain events stop with the shutdown (the reference removes
            // on_drain): `lwm` says no mark from now on. (Not by clearing
            // it in the options: that copied the shared options, an
            // allocation per connection that half-closes.)
            self.wr.drain_requested = false;
            self.flush(w);
        }
    }
}

/// Drops `n` bytes from the front of a write queue (no accounting).
pub(super) fn pop_front_bytes(q: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = q.front_mut() else {
            return;
        };
        if front.len() <= n {
            n -= front.len();
            q.pop_front();
        } else {
            front.advance(n);
            n = 0;
        }
    }
}

/// The one gather for every vectored write (to the socket or into the TLS
/// engine): fills `iov` with the front of the write queue, at most
/// `MAX_IOV` buffers and `limit` bytes. Returns how many slices it filled
/// and how many bytes they hold.
pub(super) fn gather<'a>(
    q: &'a VecDeque<Bytes>,
    limit: usize,
    iov: &mut [IoSlice<'a>; MAX_IOV],
) -> (usize, usize) {
    let (mut k, mut total) = (0, 0);
    for b in q.iter().take(MAX_IOV) {
        if total == limit {
            break;
        }
        let m = b.len().min(limit - total);
        iov[k] = IoSlice::new(&b[..m]);
        k += 1;
        total += m;
    }
    (k, total)
}
