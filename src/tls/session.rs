//! One connection's rustls engine, driven by the actor.
//!
//! The engine is rustls's *unbuffered* connection: rustls keeps the
//! protocol state and the keys, and the session owns both byte buffers —
//! `incoming` (ciphertext read from the socket that rustls has not
//! processed: at most a partial record, or a handshake message being
//! joined) and `outgoing` (ciphertext not yet handed to the kernel). Both
//! are empty between turns of an idle connection, and the actor gives
//! their allocations back to its worker's pool
//! ([`TlsSession::take_idle_buffers`]), so an idle TLS connection holds
//! no buffer at all: only rustls's state (~3.6 KiB with aws-lc-rs).
//!
//! rustls processes the incoming buffer in place and says how much of it
//! it consumed. It stops right after a close_notify, so whatever follows
//! that alert stays in `incoming`: that is the plaintext of the stream
//! after `stoptls`, kept in `leftover`.
//!
//! Plaintext for the peer is encrypted from the actor's write queue at
//! most [`WRITE_CHUNK`] bytes at a time, and only while `outgoing` is
//! empty — or holds only a few records rustls queued on its own (session
//! tickets), which then leave with it in one `send` — so the session never
//! holds much more than one chunk of ciphertext.
//! The write reservation of those bytes is held (counted in `in_engine`)
//! until their records have been handed to the kernel.

use super::hello;
use super::TlsSetup;
use crate::error::{Error, Result};
use crate::net::stream::Stream;
use bytes::{Buf, Bytes, BytesMut};
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, ReadEarlyData, UnbufferedStatus, WriteTraffic,
};
use std::collections::VecDeque;
use std::io;

/// Most plaintext encrypted ahead of the socket.
pub(crate) const WRITE_CHUNK: usize = 64 << 10;

/// Queued buffers smaller than this are copied together before
/// encryption, so many small writes make one record rather than one
/// each (what rustls's buffered writer did with a vectored write).
const COALESCE_BELOW: usize = 4 << 10;

/// Most plaintext in one TLS record.
const RECORD_MAX: usize = 16 << 10;

/// Most unprocessed ciphertext: a handshake message of up to 64 KiB being
/// joined (rustls's own limit) in records as small as a peer may make them
/// (rustls's smallest `max_fragment_size`, 32 bytes, adds 5 bytes of header
/// to each: +16 %; this allows +50 %), plus one record.
const INCOMING_MAX: usize = (96 << 10) + (18 << 10);

/// A partial record up to this size is moved out of a larger buffer
/// between turns (one that has arrived in full is processed at once).
const SMALL_PARTIAL: usize = 4 << 10;

/// A rustls error as netactor's [`Error::Tls`] (structured; its
/// `Display` says which side rejected a certificate).
pub(crate) fn tls_error(e: rustls::Error) -> Error {
    Error::Tls(crate::error::TlsError::Rustls(e))
}

enum Engine {
    Client(UnbufferedClientConnection),
    Server(UnbufferedServerConnection),
}

/// What differs between the two sides of rustls's unbuffered API: the
/// entry point is a method of each side's own type, and only a server can
/// see early data.
trait Side {
    type Data;
    fn process<'c, 'i>(&'c mut self, buf: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;
    fn skip_early_data(r: ReadEarlyData<'_, '_, Self::Data>);
}

impl Side for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(&'c mut self, buf: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(buf)
    }
    fn skip_early_data(_: ReadEarlyData<'_, '_, Self::Data>) {}
}

impl Side for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(&'c mut self, buf: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(buf)
    }
    /// 0-RTT data (only with a `ServerConfig` that enables it) is dropped,
    /// as before: it is replayable, and netactor never delivered it.
    fn skip_early_data(mut r: ReadEarlyData<'_, '_, Self::Data>) {
        while let Some(Ok(_)) = r.next_record() {}
    }
}

