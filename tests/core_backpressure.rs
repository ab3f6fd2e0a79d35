//! Back-pressure a user does not hand-roll (`Options::pause_reading_above`)
//! and vectored writes of several buffers (`write_parts`), on real sockets.

mod common;

use bytes::Bytes;
use common::*;
use netactor::framing::Raw;
use netactor::{Ctx, Event, ListenOptions, Options};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The natural echo server: write what came, close on any write error.
fn naive_echo(
    r: &netactor::Reactor,
    opts: Options,
    failures: Arc<AtomicUsize>,
) -> netactor::Listener {
    r.listen_with(any_port(), ListenOptions::new().options(opts), move |ctx| {
        ctx.set_streaming(Some(Raw));
        let failures = failures.clone();
        move |ctx: &mut Ctx<'_>, ev: Event| match ev {
            Event::Read(f) => {
                let written = ctx.write(f.into_bytes().unwrap());
                if written.is_err() {
                    failures.fetch_add(1, Ordering::SeqCst);
                    ctx.close();
                }
            }
            Event::Eof => {
                let _ = ctx.shutdown();
            }
            _ => {}
        }
    })
    .unwrap()
}

/// A client that pipelines without reading: it starts reading only once
/// its writer has finished or has stalled (made no progress for 300 ms —
/// the server stopped reading), then reads everything; returns what came
/// back. No timing decides the outcome, only who stops first.
fn greedy_client(addr: std::net::SocketAddr, data: Arc<Vec<u8>>) -> Vec<u8> {
    let s = TcpStream::connect(addr).unwrap();
    socket2::SockRef::from(&s)
        .set_recv_buffer_size(64 << 10)
        .unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut w = s.try_clone().unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (wr, dn) = (written.clone(), done.clone());
    let writer = std::thread::spawn(move || {
        for chunk in data.chunks(64 << 10) {
            if w.write_all(chunk).is_err() {
                break; // the server closed on us
            }
            wr.fetch_add(chunk.len(), Ordering::SeqCst);
        }
        let _ = w.shutdown(std::net::Shutdown::Write);
        dn.store(true, Ordering::SeqCst);
    });
    let mut last = usize::MAX;
    let mut still = 0;
    while !done.load(Ordering::SeqCst) && still < 6 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let now = written.load(Ordering::SeqCst);
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    let mut s = s;
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    writer.join().unwrap();
    got
}

#[test]
fn a_pipelining_client_is_slowed_down_instead_of_failed() {
    let data = Arc::new(pattern(32 << 20)); // more than all kernel buffers hold
    let r = reactor(2);
    // Without the helper the natural server runs into wbuf_max and closes.
    let failures = Arc::new(AtomicUsize::new(0));
    let l = naive_echo(&r, Options::new().wbuf_max(1 << 20), failures.clone());
    let got = greedy_client(l.local_addr(), data.clone());
    assert!(
        failures.load(Ordering::SeqCst) > 0,
        "the unprotected server never hit NoSpace"
    );
    assert!(got.len() < data.len());
    // With it, the same server echoes everything and never fails a write.
    let failures = Arc::new(AtomicUsize::new(0));
    let opts = Options::new()
        .wbuf_max(1 << 20)
        .pause_reading_above(Some(512 << 10));
    let l = naive_echo(&r, opts, failures.clone());
    let got = greedy_client(l.local_addr(), data.clone());
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    assert!(got == *data, "{} of {} bytes echoed", got.len(), data.len());
}

#[test]
fn several_buffers_leave_in_one_vectored_send() {
    let r = reactor(1);
    let p = pair(&r, Options::new());
    let before = p.conn.stats().write_calls;
    let parts: Vec<Bytes> = (0..10).map(|i| Bytes::from(format!("part{i};"))).collect();
    p.conn.write_parts(parts).unwrap();
    let mut peer = p.peer.try_clone().unwrap();
    let mut got = vec![0u8; 60];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "part0;part1;part2;part3;part4;part5;part6;part7;part8;part9;"
    );
    // (The counter moves right after `sendmsg` returns; the peer may read first.)
    assert!(wait_until(WAIT, || p.conn.stats().write_calls > before));
    assert_eq!(
        p.conn.stats().write_calls - before,
        1,
        "one sendmsg for ten buffers"
    );
    // From a handler too, all or nothing against wbuf_max.
    let (tx, rx) = crossbeam_channel::bounded(1);
    p.conn
        .call(move |ctx| {
            let ok = ctx.write_parts([Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
            let too_big = ctx.write_parts([Bytes::from(vec![0u8; 5 << 20])]);
            let _ = tx.send((ok.is_ok(), too_big.is_err()));
        })
        .unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), (true, true));
    let mut ab = [0u8; 2];
    peer.read_exact(&mut ab).unwrap();
    assert_eq!(&ab, b"ab");
}
