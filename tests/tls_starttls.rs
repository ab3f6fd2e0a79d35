//! Mid-stream TLS: STARTTLS initiated by either side, ordering of writes
//! around `starttls`, STARTTLS command injection (CVE-2011-0411) in both
//! directions, and `stoptls` back to plaintext.

mod tls_support;

use crossbeam_channel::Receiver;
use netactor::framing::{Line, Raw};
use netactor::tls::TlsSetup;
use netactor::{ConnectOptions, Ctx, Event, ListenOptions, Options};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tls_support::*;

/// What the line server saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Line(String),
    Established,
    Stopped,
    Error(String, bool),
    Closed,
}

/// A small line protocol in handler mode: `STARTTLS` → `220 go` then TLS,
/// `STOPTLS` → `200 stopping` then stoptls, `NOOP` → `250 ok`, anything else
/// is echoed as `echo: <line>`. `autocork` keeps the `220` queued (not yet
/// written) when `starttls` runs. `tls_now`: TLS from the first byte.
/// Returns the listener and what its connections see. The server's
/// certificate is from `pki`.
fn line_server(
    r: &netactor::Reactor,
    pki: &Pki,
    opts: Options,
) -> (netactor::Listener, Receiver<Seen>) {
    line_server_tls(r, pki, opts, false)
}

fn line_server_tls(
    r: &netactor::Reactor,
    pki: &Pki,
    opts: Options,
    tls_now: bool,
) -> (netactor::Listener, Receiver<Seen>) {
    let cfg = pki.server().server_config();
    let (seen, seen_rx) = crossbeam_channel::unbounded();
    let mut lo = ListenOptions::new().options(opts);
    if tls_now {
        lo = lo.tls(cfg.clone());
    }
    let l = r
        .listen_with(any_port(), lo, move |ctx| {
            ctx.set_streaming(Some(Line::new()));
            let cfg = cfg.clone();
            let seen = seen.clone();
            move |ctx: &mut Ctx<'_>, ev: Event| match ev {
                Event::Read(f) => {
                    let line = String::from_utf8_lossy(f.bytes().unwrap()).into_owned();
                    let _ = seen.send(Seen::Line(line.clone()));
                    match line.as_str() {
                        "STARTTLS" => {
                            ctx.write(&b"220 go\r\n"[..]).unwrap();
                            ctx.starttls(TlsSetup::server(cfg.clone()));
                        }
                        "STOPTLS" => {
                            ctx.write(&b"200 stopping\r\n"[..]).unwrap();
                            ctx.stoptls();
                        }
                        // STARTTLS without a reply: the client may pipeline its handshake.
                        "QSTARTTLS" => ctx.starttls(TlsSetup::server(cfg.clone())),
                        "NOOP" => ctx.write(&b"250 ok\r\n"[..]).unwrap(),
                        other => ctx.write(format!("echo: {other}\r\n")).unwrap(),
                    }
                }
                Event::TlsEstablished => {
                    let _ = seen.send(Seen::Established);
                }
                Event::TlsStopped => {
                    let _ = seen.send(Seen::Stopped);
                }
                Event::Error { error, fatal } => {
                    let _ = seen.send(Seen::Error(error.to_string(), fatal));
                }
                Event::Eof => ctx.close(),
                Event::Closed => {
                    let _ = seen.send(Seen::Closed);
                }
                _ => {}
            }
        })
        .unwrap();
    (l, seen_rx)
}

fn seen_until_closed(rx: &Receiver<Seen>) -> Vec<Seen> {
    let mut v = Vec::new();
    loop {
        match rx.recv_timeout(WAIT) {
            Ok(Seen::Closed) => {
                v.push(Seen::Closed);
                return v;
            }
            Ok(s) => v.push(s),
            Err(_) => panic!("server connection did not close; saw {v:?}"),
        }
    }
}

