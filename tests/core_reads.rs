//! Read side of the core: chunk/line reads, frames split at every byte
//! boundary (exhaustive + proptest), push vs unshift order, streaming mode,
//! stop/start reading, EOF with and without a pending read, rbuf_max,
//! adaptive read size, and the ways an application can wait for replies.
//!
//! Run: `cargo test --release --test core_reads`

mod common;

use bytes::Bytes;
use common::*;
use netactor::framing::{Chunk, Frame, Line, LineFrame, Raw};
use netactor::{Error, Event, Limit, Options, Reactor, Reply};
use proptest::prelude::*;
use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn shared_reactor() -> &'static Reactor {
    static R: OnceLock<Reactor> = OnceLock::new();
    R.get_or_init(|| reactor(2))
}

fn ok<T>(r: &Reply<T>) -> T {
    match r.recv_timeout(WAIT) {
        Ok(v) => v,
        Err(netactor::ReplyTimeoutError::Failed(e)) => panic!("read failed: {e}"),
        Err(netactor::ReplyTimeoutError::Timeout) => panic!("read still pending after {WAIT:?}"),
    }
}

fn err<T: std::fmt::Debug>(r: &Reply<T>) -> Error {
    match r.recv_timeout(WAIT) {
        Err(netactor::ReplyTimeoutError::Failed(e)) => e,
        Ok(v) => panic!("read unexpectedly succeeded with {v:?}"),
        Err(netactor::ReplyTimeoutError::Timeout) => panic!("read still pending after {WAIT:?}"),
    }
}

#[test]
fn chunk_reads_hand_exactly_n_bytes() {
    let mut p = pair(shared_reactor(), Options::new());
    let zero = p.conn.push_read(Chunk::new(0)).unwrap();
    let a = p.conn.push_read(Chunk::new(3)).unwrap();
    let b = p.conn.push_read(Chunk::new(5)).unwrap();
    // The zero-length read completes without any byte on the wire.
    assert_eq!(ok(&zero), Bytes::new());
    p.send(b"abcdefgh_rest");
    assert_eq!(&ok(&a)[..], b"abc");
    assert_eq!(&ok(&b)[..], b"defgh");
    // The rest stays buffered for the next request.
    let c = p.conn.push_read(Chunk::new(5)).unwrap();
    assert_eq!(&ok(&c)[..], b"_rest");
}

#[test]
fn line_reads_strip_one_cr_and_report_the_eol() {
    let mut p = pair(shared_reactor(), Options::new());
    let lines: Vec<_> = (0..4)
        .map(|_| p.conn.push_read(Line::new()).unwrap())
        .collect();
    let semi = p.conn.push_read(Line::with_eol(";;")).unwrap();
    p.send(b"one\r\ntwo\nc\r\r\n\nx;y;;");
    let got: Vec<LineFrame> = lines.iter().map(ok).collect();
    let want: [(&[u8], &[u8]); 4] = [
        (b"one", b"\r\n"),
        (b"two", b"\n"),
        (b"c\r", b"\r\n"),
        (b"", b"\n"),
    ];
    for (g, (line, eol)) in got.iter().zip(want) {
        assert_eq!((&g.line[..], &g.eol[..]), (line, eol));
    }
    let s = ok(&semi);
    assert_eq!((&s.line[..], &s.eol[..]), (&b"x;y"[..], &b";;"[..]));
}

/// One expected frame of a mixed read sequence.
#[derive(Debug, Clone)]
enum Spec {
    /// Default line: content without CR/LF, sent with "\r\n" or "\n".
    Line(Vec<u8>, bool),
    /// Literal ";;" line: content without ';'.
    Semi(Vec<u8>),
    /// A chunk of exactly these bytes.
    Chunk(Vec<u8>),
}

impl Spec {
    fn wire(&self) -> Vec<u8> {
        let mut v = Vec::new();
        match self {
            Spec::Line(c, crlf) => {
                v.extend_from_slice(c);
                v.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
            }
            Spec::Semi(c) => {
                v.extend_from_slice(c);
                v.extend_from_slice(b";;");
            }
            Spec::Chunk(c) => v.extend_from_slice(c),
        }
        v
    }
}