/// What to do once the engine may encrypt application data.
enum Write<'a> {
    /// Nothing: just drive the engine (process input, collect records).
    Nothing,
    /// Encrypt from the front of this queue, at most this many bytes;
    /// `coalesce` is scratch for joining small buffers.
    Plain {
        queue: &'a VecDeque<Bytes>,
        max: usize,
        coalesce: &'a mut Vec<u8>,
        taken: usize,
    },
    /// Send close_notify.
    CloseNotify,
}

/// The session's part of one drive of the engine.
struct Bufs<'a> {
    incoming: &'a mut BytesMut,
    outgoing: &'a mut BytesMut,
    rbuf: &'a mut BytesMut,
    peer_closed: &'a mut bool,
}

/// Appends what `f` writes to `out`, given `room` zeroed bytes; `f` says
/// how much it wrote, or how much room it needs (then it is tried again
/// with that much).
fn append_with<E>(
    out: &mut BytesMut,
    mut room: usize,
    mut f: impl FnMut(&mut [u8]) -> std::result::Result<usize, E>,
    needs: impl Fn(&E) -> Option<usize>,
) -> std::result::Result<usize, E> {
    let len = out.len();
    loop {
        #[cfg(test)]
        zeroed_tests::ZEROED.with(|z| z.set(z.get() + room));
        out.resize(len + room, 0);
        let r = f(&mut out[len..]);
        match r {
            Ok(n) => {
                out.truncate(len + n);
                return Ok(n);
            }
            Err(e) => {
                out.truncate(len);
                match needs(&e) {
                    Some(need) if need > room => room = need,
                    _ => return Err(e),
                }
            }
        }
    }
}

fn encode_needs(e: &EncodeError) -> Option<usize> {
    match e {
        EncodeError::InsufficientSize(s) => Some(s.required_size),
        _ => None,
    }
}

fn encrypt_needs(e: &EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(s) => Some(s.required_size),
        _ => None,
    }
}

/// Room for the records of `n` plaintext bytes (header, content type,
/// nonce and tag: ≤ 29 bytes a record) plus a pending key update.
fn sealed_room(n: usize) -> usize {
    n + n.div_ceil(RECORD_MAX).max(1) * 32 + 64
}

/// Encrypts from the queue's front into `out`; returns the plaintext taken.
fn encrypt_from<D>(
    wt: &mut WriteTraffic<'_, D>,
    out: &mut BytesMut,
    queue: &VecDeque<Bytes>,
    max: usize,
    coalesce: &mut Vec<u8>,
) -> Result<usize> {
    let mut taken = 0;
    let mut i = 0;
    let mut off = 0; // into queue[i]
    while taken < max && i < queue.len() {
        let front = &queue[i][off..];
        if front.is_empty() {
            i += 1;
            off = 0;
            continue;
        }
        let room = max - taken;
        let n;
        if front.len() >= COALESCE_BELOW || i + 1 == queue.len() || room <= front.len() {
            // Encrypt straight from the application's buffer.
            n = front.len().min(room);
            seal(wt, out, &front[..n])?;
        } else {
            // Join small buffers into up to one record's worth.
            coalesce.clear();
            let limit = room.min(RECORD_MAX);
            for (j, b) in queue.iter().enumerate().skip(i) {
                let b = if j == i { &b[off..] } else { &b[..] };
                let k = b.len().min(limit - coalesce.len());
                coalesce.extend_from_slice(&b[..k]);
                if coalesce.len() == limit {
                    break;
                }
            }
            n = coalesce.len();
            seal(wt, out, coalesce)?;
        }
        taken += n;
        // Advance (i, off) by n bytes.
        let mut left = n;
        while left > 0 {
            let rest = queue[i].len() - off;
            if left < rest {
                off += left;
                left = 0;
            } else {
                left -= rest;
                i += 1;
                off = 0;
            }
        }
    }
    Ok(taken)
}

