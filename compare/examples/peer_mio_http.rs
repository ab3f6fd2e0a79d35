//! HTTP/1.1 plaintext server: a hand-written mio event loop per core — the
//! practical limit of readiness-based I/O for this load, a competitor in
//! `benches/http_compare.rs`.
//!
//! ```text
//! cargo run --release -p netactor-compare --example peer_mio_http -- --listen 127.0.0.1:0 [--workers N]
//! ```
//!
//! The event loops of `peer_mio_echo` (each owns its connections, loop 0
//! accepts and deals round-robin, edge-triggered, a short read means the
//! socket is drained). Each connection has one fixed 16 KiB read buffer and
//! one output buffer, both reused: every request read is parsed in place
//! with httparse (16 headers at most, uninitialised, as in may_minihttp),
//! its response appended to the output buffer, and all responses to one
//! read leave in one `write`. Reading pauses while output is stuck. `Date`
//! is formatted once a second per loop. `GET /plaintext` and `/json` as in
//! TechEmpower; anything else `404`; a bad or over-long head `400`, then
//! close. Request bodies are not supported (the benchmark sends none).

#[path = "peer_common/mod.rs"]
mod common;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use std::io::{ErrorKind, Read, Write};
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const NAME: &str = "peer_mio_http";
const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Read buffer per connection; also the longest request head accepted.
const RBUF: usize = 16 << 10;
const MAX_HEADERS: usize = 16;

struct Conn {
    stream: TcpStream,
    rbuf: Box<[u8]>,
    rlen: usize,
    wbuf: Vec<u8>,
    woff: usize,
    /// Stop reading: the peer closed, or the request stream is broken.
    eof: bool,
}

#[derive(PartialEq)]
enum Next {
    Keep,
    Close,
}

fn is_retry(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::Interrupted
}

/// `Date: …\r\n`, refreshed when the second changes.
struct DateCache {
    secs: u64,
    line: Vec<u8>,
}

impl DateCache {
    fn get(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs {
            self.secs = secs;
            self.line.clear();
            self.line.extend_from_slice(b"Date: ");
            self.line
                .extend_from_slice(httpdate::fmt_http_date(now).as_bytes());
            self.line.extend_from_slice(b"\r\n");
        }
        &self.line
    }
}

fn respond(out: &mut Vec<u8>, date: &[u8], status: &[u8], ctype: &[u8], body: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status);
    out.extend_from_slice(b"\r\nServer: mio\r\nContent-Type: ");
    out.extend_from_slice(ctype);
    out.extend_from_slice(b"\r\nContent-Length: ");
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(n.format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Answers every complete request in `c.rbuf`, keeps the incomplete tail.
fn parse_all(c: &mut Conn, date: &[u8]) {
    let mut off = 0;
    while off < c.rlen {
        let mut headers = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(&c.rbuf[off..c.rlen], &mut headers) {
            Ok(httparse::Status::Complete(n)) => {
                off += n;
                match req.path {
                    Some("/plaintext") => respond(
                        &mut c.wbuf,
                        date,
                        b"200 OK",
                        b"text/plain",
                        b"Hello, World!",
                    ),
                    Some("/json") => respond(
                        &mut c.wbuf,
                        date,
                        b"200 OK",
                        b"application/json",
                        br#"{"message":"Hello, World!"}"#,
                    ),
                    _ => respond(&mut c.wbuf, date, b"404 Not Found", b"text/plain", b""),
                }
            }
            Ok(httparse::Status::Partial) => break,
            Err(_) => {
                respond(&mut c.wbuf, date, b"400 Bad Request", b"text/plain", b"");
                c.eof = true;
                c.rlen = 0;
                return;
            }
        }
    }
    c.rbuf.copy_within(off..c.rlen, 0);
    c.rlen -= off;
    if c.rlen == c.rbuf.len() {
        // A head longer than the whole buffer.
        respond(&mut c.wbuf, date, b"400 Bad Request", b"text/plain", b"");
        c.eof = true;
        c.rlen = 0;
    }
}

/// Flush, read, parse, answer — until the socket is drained or refuses output.
fn drive(c: &mut Conn, date: &mut DateCache) -> Next {
    let mut drained = false;
    loop {
        while c.woff < c.wbuf.len() {
            match (&c.stream).write(&c.wbuf[c.woff..]) {
                Ok(n) => c.woff += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if is_retry(&e) => {}
                Err(_) => return Next::Close,
            }
        }
        c.wbuf.clear();
        c.woff = 0;
        if c.eof {
            return Next::Close;
        }
        if drained {
            return Next::Keep;
        }
        let space = c.rbuf.len() - c.rlen;
        match (&c.stream).read(&mut c.rbuf[c.rlen..]) {
            Ok(0) => c.eof = true,
            Ok(n) => {
                c.rlen += n;
                // Edge-triggered: a short read means the socket is empty.
                drained = n < space;
                parse_all(c, date.get());
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
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let mut conn = Conn {
            stream,
            rbuf: vec![0u8; RBUF].into_boxed_slice(),
            rlen: 0,
            wbuf: Vec::with_capacity(RBUF),
            woff: 0,
            eof: false,
        };
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

    fn accept(&mut self) {
        let Some(acc) = self.acceptor.as_mut() else {
            return;
        };
        let mut mine = Vec::new();
        loop {
            match acc.listener.accept() {
                Ok((s, _)) => {
                    let target = acc.next % (acc.peers.len() + 1);
                    acc.next = acc.next.wrapping_add(1);
                    if target == 0 {
                        mine.push(s);
                    } else {
                        let (tx, waker) = &acc.peers[target - 1];
                        let std_stream: std::net::TcpStream = s.into();
                        if tx.send(std_stream).is_ok() {
                            let _ = waker.wake();
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if is_retry(&e) => {}
                Err(e) => {
                    eprintln!("{NAME}: accept: {e}");
                    break;
                }
            }
        }
        for s in mine {
            self.adopt(s);
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut date = DateCache {
            secs: u64::MAX,
            line: Vec::new(),
        };
        loop {
            if let Err(e) = self.poll.poll(&mut events, None) {
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
                    Token(slot) => {
                        let Some(Some(c)) = self.conns.get_mut(slot) else {
                            continue;
                        };
                        if drive(c, &mut date) == Next::Close {
                            self.conns[slot] = None;
                            self.free.push(slot);
                        }
                    }
                }
            }
        }
    }
}

fn new_loop() -> (
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

    let (mut first, _, _) = new_loop();
    let mut peers = Vec::new();
    for idx in 1..args.workers {
        let (lp, tx, waker) = new_loop();
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
