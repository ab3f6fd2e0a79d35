//! End of TLS connections: close_notify vs truncation, `shutdown` and
//! `close` sending close_notify after the queued data, handshake timeout,
//! garbage instead of a ClientHello, EOF during the handshake.

mod tls_support;

use netactor::framing::{Chunk, Raw};
use netactor::{ConnectOptions, Error, Event, Options, TimeoutKind};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};
use tls_support::*;

/// Server-side events until EOF (inclusive), with the bytes read.
fn read_until_eof(l: &netactor::Listener) -> (Vec<u8>, Vec<Event>) {
    let mut data = Vec::new();
    let mut evs = Vec::new();
    loop {
        let ev = next_event(l.events());
        match &ev {
            Event::Read(f) => data.extend_from_slice(f.bytes().unwrap()),
            Event::Eof | Event::Closed => {
                evs.push(ev);
                return (data, evs);
            }
            _ => {}
        }
        evs.push(ev);
    }
}

#[test]
fn close_notify_is_a_clean_eof() {
    let pki = Pki::new();
    let r = reactor(1);
    let l = tls_listener(&r, &pki, Options::new());
    let mut c = rustls_client(&pki, l.local_addr());
    c.write_all(b"data").unwrap();
    c.conn.send_close_notify();
    c.flush().unwrap();
    c.sock.shutdown(Shutdown::Write).unwrap();
    let conn = l.accept_timeout(WAIT).unwrap();
    conn.set_streaming(Some(Raw)).unwrap();
    let (data, evs) = read_until_eof(&l);
    assert_eq!(data, b"data");
    assert!(matches!(evs.last(), Some(Event::Eof)), "{evs:?}");
    assert!(
        !evs.iter().any(|e| matches!(e, Event::Error { .. })),
        "{evs:?}"
    );
}

#[test]
fn tcp_eof_without_close_notify_is_reported_as_truncation() {
    let pki = Pki::new();
    let r = reactor(1);
    let l = tls_listener(&r, &pki, Options::new());
    let mut c = rustls_client(&pki, l.local_addr());
    c.write_all(b"data").unwrap();
    c.flush().unwrap();
    c.sock.shutdown(Shutdown::Write).unwrap(); // FIN, no close_notify
    let conn = l.accept_timeout(WAIT).unwrap();
    conn.set_streaming(Some(Raw)).unwrap();
    let (data, evs) = read_until_eof(&l);
    // The data before the truncation is still delivered, then the distinct
    // non-fatal error, then EOF.
    assert_eq!(data, b"data");
    let n = evs.len();
    assert!(n >= 2, "{evs:?}");
    assert!(
        matches!(
            &evs[n - 2],
            Event::Error {
                error: Error::TlsTruncated,
                fatal: false
            }
        ),
        "{evs:?}"
    );
    assert!(matches!(evs[n - 1], Event::Eof));
}

#[test]
fn pending_read_fails_with_tls_truncated() {
    let pki = Pki::new();
    let r = reactor(1);
    let l = tls_listener(&r, &pki, Options::new());
    let mut c = rustls_client(&pki, l.local_addr());
    c.write_all(b"abc").unwrap();
    c.flush().unwrap();
    let conn = l.accept_timeout(WAIT).unwrap();
    let want = conn.push_read(Chunk::new(100)).unwrap();
    c.sock.shutdown(Shutdown::Write).unwrap();
    match want.recv_timeout(WAIT) {
        Err(netactor::ReplyTimeoutError::Failed(Error::TlsTruncated)) => {}
        other => panic!("expected TlsTruncated, got {other:?}"),
    }
    // ...whereas after a close_notify the same read fails with UnexpectedEof.
    let mut c = rustls_client(&pki, l.local_addr());
    c.write_all(b"abc").unwrap();
    c.conn.send_close_notify();
    c.flush().unwrap();
    let conn = l.accept_timeout(WAIT).unwrap();
    let want = conn.push_read(Chunk::new(100)).unwrap();
    match want.recv_timeout(WAIT) {
        Err(netactor::ReplyTimeoutError::Failed(Error::UnexpectedEof)) => {}
        other => panic!("expected UnexpectedEof, got {other:?}"),
    }
}

