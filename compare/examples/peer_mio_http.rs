//! HTTP/1.1 plaintext server: a hand-written mio event loop per core — the
//! practical limit of readiness-based I/O for this load, a competitor in
//! `benches/http_compare.rs`.
//!
//! ```text
//! cargo run --release -p netactor-compare --example peer_mio_http -- --listen 127.0.0.1:0 [--workers N]
//! ```
//!
//! The event loops of `peer_mio_echo` (`peer_common/mio_loop.rs`: each owns its connections, loop 0
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

use common::mio_loop::{self, is_retry, Next, Service};
use mio::net::TcpStream;
use std::io::{ErrorKind, Read, Write};
use std::mem::MaybeUninit;
use std::time::{SystemTime, UNIX_EPOCH};

const NAME: &str = "peer_mio_http";
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

/// One loop's HTTP: the `Date` line its connections share.
struct Http {
    date: DateCache,
}

impl Service for Http {
    const NAME: &'static str = NAME;
    type Conn = Conn;

    fn open(&mut self, stream: TcpStream) -> Option<Conn> {
        Some(Conn {
            stream,
            rbuf: vec![0u8; RBUF].into_boxed_slice(),
            rlen: 0,
            wbuf: Vec::with_capacity(RBUF),
            woff: 0,
            eof: false,
        })
    }

    fn stream(conn: &mut Conn) -> &mut TcpStream {
        &mut conn.stream
    }

    fn drive(&mut self, c: &mut Conn) -> Next {
        drive(c, &mut self.date)
    }
}

fn main() {
    let args = common::parse_args(NAME);
    mio_loop::serve(args.listen, args.workers, || Http {
        date: DateCache {
            secs: u64::MAX,
            line: Vec::new(),
        },
    });
}
