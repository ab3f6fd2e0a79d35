//! Reading: whether anyone wants data, and one receive from the socket
//! into the read buffer.

use super::requests::ReadRequest;
use super::requests::StreamDecode;
use super::Core;
use super::Phase;
use super::WorkerCtx;
use crate::conn::deque::Deque;
use crate::error::Error;
use crate::error::Result;
use crate::net::stream::Stream;
use bytes::Buf;
use bytes::BytesMut;
use std::io;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The read half of a connection.
pub(super) struct ReadHalf {
    /// Bytes read and not yet consumed by a decoder.
    pub(super) buf: BytesMut,
    /// How much one `recv` asks for: doubles (up to `max_read_size`) each
    /// time the kernel fills it.
    pub(super) size: ReadSize,
    /// The socket may have data (edge-triggered: forgotten only on EAGAIN
    /// or a short read).
    pub(super) readable: bool,
    /// The poller reported RDHUP/HUP/ERR: a short read is not the end.
    pub(super) peer_hup: bool,
    pub(super) eof: bool,
    /// `Event::Eof` was queued.
    pub(super) eof_reported: bool,
    /// Queued read requests, answered in order before the streaming decoder.
    pub(super) reads: Deque<Box<dyn ReadRequest>>,
    pub(super) stream: Option<Box<dyn StreamDecode>>,
    /// `stop_read` (or a close): nobody wants data.
    pub(super) stopped: bool,
    /// Arriving bytes go to [`Handler::on_read`](super::Handler::on_read)
    /// (when no read request is queued), instead of a streaming decoder.
    pub(super) in_place: bool,
    /// `on_read` has seen everything buffered and left a tail it cannot use
    /// yet: it is called again only once bytes arrive (or the front moves).
    pub(super) in_place_seen: bool,
    /// `Handler::on_read` is running (the buffer is out of the actor).
    pub(super) in_place_call: bool,
}

impl ReadHalf {
    pub(super) fn new(size: usize) -> Self {
        ReadHalf {
            buf: BytesMut::new(),
            size: ReadSize::new(size),
            readable: false,
            peer_hup: false,
            eof: false,
            eof_reported: false,
            reads: Deque::new(),
            stream: None,
            stopped: false,
            in_place: false,
            in_place_seen: false,
            in_place_call: false,
        }
    }

    /// More buffered input is being worked through: a handler's writes
    /// now are answers to part of a batch (pipelined requests), gathered
    /// and sent together once the batch is used up — by the flush that
    /// follows every decode pass, in the same turn.
    #[inline]
    pub(super) fn mid_batch(&self) -> bool {
        !self.buf.is_empty() || self.in_place_call
    }

    /// Someone takes arriving bytes: a read request, a streaming decoder,
    /// or the handler reading in place.
    #[inline]
    pub(super) fn has_consumer(&self) -> bool {
        !self.reads.is_empty() || self.stream.is_some() || self.in_place
    }
}

impl Core {
    pub(super) fn wants_read(&self) -> bool {
        if let Some(t) = self.tls.as_ref() {
            if t.peer_closed {
                // Nothing more goes into TLS after close_notify; after a
                // `stoptls` reading resumes in plaintext.
                return false;
            }
            if self.phase == Phase::Closing && t.is_handshaking() && !self.rd.eof {
                // A close waits for the handshake to send what was queued.
                return true;
            }
        }
        self.phase == Phase::Open
            && !self.rd.eof
            && !self.rd.stopped
            && self.outbox.overflow.is_empty()
            && ((self.rd.has_consumer()
                // Automatic back-pressure: no new requests while the
                // answers to earlier ones wait to be sent.
                && self.opts.pause_reading_above.is_none_or(|h| self.wr.len <= h))
                || self
                    .tls
                    .as_ref()
                    .is_some_and(|t| t.is_handshaking() || t.stopping))
    }

    /// One read from the socket into `rbuf` (through TLS if active).
    #[inline]
    pub(super) fn read_some(&mut self, w: &mut WorkerCtx) -> Result<usize> {
        if self.tls.is_some() {
            return self.tls_read(w);
        }
        let Some(sock) = self.sock.as_ref() else {
            self.rd.readable = false;
            return Ok(0);
        };
        if self.rd.buf.capacity() == 0 {
            if let Some(b) = w.local.bufs.pop() {
                self.rd.buf = b;
            }
        }
        let max = self.opts.max_read_size;
        match recv_into(sock, &mut self.rd.buf, &mut self.rd.size, max)? {
            Recv::Data { n, short } => {
                self.note_read_at(n, w.now, w.stamp());
                // A short read emptied the kernel buffer: with edge-triggered
                // registration, later data raises a new edge, so the `recv`
                // that would only say EAGAIN is skipped — unless the poller
                // reported RDHUP/HUP: a FIN (or RST) that came with the data
                // is only seen by the next recv, and its edge is spent.
                if short && !self.rd.peer_hup {
                    self.rd.readable = false;
                }
                Ok(n)
            }
            Recv::Eof => {
                self.rd.eof = true;
                self.rd.readable = false;
                Ok(0)
            }
            Recv::WouldBlock => {
                self.rd.readable = false;
                Ok(0)
            }
            Recv::Interrupted => Ok(0),
        }
    }

