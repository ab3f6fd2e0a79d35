//! Connection limits per listener and per reactor: at the limit accepting
//! pauses (the kernel backlog holds the rest) and resumes as connections
//! close; counted exactly, also when many close at once.

mod common;

use common::*;
use netactor::{ConnectOptions, Ctx, Error, Event, Limit, ListenOptions, Reactor};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A server that greets each accepted connection with "hi\n" and closes it
/// when the client sends "bye\n"; counts the connections open right now
/// and the most ever open at once.
fn greeter(
    r: &Reactor,
    lo: ListenOptions,
) -> (netactor::Listener, Arc<(AtomicUsize, AtomicUsize)>) {
    let counts = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let c = counts.clone();
    let l = r
        .listen_with(any_port(), lo, move |ctx| {
            let now = c.0.fetch_add(1, Ordering::SeqCst) + 1;
            c.1.fetch_max(now, Ordering::SeqCst);
            ctx.write(&b"hi\n"[..]).unwrap();
            ctx.set_streaming(Some(netactor::framing::Line::new()));
            let c = c.clone();
            move |ctx: &mut Ctx<'_>, ev: Event| match ev {
                Event::Read(_) | Event::Eof => ctx.close(),
                Event::Closed => {
                    c.0.fetch_sub(1, Ordering::SeqCst);
                }
                _ => {}
            }
        })
        .unwrap();
    (l, counts)
}

fn client(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Whether the server greeted `s` within `t` (i.e. accepted it).
fn greeted(s: &mut TcpStream, t: Duration) -> bool {
    s.set_read_timeout(Some(t)).unwrap();
    let mut b = [0u8; 3];
    let ok = s.read_exact(&mut b).is_ok();
    s.set_read_timeout(Some(WAIT)).unwrap();
    ok && &b == b"hi\n"
}

#[test]
fn a_listener_at_its_limit_pauses_and_resumes_as_connections_close() {
    let r = reactor(2);
    let (l, counts) = greeter(&r, ListenOptions::new().max_connections(3));
    let mut first: Vec<TcpStream> = (0..3).map(|_| client(l.local_addr())).collect();
    for s in &mut first {
        assert!(greeted(s, WAIT));
    }
    // Two more: connected in the kernel, not accepted.
    let mut waiting: Vec<TcpStream> = (0..2).map(|_| client(l.local_addr())).collect();
    for s in &mut waiting {
        assert!(
            !greeted(s, Duration::from_millis(300)),
            "accepted over the limit"
        );
    }
    assert_eq!(counts.0.load(Ordering::SeqCst), 3);
    // One closes: exactly one waiting client is accepted.
    first[0].write_all(b"bye\n").unwrap();
    let mut order = Vec::new();
    for (i, s) in waiting.iter_mut().enumerate() {
        if greeted(s, WAIT) {
            order.push(i);
            break;
        }
    }
    assert_eq!(order.len(), 1, "nobody was accepted after a close");
    let other = 1 - order[0];
    assert!(!greeted(&mut waiting[other], Duration::from_millis(300)));
    first[1].write_all(b"bye\n").unwrap();
    assert!(greeted(&mut waiting[other], WAIT));
    assert_eq!(
        counts.1.load(Ordering::SeqCst),
        3,
        "more than 3 were ever open"
    );
}

#[test]
fn the_reactor_limit_covers_listeners_connects_and_adopts() {
    let r = Reactor::builder()
        .workers(2)
        .max_connections(2)
        .shutdown_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let (l1, _) = greeter(&r, ListenOptions::new());
    let (l2, _) = greeter(&r, ListenOptions::new());
    let mut a = client(l1.local_addr());
    let mut b = client(l2.local_addr());
    assert!(greeted(&mut a, WAIT));
    assert!(greeted(&mut b, WAIT));
    let mut c = client(l1.local_addr());
    assert!(!greeted(&mut c, Duration::from_millis(300)));
    // Outgoing connections count too.
    let (tx, _e) = netactor::event_channel(4);
    match r.connect(l2.local_addr(), ConnectOptions::new(), tx) {
        Err(Error::NoSpace {
            limit: Limit::Connections,
            max: 2,
        }) => {}
        other => panic!("expected NoSpace(Connections), got {other:?}"),
    }
    a.write_all(b"bye\n").unwrap();
    assert!(greeted(&mut c, WAIT));
}

#[test]
fn counted_exactly_when_many_close_at_once() {
    const LIMIT: usize = 8;
    const CLIENTS: usize = 64;
    let r = reactor(2);
    let (l, counts) = greeter(&r, ListenOptions::new().max_connections(LIMIT).backlog(128));
    let addr = l.local_addr();
    // Every client waits for its greeting, then leaves at once: closes race
    // with accepts on both workers.
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = client(addr);
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut b = [0u8; 3];
                s.read_exact(&mut b).unwrap();
                s.write_all(b"bye\n").unwrap();
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(wait_until(WAIT, || counts.0.load(Ordering::SeqCst) == 0));
    let most = counts.1.load(Ordering::SeqCst);
    assert!(most <= LIMIT, "{most} open at once, limit {LIMIT}");
    // And the limit still admits a full set afterwards (no slot leaked).
    let mut again: Vec<TcpStream> = (0..LIMIT).map(|_| client(addr)).collect();
    for s in &mut again {
        assert!(greeted(s, WAIT), "a slot leaked");
    }
}
