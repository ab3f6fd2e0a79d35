//! An HTTP/1.1 server on netactor: TechEmpower's `/plaintext` and `/json`.
//!
//! ```text
//! cargo run --release --example http -- --listen 127.0.0.1:8080 [--workers N] [--idle-timeout SECS]
//! ```
//!
//! Prints `listening on IP:PORT` once ready. `GET /plaintext` → `200`,
//! `text/plain`, `Hello, World!`; `GET /json` → `{"message":"Hello, World!"}`
//! as `application/json`; both with `Server`, `Date` (RFC 7231 IMF-fixdate)
//! and `Content-Length`. `HEAD` is answered without the body, other methods
//! on those paths get `405`, other paths `404`; the connection stays usable.
//!
//! - Keep-alive (HTTP/1.1 by default, HTTP/1.0 with `Connection:
//!   keep-alive`); `Connection: close` is answered, then the server
//!   half-closes and ignores whatever follows.
//! - Pipelining: requests are answered in order as they are parsed, and
//!   the responses written while more requests wait in the read buffer
//!   leave together in one `send` (netactor's default: no option needed).
//! - Request bodies (`Content-Length`) are read and **discarded** as they
//!   arrive (never buffered whole); the answer is written once the body is
//!   complete. `Transfer-Encoding` is not supported: `501`, then close.
//! - A malformed head gets `400`, a head over 8 KiB (or with more than 64
//!   headers) `431`; both then half-close. So the read buffer never holds
//!   more than one bounded head plus one read.
//! - Client half-close: every request already received is answered, then
//!   the server closes (FIN).
//! - `--idle-timeout SECS` (default 60): a connection with no activity for
//!   that long is closed.
//! - SIGTERM/SIGINT: stop accepting, stop reading new requests, send what
//!   is owed, half-close, exit 0 within 10 s (see `graceful/mod.rs`).
//!
//! Design: handler mode, reading in place (`Ctx::set_read_in_place`): the
//! handler's `on_read` parses request heads with `httparse` ([`HttpCodec`])
//! on the connection's own read buffer and answers each complete request;
//! a request split across reads simply stays buffered until it is
//! complete, so nothing is copied, and no event or allocation is made per
//! request. Responses are three or four `Bytes`
//! — the status line and headers (built once at start), the `Date` line
//! (formatted once a second per worker thread) and the body — queued with
//! `Ctx::write_parts`, so nothing is copied on the way out either.

#[path = "graceful/mod.rs"]
mod graceful;

use bytes::{Buf, Bytes, BytesMut};
use netactor::framing::{DecodeError, Decoder};
use netactor::{Ctx, Event, Handler, ListenOptions, Options, Reactor};
use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest request head accepted (request line and headers).
const MAX_HEAD: usize = 8 << 10;
/// Most headers per request.
const MAX_HEADERS: usize = 64;

// ---- requests -----------------------------------------------------------------

/// What the server answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Plaintext,
    Json,
    NotFound,
    MethodNotAllowed,
    BadRequest,
    HeadTooLarge,
    NotImplemented,
}

impl Answer {
    const ALL: [Answer; 7] = [
        Answer::Plaintext,
        Answer::Json,
        Answer::NotFound,
        Answer::MethodNotAllowed,
        Answer::BadRequest,
        Answer::HeadTooLarge,
        Answer::NotImplemented,
    ];

    fn status(self) -> &'static str {
        match self {
            Answer::Plaintext | Answer::Json => "200 OK",
            Answer::NotFound => "404 Not Found",
            Answer::MethodNotAllowed => "405 Method Not Allowed",
            Answer::BadRequest => "400 Bad Request",
            Answer::HeadTooLarge => "431 Request Header Fields Too Large",
            Answer::NotImplemented => "501 Not Implemented",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Answer::Json => "application/json",
            _ => "text/plain",
        }
    }

    fn body(self) -> &'static [u8] {
        match self {
            Answer::Plaintext => b"Hello, World!",
            Answer::Json => br#"{"message":"Hello, World!"}"#,
            Answer::NotFound => b"Not Found\n",
            Answer::MethodNotAllowed => b"Method Not Allowed\n",
            Answer::BadRequest => b"Bad Request\n",
            Answer::HeadTooLarge => b"Request Header Fields Too Large\n",
            Answer::NotImplemented => b"Not Implemented\n",
        }
    }
}

