//! TLS data transfer: random binary payloads up to several MiB through a TLS
//! echo server, netactor on both ends, and the echo example with
//! `--cert/--key` against an independent rustls client.

mod tls_support;

use netactor::framing::{Chunk, Raw};
use netactor::{ConnectOptions, Ctx, Event, ListenOptions, Options};
use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;
use tls_support::*;

fn big_opts() -> Options {
    Options::new().rbuf_max(32 << 20).wbuf_max(32 << 20)
}

/// A TLS echo server in handler mode.
fn echo_server(r: &netactor::Reactor, cfg: Arc<rustls::ServerConfig>) -> netactor::Listener {
    r.listen_with(
        any_port(),
        ListenOptions::new().options(big_opts()).tls(cfg),
        |ctx| {
            ctx.set_streaming(Some(Raw));
            |ctx: &mut Ctx<'_>, ev: Event| match ev {
                Event::Read(f) => {
                    ctx.write(f.into_bytes().unwrap()).expect("echo write");
                }
                Event::Eof => {
                    let _ = ctx.shutdown();
                }
                _ => {}
            }
        },
    )
    .unwrap()
}

#[test]
fn random_payloads_round_trip_through_tls_echo() {
    let pki = Pki::new();
    let r = reactor(2);
    let l = echo_server(&r, pki.server().server_config());
    let (tx, rx) = netactor::event_channel(64);
    let conn = r
        .connect(
            l.local_addr(),
            ConnectOptions::new().options(big_opts()).tls(
                pki.client_config(),
                Some(ServerName::try_from("localhost").unwrap()),
            ),
            tx,
        )
        .unwrap();
    // Written before the handshake: held until the server is verified.
    let first = random_bytes(100, 1);
    conn.write(first.clone()).unwrap();
    let got = conn.push_read(Chunk::new(first.len())).unwrap();
    assert_eq!(&got.recv_timeout(WAIT).unwrap()[..], &first[..]);
    for (i, n) in [1usize, 16 * 1024 + 1, 1 << 20, 5 << 20]
        .into_iter()
        .enumerate()
    {
        let data = random_bytes(n, 7 + i as u64);
        conn.write(data.clone()).unwrap();
        let got = conn.push_read(Chunk::new(n)).unwrap();
        let back = got.recv_timeout(Duration::from_secs(30)).expect("echo");
        assert!(back[..] == data[..], "payload of {n} bytes corrupted");
    }
    let (ev, skipped) = wait_event(&rx, |e| matches!(e, Event::TlsEstablished));
    assert!(matches!(ev, Event::TlsEstablished));
    assert!(
        skipped.iter().all(|e| matches!(e, Event::Connected { .. })),
        "{skipped:?}"
    );
    // Half-close: close_notify + FIN; the server echoes nothing more and
    // closes cleanly, which the client sees as a clean EOF (no truncation).
    conn.set_streaming(Some(Raw)).unwrap(); // someone must read to see EOF
    conn.shutdown().unwrap();
    let evs = until_closed(&rx);
    assert!(evs.iter().any(|e| matches!(e, Event::Eof)), "{evs:?}");
    assert!(
        !evs.iter().any(|e| matches!(e, Event::Error { .. })),
        "{evs:?}"
    );
}

/// A TCP relay that holds the client's bytes until `go` is sent: a
/// connection through it cannot finish its TLS handshake before then.
fn gated_relay(to: std::net::SocketAddr) -> (std::net::SocketAddr, std::sync::mpsc::Sender<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (client, _) = l.accept().unwrap();
        let _ = go_rx.recv_timeout(WAIT);
        let server = TcpStream::connect(to).unwrap();
        let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let up = std::thread::spawn(move || {
            let _ = std::io::copy(&mut c2, &mut s2);
            let _ = s2.shutdown(std::net::Shutdown::Write);
        });
        let (mut s, mut c) = (server, client);
        let _ = std::io::copy(&mut s, &mut c);
        let _ = c.shutdown(std::net::Shutdown::Write);
        let _ = up.join();
    });
    (addr, go_tx)
}

