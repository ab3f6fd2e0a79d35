//! A fan-out HTTP client for a plain-threads program: one thread keeps many
//! requests in flight on netactor, each with its own timeout and its own
//! outcome — and, for comparison, the same work on blocking std sockets,
//! one thread per concurrent request.
//!
//! ```text
//! cargo run --release --example fanout -- --target HOST:PORT [--path /plaintext]
//!     [--requests N] [--concurrency C] [--timeout SECS] [--workers W] [--blocking]
//! ```
//!
//! `GET PATH` is sent `N` times (default 100) over at most `C` connections
//! at once (default 10), kept alive between requests; each request — from
//! its connect, when its connection needs one, to the last byte of the
//! response — must finish within `--timeout` seconds (default 5; fractions
//! allowed). A request fails as `refused` (nothing listens), `timeout`, `bad
//! response` (not a parsable HTTP/1.1 response, or a status other than 200)
//! or `error` (anything else); a failed request's connection is closed and
//! the next request on that slot connects anew.
//!
//! Output (stdout): one line per failed request, `request I: KIND: DETAIL`,
//! then one summary line:
//!
//! ```text
//! mode netactor requests 100 ok 98 refused 0 timeout 2 bad 0 error 0 secs 1.003 rps 99.7 cpu 0.041
//! ```
//!
//! (`cpu`: user + system seconds of this process.) Exit status: 0 when every
//! request succeeded, 1 when some failed, 2 for bad arguments.
//!
//! Design (netactor mode): every in-flight request is a [`Reply`] from
//! `push_read` with a small httparse-based response decoder; the main thread
//! waits on all of them at once, plus the shared events channel, with
//! crossbeam's `Select`, and wakes at the earliest request deadline. No
//! thread per connection, no async runtime.

use bytes::{Buf, Bytes, BytesMut};
use crossbeam_channel::Select;
use netactor::framing::{DecodeError, Decoder};
use netactor::{
    ConnId, ConnectOptions, Connection, Error, Event, Options, Reactor, Reply, TryReplyError,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest response head accepted.
const MAX_HEAD: usize = 16 << 10;
/// Largest response body accepted.
const MAX_BODY: usize = 1 << 20;

// ---- responses ------------------------------------------------------------------

#[derive(Debug)]
struct Response {
    status: u16,
    /// The server will close the connection after this response.
    close: bool,
    #[allow(dead_code)] // kept to show where the body is; not checked here
    body: Bytes,
}

enum Head {
    Partial,
    Complete {
        status: u16,
        close: bool,
        head_len: usize,
        body_len: usize,
    },
}

/// Parses a response head with httparse (a body needs Content-Length).
fn parse_head(buf: &[u8]) -> Result<Head, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let head_len = match r.parse(&buf[..buf.len().min(MAX_HEAD)]) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err("response head too long".into())
        }
        Ok(httparse::Status::Partial) => return Ok(Head::Partial),
        Err(e) => return Err(format!("unparsable response: {e}")),
    };
    let mut body_len = None;
    let mut close = r.version == Some(0);
    for h in r.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or("bad Content-Length")?;
            if n > MAX_BODY {
                return Err(format!("body of {n} bytes is over {MAX_BODY}"));
            }
            body_len = Some(n);
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= h.value.eq_ignore_ascii_case(b"close");
        }
    }
    Ok(Head::Complete {
        status: r.code.unwrap_or(0),
        close,
        head_len,
        body_len: body_len.ok_or("response without Content-Length")?,
    })
}

/// One HTTP response off the connection's read buffer (parsed in place).
struct ResponseCodec;

impl Decoder for ResponseCodec {
    type Output = Response;

