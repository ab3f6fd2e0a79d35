//! Echo server: a hand-written mio event loop per core — the practical
//! limit of readiness-based I/O, a competitor in `benches/echo_compare.rs`.
//!
//! ```text
//! cargo run --release --example peer_mio_echo -- --listen 127.0.0.1:0 [--workers N] [--cert PEM --key PEM]
//! ```
//!
//! `--workers N` event loops, each owning its connections outright (no
//! locks, no hand-off after accept). Loop 0 also accepts (until
//! `WouldBlock`, `accept4` with `SOCK_NONBLOCK | SOCK_CLOEXEC`) and deals
//! new connections round-robin to the loops, waking each other loop once
//! per burst; a connection costs `accept4`, `TCP_NODELAY`, one `epoll_ctl`
//! and `close` (which also takes it out of the epoll set). Every loop reads into one 64 KiB
//! scratch buffer (64-byte aligned: the kernel copies into a misaligned
//! buffer at half speed or worse on some CPUs) and writes straight back;
//! only bytes the socket refuses are copied into a per-connection buffer
//! (and reading pauses until they are gone). Edge-triggered: a read shorter
//! than the buffer means the socket is drained, so the `read` that would
//! only say `WouldBlock` is skipped. A connection gets at most
//! [`READ_BUDGET`] reads per turn; one that used them all runs again after
//! the loop's other ready connections (and a non-blocking poll), since no
//! new edge will come for what is still in its socket.
//! TLS (`--cert/--key`) drives a rustls `ServerConnection` by hand.

#[path = "peer_common/mod.rs"]
mod common;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use rustls::{ServerConfig, ServerConnection};
use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::Duration;

