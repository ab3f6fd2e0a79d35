//! Addresses as users write them, and a custom resolver, on real sockets.

mod common;

use common::*;
use netactor::framing::Line;
use netactor::{ConnectOptions, Error, Event, Target};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

#[test]
fn parsed_targets_connect() {
    let r = reactor(1);
    let l = TcpListener::bind(any_port()).unwrap();
    let port = l.local_addr().unwrap().port();
    for text in [
        format!("127.0.0.1:{port}"),
        format!("127.0.0.1 {port}"),
        "127.0.0.1".to_string(),
    ] {
        let target = Target::parse(&text, Some(port)).unwrap();
        let (tx, events) = netactor::event_channel(8);
        let _c = r.connect(target, ConnectOptions::new(), tx).unwrap();
        let (_peer, _) = l.accept().unwrap();
        assert!(
            matches!(next_event(&events, WAIT), Event::Connected { .. }),
            "{text}"
        );
    }
    assert!(matches!(
        Target::parse("[::1]:", None),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn a_custom_resolver_runs_off_the_workers_and_its_addresses_are_used() {
    let r = reactor(1);
    let l = TcpListener::bind(any_port()).unwrap();
    let real: SocketAddr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let co = ConnectOptions::new().resolver(move |host, port| {
        s2.lock().unwrap().push((
            host.to_string(),
            port,
            std::thread::current().name().map(str::to_string),
        ));
        match host {
            "service.test" => Ok(vec![SocketAddr::from(([127, 0, 0, 1], real.port()))]),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "unknown host",
            )),
        }
    });
    let (tx, events) = netactor::event_channel(8);
    let conn = r.connect("service.test:1", co.clone(), tx).unwrap();
    let (mut peer, _) = l.accept().unwrap();
    assert!(matches!(next_event(&events, WAIT), Event::Connected { .. }));
    peer.write_all(b"hi\n").unwrap();
    let line = conn
        .push_read(Line::new())
        .unwrap()
        .recv_timeout(WAIT)
        .unwrap();
    assert_eq!(&line.line[..], b"hi");
    assert_eq!(
        seen.lock().unwrap()[0],
        (
            "service.test".to_string(),
            1,
            Some("netactor-resolve".to_string())
        )
    );
    // A name the resolver refuses: NoAddress, fatal.
    let (tx, events) = netactor::event_channel(8);
    let _c = r.connect("nowhere.test:80", co, tx).unwrap();
    match next_event(&events, WAIT) {
        Event::Error {
            error: Error::NoAddress(why),
            fatal: true,
        } => assert!(why.contains("unknown host"), "{why}"),
        other => panic!("expected NoAddress, got {other:?}"),
    }
}