enum AnyReply {
    Line(Reply<LineFrame>),
    Bytes(Reply<Bytes>),
}

/// Queues one read per spec, sends the wire bytes cut at `cuts` (each piece
/// is read by the reactor before the next is sent, so every cut is a real
/// read boundary), and checks every frame.
fn run_split(specs: &[Spec], cuts: &[usize]) -> Result<(), TestCaseError> {
    let mut p = pair(shared_reactor(), Options::new());
    let replies: Vec<AnyReply> = specs
        .iter()
        .map(|s| match s {
            Spec::Line(..) => AnyReply::Line(p.conn.push_read(Line::new()).unwrap()),
            Spec::Semi(_) => AnyReply::Line(p.conn.push_read(Line::with_eol(";;")).unwrap()),
            Spec::Chunk(c) => AnyReply::Bytes(p.conn.push_read(Chunk::new(c.len())).unwrap()),
        })
        .collect();
    let wire: Vec<u8> = specs.iter().flat_map(Spec::wire).collect();
    let mut at = 0;
    for &cut in cuts.iter().chain(std::iter::once(&wire.len())) {
        let cut = cut.min(wire.len());
        if cut <= at {
            continue;
        }
        p.send(&wire[at..cut]);
        at = cut;
        p.wait_read(at as u64);
    }
    for (s, r) in specs.iter().zip(&replies) {
        match (s, r) {
            (Spec::Line(c, crlf), AnyReply::Line(r)) => {
                let f = ok(r);
                prop_assert_eq!(&f.line[..], &c[..]);
                prop_assert_eq!(&f.eol[..], if *crlf { &b"\r\n"[..] } else { &b"\n"[..] });
            }
            (Spec::Semi(c), AnyReply::Line(r)) => {
                let f = ok(r);
                prop_assert_eq!(&f.line[..], &c[..]);
                prop_assert_eq!(&f.eol[..], &b";;"[..]);
            }
            (Spec::Chunk(c), AnyReply::Bytes(r)) => prop_assert_eq!(&ok(r)[..], &c[..]),
            _ => unreachable!(),
        }
    }
    Ok(())
}

#[test]
fn frames_split_at_every_single_byte_boundary() {
    let specs = vec![
        Spec::Line(b"hello".to_vec(), true),
        Spec::Chunk(b"\r\n;;ab".to_vec()),
        Spec::Semi(b"x\r\ny".to_vec()),
        Spec::Line(Vec::new(), false),
        Spec::Line(b"end".to_vec(), true),
    ];
    let len: usize = specs.iter().map(|s| s.wire().len()).sum();
    for k in 0..=len {
        run_split(&specs, &[k]).unwrap_or_else(|e| panic!("split at {k}: {e}"));
    }
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    let text = |forbid: &'static [u8]| {
        proptest::collection::vec(
            any::<u8>().prop_filter("delimiter", move |b| !forbid.contains(b)),
            0..12,
        )
    };
    prop_oneof![
        (text(b"\r\n"), any::<bool>()).prop_map(|(c, crlf)| Spec::Line(c, crlf)),
        text(b";").prop_map(Spec::Semi),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Spec::Chunk),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any mix of chunk and line reads, the byte stream cut at any set of
    /// points, yields exactly the frames that were sent.
    #[test]
    fn frames_survive_any_split(
        specs in proptest::collection::vec(spec_strategy(), 1..8),
        cuts in proptest::collection::vec(0usize..120, 0..10),
    ) {
        let mut cuts = cuts;
        cuts.sort_unstable();
        run_split(&specs, &cuts)?;
    }
}