#[test]
fn shutdown_sends_close_notify_then_fin_after_the_data() {
    let pki = Pki::new();
    let r = reactor(1);
    let l = tls_listener(&r, &pki, Options::new());
    let mut c = rustls_client(&pki, l.local_addr());
    c.write_all(b"hi").unwrap();
    let conn = l.accept_timeout(WAIT).unwrap();
    let payload = random_bytes(300_000, 3);
    conn.write(payload.clone()).unwrap();
    conn.shutdown().unwrap();
    let mut got = Vec::new();
    // read_to_end succeeds only if the stream ended with close_notify:
    // a bare FIN would be an UnexpectedEof error from rustls.
    c.read_to_end(&mut got).expect("clean TLS close");
    assert!(got == payload);
    // Reading continues after our half-close: the server still gets data.
    conn.set_streaming(Some(Raw)).unwrap();
    c.write_all(b"late").unwrap();
    let (ev, _) = wait_event(l.events(), |e| matches!(e, Event::Read(_)));
    let Event::Read(f) = ev else { unreachable!() };
    let mut late = f.bytes().unwrap().to_vec();
    while late.len() < 6 {
        if let (_, Event::Read(f)) = l.events().recv_timeout(WAIT).unwrap() {
            late.extend_from_slice(f.bytes().unwrap());
        }
    }
    assert_eq!(late, b"hilate");
}

#[test]
fn close_flushes_queued_data_then_close_notify() {
    let pki = Pki::new();
    let r = reactor(1);
    let l = tls_listener(&r, &pki, Options::new());
    let mut c = rustls_client(&pki, l.local_addr());
    c.write_all(b"x").unwrap();
    let conn = l.accept_timeout(WAIT).unwrap();
    // Established: a close during an accepted handshake would not wait
    // for it (see `Connection::close`).
    wait_event(l.events(), |e| matches!(e, Event::TlsEstablished));
    let payload = random_bytes(1 << 20, 5);
    conn.write(payload.clone()).unwrap();
    conn.close().unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).expect("clean TLS close");
    assert!(got == payload);
    let (ev, _) = wait_event(l.events(), |e| {
        matches!(e, Event::Closed | Event::Error { .. })
    });
    assert!(matches!(ev, Event::Closed), "{ev:?}");
}

#[test]
fn close_right_after_connect_still_delivers_the_data() {
    // write + close before the handshake finished: the close waits for the
    // handshake, sends the data, then close_notify.
    let pki = Pki::new();
    let r = reactor(2);
    let l = tls_listener(&r, &pki, Options::new());
    let (tx, rx) = netactor::event_channel(16);
    let conn = tls_connect(&r, &pki, l.local_addr(), tx);
    // The handshake of a TLS connect is part of connecting: a close during
    // it waits for it, then flushes (within linger).
    let (ev, _) = wait_event(&rx, |e| {
        matches!(e, Event::Connected { .. } | Event::TlsEstablished)
    });
    assert!(matches!(ev, Event::Connected { .. }));
    conn.write(&b"fire and forget"[..]).unwrap();
    conn.close().unwrap();
    let server = l.accept_timeout(WAIT).unwrap();
    server.set_streaming(Some(Raw)).unwrap();
    let (data, evs) = read_until_eof(&l);
    assert_eq!(data, b"fire and forget");
    assert!(
        !evs.iter().any(|e| matches!(e, Event::Error { .. })),
        "{evs:?}"
    );
    let evs = until_closed(&rx);
    assert!(fatal_error(&evs).is_none(), "{evs:?}");
}

#[test]
fn handshake_timeout_on_a_silent_client() {
    silent_client_times_out(Duration::from_millis(200));
}

/// Longer than the 250 ms the handshake timer looks in at (it stays due
/// within that, so a connection that ends early leaves no entry for the
/// whole timeout): the handshake still fails at its own time, not at the
/// first look.
#[test]
fn a_handshake_timeout_longer_than_the_timers_step_is_kept() {
    silent_client_times_out(Duration::from_millis(900));
}

fn silent_client_times_out(timeout: Duration) {
    let pki = Pki::new();
    let r = reactor(1);
    let l = tls_listener(&r, &pki, Options::new().handshake_timeout(timeout));
    let _silent = TcpStream::connect(l.local_addr()).unwrap();
    let start = Instant::now();
    let _conn = l.accept_timeout(WAIT).unwrap();
    let evs = until_closed(l.events());
    let took = start.elapsed();
    assert!(
        matches!(
            fatal_error(&evs),
            Some(Error::TimedOut(TimeoutKind::Handshake))
        ),
        "{evs:?}"
    );
    // From the client's connect, which is before the server's accept.
    assert!(
        took >= timeout - Duration::from_millis(50) && took < timeout + Duration::from_secs(3),
        "{took:?} for a timeout of {timeout:?}"
    );
}

