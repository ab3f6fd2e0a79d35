//! Helpers shared by the core test files: real loopback sockets, bounded waits.
//!
//! Every wait here has a deadline, so a bug shows up as a failed assertion
//! instead of a hung test run.

#![allow(dead_code)] // each test binary uses a different subset

mod shared;
#[allow(unused_imports)] // each test binary uses a different subset
pub use shared::{any_port, example_bin, reactor};

use crossbeam_channel::Receiver;
use netactor::{ConnId, Connection, Event, ListenOptions, Listener, Options, Reactor};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Upper bound for "this should happen promptly" waits.
pub const WAIT: Duration = Duration::from_secs(5);

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
/// Used only where there is no channel to wait on (counters, kernel state).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Polls the reactor's metrics until `cond` holds, for at most `timeout`
/// (then fails, saying `what`); returns the snapshot that held.
pub fn metrics_until(
    r: &Reactor,
    timeout: Duration,
    what: &str,
    cond: impl Fn(&netactor::Metrics) -> bool,
) -> netactor::Metrics {
    let end = Instant::now() + timeout;
    loop {
        let m = r.metrics();
        if cond(&m) {
            return m;
        }
        assert!(Instant::now() < end, "{what}: {m:#?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Connects a client to `l` (reads time out after [`WAIT`]), accepts it,
/// and waits until it is the `n`th open connection. Returns the client,
/// the handle, and the worker the connection started on (the one whose
/// open count rose).
pub fn accept_placed(r: &Reactor, l: &Listener, n: u64) -> (TcpStream, Connection, usize) {
    let before: Vec<u64> = r
        .metrics()
        .workers
        .iter()
        .map(|w| w.connections_open)
        .collect();
    let p = TcpStream::connect(l.local_addr()).unwrap();
    p.set_read_timeout(Some(WAIT)).unwrap();
    let c = l.accept_timeout(WAIT).unwrap();
    let m = metrics_until(r, WAIT, "the connection started", |m| {
        m.connections_open == n
    });
    let w = (0..before.len())
        .find(|&i| m.workers[i].connections_open > before[i])
        .expect("one worker's count rose");
    (p, c, w)
}

/// A listener whose connections echo what they read (raw) and close at EOF.
pub fn echo_listener(r: &Reactor, opts: ListenOptions) -> Listener {
    r.listen_with(any_port(), opts, |ctx| {
        ctx.set_streaming(Some(netactor::framing::Raw));
        |ctx: &mut netactor::Ctx<'_>, ev: Event| match ev {
            Event::Read(f) => {
                let _ = ctx.write(f.into_bytes().unwrap());
            }
            Event::Eof => ctx.close(),
            _ => {}
        }
    })
    .unwrap()
}

/// A server-side connection (channel mode) and the std client connected to it.
pub struct Pair {
    /// Keeps the listener (and its event channel) alive.
    pub listener: Listener,
    /// The accepted connection, driven by the reactor.
    pub conn: Connection,
    /// The peer: a plain blocking std socket.
    pub peer: TcpStream,
}

impl Pair {
    /// Events of the server-side connection.
    pub fn events(&self) -> &Receiver<(ConnId, Event)> {
        self.listener.events()
    }

    /// Next event, or panic after `WAIT`.
    pub fn next_event(&self) -> Event {
        next_event(self.events(), WAIT)
    }

    /// Writes from the peer side.
    pub fn send(&mut self, data: &[u8]) {
        self.peer.write_all(data).expect("peer write");
    }

    /// Waits until the reactor has read `total` bytes from the socket in all.
    pub fn wait_read(&self, total: u64) {
        assert!(
            wait_until(WAIT, || self.conn.stats().bytes_read >= total),
            "reactor read only {} of {total} bytes",
            self.conn.stats().bytes_read
        );
    }

    /// Reads exactly `n` bytes on the peer side (bounded by the read timeout).
    pub fn recv_exact(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.peer.read_exact(&mut v).expect("peer read_exact");
        v
    }
}

/// Listens (channel mode) with `opts`, connects a std client and accepts it.
pub fn pair(r: &Reactor, opts: Options) -> Pair {
    let listener = r
        .listen(any_port(), ListenOptions::new().options(opts))
        .expect("listen");
    let peer = TcpStream::connect(listener.local_addr()).expect("connect");
    peer.set_read_timeout(Some(WAIT)).unwrap();
    peer.set_write_timeout(Some(WAIT)).unwrap();
    let conn = listener.accept_timeout(WAIT).expect("accept");
    Pair {
        listener,
        conn,
        peer,
    }
}

/// The next event on `rx`, or panic after `timeout`.
pub fn next_event(rx: &Receiver<(ConnId, Event)>, timeout: Duration) -> Event {
    match rx.recv_timeout(timeout) {
        Ok((_, ev)) => ev,
        Err(e) => panic!("no event within {timeout:?}: {e}"),
    }
}

/// Collects events until `Closed` (inclusive), or panics after `timeout`.
pub fn events_until_closed(rx: &Receiver<(ConnId, Event)>, timeout: Duration) -> Vec<Event> {
    let end = Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((_, ev)) => {
                let closed = matches!(ev, Event::Closed);
                out.push(ev);
                if closed {
                    return out;
                }
            }
            Err(_) => panic!("no Closed within {timeout:?}; got {out:?}"),
        }
    }
}