/// One request, parsed: what to answer and how the connection goes on.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    answer: Answer,
    /// `HEAD`: the same headers, no body.
    head_only: bool,
    /// HTTP/1.0: the response says whether the connection stays open.
    http10: bool,
    /// The client wants (or the answer forces) the connection to end after this.
    close: bool,
}

/// Request heads parsed in place on the read buffer; bodies skipped.
#[derive(Default)]
struct HttpCodec {
    /// A request whose body is still arriving: answered once it is skipped.
    waiting: Option<Request>,
    /// Body bytes still to drop.
    body_left: u64,
    /// After a request that ends the connection: everything is dropped.
    done: bool,
}

impl Decoder for HttpCodec {
    type Output = Request;

    fn decode(&mut self, buf: &mut BytesMut, _eof: bool) -> Result<Option<Request>, DecodeError> {
        if self.done {
            buf.clear();
            return Ok(None);
        }
        if self.body_left > 0 {
            let n = self.body_left.min(buf.len() as u64);
            buf.advance(n as usize);
            self.body_left -= n;
            if self.body_left > 0 {
                return Ok(None);
            }
        }
        if let Some(r) = self.waiting.take() {
            return Ok(Some(r));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let (req, head_len, body_len) = match parse_head(&buf[..buf.len().min(MAX_HEAD)]) {
            Parsed::Partial if buf.len() >= MAX_HEAD => (fatal(Answer::HeadTooLarge), 0, 0),
            Parsed::Partial => return Ok(None),
            Parsed::Fatal(a) => (fatal(a), 0, 0),
            Parsed::Complete {
                req,
                head_len,
                body_len,
            } => (req, head_len, body_len),
        };
        if req.close {
            // Nothing after this request is read: not a pipelined request
            // after `Connection: close`, nor what follows a bad head.
            self.done = true;
            buf.clear();
            return Ok(Some(req));
        }
        buf.advance(head_len);
        if body_len > 0 {
            self.body_left = body_len;
            self.waiting = Some(req);
            return self.decode(buf, false);
        }
        Ok(Some(req))
    }
}

fn fatal(answer: Answer) -> Request {
    Request {
        answer,
        head_only: false,
        http10: false,
        close: true,
    }
}

enum Parsed {
    Partial,
    Fatal(Answer),
    Complete {
        req: Request,
        head_len: usize,
        body_len: u64,
    },
}

/// Parses one request head at the front of `buf` with httparse.
fn parse_head(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Request::new(&mut headers);
    let head_len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Fatal(Answer::HeadTooLarge),
        Err(_) => return Parsed::Fatal(Answer::BadRequest),
    };
    let http10 = r.version == Some(0);
    let (mut close, mut keep_alive) = (false, false);
    let mut body_len: Option<u64> = None;
    for h in r.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            // Digits only, and several must agree (RFC 9112 §6.3): anything
            // else could desynchronise the request stream.
            let n = std::str::from_utf8(h.value)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok());
            match (n, body_len) {
                (None, _) => return Parsed::Fatal(Answer::BadRequest),
                (Some(n), Some(m)) if n != m => return Parsed::Fatal(Answer::BadRequest),
                (Some(n), _) => body_len = Some(n),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Fatal(Answer::NotImplemented);
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let method = r.method.unwrap_or("");
    let path = r.path.unwrap_or("");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let head_only = method == "HEAD";
    let answer = match path {
        "/plaintext" | "/json" if method != "GET" && !head_only => Answer::MethodNotAllowed,
        "/plaintext" => Answer::Plaintext,
        "/json" => Answer::Json,
        _ => Answer::NotFound,
    };
    Parsed::Complete {
        req: Request {
            answer,
            head_only,
            http10,
            close: close || (http10 && !keep_alive),
        },
        head_len,
        body_len: body_len.unwrap_or(0),
    }
}

