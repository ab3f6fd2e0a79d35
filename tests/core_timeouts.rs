//! Inactivity timeouts: read, write and activity timers fire as non-fatal
//! events, repeat each period, can be set, reset and cleared at any time.
//!
//! Run: `cargo test --release --test core_timeouts`

mod common;

use common::*;
use netactor::framing::Raw;
use netactor::{Event, Inactivity, Options, Reactor, TimeoutKind};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn shared_reactor() -> &'static Reactor {
    static R: OnceLock<Reactor> = OnceLock::new();
    R.get_or_init(|| reactor(2))
}

const MS: fn(u64) -> Duration = Duration::from_millis;

/// Timestamps of the next `n` timeout events of `kind` (other events are errors).
fn timeouts(p: &Pair, kind: TimeoutKind, n: usize) -> Vec<Instant> {
    (0..n)
        .map(|_| match p.next_event() {
            Event::Timeout(k) if k == kind => Instant::now(),
            other => panic!("expected Timeout({kind:?}), got {other:?}"),
        })
        .collect()
}

#[test]
fn read_timeout_repeats_each_period_and_is_not_fatal() {
    let mut p = pair(shared_reactor(), Options::new().read_timeout(Some(MS(100))));
    p.conn.set_streaming(Some(Raw)).unwrap();
    let t0 = Instant::now();
    let at = timeouts(&p, TimeoutKind::Read, 3);
    // The period counts from when the connection opened, a little before t0.
    assert!(at[0] - t0 >= MS(50), "first after {:?}", at[0] - t0);
    for w in at.windows(2) {
        let gap = w[1] - w[0];
        // Delivery jitter on a loaded machine can shorten one gap a little.
        assert!(gap >= MS(50) && gap < MS(1000), "gap {gap:?}");
    }
    // Still a working connection.
    p.send(b"alive");
    match p.next_event() {
        Event::Read(f) => assert_eq!(&f.into_bytes().unwrap()[..], b"alive"),
        other => panic!("{other:?}"),
    }
    p.conn.write(&b"ok"[..]).unwrap();
    assert_eq!(p.recv_exact(2), b"ok");
}

#[test]
fn read_timeout_ignores_writes_and_write_timeout_ignores_reads() {
    let mut p = pair(
        shared_reactor(),
        Options::new()
            .read_timeout(Some(MS(150)))
            .write_timeout(Some(MS(150))),
    );
    p.conn.set_streaming(Some(Raw)).unwrap();
    // We keep writing: only the read timer may fire.
    let end = Instant::now() + MS(400);
    let mut kinds = Vec::new();
    while Instant::now() < end {
        p.conn.write(&b"w"[..]).unwrap();
        if let Ok((_, ev)) = p.events().recv_timeout(MS(20)) {
            kinds.push(ev);
        }
    }
    assert!(
        kinds
            .iter()
            .all(|e| matches!(e, Event::Timeout(TimeoutKind::Read))),
        "{kinds:?}"
    );
    assert!(!kinds.is_empty(), "read timeout never fired while writing");
    // Drain what we wrote, then: the peer keeps sending, only the write timer may fire.
    let mut sink = vec![0u8; 1 << 16];
    let _ = std::io::Read::read(&mut p.peer, &mut sink);
    let end = Instant::now() + MS(400);
    let mut kinds = Vec::new();
    while Instant::now() < end {
        p.send(b"r");
        if let Ok((_, ev)) = p.events().recv_timeout(MS(20)) {
            if !matches!(ev, Event::Read(_)) {
                kinds.push(ev);
            }
        }
    }
    // A Read timeout armed during the first phase may still be due once.
    let writes = kinds
        .iter()
        .filter(|e| matches!(e, Event::Timeout(TimeoutKind::Write)))
        .count();
    assert!(
        writes >= 1,
        "write timeout never fired while reading: {kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .filter(|e| matches!(e, Event::Timeout(TimeoutKind::Read)))
            .count()
            <= 1,
        "{kinds:?}"
    );
}

#[test]
fn activity_timeout_waits_while_data_flows() {
    let mut p = pair(shared_reactor(), Options::new().timeout(Some(MS(150))));
    p.conn.set_streaming(Some(Raw)).unwrap();
    let end = Instant::now() + MS(450);
    while Instant::now() < end {
        p.send(b"tick");
        if let Ok((_, ev)) = p.events().recv_timeout(MS(30)) {
            assert!(matches!(ev, Event::Read(_)), "{ev:?}");
        }
    }
    // Flow stops: the activity timer fires about one period later.
    let t0 = Instant::now();
    let ev = wait_event(p.events(), WAIT, |e| !matches!(e, Event::Read(_)));
    assert!(
        matches!(ev, Event::Timeout(TimeoutKind::Activity)),
        "{ev:?}"
    );
    assert!(t0.elapsed() < MS(1000), "fired after {:?}", t0.elapsed());
}