const NAME: &str = "peer_mio_echo";
const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Reads per connection per turn (fairness between a loop's connections).
const READ_BUDGET: usize = 16;

struct Conn {
    stream: TcpStream,
    /// Bytes the socket refused, still to be echoed.
    pending: Vec<u8>,
    pend_off: usize,
    eof: bool,
    tls: Option<Box<ServerConnection>>,
}

/// What to do with a connection after servicing it.
#[derive(PartialEq)]
enum Next {
    Keep,
    /// The read budget ran out with the socket possibly not drained.
    Again,
    Close,
}

fn is_retry(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::Interrupted
}

/// Plain echo until the socket has nothing more to give or refuses output.
fn drive_plain(c: &mut Conn, scratch: &mut [u8]) -> Next {
    let mut budget = READ_BUDGET;
    loop {
        while c.pend_off < c.pending.len() {
            match (&c.stream).write(&c.pending[c.pend_off..]) {
                Ok(n) => c.pend_off += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if is_retry(&e) => {}
                Err(_) => return Next::Close,
            }
        }
        if !c.pending.is_empty() {
            // Give the memory back: refused writes are rare.
            c.pending = Vec::new();
            c.pend_off = 0;
        }
        if c.eof {
            return Next::Close;
        }
        if budget == 0 {
            return Next::Again;
        }
        budget -= 1;
        match (&c.stream).read(scratch) {
            Ok(0) => c.eof = true,
            Ok(n) => {
                let mut off = 0;
                while off < n {
                    match (&c.stream).write(&scratch[off..n]) {
                        Ok(m) => off += m,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if is_retry(&e) => {}
                        Err(_) => return Next::Close,
                    }
                }
                if off < n {
                    c.pending.extend_from_slice(&scratch[off..n]);
                    return Next::Keep; // wait for writable
                }
                if n < scratch.len() {
                    return Next::Keep; // drained: the next edge will come
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Keep,
            Err(e) if is_retry(&e) => {}
            Err(_) => return Next::Close,
        }
    }
}

/// TLS echo: flush records, read records, echo the plaintext, repeat.
fn drive_tls(c: &mut Conn, scratch: &mut [u8]) -> Next {
    let Some(tls) = c.tls.as_mut() else {
        return Next::Close;
    };
    let mut budget = READ_BUDGET;
    loop {
        // Output first: reading pauses while records are stuck (back-pressure).
        while tls.wants_write() {
            match tls.write_tls(&mut &c.stream) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if is_retry(&e) => {}
                Err(_) => return Next::Close,
            }
        }
        if c.eof {
            return Next::Close;
        }
        if budget == 0 {
            return Next::Again;
        }
        budget -= 1;
        match tls.read_tls(&mut &c.stream) {
            Ok(0) => c.eof = true,
            Ok(_) => {
                if tls.process_new_packets().is_err() {
                    // Send the alert rustls queued, best effort.
                    let _ = tls.write_tls(&mut &c.stream);
                    return Next::Close;
                }
                loop {
                    match tls.reader().read(scratch) {
                        Ok(0) => {
                            c.eof = true; // close_notify
                            break;
                        }
                        Ok(n) => {
                            if tls.writer().write_all(&scratch[..n]).is_err() {
                                return Next::Close;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => return Next::Close,
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Keep,
            Err(e) if is_retry(&e) => {}
            Err(_) => return Next::Close,
        }
    }
}

struct Loop {
    poll: Poll,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    tls: Option<Arc<ServerConfig>>,
    inbox: crossbeam_channel::Receiver<std::net::TcpStream>,
    /// Loop 0 only: the listener and the other loops' inboxes.
    acceptor: Option<Acceptor>,
}

struct Acceptor {
    listener: TcpListener,
    peers: Vec<(crossbeam_channel::Sender<std::net::TcpStream>, Arc<Waker>)>,
    next: usize,
}

impl Loop {
    fn adopt(&mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let tls = match &self.tls {
            Some(cfg) => match ServerConnection::new(cfg.clone()) {
                Ok(s) => Some(Box::new(s)),
                Err(e) => {
                    eprintln!("{NAME}: TLS: {e}");
                    return;
                }
            },
            None => None,
        };
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let mut conn = Conn {
            stream,
            pending: Vec::new(),
            pend_off: 0,
            eof: false,
            tls,
        };
        // Registering reports readiness that is already there, so nothing
        // that arrived before this point is missed.
        if let Err(e) = self.poll.registry().register(
            &mut conn.stream,
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            eprintln!("{NAME}: register: {e}");
            self.free.push(slot);
            return;
        }
        self.conns[slot] = Some(conn);
    }

    /// Accepts until `WouldBlock` (mio's `accept` is one `accept4` with
    /// `SOCK_NONBLOCK | SOCK_CLOEXEC`), deals the connections round-robin,
    /// and wakes each other loop at most once per burst.
    fn accept(&mut self) {
        let Some(acc) = self.acceptor.as_mut() else {
            return;
        };
        let mut mine = Vec::new();
        let mut woken = 0u64; // bit i: loop i + 1 has new connections
        loop {
            match acc.listener.accept() {
                Ok((s, _)) => {
                    let target = acc.next % (acc.peers.len() + 1);
                    acc.next = acc.next.wrapping_add(1);
                    if target == 0 {
                        mine.push(s);
                    } else {
                        // Hand over as a std stream; the owning loop registers it.
                        let std_stream: std::net::TcpStream = s.into();
                        if acc.peers[target - 1].0.send(std_stream).is_ok() {
                            woken |= 1 << ((target - 1) % 64);
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if is_retry(&e) => {}
                Err(e) => {
                    // EMFILE etc.: the listener stays registered; the next
                    // connection attempt retries.
                    eprintln!("{NAME}: accept: {e}");
                    break;
                }
            }
        }
        for (i, (_, waker)) in acc.peers.iter().enumerate() {
            if woken & (1 << (i % 64)) != 0 {
                let _ = waker.wake();
            }
        }
        for s in mine {
            self.adopt(s);
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        // One scratch buffer per loop, starting on a cache line.
        let mut backing = vec![0u8; common::READ_SIZE + 64];
        let off = backing.as_ptr().align_offset(64);
        let scratch = &mut backing[off..off + common::READ_SIZE];
        // Connections whose read budget ran out, to run again this round
        // (`again`) and the next (`next_again`).
        let mut again: Vec<usize> = Vec::new();
        let mut next_again: Vec<usize> = Vec::new();
        loop {
            // With connections waiting for another turn, only look for
            // readiness (no blocking), so the others get theirs first.
            let timeout = (!again.is_empty()).then_some(Duration::ZERO);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if is_retry(&e) {
                    continue;
                }
                common::die(NAME, "poll", e);
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {
                        while let Ok(s) = self.inbox.try_recv() {
                            self.adopt(TcpStream::from_std(s));
                        }
                    }
                    Token(slot) => self.service(slot, scratch, &mut next_again),
                }
            }
            for slot in again.drain(..) {
                self.service(slot, scratch, &mut next_again);
            }
            std::mem::swap(&mut again, &mut next_again);
        }
    }

    /// One turn of the connection in `slot` (a stale slot is harmless: its
    /// reads only say `WouldBlock`).
    fn service(&mut self, slot: usize, scratch: &mut [u8], again: &mut Vec<usize>) {
        let Some(Some(c)) = self.conns.get_mut(slot) else {
            return;
        };
        let next = if c.tls.is_some() {
            drive_tls(c, scratch)
        } else {
            drive_plain(c, scratch)
        };
        match next {
            Next::Keep => {}
            Next::Again => again.push(slot),
            Next::Close => {
                // Dropping the stream closes it and removes it from epoll.
                self.conns[slot] = None;
                self.free.push(slot);
            }
        }
    }
}

fn new_loop(
    tls: Option<Arc<ServerConfig>>,
) -> (
    Loop,
    crossbeam_channel::Sender<std::net::TcpStream>,
    Arc<Waker>,
) {
    let poll = Poll::new().unwrap_or_else(|e| common::die(NAME, "poll", e));
    let waker = Arc::new(
        Waker::new(poll.registry(), WAKER).unwrap_or_else(|e| common::die(NAME, "waker", e)),
    );
    let (tx, rx) = crossbeam_channel::unbounded();
    (
        Loop {
            poll,
            conns: Vec::new(),
            free: Vec::new(),
            tls,
            inbox: rx,
            acceptor: None,
        },
        tx,
        waker,
    )
}

fn register_listener(reg: &Registry, l: &mut TcpListener) {
    reg.register(l, LISTENER, Interest::READABLE)
        .unwrap_or_else(|e| common::die(NAME, "register listener", e));
}

fn main() {
    let args = common::parse_args(NAME);
    let std_listener =
        common::listener(args.listen, false).unwrap_or_else(|e| common::die(NAME, "listen", e));
    std_listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| common::die(NAME, "set_nonblocking", e));
    let addr = std_listener
        .local_addr()
        .unwrap_or_else(|e| common::die(NAME, "local_addr", e));
    let mut listener = TcpListener::from_std(std_listener);

    let (mut first, _, _) = new_loop(args.tls.clone());
    let mut peers = Vec::new();
    for idx in 1..args.workers {
        let (lp, tx, waker) = new_loop(args.tls.clone());
        peers.push((tx, waker));
        std::thread::Builder::new()
            .name(format!("mio-loop-{idx}"))
            .spawn(move || lp.run())
            .unwrap_or_else(|e| common::die(NAME, "spawn", e));
    }
    register_listener(first.poll.registry(), &mut listener);
    first.acceptor = Some(Acceptor {
        listener,
        peers,
        next: 0,
    });
    common::announce(addr);
    first.run();
}
