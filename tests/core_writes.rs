//! Write side of the core: wbuf_max, drain events, autocork and vectored
//! writes (via `Stats::write_calls`), half-close, linger after close, and a
//! peer resetting the connection mid-stream.
//!
//! Run: `cargo test --release --test core_writes`

mod common;

use bytes::Bytes;
use common::*;
use netactor::framing::{Chunk, Raw};
use netactor::{Error, Event, Limit, Options, Reactor};
use std::io::{Read, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn shared_reactor() -> &'static Reactor {
    static R: OnceLock<Reactor> = OnceLock::new();
    R.get_or_init(|| reactor(2))
}

/// Runs `f` on the connection's worker and returns its result.
fn on_worker<T: Send + 'static>(
    conn: &netactor::Connection,
    f: impl FnOnce(&mut netactor::Ctx<'_>) -> T + Send + 'static,
) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    conn.call(move |ctx| {
        let _ = tx.send(f(ctx));
    })
    .unwrap();
    rx.recv_timeout(WAIT).expect("call did not run")
}

/// Writes `block`s from the handle until `write` refuses; returns the bytes accepted.
fn fill_until_refused(conn: &netactor::Connection, block: usize, limit: usize) -> (usize, Error) {
    let data = Bytes::from(vec![0xAB; block]);
    let mut accepted = 0;
    while accepted <= limit {
        match conn.write(data.clone()) {
            Ok(()) => accepted += block,
            Err(e) => return (accepted, e),
        }
    }
    panic!("wrote {accepted} bytes without ever being refused");
}

#[test]
fn wbuf_max_refuses_a_write_that_would_exceed_it() {
    let mut p = pair(
        shared_reactor(),
        Options::new().wbuf_max(1000).autocork(true),
    );
    // One actor turn with autocork: nothing is flushed in between, so the
    // second write would make 1200 queued bytes.
    let (a, b, c) = on_worker(&p.conn, |ctx| {
        let a = ctx.write(vec![b'a'; 600]);
        let b = ctx.write(vec![b'b'; 600]);
        let c = ctx.write(vec![b'c'; 400]);
        (a, b, c)
    });
    assert!(a.is_ok());
    assert!(
        matches!(
            b,
            Err(Error::NoSpace {
                limit: Limit::WriteBuffer,
                max: 1000
            })
        ),
        "{b:?}"
    );
    assert!(c.is_ok(), "exactly 1000 bytes is within the limit: {c:?}");
    // Not fatal, and the refused write queued nothing.
    let got = p.recv_exact(1000);
    assert!(got[..600].iter().all(|&x| x == b'a') && got[600..].iter().all(|&x| x == b'c'));
    // The reservation is released just after the kernel took the bytes.
    assert!(wait_until(WAIT, || p.conn.stats().write_queued == 0));
    p.conn.write(&b"still open"[..]).unwrap();
    assert_eq!(p.recv_exact(10), b"still open");
}

#[test]
fn default_wbuf_max_is_finite_and_checked_on_every_write() {
    let r = shared_reactor();
    let mut p = client_pair(r, Options::new());
    let max = netactor::DEFAULT_WBUF_MAX;
    let (accepted, e) = fill_until_refused(&p.conn, 256 << 10, 64 << 20);
    assert!(
        matches!(e, Error::NoSpace { limit: Limit::WriteBuffer, max: m } if m == max),
        "{e:?}"
    );
    assert!(p.conn.stats().write_queued <= max);
    // Every further write is checked too (the reference only checked the first).
    for _ in 0..3 {
        assert!(matches!(
            p.conn.write(vec![0u8; 256 << 10]),
            Err(Error::NoSpace { .. })
        ));
    }
    // The peer gets exactly what was accepted; afterwards writes work again.
    let mut buf = vec![0u8; accepted];
    p.peer.read_exact(&mut buf).unwrap();
    assert!(buf.iter().all(|&x| x == 0xAB));
    p.conn.write(&b"more"[..]).unwrap();
    let mut more = [0u8; 4];
    p.peer.read_exact(&mut more).unwrap();
    assert_eq!(&more, b"more");
}