fn seal<D>(wt: &mut WriteTraffic<'_, D>, out: &mut BytesMut, plain: &[u8]) -> Result<()> {
    append_with(
        out,
        sealed_room(plain.len()),
        |b| wt.encrypt(plain, b),
        encrypt_needs,
    )
    .map(|_| ())
    .map_err(|e| Error::Tls(e.into()))
}

/// Runs the engine until it needs more input or the peer closed: input is
/// processed (plaintext appended to `rbuf`), records it has to send are
/// appended to `outgoing`, and — once application data may flow — `write`
/// is done.
fn drive<S: Side>(conn: &mut S, b: Bufs<'_>, write: &mut Write<'_>) -> Result<()> {
    loop {
        let status = conn.process(&mut b.incoming[..]);
        let mut discard = status.discard;
        let state = match status.state {
            Ok(s) => s,
            Err(e) => {
                b.incoming.advance(discard);
                return Err(tls_error(e));
            }
        };
        let mut stop = false;
        let mut failed = None;
        match state {
            ConnectionState::ReadTraffic(mut r) => {
                while let Some(rec) = r.next_record() {
                    match rec {
                        Ok(rec) => {
                            discard += rec.discard;
                            b.rbuf.extend_from_slice(rec.payload);
                        }
                        Err(e) => {
                            failed = Some(tls_error(e));
                            break;
                        }
                    }
                }
            }
            ConnectionState::ReadEarlyData(r) => S::skip_early_data(r),
            ConnectionState::EncodeTlsData(mut e) => {
                // No room offered: rustls answers with the record's exact
                // size (a cheap check), so only the bytes it then copies
                // in are zeroed first, not a guess's worth per record.
                if let Err(e) = append_with(b.outgoing, 0, |buf| e.encode(buf), encode_needs) {
                    failed = Some(Error::Tls(e.into()));
                }
            }
            // Encoded records are in `outgoing`, sent in order by `send_to`:
            // the engine need not wait for the socket.
            ConnectionState::TransmitTlsData(t) => t.done(),
            ConnectionState::WriteTraffic(mut wt) => {
                stop = true;
                match write {
                    Write::Nothing => {}
                    Write::Plain {
                        queue,
                        max,
                        coalesce,
                        taken,
                    } => match encrypt_from(&mut wt, b.outgoing, queue, *max, coalesce) {
                        Ok(n) => *taken += n,
                        Err(e) => failed = Some(e),
                    },
                    Write::CloseNotify => {
                        let r = append_with(
                            b.outgoing,
                            64,
                            |buf| wt.queue_close_notify(buf),
                            encrypt_needs,
                        );
                        if let Err(e) = r {
                            failed = Some(Error::Tls(e.into()));
                        }
                    }
                }
            }
            ConnectionState::PeerClosed => {
                *b.peer_closed = true;
                stop = true;
            }
            // Blocked (needs input), Closed, or a state this version does
            // not know: nothing more to do now.
            _ => stop = true,
        }
        b.incoming.advance(discard);
        if let Some(e) = failed {
            return Err(e);
        }
        if stop {
            return Ok(());
        }
    }
}

/// After an error: rustls has queued the alert that tells the peer why;
/// the next drive hands it over (the error itself stays with the engine).
fn collect_alert<S: Side>(conn: &mut S, incoming: &mut BytesMut, outgoing: &mut BytesMut) {
    for _ in 0..4 {
        let status = conn.process(&mut incoming[..]);
        match status.state {
            Ok(ConnectionState::EncodeTlsData(mut e)) => {
                if append_with(outgoing, 64, |buf| e.encode(buf), encode_needs).is_err() {
                    return;
                }
            }
            _ => return,
        }
    }
}