#[test]
fn unshift_goes_before_queued_pushes() {
    let mut p = pair(shared_reactor(), Options::new());
    let a = p.conn.push_read(Chunk::new(2)).unwrap();
    let b = p.conn.push_read(Chunk::new(2)).unwrap();
    let c = p.conn.unshift_read(Chunk::new(2)).unwrap();
    let d = p.conn.unshift_read(Chunk::new(2)).unwrap();
    p.send(b"11223344");
    // Front of the queue: d (unshifted last), then c, then a and b in push order.
    assert_eq!(&ok(&d)[..], b"11");
    assert_eq!(&ok(&c)[..], b"22");
    assert_eq!(&ok(&a)[..], b"33");
    assert_eq!(&ok(&b)[..], b"44");
}

#[test]
fn streaming_delivers_each_frame_as_an_event_and_queued_reads_win() {
    let mut p = pair(shared_reactor(), Options::new());
    p.conn.set_streaming(Some(Line::new())).unwrap();
    p.send(b"a\nb\r\n");
    for want in [&b"a"[..], b"b"] {
        match p.next_event() {
            Event::Read(Frame::Line(l)) => assert_eq!(&l.line[..], want),
            other => panic!("expected a line, got {other:?}"),
        }
    }
    // A queued read takes precedence over the streaming decoder.
    let chunk = p.conn.push_read(Chunk::new(3)).unwrap();
    p.send(b"xyzline\n");
    assert_eq!(&ok(&chunk)[..], b"xyz");
    match p.next_event() {
        Event::Read(Frame::Line(l)) => assert_eq!(&l.line[..], b"line"),
        other => panic!("expected a line, got {other:?}"),
    }
    // Streaming off: bytes stay in the kernel (nobody wants them).
    p.conn.set_streaming(None::<Line>).unwrap();
    let before = p.conn.stats().bytes_read;
    p.send(b"later\n");
    assert!(p.events().recv_timeout(Duration::from_millis(100)).is_err());
    assert_eq!(p.conn.stats().bytes_read, before);
    let l = p.conn.push_read(Line::new()).unwrap();
    assert_eq!(&ok(&l).line[..], b"later");
}

#[test]
fn the_socket_is_not_read_while_nobody_wants_data() {
    let mut p = pair(shared_reactor(), Options::new());
    p.send(b"unwanted");
    // Give the reactor every chance to (wrongly) read.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(p.conn.stats().read_calls, 0);
    // stop_read holds even a streaming connection back.
    p.conn.stop_read().unwrap();
    p.conn.set_streaming(Some(Raw)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(p.conn.stats().read_calls, 0);
    assert!(p.events().try_recv().is_err());
    p.conn.start_read().unwrap();
    match p.next_event() {
        Event::Read(Frame::Bytes(b)) => assert_eq!(&b[..], b"unwanted"),
        other => panic!("expected data, got {other:?}"),
    }
}

#[test]
fn eof_fails_an_unsatisfiable_read_then_reports_eof() {
    let mut p = pair(shared_reactor(), Options::new());
    let line = p.conn.push_read(Line::new()).unwrap();
    let after = p.conn.push_read(Chunk::new(100)).unwrap();
    p.send(b"partial line");
    p.peer.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(matches!(err(&line), Error::UnexpectedEof));
    // Every request that cannot complete fails; none consumes the partial bytes.
    assert!(matches!(err(&after), Error::UnexpectedEof));
    assert!(matches!(p.next_event(), Event::Eof));
    let rest = p.conn.push_read(Chunk::new(12)).unwrap();
    assert_eq!(&ok(&rest)[..], b"partial line");
    // EOF is not fatal: the write side still works.
    p.conn.write(&b"bye"[..]).unwrap();
    assert_eq!(p.recv_exact(3), b"bye");
    // A read requested after EOF fails at once.
    let late = p.conn.push_read(Chunk::new(1)).unwrap();
    assert!(matches!(err(&late), Error::UnexpectedEof));
}

#[test]
fn eof_without_pending_read_is_an_event_and_writing_continues() {
    let mut p = pair(shared_reactor(), Options::new());
    p.conn.set_streaming(Some(Raw)).unwrap();
    p.send(b"data");
    p.peer.shutdown(std::net::Shutdown::Write).unwrap();
    match p.next_event() {
        Event::Read(f) => assert_eq!(&f.into_bytes().unwrap()[..], b"data"),
        other => panic!("expected data, got {other:?}"),
    }
    assert!(matches!(p.next_event(), Event::Eof));
    p.conn.write(&b"reply after eof"[..]).unwrap();
    assert_eq!(p.recv_exact(15), b"reply after eof");
    // Both directions done once we shut down too: the connection closes itself.
    p.conn.shutdown().unwrap();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut p.peer, &mut rest).unwrap();
    assert!(rest.is_empty());
    assert!(matches!(p.next_event(), Event::Closed));
}

