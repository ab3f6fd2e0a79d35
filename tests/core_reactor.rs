//! The reactor and the actor model: builder defaults, readiness and
//! messages routed to the worker that owns a connection, run strictly one
//! at a time and in order; the handle's traits; socket options on accepted,
//! connected and adopted sockets; listen backlog and SO_REUSEADDR.
//!
//! Run: `cargo test --release --test core_reactor`

mod common;

use common::*;
use netactor::framing::{Chunk, Raw};
use netactor::{ConnectOptions, Connection, Ctx, Event, ListenOptions, Options, Reactor, Reply};
use parking_lot::Mutex;
use socket2::SockRef;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

fn shared_reactor() -> &'static Reactor {
    static R: OnceLock<Reactor> = OnceLock::new();
    R.get_or_init(|| reactor(4))
}

#[test]
fn handles_are_clone_send_sync() {
    fn check<T: Clone + Send + Sync + 'static>() {}
    fn send<T: Send + 'static>() {}
    check::<Connection>();
    send::<Reply<bytes::Bytes>>();
    send::<Event>();
    send::<Reactor>();
    fn sync<T: Sync>() {}
    sync::<Reactor>();
}

#[test]
fn builder_defaults_to_one_worker_per_core() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let r = Reactor::builder().build().unwrap();
    assert_eq!(r.workers(), cores);
    drop(r);
    assert_eq!(Reactor::builder().workers(3).build().unwrap().workers(), 3);
    assert_eq!(Reactor::builder().workers(0).build().unwrap().workers(), 1);
}

#[test]
fn connections_run_on_the_worker_threads_and_load_uses_them_all() {
    // A connection belongs to one worker's state for life; its turns run on
    // that worker's thread, or on the thread holding the poller role while
    // the owner is parked (never two at once: see the next test). Under
    // concurrent load every worker thread takes part.
    let r = shared_reactor();
    let threads: Arc<Mutex<HashSet<String>>> = Default::default();
    let t = threads.clone();
    let listener = r
        .listen_with(any_port(), ListenOptions::new(), move |ctx| {
            ctx.set_streaming(Some(Raw));
            let t = t.clone();
            move |ctx: &mut Ctx<'_>, ev: Event| {
                let me = std::thread::current().name().unwrap_or("?").to_string();
                t.lock().insert(me);
                if let Event::Read(f) = ev {
                    let _ = ctx.write(f.into_bytes().unwrap());
                }
            }
        })
        .unwrap();
    let addr = listener.local_addr();
    let deadline = std::time::Instant::now() + WAIT;
    // Bounded: rounds of 16 concurrent echoing clients until all 4 worker
    // threads have run a turn, or the deadline fails the test.
    while threads.lock().len() < 4 && std::time::Instant::now() < deadline {
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    let mut p = TcpStream::connect(addr).unwrap();
                    p.set_read_timeout(Some(WAIT)).unwrap();
                    for round in 0..50u8 {
                        p.write_all(&[round; 64]).unwrap();
                        let mut b = [0u8; 64];
                        p.read_exact(&mut b).unwrap();
                        assert_eq!(b, [round; 64]);
                    }
                });
            }
        });
    }
    let threads = threads.lock();
    for t in threads.iter() {
        assert!(t.starts_with("netactor-worker-"), "a turn ran on {t}");
    }
    assert_eq!(threads.len(), 4, "only {threads:?} ran turns");
}