    fn decode(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Option<Response>, DecodeError> {
        match parse_head(buf).map_err(DecodeError::fatal_bad_message)? {
            Head::Complete {
                status,
                close,
                head_len,
                body_len,
            } if buf.len() >= head_len + body_len => {
                buf.advance(head_len);
                let body = buf.split_to(body_len).freeze();
                Ok(Some(Response {
                    status,
                    close,
                    body,
                }))
            }
            _ if eof => Err(DecodeError::fatal_bad_message("truncated response")),
            _ => Ok(None),
        }
    }
}

// ---- outcomes -------------------------------------------------------------------

enum Outcome {
    Ok,
    Refused(String),
    Timeout(Duration),
    Bad(String),
    Other(String),
}

fn from_error(e: &Error, started: Instant) -> Outcome {
    match e {
        Error::ConnectionRefused => Outcome::Refused(e.to_string()),
        Error::TimedOut(_) => Outcome::Timeout(started.elapsed()),
        Error::BadMessage(m) => Outcome::Bad(m.clone()),
        other => Outcome::Other(other.to_string()),
    }
}

fn from_response(r: &Response) -> Outcome {
    if r.status == 200 {
        Outcome::Ok
    } else {
        Outcome::Bad(format!("status {}", r.status))
    }
}

#[derive(Default)]
struct Summary {
    ok: usize,
    refused: usize,
    timeout: usize,
    bad: usize,
    other: usize,
}

impl Summary {
    /// Counts `o` and prints a line for a failed request.
    fn record(&mut self, i: usize, o: Outcome) {
        match o {
            Outcome::Ok => self.ok += 1,
            Outcome::Refused(d) => {
                self.refused += 1;
                println!("request {i}: refused: {d}");
            }
            Outcome::Timeout(after) => {
                self.timeout += 1;
                println!("request {i}: timeout: after {:.3} s", after.as_secs_f64());
            }
            Outcome::Bad(d) => {
                self.bad += 1;
                println!("request {i}: bad response: {d}");
            }
            Outcome::Other(d) => {
                self.other += 1;
                println!("request {i}: error: {d}");
            }
        }
    }

