//! The TLS engine against peers that misbehave or stall: a hello dribbled
//! one byte per read, handshake messages that never end, renegotiation,
//! keys that run out while writing. Real sockets on loopback; the peers
//! are rustls with raw bytes around it.

mod tls_support;

use netactor::framing::Chunk;
use netactor::tls::rustls;
use netactor::{Error, Event, ListenOptions, Options, TlsError};
use rustls::crypto::cipher::{
    InboundOpaqueMessage, MessageDecrypter, MessageEncrypter, OutboundChunks, OutboundPlainMessage,
};
use rustls::crypto::{CipherSuiteCommon, CryptoProvider};
use rustls::pki_types::ServerName;
use rustls::{
    ConnectionTrafficSecrets, ContentType, ProtocolVersion, SupportedCipherSuite, Tls12CipherSuite,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls_support::*;

/// The compiled-in provider with only its TLS 1.2 suites, each allowed to
/// encrypt at most `limit` records with one key (rustls's
/// `confidentiality_limit`: ~2^24 for AES-GCM), so a test can reach it.
fn tls12_provider(limit: Option<u64>) -> Arc<CryptoProvider> {
    let mut p = (*netactor::tls::crypto_provider().unwrap()).clone();
    p.cipher_suites = p
        .cipher_suites
        .iter()
        .filter_map(|s| match s {
            SupportedCipherSuite::Tls12(s) => Some(match limit {
                None => SupportedCipherSuite::Tls12(s),
                Some(limit) => SupportedCipherSuite::Tls12(Box::leak(Box::new(Tls12CipherSuite {
                    common: CipherSuiteCommon {
                        suite: s.common.suite,
                        hash_provider: s.common.hash_provider,
                        confidentiality_limit: limit,
                    },
                    prf_provider: s.prf_provider,
                    kx: s.kx,
                    sign: s.sign,
                    aead_alg: s.aead_alg,
                }))),
            }),
            SupportedCipherSuite::Tls13(_) => None,
        })
        .collect();
    assert!(!p.cipher_suites.is_empty(), "no TLS 1.2 suite compiled in");
    Arc::new(p)
}

/// A TLS 1.2-only server configuration.
fn tls12_server_config(cert: &Cert, limit: Option<u64>) -> Arc<rustls::ServerConfig> {
    tls12_server_config_with(cert, tls12_provider(limit))
}

fn tls12_server_config_with(
    cert: &Cert,
    provider: Arc<CryptoProvider>,
) -> Arc<rustls::ServerConfig> {
    let chain = netactor::tls::certs_from_pem(cert.cert_pem.as_bytes()).unwrap();
    let key = netactor::tls::key_from_pem(cert.key_pem.as_bytes()).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

// ---------------------------------------------------------------------------
// A ClientHello dribbled one byte per read.

#[test]
fn a_client_hello_dribbled_one_byte_per_read_completes_and_reports_sni() {
    let pki = Pki::new();
    let r = reactor(1);
    // A round trip per byte of a hello of ~1.5 KiB: far from the default
    // 10 s handshake timeout, unless the machine is very busy.
    let l = tls_listener(
        &r,
        &pki,
        Options::new().handshake_timeout(Duration::from_secs(300)),
    );
    let mut sock = TcpStream::connect(l.local_addr()).unwrap();
    sock.set_nodelay(true).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let conn = l.accept_timeout(WAIT).unwrap();
    let mut c = rustls_session(&pki);
    let mut hello = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut hello).unwrap();
    }
    assert!(hello.len() > 100, "hello of {} bytes", hello.len());
    // One byte per write, each read by the server before the next is sent:
    // the server sees the hello one byte per read.
    for (i, b) in hello.iter().enumerate() {
        sock.write_all(&[*b]).unwrap();
        wait_until("the server's read of the byte", || {
            conn.stats().bytes_read > i as u64
        });
    }
    let reads = conn.stats().read_calls;
    assert!(
        reads >= hello.len() as u64,
        "{reads} reads for {} bytes",
        hello.len()
    );
    let mut tls = rustls::StreamOwned::new(c, sock);
    finish_handshake(&mut tls);
    wait_event(l.events(), |e| matches!(e, Event::TlsEstablished));
    let info = conn.tls_info().expect("TLS info once established");
    assert_eq!(info.server_name.as_deref(), Some("localhost"));
    // And the connection works.
    let got = conn.push_read(Chunk::new(4)).unwrap();
    tls.write_all(b"ping").unwrap();
    assert_eq!(&got.recv_timeout(WAIT).unwrap()[..], b"ping");
}

