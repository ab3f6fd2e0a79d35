//! Connection churn: `slots` connections at a time per server, each one
//! connect → send one message → read its echo back (every byte checked) →
//! close, over and over. What it measures is what a server pays to accept,
//! set up, tear down and close a connection; the one echo proves the
//! connection worked.
//!
//! Lean on the client side, so the server is the bottleneck: a connection
//! costs the load generator `socket`, `connect`, one `epoll_ctl`, the
//! `write` (tried at once: on loopback the handshake is usually done when
//! `connect` returns), the `read`s its readable edges bring, and `close`
//! — no reads on a write-only edge, no socket options. The client closes
//! first with an orderly FIN (as real clients do), so its side keeps the
//! `TIME_WAIT`; Linux reuses those ports for new loopback connects
//! (`net.ipv4.tcp_tw_reuse` = 2, the default). TLS: a full TLS 1.3
//! handshake on every connection (resumption off), the message written
//! into rustls at once (it goes out with the client's Finished), and
//! `close_notify` before the FIN. The client trusts the one certificate
//! the driver made by comparing its bytes and skips checking the server's
//! handshake signature: the server still makes it, and checking it would
//! only cost the load generator CPU the server needs.

use super::{
    flush_tls, other, pattern, thread_poll, tls_read, Measured, Shared, TlsRead, Window, ALL, WAKE,
};
use crate::server::Server;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A churn load.
#[derive(Clone)]
pub struct Churn {
    /// Connections open at once per server.
    pub slots: usize,
    /// Bytes echoed per connection.
    pub size: usize,
    /// TLS client configuration (see [`client_config`]).
    pub tls: Option<Arc<ClientConfig>>,
}

/// Accepts exactly the certificate `0` (its DER bytes) and does not check
/// handshake signatures (see the module comment for why).
#[derive(Debug)]
struct Pinned(CertificateDer<'static>, Vec<SignatureScheme>);

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.0.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the pinned certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.1.clone()
    }
}

