//! Panics in application code (handlers, handler factories, `call` and
//! `configure` closures, custom decoders) fail only their own connection with
//! `Error::Panicked`; peer input never panics a worker.
//!
//! Run: `cargo test --release --test core_panics`

mod common;

use bytes::BytesMut;
use common::*;
use netactor::framing::{DecodeError, Decoder, Line, Raw};
use netactor::{Ctx, Error, Event, ListenOptions, Options, Reactor};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::Duration;

/// One worker: every connection shares the thread a panic happened on.
fn one_worker() -> &'static Reactor {
    static R: OnceLock<Reactor> = OnceLock::new();
    R.get_or_init(|| {
        // Keep expected panics out of the test output.
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info.to_string();
            if !msg.contains("app bug") {
                prev(info);
            }
        }));
        reactor(1)
    })
}

fn assert_panicked_then_closed(evs: &[Event]) {
    match evs {
        [.., Event::Error {
            error: Error::Panicked(msg),
            fatal: true,
        }, Event::Closed] => assert!(msg.contains("app bug"), "{msg}"),
        other => panic!("expected [.., Error(Panicked), Closed], got {other:?}"),
    }
}

/// The worker still serves: a new connection on it echoes.
fn worker_still_serves(r: &Reactor) {
    let mut p = pair(r, Options::new());
    let line = p.conn.push_read(Line::new()).unwrap();
    p.send(b"still alive\n");
    assert_eq!(&line.recv_timeout(WAIT).unwrap().line[..], b"still alive");
}

#[test]
fn a_panicking_handler_fails_only_its_connection() {
    let r = one_worker();
    let (tx, rx) = crossbeam_channel::unbounded();
    let listener = r
        .listen_with(any_port(), ListenOptions::new(), move |ctx| {
            ctx.set_streaming(Some(Raw));
            let tx = tx.clone();
            move |ctx: &mut Ctx<'_>, ev: Event| {
                let boom =
                    matches!(&ev, Event::Read(f) if f.bytes().is_some_and(|b| &b[..] == b"boom"));
                let _ = tx.send((ctx.id(), ev));
                if boom {
                    panic!("app bug in handler");
                }
            }
        })
        .unwrap();
    let mut good = TcpStream::connect(listener.local_addr()).unwrap();
    let mut bad = TcpStream::connect(listener.local_addr()).unwrap();
    bad.set_read_timeout(Some(WAIT)).unwrap();
    good.write_all(b"fine").unwrap();
    let (good_id, _) = rx.recv_timeout(WAIT).unwrap();
    bad.write_all(b"boom").unwrap();
    let mut bad_evs = Vec::new();
    while !matches!(bad_evs.last(), Some(Event::Closed)) {
        let (id, ev) = rx
            .recv_timeout(WAIT)
            .expect("events of the panicking connection");
        assert_ne!(id, good_id, "the good connection got {ev:?}");
        bad_evs.push(ev);
    }
    assert_panicked_then_closed(&bad_evs);
    let mut buf = [0u8; 1];
    assert_eq!(
        bad.read(&mut buf).unwrap_or(0),
        0,
        "peer should see the close"
    );
    // The other connection on the same worker carries on.
    good.write_all(b"more").unwrap();
    let (id, ev) = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(id, good_id);
    assert!(matches!(ev, Event::Read(_)), "{ev:?}");
    worker_still_serves(r);
}

#[test]
fn a_panicking_handler_factory_closes_that_connection_only() {
    let r = one_worker();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let listener = r
        .listen_with(any_port(), ListenOptions::new(), move |ctx| {
            if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                panic!("app bug in factory");
            }
            ctx.set_streaming(Some(Raw));
            |ctx: &mut Ctx<'_>, ev: Event| {
                if let Event::Read(f) = ev {
                    let _ = ctx.write(f.into_bytes().unwrap());
                }
            }
        })
        .unwrap();
    let mut first = TcpStream::connect(listener.local_addr()).unwrap();
    first.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(
        first.read(&mut buf).unwrap_or(0),
        0,
        "first connection not closed"
    );
    let mut second = TcpStream::connect(listener.local_addr()).unwrap();
    second.set_read_timeout(Some(WAIT)).unwrap();
    second.write_all(b"echo").unwrap();
    second.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"echo");
}