#[test]
fn many_small_writes_are_coalesced_and_ordered() {
    let pki = Pki::new();
    let r = reactor(2);
    let l = echo_server(&r, pki.server().server_config());
    // Through a relay that holds the handshake until every write is
    // posted: all 5000 are queued when the session can first send, so how
    // many records they become does not depend on how fast this thread
    // posts against how fast the worker takes its mail.
    let (relay, go) = gated_relay(l.local_addr());
    let (tx, _rx) = netactor::event_channel(64);
    let conn = r
        .connect(
            relay,
            ConnectOptions::new()
                .options(big_opts())
                .tls(pki.client_config(), None),
            tx,
        )
        .unwrap();
    let mut all = Vec::new();
    for i in 0..5000u32 {
        let piece = format!("{i},");
        all.extend_from_slice(piece.as_bytes());
        conn.write(piece).unwrap();
    }
    go.send(()).unwrap();
    let back = conn
        .push_read(Chunk::new(all.len()))
        .unwrap()
        .recv_timeout(WAIT)
        .unwrap();
    assert!(back[..] == all[..]);
    // 5000 writes must not become 5000 TLS records: coalescing keeps the
    // ciphertext overhead small (22 bytes per TLS 1.3 record).
    let written = conn.stats().bytes_written as usize;
    eprintln!(
        "{written} ciphertext bytes for {} plaintext bytes",
        all.len()
    );
    assert!(
        written < all.len() + 4096,
        "{written} ciphertext bytes for {} plaintext bytes",
        all.len()
    );
}

/// An independent client: rustls driven by hand over a non-blocking std
/// socket, writing `data` and reading the echo at the same time.
fn rustls_pump_echo(addr: std::net::SocketAddr, pki: &Pki, data: &[u8]) -> Vec<u8> {
    use std::io::ErrorKind::WouldBlock;
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_nonblocking(true).unwrap();
    let mut tls = rustls_session(pki);
    let mut sent = 0;
    let mut back = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 64 << 10];
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while back.len() < data.len() {
        assert!(
            std::time::Instant::now() < end,
            "echo stalled at {} bytes",
            back.len()
        );
        let mut progress = false;
        if sent < data.len() && !tls.is_handshaking() && !tls.wants_write() {
            let n = tls
                .writer()
                .write(&data[sent..(sent + (64 << 10)).min(data.len())])
                .unwrap();
            sent += n;
            progress |= n > 0;
        }
        while tls.wants_write() {
            match tls.write_tls(&mut sock) {
                Ok(_) => progress = true,
                Err(e) if e.kind() == WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        match tls.read_tls(&mut sock) {
            Ok(0) => panic!("server closed early after {} bytes", back.len()),
            Ok(_) => {
                progress = true;
                tls.process_new_packets().unwrap();
                while let Ok(n) = tls.reader().read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    back.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) if e.kind() == WouldBlock => {}
            Err(e) => panic!("read: {e}"),
        }
        if !progress {
            // Block until the socket is readable (or writable, if records wait).
            use std::os::fd::AsRawFd;
            let mut pfd = libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN | if tls.wants_write() { libc::POLLOUT } else { 0 },
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            unsafe { libc::poll(&mut pfd, 1, 100) };
        }
    }
    back
}

#[test]
fn echo_example_with_cert_serves_tls() {
    let pki = Pki::new();
    let cert = pki.server();
    let dir = TempDir::new("echo-tls");
    let c = dir.write("cert.pem", &cert.cert_pem);
    let k = dir.write("key.pem", &cert.key_pem);
    let (mut server, addr) = start_server(
        &example_bin("echo"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--cert",
            c.to_str().unwrap(),
            "--key",
            k.to_str().unwrap(),
        ],
    );
    // Several MiB both ways through one non-blocking rustls pump (the
    // server applies backpressure, so writing everything first would stall).
    let data = random_bytes(3 << 20, 42);
    let back = rustls_pump_echo(addr, &pki, &data);
    assert!(back == data, "echoed bytes differ");
    server.signal(libc::SIGTERM);
    let st = server
        .wait_timeout(Duration::from_secs(10))
        .expect("no exit");
    assert!(st.success(), "{st:?}");
}

#[test]
fn echo_example_with_cert_rejects_plaintext_and_echoes_nothing() {
    let cert = Pki::new().server();
    let dir = TempDir::new("echo-plain");
    let c = dir.write("cert.pem", &cert.cert_pem);
    let k = dir.write("key.pem", &cert.key_pem);
    let (_server, addr) = start_server(
        &example_bin("echo"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--cert",
            c.to_str().unwrap(),
            "--key",
            k.to_str().unwrap(),
        ],
    );
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got); // closed by the server (maybe after an alert)
    assert!(
        !got.windows(3).any(|w| w == b"GET"),
        "plaintext was echoed: {got:?}"
    );
    // Whatever came back is a TLS alert record (content type 21), not data.
    if !got.is_empty() {
        assert_eq!(got[0], 21, "not an alert: {got:?}");
    }
}