#[test]
fn eof_is_noticed_lazily_when_reading_was_idle() {
    let mut p = pair(shared_reactor(), Options::new());
    p.send(b"12345");
    p.peer.shutdown(std::net::Shutdown::Write).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // Nobody was reading: no EOF event yet (the reference does the same).
    assert!(p.events().try_recv().is_err());
    let a = p.conn.push_read(Chunk::new(5)).unwrap();
    assert_eq!(&ok(&a)[..], b"12345");
    let b = p.conn.push_read(Chunk::new(1)).unwrap();
    assert!(matches!(err(&b), Error::UnexpectedEof));
    assert!(matches!(p.next_event(), Event::Eof));
}

#[test]
fn streaming_partial_frame_at_eof_is_reported() {
    let mut p = pair(shared_reactor(), Options::new());
    p.conn.set_streaming(Some(Line::new())).unwrap();
    p.send(b"whole\npart");
    p.peer.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(matches!(p.next_event(), Event::Read(Frame::Line(_))));
    // Design choice (reference: fatal EPIPE): a non-fatal UnexpectedEof, then Eof.
    match p.next_event() {
        Event::Error {
            error: Error::UnexpectedEof,
            fatal: false,
        } => {}
        other => panic!("expected non-fatal UnexpectedEof, got {other:?}"),
    }
    assert!(matches!(p.next_event(), Event::Eof));
}

#[test]
fn rbuf_max_is_enforced_strictly_above_the_limit() {
    // Exactly at the limit: fine.
    let mut p = pair(shared_reactor(), Options::new().rbuf_max(10));
    let line = p.conn.push_read(Line::new()).unwrap();
    p.send(b"0123456789");
    p.wait_read(10);
    p.send(b"\n");
    assert_eq!(&ok(&line).line[..], b"0123456789");

    // One byte more: fatal NoSpace, the pending read fails with it.
    let mut p = pair(shared_reactor(), Options::new().rbuf_max(10));
    let line = p.conn.push_read(Line::new()).unwrap();
    p.send(b"0123456789A");
    assert!(matches!(
        err(&line),
        Error::NoSpace {
            limit: Limit::ReadBuffer,
            max: 10
        }
    ));
    let evs = events_until_closed(p.events(), WAIT);
    assert!(
        matches!(
            evs[0],
            Event::Error {
                error: Error::NoSpace {
                    limit: Limit::ReadBuffer,
                    ..
                },
                fatal: true
            }
        ),
        "{evs:?}"
    );
}

#[test]
fn default_rbuf_max_is_finite() {
    let p = pair(shared_reactor(), Options::new());
    let max = netactor::DEFAULT_RBUF_MAX;
    // A read that can never be satisfied within the limit.
    let big = p.conn.push_read(Chunk::new(max * 2)).unwrap();
    let mut peer = p.peer.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let block = vec![7u8; 64 << 10];
        let mut sent = 0;
        while sent <= max * 2 {
            if peer.write_all(&block).is_err() {
                break; // the reactor gave up on us: expected
            }
            sent += block.len();
        }
    });
    assert!(matches!(
        err(&big),
        Error::NoSpace {
            limit: Limit::ReadBuffer,
            ..
        }
    ));
    let _ = p.peer.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
}

