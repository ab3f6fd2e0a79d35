//! Reactor shutdown: stop accepting, let connections flush what is queued
//! (bounded by linger and the shutdown timeout), deliver `Closed`, join every
//! thread, never hang.
//!
//! Tests here run one at a time (they count the process's reactor threads).
//! Run: `cargo test --release --test core_shutdown`

mod common;

use common::*;
use netactor::framing::Raw;
use netactor::{ConnectOptions, Error, Event, ListenOptions, Options, Reactor};
use parking_lot::Mutex;
use std::net::TcpStream;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// Reactor threads alive in this process (worker + poller; resolver threads excluded).
fn reactor_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.starts_with("netactor-") && !c.starts_with("netactor-resol"))
        .count()
}

fn build(workers: usize, shutdown: Duration) -> Reactor {
    Reactor::builder()
        .workers(workers)
        .shutdown_timeout(shutdown)
        .build()
        .unwrap()
}

#[test]
fn shutdown_flushes_every_queued_byte_and_joins_all_threads() {
    flush_on_shutdown(false);
}

#[test]
fn shutdown_flushes_with_a_dedicated_poller_thread_too() {
    flush_on_shutdown(true);
}

fn flush_on_shutdown(dedicated_poller: bool) {
    let _s = SERIAL.lock();
    let base = reactor_threads();
    let r = Reactor::builder()
        .workers(2)
        .dedicated_poller(dedicated_poller)
        .shutdown_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // Threads name themselves once running: two workers (plus the poller).
    let threads = 2 + dedicated_poller as usize;
    assert!(wait_until(WAIT, || reactor_threads() == base + threads));
    // Client side: several connections with far more queued than the kernel holds.
    let mut peers = Vec::new();
    let mut rxs = Vec::new();
    let data = pattern(1 << 20);
    for _ in 0..4 {
        let p = client_pair(&r, Options::new());
        p.conn.write(data.clone()).unwrap();
        peers.push(p.peer);
        rxs.push((p.conn, p.events));
    }
    for (conn, _) in &rxs {
        assert!(wait_until(WAIT, || conn.stats().write_queued > 0));
    }
    // Server side too: handler-mode connections that queue a reply on accept.
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = r
        .listen_with(any_port(), ListenOptions::new(), {
            let data = data.clone();
            let accepted = accepted.clone();
            move |ctx| {
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                ctx.configure(|o| *o = o.clone().wbuf_max(8 << 20));
                ctx.write(data.clone()).unwrap();
                |_: &mut netactor::Ctx<'_>, _: Event| {}
            }
        })
        .unwrap();
    for _ in 0..2 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(8 << 10).unwrap();
        s.connect(&listener.local_addr().into()).unwrap();
        let s: TcpStream = s.into();
        s.set_read_timeout(Some(WAIT)).unwrap();
        peers.push(s);
    }
    // A connection still in the kernel backlog when shutdown starts is never
    // accepted (by design): make sure both were.
    assert!(wait_until(WAIT, || accepted
        .load(std::sync::atomic::Ordering::SeqCst)
        == 2));
    // Readers start only once shutdown has begun.
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(0);
    let readers: Vec<_> = peers
        .into_iter()
        .map(|mut s| {
            let go = go_rx.clone();
            std::thread::spawn(move || {
                let _ = go.recv();
                read_to_eof(&mut s)
            })
        })
        .collect();
    let _w = Watchdog::new("reactor shutdown", Duration::from_secs(30));
    let stopper = std::thread::spawn(move || {
        let t0 = Instant::now();
        r.shutdown();
        drop(r);
        t0.elapsed()
    });
    std::thread::sleep(Duration::from_millis(50));
    drop(go_tx); // release every reader at once
    for rd in readers {
        let (got, eof) = rd.join().unwrap();
        assert!(eof, "peer saw no clean EOF");
        assert_eq!(got.len(), data.len());
        assert!(got == data, "corrupted data");
    }
    let took = stopper.join().unwrap();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    for (conn, rx) in &rxs {
        let evs: Vec<_> = rx.try_iter().map(|(_, e)| e).collect();
        assert!(matches!(evs.last(), Some(Event::Closed)), "{evs:?}");
        assert!(matches!(conn.write(&b"x"[..]), Err(Error::Closed)));
    }
    assert!(
        wait_until(WAIT, || reactor_threads() == base),
        "threads left: {}",
        reactor_threads() - base
    );
}