fn std_client(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

/// Reads the next line on `conn` and checks it is `want`.
fn expect_line(conn: &netactor::Connection, want: &[u8]) {
    let line = conn.push_read(Line::new()).unwrap();
    assert_eq!(&line.recv_timeout(WAIT).unwrap().line[..], want);
}

/// The client's STARTTLS: the command, the server's `220 go`, then TLS
/// (verifying the server as `localhost`).
fn client_starttls(conn: &netactor::Connection, pki: &Pki) {
    conn.write(&b"STARTTLS\r\n"[..]).unwrap();
    expect_line(conn, b"220 go");
    conn.starttls(TlsSetup::client_for(pki.client_config(), "localhost").unwrap())
        .unwrap();
}

#[test]
fn server_side_starttls_with_an_independent_rustls_client() {
    let pki = Pki::new();
    let r = reactor(2);
    // autocork: the 220 is still queued when starttls runs; it must go out
    // in clear, before the server's first TLS record.
    let (l, srx) = line_server(&r, &pki, Options::new().autocork(true));
    let mut s = std_client(l.local_addr());
    s.write_all(b"HELLO\r\n").unwrap();
    assert_eq!(read_line(&mut s), "echo: HELLO\r\n");
    s.write_all(b"STARTTLS\r\n").unwrap();
    assert_eq!(read_line(&mut s), "220 go\r\n");
    let mut tls = rustls_stream(&pki, s);
    tls.write_all(b"SECRET\r\n").unwrap();
    assert_eq!(read_line(&mut tls), "echo: SECRET\r\n");
    tls.conn.send_close_notify();
    tls.flush().unwrap();
    let seen = seen_until_closed(&srx);
    assert_eq!(
        seen,
        vec![
            Seen::Line("HELLO".into()),
            Seen::Line("STARTTLS".into()),
            Seen::Established,
            Seen::Line("SECRET".into()),
            Seen::Closed
        ]
    );
}

#[test]
fn client_side_starttls_between_two_netactor_ends() {
    let pki = Pki::new();
    let r = reactor(2);
    let (l, srx) = line_server(&r, &pki, Options::new());
    let (tx, rx) = netactor::event_channel(64);
    let conn = r
        .connect(l.local_addr(), ConnectOptions::new(), tx)
        .unwrap();
    client_starttls(&conn, &pki);
    // Queued after starttls: encrypted, sent once the server is verified.
    conn.write(&b"SECRET\r\n"[..]).unwrap();
    expect_line(&conn, b"echo: SECRET");
    let (_, skipped) = wait_event(&rx, |e| matches!(e, Event::TlsEstablished));
    assert!(
        skipped.iter().all(|e| matches!(e, Event::Connected { .. })),
        "{skipped:?}"
    );
    let is_tls = crossbeam_channel::bounded(1);
    let t = is_tls.0.clone();
    conn.call(move |ctx| {
        let _ = t.send((ctx.is_tls(), ctx.tls_protocol_version()));
    })
    .unwrap();
    let (tls, ver) = is_tls.1.recv_timeout(WAIT).unwrap();
    assert!(tls);
    assert_eq!(ver, Some(netactor::tls::ProtocolVersion::TLSv1_3));
    conn.close().unwrap();
    let seen = seen_until_closed(&srx);
    assert_eq!(
        &seen[..4],
        &[
            Seen::Line("STARTTLS".into()),
            Seen::Established,
            Seen::Line("SECRET".into()),
            Seen::Closed
        ],
        "{seen:?}"
    );
}

#[test]
fn writes_before_starttls_are_clear_and_precede_the_client_hello() {
    // The client pipelines its command and the handshake (the QSTARTTLS
    // variant has no reply): the command was queued first, so it must reach
    // the server in clear before the ClientHello; AFTER is encrypted.
    let pki = Pki::new();
    let r = reactor(2);
    let (l, srx) = line_server(&r, &pki, Options::new());
    let (tx, _rx) = netactor::event_channel(64);
    let conn = r
        .connect(
            l.local_addr(),
            ConnectOptions::new().options(Options::new().autocork(true)),
            tx,
        )
        .unwrap();
    conn.write(&b"QSTARTTLS\r\n"[..]).unwrap();
    conn.starttls(TlsSetup::client_for(pki.client_config(), "localhost").unwrap())
        .unwrap();
    conn.write(&b"AFTER\r\n"[..]).unwrap();
    expect_line(&conn, b"echo: AFTER");
    conn.close().unwrap();
    let seen = seen_until_closed(&srx);
    assert_eq!(
        seen,
        vec![
            Seen::Line("QSTARTTLS".into()),
            Seen::Established,
            Seen::Line("AFTER".into()),
            Seen::Closed
        ]
    );
}

#[test]
fn pipelined_command_after_starttls_is_never_executed() {
    let pki = Pki::new();
    let r = reactor(2);
    let (l, srx) = line_server(&r, &pki, Options::new());
    let mut s = std_client(l.local_addr());
    s.write_all(b"STARTTLS\r\nNOOP\r\n").unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("220 go\r\n"), "{text:?}");
    assert!(!text.contains("250"), "NOOP was answered: {text:?}");
    let seen = seen_until_closed(&srx);
    assert!(
        !seen.contains(&Seen::Line("NOOP".into())),
        "NOOP executed: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| matches!(s, Seen::Error(m, true) if m.contains("TLS"))),
        "{seen:?}"
    );
    assert!(!seen.contains(&Seen::Established));
}