    /// Counts a read of `n` bytes at `now` (the TLS pump's entry, which
    /// has no stamp at hand: it converts `now`, a few instructions on a
    /// path that decrypts).
    pub(super) fn note_read(&mut self, n: usize, now: Instant) {
        self.note_read_at(n, now, crate::reactor::timers::stamp(now));
    }

    /// Counts a read of `n` bytes at `now` (`stamp`: `now` as a
    /// `WorkerCtx::stamp`), and publishes the stamp for `Stats::last_read`
    /// right here: one store, where a flag for the end of the turn to test
    /// cost more.
    #[inline]
    pub(super) fn note_read_at(&mut self, n: usize, now: Instant, stamp: u32) {
        let c = &self.shared.counters;
        c.add_read(n);
        c.last_read.store(stamp, Ordering::Relaxed);
        self.rd.in_place_seen = false;
        self.idle.touch_read(now);
    }

    pub(super) fn push_read_req(&mut self, mut r: Box<dyn ReadRequest>, front: bool) {
        if matches!(self.phase, Phase::Closing | Phase::Closed) || self.close_pending {
            // A reply learns why at once. A completion is dropped uncalled,
            // as the reference's destroyed handle ignores calls: calling it
            // back with the error would let a handler that re-queues its
            // read on every answer spin forever on a closed connection.
            r.fail(self.end_error());
            return;
        }
        if front {
            self.rd.reads.push_front(r);
        } else {
            self.rd.reads.push_back(r);
        }
    }
}

/// What one [`recv_into`] got.
pub(super) enum Recv {
    /// `n` bytes; `short`: fewer than asked for.
    Data {
        n: usize,
        short: bool,
    },
    Eof,
    /// `EAGAIN`: nothing until the next edge.
    WouldBlock,
    Interrupted,
}

/// The one receive, for plaintext and ciphertext alike: reads once from
/// `sock` into `buf`'s spare room, at most `size` bytes, and doubles
/// `size` (up to `max`) when the kernel filled all of it.
#[inline(always)]
pub(super) fn recv_into(
    sock: &Stream,
    buf: &mut BytesMut,
    size: &mut ReadSize,
    max: usize,
) -> Result<Recv> {
    // Room for at least half a read is used as it is: the buffer a frame
    // was just split off keeps the rest of its room for the next read,
    // instead of going through `reserve`'s reclaim on every turn. Large
    // reads always take the out-of-line path, which also aligns them.
    if buf.capacity() - buf.len() < size.min_room as usize {
        prepare(buf, size.get());
    }
    let want = size.get().min(buf.capacity() - buf.len());
    let len = buf.len();
    match sock.recv(&mut buf.spare_capacity_mut()[..want]) {
        Ok([]) => Ok(Recv::Eof),
        Ok(got) => {
            let n = got.len();
            // SAFETY: `got` is the initialised prefix of the spare capacity
            // (`recv` returns it as `&mut [u8]`), so the `n` bytes after
            // `len` are initialised.
            unsafe { buf.set_len(len + n) };
            if n == want {
                size.grow(max);
            }
            Ok(Recv::Data { n, short: n < want })
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Recv::WouldBlock),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Recv::Interrupted),
        Err(e) => Err(Error::from_io(e)),
    }
}

/// The read size, and the spare room below which a read goes through
/// [`prepare`] first: half the size while reads are small, and everything
/// once they are large ([`ALIGN_FROM`]), so that the hot path's one
/// comparison also decides alignment. Two `u32`s: the actor stays as small
/// as with one `usize`.
#[derive(Clone, Copy, Debug)]
pub(super) struct ReadSize {
    size: u32,
    min_room: u32,
}

impl ReadSize {
    pub(super) fn new(size: usize) -> Self {
        let mut r = ReadSize {
            size: 0,
            min_room: 0,
        };
        r.set(size);
        r
    }

    #[inline]
    pub(super) fn get(self) -> usize {
        self.size as usize
    }

    pub(super) fn set(&mut self, size: usize) {
        let size = size.min(u32::MAX as usize / 2) as u32;
        self.size = size;
        self.min_room = if size as usize >= ALIGN_FROM {
            u32::MAX
        } else {
            size / 2
        };
    }

    /// The kernel filled a whole read: double, up to `max`.
    #[inline]
    pub(super) fn grow(&mut self, max: usize) {
        if self.get() < max {
            self.set((self.get() * 2).min(max));
        }
    }
}