#[test]
fn drain_fires_once_when_the_queue_falls_to_the_low_water_mark() {
    let r = shared_reactor();
    let lwm = 64 << 10;
    let mut p = client_pair(r, Options::new().low_water_mark(Some(lwm)));
    let total = 1 << 20;
    p.conn.write(pattern(total)).unwrap();
    assert!(wait_until(WAIT, || p.conn.stats().write_queued > lwm));
    // Still backed up: no drain yet.
    assert!(p.events.recv_timeout(Duration::from_millis(50)).is_err());
    let mut got = vec![0u8; total];
    p.peer.read_exact(&mut got).unwrap();
    assert_eq!(got, pattern(total));
    match p.next_event() {
        Event::Drain => {}
        other => panic!("expected Drain, got {other:?}"),
    }
    assert!(p.conn.stats().write_queued <= lwm);
    // One drain per episode.
    assert!(p.events.recv_timeout(Duration::from_millis(100)).is_err());
}

#[test]
fn no_drain_events_without_a_low_water_mark() {
    let mut p = pair(shared_reactor(), Options::new());
    for _ in 0..20 {
        p.conn.write(&b"x"[..]).unwrap();
    }
    p.recv_exact(20);
    assert!(p.events().recv_timeout(Duration::from_millis(100)).is_err());
}

#[test]
fn autocork_coalesces_a_turn_into_one_vectored_write() {
    // `None`: the default options — a closure's writes with no input
    // buffered are tried at once, as without autocork (the default gathers
    // only while more input waits: see
    // `answers_to_pipelined_requests_leave_in_few_sends_by_default`).
    for (autocork, n) in [
        (None, 50usize),
        (Some(true), 50),
        (Some(false), 50),
        (Some(true), 100),
    ] {
        let opts = match autocork {
            None => Options::new(),
            Some(on) => Options::new().autocork(on),
        };
        let mut p = pair(shared_reactor(), opts);
        let before = p.conn.stats().write_calls;
        on_worker(&p.conn, move |ctx| {
            for i in 0..n {
                ctx.write(format!("{i:04}")).unwrap();
            }
        });
        let got = p.recv_exact(4 * n);
        let want: String = (0..n).map(|i| format!("{i:04}")).collect();
        assert_eq!(got, want.as_bytes());
        // Read the counter on the worker: a later turn sees the finished
        // flush (the peer may get the bytes before the counter is bumped).
        let calls = on_worker(&p.conn, |ctx| ctx.stats().write_calls) - before;
        match (autocork, n) {
            // All 50 buffers in one writev.
            (Some(true), 50) => assert_eq!(calls, 1, "autocork, 50 buffers"),
            // Without autocork every write is tried at once.
            (None | Some(false), _) => assert_eq!(calls, n as u64, "no autocork"),
            // More buffers than one writev carries: still few calls.
            _ => assert!(calls <= 2, "autocork, 100 buffers: {calls} calls"),
        }
    }
}

#[test]
fn many_small_parts_arrive_whole_and_in_order_through_a_full_socket() {
    // 20 000 parts of 100 B queued in one turn: they leave copied together
    // in 16 KiB sends (the small-buffer path), most of them only partly
    // taken while the peer is not reading yet.
    let mut p = pair(shared_reactor(), Options::new().wbuf_max(8 << 20));
    const PARTS: usize = 20_000;
    const SIZE: usize = 100;
    on_worker(&p.conn, |ctx| {
        for i in 0..PARTS / 2 {
            let a = Bytes::from(vec![(i % 251) as u8; SIZE]);
            let b = Bytes::from(vec![((i + 100) % 251) as u8; SIZE]);
            ctx.write_parts([a, b]).unwrap();
        }
    });
    // Let the socket fill before reading, so sends are partial.
    std::thread::sleep(Duration::from_millis(100));
    let got = p.recv_exact(PARTS * SIZE);
    for (k, chunk) in got.chunks(SIZE).enumerate() {
        let (i, second) = (k / 2, k % 2 == 1);
        let want = if second { (i + 100) % 251 } else { i % 251 } as u8;
        assert!(chunk.iter().all(|&b| b == want), "part {k} garbled");
    }
    let stats = on_worker(&p.conn, |ctx| ctx.stats());
    assert_eq!(stats.bytes_written as usize, PARTS * SIZE);
}