// ---- responses ----------------------------------------------------------------

/// Status line and headers (all but `Date`) for every answer, built once:
/// `[answer][connection header: none, close, keep-alive]`. Static (21
/// short strings leaked once): cloning a static `Bytes` touches no
/// reference count, so the workers do not contend on one per response.
fn heads() -> &'static [[Bytes; 3]; 7] {
    static HEADS: OnceLock<[[Bytes; 3]; 7]> = OnceLock::new();
    HEADS.get_or_init(|| {
        Answer::ALL.map(|a| {
            ["", "Connection: close\r\n", "Connection: keep-alive\r\n"].map(|conn| {
                let allow = if a == Answer::MethodNotAllowed {
                    "Allow: GET, HEAD\r\n"
                } else {
                    ""
                };
                Bytes::from_static(
                    format!(
                    "HTTP/1.1 {}\r\nServer: netactor\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}{conn}",
                    a.status(),
                    a.content_type(),
                    a.body().len()
                )
                    .leak()
                    .as_bytes(),
                )
            })
        })
    })
}

/// `Date: <IMF-fixdate>\r\n\r\n` for the current second, formatted once a
/// second per worker thread (no lock, no shared cache line).
fn date_line() -> Bytes {
    thread_local! {
        static CACHE: RefCell<(u64, Bytes)> = const { RefCell::new((u64::MAX, Bytes::new())) };
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != now {
            *c = (
                now,
                Bytes::from(format!("Date: {}\r\n\r\n", imf_fixdate(now))),
            );
        }
        c.1.clone()
    })
}

