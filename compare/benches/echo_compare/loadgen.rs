//! The load generator: one for every server, so differences come from the
//! servers. Non-blocking mio sockets, edge-triggered; payloads generated once
//! (no allocation per message); completions counted from echoed bytes (all
//! messages of a scenario have one size); every echoed byte compared with
//! what was sent, so a server that garbles data fails instead of scoring.

use crate::server::Server;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "churn.rs"]
mod churn;
pub use churn::{client_config as churn_client_config, run_churn, Churn};

/// Connects in flight at once per load-generator thread: well under every
/// server's accept backlog (1024), so a burst of 10 000 never drops a SYN.
const CONNECTS_IN_FLIGHT: usize = 128;
/// Read buffer: larger than the most a connection ever has in flight (64 KiB
/// in the bulk scenario), so a short read reliably means "drained".
const SCRATCH: usize = 128 << 10;

/// How long each phase may take, and how long to measure.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Traffic before the measured window (caches, buffers, thread wake-ups settle).
    pub warmup: Duration,
    /// The measured window.
    pub measure: Duration,
    /// Bound on connecting (and, for TLS, handshaking) plus the first echo
    /// on every connection.
    pub setup_timeout: Duration,
}

/// A closed-loop load: `conns` connections, each keeping `inflight`
/// messages of `size` bytes outstanding.
#[derive(Clone)]
pub struct Flow {
    pub conns: usize,
    pub size: usize,
    pub inflight: usize,
    pub tls: Option<Arc<ClientConfig>>,
}

/// What one measured window saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Measured {
    pub msgs: u64,
    pub secs: f64,
    /// Server CPU seconds (user + system) used during the window.
    pub server_cpu: f64,
    /// Load-generator CPU seconds (this process) used during the window.
    pub lg_cpu: f64,
}

/// Round-trip percentiles of the latency scenario, in microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
}

/// Memory held by a server for idle connections.
#[derive(Clone, Copy, Debug, Default)]
pub struct Idle {
    /// RSS growth per connection with every connection open and idle.
    pub rss_per_conn: f64,
    /// RSS growth per connection after each echoed one message.
    pub rss_per_conn_after: f64,
    /// Connections that echoed their message correctly.
    pub verified: usize,
}

/// CPU seconds this process has used (all threads).
pub fn self_cpu() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a zeroed rusage; RUSAGE_SELF is always valid.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The payload stream: `pattern[i]` depends on the offset inside a message,
/// and the buffer is long enough to take a slice of up to `inflight`
/// messages starting anywhere inside the first one.
fn pattern(size: usize, inflight: usize) -> Vec<u8> {
    (0..size * (inflight + 1))
        .map(|i| {
            let j = i % size;
            (j.wrapping_mul(31) ^ (j >> 8)).wrapping_add(7) as u8
        })
        .collect()
}