#[test]
fn a_panicking_call_closure_fails_the_connection_with_panicked() {
    let r = one_worker();
    let p = pair(r, Options::new());
    p.conn.call(|_ctx| panic!("app bug in call")).unwrap();
    assert_panicked_then_closed(&events_until_closed(p.events(), WAIT));
    worker_still_serves(r);
}

#[test]
fn a_panicking_configure_closure_fails_the_connection_with_panicked() {
    let r = one_worker();
    let p = pair(r, Options::new());
    p.conn
        .configure(|_opts| panic!("app bug in configure"))
        .unwrap();
    assert_panicked_then_closed(&events_until_closed(p.events(), WAIT));
    worker_still_serves(r);
}

/// A custom read type with a bug.
struct Buggy;

impl Decoder for Buggy {
    type Output = ();
    fn decode(&mut self, buf: &mut BytesMut, _eof: bool) -> Result<Option<()>, DecodeError> {
        if buf.is_empty() {
            return Ok(None);
        }
        panic!("app bug in decoder");
    }
}

#[test]
fn a_panicking_decoder_fails_its_read_and_connection() {
    let r = one_worker();
    let mut p = pair(r, Options::new());
    let reply = p.conn.push_read(Buggy).unwrap();
    p.send(b"x");
    match reply.recv_timeout(WAIT) {
        Err(netactor::ReplyTimeoutError::Failed(Error::Panicked(msg))) => {
            assert!(msg.contains("app bug"))
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_panicked_then_closed(&events_until_closed(p.events(), WAIT));

    // In streaming mode too.
    let mut p = pair(r, Options::new());
    p.conn.set_streaming(Some(StreamBuggy)).unwrap();
    p.send(b"x");
    assert_panicked_then_closed(&events_until_closed(p.events(), WAIT));
    worker_still_serves(r);
}

struct StreamBuggy;

impl Decoder for StreamBuggy {
    type Output = bytes::Bytes;
    fn decode(
        &mut self,
        buf: &mut BytesMut,
        _eof: bool,
    ) -> Result<Option<bytes::Bytes>, DecodeError> {
        if buf.is_empty() {
            return Ok(None);
        }
        panic!("app bug in streaming decoder");
    }
}

#[test]
fn garbage_from_peers_never_panics_a_worker() {
    let r = one_worker();
    let listener = r
        .listen(
            any_port(),
            ListenOptions::new().options(Options::new().rbuf_max(4096)),
        )
        .unwrap();
    // Deterministic pseudo-random garbage (xorshift), many shapes and sizes.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut conns = std::collections::HashMap::new();
    for i in 0..40 {
        let mut peer = TcpStream::connect(listener.local_addr()).unwrap();
        let conn = listener.accept_timeout(WAIT).unwrap();
        match i % 4 {
            0 => conn.set_streaming(Some(Line::new().max_len(64))).unwrap(),
            1 => conn
                .set_streaming(Some(Line::with_eol("\r\n\r\n")))
                .unwrap(),
            2 => {
                let _ = conn
                    .push_read(netactor::framing::Chunk::new(30_000))
                    .unwrap();
            }
            _ => conn.set_streaming(Some(Raw)).unwrap(),
        }
        let len = (next() % 20000) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let _ = peer.write_all(&data);
        if i % 3 == 0 {
            let _ = socket2::SockRef::from(&peer).set_linger(Some(Duration::ZERO));
        }
        drop(peer);
        conns.insert(conn.id(), conn);
    }
    // Every connection ends (EOF, NoSpace, reset...) and none by a panic.
    let mut closed = 0;
    while closed < conns.len() {
        let (id, ev) = listener.events().recv_timeout(WAIT).expect("event");
        match ev {
            Event::Closed => closed += 1,
            Event::Eof => {
                // Nothing more will come: let the connection go.
                let _ = conns[&id].close();
            }
            Event::Error {
                error: Error::Panicked(m),
                ..
            } => panic!("worker panicked on peer input: {m}"),
            _ => {}
        }
    }
    worker_still_serves(r);
}