/// Before a read whose buffer is short of room, or any large read: makes
/// room for at least half a read and starts an empty buffer on a cache
/// line.
///
/// Alignment: the kernel's copy into a destination that is not 64-byte
/// aligned costs 1.5–2.6× the CPU per byte on this machine's AMD EPYC
/// (measured: `recv` of 64 KiB at 8, 16 and 32 bytes past a page boundary
/// against 0, 64, 1024). Frames are split off at arbitrary lengths and
/// allocations are only 16-byte aligned — a 128 KiB one (mmap'd) always
/// sits 16 bytes into a page — so without this most bulk reads were
/// misaligned, and the copy into the read buffer took 44 % of the bulk
/// echo's CPU (12 % in the hand-written mio loop's). A buffer
/// that still holds part of a frame reads on after it: the bytes must stay
/// contiguous.
// Out of line: small reads with room to spare never come here.
#[inline(never)]
fn prepare(buf: &mut BytesMut, size: usize) {
    if buf.capacity() - buf.len() < size / 2 {
        buf.reserve(size);
    }
    if size >= ALIGN_FROM {
        align_empty(buf, size / 2);
    }
}

/// Where an empty read buffer's next `recv` starts (see [`prepare`]).
const READ_ALIGN: usize = 64;
/// Reads are aligned once the read size has grown to this: small copies
/// gain nothing measurable, and small messages skip the padding.
const ALIGN_FROM: usize = 8 << 10;

/// Moves an empty buffer's start up to the next multiple of [`READ_ALIGN`]
/// (skipping at most 63 bytes of its room), keeping at least `room` after
/// it. Does nothing to a buffer that holds bytes or is aligned already.
fn align_empty(buf: &mut BytesMut, room: usize) {
    if !buf.is_empty() || (buf.as_ptr() as usize).is_multiple_of(READ_ALIGN) {
        return;
    }
    let mut pad = (buf.as_ptr() as usize).wrapping_neg() % READ_ALIGN;
    if buf.capacity() < pad + room {
        // May move back to the start of the allocation: measure again.
        buf.reserve(pad + room);
        pad = (buf.as_ptr() as usize).wrapping_neg() % READ_ALIGN;
    }
    if buf.capacity() >= pad + room {
        // Written (zeros), then skipped: initialised bytes, no `unsafe`.
        buf.resize(pad, 0);
        buf.advance(pad);
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    /// An empty buffer that starts `skew` bytes past a 16-byte-aligned
    /// allocation (odd `skew`: never 64-byte aligned), as after splitting
    /// off a frame of that length.
    fn skewed(capacity: usize, skew: usize) -> BytesMut {
        let mut buf = BytesMut::with_capacity(capacity);
        buf.resize(skew, 1);
        drop(buf.split_to(skew).freeze());
        assert!(buf.is_empty());
        assert_ne!(buf.as_ptr() as usize % READ_ALIGN, 0);
        buf
    }

    fn pair_with(data: &[u8]) -> (Stream, UnixStream) {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.write_all(data).unwrap();
        (Stream::Unix(a), b)
    }

    #[test]
    fn large_reads_into_an_empty_buffer_start_on_a_cache_line() {
        let data: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let (sock, _peer) = pair_with(&data);
        let mut buf = skewed(256 << 10, 17);
        let mut size = ReadSize::new(64 << 10);
        let Recv::Data { n, .. } = recv_into(&sock, &mut buf, &mut size, 128 << 10).unwrap() else {
            panic!("no data");
        };
        assert_eq!(buf.as_ptr() as usize % READ_ALIGN, 0);
        assert_eq!(&buf[..], &data[..n]);
    }

    #[test]
    fn a_partial_frame_stays_contiguous_and_small_reads_are_not_padded() {
        let data = b"hello world";
        let (sock, _peer) = pair_with(data);
        // Part of a frame left over: the read goes right after it.
        let mut buf = skewed(256 << 10, 17);
        buf.extend_from_slice(b"abc");
        let mut size = ReadSize::new(64 << 10);
        recv_into(&sock, &mut buf, &mut size, 128 << 10).unwrap();
        assert_eq!(&buf[..], b"abchello world");

        let (sock, _peer) = pair_with(data);
        let mut buf = skewed(4096, 17);
        let before = buf.as_ptr();
        let mut size = ReadSize::new(2048);
        recv_into(&sock, &mut buf, &mut size, 128 << 10).unwrap();
        assert_eq!(buf.as_ptr(), before);
        assert_eq!(&buf[..], data);
    }

    #[test]
    fn read_size_doubles_to_the_maximum_and_large_sizes_always_prepare() {
        let mut s = ReadSize::new(2048);
        assert_eq!(s.min_room, 1024);
        for _ in 0..10 {
            s.grow(128 << 10);
        }
        assert_eq!(s.get(), 128 << 10);
        assert_eq!(s.min_room, u32::MAX);
        s.set(4096);
        assert_eq!((s.get(), s.min_room), (4096, 2048));
    }
}
