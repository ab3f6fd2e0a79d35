//! `Ctx`: direct access to a connection for code running on a worker.

use super::*;

/// Direct access to a connection from code running in one of its turns on
/// a worker thread (handlers, [`Connection::call`]). Operations apply at once, without a mailbox hop.
pub struct Ctx<'a> {
    pub(super) core: &'a mut Core,
    pub(super) w: &'a mut WorkerCtx,
}

impl Ctx<'_> {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.core.shared.id
    }

    /// A handle other threads can use to talk to this connection.
    pub fn connection(&self) -> Connection {
        Connection::from_shared(self.core.shared.clone())
    }

    /// The peer's address, once connected.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.core.peer
    }

    /// Queues bytes for writing; without autocork they are written at once.
    /// Errors as [`Connection::write`].
    pub fn write(&mut self, data: impl Into<Bytes>) -> Result<()> {
        let data = data.into();
        if data.is_empty() {
            return Ok(());
        }
        if matches!(self.core.phase, Phase::Closing | Phase::Closed) {
            return Err(Error::Closed);
        }
        if self.core.opts.autocork {
            self.core.shared.reserve_write(data.len())?;
            self.core.enqueue(data);
            return Ok(());
        }
        self.core.write_through(data, self.w)
    }

    /// Encodes `msg` with its write type and queues it (all or nothing).
    pub fn send<E: crate::framing::Encoder>(&mut self, msg: E) -> Result<()> {
        if matches!(self.core.phase, Phase::Closing | Phase::Closed) {
            return Err(Error::Closed);
        }
        let mut parts = Vec::with_capacity(2);
        msg.encode(&mut parts)?;
        let n: usize = parts.iter().map(|b| b.len()).sum();
        self.core.shared.reserve_write(n)?;
        for data in parts {
            self.core.enqueue(data);
        }
        if !self.core.opts.autocork {
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

    /// Sets (or clears) the streaming decoder; see [`Connection::set_streaming`].
    pub fn set_streaming<D>(&mut self, decoder: Option<D>)
    where
        D: Decoder,
        D::Output: Into<Frame>,
    {
        self.core.stream = decoder.map(|d| Box::new(StreamAdapter(d)) as Box<dyn StreamDecode>);
    }

    /// Stops reading from the socket.
    pub fn stop_read(&mut self) {
        self.core.read_stopped = true;
    }

    /// Resumes reading.
    pub fn start_read(&mut self) {
        self.core.read_stopped = false;
    }

    /// The unconsumed bytes in the read buffer; removing from the front is allowed.
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        // The caller may take bytes off the front.
        self.core.rbuf_front_changed();
        &mut self.core.rbuf
    }

    /// Half-close after everything queued is written.
    pub fn shutdown(&mut self) -> Result<()> {
        if matches!(self.core.phase, Phase::Closed) {
            return Err(Error::Closed);
        }
        self.core.shutdown(self.w);
        Ok(())
    }

    /// Close (queued writes linger).
    pub fn close(&mut self) {
        self.core.close(self.w);
    }

    /// Sets an inactivity timeout.
    pub fn set_timeout(&mut self, kind: TimeoutKind, period: Option<Duration>) {
        self.core.set_timeout(kind, period, self.w);
    }

    /// Counts now as activity for the given timer.
    pub fn reset_timeout(&mut self, kind: TimeoutKind) {
        let now = Instant::now();
        self.core.reset_timeout(kind, now);
    }

    /// The connection's options, to change on the fly (socket options apply
    /// when the closure returns).
    pub fn configure(&mut self, f: impl FnOnce(&mut Options)) {
        f(Arc::make_mut(&mut self.core.opts));
        self.core.apply_options();
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

    /// The connection's counters.
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
    pub fn write_room(&self) -> usize {
        self.core.shared.write_room()
    }
}