#[test]
fn injected_bytes_after_the_servers_220_fail_the_clients_handshake() {
    // The mirror image: a hostile server appends a fake reply to its 220;
    // the client's starttls must feed it to TLS, never deliver it.
    let pki = Pki::new();
    let r = reactor(2);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        assert_eq!(read_line(&mut s), "STARTTLS\r\n");
        s.write_all(b"220 go\r\n250 injected\r\n").unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        rest
    });
    let (tx, rx) = netactor::event_channel(64);
    let conn = r.connect(addr, ConnectOptions::new(), tx).unwrap();
    client_starttls(&conn, &pki);
    // May already fail with Closed: the handshake fails on the buffered bytes.
    let _ = conn.write(&b"SECRET\r\n"[..]);
    let next = conn.push_read(Line::new());
    let evs = until_closed(&rx);
    assert!(
        matches!(fatal_error(&evs), Some(netactor::Error::Tls(_))),
        "{evs:?}"
    );
    if let Ok(next) = next {
        assert!(matches!(
            next.recv_timeout(WAIT),
            Err(netactor::ReplyTimeoutError::Failed(_))
        ));
    }
    let rest = server.join().unwrap();
    assert!(
        !rest.windows(6).any(|w| w == b"SECRET"),
        "application data sent after a failed handshake"
    );
}

#[test]
fn stoptls_returns_both_netactor_ends_to_plaintext() {
    let pki = Pki::new();
    let r = reactor(2);
    let (l, srx) = line_server_tls(&r, &pki, Options::new().follow_stoptls(true), true);
    let (tx, rx) = netactor::event_channel(64);
    let conn = tls_connect(&r, &pki, l.local_addr(), tx);
    conn.write(&b"ONE\r\n"[..]).unwrap();
    expect_line(&conn, b"echo: ONE");
    // Written while TLS is on: encrypted. Then stoptls. Then a plaintext write.
    conn.write(&b"TWO\r\n"[..]).unwrap();
    conn.stoptls().unwrap();
    conn.write(&b"THREE\r\n"[..]).unwrap();
    let two = conn.push_read(Line::new()).unwrap();
    let three = conn.push_read(Line::new()).unwrap();
    assert_eq!(&two.recv_timeout(WAIT).unwrap().line[..], b"echo: TWO");
    assert_eq!(&three.recv_timeout(WAIT).unwrap().line[..], b"echo: THREE");
    let (_, skipped) = wait_event(&rx, |e| matches!(e, Event::TlsStopped));
    assert!(
        !skipped.iter().any(|e| matches!(e, Event::Error { .. })),
        "{skipped:?}"
    );
    let (t, is_tls) = crossbeam_channel::bounded(1);
    conn.call(move |ctx| {
        let _ = t.send(ctx.is_tls());
    })
    .unwrap();
    assert!(!is_tls.recv_timeout(WAIT).unwrap());
    // Plaintext both ways now; a later STARTTLS works again.
    client_starttls(&conn, &pki);
    conn.write(&b"FOUR\r\n"[..]).unwrap();
    expect_line(&conn, b"echo: FOUR");
    conn.close().unwrap();
    let seen = seen_until_closed(&srx);
    // The server's answering close_notify may meet the client's closed
    // socket (RST) before the EOF: an error may precede `Closed`.
    let seen: Vec<Seen> = seen
        .into_iter()
        .filter(|s| !matches!(s, Seen::Error(m, true) if m.contains("reset")))
        .collect();
    assert_eq!(
        seen,
        vec![
            Seen::Established,
            Seen::Line("ONE".into()),
            Seen::Line("TWO".into()),
            Seen::Stopped,
            Seen::Line("THREE".into()),
            Seen::Line("STARTTLS".into()),
            Seen::Established,
            Seen::Line("FOUR".into()),
            // With follow_stoptls the client's close_notify reads as a
            // stoptls; the TCP EOF then closes.
            Seen::Stopped,
            Seen::Closed
        ]
    );
}