#[test]
fn write_timeout_fires_while_idle_with_nothing_queued() {
    let p = pair(shared_reactor(), Options::new().write_timeout(Some(MS(80))));
    timeouts(&p, TimeoutKind::Write, 2);
}

#[test]
fn setting_a_timeout_counts_from_the_last_activity() {
    let p = pair(shared_reactor(), Options::new());
    std::thread::sleep(MS(300));
    // Idle for 300 ms already: a 100 ms timeout is overdue and fires at once.
    let t0 = Instant::now();
    p.conn.set_timeout(Inactivity::Any, Some(MS(100))).unwrap();
    timeouts(&p, TimeoutKind::Activity, 1);
    assert!(t0.elapsed() < MS(60), "{:?}", t0.elapsed());
    // ... and then every period.
    let t1 = Instant::now();
    timeouts(&p, TimeoutKind::Activity, 1);
    assert!(t1.elapsed() >= MS(80), "{:?}", t1.elapsed());
    // Cleared: no more events.
    p.conn.set_timeout(Inactivity::Any, None).unwrap();
    while p.events().recv_timeout(MS(10)).is_ok() {} // one may have been in flight
    assert!(p.events().recv_timeout(MS(250)).is_err());
}

#[test]
fn reset_postpones_the_timeout() {
    // Resets every 40 ms against a 400 ms period: generous for a loaded machine.
    let p = pair(shared_reactor(), Options::new().read_timeout(Some(MS(400))));
    let end = Instant::now() + MS(800);
    while Instant::now() < end {
        p.conn.reset_timeout(Inactivity::Read).unwrap();
        assert!(
            p.events().recv_timeout(MS(40)).is_err(),
            "timeout fired despite resets"
        );
    }
    let t0 = Instant::now();
    timeouts(&p, TimeoutKind::Read, 1);
    let took = t0.elapsed();
    assert!(took >= MS(300) && took < MS(1500), "{took:?}");
}

#[test]
fn shortening_and_lengthening_a_running_timer() {
    let p = pair(
        shared_reactor(),
        Options::new().write_timeout(Some(Duration::from_secs(10))),
    );
    // Shorter: the new period applies at once.
    p.conn
        .set_timeout(Inactivity::Write, Some(MS(100)))
        .unwrap();
    let t0 = Instant::now();
    timeouts(&p, TimeoutKind::Write, 1);
    assert!(t0.elapsed() < MS(1000));
    // Longer: the earlier deadline must not fire.
    p.conn
        .set_timeout(Inactivity::Write, Some(MS(600)))
        .unwrap();
    let t1 = Instant::now();
    timeouts(&p, TimeoutKind::Write, 1);
    assert!(t1.elapsed() >= MS(450), "fired after {:?}", t1.elapsed());
}

#[test]
fn handlers_can_set_and_reset_timeouts_from_the_worker() {
    let r = shared_reactor();
    let (tx, rx) = crossbeam_channel::bounded(16);
    let listener = r
        .listen_with(any_port(), netactor::ListenOptions::new(), move |ctx| {
            ctx.set_timeout(Inactivity::Any, Some(MS(60)));
            let tx = tx.clone();
            let mut n = 0;
            move |ctx: &mut netactor::Ctx<'_>, ev: Event| {
                if let Event::Timeout(k) = ev {
                    n += 1;
                    let _ = tx.send((k, Instant::now()));
                    if n == 2 {
                        ctx.set_timeout(Inactivity::Any, None);
                    }
                }
            }
        })
        .unwrap();
    let _peer = std::net::TcpStream::connect(listener.local_addr()).unwrap();
    for _ in 0..2 {
        let (k, _) = rx.recv_timeout(WAIT).expect("timeout event");
        assert_eq!(k, TimeoutKind::Activity);
    }
    assert!(rx.recv_timeout(MS(250)).is_err(), "cleared timer fired");
}

/// Connections that close with a long timeout armed leave their timer
/// entries behind; the worker compacts those away once its heap has
/// doubled (reactor/timers.rs) — and keeps a live connection's entry, which
/// fires as before. 2 500 connections with an hour's timeout, each closed:
/// two compactions at least on the one worker.
#[test]
fn a_live_timer_survives_the_compaction_of_closed_connections_timers() {
    use std::io::{Read, Write};
    let r = reactor(1);
    let p = pair(&r, Options::new().read_timeout(Some(MS(300))));
    p.conn.set_streaming(Some(Raw)).unwrap();
    let l = echo_listener(
        &r,
        netactor::ListenOptions::new()
            .options(Options::new().timeout(Some(Duration::from_secs(3600)))),
    );
    for _ in 0..2_500 {
        let mut c = std::net::TcpStream::connect(l.local_addr()).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        c.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
    }
    // What fired during the churn, then one more after it: the entry the
    // live connection re-armed survived the compactions.
    while p.events().try_recv().is_ok() {}
    let _ = timeouts(&p, TimeoutKind::Read, 1);
}