/// One connection's TLS engine.
pub(crate) struct TlsSession {
    engine: Engine,
    /// Ciphertext received and not yet consumed by rustls.
    incoming: BytesMut,
    /// Ciphertext for the peer, not yet handed to the kernel.
    outgoing: BytesMut,
    /// `TlsEstablished` was reported.
    established: bool,
    /// Going back to plaintext once both close_notify alerts are through
    /// (after a local `stoptls`, or when answering the peer's).
    pub(crate) stopping: bool,
    close_sent: bool,
    /// The peer's close_notify arrived: nothing more is fed to TLS.
    pub(crate) peer_closed: bool,
    /// The peer's close_notify is to be answered (`follow_stoptls`).
    pub(crate) answer_pending: bool,
    /// Plaintext moved into the engine whose write reservation is still held.
    pub(crate) in_engine: usize,
    /// Bytes queued in clear before `starttls`: they go out before any record.
    pub(crate) plain_prefix: usize,
    /// Socket bytes that followed the peer's close_notify (plaintext after `stoptls`).
    /// (Boxed: rare, and the session sits in every TLS connection.)
    pub(crate) leftover: Option<Box<BytesMut>>,
    /// When the handshake times out, as a `reactor::timers::stamp` (10 ms
    /// units; 0: not set), set by the connection that starts it — whose
    /// timer looks in at least every 250 ms meanwhile. Four bytes: the
    /// session sits in every TLS connection.
    pub(crate) handshake_until: u32,
    /// Server side: the SNI name is still to be read from the ClientHello
    /// (rustls's unbuffered server does not tell it).
    scan_hello: bool,
    /// The start of the stream while the ClientHello is incomplete (only
    /// then: a hello that arrives whole is read where it is).
    hello: Option<Box<hello::HelloScan>>,
    /// `incoming` holds a partial record moved out of a pooled buffer at
    /// the end of a turn (the next read takes a pool buffer again).
    compacted: bool,
    /// The SNI name the client asked for (server side).
    sni: Option<Box<str>>,
    /// The engine's TLS 1.3 record keys, to release while idle.
    keys: super::idle_keys::Collector,
}

impl TlsSession {
    /// A session, boxed as the connection keeps it (built in its box: the
    /// engine is over 1 KiB, and every move of it is a copy).
    pub(crate) fn new(setup: TlsSetup) -> Result<Box<TlsSession>> {
        let (engine, scan_hello) = match setup {
            TlsSetup::Client {
                config,
                server_name,
            } => (
                Engine::Client(
                    UnbufferedClientConnection::new(config, server_name).map_err(tls_error)?,
                ),
                false,
            ),
            TlsSetup::Server(config) => (
                {
                    // rustls would accept 0-RTT data that this session
                    // cannot hand over (it is replayable, and arrives
                    // before the handshake is done): the client would
                    // count as delivered what netactor dropped.
                    if config.max_early_data_size > 0 {
                        return Err(Error::Config(crate::error::ConfigError::EarlyData));
                    }
                    Engine::Server(UnbufferedServerConnection::new(config).map_err(tls_error)?)
                },
                true,
            ),
        };
        Ok(Box::new(TlsSession {
            engine,
            incoming: BytesMut::new(),
            outgoing: BytesMut::new(),
            established: false,
            stopping: false,
            close_sent: false,
            peer_closed: false,
            answer_pending: false,
            in_engine: 0,
            plain_prefix: 0,
            leftover: None,
            handshake_until: 0,
            scan_hello,
            hello: None,
            compacted: false,
            sni: None,
            keys: Default::default(),
        }))
    }

    fn common(&self) -> &rustls::CommonState {
        match &self.engine {
            Engine::Client(c) => c,
            Engine::Server(s) => s,
        }
    }

