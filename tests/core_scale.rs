//! 2000 concurrent connections, each echoing its own message, all open at
//! the same time (client and server sides in this one process: 4000+
//! descriptors, so RLIMIT_NOFILE is raised first).
//!
//! Run: `cargo test --release --test core_scale`

mod common;

use bytes::Bytes;
use common::*;
use netactor::framing::{Chunk, Raw};
use netactor::{ConnectOptions, Ctx, Event, ListenOptions};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const N: usize = 2000;

#[test]
fn two_thousand_concurrent_echo_connections() {
    let limit = raise_nofile();
    assert!(
        limit >= (2 * N + 200) as u64,
        "RLIMIT_NOFILE hard limit {limit} is too low for {N} connection pairs"
    );
    let _w = Watchdog::new("2000 connections", Duration::from_secs(60));
    let r = reactor(2);
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (l2, p2) = (live.clone(), peak.clone());
    let listener = r
        .listen_with(any_port(), ListenOptions::new().backlog(4096), move |ctx| {
            let now = l2.fetch_add(1, Ordering::SeqCst) + 1;
            p2.fetch_max(now, Ordering::SeqCst);
            ctx.set_streaming(Some(Raw));
            let live = l2.clone();
            move |ctx: &mut Ctx<'_>, ev: Event| match ev {
                Event::Read(f) => {
                    let _ = ctx.write(f.into_bytes().unwrap());
                }
                Event::Eof => ctx.close(),
                Event::Closed => {
                    live.fetch_sub(1, Ordering::SeqCst);
                }
                _ => {}
            }
        })
        .unwrap();
    let t0 = Instant::now();
    let (tx, events) = netactor::event_channel(4 * N);
    let mut conns = Vec::with_capacity(N);
    let mut replies = Vec::with_capacity(N);
    for i in 0..N {
        let c = r
            .connect(listener.local_addr(), ConnectOptions::new(), tx.clone())
            .unwrap();
        c.write(Bytes::from(format!("message #{i:06}\n"))).unwrap();
        replies.push(c.push_read(Chunk::new(16)).unwrap());
        conns.push(c);
    }
    for (i, rep) in replies.iter().enumerate() {
        let got = rep
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert_eq!(&got[..], format!("message #{i:06}\n").as_bytes());
    }
    let took = t0.elapsed();
    assert_eq!(
        peak.load(Ordering::SeqCst),
        N,
        "not all {N} were open at once"
    );
    let connected = events
        .try_iter()
        .filter(|(_, e)| matches!(e, Event::Connected { .. }))
        .count();
    assert_eq!(connected, N);
    // Hang up: every server side sees EOF and closes.
    drop(conns);
    assert!(
        wait_until(Duration::from_secs(20), || live.load(Ordering::SeqCst) == 0),
        "{} server connections still open",
        live.load(Ordering::SeqCst)
    );
    eprintln!("{N} connections connected and echoed in {took:?}");
}
