//! The echo example's faults, over real sockets: `--idle-timeout` closes a
//! dead peer's connection, and SIGTERM in the middle of a stream gives the
//! client an exact prefix of what it sent followed by a clean EOF (not a
//! reset), then exit 0.

mod tls_support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls_support::*;

/// Byte `i` of the stream the client sends.
fn pattern_at(i: u64) -> u8 {
    (i.wrapping_mul(7) + i / 251) as u8
}

fn client(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

#[test]
fn idle_timeout_closes_silent_connections_only() {
    let (_srv, addr) = start_server(
        &example_bin("echo"),
        &["--listen", "127.0.0.1:0", "--idle-timeout", "1"],
    );
    // A peer that goes silent is closed (FIN) after the idle period.
    let mut silent = client(addr);
    silent.write_all(b"ping").unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    silent
        .read_to_end(&mut got)
        .expect("closed with FIN within 20 s");
    assert_eq!(got, b"ping");
    assert!(start.elapsed() >= Duration::from_millis(900));
    // A peer that keeps talking for longer than one period is not.
    let mut busy = client(addr);
    for i in 0..6u8 {
        busy.write_all(&[i]).unwrap();
        let mut b = [0u8; 1];
        busy.read_exact(&mut b).expect("still open");
        assert_eq!(b[0], i);
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// One streaming client: writes the pattern as fast as it can while reading
/// the echo back at full speed; returns (bytes sent, the first MiB echoed,
/// how the stream ended). `progress` counts the echoed bytes as they arrive.
///
/// A reset can pass for EOF: when the writer's `send` consumes the socket
/// error first, the reader's next `recv` sees only the closed socket and
/// returns 0. So the writer's error counts too: after the reader's EOF the
/// client shuts its socket down itself (`BrokenPipe` for the writer), and
/// `ConnectionReset` there means the server reset the connection.
fn stream(
    addr: std::net::SocketAddr,
    progress: Arc<AtomicU64>,
) -> (u64, Vec<u8>, std::io::Result<()>) {
    let mut s = client(addr);
    let mut w = s.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut off = 0u64;
        let mut chunk = vec![0u8; 64 << 10];
        while !stop2.load(Ordering::Acquire) && off < (4 << 30) {
            for (k, b) in chunk.iter_mut().enumerate() {
                *b = pattern_at(off + k as u64);
            }
            if let Err(e) = w.write_all(&chunk) {
                // Part of this chunk may have gone out (and come back).
                return (off + chunk.len() as u64, Some(e));
            }
            off += chunk.len() as u64;
        }
        (off, None)
    });
    let mut got: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let end = loop {
        match s.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                // Only the first 1 MiB is kept and checked byte by byte (the
                // rest: its length), so that eight clients stay cheap.
                let keep = (1usize << 20).saturating_sub(got.len()).min(n);
                got.extend_from_slice(&buf[..keep]);
                progress.fetch_add(n as u64, Ordering::AcqRel);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    stop.store(true, Ordering::Release);
    let _ = s.shutdown(std::net::Shutdown::Both);
    let (sent, write_error) = writer.join().unwrap();
    let end = match (end, write_error) {
        (Ok(()), Some(e)) if e.kind() == ErrorKind::ConnectionReset => Err(e),
        (end, _) => end,
    };
    (sent, got, end)
}

#[test]
fn sigterm_mid_stream_gives_an_exact_prefix_then_eof_and_exit_zero() {
    let (mut srv, addr) = start_server(&example_bin("echo"), &["--listen", "127.0.0.1:0"]);
    // Eight clients streaming at full speed both ways (on main before the
    // graceful stop, about half of them saw ECONNRESET).
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let progress = Arc::new(AtomicU64::new(0));
            let p2 = progress.clone();
            (progress, std::thread::spawn(move || stream(addr, p2)))
        })
        .collect();
    let ready = Instant::now() + Duration::from_secs(20);
    while clients
        .iter()
        .any(|(p, _)| p.load(Ordering::Acquire) < 4 << 20)
    {
        assert!(Instant::now() < ready, "the clients did not get going");
        std::thread::sleep(Duration::from_millis(5));
    }
    srv.signal(libc::SIGTERM);
    for (i, (progress, t)) in clients.into_iter().enumerate() {
        let (sent, got, end) = t.join().unwrap();
        let echoed = progress.load(Ordering::Acquire);
        if let Err(e) = end {
            panic!("client {i} saw {e} after {echoed} bytes instead of EOF");
        }
        assert!(echoed <= sent, "client {i}: {echoed} echoed of {sent} sent");
        if let Some(k) = (0..got.len()).find(|&k| got[k] != pattern_at(k as u64)) {
            panic!("client {i}: echoed byte {k} differs: not a prefix of what was sent");
        }
    }
    let st = srv
        .wait_timeout(Duration::from_secs(10))
        .expect("no exit within 10 s of SIGTERM");
    assert!(st.success(), "{st:?}");
}