// ---------------------------------------------------------------------------
// Oversized handshake messages.

/// Writes `data` (ignoring a failure: the server may close first), then
/// reads until the server's side ends; returns what was read.
fn write_then_read_to_end(sock: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    let _ = sock.write_all(data);
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        match sock.read(&mut b) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("the server did not close the connection within {WAIT:?}")
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                panic!("the server did not close the connection within {WAIT:?}")
            }
            Err(_) => return got, // reset: closed all the same
        }
    }
}

#[test]
fn a_client_hello_claiming_more_than_64_kib_is_refused_at_once() {
    let pki = Pki::new();
    let r = reactor(1);
    let l = tls_listener(&r, &pki, Options::new());
    let mut sock = TcpStream::connect(l.local_addr()).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let conn = l.accept_timeout(WAIT).unwrap();
    // A handshake record whose ClientHello claims 16 MiB - 1 bytes; the
    // body that follows is never complete.
    let mut data = vec![22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff];
    data.extend_from_slice(&[22, 3, 1, 0x40, 0]);
    data.extend_from_slice(&[0u8; 0x4000]);
    let got = write_then_read_to_end(&mut sock, &data);
    let evs = until_closed(l.events());
    match fatal_error(&evs) {
        Some(Error::Tls(TlsError::Rustls(rustls::Error::InvalidMessage(m)))) => {
            eprintln!("refused with InvalidMessage({m:?})");
        }
        other => panic!("{other:?} in {evs:?}"),
    }
    // Closed (rustls queues no alert for an oversized handshake message:
    // its length check bypasses its alerting). At most an alert came.
    assert!(got.is_empty() || got[0] == 21, "{got:?}");
    assert!(conn.stats().bytes_read <= data.len() as u64);
}

#[test]
fn an_endless_run_of_handshake_fragments_is_refused_with_bounded_buffering() {
    let pki = Pki::new();
    let r = reactor(1);
    let l = tls_listener(&r, &pki, Options::new());
    let mut sock = TcpStream::connect(l.local_addr()).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    sock.set_write_timeout(Some(WAIT)).unwrap();
    let conn = l.accept_timeout(WAIT).unwrap();
    // A ClientHello claiming 64 KiB - 1 bytes (the most rustls takes), sent
    // one byte per record: six bytes a byte, so the message is joined from
    // 393 KiB of records, far more than it is. The server must give up on
    // it before then, not buffer them all.
    const CLAIMED: usize = 0xffff;
    let msg_header = [1u8, 0, 0xff, 0xff];
    let body = std::iter::repeat_n(0u8, CLAIMED);
    let mut data = Vec::with_capacity((CLAIMED + 4) * 6);
    for b in msg_header.into_iter().chain(body) {
        data.extend_from_slice(&[22, 3, 1, 0, 1, b]);
    }
    let sent_all = data.len() as u64;
    let writer = std::thread::spawn(move || {
        let got = write_then_read_to_end(&mut sock, &data);
        (got, sock)
    });
    let evs = until_closed(l.events());
    let read = conn.stats().bytes_read;
    match fatal_error(&evs) {
        Some(Error::Tls(TlsError::Rustls(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::MessageTooLarge,
        )))) => {}
        other => panic!("{other:?} in {evs:?}"),
    }
    // Refused once more than ~114 KiB of unprocessed records were held
    // (at most one read, 128 KiB, more were read): well before the message
    // could have been complete.
    assert!(
        read < 256 << 10,
        "read {read} of {sent_all} bytes before refusing"
    );
    // The client's writes and reads ended: the connection is closed.
    let (got, _sock) = writer.join().unwrap();
    assert!(got.is_empty() || got[0] == 21, "{got:?}");
}