/// RFC 7231 §7.1.1.1 IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
fn imf_fixdate(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    // Days since 1970-01-01 → civil date (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

// ---- the connection -------------------------------------------------------------

struct Http {
    /// Parses the requests in place, on the connection's read buffer.
    codec: HttpCodec,
}

impl Http {
    /// Answers one request; false once the connection takes no more.
    fn respond(&mut self, ctx: &mut Ctx<'_>, req: Request, date: &Bytes) -> bool {
        let conn = match (req.close, req.http10) {
            (true, _) => 1,
            (false, true) => 2,
            (false, false) => 0,
        };
        let head = heads()[req.answer as usize][conn].clone();
        let written = if req.head_only {
            ctx.write_parts([head, date.clone()])
        } else {
            ctx.write_parts([head, date.clone(), Bytes::from_static(req.answer.body())])
        };
        if written.is_err() {
            // The write queue is full: a client pipelining without reading.
            ctx.close();
            return false;
        }
        if req.close {
            // `Connection: close`, or a request the server cannot read past
            // (the decoder now drops whatever follows): half-close after the
            // answer, and give the client a while to close its side.
            graceful::stop(ctx);
            return false;
        }
        true
    }
}

impl Handler for Http {
    /// Every complete request in the buffer is answered; an incomplete one
    /// stays where it is until the rest arrives. The answers of one call
    /// leave together (netactor gathers what `on_read` writes).
    fn on_read(&mut self, ctx: &mut Ctx<'_>, rbuf: &mut BytesMut) {
        let mut date = None;
        while let Ok(Some(req)) = self.codec.decode(rbuf, false) {
            // One clock read per batch of pipelined requests.
            let date = date.get_or_insert_with(date_line);
            if !self.respond(ctx, req, date) {
                break;
            }
        }
    }

    fn on_event(&mut self, ctx: &mut Ctx<'_>, event: Event) {
        match event {
            // Half-close: everything already received has been answered
            // (frames are decoded before the EOF is reported); FIN after it.
            Event::Eof => {
                let _ = ctx.shutdown();
            }
            // Idle for --idle-timeout, or a stopped connection whose client
            // did not close within the grace period.
            Event::Timeout(_) => ctx.close(),
            _ => {}
        }
    }
}

// ---- main ---------------------------------------------------------------------

struct Args {
    listen: SocketAddr,
    workers: Option<usize>,
    idle: Duration,
}

const USAGE: &str = "usage: http --listen ADDR [--workers N] [--idle-timeout SECS]";

fn parse_args() -> Result<Args, String> {
    let (mut listen, mut workers, mut idle) = (None, None, 60u64);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--listen" => listen = Some(val(&a)?.parse().map_err(|e| format!("--listen: {e}"))?),
            "--workers" => workers = Some(val(&a)?.parse().map_err(|e| format!("--workers: {e}"))?),
            "--idle-timeout" => {
                idle = val(&a)?
                    .parse()
                    .map_err(|e| format!("--idle-timeout: {e}"))?
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if idle == 0 {
        return Err("--idle-timeout must be > 0".into());
    }
    Ok(Args {
        listen: listen.ok_or(format!("--listen is required\n{USAGE}"))?,
        workers,
        idle: Duration::from_secs(idle),
    })
}

fn main() -> ExitCode {
    env_logger::init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("http: {e}");
            return ExitCode::from(2);
        }
    };
    // Registered before the `listening on` line, so no signal is missed.
    let mut signals = match graceful::termination_signals("http") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut builder = Reactor::builder().shutdown_timeout(Duration::from_secs(1));
    if let Some(n) = args.workers {
        builder = builder.workers(n);
    }
    let reactor = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("http: cannot start reactor: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = Options::new()
        .no_delay(true)
        // A client that pipelines without reading the answers is slowed
        // down (TCP flow control), not failed with NoSpace: at most 1 MiB
        // of answers waits, plus one read's worth (wbuf_max is 4 MiB).
        .pause_reading_above(Some(1 << 20))
        .timeout(Some(args.idle))
        .linger(Duration::from_secs(5));
    let listener =
        match reactor.listen_with(args.listen, ListenOptions::new().options(opts), |ctx| {
            ctx.set_read_in_place(true);
            Http {
                codec: HttpCodec::default(),
            }
        }) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("http: cannot listen on {}: {e}", args.listen);
                return ExitCode::from(1);
            }
        };
    println!("listening on {}", listener.local_addr());
    let _ = std::io::stdout().flush();
    if let Some(sig) = signals.forever().next() {
        log::info!("signal {sig}: shutting down");
    }
    drop(listener);
    graceful::stop_all(&reactor, Duration::from_secs(7));
    reactor.shutdown();
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imf_fixdate_matches_known_dates() {
        assert_eq!(imf_fixdate(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(imf_fixdate(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(imf_fixdate(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(imf_fixdate(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 GMT");
    }

    fn decode_all(input: &[u8]) -> Vec<Request> {
        let mut c = HttpCodec::default();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Ok(Some(r)) = c.decode(&mut buf, false) {
            out.push(r);
        }
        out
    }

    #[test]
    fn pipelined_requests_bodies_and_close() {
        let got = decode_all(
            b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n\
              POST /json HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
              HEAD /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
              GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n\
              GET /plaintext HTTP/1.1\r\n\r\n",
        );
        let answers: Vec<_> = got.iter().map(|r| (r.answer, r.close)).collect();
        assert_eq!(
            answers,
            [
                (Answer::Plaintext, false),
                (Answer::MethodNotAllowed, false),
                (Answer::Json, false),
                (Answer::NotFound, true),
            ]
        );
        assert!(got[2].head_only && got[2].http10);
    }

    #[test]
    fn bad_heads_end_the_connection() {
        for (input, answer) in [
            (
                &b"GET /plaintext HTTP/1.1\r\nBad Header\r\n\r\n"[..],
                Answer::BadRequest,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                Answer::BadRequest,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Answer::BadRequest,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Answer::NotImplemented,
            ),
        ] {
            let got = decode_all(input);
            assert_eq!(got.len(), 1, "{input:?}");
            assert_eq!((got[0].answer, got[0].close), (answer, true));
        }
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD + 10, b'a');
        assert_eq!(decode_all(&long)[0].answer, Answer::HeadTooLarge);
    }
}