/// Reads from `sock`, feeding `conn` one complete TLS record at a time, until
/// the peer's close_notify. Returns the plaintext before it and the raw
/// bytes after it.
fn read_records_until_close_notify(
    conn: &mut rustls::ClientConnection,
    sock: &mut TcpStream,
) -> (Vec<u8>, Vec<u8>) {
    let mut raw = Vec::new();
    let mut plain = Vec::new();
    loop {
        while raw.len() >= 5 {
            let n = 5 + u16::from_be_bytes([raw[3], raw[4]]) as usize;
            if raw.len() < n {
                break;
            }
            let mut rec = &raw[..n];
            while !rec.is_empty() {
                conn.read_tls(&mut rec).unwrap();
            }
            let st = conn.process_new_packets().unwrap();
            let mut buf = vec![0u8; st.plaintext_bytes_to_read()];
            conn.reader().read_exact(&mut buf).unwrap();
            plain.extend_from_slice(&buf);
            raw.drain(..n);
            if st.peer_has_closed() {
                return (plain, raw);
            }
        }
        let mut b = [0u8; 4096];
        let n = sock.read(&mut b).unwrap();
        assert!(n > 0, "EOF before close_notify");
        raw.extend_from_slice(&b[..n]);
    }
}

#[test]
fn bytes_behind_the_peers_close_notify_are_kept_as_plaintext() {
    // A hand-driven rustls client sends data, close_notify and plaintext in
    // ONE write; the server (follow_stoptls) must deliver all three parts.
    let pki = Pki::new();
    let r = reactor(2);
    let (l, srx) = line_server_tls(&r, &pki, Options::new().follow_stoptls(true), true);
    let mut tls = rustls_client(&pki, l.local_addr());
    tls.write_all(b"ONE\r\n").unwrap();
    assert_eq!(read_line(&mut tls), "echo: ONE\r\n");
    let mut wire = Vec::new();
    tls.conn.writer().write_all(b"TWO\r\n").unwrap();
    tls.conn.send_close_notify();
    while tls.conn.wants_write() {
        tls.conn.write_tls(&mut wire).unwrap();
    }
    wire.extend_from_slice(b"PLAIN\r\n");
    tls.sock.write_all(&wire).unwrap();
    // The server answers TWO under TLS, then its close_notify, then the
    // plaintext echo of PLAIN — likely in one segment, so this client also
    // feeds rustls whole records only (stock rustls drops what follows a
    // close_notify).
    let (before, mut after) = read_records_until_close_notify(&mut tls.conn, &mut tls.sock);
    assert_eq!(before, b"echo: TWO\r\n");
    while !after.ends_with(b"\r\n") {
        let mut b = [0u8; 64];
        let n = tls.sock.read(&mut b).unwrap();
        assert!(n > 0, "EOF after {after:?}");
        after.extend_from_slice(&b[..n]);
    }
    assert_eq!(after, b"echo: PLAIN\r\n");
    tls.sock.shutdown(std::net::Shutdown::Both).unwrap();
    let seen = seen_until_closed(&srx);
    assert_eq!(
        &seen[..5],
        &[
            Seen::Established,
            Seen::Line("ONE".into()),
            Seen::Line("TWO".into()),
            Seen::Stopped,
            Seen::Line("PLAIN".into())
        ],
        "{seen:?}"
    );
}

#[test]
fn close_notify_without_follow_stoptls_is_a_clean_eof() {
    let pki = Pki::new();
    let r = reactor(2);
    let l = tls_listener(&r, &pki, Options::new());
    let mut tls = rustls_client(&pki, l.local_addr());
    tls.write_all(b"data").unwrap();
    tls.conn.send_close_notify();
    tls.flush().unwrap();
    tls.sock.write_all(b"ignored plaintext").unwrap();
    let server = l.accept_timeout(WAIT).unwrap();
    server.set_streaming(Some(Raw)).unwrap();
    let mut data = Vec::new();
    loop {
        match next_event(l.events()) {
            Event::Read(f) => data.extend_from_slice(f.bytes().unwrap()),
            Event::Eof => break,
            Event::TlsEstablished => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(data, b"data");
    // Still open for writing (TLS 1.3 half-close): the reply arrives.
    server.write(&b"bye"[..]).unwrap();
    server.shutdown().unwrap();
    let mut reply = Vec::new();
    tls.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"bye");
    let _ = Duration::ZERO;
}