// ---------------------------------------------------------------------------
// TLS 1.2 renegotiation.

/// The record layer of an established TLS 1.2 client, taken over from
/// rustls (its secrets extracted) so the test can send what rustls never
/// would: a second ClientHello.
struct RawTls12 {
    sock: TcpStream,
    enc: Box<dyn MessageEncrypter>,
    dec: Box<dyn MessageDecrypter>,
    tx_seq: u64,
    rx_seq: u64,
}

impl RawTls12 {
    fn connect(pki: &Pki, addr: std::net::SocketAddr) -> RawTls12 {
        let mut cfg = (*pki.client_config()).clone();
        cfg.enable_secret_extraction = true;
        let c = rustls::ClientConnection::new(
            Arc::new(cfg),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let mut tls = rustls::StreamOwned::new(c, sock);
        finish_handshake(&mut tls);
        let suite = tls.conn.negotiated_cipher_suite();
        let rustls::StreamOwned { conn, sock } = tls;
        Self::take_over(sock, suite, conn.dangerous_extract_secrets().unwrap())
    }

    /// The server side: accepts one connection on `listener` and completes
    /// a TLS 1.2 handshake with `cfg`.
    fn accept(listener: &std::net::TcpListener, cfg: &rustls::ServerConfig) -> RawTls12 {
        let mut cfg = cfg.clone();
        cfg.enable_secret_extraction = true;
        let (sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let c = rustls::ServerConnection::new(Arc::new(cfg)).unwrap();
        let mut tls = rustls::StreamOwned::new(c, sock);
        finish_handshake(&mut tls);
        let suite = tls.conn.negotiated_cipher_suite();
        let rustls::StreamOwned { conn, sock } = tls;
        Self::take_over(sock, suite, conn.dangerous_extract_secrets().unwrap())
    }

    fn take_over(
        sock: TcpStream,
        suite: Option<SupportedCipherSuite>,
        secrets: rustls::ExtractedSecrets,
    ) -> RawTls12 {
        let Some(SupportedCipherSuite::Tls12(suite)) = suite else {
            panic!("not TLS 1.2")
        };
        let aead = suite.aead_alg;
        let fixed = aead.key_block_shape().fixed_iv_len;
        let keys = |s: ConnectionTrafficSecrets| match s {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv }
            | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
            | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (key, iv),
            _ => panic!("an unexpected AEAD"),
        };
        let (tx_seq, tx) = secrets.tx;
        let (rx_seq, rx) = secrets.rx;
        let (tx_key, tx_iv) = keys(tx);
        let (rx_key, rx_iv) = keys(rx);
        let tx_iv = tx_iv.as_ref().to_vec();
        let rx_iv = rx_iv.as_ref().to_vec();
        RawTls12 {
            sock,
            enc: aead.encrypter(tx_key, &tx_iv[..fixed], &tx_iv[fixed..]),
            dec: aead.decrypter(rx_key, &rx_iv[..fixed]),
            tx_seq,
            rx_seq,
        }
    }

    fn send(&mut self, typ: ContentType, payload: &[u8]) {
        let rec = self
            .enc
            .encrypt(
                OutboundPlainMessage {
                    typ,
                    version: ProtocolVersion::TLSv1_2,
                    payload: OutboundChunks::Single(payload),
                },
                self.tx_seq,
            )
            .unwrap()
            .encode();
        self.tx_seq += 1;
        self.sock.write_all(&rec).unwrap();
    }

    /// The next record, decrypted; `None` at EOF (or a reset).
    fn recv(&mut self) -> Option<(ContentType, Vec<u8>)> {
        let mut hdr = [0u8; 5];
        match self.sock.read_exact(&mut hdr) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("reading a record: {e}"),
        }
        let len = u16::from_be_bytes([hdr[3], hdr[4]]) as usize;
        let mut body = vec![0u8; len];
        self.sock.read_exact(&mut body).unwrap();
        let typ = ContentType::from(hdr[0]);
        let msg = InboundOpaqueMessage::new(typ, ProtocolVersion::TLSv1_2, &mut body);
        let plain = self.dec.decrypt(msg, self.rx_seq).unwrap();
        self.rx_seq += 1;
        Some((plain.typ, plain.payload.to_vec()))
    }
}

