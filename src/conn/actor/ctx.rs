//! `Ctx`: direct access to a connection for code running on a worker.

use super::requests::CallbackRead;
use super::requests::QueuedRead;
use super::requests::StreamAdapter;
use super::requests::StreamDecode;
use super::Core;
use super::Phase;
use super::WorkerCtx;
use crate::conn::shared::ConnRef;
use crate::conn::shared::Msg;
use crate::conn::ConnId;
use crate::conn::Connection;
use crate::conn::Options;
use crate::conn::Reply;
use crate::error::Error;
use crate::error::Inactivity;
use crate::error::Result;
use crate::framing::Decoder;
use crate::framing::Frame;
use crate::tls::TlsSetup;
use bytes::Bytes;
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

/// Direct access to a connection from code running in one of its turns on
/// a worker thread (handlers, read completions, [`Connection::call`]).
/// Operations apply at once, without a mailbox hop — except that while a
/// `stoptls` or `close` waits for the connection to be established, writes,
/// `shutdown`, `close`, `starttls`, `stoptls` and `request_drain` wait
/// behind it, in order (reads and options apply at once).
///
/// Everything written during a turn leaves before the turn ends (see
/// [`Options::autocork`]); [`push_read_with`](Self::push_read_with) chains
/// reads the way the reference's read callbacks do.
pub struct Ctx<'a> {
    pub(super) core: &'a mut Core,
    pub(super) w: &'a mut WorkerCtx,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl Ctx<'_> {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.core.shared.id
    }

    /// A handle other threads can use to talk to this connection.
    pub fn connection(&self) -> Connection {
        Connection::from_shared(ConnRef::clone(&self.core.shared))
    }

    /// The peer's address, once connected (also on the handle:
    /// [`Connection::peer_addr`]).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.core.shared.peer_addr()
    }

    /// The local address, once connected.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.core.shared.local_addr()
    }

    /// The peer process's credentials (Unix-domain sockets; see
    /// [`Connection::peer_credentials`]).
    #[cfg(unix)]
    pub fn peer_credentials(&self) -> Option<crate::net::PeerCredentials> {
        self.core.shared.peer_credentials()
    }

    /// Queues bytes for writing. They are tried at once when nothing more
    /// is buffered to process (one request at a time: the answer leaves
    /// now, with no queueing), and gathered when more input waits in the
    /// read buffer (pipelined requests: their answers leave together, in
    /// one `send`, when the decode pass is done — in the same turn). With
    /// [`Options::autocork`] every write waits for the end of the turn.
    /// Errors as [`Connection::write`]. With a
    /// [`low_water_mark`](Options::low_water_mark) set, a write larger than
    /// the mark is followed by [`Event::Drain`](crate::Event::Drain) once the queue is back at or
    /// below it — also when the kernel took it all at once.
    #[inline]
    pub fn write(&mut self, data: impl Into<Bytes>) -> Result<()> {
        // Only the conversion is generic: the rest is compiled once, here,
        // with `write_through` inlined into it, rather than in each
        // application crate as a second call on the way to `send`.
        self.write_bytes(data.into())
    }

    fn write_bytes(&mut self, data: Bytes) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if matches!(self.core.phase, Phase::Closing | Phase::Closed) || self.core.close_pending {
            return Err(Error::Closed);
        }
        if self.core.deferred.is_some() {
            // Behind a `stoptls` or `close` that waits for the connection.
            self.core.shared.reserve_write(data.len())?;
            self.core.defer(Msg::Write(data));
            return Ok(());
        }
        if self.core.opts.autocork || self.core.rd.mid_batch() {
            self.core.shared.reserve_write(data.len())?;
            self.core.enqueue(data, &mut self.w.local);
            return Ok(());
        }
        self.core.write_through(data, self.w)
    }

    /// Queues several buffers as one write (all or nothing against
    /// `wbuf_max`); they leave together, in one vectored `send` — at once,
    /// or with the batch's other answers as [`write`](Self::write)
    /// explains. See [`Connection::write_parts`].
    pub fn write_parts(&mut self, parts: impl IntoIterator<Item = Bytes>) -> Result<()> {
        // Up to four parts (a response's status and headers, `Date`, body)
        // are gathered on the stack: no allocation per response.
        let mut small: [Bytes; 4] = Default::default();
        let mut k = 0;
        let mut it = parts.into_iter().filter(|b| !b.is_empty());
        while let Some(b) = it.next() {
            if k == small.len() {
                let mut v: Vec<Bytes> = small.into_iter().collect();
                v.push(b);
                v.extend(it);
                return self.queue_parts(&mut v);
            }
            small[k] = b;
            k += 1;
        }
        self.queue_parts(&mut small[..k])
    }

    /// Encodes `msg` with its write type and queues it (all or nothing).
    pub fn send<E: crate::framing::Encoder>(&mut self, msg: E) -> Result<()> {
        if matches!(self.core.phase, Phase::Closing | Phase::Closed) || self.core.close_pending {
            return Err(Error::Closed);
        }
        let mut parts = Vec::with_capacity(2);
        msg.encode(&mut parts)?;
        self.queue_parts(&mut parts)
    }

    /// Queues `parts` (taken out of the slice) as one write: reserved
    /// together against `wbuf_max`, in order behind anything deferred,
    /// flushed at once without autocork.
    fn queue_parts(&mut self, parts: &mut [Bytes]) -> Result<()> {
        if matches!(self.core.phase, Phase::Closing | Phase::Closed) || self.core.close_pending {
            return Err(Error::Closed);
        }
        let n: usize = parts.iter().map(|b| b.len()).sum();
        if n == 0 {
            return Ok(());
        }
        self.core.shared.reserve_write(n)?;
        if self.core.deferred.is_some() {
            let parts = parts.iter_mut().map(std::mem::take).collect();
            self.core.defer(Msg::WriteParts(parts));
            return Ok(());
        }
        for data in parts {
            self.core.enqueue(std::mem::take(data), &mut self.w.local);
        }
        if !(self.core.opts.autocork || self.core.rd.mid_batch()) {
            self.core.flush(self.w);
        }
        Ok(())
    }

    /// Queues a read at the back of the read queue.
    pub fn push_read<D: Decoder>(&mut self, decoder: D) -> Reply<D::Output> {
        let (req, reply) = QueuedRead::request(decoder);
        self.core.push_read_req(req, false);
        reply
    }

    /// Queues a read at the front of the read queue.
    pub fn unshift_read<D: Decoder>(&mut self, decoder: D) -> Reply<D::Output> {
        let (req, reply) = QueuedRead::request(decoder);
        self.core.push_read_req(req, true);
        reply
    }

    /// Queues a read at the back of the read queue whose answer runs `f`
    /// on the worker — the reference's `push_read(type => cb)`, for
    /// handlers, which must not block on a [`Reply`].
    ///
    /// `f` runs once, in queue order, with the frame or with the error that
    /// ended the read (the same answers a [`Reply`] gets: a decode error,
    /// `UnexpectedEof` at EOF, the error that failed the connection, or
    /// `Closed`), always before the `Closed` event. A read queued once the
    /// connection is closing is dropped and `f` never runs (a handler that
    /// queues its next read from every answer cannot spin on a dead
    /// connection; the reference's destroyed handle ignores calls alike). Inside it, `ctx` can queue further reads — with
    /// [`unshift_read_with`](Self::unshift_read_with) one that runs next,
    /// before anything already queued. Here a line gives the length of
    /// the payload that follows it:
    ///
    /// ```
    /// use netactor::{framing::{Chunk, Line}, Ctx};
    ///
    /// fn read_message(ctx: &mut Ctx<'_>) {
    ///     ctx.push_read_with(Line::new(), |ctx, line| {
    ///         let Ok(line) = line else { return };
    ///         let Some(len) = std::str::from_utf8(&line.line).ok().and_then(|s| s.parse().ok()) else {
    ///             ctx.close();
    ///             return;
    ///         };
    ///         ctx.unshift_read_with(Chunk::new(len), |ctx, payload| {
    ///             if let Ok(payload) = payload {
    ///                 let _ = ctx.write(payload);
    ///                 read_message(ctx); // and the next message
    ///             }
    ///         });
    ///     });
    /// }
    /// ```
    pub fn push_read_with<D, F>(&mut self, decoder: D, f: F)
    where
        D: Decoder,
        F: FnOnce(&mut Ctx<'_>, Result<D::Output>) + Send + 'static,
    {
        self.core
            .push_read_req(CallbackRead::request(decoder, f), false);
    }

    /// Like [`push_read_with`](Self::push_read_with), at the front of the
    /// read queue: it runs before every read already queued.
    pub fn unshift_read_with<D, F>(&mut self, decoder: D, f: F)
    where
        D: Decoder,
        F: FnOnce(&mut Ctx<'_>, Result<D::Output>) + Send + 'static,
    {
        self.core
            .push_read_req(CallbackRead::request(decoder, f), true);
    }

    /// Sets (or clears) the streaming decoder; see [`Connection::set_streaming`].
    /// Setting one ends [reading in place](Self::set_read_in_place).
    pub fn set_streaming<D>(&mut self, decoder: Option<D>)
    where
        D: Decoder,
        D::Output: Into<Frame>,
    {
        if decoder.is_some() {
            self.core.rd.in_place = false;
        }
        self.core.rd.stream = decoder.map(|d| Box::new(StreamAdapter(d)) as Box<dyn StreamDecode>);
    }

    /// Reads in place (the reference's `on_read` with `rbuf`): while no read
    /// request is queued, every arrival calls
    /// [`Handler::on_read`](crate::Handler::on_read) with the read buffer
    /// itself. The handler consumes a prefix (`split_to`, `advance`) and
    /// leaves an incomplete tail where it is, for the next arrival — no
    /// copy, no decoder to swap. Turning it on clears the streaming decoder;
    /// queued reads still come first, so a body of known length can be
    /// taken with `push_read_with(Chunk::new(n), …)` in the middle.
    ///
    /// Only for connections with a handler: on a channel-mode connection
    /// (through a `call` or a completion) the connection fails with
    /// `InvalidInput` when bytes arrive, as nothing could consume them.
    ///
    /// ```
    /// use bytes::{Buf, BytesMut};
    /// use netactor::{Ctx, Event, Handler};
    /// /// Answers every complete `\n`-terminated line with its length.
    /// struct Lengths;
    /// impl Handler for Lengths {
    ///     fn on_event(&mut self, _ctx: &mut Ctx<'_>, _event: Event) {}
    ///     fn on_read(&mut self, ctx: &mut Ctx<'_>, rbuf: &mut BytesMut) {
    ///         while let Some(i) = rbuf.iter().position(|&b| b == b'\n') {
    ///             let line = rbuf.split_to(i + 1);
    ///             let _ = ctx.write(format!("{}\n", line.len() - 1));
    ///         }
    ///         // An incomplete line stays in `rbuf` for the next call.
    ///     }
    /// }
    /// // In the handler factory: `ctx.set_read_in_place(true); Box::new(Lengths)`.
    /// ```
    pub fn set_read_in_place(&mut self, on: bool) {
        if on {
            self.core.rd.stream = None;
        }
        self.core.rd.in_place = on;
        // What is already buffered is presented (again) to the handler.
        self.core.rd.in_place_seen = false;
    }

    /// Stops reading from the socket.
    pub fn stop_read(&mut self) {
        self.core.rd.stopped = true;
    }

    /// Resumes reading.
    pub fn start_read(&mut self) {
        self.core.rd.stopped = false;
    }

    /// The peer's end of stream has been read: no more bytes will arrive
    /// (what is buffered is all there is).
    pub fn read_eof(&self) -> bool {
        self.core.rd.eof
    }

    /// The unconsumed bytes in the read buffer; removing from the front is
    /// allowed. (Inside [`Handler::on_read`](crate::Handler::on_read) the
    /// buffer is its argument; this one is empty there.)
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        // The caller may take bytes off the front.
        self.core.rbuf_front_changed();
        &mut self.core.rd.buf
    }

    /// Half-close after everything queued is written.
    pub fn shutdown(&mut self) -> Result<()> {
        if matches!(self.core.phase, Phase::Closed) {
            return Err(Error::Closed);
        }
        if self.core.deferred.is_some() {
            self.core.shared.write_shut.store(true, Ordering::Release);
            self.core.defer(Msg::Shutdown);
            return Ok(());
        }
        self.core.shutdown(self.w);
        Ok(())
    }

    /// Closes the connection: as [`Connection::close`] (queued writes are
    /// flushed within the linger period).
    pub fn close(&mut self) {
        self.core.close_requested(self.w);
    }

    /// Asks for one [`Event::Drain`](crate::Event::Drain) as soon as the write queue is at or
    /// below the low-water mark (empty when none is set) — at once if it
    /// already is. Chains of "write, wait for drain, write" work with it:
    ///
    /// ```
    /// use netactor::{Ctx, Event};
    ///
    /// let mut left = 3;
    /// let handler = move |ctx: &mut Ctx<'_>, ev: Event| match ev {
    ///     Event::Connected { .. } | Event::Drain if left > 0 => {
    ///         left -= 1;
    ///         let _ = ctx.write(vec![b'x'; 1 << 20]);
    ///         ctx.request_drain(); // tell me when that megabyte is out
    ///     }
    ///     Event::Drain => ctx.close(),
    ///     _ => {}
    /// };
    /// # let _ = netactor::Sink::handler(handler);
    /// ```
    pub fn request_drain(&mut self) {
        if self.core.deferred.is_some() {
            self.core.defer(Msg::RequestDrain);
            return;
        }
        self.core.request_drain(&mut self.w.local);
    }

    /// Sets an inactivity timeout.
    pub fn set_timeout(&mut self, kind: Inactivity, period: Option<Duration>) {
        self.core.set_timeout(kind, period, self.w);
    }

    /// Counts now as activity for the given timer.
    pub fn reset_timeout(&mut self, kind: Inactivity) {
        let now = Instant::now();
        self.core.reset_timeout(kind, now);
    }

    /// The connection's options, to change on the fly (socket options apply
    /// when the closure returns; a new low-water mark at or above the queue
    /// emits [`Event::Drain`](crate::Event::Drain) at once, as [`Connection::configure`]).
    ///
    /// ```
    /// # fn f(ctx: &mut netactor::Ctx<'_>) {
    /// ctx.configure(|o| o.set_low_water_mark(Some(64 << 10)));
    /// # }
    /// ```
    pub fn configure(&mut self, f: impl FnOnce(&mut Options)) {
        let before = (*self.core.opts).clone();
        f(Arc::make_mut(&mut self.core.opts));
        self.core.configured(&before, self.w);
    }

    /// Starts TLS; bytes already buffered are handed to the TLS engine.
    pub fn starttls(&mut self, setup: TlsSetup) {
        self.core.starttls(setup, self.w);
    }

    /// Sends close_notify; the stream becomes plaintext once the peer answers.
    pub fn stoptls(&mut self) {
        self.core.stoptls(self.w);
    }

    /// The ALPN protocol the TLS handshake agreed on.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.core.tls.as_ref().and_then(|t| t.alpn())
    }

    /// Whether TLS is active.
    pub fn is_tls(&self) -> bool {
        self.core.tls.is_some()
    }

    /// The certificate chain the TLS peer presented (leaf first): the
    /// server's on a client, the client's on a server that asked for one.
    pub fn tls_peer_certificates(&self) -> Option<&[crate::tls::CertificateDer<'static>]> {
        self.core.tls.as_ref().and_then(|t| t.peer_certificates())
    }

    /// The server name a TLS client asked for with SNI (server side).
    pub fn tls_server_name(&self) -> Option<&str> {
        self.core.tls.as_ref().and_then(|t| t.sni())
    }

    /// The negotiated TLS version, once known.
    pub fn tls_protocol_version(&self) -> Option<crate::tls::ProtocolVersion> {
        self.core.tls.as_ref().and_then(|t| t.protocol_version())
    }

    /// The negotiated TLS cipher suite, once known.
    pub fn tls_cipher_suite(&self) -> Option<crate::tls::CipherSuite> {
        self.core.tls.as_ref().and_then(|t| t.cipher_suite())
    }

    /// Everything the TLS handshake established (version, cipher suite,
    /// ALPN, SNI, the peer's certificates), once
    /// [`Event::TlsEstablished`](crate::Event::TlsEstablished) was emitted; `None` without TLS.
    pub fn tls_info(&self) -> Option<Arc<crate::tls::TlsInfo>> {
        self.core.shared.tls_info()
    }

    /// The connection's counters and state (see [`Stats`](crate::Stats)).
    /// A fuller snapshot than a per-message path needs (it takes a lock
    /// for the peer address): there, use [`write_queued`](Self::write_queued)
    /// or [`write_room`](Self::write_room).
    #[inline]
    pub fn stats(&self) -> crate::Stats {
        self.core.shared.stats()
    }

    /// How many more bytes [`write`](Self::write) accepts now before the
    /// write buffer limit ([`Options::wbuf_max`]) refuses with `NoSpace`.
    /// Lets a handler keep data it cannot queue instead of losing it (here
    /// resent on `Drain`, which needs [`Options::low_water_mark`]):
    ///
    /// ```
    /// use netactor::{Ctx, Event, Handler};
    ///
    /// struct Relay { held: Option<bytes::Bytes> }
    ///
    /// impl Handler for Relay {
    ///     fn on_event(&mut self, ctx: &mut Ctx<'_>, event: Event) {
    ///         match event {
    ///             Event::Read(frame) => {
    ///                 let Some(data) = frame.into_bytes() else { return };
    ///                 if data.len() > ctx.write_room() {
    ///                     self.held = Some(data); // sent again on Drain
    ///                     ctx.stop_read();
    ///                 } else if ctx.write(data).is_err() {
    ///                     ctx.close();
    ///                 }
    ///             }
    ///             Event::Drain => match self.held.take() {
    ///                 Some(data) if data.len() > ctx.write_room() => self.held = Some(data),
    ///                 Some(data) => {
    ///                     if ctx.write(data).is_err() {
    ///                         ctx.close();
    ///                     }
    ///                     ctx.start_read();
    ///                 }
    ///                 None => {}
    ///             },
    ///             _ => {}
    ///         }
    ///     }
    /// }
    /// ```
    #[inline]
    pub fn write_room(&self) -> usize {
        self.core.shared.write_room()
    }

    /// Bytes accepted for writing and not yet handed to the kernel (the
    /// same figure as [`Stats::write_queued`](crate::Stats::write_queued),
    /// without taking the whole snapshot): what a handler checks on every
    /// message to stop reading above a high-water mark.
    ///
    /// ```
    /// use netactor::{Ctx, Event};
    /// fn on_event(ctx: &mut Ctx<'_>, event: Event) {
    ///     if let Event::Read(frame) = event {
    ///         let _ = ctx.write(frame.into_bytes().unwrap_or_default());
    ///         if ctx.write_queued() > 1 << 20 {
    ///             ctx.stop_read(); // resumed on Drain (with a low-water mark)
    ///         }
    ///     }
    /// }
    /// ```
    #[inline]
    pub fn write_queued(&self) -> usize {
        self.core.shared.write_queued()
    }
}