/// Throughput of one TLS connection, netactor to netactor (bulk one way).
/// `cargo test --release --test tls_echo -- --ignored --nocapture tls_bulk_throughput`
#[test]
#[ignore]
fn tls_bulk_throughput() {
    let pki = Pki::new();
    let r = reactor(2);
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    const TOTAL: usize = 512 << 20;
    let l = tls_listener_with(&r, &pki, Options::new(), move |ctx| {
        ctx.set_streaming(Some(Raw));
        let done = done_tx.clone();
        let mut got = 0usize;
        move |_ctx: &mut Ctx<'_>, ev: Event| {
            if let Event::Read(f) = ev {
                got += f.bytes().unwrap().len();
                if got == TOTAL {
                    let _ = done.send(());
                }
            }
        }
    });
    let (tx, rx) = netactor::event_channel(64);
    let conn = r
        .connect(
            l.local_addr(),
            ConnectOptions::new()
                .options(Options::new().low_water_mark(Some(1 << 20)))
                .tls(pki.client_config(), None),
            tx,
        )
        .unwrap();
    wait_event(&rx, |e| matches!(e, Event::TlsEstablished));
    let block = bytes::Bytes::from(vec![0x5a; 256 << 10]);
    let start = std::time::Instant::now();
    let mut sent = 0;
    while sent < TOTAL {
        match conn.write(block.clone()) {
            Ok(()) => sent += block.len(),
            Err(netactor::Error::NoSpace { .. }) => {
                let _ = rx.recv_timeout(Duration::from_millis(50)); // Drain
            }
            Err(e) => panic!("{e}"),
        }
    }
    done_rx.recv_timeout(Duration::from_secs(120)).unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "TLS bulk: {} MiB in {secs:.2} s = {:.0} MiB/s",
        TOTAL >> 20,
        (TOTAL >> 20) as f64 / secs
    );
}

/// A TLS connection that moves to another worker (`WorkerMetrics::moved_in`)
/// keeps its session: records keep flowing both ways, in order, through
/// the move. Three connections are made to share one worker (the other's
/// closed), so the first to run 16 turns moves.
#[test]
fn a_tls_connection_keeps_its_session_when_it_moves_to_another_worker() {
    let pki = Pki::new();
    let r = reactor(2);
    let l = echo_server(&r, pki.server().server_config());
    let open_on = |w: usize| r.metrics().workers[w].connections_open;
    let mut on: [Vec<_>; 2] = [Vec::new(), Vec::new()];
    let heavy = loop {
        let before = [open_on(0), open_on(1)];
        let mut c = rustls_client(&pki, l.local_addr());
        c.write_all(b"hello").unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"hello");
        let w = (0..2)
            .find(|&i| open_on(i) > before[i])
            .expect("one worker's count rose");
        on[w].push(c);
        if on[w].len() == 3 {
            break w;
        }
        assert!(
            on[0].len() + on[1].len() < 5,
            "five connections, three on none"
        );
    };
    let light = 1 - heavy;
    drop(std::mem::take(&mut on[light]));
    let end = std::time::Instant::now() + WAIT;
    while open_on(light) != 0 {
        assert!(
            std::time::Instant::now() < end,
            "the closed ones never closed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let c = &mut on[heavy][0];
    for round in 0..40u32 {
        let msg = random_bytes(3000 + round as usize * 97, round as u64);
        c.write_all(&msg).unwrap();
        let mut got = vec![0u8; msg.len()];
        c.read_exact(&mut got).unwrap();
        assert!(got == msg, "round {round}: the echo differs");
    }
    let m = r.metrics();
    assert_eq!(m.workers[light].moved_in, 1, "{m:#?}");
    assert_eq!(m.workers[light].connections_open, 1, "{m:#?}");
    // The session still works both ways after the move, and ends cleanly.
    c.write_all(b"after").unwrap();
    let mut b = [0u8; 5];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"after");
    drop(on);
    r.shutdown();
}