/// Waits for the first event matching `pred`, skipping others; panics after `timeout`.
pub fn wait_event(
    rx: &Receiver<(ConnId, Event)>,
    timeout: Duration,
    mut pred: impl FnMut(&Event) -> bool,
) -> Event {
    let end = Instant::now() + timeout;
    let mut skipped = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((_, ev)) if pred(&ev) => return ev,
            Ok((_, ev)) => skipped.push(ev),
            Err(_) => panic!("expected event not seen within {timeout:?}; got {skipped:?}"),
        }
    }
}

/// Aborts the whole test process if it is still running after `limit`: a
/// last line of defence so that a hang in `Reactor::drop` fails the run.
pub struct Watchdog(Arc<AtomicBool>);

impl Watchdog {
    pub fn new(what: &'static str, limit: Duration) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        std::thread::spawn(move || {
            let end = Instant::now() + limit;
            while Instant::now() < end {
                if d.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!("WATCHDOG: {what} still running after {limit:?}; aborting");
            std::process::abort();
        });
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 0;
        }
        if rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        }
        rl.rlim_cur
    }
}

/// A port on 127.0.0.1 with nothing listening (bound then closed), so a
/// connect to it is refused.
pub fn refused_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind(any_port()).unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// A listener whose accept queue is full and never drained: further SYNs to
/// it are dropped, so a connect to it hangs until its timeout. Returns the
/// address plus everything that must stay alive.
pub fn blackhole() -> (SocketAddr, socket2::Socket, Vec<TcpStream>) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&any_port().into()).unwrap();
    s.listen(0).unwrap();
    let addr: SocketAddr = s.local_addr().unwrap().as_socket().unwrap();
    let mut fill = Vec::new();
    // Linux queues backlog+1 connections; connect until one does not complete.
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(c) => fill.push(c),
            Err(_) => return (addr, s, fill),
        }
    }
    panic!("could not fill the accept queue of a backlog-0 listener");
}

/// A reactor-side client connection (channel mode) and the std peer it
/// connected to. Both sides use small socket buffers (`SO_SNDBUF` set in the
/// prepare hook, `SO_RCVBUF` on the peer's listener), so the kernel absorbs
/// only a few tens of KiB and user-space queues and back-pressure show.
pub struct ClientPair {
    pub conn: Connection,
    pub events: Receiver<(ConnId, Event)>,
    pub peer: TcpStream,
}

impl ClientPair {
    pub fn next_event(&self) -> Event {
        next_event(&self.events, WAIT)
    }
}

/// See [`ClientPair`].
pub fn client_pair(r: &Reactor, opts: Options) -> ClientPair {
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    l.set_recv_buffer_size(8 << 10).unwrap();
    l.bind(&any_port().into()).unwrap();
    l.listen(16).unwrap();
    let l: std::net::TcpListener = l.into();
    let (tx, events) = netactor::event_channel(1024);
    let conn = r
        .connect(
            l.local_addr().unwrap(),
            netactor::ConnectOptions::new()
                .options(opts)
                .prepare(|s, _| s.set_send_buffer_size(8 << 10)),
            tx,
        )
        .expect("connect");
    let (peer, _) = l.accept().expect("accept");
    peer.set_read_timeout(Some(WAIT)).unwrap();
    peer.set_write_timeout(Some(WAIT)).unwrap();
    match next_event(&events, WAIT) {
        Event::Connected { .. } => {}
        other => panic!("expected Connected, got {other:?}"),
    }
    ClientPair { conn, events, peer }
}

/// Reads from `s` until EOF (bounded by its read timeout); returns the bytes
/// and whether a clean EOF was seen (false on error/reset/timeout).
pub fn read_to_eof(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return (out, false),
        }
    }
}

/// A deterministic test pattern: byte `i` is `(i * 7 + i / 251) as u8`.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}
