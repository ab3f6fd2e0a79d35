//! Outgoing connections: refused, per-attempt timeout (a listener with a
//! full accept queue on 127.0.0.1 drops SYNs), multi-address fallback, the
//! prepare hook, off-thread name resolution, and requests queued while the
//! connection is still being made.
//!
//! Run: `cargo test --release --test core_connect`

mod common;

use common::*;
use netactor::framing::Line;
use netactor::{ConnectOptions, Error, Event, Options, Reactor, Target, TimeoutKind};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

fn shared_reactor() -> &'static Reactor {
    static R: OnceLock<Reactor> = OnceLock::new();
    R.get_or_init(|| reactor(2))
}

fn connect(
    target: impl Into<Target>,
    opts: ConnectOptions,
) -> (
    netactor::Connection,
    crossbeam_channel::Receiver<(netactor::ConnId, Event)>,
) {
    let (tx, rx) = netactor::event_channel(64);
    let conn = shared_reactor().connect(target, opts, tx).unwrap();
    (conn, rx)
}

fn fatal_error(evs: &[Event]) -> &Error {
    match evs {
        [Event::Error { error, fatal: true }, Event::Closed] => error,
        other => panic!("expected [fatal Error, Closed], got {other:?}"),
    }
}

/// A std listener that answers each line with the same line, on its own thread.
fn line_echo_server() -> SocketAddr {
    let l = TcpListener::bind(any_port()).unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                for line in BufReader::new(s).lines() {
                    let Ok(line) = line else { return };
                    if w.write_all(format!("{line}\n").as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn connect_refused_is_a_fatal_error_and_fails_queued_reads() {
    let (conn, rx) = connect(refused_addr(), ConnectOptions::new());
    // A loopback refusal can be quicker than this request: then it is refused too.
    let r = conn.push_read(Line::new());
    let evs = events_until_closed(&rx, WAIT);
    assert!(matches!(fatal_error(&evs), Error::ConnectionRefused));
    match r {
        // Failed with the connect error if the actor had taken it from its
        // mailbox, or with Closed if the failure came first.
        Ok(r) => assert!(matches!(
            r.recv_timeout(WAIT),
            Err(netactor::ReplyTimeoutError::Failed(
                Error::ConnectionRefused | Error::Closed
            ))
        )),
        Err(e) => assert!(matches!(e, Error::Closed)),
    }
    assert!(matches!(conn.write(&b"x"[..]), Err(Error::Closed)));
}

#[test]
fn connect_timeout_bounds_each_attempt() {
    let (addr, _keep, _fill) = blackhole();
    let t0 = Instant::now();
    let (_conn, rx) = connect(
        addr,
        ConnectOptions::new().options(Options::new().connect_timeout(Duration::from_millis(300))),
    );
    let evs = events_until_closed(&rx, WAIT);
    let took = t0.elapsed();
    assert!(
        matches!(fatal_error(&evs), Error::TimedOut(TimeoutKind::Connect)),
        "{evs:?}"
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn each_address_is_tried_in_turn_with_the_prepare_hook() {
    let good = line_echo_server();
    let (hole, _keep, _fill) = blackhole();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (c, s) = (calls.clone(), seen.clone());
    let t0 = Instant::now();
    let (conn, rx) = connect(
        vec![refused_addr(), hole, good],
        ConnectOptions::new()
            .options(Options::new().connect_timeout(Duration::from_millis(300)))
            .prepare(move |sock, addr| {
                c.fetch_add(1, Ordering::SeqCst);
                s.lock().push(addr);
                // A prepare hook may set options on the unconnected socket.
                sock.set_tcp_nodelay(true)
            }),
    );
    match next_event(&rx, WAIT) {
        Event::Connected { peer } => assert_eq!(peer, good),
        other => panic!("expected Connected, got {other:?}"),
    }
    // Refused fails fast; the black hole costs one connect timeout.
    assert!(t0.elapsed() >= Duration::from_millis(250));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(seen.lock()[2], good);
    conn.write(&b"ping\n"[..]).unwrap();
    let line = conn.push_read(Line::new()).unwrap();
    assert_eq!(&line.recv_timeout(WAIT).unwrap().line[..], b"ping");
}

#[test]
fn the_last_address_error_is_reported_when_all_fail() {
    let (hole, _keep, _fill) = blackhole();
    let short =
        ConnectOptions::new().options(Options::new().connect_timeout(Duration::from_millis(200)));
    let (_c, rx) = connect(vec![hole, refused_addr()], short.clone());
    let evs = events_until_closed(&rx, WAIT);
    assert!(matches!(fatal_error(&evs), Error::ConnectionRefused));
    let (_c, rx) = connect(vec![refused_addr(), hole], short);
    let evs = events_until_closed(&rx, WAIT);
    assert!(matches!(
        fatal_error(&evs),
        Error::TimedOut(TimeoutKind::Connect)
    ));
    let (_c, rx) = connect(Vec::<SocketAddr>::new(), ConnectOptions::new());
    let evs = events_until_closed(&rx, WAIT);
    assert!(matches!(fatal_error(&evs), Error::NoAddress(_)));
}

#[test]
fn a_failing_prepare_hook_fails_that_attempt_only() {
    let good = line_echo_server();
    let bad = refused_addr();
    let (_conn, rx) = connect(
        vec![bad, good],
        ConnectOptions::new().prepare(move |_, addr| {
            if addr == bad {
                Err(std::io::Error::other("no thanks"))
            } else {
                Ok(())
            }
        }),
    );
    assert!(matches!(next_event(&rx, WAIT), Event::Connected { peer } if peer == good));
}

#[test]
fn host_names_are_resolved_off_thread() {
    let good = line_echo_server();
    let (conn, rx) = connect(format!("localhost:{}", good.port()), ConnectOptions::new());
    match next_event(&rx, WAIT) {
        Event::Connected { peer } => {
            assert!(peer.ip().is_loopback());
            assert_eq!(peer.port(), good.port());
        }
        other => panic!("expected Connected, got {other:?}"),
    }
    conn.write(&b"resolved\n"[..]).unwrap();
    let l = conn.push_read(Line::new()).unwrap();
    assert_eq!(&l.recv_timeout(WAIT).unwrap().line[..], b"resolved");
}

#[test]
fn requests_made_while_connecting_apply_once_connected() {
    let good = line_echo_server();
    let (conn, rx) = connect(good, ConnectOptions::new());
    // All of this is posted before the connection can possibly be up.
    conn.write(&b"one\n"[..]).unwrap();
    let a = conn.push_read(Line::new()).unwrap();
    conn.write(&b"two\n"[..]).unwrap();
    let b = conn.push_read(Line::new()).unwrap();
    assert!(matches!(next_event(&rx, WAIT), Event::Connected { .. }));
    assert_eq!(&a.recv_timeout(WAIT).unwrap().line[..], b"one");
    assert_eq!(&b.recv_timeout(WAIT).unwrap().line[..], b"two");
}

#[test]
fn closing_while_connecting_cancels_quietly() {
    let (hole, _keep, _fill) = blackhole();
    let (conn, rx) = connect(hole, ConnectOptions::new());
    let r = conn.push_read(Line::new()).unwrap();
    conn.close().unwrap();
    let evs = events_until_closed(&rx, WAIT);
    assert!(matches!(evs[..], [Event::Closed]), "{evs:?}");
    assert!(matches!(
        r.recv_timeout(WAIT),
        Err(netactor::ReplyTimeoutError::Failed(Error::Closed))
    ));
}
