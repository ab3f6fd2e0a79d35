//! Reading in place (the reference's `on_read` with `rbuf`): a handler that
//! sets `Ctx::set_read_in_place(true)` gets the read buffer itself in
//! `Handler::on_read`, consumes a prefix and leaves an incomplete tail for
//! the next arrival — no copy into its own buffer, no decoder swapping.
//!
//! Run: `cargo test --release --test read_in_place`

mod common;

use bytes::{Buf, BytesMut};
use common::*;
use crossbeam_channel::{unbounded, Sender};
use netactor::framing::{Chunk, Raw};
use netactor::{Ctx, Error, Event, Handler, ListenOptions, Options, Reactor};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// What the server side saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    /// One `on_read` call: bytes buffered on entry, bytes left on return,
    /// and whether EOF had been read.
    Call {
        had: usize,
        left: usize,
        eof: bool,
    },
    Error(String, bool),
    Eof,
    Closed,
}

/// A line protocol parsed in place: `SAY <text>\n` is answered with
/// `<TEXT>\n`; `BODY <n>\n` is followed by `n` raw bytes, taken with a
/// queued `Chunk` read and answered `got <n>: <bytes>\n`; `PANIC\n` panics.
struct Lines {
    seen: Sender<Seen>,
}

impl Handler for Lines {
    fn on_event(&mut self, ctx: &mut Ctx<'_>, event: Event) {
        let s = match event {
            Event::Error { error, fatal } => Seen::Error(format!("{error:?}"), fatal),
            Event::Eof => {
                let _ = ctx.shutdown();
                Seen::Eof
            }
            Event::Closed => Seen::Closed,
            _ => return,
        };
        let _ = self.seen.send(s);
    }

    fn on_read(&mut self, ctx: &mut Ctx<'_>, rbuf: &mut BytesMut) {
        let had = rbuf.len();
        while let Some(i) = rbuf.iter().position(|&b| b == b'\n') {
            let line = rbuf.split_to(i + 1);
            let line = &line[..i];
            if let Some(text) = line.strip_prefix(b"SAY ") {
                let mut out = text.to_ascii_uppercase();
                out.push(b'\n');
                ctx.write(out).unwrap();
            } else if let Some(n) = line.strip_prefix(b"BODY ") {
                let n: usize = std::str::from_utf8(n).unwrap().parse().unwrap();
                // The body is taken by a queued read, which runs before
                // this handler is called again: stop parsing here.
                ctx.push_read_with(Chunk::new(n), move |ctx, body| {
                    let body = body.unwrap();
                    let mut out = format!("got {n}: ").into_bytes();
                    out.extend_from_slice(&body);
                    out.push(b'\n');
                    ctx.write(out).unwrap();
                });
                break;
            } else if line == b"PANIC" {
                panic!("application bug in on_read");
            }
        }
        let _ = self.seen.send(Seen::Call {
            had,
            left: rbuf.len(),
            eof: ctx.read_eof(),
        });
    }
}

fn server(r: &Reactor) -> (netactor::Listener, crossbeam_channel::Receiver<Seen>) {
    let (tx, rx) = unbounded();
    let l = r
        .listen_with(any_port(), ListenOptions::new(), move |ctx| {
            ctx.set_read_in_place(true);
            Lines { seen: tx.clone() }
        })
        .unwrap();
    (l, rx)
}

fn seen_until_closed(rx: &crossbeam_channel::Receiver<Seen>) -> Vec<Seen> {
    let mut out = Vec::new();
    loop {
        let s = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no Closed; saw {out:?}"));
        let done = s == Seen::Closed;
        out.push(s);
        if done {
            return out;
        }
    }
}