    fn run(&mut self, rbuf: &mut BytesMut, write: &mut Write<'_>) -> Result<()> {
        let b = Bufs {
            incoming: &mut self.incoming,
            outgoing: &mut self.outgoing,
            rbuf,
            peer_closed: &mut self.peer_closed,
        };
        let engine = &mut self.engine;
        let r = self.keys.run(|| match engine {
            Engine::Client(c) => drive(c, b, write),
            Engine::Server(s) => drive(s, b, write),
        });
        if r.is_err() {
            match &mut self.engine {
                Engine::Client(c) => collect_alert(c, &mut self.incoming, &mut self.outgoing),
                Engine::Server(s) => collect_alert(s, &mut self.incoming, &mut self.outgoing),
            }
        }
        r
    }

    /// Collects what the engine has to send before any input (a client's
    /// hello).
    pub(crate) fn start(&mut self) -> Result<()> {
        self.run(&mut BytesMut::new(), &mut Write::Nothing)
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.common().is_handshaking()
    }

    /// True exactly once: when the handshake has just completed.
    pub(crate) fn take_established(&mut self) -> bool {
        if !self.established && !self.is_handshaking() {
            self.established = true;
            self.scan_hello = false;
            self.hello = None;
            return true;
        }
        false
    }

    /// Whether the engine holds TLS 1.3 record keys that can be released.
    pub(crate) fn has_lazy_keys(&self) -> bool {
        self.keys.has_keys()
    }

    /// Releases the record keys' AEAD contexts (built again by the next
    /// record); true if any was held.
    pub(crate) fn release_keys(&mut self) -> bool {
        self.keys.release()
    }

    /// Whether the engine ran since the keys were released (once).
    pub(crate) fn take_keys_woke(&mut self) -> bool {
        self.keys.take_woke()
    }

    /// The keys were released and no record has been through since.
    pub(crate) fn keys_released(&self) -> bool {
        self.keys.is_released()
    }