#[test]
fn read_size_adapts_from_2k_to_128k() {
    let p = pair(shared_reactor(), Options::new());
    p.conn.set_streaming(Some(Raw)).unwrap();
    let total = 4 << 20;
    let mut peer = p.peer.try_clone().unwrap();
    let writer = std::thread::spawn(move || peer.write_all(&vec![1u8; total]).unwrap());
    let mut sizes = Vec::new();
    let mut got = 0;
    while got < total {
        match p.next_event() {
            Event::Read(f) => {
                let n = f.into_bytes().unwrap().len();
                sizes.push(n);
                got += n;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    writer.join().unwrap();
    // Each socket read is one Raw frame: the first read asks for 2 KiB, none
    // asks for more than 128 KiB, and the size grew on the way.
    assert!(sizes[0] <= 2048, "first read {}", sizes[0]);
    assert!(sizes.iter().all(|&n| n <= 128 << 10), "{sizes:?}");
    assert!(sizes.iter().any(|&n| n > 64 << 10), "never grew: {sizes:?}");
    assert!(sizes.len() < total / 2048 / 4, "{} reads", sizes.len());

    // Idle again: no read buffer kept.
    let (tx, rx) = crossbeam_channel::bounded(1);
    p.conn
        .call(move |ctx| tx.send(ctx.read_buffer().capacity()).unwrap())
        .unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), 0);
}

#[test]
fn replies_can_be_blocked_on_selected_over_or_polled() {
    let r = shared_reactor();
    let mut pairs: Vec<_> = (0..3).map(|_| pair(r, Options::new())).collect();
    let replies: Vec<_> = pairs
        .iter()
        .map(|p| p.conn.push_read(Chunk::new(1)).unwrap())
        .collect();
    // Polling without blocking: nothing there yet.
    assert!(replies
        .iter()
        .all(|r| matches!(r.try_recv(), Err(netactor::TryReplyError::Empty))));
    pairs[1].send(b"B");
    // select! over every connection's reply: the one with data wins.
    let mut sel = crossbeam_channel::Select::new();
    for r in &replies {
        sel.recv(r.receiver());
    }
    let op = sel.select_timeout(WAIT).expect("a reply is ready");
    let idx = op.index();
    let got = op.recv(replies[idx].receiver()).unwrap().unwrap();
    assert_eq!((idx, &got[..]), (1, &b"B"[..]));
    pairs[2].send(b"C");
    let t0 = Instant::now();
    while matches!(replies[2].try_recv(), Err(netactor::TryReplyError::Empty)) {
        assert!(t0.elapsed() < WAIT, "poll never saw the reply");
        std::thread::yield_now();
    }
    pairs[0].send(b"A");
    assert_eq!(&replies[0].recv().unwrap()[..], b"A");
}

#[test]
fn a_slow_event_consumer_holds_the_peer_back_and_loses_nothing() {
    let r = shared_reactor();
    let listener = r
        .listen(
            any_port(),
            netactor::ListenOptions::new().events_capacity(2),
        )
        .unwrap();
    let mut peer = std::net::TcpStream::connect(listener.local_addr()).unwrap();
    let conn = listener.accept_timeout(WAIT).unwrap();
    conn.set_streaming(Some(Line::new())).unwrap();
    let all: Vec<u8> = (0..1000)
        .flat_map(|i| format!("line {i:04}\n").into_bytes())
        .collect();
    peer.write_all(&all).unwrap();
    // The channel is full after two events: the actor stops reading.
    assert!(wait_until(WAIT, || conn.stats().bytes_read > 0));
    std::thread::sleep(Duration::from_millis(50));
    let read = conn.stats().bytes_read;
    assert!(
        read < all.len() as u64,
        "read {read} bytes with nobody consuming"
    );
    let line_no = |ev: Event| match ev {
        Event::Read(Frame::Line(l)) => std::str::from_utf8(&l.line[5..])
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        other => panic!("expected a line, got {other:?}"),
    };
    for i in 0..10 {
        assert_eq!(line_no(next_event(listener.events(), WAIT)), i);
    }
    // Closing while events are still held back: they are all delivered,
    // in order, and Closed comes last.
    conn.close().unwrap();
    let evs = events_until_closed(listener.events(), WAIT);
    let n = evs.len() - 1;
    for (i, ev) in evs.into_iter().take(n).enumerate() {
        assert_eq!(line_no(ev), 10 + i);
    }
}

#[test]
fn a_read_still_in_the_mailbox_gets_the_error_that_ended_the_connection() {
    let p = pair(shared_reactor(), Options::new());
    let (tx, rx) = crossbeam_channel::bounded(1);
    p.conn
        .call(move |ctx| {
            // Posted through a handle, this request waits in the mailbox
            // behind the message being handled — which then fails the
            // connection (a panic in application code is fatal to it).
            let late = ctx.connection().push_read(Chunk::new(100)).unwrap();
            tx.send(late).unwrap();
            panic!("application bug");
        })
        .unwrap();
    let late = rx.recv_timeout(WAIT).expect("the call ran");
    match err(&late) {
        Error::Panicked(msg) => assert!(msg.contains("application bug"), "{msg}"),
        other => panic!("expected the panic that ended the connection, got {other:?}"),
    }
}

#[test]
fn messages_behind_the_one_that_ends_the_connection_are_answered_and_released() {
    let p = pair(shared_reactor(), Options::new());
    let (entered_tx, entered_rx) = crossbeam_channel::bounded(1);
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
    p.conn
        .call(move |_ctx| {
            entered_tx.send(()).unwrap();
            // Holds this turn (bounded) until the messages below are queued,
            // so the actor takes them as one batch.
            let _ = go_rx.recv_timeout(WAIT);
        })
        .unwrap();
    entered_rx.recv_timeout(WAIT).expect("the first call ran");
    p.conn.call(|_ctx| panic!("application bug")).unwrap();
    let read = p.conn.push_read(Chunk::new(100)).unwrap();
    p.conn.write(&b"abc"[..]).unwrap();
    assert_eq!(p.conn.stats().write_queued, 3);
    go_tx.send(()).unwrap();
    match err(&read) {
        Error::Panicked(msg) => assert!(msg.contains("application bug"), "{msg}"),
        other => panic!("expected the panic that ended the connection, got {other:?}"),
    }
    assert!(
        wait_until(WAIT, || p.conn.stats().write_queued == 0),
        "the refused write's {} bytes stay reserved",
        p.conn.stats().write_queued
    );
}

#[test]
fn reply_waits_report_pending_and_failure_as_typed_errors() {
    use netactor::{ReplyTimeoutError, TimeoutKind, TryReplyError};
    let mut p = pair(shared_reactor(), Options::new());
    let r = p.conn.push_read(Chunk::new(3)).unwrap();
    // Nothing sent yet: both waits say "pending", and the Reply stays valid.
    assert!(matches!(r.try_recv(), Err(TryReplyError::Empty)));
    assert!(matches!(
        r.recv_timeout(Duration::from_millis(20)),
        Err(ReplyTimeoutError::Timeout)
    ));
    // `?` turns a timeout into a typed Error.
    let as_error: Error = ReplyTimeoutError::Timeout.into();
    assert!(matches!(as_error, Error::TimedOut(TimeoutKind::Reply)));
    p.send(b"abc");
    assert_eq!(&r.recv_timeout(WAIT).unwrap()[..], b"abc");
    // A read the connection can no longer answer fails with its own error.
    let r = p.conn.push_read(Chunk::new(3)).unwrap();
    drop(p.peer);
    match r.recv_timeout(WAIT) {
        Err(ReplyTimeoutError::Failed(Error::UnexpectedEof)) => {}
        other => panic!("expected Failed(UnexpectedEof), got {other:?}"),
    }
    // Answered once: after that the Reply reports the connection's end
    // (once the actor has dropped the request — polled, bounded).
    let mut last = r.try_recv();
    assert!(wait_until(WAIT, || {
        last = r.try_recv();
        !matches!(last, Err(TryReplyError::Empty))
    }));
    assert!(
        matches!(last, Err(TryReplyError::Failed(Error::Closed))),
        "{last:?}"
    );
}