#[test]
fn shutdown_stops_accepting_and_refuses_new_work() {
    let _s = SERIAL.lock();
    let r = build(1, Duration::from_secs(2));
    let listener = r.listen(any_port(), ListenOptions::new()).unwrap();
    let c1 = TcpStream::connect(listener.local_addr()).unwrap();
    let conn = listener
        .accept_timeout(WAIT)
        .expect("accepted before shutdown");
    r.shutdown();
    // The accepted connection was closed: the peer sees EOF.
    let mut c1 = c1;
    c1.set_read_timeout(Some(WAIT)).unwrap();
    assert!(read_to_eof(&mut c1).1);
    assert!(matches!(conn.write(&b"x"[..]), Err(Error::Closed)));
    // Nothing new is accepted, connected, or listened.
    let _c2 = TcpStream::connect_timeout(&listener.local_addr(), Duration::from_millis(200));
    assert!(listener
        .accept_timeout(Duration::from_millis(200))
        .is_none());
    let (tx, _rx) = netactor::event_channel(4);
    assert!(r
        .connect(listener.local_addr(), ConnectOptions::new(), tx)
        .is_err());
    assert!(r.listen(any_port(), ListenOptions::new()).is_err());
    r.shutdown(); // idempotent
}

#[test]
fn drop_never_hangs_whatever_the_connections_are_doing() {
    let _s = SERIAL.lock();
    let base = reactor_threads();
    let limit = Duration::from_millis(800);
    let r = build(2, limit);
    // 1. Connecting to a black hole (connect timeout far beyond the limit).
    let (hole, _keep, _fill) = blackhole();
    let (tx, connecting_rx) = netactor::event_channel(16);
    let _connecting = r.connect(hole, ConnectOptions::new(), tx).unwrap();
    // 2. Closing with a long linger and a peer that never reads.
    let stuck = client_pair(&r, Options::new().linger(Duration::from_secs(3600)));
    stuck.conn.write(pattern(2 << 20)).unwrap();
    assert!(wait_until(WAIT, || stuck.conn.stats().write_queued > 0));
    stuck.conn.close().unwrap();
    // 3. Idle, with a pending read; 4. streaming; 5. an app that never reads its events.
    let idle = client_pair(&r, Options::new());
    let pending = idle
        .conn
        .push_read(netactor::framing::Chunk::new(10))
        .unwrap();
    let streaming = client_pair(&r, Options::new());
    streaming.conn.set_streaming(Some(Raw)).unwrap();
    let (tx, _never_read) = netactor::event_channel(1);
    let deaf = r
        .connect(idle.peer.local_addr().unwrap(), ConnectOptions::new(), tx)
        .unwrap();
    let _ = deaf.set_timeout(netactor::Inactivity::Write, Some(Duration::from_millis(1)));
    // 6. A listener with a connection waiting in its backlog.
    let listener = r.listen(any_port(), ListenOptions::new()).unwrap();
    let _queued = TcpStream::connect(listener.local_addr()).unwrap();

    let _w = Watchdog::new("reactor drop", Duration::from_secs(20));
    let t0 = Instant::now();
    drop(r);
    let took = t0.elapsed();
    assert!(took < limit + Duration::from_secs(2), "drop took {took:?}");
    // Everyone got told.
    for rx in [
        &connecting_rx,
        &stuck.events,
        &idle.events,
        &streaming.events,
    ] {
        let evs: Vec<_> = rx.try_iter().map(|(_, e)| e).collect();
        assert!(matches!(evs.last(), Some(Event::Closed)), "{evs:?}");
    }
    assert!(matches!(
        pending.recv_timeout(WAIT),
        Err(netactor::ReplyTimeoutError::Failed(Error::Closed))
    ));
    assert!(wait_until(WAIT, || reactor_threads() == base));
}

#[test]
fn every_connection_admitted_while_shutting_down_reports_closed() {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let _s = SERIAL.lock();
    // A peer that never accepts: the connections complete in its backlog
    // (or wait in SYN-SENT once it is full); either way only shutdown ends them.
    let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = peer.local_addr().unwrap();
    // The race is narrow: before the admission guard, 300 rounds (~2.5 s)
    // stranded a connection in 2 runs out of 3.
    for _round in 0..300 {
        let r = build(2, Duration::from_millis(300));
        let (tx, rx) = netactor::event_channel(10_000);
        let admitted = Mutex::new(Vec::new());
        let started = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    // Bounded: at most 300 connections per thread and round.
                    for _ in 0..300 {
                        match r.connect(addr, ConnectOptions::new(), tx.clone()) {
                            Ok(c) => {
                                started.fetch_add(1, Ordering::SeqCst);
                                admitted.lock().push(c); // kept: only shutdown closes it
                            }
                            Err(Error::Closed) => return,
                            Err(e) => panic!("connect failed with {e}"),
                        }
                    }
                });
            }
            // Shut down while the threads are still connecting.
            assert!(wait_until(WAIT, || started.load(Ordering::SeqCst) >= 30));
            r.shutdown();
        });
        let ids: HashSet<_> = admitted.lock().iter().map(|c| c.id()).collect();
        let mut closed = HashSet::new();
        while closed.len() < ids.len() {
            match rx.recv_timeout(WAIT) {
                Ok((id, Event::Closed)) => assert!(closed.insert(id), "two Closed for {id:?}"),
                Ok(_) => {}
                Err(_) => panic!(
                    "{} of {} admitted connections never reported Closed",
                    ids.len() - closed.len(),
                    ids.len()
                ),
            }
        }
        assert_eq!(closed, ids);
    }
}