    /// Records are waiting to be sent.
    pub(crate) fn wants_write(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Whether application plaintext may be moved into the engine: only
    /// after the handshake (so nothing leaves before the peer is verified)
    /// and before our close_notify.
    pub(crate) fn accepts_plaintext(&self) -> bool {
        !self.is_handshaking() && !self.close_sent
    }

    pub(crate) fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// The buffer socket reads go to (appended to what is unprocessed);
    /// `spare` supplies an allocation if it has none.
    pub(crate) fn incoming(&mut self, spare: impl FnOnce() -> BytesMut) -> &mut BytesMut {
        if self.incoming.capacity() == 0 || self.compacted {
            // None, or a partial record kept between turns in a buffer of
            // its own size: reads go to a buffer from the pool (the
            // partial record, ≤ SMALL_PARTIAL, copied to its start).
            let mut b = spare();
            b.clear();
            b.extend_from_slice(&self.incoming);
            self.incoming = b;
            self.compacted = false;
        }
        &mut self.incoming
    }

    /// Gives `outgoing` an allocation (from the pool) if it has none.
    pub(crate) fn lend_outgoing(&mut self, spare: impl FnOnce() -> Option<BytesMut>) {
        if self.outgoing.capacity() == 0 {
            if let Some(mut b) = spare() {
                b.clear();
                self.outgoing = b;
            }
        }
    }

    /// Takes ciphertext that did not come from a socket read (bytes that
    /// were buffered when TLS started).
    pub(crate) fn push_incoming(&mut self, data: BytesMut) {
        self.compacted = false;
        if self.incoming.is_empty() {
            self.incoming = data;
        } else {
            self.incoming.extend_from_slice(&data);
        }
    }

    /// Processes the ciphertext in `incoming`, of which the last `new`
    /// bytes just arrived, appending decrypted bytes to `rbuf`. Stops right
    /// after a close_notify: the bytes after it move to `leftover`.
    pub(crate) fn input(&mut self, new: usize, rbuf: &mut BytesMut) -> Result<()> {
        if self.peer_closed {
            if (self.stopping || self.answer_pending) && !self.incoming.is_empty() {
                self.leftover
                    .get_or_insert_with(Default::default)
                    .extend_from_slice(&self.incoming);
            }
            self.incoming.clear();
            return Ok(());
        }
        if self.scan_hello {
            let tail = &self.incoming[self.incoming.len() - new.min(self.incoming.len())..];
            let scan = match self.hello.as_mut() {
                Some(scan) => scan.feed(tail),
                // The first bytes: read in place if they hold the hello.
                None => hello::whole(tail).unwrap_or_else(|| {
                    let mut scan = Box::<hello::HelloScan>::default();
                    let r = scan.feed(tail);
                    self.hello = Some(scan);
                    r
                }),
            };
            if let hello::Scan::Done(name) = scan {
                self.sni = name.map(String::into_boxed_str);
                self.scan_hello = false;
                self.hello = None;
            }
        }
        self.run(rbuf, &mut Write::Nothing)?;
        if self.peer_closed {
            // (Nothing split off when nothing followed: splitting a buffer
            // not yet shared allocates the header that shares it.)
            self.leftover = (!self.incoming.is_empty()).then(|| Box::new(self.incoming.split()));
        } else if self.incoming.len() > INCOMING_MAX {
            return Err(tls_error(rustls::Error::InvalidMessage(
                rustls::InvalidMessage::MessageTooLarge,
            )));
        }
        Ok(())
    }

    /// Encrypts plaintext from the front of `queue`, at most `max` bytes
    /// (`None`: one chunk); returns how much it took.
    pub(crate) fn write_plain(
        &mut self,
        queue: &VecDeque<Bytes>,
        max: Option<usize>,
        coalesce: &mut Vec<u8>,
        rbuf: &mut BytesMut,
    ) -> Result<usize> {
        if !self.accepts_plaintext() || queue.is_empty() {
            return Ok(0);
        }
        let mut w = Write::Plain {
            queue,
            max: max.unwrap_or(WRITE_CHUNK),
            coalesce,
            taken: 0,
        };
        self.run(rbuf, &mut w)?;
        let Write::Plain { taken, .. } = w else {
            unreachable!()
        };
        self.in_engine += taken;
        Ok(taken)
    }

    /// Bytes of ciphertext waiting for the socket.
    pub(crate) fn pending_records(&self) -> usize {
        self.outgoing.len()
    }

    /// Writes queued records to the socket; `before_fin`: a FIN follows
    /// them at once (`Stream::send_before_fin`).
    pub(crate) fn send_to(&mut self, sock: &Stream, before_fin: bool) -> io::Result<usize> {
        let n = if before_fin {
            sock.send_before_fin(&self.outgoing)?
        } else {
            sock.send(&self.outgoing)?
        };
        self.outgoing.advance(n);
        Ok(n)
    }

    /// Queues close_notify (once).
    pub(crate) fn close_notify(&mut self, rbuf: &mut BytesMut) -> Result<()> {
        if self.close_sent {
            return Ok(());
        }
        self.close_sent = true;
        self.run(rbuf, &mut Write::CloseNotify)
    }

    /// Gives back the buffers' allocations while they hold nothing (so an
    /// idle connection keeps none).
    /// With `compact` (at the end of a turn) a small partial record also
    /// moves out of a large buffer.
    pub(crate) fn take_idle_buffers(&mut self, compact: bool, mut give: impl FnMut(BytesMut)) {
        if self.incoming.is_empty() && self.incoming.capacity() > 0 {
            give(std::mem::take(&mut self.incoming));
        } else if compact && !self.compacted && self.incoming.len() <= SMALL_PARTIAL {
            // A partial record waits for the rest (a peer that sends slowly,
            // or stopped): keep it in a buffer of its size, not in a large
            // read buffer from the pool. rustls's positions in it are
            // relative to its start, which the copy keeps.
            // (`capacity()` cannot tell a large buffer here: it counts
            // only the room after the bytes rustls consumed.)
            let part = BytesMut::from(&self.incoming[..]);
            give(std::mem::replace(&mut self.incoming, part));
            self.compacted = true;
        }
        if self.outgoing.is_empty() && self.outgoing.capacity() > 0 {
            give(std::mem::take(&mut self.outgoing));
        }
    }

    /// Negotiated ALPN protocol.
    pub(crate) fn alpn(&self) -> Option<&[u8]> {
        self.common().alpn_protocol()
    }

    /// The certificates the peer presented (leaf first).
    pub(crate) fn peer_certificates(
        &self,
    ) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.common().peer_certificates()
    }