#[test]
fn handshake_timeout_on_a_silent_server() {
    let pki = Pki::new();
    let r = reactor(1);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (tx, rx) = netactor::event_channel(16);
    let start = Instant::now();
    let _conn = r
        .connect(
            silent.local_addr().unwrap(),
            ConnectOptions::new()
                .options(Options::new().handshake_timeout(Duration::from_millis(200)))
                .tls(pki.client_config(), None),
            tx,
        )
        .unwrap();
    let evs = until_closed(&rx);
    assert!(
        matches!(
            fatal_error(&evs),
            Some(Error::TimedOut(TimeoutKind::Handshake))
        ),
        "{evs:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn garbage_instead_of_client_hello_is_a_fatal_protocol_error() {
    let pki = Pki::new();
    let r = reactor(1);
    let l = tls_listener(&r, &pki, Options::new());
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0x16, 3, 1, 0, 8, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4][..],
        &[0xff; 64][..],
    ] {
        let mut s = TcpStream::connect(l.local_addr()).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(garbage).unwrap();
        let _conn = l.accept_timeout(WAIT).unwrap();
        let evs = until_closed(l.events());
        assert!(
            matches!(fatal_error(&evs), Some(Error::Tls(_))),
            "{garbage:?}: {evs:?}"
        );
        assert!(!evs.iter().any(|e| matches!(e, Event::Read(_))));
        // The client gets at most an alert, then EOF — never its bytes back.
        let mut back = Vec::new();
        let _ = s.read_to_end(&mut back);
        assert!(back.is_empty() || back[0] == 21, "{back:?}");
    }
}

#[test]
fn eof_during_the_handshake_is_a_fatal_protocol_error() {
    let pki = Pki::new();
    let r = reactor(1);
    let l = tls_listener(&r, &pki, Options::new());
    let mut s = TcpStream::connect(l.local_addr()).unwrap();
    // Half a ClientHello, then FIN.
    let mut hello = Vec::new();
    let mut c = rustls_session(&pki);
    c.write_tls(&mut hello).unwrap();
    s.write_all(&hello[..hello.len() / 2]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let _conn = l.accept_timeout(WAIT).unwrap();
    let evs = until_closed(l.events());
    match fatal_error(&evs) {
        Some(Error::Tls(netactor::TlsError::HandshakeEof)) => {}
        other => panic!("{other:?} in {evs:?}"),
    }
}

/// Segments `sock` has received (`TCP_INFO`'s `tcpi_segs_in`).
#[cfg(target_os = "linux")]
fn segs_in(sock: &TcpStream) -> u32 {
    use std::os::fd::AsRawFd;
    // SAFETY: `tcp_info` is plain old data (all-zero is a valid value);
    // the kernel writes at most `len` bytes into it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: a valid descriptor, and a buffer of `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    info.tcpi_segs_in
}

/// Closing after the peer's close_notify sends ours and the FIN in one
/// segment (as a plaintext close sends its FIN alone): one packet fewer per
/// TLS connection for both ends, which the churn benchmark counts (16
/// segments per connection before, 15 after — the mio loop's and tokio's
/// count).
#[cfg(target_os = "linux")]
#[test]
fn close_notify_and_the_fin_share_a_segment() {
    let pki = Pki::new();
    let r = reactor(1);
    let l = tls_listener(&r, &pki, Options::new());
    let mut attempts = Vec::new();
    // Up to three tries: the kernel sends held-back bytes after ~200 ms,
    // and acknowledges a FIN on its own after ~40 ms, so a worker
    // descheduled that long makes one segment more. Before the change: two
    // segments or more every time.
    for _ in 0..3 {
        let mut c = rustls_client(&pki, l.local_addr());
        c.write_all(b"ping").unwrap();
        let conn = l.accept_timeout(WAIT).unwrap();
        conn.set_streaming(Some(Raw)).unwrap();
        wait_event(l.events(), |e| matches!(e, Event::Read(_)));
        // The answer carries (or follows) the server's ACK of "ping": once
        // it is read, nothing the server owes the client is in flight.
        conn.write(b"pong".to_vec()).unwrap();
        let mut pong = [0u8; 4];
        c.read_exact(&mut pong).unwrap();
        assert_eq!(&pong, b"pong");
        let before = segs_in(&c.sock);
        c.conn.send_close_notify();
        c.flush().unwrap();
        c.sock.shutdown(Shutdown::Write).unwrap();
        wait_event(l.events(), |e| matches!(e, Event::Eof));
        conn.close().unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).expect("clean TLS close");
        assert!(rest.is_empty());
        // rustls stops at close_notify: the FIN is the socket's EOF.
        let mut byte = [0u8; 1];
        assert_eq!(c.sock.read(&mut byte).unwrap(), 0);
        let segs = segs_in(&c.sock) - before;
        wait_event(l.events(), |e| matches!(e, Event::Closed));
        if segs == 1 {
            return;
        }
        attempts.push(segs);
    }
    panic!("segments for close_notify and the FIN, per attempt: {attempts:?} (want 1)");
}