    fn failed(&self) -> usize {
        self.refused + self.timeout + self.bad + self.other
    }
}

// ---- netactor: one thread, many requests ------------------------------------------------

/// What an in-flight request waits for.
enum Wait {
    /// Its response (or the error that ended the read).
    Reply(Reply<Response>),
    /// The connection was already closed when the request was written or
    /// read (a connect refused that fast, say): the reason comes as the
    /// connection's fatal `Event::Error` on the events channel.
    Reason(ConnId),
}

/// A connection slot: at most one request in flight on it.
#[derive(Default)]
struct Slot {
    conn: Option<Connection>,
    /// The request index, what it waits for, when it started.
    pending: Option<(usize, Wait, Instant)>,
}

impl Slot {
    /// Ends the request in flight; a failed one closes its connection
    /// (left in an unknown state: the next request connects anew).
    fn finish(&mut self, sum: &mut Summary, outcome: Outcome, keep: bool) {
        let (i, _, _) = self.pending.take().expect("a request in flight");
        if !keep {
            if let Some(c) = self.conn.take() {
                let _ = c.close();
            }
        }
        sum.record(i, outcome);
    }
}

fn run_netactor(args: &Args, request: &Bytes, sum: &mut Summary) -> Result<(), String> {
    let mut builder = Reactor::builder();
    if let Some(w) = args.workers {
        builder = builder.workers(w);
    }
    let reactor = builder.build().map_err(|e| format!("reactor: {e}"))?;
    // Events (Connected, errors, Closed) are not needed here — every outcome
    // arrives on the request's Reply — but the channel is drained so that it
    // never fills.
    let (events_tx, events) = netactor::event_channel(1024);
    let opts = Options::new()
        .no_delay(true)
        .connect_timeout(args.timeout)
        .linger(Duration::ZERO);
    let mut slots: Vec<Slot> = (0..args.concurrency).map(|_| Slot::default()).collect();
    let mut next = 0;
    let mut done = 0;
    while done < args.requests {
        // Every idle slot starts the next request.
        for slot in slots.iter_mut().filter(|s| s.pending.is_none()) {
            if next == args.requests {
                break;
            }
            let i = next;
            next += 1;
            let started = Instant::now();
            if slot.conn.as_ref().is_none_or(Connection::is_closed) {
                match reactor.connect(
                    args.target.as_str(),
                    ConnectOptions::new().options(opts.clone()),
                    events_tx.clone(),
                ) {
                    Ok(c) => slot.conn = Some(c),
                    Err(e) => {
                        sum.record(i, from_error(&e, started));
                        done += 1;
                        continue;
                    }
                }
            }
            let conn = slot.conn.as_ref().expect("connected above");
            // Written at once even while connecting: netactor sends it when
            // the connection is up.
            let reply = conn
                .write(request.clone())
                .and_then(|()| conn.push_read(ResponseCodec));
            slot.pending = Some((
                i,
                match reply {
                    Ok(r) => Wait::Reply(r),
                    Err(_) => Wait::Reason(conn.id()),
                },
                started,
            ));
        }
        // Wait for the first reply, an event, or the earliest deadline.
        let deadline = slots
            .iter()
            .filter_map(|s| s.pending.as_ref().map(|p| p.2 + args.timeout))
            .min();
        let Some(deadline) = deadline else { continue };
        let mut sel = Select::new();
        sel.recv(&events);
        for s in &slots {
            if let Some((_, Wait::Reply(r), _)) = &s.pending {
                sel.recv(r.receiver());
            }
        }
        // Which one woke us matters little: once awake, every reply and
        // event that is ready is taken (one wake-up, many completions).
        let _ = sel.ready_deadline(deadline);
        drop(sel);
        while let Ok((id, ev)) = events.try_recv() {
            let Some(slot) = slots
                .iter_mut()
                .find(|s| matches!(s.pending, Some((_, Wait::Reason(w), _)) if w == id))
            else {
                continue;
            };
            let started = slot.pending.as_ref().expect("pending").2;
            match ev {
                Event::Error { error, fatal: true } => {
                    slot.finish(sum, from_error(&error, started), false)
                }
                Event::Closed => slot.finish(sum, Outcome::Other("closed".into()), false),
                _ => continue,
            }
            done += 1;
        }
        for slot in &mut slots {
            let result = match &slot.pending {
                Some((_, Wait::Reply(r), _)) => r.try_recv(),
                _ => Err(TryReplyError::Empty),
            };
            match result {
                Err(TryReplyError::Empty) => {}
                Err(TryReplyError::Failed(Error::Closed)) => {
                    let id = slot.conn.as_ref().expect("connection").id();
                    slot.pending.as_mut().expect("pending").1 = Wait::Reason(id);
                }
                result => {
                    let started = slot.pending.as_ref().expect("pending").2;
                    let (outcome, keep) = match &result {
                        Ok(resp) => (from_response(resp), resp.status == 200 && !resp.close),
                        Err(e) => (from_error(&e.clone().into(), started), false),
                    };
                    slot.finish(sum, outcome, keep);
                    done += 1;
                }
            }
        }
        // Requests past their deadline fail as timeouts.
        let now = Instant::now();
        for slot in &mut slots {
            if let Some((_, _, started)) = slot.pending {
                if now >= started + args.timeout {
                    slot.finish(sum, Outcome::Timeout(started.elapsed()), false);
                    done += 1;
                }
            }
        }
    }
    drop(slots);
    reactor.shutdown();
    Ok(())
}

// ---- blocking std sockets: a thread per concurrent request --------------------------------

fn classify_io(e: &std::io::Error, started: Instant) -> Outcome {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => Outcome::Refused(e.to_string()),
        WouldBlock | TimedOut => Outcome::Timeout(started.elapsed()),
        _ => Outcome::Other(e.to_string()),
    }
}