    /// The SNI name a client asked for (server side only).
    pub(crate) fn sni(&self) -> Option<&str> {
        // Only once rustls has accepted the hello the name was read from
        // (it has chosen a version then).
        self.protocol_version()?;
        self.sni.as_deref()
    }

    /// Negotiated protocol version.
    pub(crate) fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.common().protocol_version()
    }

    /// Negotiated cipher suite.
    pub(crate) fn cipher_suite(&self) -> Option<rustls::CipherSuite> {
        self.common().negotiated_cipher_suite().map(|s| s.suite())
    }

    /// Everything the handshake established, for the connection's handles
    /// (shared with the worker's other connections that have the same:
    /// [`super::TlsInfo::shared`]; compared field by field first, so a
    /// connection like the last one copies nothing).
    pub(crate) fn info(&self) -> std::sync::Arc<super::TlsInfo> {
        let (version, suite) = (self.protocol_version(), self.cipher_suite());
        let (alpn, sni) = (self.alpn(), self.sni());
        let certs = self.peer_certificates().unwrap_or_default();
        super::TlsInfo::shared(
            |l| {
                l.protocol_version == version
                    && l.cipher_suite == suite
                    && l.alpn_protocol.as_deref() == alpn
                    && l.server_name.as_deref() == sni
                    && l.peer_certificates[..] == *certs
            },
            || super::TlsInfo {
                protocol_version: version,
                cipher_suite: suite,
                alpn_protocol: alpn.map(<[u8]>::to_vec),
                server_name: sni.map(str::to_string),
                peer_certificates: certs.to_vec(),
            },
        )
    }
}

#[cfg(test)]
mod size_tests {
    /// Every TLS connection carries one boxed session: rustls's connection
    /// (1 088 B for a server with rustls 0.23) and the session's own fields.
    #[test]
    fn session_stays_small() {
        let session = std::mem::size_of::<super::TlsSession>();
        let server = std::mem::size_of::<rustls::server::UnbufferedServerConnection>();
        eprintln!("TlsSession {session} B, of which rustls's server connection {server} B");
        // 160 until the handshake deadline came (a 4-byte stamp, where
        // the flags' padding was already full: 8 bytes).
        assert!(session <= server + 168, "TlsSession is {session} bytes");
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;
    use crate::error::{EncodeFailure, TlsError};
    use rustls::unbuffered::InsufficientSizeError;

    /// rustls's unbuffered errors become typed `TlsError`s, not strings.
    #[test]
    fn unbuffered_api_errors_keep_their_kind() {
        // Real `EncodeError`s, from a client's first record (its hello).
        let cfg = crate::tls::ClientBuilder::new()
            .dangerous_accept_any_certificate()
            .build()
            .unwrap();
        let mut c = UnbufferedClientConnection::new(cfg, "localhost".try_into().unwrap()).unwrap();
        let mut none: [u8; 0] = [];
        let status = c.process_tls_records(&mut none);
        let Ok(ConnectionState::EncodeTlsData(mut e)) = status.state else {
            panic!("no hello to encode");
        };
        let mut small = [0u8; 8];
        let need = match e.encode(&mut small) {
            Err(EncodeError::InsufficientSize(s)) => s.required_size,
            other => panic!("{other:?}"),
        };
        let mut big = vec![0u8; need];
        let err = e.encode(&mut small).unwrap_err();
        assert_eq!(
            TlsError::from(err),
            TlsError::Encode(EncodeFailure::InsufficientSize {
                required_size: need
            })
        );
        assert_eq!(e.encode(&mut big).unwrap(), need);
        let again = Error::Tls(e.encode(&mut big).unwrap_err().into());
        assert!(
            matches!(
                &again,
                Error::Tls(TlsError::Encode(EncodeFailure::AlreadyEncoded))
            ),
            "{again:?}"
        );
        assert_eq!(
            again.to_string(),
            "TLS error: cannot encode a TLS record: the record was already encoded"
        );
        assert_eq!(again.errno(), libc::EPROTO);

        // `EncryptError`s (made by hand: exhausting a key takes a custom
        // cipher suite, as in tests/tls_robust.rs).
        let exhausted = Error::Tls(EncryptError::EncryptExhausted.into());
        assert!(matches!(exhausted, Error::Tls(TlsError::EncryptExhausted)));
        assert!(exhausted.to_string().contains("keys are exhausted"));
        assert_eq!(exhausted.kind(), io::ErrorKind::InvalidData);
        let Error::Tls(tls) = &exhausted else {
            unreachable!()
        };
        assert!(tls.rustls().is_none() && !tls.is_certificate());
        let room = EncryptError::InsufficientSize(InsufficientSizeError { required_size: 9 });
        assert_eq!(
            TlsError::from(room),
            TlsError::Encode(EncodeFailure::InsufficientSize { required_size: 9 })
        );
    }
}

#[cfg(test)]
mod zeroed_tests {
    use super::*;
    use std::cell::Cell;
    use std::io::{Read, Write};