/// The churn client's TLS configuration: TLS 1.3 only, aws-lc-rs (as every
/// server), no session resumption (a full handshake every time), trusting
/// only `cert` (PEM).
pub fn client_config(cert_pem: &[u8]) -> Result<Arc<ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let cert = CertificateDer::from_pem_slice(cert_pem).map_err(|e| format!("PEM: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned(cert, schemes)))
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// One slot: at most one connection at a time.
struct Slot {
    server: usize,
    stream: Option<TcpStream>,
    tls: Option<Box<ClientConnection>>,
    /// Plaintext bytes written and echoed on the current connection.
    sent: usize,
    got: usize,
}

/// Per-thread state.
struct Gen<'a> {
    pat: &'a [u8],
    scratch: Vec<u8>,
    tls: Option<&'a Arc<ClientConfig>>,
    name: ServerName<'static>,
}

impl Gen<'_> {
    /// Opens the slot's next connection and sends what can go at once.
    fn start(&self, slot: &mut Slot, addr: SocketAddr, poll: &Poll, tok: usize) -> io::Result<()> {
        let mut stream = TcpStream::connect(addr)?;
        poll.registry().register(
            &mut stream,
            Token(tok),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        slot.sent = 0;
        slot.got = 0;
        slot.tls = match self.tls {
            Some(cfg) => {
                let mut c = ClientConnection::new(cfg.clone(), self.name.clone())
                    .map_err(|e| other(format!("TLS: {e}")))?;
                // Buffered by rustls until the handshake is done.
                c.writer().write_all(self.pat)?;
                slot.sent = self.pat.len();
                Some(Box::new(c))
            }
            None => None,
        };
        slot.stream = Some(stream);
        self.send(slot)
    }

    /// Writes what is due (the message, or TLS records); `WouldBlock` waits
    /// for the writable edge.
    fn send(&self, slot: &mut Slot) -> io::Result<()> {
        let Some(stream) = slot.stream.as_ref() else {
            return Ok(());
        };
        if let Some(tls) = slot.tls.as_mut() {
            return flush_tls(tls, stream);
        }
        while slot.sent < self.pat.len() {
            match (&*stream).write(&self.pat[slot.sent..]) {
                Ok(n) => slot.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Checks `n` echoed bytes in the scratch buffer.
    fn account(&self, slot: &mut Slot, n: usize) -> io::Result<()> {
        let end = slot.got + n;
        if end > self.pat.len() {
            return Err(other("server echoed more bytes than were sent"));
        }
        if self.scratch[..n] != self.pat[slot.got..end] {
            return Err(other(format!(
                "echoed bytes differ from those sent (at offset {})",
                slot.got
            )));
        }
        slot.got = end;
        Ok(())
    }

    /// Readiness for the slot's connection; `Ok(true)` once its echo is
    /// complete (then it is closed).
    fn service(&mut self, slot: &mut Slot, readable: bool) -> io::Result<bool> {
        let Some(stream) = slot.stream.take() else {
            return Ok(false);
        };
        let r = self.service_stream(slot, &stream, readable);
        match r {
            Ok(true) => {
                if let Some(tls) = slot.tls.as_mut() {
                    tls.send_close_notify();
                    // Best effort: the FIN follows anyway.
                    let _ = tls.write_tls(&mut &stream);
                }
                slot.tls = None;
                drop(stream); // close: FIN, and out of the epoll set
            }
            Ok(false) => slot.stream = Some(stream),
            Err(_) => slot.tls = None,
        }
        r
    }

    fn service_stream(
        &mut self,
        slot: &mut Slot,
        stream: &TcpStream,
        readable: bool,
    ) -> io::Result<bool> {
        if slot.tls.is_none() {
            while slot.sent < self.pat.len() {
                match (&*stream).write(&self.pat[slot.sent..]) {
                    Ok(n) => slot.sent += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            // Edge-triggered: data brings a readable edge, so a write-only
            // edge needs no `read` (it would only say EAGAIN).
            if !readable {
                return Ok(false);
            }
            loop {
                match (&*stream).read(&mut self.scratch) {
                    Ok(0) => return Err(other("server closed the connection before the echo")),
                    Ok(n) => {
                        self.account(slot, n)?;
                        if slot.got == self.pat.len() {
                            return Ok(true);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let mut tls = slot.tls.take().expect("a TLS slot");
        let r = self.drive_tls(slot, &mut tls, stream, readable);
        slot.tls = Some(tls);
        r
    }

    fn drive_tls(
        &mut self,
        slot: &mut Slot,
        tls: &mut ClientConnection,
        stream: &TcpStream,
        readable: bool,
    ) -> io::Result<bool> {
        if readable {
            let mut batch = false;
            loop {
                match tls_read(tls, stream, &mut self.scratch, &mut batch)? {
                    TlsRead::Plain(n) => self.account(slot, n)?,
                    // Done once a whole batch of records completes the echo.
                    TlsRead::Consumed if slot.got == self.pat.len() => return Ok(true),
                    TlsRead::Consumed => {}
                    TlsRead::Drained => break,
                    TlsRead::Eof => {
                        return Err(other("server closed the connection before the echo"))
                    }
                    TlsRead::CloseNotify => return Err(other("server sent close_notify first")),
                }
            }
        }
        flush_tls(tls, stream)?;
        Ok(false)
    }
}

/// One load-generator thread: `n` slots per server.
fn churn_thread(
    addrs: &[SocketAddr],
    churn: &Churn,
    n: usize,
    shared: &Shared,
    counters: &[AtomicU64],
) -> io::Result<()> {
    let k = addrs.len();
    let mut poll = thread_poll(shared)?;
    let mut pat = pattern(churn.size, 1);
    pat.truncate(churn.size);
    let mut g = Gen {
        pat: &pat,
        // A server's handshake flight and tickets fit many times over.
        scratch: vec![0u8; 64 << 10],
        tls: churn.tls.as_ref(),
        name: ServerName::try_from("localhost").map_err(|e| other(e.to_string()))?,
    };
    // Token of slot i of server s: s * n + i.
    let mut slots: Vec<Slot> = (0..k * n)
        .map(|t| Slot {
            server: t / n.max(1),
            stream: None,
            tls: None,
            sent: 0,
            got: 0,
        })
        .collect();
    // Slots with no connection, per server: started while their server may run.
    let mut idle: Vec<Vec<usize>> = (0..k).map(|s| (s * n..(s + 1) * n).collect()).collect();
    let mut totals = vec![0u64; k];
    let mut events = Events::with_capacity(1024);
    while !shared.stop.load(Ordering::Relaxed) {
        let active = shared.active.load(Ordering::Acquire);
        for (s, list) in idle.iter_mut().enumerate() {
            if !(active == ALL || active == s) || shared.is_dead(s) {
                continue;
            }
            for i in list.drain(..) {
                if let Err(e) = g.start(&mut slots[i], addrs[s], &poll, i) {
                    shared.fail(s, format!("connect: {e}"));
                    break;
                }
            }
        }
        poll.poll(&mut events, Some(Duration::from_millis(20)))?;
        for ev in events.iter() {
            if ev.token() == WAKE {
                continue;
            }
            let i = ev.token().0;
            let Some(slot) = slots.get_mut(i) else {
                continue;
            };
            let s = slot.server;
            if shared.is_dead(s) {
                continue;
            }
            match g.service(
                slot,
                ev.is_readable() || ev.is_read_closed() || ev.is_error(),
            ) {
                Ok(true) => {
                    totals[s] += 1;
                    shared.ready[s].fetch_add(1, Ordering::Relaxed);
                    idle[s].push(i);
                }
                Ok(false) => {}
                Err(e) => shared.fail(s, format!("{e} (a churn connection)")),
            }
        }
        for (c, t) in counters.iter().zip(&totals) {
            c.store(*t, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Runs `churn` against every server at once, the load taking turns of
/// `turn` on each, like [`super::run_flows`]: a slot starts a new
/// connection only while its server's turn lasts (the connection it has
/// open finishes either way). A measurement counts completed connections
/// (echo verified, closed) as messages.
pub fn run_churn(
    servers: &[&Server],
    churn: &Churn,
    w: Window,
    threads: usize,
    turn: Duration,
) -> Vec<io::Result<Measured>> {
    // Ready once every server has completed a connection per slot.
    let run = |addrs: &[SocketAddr], n, _deadline, shared: &Shared, counter: &[AtomicU64]| {
        churn_thread(addrs, churn, n, shared, counter)
    };
    super::run_threads(servers, churn.slots, w, threads, turn, "churn", run)
}