/// One request on `conn` (connecting first if needed), within `timeout`.
fn blocking_request(
    addrs: &[SocketAddr],
    conn: &mut Option<TcpStream>,
    request: &[u8],
    timeout: Duration,
    buf: &mut Vec<u8>,
) -> Outcome {
    let started = Instant::now();
    let deadline = started + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    if conn.is_none() {
        let mut last = None;
        for a in addrs {
            match TcpStream::connect_timeout(a, left().max(Duration::from_millis(1))) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    *conn = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if conn.is_none() {
            return match last {
                Some(e) => classify_io(&e, started),
                None => Outcome::Other("no address".into()),
            };
        }
    }
    let s = conn.as_mut().expect("connected above");
    // The outcome, and whether the connection can carry the next request.
    let io = (|| -> Result<(Outcome, bool), std::io::Error> {
        s.set_write_timeout(Some(left().max(Duration::from_millis(1))))?;
        s.write_all(request)?;
        buf.clear();
        let mut chunk = [0u8; 16 << 10];
        loop {
            let head = match parse_head(buf) {
                Ok(h) => h,
                Err(m) => return Ok((Outcome::Bad(m), false)),
            };
            if let Head::Complete {
                status,
                close,
                head_len,
                body_len,
            } = head
            {
                if buf.len() >= head_len + body_len {
                    let o = from_response(&Response {
                        status,
                        close,
                        body: Bytes::new(),
                    });
                    let keep = matches!(o, Outcome::Ok) && !close;
                    return Ok((o, keep));
                }
            }
            let l = left();
            if l.is_zero() {
                return Ok((Outcome::Timeout(started.elapsed()), false));
            }
            s.set_read_timeout(Some(l))?;
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Ok((Outcome::Bad("truncated response".into()), false));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })();
    let (o, keep) = io.unwrap_or_else(|e| (classify_io(&e, started), false));
    if !keep {
        *conn = None;
    }
    o
}

fn run_blocking(args: &Args, request: &Bytes, sum: &mut Summary) -> Result<(), String> {
    let addrs: Vec<SocketAddr> = args
        .target
        .to_socket_addrs()
        .map_err(|e| format!("--target {}: {e}", args.target))?
        .collect();
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = crossbeam_channel::unbounded();
    let threads: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (next, tx, addrs, request) =
                (next.clone(), tx.clone(), addrs.clone(), request.clone());
            let (n, timeout) = (args.requests, args.timeout);
            std::thread::spawn(move || {
                let mut conn = None;
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let o = blocking_request(&addrs, &mut conn, &request, timeout, &mut buf);
                    let _ = tx.send((i, o));
                }
            })
        })
        .collect();
    drop(tx);
    for (i, o) in rx {
        sum.record(i, o);
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

// ---- main ---------------------------------------------------------------------

struct Args {
    target: String,
    path: String,
    requests: usize,
    concurrency: usize,
    timeout: Duration,
    workers: Option<usize>,
    blocking: bool,
}

const USAGE: &str = "usage: fanout --target HOST:PORT [--path /plaintext] [--requests N] \
[--concurrency C] [--timeout SECS] [--workers W] [--blocking]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        target: String::new(),
        path: "/plaintext".into(),
        requests: 100,
        concurrency: 10,
        timeout: Duration::from_secs(5),
        workers: None,
        blocking: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--target" => a.target = val(&arg)?,
            "--path" => a.path = val(&arg)?,
            "--requests" => {
                a.requests = val(&arg)?.parse().map_err(|e| format!("--requests: {e}"))?
            }
            "--concurrency" => {
                a.concurrency = val(&arg)?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?
            }
            "--timeout" => {
                let secs: f64 = val(&arg)?.parse().map_err(|e| format!("--timeout: {e}"))?;
                a.timeout = Duration::try_from_secs_f64(secs)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or("--timeout must be a positive number of seconds")?;
            }
            "--workers" => {
                a.workers = Some(val(&arg)?.parse().map_err(|e| format!("--workers: {e}"))?)
            }
            "--blocking" => a.blocking = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if a.target.is_empty() {
        return Err(format!("--target is required\n{USAGE}"));
    }
    if a.concurrency == 0 || !a.path.starts_with('/') {
        return Err("--concurrency must be > 0 and --path start with /".into());
    }
    Ok(a)
}

/// User + system CPU seconds of this process so far.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn main() -> ExitCode {
    env_logger::init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fanout: {e}");
            return ExitCode::from(2);
        }
    };
    let request = Bytes::from(format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
        args.path, args.target
    ));
    let mut sum = Summary::default();
    let (cpu0, t0) = (cpu_secs(), Instant::now());
    let run = if args.blocking {
        run_blocking(&args, &request, &mut sum)
    } else {
        run_netactor(&args, &request, &mut sum)
    };
    if let Err(e) = run {
        eprintln!("fanout: {e}");
        return ExitCode::from(2);
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "mode {} requests {} ok {} refused {} timeout {} bad {} error {} secs {secs:.3} rps {:.1} cpu {:.3}",
        if args.blocking { "blocking" } else { "netactor" },
        args.requests,
        sum.ok,
        sum.refused,
        sum.timeout,
        sum.bad,
        sum.other,
        args.requests as f64 / secs.max(1e-9),
        cpu_secs() - cpu0
    );
    if sum.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
