//! Echo server: a hand-written mio event loop per core — the practical
//! limit of readiness-based I/O, a competitor in `benches/echo_compare.rs`.
//!
//! ```text
//! cargo run --release --example peer_mio_echo -- --listen 127.0.0.1:0 [--workers N] [--cert PEM --key PEM]
//! ```
//!
//! `--workers N` event loops (`peer_common/mio_loop.rs`, shared with
//! `peer_mio_http`), each owning its connections outright (no
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

use common::mio_loop::{self, is_retry, Next, Service};
use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};
use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;

const NAME: &str = "peer_mio_echo";
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

/// One loop's echo: its TLS configuration and its scratch buffer.
struct Echo {
    tls: Option<Arc<ServerConfig>>,
    /// One scratch buffer per loop, starting on a cache line at `off`.
    backing: Vec<u8>,
    off: usize,
}

impl Echo {
    fn new(tls: Option<Arc<ServerConfig>>) -> Self {
        let backing = vec![0u8; common::READ_SIZE + 64];
        let off = backing.as_ptr().align_offset(64);
        Echo { tls, backing, off }
    }
}

impl Service for Echo {
    const NAME: &'static str = NAME;
    type Conn = Conn;

    fn open(&mut self, stream: TcpStream) -> Option<Conn> {
        let tls = match &self.tls {
            Some(cfg) => match ServerConnection::new(cfg.clone()) {
                Ok(s) => Some(Box::new(s)),
                Err(e) => {
                    eprintln!("{NAME}: TLS: {e}");
                    return None;
                }
            },
            None => None,
        };
        Some(Conn {
            stream,
            pending: Vec::new(),
            pend_off: 0,
            eof: false,
            tls,
        })
    }

    fn stream(conn: &mut Conn) -> &mut TcpStream {
        &mut conn.stream
    }

    fn drive(&mut self, c: &mut Conn) -> Next {
        let scratch = &mut self.backing[self.off..self.off + common::READ_SIZE];
        if c.tls.is_some() {
            drive_tls(c, scratch)
        } else {
            drive_plain(c, scratch)
        }
    }
}

fn main() {
    let args = common::parse_args(NAME);
    let tls = args.tls;
    mio_loop::serve(args.listen, args.workers, move || Echo::new(tls.clone()));
}