#[test]
fn messages_and_readiness_are_handled_one_at_a_time_in_order() {
    let r = shared_reactor();
    let busy = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let handler_thread = Arc::new(Mutex::new(None::<String>));
    let (conn_tx, conn_rx) = crossbeam_channel::bounded(1);
    let (b, o, ht) = (busy.clone(), overlaps.clone(), handler_thread.clone());
    let listener = r
        .listen_with(any_port(), ListenOptions::new(), move |ctx| {
            ctx.set_streaming(Some(Raw));
            let _ = conn_tx.try_send(ctx.connection());
            let (b, o, ht) = (b.clone(), o.clone(), ht.clone());
            move |_ctx: &mut Ctx<'_>, _ev: Event| {
                *ht.lock() = std::thread::current().name().map(String::from);
                if b.swap(true, Ordering::SeqCst) {
                    o.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::yield_now();
                b.store(false, Ordering::SeqCst);
            }
        })
        .unwrap();
    let mut peer = TcpStream::connect(listener.local_addr()).unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let conn: Connection = conn_rx.recv_timeout(WAIT).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    const THREADS: usize = 4;
    const PER: usize = 300;
    // Readiness keeps coming while the app threads post messages.
    let mut feeder = peer.try_clone().unwrap();
    let feed = std::thread::spawn(move || {
        for _ in 0..200 {
            if feeder.write_all(b"x").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let (conn, busy, overlaps, log) =
                (conn.clone(), busy.clone(), overlaps.clone(), log.clone());
            std::thread::spawn(move || {
                for seq in 0..PER {
                    conn.write(format!("{t}:{seq:03};")).unwrap();
                    let (b, o, l) = (busy.clone(), overlaps.clone(), log.clone());
                    conn.call(move |_ctx| {
                        if b.swap(true, Ordering::SeqCst) {
                            o.fetch_add(1, Ordering::SeqCst);
                        }
                        let me = std::thread::current().name().map(String::from);
                        l.lock().push((t, seq, me));
                        b.store(false, Ordering::SeqCst);
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    feed.join().unwrap();
    // Each message is 6 bytes; read them all and check per-sender order.
    let mut got = vec![0u8; THREADS * PER * 6];
    peer.read_exact(&mut got).unwrap();
    let mut next = [0usize; THREADS];
    for m in got.chunks(6) {
        let s = std::str::from_utf8(m).unwrap();
        let t: usize = s[..1].parse().unwrap();
        let seq: usize = s[2..5].parse().unwrap();
        assert_eq!(seq, next[t], "writes of sender {t} out of order");
        next[t] += 1;
    }
    assert!(wait_until(WAIT, || log.lock().len() == THREADS * PER));
    let log = log.lock();
    let mut next = [0usize; THREADS];
    let on_worker = |th: &Option<String>| {
        th.as_deref()
            .is_some_and(|n| n.starts_with("netactor-worker-"))
    };
    assert!(
        on_worker(&handler_thread.lock()),
        "the handler ran off the workers"
    );
    for (t, seq, th) in log.iter() {
        assert_eq!(*seq, next[*t], "calls of sender {t} out of order");
        assert!(on_worker(th), "a call ran on {th:?}");
        next[*t] += 1;
    }
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "the actor ran twice at once"
    );
}

/// Finds this process's socket with the given local (and peer) address and
/// runs `f` on it. Used to look at sockets owned by the reactor.
fn with_socket<T>(
    local: SocketAddr,
    peer: Option<SocketAddr>,
    f: impl Fn(SockRef<'_>) -> T,
) -> Option<T> {
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        // SAFETY: the fd is only borrowed for read-only getsockopt calls
        // within this iteration; if it was closed meanwhile the calls fail
        // (or hit another socket, which the address check rejects).
        let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
        let s = SockRef::from(&bfd);
        let Ok(l) = s.local_addr() else { continue };
        if l.as_socket() != Some(local) {
            continue;
        }
        let p = s.peer_addr().ok().and_then(|a| a.as_socket());
        if p == peer {
            return Some(f(s));
        }
    }
    None
}

fn flags(s: SockRef<'_>) -> (bool, bool, bool) {
    (
        s.tcp_nodelay().unwrap(),
        s.keepalive().unwrap(),
        s.out_of_band_inline().unwrap(),
    )
}

/// Waits until the actor has run its first turn (options are applied there).
fn sync(conn: &Connection) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    conn.call(move |_| {
        let _ = tx.send(());
    })
    .unwrap();
    rx.recv_timeout(WAIT).unwrap();
}

#[test]
fn nodelay_keepalive_oobinline_are_on_by_default_everywhere() {
    let r = shared_reactor();
    // Accepted.
    let p = pair(r, Options::new());
    sync(&p.conn);
    let accepted = with_socket(
        p.listener.local_addr(),
        Some(p.peer.local_addr().unwrap()),
        flags,
    )
    .expect("accepted socket");
    assert_eq!(
        accepted,
        (true, true, true),
        "accepted (nodelay, keepalive, oobinline)"
    );
    // Connected.
    let l = TcpListener::bind(any_port()).unwrap();
    let (tx, rx) = netactor::event_channel(8);
    let c = r
        .connect(l.local_addr().unwrap(), ConnectOptions::new(), tx)
        .unwrap();
    let (srv, _) = l.accept().unwrap();
    assert!(matches!(next_event(&rx, WAIT), Event::Connected { .. }));
    let connected = with_socket(
        srv.peer_addr().unwrap(),
        Some(srv.local_addr().unwrap()),
        flags,
    )
    .expect("connected socket");
    assert_eq!(connected, (true, true, true), "connected");
    // Adopted: a dup of the fd shares the socket, so it shows the options.
    let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (srv2, _) = l.accept().unwrap();
    let probe = srv2.try_clone().unwrap();
    let (tx, _rx2) = netactor::event_channel(8);
    let adopted = r.adopt(srv2, Options::new(), tx).unwrap();
    sync(&adopted);
    assert_eq!(flags(SockRef::from(&probe)), (true, true, true), "adopted");
    // Explicitly off, and changed live with configure.
    adopted
        .configure(|o| *o = o.clone().no_delay(false).keepalive(false).oobinline(false))
        .unwrap();
    sync(&adopted);
    assert_eq!(flags(SockRef::from(&probe)), (false, false, false));
    let (tx, rx3) = netactor::event_channel(8);
    let off = r
        .connect(
            l.local_addr().unwrap(),
            ConnectOptions::new().options(Options::new().no_delay(false).keepalive(false)),
            tx,
        )
        .unwrap();
    let (srv3, _) = l.accept().unwrap();
    // Options are applied when the connect completes, which `accept`
    // returning does not prove (a `call` runs while still connecting).
    assert!(matches!(next_event(&rx3, WAIT), Event::Connected { .. }));
    sync(&off);
    let f = with_socket(
        srv3.peer_addr().unwrap(),
        Some(srv3.local_addr().unwrap()),
        flags,
    )
    .expect("connected socket");
    assert_eq!(f, (false, false, true));
    drop((c, client, probe));
}

#[test]
fn oobinline_puts_urgent_data_in_the_stream() {
    for inline in [true, false] {
        let p = pair(shared_reactor(), Options::new().oobinline(inline));
        let r1 = p.conn.push_read(Chunk::new(2)).unwrap();
        sync(&p.conn);
        SockRef::from(&p.peer).send(b"ab").unwrap();
        assert_eq!(&r1.recv_timeout(WAIT).unwrap()[..], b"ab");
        SockRef::from(&p.peer)
            .send_with_flags(b"U", libc::MSG_OOB)
            .unwrap();
        SockRef::from(&p.peer).send(b"cd").unwrap();
        let r2 = p.conn.push_read(Chunk::new(2)).unwrap();
        let got = r2.recv_timeout(WAIT).unwrap();
        if inline {
            assert_eq!(&got[..], b"Uc", "urgent byte not inline");
        } else {
            assert_eq!(&got[..], b"cd", "urgent byte leaked into the stream");
        }
    }
}

#[test]
fn adopt_takes_over_a_connected_std_stream() {
    let l = TcpListener::bind(any_port()).unwrap();
    let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let (srv, _) = l.accept().unwrap();
    let (tx, rx) = netactor::event_channel(8);
    let conn = shared_reactor().adopt(srv, Options::new(), tx).unwrap();
    let line = conn.push_read(netactor::framing::Line::new()).unwrap();
    client.write_all(b"adopted\n").unwrap();
    assert_eq!(&line.recv_timeout(WAIT).unwrap().line[..], b"adopted");
    conn.write(&b"back"[..]).unwrap();
    let mut b = [0u8; 4];
    client.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"back");
    conn.close().unwrap();
    assert!(matches!(next_event(&rx, WAIT), Event::Closed));
    assert!(read_to_eof(&mut client).1);
}

#[test]
fn listen_backlog_is_configurable() {
    let r = shared_reactor();
    let backlog = 3;
    // Channel mode with room for one accepted connection that the app never
    // takes: the poller accepts one, then the kernel queue (backlog + 1) fills.
    let listener = r
        .listen(
            any_port(),
            ListenOptions::new().backlog(backlog).incoming_capacity(1),
        )
        .unwrap();
    // The listener is registered with the poller asynchronously: wait until
    // the first connection has been accepted (sits in `incoming`).
    let mut ok = vec![TcpStream::connect(listener.local_addr()).unwrap()];
    assert!(wait_until(WAIT, || listener.incoming().len() == 1));
    for _ in 0..20 {
        match TcpStream::connect_timeout(&listener.local_addr(), Duration::from_millis(300)) {
            Ok(s) => ok.push(s),
            Err(_) => break,
        }
    }
    assert_eq!(ok.len(), backlog as usize + 2, "connections that completed");
}

#[test]
fn listeners_set_so_reuseaddr() {
    let r = shared_reactor();
    let listener = r.listen(any_port(), ListenOptions::new()).unwrap();
    let addr = listener.local_addr();
    let reuse = with_socket(addr, None, |s| s.reuse_address().unwrap()).expect("listener socket");
    assert!(reuse, "SO_REUSEADDR off on the listener");
    // Behaviour: the port can be bound again while a connection from the
    // old listener sits in TIME_WAIT (server closed first).
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let conn = listener.accept_timeout(WAIT).unwrap();
    conn.close().unwrap();
    assert!(read_to_eof(&mut client).1);
    drop(client);
    drop(listener);
    assert!(
        wait_until(WAIT, || TcpStream::connect(addr).is_err()),
        "old listener never went away"
    );
    let plain = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let in_use = plain.bind(&addr.into());
    assert!(in_use.is_err(), "no TIME_WAIT to test against");
    let again = r.listen(addr, ListenOptions::new());
    assert!(again.is_ok(), "rebinding failed: {:?}", again.err());
}

#[test]
fn connections_lists_every_running_connection_of_every_kind_until_it_closes() {
    // A reactor of its own: the snapshot is reactor-wide.
    let r = reactor(2);
    let chan = r.listen(any_port(), ListenOptions::new()).unwrap();
    let handled = r
        .listen_with(any_port(), ListenOptions::new(), |ctx: &mut Ctx<'_>| {
            // Reading, so the peer's EOF is seen.
            ctx.set_streaming(Some(Raw));
            |ctx: &mut Ctx<'_>, ev: Event| {
                if let Event::Eof = ev {
                    ctx.close();
                }
            }
        })
        .unwrap();
    assert!(r.connections().is_empty());
    // Three accepted in channel mode, three in handler mode, one connected.
    let mut clients: Vec<TcpStream> = Vec::new();
    for _ in 0..3 {
        clients.push(TcpStream::connect(chan.local_addr()).unwrap());
        clients.push(TcpStream::connect(handled.local_addr()).unwrap());
    }
    let accepted: Vec<Connection> = (0..3)
        .map(|_| chan.accept_timeout(WAIT).expect("accepted"))
        .collect();
    let (etx, _erx) = crossbeam_channel::unbounded();
    let out = r
        .connect(chan.local_addr(), ConnectOptions::new(), etx)
        .expect("connect");
    let ids = |r: &Reactor| -> HashSet<netactor::ConnId> {
        r.connections().iter().map(|c| c.id()).collect()
    };
    assert!(
        wait_until(WAIT, || ids(&r).len() == 8),
        "7 connections and the accepted side of the outgoing one: {:?}",
        ids(&r)
    );
    let now = ids(&r);
    for c in accepted.iter().chain([&out]) {
        assert!(now.contains(&c.id()), "{:?} missing from {now:?}", c.id());
    }
    // A handle from the snapshot works like any other: close one through it.
    let victim = accepted[1].id();
    let snap = r.connections();
    let h = snap.iter().find(|c| c.id() == victim).unwrap();
    h.close().unwrap();
    drop(snap);
    assert!(wait_until(WAIT, || !ids(&r).contains(&victim)));
    assert!(accepted[1].is_closed());
    // The snapshot's handles do not keep channel-mode connections open:
    // dropping the application's last handle still closes it.
    let other = accepted[2].id();
    let held = r.connections();
    drop(accepted);
    drop(held);
    assert!(wait_until(WAIT, || !ids(&r).contains(&other)));
    // Handler-mode connections leave when their peer goes.
    drop(clients);
    assert!(
        wait_until(WAIT, || ids(&r).len() == 2),
        "left: {:?} (the outgoing connection and its accepted side)",
        ids(&r)
    );
    r.shutdown();
    assert!(r.connections().is_empty());
}