#[test]
fn send_encoder_parts_go_out_atomically_and_in_order() {
    struct Framed(&'static [u8]);
    impl netactor::framing::Encoder for Framed {
        fn encode(self, out: &mut Vec<Bytes>) -> Result<(), Error> {
            out.push(Bytes::from(format!("{}:", self.0.len())));
            out.push(Bytes::from_static(self.0));
            out.push(Bytes::from_static(b","));
            Ok(())
        }
    }
    let mut p = pair(shared_reactor(), Options::new());
    p.conn.send(Framed(b"hello")).unwrap();
    p.conn.send(Framed(b"x")).unwrap();
    assert_eq!(p.recv_exact(12), b"5:hello,1:x,");
    // All or nothing against wbuf_max.
    let p2 = pair(shared_reactor(), Options::new().wbuf_max(4));
    assert!(matches!(
        p2.conn.send(Framed(b"hello")),
        Err(Error::NoSpace { .. })
    ));
    assert_eq!(p2.conn.stats().write_queued, 0);
}

#[test]
fn shutdown_half_closes_after_queued_data_and_reading_continues() {
    let mut p = pair(shared_reactor(), Options::new());
    let data = pattern(300_000);
    p.conn.write(data.clone()).unwrap();
    p.conn.shutdown().unwrap();
    assert!(matches!(p.conn.write(&b"late"[..]), Err(Error::BrokenPipe)));
    let (got, eof) = read_to_eof(&mut p.peer);
    assert!(eof, "peer saw no clean EOF");
    assert_eq!(got.len(), data.len());
    assert!(got == data);
    // Our read side is still open.
    let r = p.conn.push_read(Chunk::new(5)).unwrap();
    p.send(b"after");
    assert_eq!(&r.recv_timeout(WAIT).unwrap()[..], b"after");
    // Peer closes too: both directions done, the connection closes itself.
    p.conn.set_streaming(Some(Raw)).unwrap();
    p.peer.shutdown(std::net::Shutdown::Write).unwrap();
    let evs = events_until_closed(p.events(), WAIT);
    assert!(matches!(evs[..], [Event::Eof, Event::Closed]), "{evs:?}");
}

#[test]
fn close_lingers_until_everything_queued_is_delivered() {
    let r = shared_reactor();
    let mut p = client_pair(r, Options::new().linger(Duration::from_secs(10)));
    let data = pattern(2 << 20);
    p.conn.write(data.clone()).unwrap();
    assert!(wait_until(WAIT, || p.conn.stats().write_queued > 0));
    p.conn.close().unwrap();
    // Still flushing: not closed yet.
    assert!(p.events.recv_timeout(Duration::from_millis(50)).is_err());
    let (got, eof) = read_to_eof(&mut p.peer);
    assert!(eof);
    assert_eq!(got.len(), data.len());
    assert!(got == data);
    assert!(matches!(p.next_event(), Event::Closed));
    assert!(matches!(p.conn.write(&b"x"[..]), Err(Error::Closed)));
}

#[test]
fn dropping_the_last_handle_closes_with_linger() {
    let r = shared_reactor();
    let p = client_pair(r, Options::new());
    let ClientPair {
        conn,
        events,
        mut peer,
    } = p;
    let data = pattern(1 << 20);
    conn.write(data.clone()).unwrap();
    drop(conn);
    let (got, eof) = read_to_eof(&mut peer);
    assert!(
        eof && got == data,
        "got {} of {} bytes",
        got.len(),
        data.len()
    );
    assert!(matches!(next_event(&events, WAIT), Event::Closed));
}

#[test]
fn linger_zero_drops_queued_data_and_linger_expiry_gives_up() {
    let r = shared_reactor();
    // linger 0: close at once, the queue is dropped.
    let mut p = client_pair(r, Options::new().linger(Duration::ZERO));
    let total = 1 << 20;
    p.conn.write(pattern(total)).unwrap();
    assert!(wait_until(WAIT, || p.conn.stats().write_queued > 0));
    p.conn.close().unwrap();
    // What was dropped is reported, not dropped silently.
    match p.next_event() {
        Event::Error {
            error: Error::Unsent { bytes },
            fatal: false,
        } => assert!(bytes > 0 && bytes <= total, "{bytes}"),
        other => panic!("expected Unsent, got {other:?}"),
    }
    assert!(matches!(p.next_event(), Event::Closed));
    let (got, _) = read_to_eof(&mut p.peer);
    assert!(got.len() < total, "everything arrived despite linger 0");

    // linger 200 ms with a peer that never reads: closed after ~200 ms.
    let p = client_pair(r, Options::new().linger(Duration::from_millis(200)));
    p.conn.write(pattern(total)).unwrap();
    assert!(wait_until(WAIT, || p.conn.stats().write_queued > 0));
    let t0 = Instant::now();
    p.conn.close().unwrap();
    assert!(matches!(
        p.next_event(),
        Event::Error {
            error: Error::Unsent { .. },
            fatal: false
        }
    ));
    assert!(matches!(p.next_event(), Event::Closed));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn peer_reset_mid_stream_fails_reads_and_writes() {
    // Reading side: a pending read fails with ConnectionReset, fatally.
    let mut p = pair(shared_reactor(), Options::new());
    let r = p.conn.push_read(Chunk::new(100)).unwrap();
    p.send(b"some");
    p.wait_read(4);
    socket2::SockRef::from(&p.peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(p.peer);
    assert!(matches!(
        r.recv_timeout(WAIT),
        Err(netactor::ReplyTimeoutError::Failed(Error::ConnectionReset))
    ));
    let evs = events_until_closed(p.listener.events(), WAIT);
    assert!(
        matches!(
            evs[..],
            [
                Event::Error {
                    error: Error::ConnectionReset,
                    fatal: true
                },
                Event::Closed
            ]
        ),
        "{evs:?}"
    );

    // Writing side: a reset during a long transfer ends it with a fatal error.
    let p = client_pair(shared_reactor(), Options::new().wbuf_max(64 << 20));
    p.conn.write(pattern(8 << 20)).unwrap();
    assert!(wait_until(WAIT, || p.conn.stats().bytes_written > 0));
    let mut peer = p.peer;
    let mut some = [0u8; 1000];
    peer.read_exact(&mut some).unwrap();
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
    let evs = events_until_closed(&p.events, WAIT);
    assert!(
        matches!(
            evs[..],
            [
                Event::Error {
                    error: Error::ConnectionReset | Error::BrokenPipe,
                    fatal: true
                },
                Event::Closed
            ]
        ),
        "{evs:?}"
    );
    let _ = Write::flush(&mut std::io::sink());
}

#[test]
fn close_delivers_everything_even_with_unread_input() {
    // Input nobody read is still in our receive queue when the socket is
    // closed; a plain close() would then send RST and drop whatever the
    // kernel had not sent yet.
    let r = shared_reactor();
    let mut p = client_pair(r, Options::new());
    p.peer.write_all(b"unread request").unwrap();
    let data = pattern(1 << 20);
    p.conn.write(data.clone()).unwrap();
    p.conn.close().unwrap();
    let (got, eof) = read_to_eof(&mut p.peer);
    assert_eq!(got.len(), data.len(), "clean EOF: {eof}");
    assert!(eof && got == data);
    assert!(matches!(p.next_event(), Event::Closed));
}

#[test]
fn writes_after_close_are_refused_not_dropped() {
    let p = pair(shared_reactor(), Options::new());
    p.conn.close().unwrap();
    // Whether or not the actor has processed the close yet, the write is
    // refused with a clear error: nothing is accepted and then lost.
    match p.conn.write(&b"late"[..]) {
        Err(netactor::Error::Closed) => {}
        other => panic!("expected Err(Closed), got {other:?}"),
    }
}

#[test]
fn reading_resumed_on_drain_picks_up_bytes_already_waiting() {
    // The echo example's back-pressure: stop reading while more than HIGH is
    // queued, resume on Drain. Bytes that arrived meanwhile sit in the
    // socket and raise no new edge, so the turn that delivers Drain must
    // read them — or the transfer stalls with the queue empty.
    use netactor::{Ctx, Sink};
    use socket2::{Domain, SockRef, Socket, Type};
    const HIGH: usize = 64 << 10;
    let r = shared_reactor();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    for round in 0..4 {
        // Small kernel buffers, so the server's own queue passes HIGH soon.
        let client = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        client.set_recv_buffer_size(32 << 10).unwrap();
        client.connect(&l.local_addr().unwrap().into()).unwrap();
        let mut s: std::net::TcpStream = client.into();
        let (server_side, _) = l.accept().unwrap();
        SockRef::from(&server_side)
            .set_send_buffer_size(32 << 10)
            .unwrap();
        let (stopped_tx, stopped_rx) = crossbeam_channel::bounded::<()>(1);
        let handler = move |ctx: &mut Ctx<'_>, ev: Event| match ev {
            Event::Read(frame) => {
                ctx.write(frame.into_bytes().unwrap()).unwrap();
                if ctx.stats().write_queued > HIGH {
                    ctx.stop_read();
                    let _ = stopped_tx.try_send(());
                }
            }
            Event::Drain => ctx.start_read(),
            Event::Eof => {
                let _ = ctx.shutdown();
            }
            _ => {}
        };
        let opts = Options::new().low_water_mark(Some(16 << 10));
        let conn = r.adopt(server_side, opts, Sink::handler(handler)).unwrap();
        conn.set_streaming(Some(Raw)).unwrap();
        let data = pattern(4 << 20);
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_write_timeout(Some(WAIT)).unwrap();
        let mut writer = s.try_clone().unwrap();
        let sent = data.clone();
        let send = std::thread::spawn(move || {
            let r = writer.write_all(&sent);
            let _ = writer.shutdown(std::net::Shutdown::Write);
            r
        });
        // Read nothing until the server has stopped reading (its queue is
        // past HIGH and the client's bytes pile up in the socket); then
        // drain, so the server's queue empties and Drain comes.
        stopped_rx
            .recv_timeout(WAIT)
            .expect("the server stopped reading");
        let (got, eof) = read_to_eof(&mut s);
        assert!(
            send.join().unwrap().is_ok(),
            "round {round}: the send failed"
        );
        assert!(
            eof && got == data,
            "round {round}: {} of {} bytes echoed before the transfer stalled",
            got.len(),
            data.len()
        );
    }
}

/// Pipelined requests: the answers a handler writes while more requests
/// wait in the read buffer leave together, not one `send` each — by
/// default, with no option. One request at a time is answered at once.
#[test]
fn answers_to_pipelined_requests_leave_in_few_sends_by_default() {
    use netactor::framing::Line;
    use netactor::{Ctx, ListenOptions};
    let r = reactor(1);
    let (tx, rx) = crossbeam_channel::unbounded::<netactor::Stats>();
    let l = r
        .listen_with(any_port(), ListenOptions::new(), move |ctx| {
            ctx.set_streaming(Some(Line::new()));
            let tx = tx.clone();
            move |ctx: &mut Ctx<'_>, ev: Event| match ev {
                Event::Read(f) => {
                    let mut line = f.into_bytes().unwrap().to_vec();
                    line.extend_from_slice(b" ok\n");
                    ctx.write(line).unwrap();
                }
                Event::Eof => {
                    let _ = tx.send(ctx.stats());
                    let _ = ctx.shutdown();
                }
                _ => {}
            }
        })
        .unwrap();
    // 200 requests in one write: answers gathered per decode pass.
    let mut s = std::net::TcpStream::connect(l.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut wire = Vec::new();
    let mut want = Vec::new();
    for i in 0..200 {
        wire.extend_from_slice(format!("req {i}\n").as_bytes());
        want.extend_from_slice(format!("req {i} ok\n").as_bytes());
    }
    s.write_all(&wire).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let (got, clean) = read_to_eof(&mut s);
    assert!(clean);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    let stats = rx.recv_timeout(WAIT).unwrap();
    // Gathered: one vectored send per 64 answers (its iovec limit) and per
    // arrival of requests — never one per answer (200 before).
    assert!(
        stats.write_calls <= 200 / 64 + 1 + stats.read_calls,
        "{stats:?}"
    );
    // One at a time: each answer goes out before the next request is sent.
    let mut s = std::net::TcpStream::connect(l.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for i in 0..20 {
        s.write_all(format!("one {i}\n").as_bytes()).unwrap();
        let want = format!("one {i} ok\n");
        let mut buf = vec![0u8; want.len()];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(buf, want.as_bytes());
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let (rest, clean) = read_to_eof(&mut s);
    assert!(clean && rest.is_empty());
    let stats = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(stats.write_calls, 20, "{stats:?}");
}