/// A TLS 1.2 server configuration with ChaCha20-Poly1305 only: with
/// aws-lc-rs, a TLS 1.2 AES-GCM key taken over by `RawTls12` refused to
/// seal (its TLS 1.2 mode checks the nonces).
fn tls12_chacha_server_config(pki: &Pki) -> Arc<rustls::ServerConfig> {
    let mut provider = (*tls12_provider(None)).clone();
    provider
        .cipher_suites
        .retain(|s| format!("{:?}", s.suite()).contains("CHACHA20"));
    tls12_server_config_with(&pki.server(), Arc::new(provider))
}

/// A fresh ClientHello handshake message (no record header).
fn client_hello(pki: &Pki) -> Vec<u8> {
    let mut c = rustls_session(pki);
    let mut rec = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut rec).unwrap();
    }
    assert_eq!(rec[0], 22);
    let len = u16::from_be_bytes([rec[3], rec[4]]) as usize;
    assert_eq!(rec.len(), 5 + len, "the hello is one record");
    rec[5..].to_vec()
}

/// A renegotiation request (`message`, a handshake message) is answered
/// with a warning no_renegotiation alert, and data still flows both ways
/// afterwards. (A pending read, so the netactor side reads.)
fn refused_with_a_warning(raw: &mut RawTls12, conn: &netactor::Connection, message: &[u8]) {
    let got = conn.push_read(Chunk::new(5)).unwrap();
    raw.send(ContentType::Handshake, message);
    let (typ, alert) = raw.recv().expect("an answer to the renegotiation");
    assert_eq!(typ, ContentType::Alert);
    assert_eq!(alert, [1, 100], "warning no_renegotiation");
    raw.send(ContentType::ApplicationData, b"still");
    assert_eq!(&got.recv_timeout(WAIT).unwrap()[..], b"still");
    conn.write(&b"here"[..]).unwrap();
    assert_eq!(
        raw.recv(),
        Some((ContentType::ApplicationData, b"here".to_vec()))
    );
}

/// The second renegotiation (`message` again): rustls gives up on the peer
/// with a typed error that ends the connection (its events on `events`,
/// returned) and fails a pending read.
fn refused_for_good(
    raw: &mut RawTls12,
    conn: &netactor::Connection,
    message: &[u8],
    events: &crossbeam_channel::Receiver<(netactor::ConnId, Event)>,
) -> Vec<Event> {
    let never = conn.push_read(Chunk::new(1)).unwrap();
    raw.send(ContentType::Handshake, message);
    let evs = until_closed(events);
    match fatal_error(&evs) {
        Some(Error::Tls(TlsError::Rustls(rustls::Error::PeerMisbehaved(
            rustls::PeerMisbehaved::TooManyRenegotiationRequests,
        )))) => {}
        other => panic!("{other:?} in {evs:?}"),
    }
    assert!(matches!(
        never.recv_timeout(WAIT),
        Err(netactor::ReplyTimeoutError::Failed(Error::Tls(_)))
    ));
    evs
}