fn client(l: &netactor::Listener) -> TcpStream {
    let s = TcpStream::connect(l.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

#[test]
fn fragments_leave_tails_in_the_buffer_until_the_rest_arrives() {
    let r = reactor(2);
    let (l, seen) = server(&r);
    let mut s = client(&l);
    let mut wire = Vec::new();
    let mut want = Vec::new();
    for i in 0..40 {
        wire.extend_from_slice(format!("SAY line number {i}\n").as_bytes());
        want.extend_from_slice(format!("LINE NUMBER {i}\n").as_bytes());
    }
    // 1- to 7-byte pieces, each waited for, so most arrivals end mid-line.
    let mut at = 0;
    let mut k = 0;
    while at < wire.len() {
        let n = (1 + k % 7).min(wire.len() - at);
        s.write_all(&wire[at..at + n]).unwrap();
        at += n;
        k += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    s.shutdown(Shutdown::Write).unwrap();
    let (rest, clean) = read_to_eof(&mut s);
    assert!(rest.is_empty() && clean, "{rest:?}");
    let seen = seen_until_closed(&seen);
    let calls: Vec<_> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Call { had, left, .. } => Some((*had, *left)),
            _ => None,
        })
        .collect();
    // Tails were left and found again: some call returned with bytes left,
    // and the next call saw them plus what had arrived since.
    assert!(calls.iter().any(|&(_, left)| left > 0), "{calls:?}");
    for w in calls.windows(2) {
        assert!(w[1].0 > w[0].1, "a call without new bytes: {calls:?}");
    }
    assert_eq!(calls.last().unwrap().1, 0);
    assert!(
        matches!(seen[seen.len() - 2..], [Seen::Eof, Seen::Closed]),
        "{seen:?}"
    );
}

#[test]
fn a_queued_read_takes_the_body_then_in_place_reading_resumes() {
    let r = reactor(1);
    let (l, seen) = server(&r);
    let mut s = client(&l);
    // Header, body (with a newline inside: not a line), next line — one write.
    s.write_all(b"SAY a\nBODY 7\nxy\nzw!\nSAY b\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let (got, clean) = read_to_eof(&mut s);
    assert!(clean);
    assert_eq!(String::from_utf8_lossy(&got), "A\ngot 7: xy\nzw!\n\nB\n");
    let seen = seen_until_closed(&seen);
    assert!(seen.ends_with(&[Seen::Eof, Seen::Closed]), "{seen:?}");
    assert!(
        !seen.iter().any(|s| matches!(s, Seen::Error(..))),
        "{seen:?}"
    );
}

#[test]
fn eof_with_an_unfinished_tail_reports_it_after_the_last_call() {
    let r = reactor(1);
    let (l, seen) = server(&r);
    let mut s = client(&l);
    s.write_all(b"SAY x\nSAY unfinished").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let (got, clean) = read_to_eof(&mut s);
    assert!(clean);
    assert_eq!(&got[..], b"X\n");
    let seen = seen_until_closed(&seen);
    // The last call left the tail (EOF came with those bytes or after
    // them: no call is made for an EOF alone).
    let last_call = seen
        .iter()
        .rev()
        .find(|s| matches!(s, Seen::Call { .. }))
        .unwrap();
    assert!(matches!(last_call, Seen::Call { left: 14, .. }), "{seen:?}");
    let n = seen.len();
    assert!(
        matches!(&seen[n - 3..], [Seen::Error(e, false), Seen::Eof, Seen::Closed] if e == "UnexpectedEof"),
        "{seen:?}"
    );
}

#[test]
fn a_panic_in_on_read_fails_only_that_connection() {
    let r = reactor(1);
    let (l, seen) = server(&r);
    let mut bad = client(&l);
    bad.write_all(b"SAY first\nPANIC\nSAY never\n").unwrap();
    let mut first = [0u8; 6];
    bad.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"FIRST\n");
    let seen_bad = seen_until_closed(&seen);
    assert!(
        seen_bad
            .iter()
            .any(|s| matches!(s, Seen::Error(e, true) if e.starts_with("Panicked"))),
        "{seen_bad:?}"
    );
    let (rest, _) = read_to_eof(&mut bad);
    assert!(!rest.windows(5).any(|w| w == b"NEVER"), "{rest:?}");
    // Another connection on the same worker is served.
    let mut good = client(&l);
    good.write_all(b"SAY still here\n").unwrap();
    let mut got = [0u8; 11];
    good.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"STILL HERE\n");
}

#[test]
fn reading_in_place_on_a_channel_connection_is_a_typed_error() {
    let r = reactor(1);
    let mut p = pair(&r, Options::new());
    p.conn.call(|ctx| ctx.set_read_in_place(true)).unwrap();
    p.send(b"anything");
    let evs = events_until_closed(p.events(), WAIT);
    assert!(
        evs.iter().any(|e| matches!(
            e,
            Event::Error {
                error: Error::InvalidInput(_),
                fatal: true
            }
        )),
        "{evs:?}"
    );
}

#[test]
fn a_streaming_decoder_and_reading_in_place_replace_each_other() {
    let r = reactor(1);
    let (tx, rx) = unbounded::<Vec<u8>>();
    let l = r
        .listen_with(any_port(), ListenOptions::new(), move |ctx| {
            ctx.set_read_in_place(true);
            struct Switch(Sender<Vec<u8>>);
            impl Handler for Switch {
                fn on_event(&mut self, ctx: &mut Ctx<'_>, event: Event) {
                    if let Event::Read(f) = event {
                        let b = f.into_bytes().unwrap();
                        let _ = self.0.send(b.to_vec());
                        // Back to reading in place: the decoder goes.
                        ctx.set_read_in_place(true);
                    }
                }
                fn on_read(&mut self, ctx: &mut Ctx<'_>, rbuf: &mut BytesMut) {
                    // Take one byte by hand, then let `Raw` have the rest.
                    let b = rbuf.get_u8();
                    let _ = self.0.send(vec![b]);
                    ctx.set_streaming(Some(Raw));
                }
            }
            Switch(tx.clone())
        })
        .unwrap();
    let mut s = client(&l);
    s.write_all(b"abc").unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), b"a");
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), b"bc");
    s.write_all(b"de").unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), b"d");
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), b"e");
}