    thread_local! {
        /// Bytes `append_with` zeroed for the engine to write into.
        pub(super) static ZEROED: Cell<usize> = const { Cell::new(0) };
    }

    /// The server's records are written into room of their own size: a
    /// handshake zeroes about the bytes it sends, not a guess's worth per
    /// record (4 KiB each, over 20 KiB a handshake, before).
    #[test]
    fn a_handshake_zeroes_only_the_room_its_records_take() {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let server = crate::tls::ServerBuilder::from_pem(
            ck.cert.pem().as_bytes(),
            ck.signing_key.serialize_pem().as_bytes(),
        )
        .and_then(|b| b.build())
        .unwrap();
        let client = crate::tls::ClientBuilder::new()
            .dangerous_accept_any_certificate()
            .build()
            .unwrap();
        let mut c = rustls::ClientConnection::new(client, "localhost".try_into().unwrap()).unwrap();
        c.writer().write_all(&[3u8; 64]).unwrap();
        let mut s = TlsSession::new(TlsSetup::Server(server)).unwrap();
        s.start().unwrap();
        ZEROED.with(|z| z.set(0));
        let (mut sent, mut rbuf) = (0, BytesMut::new());
        for _ in 0..8 {
            let mut to_server = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut to_server).unwrap();
            }
            let incoming = s.incoming(|| BytesMut::with_capacity(16 << 10));
            incoming.extend_from_slice(&to_server);
            s.input(to_server.len(), &mut rbuf).unwrap();
            let out = s.outgoing.split();
            sent += out.len();
            if !out.is_empty() {
                c.read_tls(&mut &out[..]).unwrap();
                c.process_new_packets().unwrap();
            }
            if !rbuf.is_empty() {
                break;
            }
        }
        assert_eq!(&rbuf[..], &[3u8; 64][..], "the client's data arrived");
        let zeroed = ZEROED.with(Cell::get);
        eprintln!("handshake: {sent} bytes of records, {zeroed} bytes zeroed");
        assert!(sent > 0);
        assert!(
            zeroed <= sent + 256,
            "{zeroed} bytes zeroed for {sent} bytes of records"
        );
        let mut rest = Vec::new();
        let _ = c.reader().read_to_end(&mut rest);
    }
}