/// Checks `data`, found at stream offset `off`, against the pattern.
fn verify(pat: &[u8], size: usize, mut off: u64, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        let o = (off % size as u64) as usize;
        let n = data.len().min(pat.len() - o);
        if data[..n] != pat[o..o + n] {
            return false;
        }
        data = &data[n..];
        off += n as u64;
    }
    true
}

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// Writes the records `tls` has queued until the socket refuses more
/// (`WouldBlock`: the writable edge resumes it).
fn flush_tls(tls: &mut ClientConnection, stream: &TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(&mut &*stream) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One step of [`tls_read`].
enum TlsRead {
    /// `n` bytes of plaintext at the start of the scratch buffer.
    Plain(usize),
    /// The plaintext of the records read so far is all delivered; the next
    /// step reads more records from the socket.
    Consumed,
    /// The socket holds no more records for now (`WouldBlock`).
    Drained,
    /// The server closed the connection (TCP).
    Eof,
    /// The server sent close_notify.
    CloseNotify,
}

/// Reads a TLS client connection a step at a time: a batch of records from
/// `stream` (until `WouldBlock`), then their plaintext into `scratch`, a
/// buffer-full per step. `batch` (false to begin with) tracks whether a
/// batch's plaintext is being delivered.
fn tls_read(
    tls: &mut ClientConnection,
    stream: &TcpStream,
    scratch: &mut [u8],
    batch: &mut bool,
) -> io::Result<TlsRead> {
    loop {
        if *batch {
            match tls.reader().read(scratch) {
                Ok(0) => return Ok(TlsRead::CloseNotify),
                Ok(n) => return Ok(TlsRead::Plain(n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    *batch = false;
                    return Ok(TlsRead::Consumed);
                }
                Err(e) => return Err(e),
            }
        }
        match tls.read_tls(&mut &*stream) {
            Ok(0) => return Ok(TlsRead::Eof),
            Ok(_) => {
                tls.process_new_packets()
                    .map_err(|e| other(format!("TLS: {e}")))?;
                *batch = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(TlsRead::Drained),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A load-generator thread's poll, its waker handed to the coordinator.
fn thread_poll(shared: &Shared) -> io::Result<Poll> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
    shared
        .wakers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(waker);
    Ok(poll)
}

fn new_socket(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    let sock = socket2::SockRef::from(&s);
    sock.set_tcp_nodelay(true)?;
    // Close with RST: no TIME_WAIT, so 10 000-connection rounds never run
    // out of ephemeral ports.
    sock.set_linger(Some(Duration::ZERO))?;
    Ok(s)
}

/// Opens `n` connections registered on `poll` as tokens `base..base + n`, at most
/// [`CONNECTS_IN_FLIGHT`] at a time, and waits until all are established.
fn connect_all(
    poll: &mut Poll,
    addr: SocketAddr,
    n: usize,
    base: usize,
    deadline: Instant,
    stop: &AtomicBool,
) -> io::Result<Vec<TcpStream>> {
    let mut streams: Vec<TcpStream> = Vec::with_capacity(n);
    let mut connected = vec![false; n];
    let mut events = Events::with_capacity(1024);
    let (mut pending, mut done) = (0usize, 0usize);
    while done < n {
        if stop.load(Ordering::Relaxed) {
            return Err(other("stopped"));
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                format!("{done} of {n} connections established before the deadline"),
            ));
        }
        while streams.len() < n && pending < CONNECTS_IN_FLIGHT {
            let mut s = new_socket(addr)?;
            poll.registry().register(
                &mut s,
                Token(base + streams.len()),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            streams.push(s);
            pending += 1;
        }
        poll.poll(&mut events, Some(Duration::from_millis(50)))?;
        for ev in events.iter() {
            // Other tokens (earlier servers' connections, a waker) wait.
            let Some(i) = ev
                .token()
                .0
                .checked_sub(base)
                .filter(|&i| i < streams.len())
            else {
                continue;
            };
            if connected[i] {
                continue;
            }
            let s = &streams[i];
            if let Some(e) = s.take_error()? {
                return Err(e);
            }
            match s.peer_addr() {
                Ok(_) => {
                    connected[i] = true;
                    pending -= 1;
                    done += 1;
                }
                Err(e) if e.kind() == ErrorKind::NotConnected => {} // not yet
                Err(e) => return Err(e),
            }
        }
    }
    Ok(streams)
}

/// `active` while every server may run (connection set-up).
const ALL: usize = usize::MAX;
/// `active` when no server may start new messages (the final drain).
const NONE: usize = usize::MAX - 1;
/// Poll token of a thread's waker.
const WAKE: Token = Token(usize::MAX);

struct Conn {
    stream: TcpStream,
    tls: Option<Box<ClientConnection>>,
    /// Index of the server it talks to.
    server: usize,
    running: bool,
    /// Bytes written, bytes echoed back, messages completed.
    sent: u64,
    recv: u64,
    done: u64,
    /// Payload bytes due to be written.
    to_write: usize,
    /// Payload bytes earned while its server was not the active one: sent
    /// when its turn comes.
    owed: usize,
}

/// Per-thread state of a flow.
struct Gen<'a> {
    pat: &'a [u8],
    size: usize,
    inflight: usize,
    /// Messages completed, per server.
    totals: Vec<u64>,
    /// Connections that completed a first echo, per server.
    ready: &'a [AtomicUsize],
    scratch: Vec<u8>,
    /// The server whose turn it is (or [`ALL`] / [`NONE`]).
    active: usize,
}

impl Gen<'_> {
    fn may_send(&self, server: usize) -> bool {
        self.active == ALL || self.active == server
    }

    /// Sends `bytes` of payload now, or when the server's turn comes.
    fn due(&self, c: &mut Conn, bytes: usize) {
        if self.may_send(c.server) {
            c.to_write += bytes;
        } else {
            c.owed += bytes;
        }
    }

    fn account(&mut self, c: &mut Conn, n: usize) -> io::Result<()> {
        if !verify(self.pat, self.size, c.recv, &self.scratch[..n]) {
            return Err(other(format!(
                "echoed bytes differ from those sent (at stream offset {})",
                c.recv
            )));
        }
        c.recv += n as u64;
        if c.recv > c.sent {
            return Err(other("server echoed more bytes than were sent"));
        }
        let done = c.recv / self.size as u64;
        let new = done - c.done;
        if new > 0 {
            if c.done == 0 {
                self.ready[c.server].fetch_add(1, Ordering::Relaxed);
            }
            c.done = done;
            self.totals[c.server] += new;
            self.due(c, new as usize * self.size);
        }
        Ok(())
    }

    /// The slice of payload that continues the stream at `c.sent`.
    fn payload(&self, c: &Conn) -> std::ops::Range<usize> {
        let o = (c.sent % self.size as u64) as usize;
        o..o + c.to_write
    }

    /// Its server's turn has come: send what it earned meanwhile.
    fn kick(&mut self, c: &mut Conn) -> io::Result<()> {
        if c.owed > 0 && self.may_send(c.server) {
            c.to_write += c.owed;
            c.owed = 0;
        }
        if c.tls.is_some() {
            self.service_tls(c)
        } else {
            self.flush_plain(c)
        }
    }

    fn service(&mut self, c: &mut Conn) -> io::Result<()> {
        if c.tls.is_some() {
            return self.service_tls(c);
        }
        loop {
            match (&c.stream).read(&mut self.scratch) {
                Ok(0) => return Err(other("server closed the connection")),
                Ok(n) => {
                    self.account(c, n)?;
                    if n < self.scratch.len() {
                        break; // drained; edge-triggered: more data = new event
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.flush_plain(c)
    }

    fn flush_plain(&mut self, c: &mut Conn) -> io::Result<()> {
        while c.to_write > 0 {
            let r = self.payload(c);
            let len = r.len();
            match (&c.stream).write(&self.pat[r]) {
                Ok(n) => {
                    c.sent += n as u64;
                    c.to_write -= n;
                    if n < len {
                        break; // socket buffer full: wait for the writable edge
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn service_tls(&mut self, c: &mut Conn) -> io::Result<()> {
        let Some(mut tls) = c.tls.take() else {
            return Ok(());
        };
        let r = self.drive_tls(c, &mut tls);
        c.tls = Some(tls);
        r
    }

    fn drive_tls(&mut self, c: &mut Conn, tls: &mut ClientConnection) -> io::Result<()> {
        let mut batch = false;
        loop {
            match tls_read(tls, &c.stream, &mut self.scratch, &mut batch)? {
                TlsRead::Plain(n) => self.account(c, n)?,
                TlsRead::Consumed => {}
                TlsRead::Drained => break,
                TlsRead::Eof => return Err(other("server closed the connection")),
                TlsRead::CloseNotify => return Err(other("server sent close_notify")),
            }
        }
        if !c.running && !tls.is_handshaking() {
            c.running = true;
            self.due(c, self.inflight * self.size);
        }
        if c.running && c.to_write > 0 {
            let r = self.payload(c);
            let n = tls.writer().write(&self.pat[r])?;
            c.sent += n as u64;
            c.to_write -= n;
        }
        flush_tls(tls, &c.stream)
    }
}

/// Shared between the load-generator threads and the coordinator.
struct Shared {
    stop: AtomicBool,
    /// Whose turn it is.
    active: AtomicUsize,
    /// Per server: connections that echoed once, failure.
    ready: Vec<AtomicUsize>,
    dead: Vec<AtomicBool>,
    failed: Vec<Mutex<Option<String>>>,
    /// One per load-generator thread, to announce a new turn at once.
    wakers: Mutex<Vec<Arc<Waker>>>,
}

impl Shared {
    fn new(servers: usize) -> Shared {
        Shared {
            stop: AtomicBool::new(false),
            active: AtomicUsize::new(ALL),
            ready: (0..servers).map(|_| AtomicUsize::new(0)).collect(),
            dead: (0..servers).map(|_| AtomicBool::new(false)).collect(),
            failed: (0..servers).map(|_| Mutex::new(None)).collect(),
            wakers: Mutex::new(Vec::new()),
        }
    }

    /// Marks server `s` failed (the first reason wins); the others go on.
    fn fail(&self, s: usize, e: impl std::fmt::Display) {
        let mut f = self.failed[s].lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(e.to_string());
        }
        self.dead[s].store(true, Ordering::Relaxed);
    }

    fn failure(&self, s: usize) -> Option<String> {
        self.failed[s]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn is_dead(&self, s: usize) -> bool {
        self.dead[s].load(Ordering::Relaxed)
    }

    fn set_active(&self, s: usize) {
        self.active.store(s, Ordering::Release);
        for w in self.wakers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = w.wake();
        }
    }
}

/// One load-generator thread: `n` connections to each server.
fn flow_thread(
    addrs: &[SocketAddr],
    flow: &Flow,
    n: usize,
    deadline: Instant,
    shared: &Shared,
    counters: &[AtomicU64],
) -> io::Result<()> {
    let mut poll = thread_poll(shared)?;
    let pat = pattern(flow.size, flow.inflight);
    let mut g = Gen {
        pat: &pat,
        size: flow.size,
        inflight: flow.inflight,
        totals: vec![0; addrs.len()],
        ready: &shared.ready,
        scratch: vec![0u8; SCRATCH],
        active: ALL,
    };
    let server_name = ServerName::try_from("localhost").map_err(|e| other(e.to_string()))?;
    // Token of connection i to server s: s * n + i.
    let mut conns: Vec<Option<Conn>> = Vec::with_capacity(n * addrs.len());
    for (s, addr) in addrs.iter().enumerate() {
        let streams = if shared.is_dead(s) {
            Err(other("failed"))
        } else {
            connect_all(&mut poll, *addr, n, s * n, deadline, &shared.stop)
        };
        match streams {
            Ok(streams) => {
                for stream in streams {
                    let tls = match &flow.tls {
                        Some(cfg) => Some(Box::new(
                            ClientConnection::new(cfg.clone(), server_name.clone())
                                .map_err(|e| other(format!("TLS: {e}")))?,
                        )),
                        None => None,
                    };
                    conns.push(Some(Conn {
                        stream,
                        running: tls.is_none(),
                        to_write: if tls.is_none() {
                            flow.inflight * flow.size
                        } else {
                            0
                        },
                        tls,
                        server: s,
                        sent: 0,
                        recv: 0,
                        done: 0,
                        owed: 0,
                    }));
                }
            }
            Err(e) => {
                shared.fail(s, e);
                conns.extend((0..n).map(|_| None));
            }
        }
    }
    // The writable edge was used up by the connect: start by hand.
    for c in conns.iter_mut().flatten() {
        if let Err(e) = g.kick(c) {
            shared.fail(c.server, e);
        }
    }
    let mut events = Events::with_capacity(1024);
    let mut last = ALL;
    while !shared.stop.load(Ordering::Relaxed) {
        poll.poll(&mut events, Some(Duration::from_millis(20)))?;
        g.active = shared.active.load(Ordering::Acquire);
        for ev in events.iter() {
            if ev.token() == WAKE {
                continue;
            }
            let Some(Some(c)) = conns.get_mut(ev.token().0) else {
                continue;
            };
            if shared.is_dead(c.server) {
                continue;
            }
            if let Err(e) = g.service(c) {
                shared.fail(
                    c.server,
                    format!(
                        "{e} (connection {} after {} bytes sent, {} echoed)",
                        ev.token().0 % n.max(1),
                        c.sent,
                        c.recv
                    ),
                );
            }
        }
        if g.active != last {
            last = g.active;
            for c in conns.iter_mut().flatten() {
                if c.owed > 0 && g.may_send(c.server) && !shared.is_dead(c.server) {
                    if let Err(e) = g.kick(c) {
                        shared.fail(c.server, e);
                    }
                }
            }
        }
        for (c, t) in counters.iter().zip(&g.totals) {
            c.store(*t, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Runs `flow` against every server in `servers` at once, the load taking
/// turns of `turn` on each (see [`run_latency`] for why), and returns one
/// measurement per server. With one server this is a plain closed-loop run.
/// Connections to every server are opened and echo once (all servers
/// active) before anything counts; then each server gets one warm-up turn of
/// `w.warmup`, then turns until each has had `w.measure`. A server's
/// messages are those completed from its first measured turn to the end
/// (echoes of its last in-flight messages land early in the next turn and
/// still count; the ramp-up of each turn costs it as much); its CPU is
/// counted over the whole interleaved window, idle turns included.
pub fn run_flows(
    servers: &[&Server],
    flow: &Flow,
    w: Window,
    threads: usize,
    turn: Duration,
) -> Vec<io::Result<Measured>> {
    let run = |addrs: &[SocketAddr], n, deadline, shared: &Shared, counter: &[AtomicU64]| {
        flow_thread(addrs, flow, n, deadline, shared, counter)
    };
    run_threads(servers, flow.conns, w, threads, turn, "loadgen", run)
}

/// The body of [`run_flows`] and [`run_churn`]: `units` (connections or
/// slots per server) dealt out to `threads` threads named `{name}-{t}`,
/// each running `thread(addrs, its units, setup deadline, shared, its
/// counters)` against every server at once while [`coordinate`] drives the
/// turns; a failed thread fails every server.
fn run_threads<F>(
    servers: &[&Server],
    units: usize,
    w: Window,
    threads: usize,
    turn: Duration,
    name: &str,
    thread: F,
) -> Vec<io::Result<Measured>>
where
    F: Fn(&[SocketAddr], usize, Instant, &Shared, &[AtomicU64]) -> io::Result<()> + Sync,
{
    let k = servers.len();
    let threads = threads.clamp(1, units.max(1));
    let shared = Shared::new(k);
    let counters: Vec<Vec<AtomicU64>> = (0..threads)
        .map(|_| (0..k).map(|_| AtomicU64::new(0)).collect())
        .collect();
    let deadline = Instant::now() + w.setup_timeout;
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let measured = std::thread::scope(|scope| {
        for (t, counter) in counters.iter().enumerate() {
            let n = units / threads + usize::from(t < units % threads);
            let (shared, addrs, thread) = (&shared, &addrs, &thread);
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{t}"))
                .spawn_scoped(scope, move || {
                    if let Err(e) = thread(addrs, n, deadline, shared, counter) {
                        for s in 0..addrs.len() {
                            shared.fail(s, &e);
                        }
                    }
                });
            if let Err(e) = spawned {
                for s in 0..k {
                    shared.fail(s, format!("spawn: {e}"));
                }
            }
        }
        // Ready once every server has had all its units working.
        let r = coordinate(servers, units, w, turn, deadline, &shared, &counters);
        shared.stop.store(true, Ordering::Relaxed);
        shared.set_active(NONE);
        r
    });
    measured
        .into_iter()
        .enumerate()
        .map(|(s, m)| match shared.failure(s) {
            Some(e) => Err(other(e)),
            None => m,
        })
        .collect()
}

/// Drives the turns of an interleaved run and measures each server:
/// first every server must report `need` units ready (`Shared::ready`:
/// connections that echoed once, or churn cycles done), then warm-up and
/// measured turns as [`run_flows`] describes.
fn coordinate(
    servers: &[&Server],
    need: usize,
    w: Window,
    turn: Duration,
    deadline: Instant,
    shared: &Shared,
    counters: &[Vec<AtomicU64>],
) -> Vec<io::Result<Measured>> {
    let k = servers.len();
    // Every connection active (echoed at least once) before anything counts.
    loop {
        let pending: Vec<usize> = (0..k)
            .filter(|&s| !shared.is_dead(s) && shared.ready[s].load(Ordering::Relaxed) < need)
            .collect();
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            for s in pending {
                let ready = shared.ready[s].load(Ordering::Relaxed);
                shared.fail(
                    s,
                    format!(
                        "only {ready} of {need} connections echoed within {:?}",
                        w.setup_timeout
                    ),
                );
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let live = |s: usize| !shared.is_dead(s);
    for s in (0..k).filter(|&s| live(s)) {
        shared.set_active(s);
        std::thread::sleep(w.warmup);
    }
    let msgs = |s: usize| {
        counters
            .iter()
            .map(|c| c[s].load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let cpu = |s: usize| servers[s].cpu_secs().unwrap_or(f64::NAN);
    let m0: Vec<u64> = (0..k).map(msgs).collect();
    let c0: Vec<f64> = (0..k).map(cpu).collect();
    let mut secs = vec![0.0; k];
    let mut lg = vec![0.0; k];
    let turn = turn.min(w.measure);
    let turns = (w.measure.as_secs_f64() / turn.as_secs_f64())
        .ceil()
        .max(1.0) as usize;
    for _ in 0..turns {
        for s in (0..k).filter(|&s| live(s)) {
            let (l0, t0) = (self_cpu(), Instant::now());
            shared.set_active(s);
            std::thread::sleep(turn);
            shared.set_active(NONE);
            secs[s] += t0.elapsed().as_secs_f64();
            lg[s] += self_cpu() - l0;
        }
    }
    // Let the last in-flight echoes land.
    std::thread::sleep(Duration::from_millis(50));
    (0..k)
        .map(|s| {
            let c1 = cpu(s);
            if c1.is_nan() || c0[s].is_nan() {
                return Err(other("cannot read the server's CPU time"));
            }
            Ok(Measured {
                msgs: msgs(s) - m0[s],
                secs: secs[s],
                server_cpu: c1 - c0[s],
                lg_cpu: lg[s],
            })
        })
        .collect()
}

/// A strict ping-pong client: one connection, one `size`-byte message at a
/// time, on a blocking socket (`write` + `read` and nothing else per
/// message: the lowest-overhead client there is).
struct Pinger {
    s: std::net::TcpStream,
    msg: Vec<u8>,
    buf: Vec<u8>,
    rtts: Vec<u32>,
    active: Duration,
    lg_cpu: f64,
}

impl Pinger {
    fn connect(addr: SocketAddr, size: usize, timeout: Duration) -> io::Result<Pinger> {
        let s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        s.set_nodelay(true)?;
        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.set_write_timeout(Some(Duration::from_secs(2)))?;
        let mut msg = pattern(size, 1);
        msg.truncate(size);
        Ok(Pinger {
            s,
            buf: vec![0u8; size],
            msg,
            rtts: Vec::new(),
            active: Duration::ZERO,
            lg_cpu: 0.0,
        })
    }

    fn once(&mut self) -> io::Result<()> {
        self.s.write_all(&self.msg)?;
        self.s.read_exact(&mut self.buf)?;
        if self.buf != self.msg {
            return Err(other("echoed bytes differ from those sent"));
        }
        Ok(())
    }

    /// Ping-pongs for `d`, recording every round trip if `record`.
    fn run_for(&mut self, d: Duration, record: bool) -> io::Result<()> {
        let l0 = self_cpu();
        let t0 = Instant::now();
        let end = t0 + d;
        let mut t = t0;
        loop {
            self.once()?;
            let now = Instant::now();
            if record {
                self.rtts
                    .push((now - t).as_nanos().min(u32::MAX as u128) as u32);
            }
            t = now;
            if now >= end {
                break;
            }
        }
        if record {
            self.active += t - t0;
            self.lg_cpu += self_cpu() - l0;
        }
        Ok(())
    }

    fn result(mut self, server_cpu: f64) -> (Measured, Latency) {
        let m = Measured {
            msgs: self.rtts.len() as u64,
            secs: self.active.as_secs_f64(),
            server_cpu,
            lg_cpu: self.lg_cpu,
        };
        let rtts = &mut self.rtts;
        rtts.sort_unstable();
        let pct = |p: f64| {
            if rtts.is_empty() {
                return 0.0;
            }
            let i = ((rtts.len() as f64 * p).ceil() as usize).clamp(1, rtts.len()) - 1;
            rtts[i] as f64 / 1000.0
        };
        let l = Latency {
            p50: pct(0.50),
            p99: pct(0.99),
            p999: pct(0.999),
        };
        (m, l)
    }
}

/// Ping-pong latency against several servers at once, finely interleaved:
/// one connection to each, and the client takes turns of `turn` on each
/// until every one has had `w.measure` in total. A ping-pong keeps exactly
/// one server busy at a time, so the turns cost nothing, and every server
/// sees the same background load (a shared machine's load changes within
/// seconds, which moves wake-up latency far more than the servers differ).
/// Server CPU is counted over the whole interleaved window, idle turns
/// included: a server that burns CPU while idle pays for it.
pub fn run_latency(
    servers: &[&Server],
    size: usize,
    w: Window,
    turn: Duration,
) -> Vec<io::Result<(Measured, Latency)>> {
    let mut pingers: Vec<io::Result<Pinger>> = servers
        .iter()
        .map(|s| {
            let mut p = Pinger::connect(s.addr, size, w.setup_timeout)?;
            p.run_for(w.warmup, false)?;
            p.rtts
                .reserve((w.measure.as_micros() as usize).min(20_000_000));
            Ok(p)
        })
        .collect();
    let cpu0: Vec<io::Result<f64>> = servers.iter().map(|s| s.cpu_secs()).collect();
    let turns = (w.measure.as_secs_f64() / turn.as_secs_f64())
        .ceil()
        .max(1.0) as usize;
    for _ in 0..turns {
        for p in pingers.iter_mut() {
            if let Ok(pp) = p {
                if let Err(e) = pp.run_for(turn, true) {
                    *p = Err(e);
                }
            }
        }
    }
    pingers
        .into_iter()
        .zip(cpu0)
        .zip(servers)
        .map(|((p, c0), s)| {
            let p = p?;
            let cpu = s.cpu_secs()? - c0?;
            Ok(p.result(cpu))
        })
        .collect()
}

/// Opens `n` idle connections, measures the server's RSS growth, then has
/// every connection echo one `size`-byte message.
pub fn run_idle(server: &Server, n: usize, size: usize, timeout: Duration) -> io::Result<Idle> {
    // Let the freshly started server settle before the baseline.
    std::thread::sleep(Duration::from_millis(100));
    let rss0 = server.rss_bytes()?;
    let fds0 = server.fd_count()?;
    let deadline = Instant::now() + timeout;
    let stop = AtomicBool::new(false);
    let mut poll = Poll::new()?;
    let streams = connect_all(&mut poll, server.addr, n, 0, deadline, &stop)?;
    // Established at our end is not yet accepted at theirs: wait for the fds.
    loop {
        let fds = server.fd_count()?;
        if fds >= fds0 + n {
            break;
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                format!(
                    "server accepted {} of {n} connections",
                    fds.saturating_sub(fds0)
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let rss1 = settled_rss(server)?;
    // Now each must still echo.
    #[derive(Clone, Copy)]
    enum Echo {
        Waiting(usize),
        Good,
        Bad,
    }
    let pat = pattern(size, 1);
    let mut st = vec![Echo::Waiting(0); n];
    let mut buf = vec![0u8; size * 2];
    for s in &streams {
        let mut w: &TcpStream = s;
        w.write_all(&pat[..size])?; // a fresh socket takes a small message at once
    }
    let mut events = Events::with_capacity(1024);
    let mut finished = 0;
    while finished < n && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(50)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            // Read until WouldBlock or until this connection is decided.
            while let Echo::Waiting(got) = st[i] {
                match (&streams[i]).read(&mut buf) {
                    Ok(k) if k > 0 => {
                        let end = got + k;
                        st[i] = if end <= size && buf[..k] == pat[got..end] {
                            if end < size {
                                Echo::Waiting(end)
                            } else {
                                finished += 1;
                                Echo::Good
                            }
                        } else {
                            finished += 1;
                            Echo::Bad
                        };
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    _ => {
                        // EOF or error before the echo was complete.
                        finished += 1;
                        st[i] = Echo::Bad;
                    }
                }
            }
        }
    }
    let rss2 = settled_rss(server)?;
    drop(streams);
    let per = |r: u64| (r as f64 - rss0 as f64) / n as f64;
    Ok(Idle {
        rss_per_conn: per(rss1),
        rss_per_conn_after: per(rss2),
        verified: st.iter().filter(|e| matches!(e, Echo::Good)).count(),
    })
}

/// Like [`run_idle`], over TLS: `n` connections, each through its TLS
/// handshake (blocking, one after another), then RSS growth per idle
/// connection; then each must still echo a `size`-byte message (after
/// which RSS is read again).
pub fn run_idle_tls(
    server: &Server,
    n: usize,
    size: usize,
    client: Arc<ClientConfig>,
    timeout: Duration,
) -> io::Result<Idle> {
    use rustls::StreamOwned;
    std::thread::sleep(Duration::from_millis(100));
    let rss0 = server.rss_bytes()?;
    let fds0 = server.fd_count()?;
    let deadline = Instant::now() + timeout;
    let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        if Instant::now() > deadline {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                format!("{} of {n} TLS handshakes", conns.len()),
            ));
        }
        let mut sock = std::net::TcpStream::connect(server.addr)?;
        sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        sock.set_nodelay(true)?;
        let mut tls =
            ClientConnection::new(client.clone(), name.clone()).map_err(io::Error::other)?;
        // Until the client's Finished has gone: the server then holds an
        // established, idle connection.
        while tls.is_handshaking() || tls.wants_write() {
            tls.complete_io(&mut sock)?;
        }
        conns.push(StreamOwned::new(tls, sock));
    }
    while server.fd_count()? < fds0 + n {
        if Instant::now() > deadline {
            return Err(io::Error::new(ErrorKind::TimedOut, "accepting"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let rss1 = settled_rss(server)?;
    // Now each must still echo.
    let pat = pattern(size, 1);
    let mut verified = 0;
    let mut got = vec![0u8; size];
    for s in &mut conns {
        if Instant::now() > deadline {
            break;
        }
        let ok = s.write_all(&pat[..size]).and_then(|()| s.flush()).is_ok()
            && s.read_exact(&mut got).is_ok()
            && got == pat[..size];
        verified += usize::from(ok);
    }
    let rss2 = settled_rss(server)?;
    drop(conns);
    let per = |r: u64| (r as f64 - rss0 as f64) / n as f64;
    Ok(Idle {
        rss_per_conn: per(rss1),
        rss_per_conn_after: per(rss2),
        verified,
    })
}

/// RSS once it stops moving (a server may still be setting up connections
/// it has accepted), bounded at two seconds.
fn settled_rss(server: &Server) -> io::Result<u64> {
    std::thread::sleep(Duration::from_millis(200));
    let end = Instant::now() + Duration::from_secs(2);
    let mut last = server.rss_bytes()?;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        let now = server.rss_bytes()?;
        if now.abs_diff(last) * 200 <= last {
            return Ok(now); // within 0.5 %
        }
        last = now;
    }
    Ok(last)
}
