//! A TLS client that stops reading while the server keeps writing: the
//! server's memory for the connection stays bounded. Plaintext waits in the
//! write queue (bounded by `wbuf_max`, and `write` refuses more with
//! `NoSpace`, as documented); the TLS engine encrypts at most one chunk
//! ahead of the socket, so the ciphertext it holds does not grow with the
//! queue.
//!
//! The queued plaintext is one static buffer written many times (no heap
//! of its own), so the process's resident memory shows what the server
//! allocated for it: encrypting the whole queue ahead would add ~32 MiB.
//! Own test binary: nothing else runs in this process while it measures.

mod tls_support;

use bytes::Bytes;
use netactor::{Error, Event, Limit, Options};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tls_support::*;

/// The write queue's limit: far more than the kernel's socket buffers take.
const WBUF: usize = 32 << 20;
/// Most the resident set may grow while the queue is full (buffers,
/// pools, noise): a quarter of what the queue holds.
const MAX_GROWTH: u64 = 8 << 20;

static CHUNK: [u8; 64 << 10] = [0x5a; 64 << 10];

/// Resident memory of this process (Linux), in bytes.
fn resident() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Waits until `f()` has not changed for 300 ms (at most `WAIT`).
fn settle<T: PartialEq>(mut f: impl FnMut() -> T) -> T {
    let start = Instant::now();
    let mut last = f();
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_millis(300) {
        assert!(start.elapsed() < WAIT, "never settled");
        std::thread::sleep(Duration::from_millis(20));
        let now = f();
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    last
}

#[test]
fn a_stalled_tls_reader_holds_the_servers_memory_to_the_write_limit() {
    if resident().is_none() {
        eprintln!("skipped: no /proc/self/statm");
        return;
    }
    let pki = Pki::new();
    let r = reactor(1);
    let l = tls_listener(&r, &pki, Options::new().wbuf_max(WBUF));
    // The client: a small receive buffer, the handshake, then no reads.
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(16 << 10).unwrap();
    let addr: SocketAddr = l.local_addr();
    s.connect(&addr.into()).unwrap();
    let sock: TcpStream = s.into();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut tls = rustls_stream(&pki, sock);
    finish_handshake(&mut tls);
    let conn = l.accept_timeout(WAIT).unwrap();
    wait_event(l.events(), |e| matches!(e, Event::TlsEstablished));
    // A first round fills the pools and the kernel's buffers, and is read.
    conn.write(Bytes::from_static(&CHUNK)).unwrap();
    let mut first = vec![0u8; CHUNK.len()];
    tls.read_exact(&mut first).unwrap();
    settle(|| conn.stats());
    let before = resident().unwrap();

    // The client stops reading; the server writes until refused, and
    // again once the socket has taken what it can (the refusal then stays).
    let mut accepted = 0usize;
    let mut fill = || {
        let end = Instant::now() + WAIT;
        loop {
            match conn.write(Bytes::from_static(&CHUNK)) {
                Ok(()) => accepted += CHUNK.len(),
                Err(Error::NoSpace {
                    limit: Limit::WriteBuffer,
                    max,
                }) => {
                    assert_eq!(max, WBUF);
                    return accepted;
                }
                Err(e) => panic!("{e}"),
            }
            assert!(Instant::now() < end, "writes never refused");
        }
    };
    fill();
    settle(|| conn.stats());
    let accepted = fill();
    assert!(accepted + CHUNK.len() > WBUF, "refused after {accepted}");
    let st = settle(|| conn.stats());
    let after = resident().unwrap();
    let growth = after.saturating_sub(before);
    eprintln!(
        "accepted {accepted} B, queued {} B, {} B to the kernel; resident +{growth} B",
        st.write_queued, st.bytes_written
    );
    assert!(st.write_queued <= WBUF);
    assert!(
        st.write_queued > WBUF / 2,
        "the stalled peer should leave most of it queued: {st:?}"
    );
    assert!(
        growth < MAX_GROWTH,
        "resident memory grew by {growth} bytes with {} queued",
        st.write_queued
    );
    // Still refused while nothing moves: back-pressure, not a failure.
    assert!(matches!(
        conn.write(Bytes::from_static(&CHUNK)),
        Err(Error::NoSpace { .. })
    ));

    // The client reads again: everything arrives, the queue drains.
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0usize;
        while n < accepted {
            match tls.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    assert!(buf[..k].iter().all(|&b| b == 0x5a));
                    n += k;
                }
                Err(e) => panic!("after {n} bytes: {e}"),
            }
        }
        n
    });
    assert_eq!(reader.join().unwrap(), accepted);
    let end = Instant::now() + WAIT;
    while conn.stats().write_queued != 0 {
        assert!(Instant::now() < end, "queue never drained");
        std::thread::sleep(Duration::from_millis(5));
    }
    conn.close().unwrap();
}
