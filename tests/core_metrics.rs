//! `Reactor::metrics` and the extended `Stats`, over real loopback sockets:
//! known traffic and known failures in, exact counts out.

mod common;
mod tls_support;

use common::{accept_placed, metrics_until};
use netactor::framing::{Chunk, Line};
use netactor::{
    CloseCause, ConnectOptions, Event, ListenOptions, Options, Reactor, ReactorBuilder, TlsState,
};
use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tls_support::*;

fn peer(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

#[test]
fn counts_connections_bytes_and_stats() {
    let r = reactor(2);
    let l = r.listen(any_port(), ListenOptions::new()).unwrap();
    let mut p = peer(l.local_addr());
    let conn = l.accept_timeout(WAIT).unwrap();
    // A line in two parts: the first stays in the read buffer.
    let reply = conn.push_read(Line::new()).unwrap();
    p.write_all(b"hel").unwrap();
    let s = {
        let end = Instant::now() + WAIT;
        loop {
            let s = conn.stats();
            if s.read_buffered == 3 {
                break s;
            }
            assert!(Instant::now() < end, "{s:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    assert_eq!(s.bytes_read, 3);
    assert!(s.last_read.is_some());
    assert_eq!(s.last_write, None);
    assert_eq!(s.tls, TlsState::None);
    assert_eq!(s.tls_version, None);
    assert_eq!(s.peer_addr, Some(p.local_addr().unwrap()));
    let m = r.metrics();
    assert_eq!(m.read_buffered_bytes, 3);
    assert_eq!(m.connections_open, 1);
    assert_eq!(m.connections_accepted, 1);
    p.write_all(b"lo\n").unwrap();
    let line = reply.recv_timeout(WAIT).unwrap();
    assert_eq!(&line.line[..], b"hello");
    conn.write(&b"12345"[..]).unwrap();
    let mut back = [0u8; 5];
    p.read_exact(&mut back).unwrap();
    // Published at the end of the turn that wrote (the peer may read first).
    let end = Instant::now() + WAIT;
    let s = loop {
        let s = conn.stats();
        if s.last_write.is_some() {
            break s;
        }
        assert!(Instant::now() < end, "{s:?}");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(s.read_buffered, 0);
    assert!(s.last_write >= s.last_read, "{s:?}");
    // The peer closes while a read waits: EOF; the application closes its
    // side too (a channel-mode connection stays open after EOF until then).
    let _pending = conn.push_read(Line::new()).unwrap();
    drop(p);
    wait_event(l.events(), |e| matches!(e, Event::Eof));
    conn.close().unwrap();
    let m = metrics_until(&r, WAIT, "closed", |m| m.connections_closed == 1);
    assert_eq!(m.closed_by(CloseCause::Eof), 1, "{m:#?}");
    assert_eq!(m.connections_open, 0);
    assert_eq!(m.bytes_read, 6);
    assert_eq!(m.bytes_written, 5);
    assert!(m.read_calls >= 2);
    assert_eq!(m.write_calls, 1);
    assert_eq!(m.frames_decoded, 1);
    // `write` is a mailbox message, and so is `push_read`.
    assert!(m.mailbox_messages >= 2);
    assert_eq!(m.read_buffered_bytes, 0);
    assert_eq!(m.write_queued_bytes, 0);
    assert_eq!(m.workers.len(), 2);
    assert!(m.workers.iter().map(|w| w.turns).sum::<u64>() >= 3);
    assert!(m.polls > 0);
    // The text form agrees.
    let text = m.to_prometheus();
    assert!(text.contains("netactor_connections_closed_total{cause=\"eof\"} 1\n"));
    assert!(text.contains("netactor_read_bytes_total 6\n"));
}

#[test]
fn counts_close_causes_and_queued_bytes() {
    let r = reactor(1);
    // A read buffer limit: a line longer than it fails the connection.
    let small = Options::new().rbuf_max(64);
    let l = r
        .listen(any_port(), ListenOptions::new().options(small))
        .unwrap();
    let mut p = peer(l.local_addr());
    let conn = l.accept_timeout(WAIT).unwrap();
    let _reply = conn.push_read(Line::new()).unwrap();
    p.write_all(&[b'x'; 200]).unwrap();
    let m = metrics_until(&r, WAIT, "no_space close", |m| m.connections_closed == 1);
    assert_eq!(m.closed_by(CloseCause::NoSpace), 1, "{m:#?}");
    drop(p);

    // A reset from the peer (SO_LINGER 0) while a read waits.
    let p = peer(l.local_addr());
    let conn2 = l.accept_timeout(WAIT).unwrap();
    let _reply = conn2.push_read(Chunk::new(10)).unwrap();
    socket2::SockRef::from(&p)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(p);
    let m = metrics_until(&r, WAIT, "reset close", |m| m.connections_closed == 2);
    assert_eq!(m.closed_by(CloseCause::Reset), 1, "{m:#?}");

    // Closed by the application.
    let _p = peer(l.local_addr());
    let conn3 = l.accept_timeout(WAIT).unwrap();
    conn3.close().unwrap();
    let m = metrics_until(&r, WAIT, "local close", |m| m.connections_closed == 3);
    assert_eq!(m.closed_by(CloseCause::Local), 1, "{m:#?}");

    // Queued write bytes: a peer that does not read, sent more than the
    // kernel's buffers hold.
    let big = Options::new().wbuf_max(64 << 20);
    let l2 = r
        .listen(any_port(), ListenOptions::new().options(big))
        .unwrap();
    let p4 = peer(l2.local_addr());
    let conn4 = l2.accept_timeout(WAIT).unwrap();
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..32 {
        conn4.write(chunk.clone()).unwrap();
    }
    let m = metrics_until(&r, WAIT, "queued bytes", |m| m.write_queued_bytes > 0);
    assert!(m.write_queued_bytes <= 32 << 20);
    assert!(conn4.stats().write_queued > 0);
    drop(p4);
    drop(conn);
    // The gauge is released as the connection finishes, which the snapshot
    // may see a moment after the open count drops: both must reach zero.
    metrics_until(&r, WAIT, "gauges back to zero", |m| {
        m.connections_open == 0 && m.write_queued_bytes == 0
    });
}

#[test]
fn counts_accept_pauses_at_the_connection_limit() {
    let r = reactor(1);
    let l = r
        .listen(any_port(), ListenOptions::new().max_connections(1))
        .unwrap();
    let _a = peer(l.local_addr());
    let _c = l.accept_timeout(WAIT).unwrap();
    let _b = peer(l.local_addr());
    let m = metrics_until(&r, WAIT, "a pause", |m| m.accept_pauses[2] == 1);
    assert_eq!(m.accept_pauses, [0, 0, 1]);
    assert_eq!(m.connections_accepted, 1);
}

#[test]
fn counts_tls_handshakes_by_version_and_failures() {
    let pki = Pki::new();
    let r = reactor(2);
    let l = tls_listener_with(&r, &pki, Options::new(), |ctx| {
        ctx.set_streaming(Some(netactor::framing::Raw));
        |ctx: &mut netactor::Ctx<'_>, ev: Event| {
            if let Event::Read(f) = ev {
                let _ = ctx.write(f.into_bytes().unwrap());
            }
        }
    });
    let (tx, rx) = netactor::event_channel(64);
    let conn = r
        .connect(
            l.local_addr(),
            ConnectOptions::new().tls(
                pki.client_config(),
                Some(ServerName::try_from("localhost").unwrap()),
            ),
            tx,
        )
        .unwrap();
    wait_event(&rx, |e| matches!(e, Event::TlsEstablished));
    let s = conn.stats();
    assert_eq!(s.tls, TlsState::Established);
    assert_eq!(s.tls_version, Some(rustls::ProtocolVersion::TLSv1_3));
    // Both ends of the handshake are on this reactor.
    let m = metrics_until(&r, WAIT, "two handshakes", |m| m.tls_handshakes[1] == 2);
    assert_eq!(m.tls_handshakes, [0, 2, 0]);
    assert_eq!(m.connections_connected, 1);
    assert_eq!(m.connections_accepted, 1);

    // Not TLS at all: the server's handshake fails.
    let mut p = peer(l.local_addr());
    p.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut sink = Vec::new();
    let _ = p.read_to_end(&mut sink);
    let m = metrics_until(&r, WAIT, "a failed handshake", |m| {
        m.tls_handshake_failures.iter().sum::<u64>() == 1
    });
    assert_eq!(m.closed_by(CloseCause::Tls), 1, "{m:#?}");
    drop(conn);
}

/// The worker's own counters: one worker behind a dedicated poller, no
/// spinning, so every spaced-out exchange is a wake-up, a turn and a park;
/// every handle call is one mailbox message, counted exactly.
#[test]
fn counts_worker_turns_parks_wakeups_mail_and_timers() {
    let r = Reactor::builder()
        .workers(1)
        .dedicated_poller(true)
        .spin(Duration::ZERO)
        .adaptive_spin(false)
        .build()
        .unwrap();
    let l = r.listen(any_port(), ListenOptions::new()).unwrap();
    let mut p = peer(l.local_addr());
    let conn = l.accept_timeout(WAIT).unwrap();
    // The connection is set up and idle: everything after this is ours.
    p.write_all(b"0").unwrap();
    let first = conn
        .push_read(Chunk::new(1))
        .unwrap()
        .recv_timeout(WAIT)
        .unwrap();
    assert_eq!(&first[..], b"0");
    let m0 = metrics_until(&r, WAIT, "idle", |m| m.workers[0].parks > 0);
    const N: u64 = 20;
    for i in 0..N {
        // A spaced-out exchange: the worker is (almost always) parked when
        // each one starts.
        std::thread::sleep(Duration::from_millis(10));
        conn.write(format!("{:02}", i % 100)).unwrap();
        let mut two = [0u8; 2];
        p.read_exact(&mut two).unwrap();
        assert_eq!(&two, format!("{:02}", i % 100).as_bytes());
    }
    conn.set_timeout(netactor::Inactivity::Read, Some(Duration::from_secs(60)))
        .unwrap();
    // N writes and one set_timeout: N + 1 mailbox messages, exactly.
    let m = metrics_until(&r, WAIT, "mail", |m| {
        m.mailbox_messages > m0.mailbox_messages + N
            && m.workers[0].timers_armed > m0.workers[0].timers_armed
    });
    assert_eq!(m.mailbox_messages, m0.mailbox_messages + N + 1, "{m:#?}");
    let (w0, w) = (&m0.workers[0], &m.workers[0]);
    // Each message took a turn of its own (the next is sent only after the
    // answer); each found the worker parked, woke it, and it parked again —
    // counted with slack for a loaded machine, where the worker may not yet
    // have parked 10 ms after an answer.
    assert!(w.turns - w0.turns >= N, "{w0:#?} → {w:#?}");
    assert!(w.wakeups - w0.wakeups >= N / 2, "{w0:#?} → {w:#?}");
    assert!(w.parks - w0.parks >= N / 2, "{w0:#?} → {w:#?}");
    assert!(w.timers_armed > w0.timers_armed, "{w:#?}");
    assert!(w.longest_round > Duration::ZERO, "{w:#?}");
    // With a dedicated poller the worker never polls itself; the poller
    // does (mail wakes the worker directly, so not once per message).
    assert_eq!(w.polls, 0, "{w:#?}");
    assert!(m.polls > 0, "{m:#?}");
    assert_eq!(w.connections_open, 1);
}

/// An application that does not accept: the listener pauses (reason
/// "backlog") instead of growing its accept queue.
#[test]
fn counts_accept_pauses_when_the_application_does_not_accept() {
    let r = reactor(1);
    let l = r
        .listen(any_port(), ListenOptions::new().incoming_capacity(1))
        .unwrap();
    let clients: Vec<TcpStream> = (0..3).map(|_| peer(l.local_addr())).collect();
    // One queued, the next one finds the queue full.
    let m = metrics_until(&r, WAIT, "backlog pause", |m| m.accept_pauses[1] > 0);
    assert_eq!(m.accept_pauses[0], 0, "{m:#?}");
    // Accepting resumes the listener: every client gets its connection.
    for _ in &clients {
        assert!(l.accept_timeout(WAIT).is_some());
    }
}

/// Two workers, no spinning, and a channel-mode listener with one
/// connection on worker 0 and one on worker 1 (an accepted connection
/// stays on the accepting thread's worker while the counts are near each
/// other, so connections are accepted one at a time until each worker has
/// one; each is attributed by the worker whose open count rose).
struct TwoWorkers {
    r: Reactor,
    _l: netactor::Listener,
    /// Peer and connection on worker 0, then on worker 1.
    c0: netactor::Connection,
    p1: TcpStream,
    c1: netactor::Connection,
    _p0: TcpStream,
}

fn two_workers() -> TwoWorkers {
    two_workers_with(|b| b)
}

/// Two workers, built with `opts` applied, and one connection on each.
fn two_workers_with(opts: impl FnOnce(ReactorBuilder) -> ReactorBuilder) -> TwoWorkers {
    let r = opts(
        Reactor::builder()
            .workers(2)
            .spin(Duration::ZERO)
            .adaptive_spin(false)
            .shutdown_timeout(Duration::from_secs(2)),
    )
    .build()
    .unwrap();
    let l = r.listen(any_port(), ListenOptions::new()).unwrap();
    // A connection starts on the worker that accepted it: usually both
    // start on the same one. The first then moves to the other once it
    // has run enough turns (`Metrics::workers[_].moved_in`).
    let mut placed = Vec::new();
    for n in 1..=2u64 {
        placed.push(accept_placed(&r, &l, n));
    }
    if placed[0].2 == placed[1].2 {
        let other = 1 - placed[0].2;
        let end = Instant::now() + WAIT;
        // Turns on the first connection until it moves (the second keeps
        // its worker hosting more: 2 against 0).
        while r.metrics().workers[other].moved_in == 0 {
            assert!(Instant::now() < end, "the first connection never moved");
            let (tx, rx) = crossbeam_channel::bounded(1);
            placed[0]
                .1
                .call(move |_| {
                    let _ = tx.send(());
                })
                .unwrap();
            rx.recv_timeout(WAIT).unwrap();
        }
        placed[0].2 = other;
    }
    let (second, first) = (placed.pop().unwrap(), placed.pop().unwrap());
    let ((p0, c0, _), (p1, c1, _)) = if first.2 == 0 {
        (first, second)
    } else {
        (second, first)
    };
    TwoWorkers {
        r,
        _l: l,
        c0,
        p1,
        c1,
        _p0: p0,
    }
}

/// Blocks the worker that owns `c`, worker 1, in a turn: a `call` that
/// waits on a channel (bounded) until the returned sender is dropped or
/// sent to. Mail is run by the connection's next turn, which is normally
/// its owner's — but a readiness event a borrower runs (left from the
/// connection's start, while the owner was parked) takes the mail with it;
/// then the call ran on the wrong thread and is posted again.
fn block_worker(c: &netactor::Connection) -> crossbeam_channel::Sender<()> {
    let end = Instant::now() + WAIT;
    loop {
        let (started_tx, started) = crossbeam_channel::bounded(1);
        let (release, released) = crossbeam_channel::bounded::<()>(1);
        c.call(move |_| {
            let on = std::thread::current().name().unwrap_or("").to_string();
            let _ = started_tx.send(on);
            let _ = released.recv_timeout(Duration::from_secs(30));
        })
        .unwrap();
        if started.recv_timeout(WAIT).unwrap() == "netactor-worker-1" {
            return release;
        }
        drop(release);
        assert!(Instant::now() < end, "the call never ran on worker 1");
    }
}

/// Makes worker 0 take the poller role: mail for its connection wakes it
/// (or interrupts its wait), it runs the turn, and being idle polls again.
/// Returns once it has started that wait (`polls` counted).
fn worker0_polls(t: &TwoWorkers) {
    let before = t.r.metrics().workers[0].polls;
    t.c0.call(|_| {}).unwrap();
    metrics_until(&t.r, WAIT, "worker 0 polling", |m| {
        m.workers[0].polls > before
    });
}

/// Readiness found by the poller-role holder for a connection whose worker
/// is busy in a turn is queued for that worker: one hand-off, exactly.
#[test]
fn counts_events_handed_to_a_busy_worker() {
    let mut t = two_workers();
    // Worker 1 is busy (a long turn on c1); only worker 0 can poll.
    // The read is queued first, so the data completes it.
    let reply = t.c1.push_read(Chunk::new(1)).unwrap();
    let release = block_worker(&t.c1);
    worker0_polls(&t);
    let m0 = t.r.metrics();
    // Data for c1: worker 0's wait finds it, nothing of its own, and cannot
    // take worker 1's state (held by its busy thread): handed over.
    t.p1.write_all(b"x").unwrap();
    let m = metrics_until(&t.r, WAIT, "a hand-off", |m| {
        m.workers[0].handed_off > m0.workers[0].handed_off
    });
    assert_eq!(
        m.workers[0].handed_off,
        m0.workers[0].handed_off + 1,
        "{m:#?}"
    );
    assert_eq!(m.workers[0].borrowed, m0.workers[0].borrowed, "{m:#?}");
    // Worker 1 runs the readiness once free, and the read completes.
    drop(release);
    assert_eq!(&reply.recv_timeout(WAIT).unwrap()[..], b"x");
    let m = t.r.metrics();
    assert_eq!(m.workers[1].handed_off, m0.workers[1].handed_off);
    assert_eq!(m.workers[1].borrowed, m0.workers[1].borrowed);
}

/// Worker 0 holds the poller role and worker 1 is parked; then `data`
/// arrives for worker 1's connection, completing a read queued before.
/// Returns the metrics from just before the data was sent.
fn data_for_a_parked_worker(t: &mut TwoWorkers, data: &[u8]) -> netactor::Metrics {
    // Worker 0 must hold the role while worker 1 parks: keep worker 1 busy
    // until worker 0 waits on the poller, then let it finish; finding the
    // role taken, it parks.
    // The read is queued first, so the data completes it.
    let reply = t.c1.push_read(Chunk::new(data.len())).unwrap();
    let release = block_worker(&t.c1);
    worker0_polls(t);
    let parks = t.r.metrics().workers[1].parks;
    drop(release);
    metrics_until(&t.r, WAIT, "worker 1 parked", |m| {
        m.workers[1].parks > parks
    });
    let m0 = t.r.metrics();
    t.p1.write_all(data).unwrap();
    assert_eq!(&reply.recv_timeout(WAIT).unwrap()[..], data);
    m0
}

/// By default, readiness the poller-role holder finds for a *parked*
/// worker's connection is handed to that worker, which is woken and runs
/// it on its own thread: one hand-off and one wake-up, nothing borrowed,
/// and the turn runs on `netactor-worker-1`. (Before `run_for_parked`
/// became opt-in, the holder ran it itself: no hand-off, no wake-up.)
#[test]
fn events_for_a_parked_worker_are_handed_to_it_by_default() {
    let mut t = two_workers();
    let m0 = data_for_a_parked_worker(&mut t, b"w");
    let m = metrics_until(&t.r, WAIT, "a hand-off", |m| {
        m.workers[0].handed_off > m0.workers[0].handed_off
            && m.workers[1].turns > m0.workers[1].turns
    });
    assert_eq!(
        m.workers[0].handed_off,
        m0.workers[0].handed_off + 1,
        "{m:#?}"
    );
    assert_eq!(m.workers[0].borrowed, m0.workers[0].borrowed, "{m:#?}");
    assert_eq!(m.workers[0].turns, m0.workers[0].turns, "{m:#?}");
    assert!(m.workers[1].wakeups > m0.workers[1].wakeups, "{m:#?}");
    // And the connection's next turn is on its own worker's thread.
    let (tx, rx) = crossbeam_channel::bounded(1);
    t.c1.call(move |_| {
        let _ = tx.send(std::thread::current().name().unwrap_or("").to_string());
    })
    .unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "netactor-worker-1");
}

/// With `run_for_parked`, readiness found by the poller-role holder, with
/// nothing of its own, for a parked worker's connection is run by the
/// holder itself under the parked worker's state lock: one borrowed task,
/// exactly, and the turn is counted on the connection's worker.
#[test]
fn counts_events_run_for_a_parked_worker() {
    let mut t = two_workers_with(|b| b.run_for_parked(true));
    let m0 = data_for_a_parked_worker(&mut t, b"y");
    // The turn is counted on worker 1 (its connection's), not worker 0,
    // once the round ends: just after the read was answered.
    let m = metrics_until(&t.r, WAIT, "a borrowed task", |m| {
        m.workers[0].borrowed > m0.workers[0].borrowed && m.workers[1].turns > m0.workers[1].turns
    });
    assert_eq!(m.workers[0].borrowed, m0.workers[0].borrowed + 1, "{m:#?}");
    assert_eq!(m.workers[0].handed_off, m0.workers[0].handed_off, "{m:#?}");
    assert_eq!(m.workers[0].turns, m0.workers[0].turns, "{m:#?}");
    assert_eq!(m.workers[1].wakeups, m0.workers[1].wakeups, "{m:#?}");
}

/// Streaming frames handed straight to a handler are counted once for
/// both totals (frames decoded, events delivered); the handler's other
/// events are counted as delivered. Exact.
#[test]
fn counts_frames_and_events_delivered_to_a_handler() {
    let r = reactor(1);
    let l = r
        .listen_with(any_port(), ListenOptions::new(), |ctx| {
            ctx.set_streaming(Some(Line::new()));
            |ctx: &mut netactor::Ctx<'_>, ev: Event| {
                if let Event::Eof = ev {
                    ctx.close();
                }
            }
        })
        .unwrap();
    let mut p = peer(l.local_addr());
    p.write_all(b"a\nb\nc\n").unwrap();
    let m = metrics_until(&r, WAIT, "three frames", |m| m.frames_decoded >= 3);
    assert_eq!(m.frames_decoded, 3, "{m:#?}");
    assert_eq!(m.events_delivered, 3, "{m:#?}");
    // The peer's FIN: `Eof`, then `Closed` once the handler closed.
    drop(p);
    // (`Closed` is counted as delivered just after the close is.)
    let m = metrics_until(&r, WAIT, "closed", |m| {
        m.connections_closed == 1 && m.events_delivered >= 5
    });
    assert_eq!(m.frames_decoded, 3, "{m:#?}");
    assert_eq!(m.events_delivered, 5, "{m:#?}");
}

/// The live-connection registries hold uncounted pointers to each
/// connection's shared state (`conn/actor/live.rs`): snapshots and
/// `connections()` taken without pause while connections open and close on
/// both workers must only ever reach live state, never see a count go back,
/// and in the end count every byte exactly once.
#[test]
fn snapshots_during_churn_count_every_byte_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const CLIENTS: usize = 2;
    const EACH: usize = 300;
    let r = reactor(2);
    let l = common::echo_listener(&r, ListenOptions::new());
    let addr = l.local_addr();
    // Open throughout: every snapshot lists at least this one.
    let held = peer(addr);
    metrics_until(&r, WAIT, "held open", |m| m.connections_open == 1);
    let stop = AtomicBool::new(false);
    // Cleared just before `held` is dropped: a listing taken while it was
    // still set from before to after must include `held`.
    let held_open = AtomicBool::new(true);
    let (snapshots, checked) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let (mut snapshots, mut checked) = (0u64, 0u64);
            let (mut read, mut written) = (0, 0);
            loop {
                let done = stop.load(Ordering::Relaxed);
                let m = r.metrics();
                assert!(m.bytes_read >= read, "{} < {read}", m.bytes_read);
                assert!(
                    m.bytes_written >= written,
                    "{} < {written}",
                    m.bytes_written
                );
                (read, written) = (m.bytes_read, m.bytes_written);
                let open_before = held_open.load(Ordering::SeqCst);
                let listed = r.connections();
                for c in &listed {
                    let st = c.stats();
                    assert!(st.bytes_read <= 64 && st.bytes_written <= 64, "{st:?}");
                }
                if open_before && held_open.load(Ordering::SeqCst) {
                    assert!(!listed.is_empty(), "the held connection is not listed");
                    checked += 1;
                }
                snapshots += 1;
                if done {
                    break (snapshots, checked);
                }
            }
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|t| {
                s.spawn(move || {
                    for i in 0..EACH {
                        let mut p = peer(addr);
                        p.set_nodelay(true).unwrap();
                        let msg = [(t * EACH + i) as u8; 64];
                        p.write_all(&msg).unwrap();
                        let mut back = [0u8; 64];
                        p.read_exact(&mut back).unwrap();
                        assert_eq!(back, msg);
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        held_open.store(false, Ordering::SeqCst);
        drop(held);
        let total = (CLIENTS * EACH) as u64 + 1;
        let m = metrics_until(&r, WAIT, "all closed", |m| m.connections_closed == total);
        stop.store(true, Ordering::Relaxed);
        let counts = watcher.join().unwrap();
        assert_eq!(m.bytes_read, (total - 1) * 64, "{m:#?}");
        assert_eq!(m.bytes_written, (total - 1) * 64, "{m:#?}");
        assert_eq!(m.connections_open, 0);
        counts
    });
    // (Snapshots taken after `held` went are not checked: how many there
    // are depends on how long the last closes take.)
    assert!(
        snapshots > 0 && checked > 0,
        "{snapshots} snapshots, {checked} taken while the held connection was open"
    );
}