#[test]
fn tls12_renegotiation_is_refused_with_a_warning_then_a_typed_error() {
    let pki = Pki::new();
    let r = reactor(1);
    let l = r
        .listen(
            any_port(),
            ListenOptions::new().tls(tls12_chacha_server_config(&pki)),
        )
        .unwrap();
    let mut raw = RawTls12::connect(&pki, l.local_addr());
    let conn = l.accept_timeout(WAIT).unwrap();
    wait_event(l.events(), |e| matches!(e, Event::TlsEstablished));
    let hello = client_hello(&pki);

    // First attempt: rustls answers with a warning no_renegotiation alert
    // and the connection goes on.
    refused_with_a_warning(&mut raw, &conn, &hello);

    // Second attempt: rustls gives up on the peer.
    let evs = refused_for_good(&mut raw, &conn, &hello, l.events());
    assert!(
        !evs.iter().any(|e| matches!(
            e,
            Event::Error {
                error: Error::Panicked(_),
                ..
            }
        )),
        "{evs:?}"
    );
    // The server closed its side (after an alert, if rustls sent one).
    while let Some((typ, _)) = raw.recv() {
        assert_eq!(typ, ContentType::Alert);
    }
    // The reactor still serves.
    let mut tls = rustls_stream(&pki, TcpStream::connect(l.local_addr()).unwrap());
    tls.sock.set_read_timeout(Some(WAIT)).unwrap();
    let c2 = l.accept_timeout(WAIT).unwrap();
    let got = c2.push_read(Chunk::new(2)).unwrap();
    tls.write_all(b"ok").unwrap();
    assert_eq!(&got.recv_timeout(WAIT).unwrap()[..], b"ok");
}

// ---------------------------------------------------------------------------
// Keys exhausted on the write path.

#[test]
fn keys_exhausted_while_writing_send_rustls_close_notify_and_report_encrypt_exhausted() {
    let pki = Pki::new();
    let r = reactor(1);
    // At most 6 records under one key: the server's Finished is the
    // first; 64 KiB of data makes four more; the next 64 KiB cannot go.
    let l = r
        .listen(
            any_port(),
            ListenOptions::new().tls(tls12_server_config(&pki.server(), Some(6))),
        )
        .unwrap();
    let sock = TcpStream::connect(l.local_addr()).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut tls = rustls_stream(&pki, sock);
    finish_handshake(&mut tls);
    let conn = l.accept_timeout(WAIT).unwrap();
    wait_event(l.events(), |e| matches!(e, Event::TlsEstablished));
    let data = random_bytes(256 << 10, 7);
    // The client reads all along (the test does not depend on how much
    // the kernel's buffers hold).
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let end = tls.read_to_end(&mut got);
        (end, got)
    });
    conn.write(data.clone()).unwrap();
    let evs = until_closed(l.events());
    match fatal_error(&evs) {
        Some(e @ Error::Tls(TlsError::EncryptExhausted)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
            assert!(e.to_string().contains("keys are exhausted"), "{e}");
        }
        other => panic!("{other:?} in {evs:?}"),
    }
    // What was encrypted before arrives, then rustls's close_notify: a
    // clean end, not a truncation.
    let (end, got) = reader.join().unwrap();
    assert!(
        end.is_ok(),
        "the client saw no close_notify: {end:?} after {} bytes",
        got.len()
    );
    assert!(!got.is_empty() && got.len() < data.len(), "{}", got.len());
    assert_eq!(got[..], data[..got.len()]);
}

#[test]
fn a_tls12_hello_request_to_a_client_is_refused_with_a_warning_then_a_typed_error() {
    let pki = Pki::new();
    let cfg = tls12_chacha_server_config(&pki);
    let listener = std::net::TcpListener::bind(any_port()).unwrap();
    let addr = listener.local_addr().unwrap();
    let r = reactor(1);
    let (tx, rx) = netactor::event_channel(16);
    let conn = r
        .connect(
            addr,
            netactor::ConnectOptions::new().tls(
                pki.client_config(),
                Some(ServerName::try_from("localhost").unwrap()),
            ),
            tx,
        )
        .unwrap();
    let mut raw = RawTls12::accept(&listener, &cfg);
    wait_event(&rx, |e| matches!(e, Event::TlsEstablished));
    const HELLO_REQUEST: [u8; 4] = [0, 0, 0, 0];

    // First: a warning no_renegotiation alert, and the connection goes on.
    refused_with_a_warning(&mut raw, &conn, &HELLO_REQUEST);

    // Second: a typed error ends the connection.
    refused_for_good(&mut raw, &conn, &HELLO_REQUEST, &rx);
    while let Some((typ, _)) = raw.recv() {
        assert_eq!(typ, ContentType::Alert);
    }
}
