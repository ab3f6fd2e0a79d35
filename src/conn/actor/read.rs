//! Reading: whether anyone wants data, and one receive from the socket
//! into the read buffer.

use super::requests::ReadRequest;
use super::requests::StreamDecode;
use super::Core;
use super::Phase;
use super::WorkerCtx;
use super::ACTIVE_READ;
use crate::error::Error;
use crate::error::Result;
use crate::net::stream::Stream;
use bytes::BytesMut;
use std::collections::VecDeque;
use std::io;
use std::time::Instant;

/// The read half of a connection.
pub(super) struct ReadHalf {
    /// Bytes read and not yet consumed by a decoder.
    pub(super) buf: BytesMut,
    /// How much one `recv` asks for: doubles (up to `max_read_size`) each
    /// time the kernel fills it.
    pub(super) size: usize,
    /// The socket may have data (edge-triggered: forgotten only on EAGAIN
    /// or a short read).
    pub(super) readable: bool,
    /// The poller reported RDHUP/HUP/ERR: a short read is not the end.
    pub(super) peer_hup: bool,
    pub(super) eof: bool,
    /// `Event::Eof` was queued.
    pub(super) eof_reported: bool,
    /// Queued read requests, answered in order before the streaming decoder.
    pub(super) reads: VecDeque<Box<dyn ReadRequest>>,
    pub(super) stream: Option<Box<dyn StreamDecode>>,
    /// `stop_read` (or a close): nobody wants data.
    pub(super) stopped: bool,
}

impl ReadHalf {
    pub(super) fn new(size: usize) -> Self {
        ReadHalf {
            buf: BytesMut::new(),
            size,
            readable: false,
            peer_hup: false,
            eof: false,
            eof_reported: false,
            reads: VecDeque::new(),
            stream: None,
            stopped: false,
        }
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
            && (((!self.rd.reads.is_empty() || self.rd.stream.is_some())
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
                self.note_read(n, w.now);
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

    pub(super) fn note_read(&mut self, n: usize, now: Instant) {
        let c = &self.shared.counters;
        c.add_read(n);
        self.activity |= ACTIVE_READ;
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
/// `sock` into `buf`'s spare room, at most `*size` bytes, and doubles
/// `*size` (up to `max`) when the kernel filled all of it.
#[inline(always)]
pub(super) fn recv_into(
    sock: &Stream,
    buf: &mut BytesMut,
    size: &mut usize,
    max: usize,
) -> Result<Recv> {
    // Room for at least half a read is used as it is: the buffer a frame
    // was just split off keeps the rest of its room for the next read,
    // instead of going through `reserve`'s reclaim on every turn.
    if buf.capacity() - buf.len() < *size / 2 {
        buf.reserve(*size);
    }
    let want = (*size).min(buf.capacity() - buf.len());
    let len = buf.len();
    match sock.recv(&mut buf.spare_capacity_mut()[..want]) {
        Ok([]) => Ok(Recv::Eof),
        Ok(got) => {
            let n = got.len();
            // SAFETY: `got` is the initialised prefix of the spare capacity
            // (`recv` returns it as `&mut [u8]`), so the `n` bytes after
            // `len` are initialised.
            unsafe { buf.set_len(len + n) };
            if n == want && *size < max {
                *size = (*size * 2).min(max);
            }
            Ok(Recv::Data { n, short: n < want })
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Recv::WouldBlock),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Recv::Interrupted),
        Err(e) => Err(Error::from_io(e)),
    }
}
