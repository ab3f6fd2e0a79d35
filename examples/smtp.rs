//! A small SMTP receiver (RFC 5321 subset + STARTTLS, RFC 3207) on netactor.
//!
//! ```text
//! cargo run --release --example smtp -- --listen 127.0.0.1:2525 --cert cert.pem --key key.pem \
//!     --maildir /tmp/mail [--require-tls] [--idle-timeout SECS] [--max-line BYTES] \
//!     [--metrics IP:PORT]
//! ```
//!
//! Prints `listening on IP:PORT` once ready (and with `--metrics`, then
//! `metrics on IP:PORT`: the reactor's metrics at `GET /metrics` in the
//! Prometheus text format, see `metrics/mod.rs`). Each accepted message is stored
//! under `DIR/new/<id>.eml` holding exactly the DATA payload (dot-unstuffed,
//! line ends as sent, no added header), with its envelope in
//! `DIR/envelope/<id>.json`; both are written to `DIR/tmp/` first, fsynced,
//! renamed, and the folders fsynced, all before the final `250`. An
//! incomplete transaction leaves nothing behind: a session that ends early
//! removes its temporary file, and files left in `DIR/tmp/` by a server
//! that was killed mid-transaction (`kill -9`, a crash, power loss) are
//! removed when the server starts — so one server per maildir.
//!
//! Design: handler mode — each connection's session runs on its worker,
//! fed by one streaming decoder ([`SmtpCodec`]) that yields command lines
//! (over-long ones are skipped to their end and reported, so memory stays
//! bounded) and, during DATA, dot-unstuffed body chunks written straight to
//! the temporary file. STARTTLS writes `220` and calls `ctx.starttls` in the
//! same handler call: the actor hands every byte already buffered to TLS, so
//! commands pipelined behind STARTTLS are never executed (CVE-2011-0411).
//!
//! SIGTERM/SIGINT: stop accepting at once; idle sessions get `421`, a DATA
//! under way finishes first (stored, `250`, then `421`); after the `421` the
//! server stops reading (what the client still sends is dropped) and
//! half-closes, so the client reads every reply and then a clean EOF, not
//! a reset (see `graceful/mod.rs`); exit 0 within 10 s.

#[path = "graceful/mod.rs"]
mod graceful;
#[path = "metrics/mod.rs"]
mod metrics;

use bytes::{Buf, Bytes, BytesMut};
use netactor::framing::{DecodeError, Decoder, Frame};
use netactor::tls::{ServerBuilder, ServerConfig, TlsSetup};
use netactor::{
    ConnId, Connection, Ctx, Event, Handler, Inactivity, ListenOptions, Options, Reactor,
    TimeoutKind,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HOST: &str = "netactor-smtp";
/// Largest message accepted (advertised with SIZE).
const MAX_MESSAGE: u64 = 64 << 20;
/// Most recipients per transaction.
const MAX_RCPTS: usize = 100;

// ---- the codec --------------------------------------------------------------

/// What the SMTP codec yields.
#[derive(Debug)]
enum SmtpFrame {
    /// A command line without its line end.
    Command(Bytes),
    /// A command line longer than `--max-line` ended (its bytes were dropped).
    TooLong,
    /// Dot-unstuffed message bytes, line ends as sent.
    Body(Bytes),
    /// The `.` line that ends DATA; the codec is back in command mode.
    EndOfData,
}

impl From<SmtpFrame> for Frame {
    fn from(f: SmtpFrame) -> Frame {
        Frame::Other(Box::new(f))
    }
}

/// Command lines, or the DATA body. Memory stays bounded in both modes: a
/// command line is buffered up to `max` bytes, then skipped to its end; a
/// body is passed on as it arrives.
struct SmtpCodec {
    max: usize,
    data: bool,
    /// Command mode: skipping the rest of an over-long line.
    discarding: bool,
    /// Data mode: at the beginning of a line.
    bol: bool,
}

impl SmtpCodec {
    fn commands(max: usize) -> Self {
        SmtpCodec {
            max,
            data: false,
            discarding: false,
            bol: true,
        }
    }

    fn body(max: usize) -> Self {
        SmtpCodec {
            data: true,
            ..Self::commands(max)
        }
    }

    fn command(&mut self, buf: &mut BytesMut) -> Option<SmtpFrame> {
        if self.discarding {
            return match memchr::memchr(b'\n', buf) {
                Some(i) => {
                    buf.advance(i + 1);
                    self.discarding = false;
                    Some(SmtpFrame::TooLong)
                }
                None => {
                    buf.clear();
                    None
                }
            };
        }
        // A valid line is at most `max` bytes plus CR LF.
        let window = buf.len().min(self.max + 2);
        match memchr::memchr(b'\n', &buf[..window]) {
            Some(i) => {
                let mut line = buf.split_to(i + 1).freeze();
                line.truncate(i);
                if line.last() == Some(&b'\r') {
                    line.truncate(i - 1);
                }
                if line.len() > self.max {
                    Some(SmtpFrame::TooLong)
                } else {
                    Some(SmtpFrame::Command(line))
                }
            }
            None if buf.len() > self.max + 1 => {
                // Too long whatever comes next: drop it and skip to its end
                // (which may already be buffered), answering once the line
                // is over so that replies stay in step with commands.
                self.discarding = true;
                self.command(buf)
            }
            None => None,
        }
    }

    fn body_chunk(&mut self, buf: &mut BytesMut) -> Option<SmtpFrame> {
        let mut out = BytesMut::new();
        while !buf.is_empty() {
            if self.bol {
                if buf[0] == b'.' {
                    let end = match (buf.get(1), buf.get(2)) {
                        (Some(b'\n'), _) => Some(2),
                        (Some(b'\r'), Some(b'\n')) => Some(3),
                        (None, _) | (Some(b'\r'), None) => break, // need more
                        _ => None,
                    };
                    if let Some(n) = end {
                        if !out.is_empty() {
                            return Some(SmtpFrame::Body(out.freeze()));
                        }
                        buf.advance(n);
                        *self = SmtpCodec::commands(self.max);
                        return Some(SmtpFrame::EndOfData);
                    }
                    buf.advance(1); // dot-unstuffing
                }
                self.bol = false;
            }
            let seg = match memchr::memchr(b'\n', buf) {
                Some(i) => {
                    self.bol = true;
                    buf.split_to(i + 1)
                }
                None => buf.split(),
            };
            out.unsplit(seg); // no copy while the bytes are contiguous
        }
        (!out.is_empty()).then(|| SmtpFrame::Body(out.freeze()))
    }
}

impl Decoder for SmtpCodec {
    type Output = SmtpFrame;

    fn decode(&mut self, buf: &mut BytesMut, _eof: bool) -> Result<Option<SmtpFrame>, DecodeError> {
        Ok(if self.data {
            self.body_chunk(buf)
        } else {
            self.command(buf)
        })
    }
}

// ---- storage ----------------------------------------------------------------

struct Store {
    dir: PathBuf,
    seq: AtomicU64,
}

impl Store {
    fn new(dir: PathBuf) -> std::io::Result<Store> {
        for sub in ["tmp", "new", "cur", "envelope"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        // Temporaries of transactions that never finished: a server killed
        // mid-DATA had no chance to remove them.
        let mut stale = 0;
        for entry in fs::read_dir(dir.join("tmp"))? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                fs::remove_file(entry.path())?;
                stale += 1;
            }
        }
        if stale > 0 {
            fsync_dir(&dir.join("tmp"))?;
            eprintln!("smtp: removed {stale} unfinished message(s) from tmp/");
        }
        Ok(Store {
            dir,
            seq: AtomicU64::new(0),
        })
    }

    fn unique(&self) -> String {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        format!(
            "{}.{:06}.{}_{}",
            t.as_secs(),
            t.subsec_micros(),
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// A message being received: its body goes to `tmp/<id>`.
struct Incoming {
    id: String,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
    size: u64,
    failed: bool,
}

impl Incoming {
    fn write(&mut self, b: &[u8]) {
        self.size += b.len() as u64;
        if self.size > MAX_MESSAGE {
            self.failed = true;
        }
        if self.failed {
            return;
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(b).is_err() {
                self.failed = true;
            }
        }
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // Whatever did not complete leaves nothing behind. (After a
        // successful commit the temp file was renamed: this finds nothing.)
        self.file = None;
        let _ = fs::remove_file(&self.tmp);
    }
}

fn fsync_dir(p: &Path) -> std::io::Result<()> {
    File::open(p)?.sync_all()
}

/// Makes the message durable: body and envelope fsynced in `tmp/`, renamed
/// into place, folders fsynced. The envelope lands first, so a message file
/// never exists without it.
///
/// This runs on the connection's worker and blocks it for the fsyncs (a few
/// milliseconds on local disks). Acceptable for an example; a production
/// server would hand the commit to a separate thread and send the `250`
/// from there with `Connection::write`, pausing the session meanwhile.
fn commit(store: &Store, inc: &mut Incoming, envelope: &serde_json::Value) -> std::io::Result<()> {
    let f = inc
        .file
        .take()
        .ok_or_else(|| std::io::Error::other("no file"))?;
    let f = f.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    drop(f);
    let env_tmp = store.dir.join("tmp").join(format!("{}.envelope", inc.id));
    let env_final = store.dir.join("envelope").join(format!("{}.json", inc.id));
    let msg_final = store.dir.join("new").join(format!("{}.eml", inc.id));
    let res = (|| {
        let mut e = File::create(&env_tmp)?;
        e.write_all(serde_json::to_string_pretty(envelope)?.as_bytes())?;
        e.sync_all()?;
        fs::rename(&env_tmp, &env_final)?;
        fsync_dir(&store.dir.join("envelope"))?;
        fs::rename(&inc.tmp, &msg_final)?;
        fsync_dir(&store.dir.join("new"))?;
        fsync_dir(&store.dir.join("tmp"))
    })();
    if res.is_err() {
        let _ = fs::remove_file(&env_tmp);
        let _ = fs::remove_file(&env_final);
        let _ = fs::remove_file(&msg_final);
    }
    res
}

// ---- the session --------------------------------------------------------------

struct Shared {
    store: Store,
    tls: Arc<ServerConfig>,
    require_tls: bool,
    max_line: usize,
    draining: AtomicBool,
    /// Open sessions, so that shutdown can reach them.
    sessions: Mutex<HashMap<ConnId, Connection>>,
    closed: crossbeam_channel::Sender<()>,
}

struct Session {
    sh: Arc<Shared>,
    peer: Option<SocketAddr>,
    tls: bool,
    helo: Option<String>,
    mail_from: Option<String>,
    rcpts: Vec<String>,
    data: Option<Incoming>,
    /// Shutting down: the last reply is sent, the session half-closed.
    stopped: bool,
}

enum Verb<'a> {
    Helo(&'a str),
    Ehlo(&'a str),
    Mail(&'a str),
    Rcpt(&'a str),
    Data(&'a str),
    Rset(&'a str),
    Noop,
    Quit,
    StartTls(&'a str),
    NotImplemented,
    Unknown,
}

fn parse_verb(line: &str) -> Verb<'_> {
    let (verb, arg) = match line.find(' ') {
        Some(i) => (&line[..i], line[i + 1..].trim()),
        None => (line, ""),
    };
    match verb.to_ascii_uppercase().as_str() {
        "HELO" => Verb::Helo(arg),
        "EHLO" => Verb::Ehlo(arg),
        "MAIL" => Verb::Mail(arg),
        "RCPT" => Verb::Rcpt(arg),
        "DATA" => Verb::Data(arg),
        "RSET" => Verb::Rset(arg),
        "NOOP" => Verb::Noop,
        "QUIT" => Verb::Quit,
        "STARTTLS" => Verb::StartTls(arg),
        "VRFY" | "EXPN" | "HELP" | "TURN" | "ETRN" | "BDAT" | "AUTH" | "SEND" | "SOML" | "SAML" => {
            Verb::NotImplemented
        }
        _ => Verb::Unknown,
    }
}

/// `FROM:<path> params` / `TO:<path> params` → the path (without brackets).
fn parse_path<'a>(arg: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let (path, params) = (&rest[..end], rest[end + 1..].trim());
    if path.len() > 256 || path.chars().any(|c| c.is_control() || c == ' ') {
        return None;
    }
    Some((path, params))
}

impl Session {
    fn reply(&self, ctx: &mut Ctx<'_>, text: &str) {
        let _ = ctx.write(format!("{text}\r\n"));
    }

    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.rcpts.clear();
        self.data = None; // removes its temp file
    }

    fn close_with(&mut self, ctx: &mut Ctx<'_>, text: &str) {
        // Drop an unfinished transaction (and its temp file) before the
        // client can see the reply.
        self.reset_transaction();
        if self.stopped {
            return ctx.close();
        }
        self.reply(ctx, text);
        if self.sh.draining.load(Ordering::Acquire) {
            // Shutting down: half-close after the reply and drop what the
            // client still sends (a close with unread input would be a
            // reset); closed at the client's FIN or after the grace period.
            self.stopped = true;
            graceful::stop(ctx);
        } else {
            ctx.close();
        }
    }

    fn command(&mut self, ctx: &mut Ctx<'_>, raw: &[u8]) {
        if self.sh.draining.load(Ordering::Acquire) {
            return self.close_with(ctx, "421 4.3.2 Service shutting down");
        }
        let Ok(line) = std::str::from_utf8(raw) else {
            return self.reply(ctx, "500 5.5.2 Syntax error, command unrecognized");
        };
        // MAIL, RCPT and DATA need TLS first with --require-tls (530 wins over 503).
        let needs_tls = matches!(
            parse_verb(line),
            Verb::Mail(_) | Verb::Rcpt(_) | Verb::Data(_)
        );
        if needs_tls && self.sh.require_tls && !self.tls {
            return self.reply(ctx, "530 5.7.0 Must issue a STARTTLS command first");
        }
        match parse_verb(line) {
            Verb::Ehlo(domain) | Verb::Helo(domain) if domain.is_empty() => {
                self.reply(ctx, "501 5.5.4 Syntax: EHLO/HELO domain")
            }
            Verb::Ehlo(domain) => {
                self.reset_transaction();
                self.helo = Some(domain.to_string());
                let mut ext = vec![
                    format!("{HOST} Hello {domain}"),
                    "PIPELINING".to_string(),
                    "8BITMIME".to_string(),
                    format!("SIZE {MAX_MESSAGE}"),
                    "ENHANCEDSTATUSCODES".to_string(),
                ];
                if !self.tls {
                    ext.push("STARTTLS".to_string());
                }
                let n = ext.len();
                let text: String = ext
                    .iter()
                    .enumerate()
                    .map(|(i, e)| format!("250{}{e}\r\n", if i + 1 == n { ' ' } else { '-' }))
                    .collect();
                let _ = ctx.write(text);
            }
            Verb::Helo(domain) => {
                self.reset_transaction();
                self.helo = Some(domain.to_string());
                self.reply(ctx, &format!("250 {HOST}"));
            }
            Verb::StartTls(arg) => {
                if self.tls {
                    self.reply(ctx, "503 5.5.1 TLS already active")
                } else if !arg.is_empty() {
                    self.reply(ctx, "501 5.5.4 Syntax: STARTTLS")
                } else {
                    self.reply(ctx, "220 2.0.0 Ready to start TLS");
                    // Same handler call: whatever the client pipelined behind
                    // STARTTLS goes to the TLS engine, never to us.
                    ctx.starttls(TlsSetup::server(self.sh.tls.clone()));
                    self.tls = true;
                    // RFC 3207 §4.2: forget everything from before TLS.
                    self.helo = None;
                    self.reset_transaction();
                }
            }
            Verb::Mail(arg) => {
                if self.helo.is_none() {
                    return self.reply(ctx, "503 5.5.1 Send EHLO/HELO first");
                }
                if self.mail_from.is_some() {
                    return self.reply(ctx, "503 5.5.1 Nested MAIL command");
                }
                let Some((path, params)) = parse_path(arg, "FROM:") else {
                    return self.reply(ctx, "501 5.5.4 Syntax: MAIL FROM:<address>");
                };
                for p in params.split_ascii_whitespace() {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    if k.eq_ignore_ascii_case("SIZE")
                        && v.parse::<u64>().is_ok_and(|n| n > MAX_MESSAGE)
                    {
                        return self.reply(ctx, "552 5.3.4 Message size exceeds fixed limit");
                    }
                }
                self.mail_from = Some(path.to_string());
                self.reply(ctx, "250 2.1.0 Ok");
            }
            Verb::Rcpt(arg) => {
                if self.mail_from.is_none() {
                    return self.reply(ctx, "503 5.5.1 Need MAIL command first");
                }
                match parse_path(arg, "TO:") {
                    Some((path, _)) if !path.is_empty() => {
                        if self.rcpts.len() >= MAX_RCPTS {
                            return self.reply(ctx, "452 4.5.3 Too many recipients");
                        }
                        self.rcpts.push(path.to_string());
                        self.reply(ctx, "250 2.1.5 Ok");
                    }
                    _ => self.reply(ctx, "501 5.5.4 Syntax: RCPT TO:<address>"),
                }
            }
            Verb::Data(arg) => {
                if !arg.is_empty() {
                    return self.reply(ctx, "501 5.5.4 Syntax: DATA");
                }
                if self.mail_from.is_none() || self.rcpts.is_empty() {
                    return self.reply(ctx, "503 5.5.1 Need RCPT command first");
                }
                let id = self.sh.store.unique();
                let tmp = self.sh.store.dir.join("tmp").join(&id);
                match File::create(&tmp) {
                    Ok(f) => {
                        self.data = Some(Incoming {
                            id,
                            tmp,
                            file: Some(BufWriter::with_capacity(64 << 10, f)),
                            size: 0,
                            failed: false,
                        });
                        self.reply(ctx, "354 End data with <CR><LF>.<CR><LF>");
                        ctx.set_streaming(Some(SmtpCodec::body(self.sh.max_line)));
                    }
                    Err(e) => {
                        eprintln!("smtp: cannot create {}: {e}", tmp.display());
                        self.reply(ctx, "451 4.3.0 Cannot store message now");
                    }
                }
            }
            Verb::Rset(arg) if !arg.is_empty() => self.reply(ctx, "501 5.5.4 Syntax: RSET"),
            Verb::Rset(_) => {
                self.reset_transaction();
                self.reply(ctx, "250 2.0.0 Ok");
            }
            Verb::Noop => self.reply(ctx, "250 2.0.0 Ok"),
            Verb::Quit => self.close_with(ctx, "221 2.0.0 Bye"),
            Verb::NotImplemented => self.reply(ctx, "502 5.5.1 Command not implemented"),
            Verb::Unknown => self.reply(ctx, "500 5.5.2 Syntax error, command unrecognized"),
        }
    }

    fn end_of_data(&mut self, ctx: &mut Ctx<'_>) {
        let Some(mut inc) = self.data.take() else {
            return;
        };
        let reply = if inc.size > MAX_MESSAGE {
            "552 5.3.4 Message size exceeds fixed limit".to_string()
        } else if inc.failed {
            "451 4.3.0 Error writing message".to_string()
        } else {
            let envelope = serde_json::json!({
                "helo": self.helo,
                "mail_from": self.mail_from,
                "rcpt_to": self.rcpts,
                "tls": self.tls,
                "peer": self.peer.map(|p| p.to_string()),
                "size": inc.size,
                "received_at": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            });
            match commit(&self.sh.store, &mut inc, &envelope) {
                Ok(()) => format!("250 2.0.0 Ok: queued as {}", inc.id),
                Err(e) => {
                    eprintln!("smtp: storing {} failed: {e}", inc.id);
                    "451 4.3.0 Error storing message".to_string()
                }
            }
        };
        drop(inc);
        self.mail_from = None;
        self.rcpts.clear();
        self.reply(ctx, &reply);
        if self.sh.draining.load(Ordering::Acquire) {
            self.close_with(ctx, "421 4.3.2 Service shutting down");
        }
    }
}

impl Handler for Session {
    fn on_event(&mut self, ctx: &mut Ctx<'_>, event: Event) {
        match event {
            Event::Read(Frame::Other(f)) => match f.downcast::<SmtpFrame>().map(|b| *b) {
                Ok(SmtpFrame::Command(line)) => self.command(ctx, &line),
                Ok(SmtpFrame::TooLong) => self.reply(ctx, "500 5.5.2 Line too long"),
                Ok(SmtpFrame::Body(b)) => {
                    if let Some(inc) = self.data.as_mut() {
                        inc.write(&b);
                    }
                }
                Ok(SmtpFrame::EndOfData) => self.end_of_data(ctx),
                Err(_) => {}
            },
            Event::TlsEstablished => {}
            Event::Timeout(TimeoutKind::Read) => {
                self.close_with(ctx, "421 4.4.2 Idle timeout, closing connection")
            }
            // Shutdown uses the activity timer as a wake-up (see main). It
            // may arrive after the session already stopped by itself (a
            // command read after the flag went up): nothing more to do then.
            Event::Timeout(TimeoutKind::Activity) => {
                ctx.set_timeout(Inactivity::Any, None);
                let draining = self.sh.draining.load(Ordering::Acquire);
                if draining && self.data.is_none() && !self.stopped {
                    self.close_with(ctx, "421 4.3.2 Service shutting down");
                }
            }
            // A stopped session whose client did not close within the grace
            // period (graceful::stop's write-inactivity timer).
            Event::Timeout(_) if self.stopped => ctx.close(),
            Event::Eof => {
                // Mid-DATA (or anywhere): the transaction is abandoned.
                self.reset_transaction();
                ctx.close();
            }
            Event::Closed => {
                self.reset_transaction();
                self.sh.sessions.lock().remove(&ctx.id());
                let _ = self.sh.closed.send(());
            }
            // TLS failures, truncation, resets: the transaction (if any) is
            // dropped when the connection closes.
            _ => {}
        }
    }
}

// ---- main ---------------------------------------------------------------------

struct Args {
    listen: SocketAddr,
    cert: String,
    key: String,
    maildir: PathBuf,
    require_tls: bool,
    idle: Duration,
    max_line: usize,
    metrics: Option<SocketAddr>,
}

const USAGE: &str = "usage: smtp --listen ADDR --cert PEM --key PEM --maildir DIR \
[--require-tls] [--idle-timeout SECS] [--max-line BYTES] [--metrics IP:PORT]";

fn parse_args() -> Result<Args, String> {
    let (mut listen, mut cert, mut key, mut maildir) = (None, None, None, None);
    let mut require_tls = false;
    let mut idle = 300u64;
    let mut max_line = 4096usize;
    let mut metrics = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--listen" => listen = Some(val(&a)?.parse().map_err(|e| format!("--listen: {e}"))?),
            "--cert" => cert = Some(val(&a)?),
            "--key" => key = Some(val(&a)?),
            "--maildir" => maildir = Some(PathBuf::from(val(&a)?)),
            "--require-tls" => require_tls = true,
            "--idle-timeout" => {
                idle = val(&a)?
                    .parse()
                    .map_err(|e| format!("--idle-timeout: {e}"))?
            }
            "--max-line" => max_line = val(&a)?.parse().map_err(|e| format!("--max-line: {e}"))?,
            "--metrics" => metrics = Some(val(&a)?.parse().map_err(|e| format!("--metrics: {e}"))?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if idle == 0 || max_line < 64 {
        return Err("--idle-timeout must be > 0 and --max-line >= 64".into());
    }
    Ok(Args {
        listen: listen.ok_or(format!("--listen is required\n{USAGE}"))?,
        cert: cert.ok_or(format!("--cert is required\n{USAGE}"))?,
        key: key.ok_or(format!("--key is required\n{USAGE}"))?,
        maildir: maildir.ok_or(format!("--maildir is required\n{USAGE}"))?,
        require_tls,
        idle: Duration::from_secs(idle),
        max_line,
        metrics,
    })
}

fn main() -> ExitCode {
    env_logger::init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("smtp: {e}");
            return ExitCode::from(2);
        }
    };
    let mut signals = match graceful::termination_signals("smtp") {
        Ok(s) => s,
        Err(code) => return code,
    };
    // The TLS configuration is built once and shared by every STARTTLS.
    let tls = match ServerBuilder::from_pem_files(&args.cert, &args.key).and_then(|b| b.build()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("smtp: {e}");
            return ExitCode::from(1);
        }
    };
    let store = match Store::new(args.maildir.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("smtp: cannot use --maildir {}: {e}", args.maildir.display());
            return ExitCode::from(1);
        }
    };
    let reactor = match Reactor::builder()
        .shutdown_timeout(Duration::from_secs(1))
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("smtp: cannot start reactor: {e}");
            return ExitCode::from(1);
        }
    };
    let (closed_tx, closed_rx) = crossbeam_channel::unbounded();
    let sh = Arc::new(Shared {
        store,
        tls,
        require_tls: args.require_tls,
        max_line: args.max_line,
        draining: AtomicBool::new(false),
        sessions: Mutex::new(HashMap::new()),
        closed: closed_tx,
    });
    let opts = Options::new()
        .no_delay(true)
        // A client that pipelines commands without reading the replies is
        // held back by TCP flow control instead of filling the write queue
        // (where replies past wbuf_max would be lost).
        .pause_reading_above(Some(1 << 20))
        .read_timeout(Some(args.idle))
        .linger(Duration::from_secs(5));
    let sh2 = sh.clone();
    let listener = match reactor.listen_with(
        args.listen,
        ListenOptions::new().options(opts),
        move |ctx| {
            sh2.sessions.lock().insert(ctx.id(), ctx.connection());
            ctx.set_streaming(Some(SmtpCodec::commands(sh2.max_line)));
            let _ = ctx.write(format!("220 {HOST} ESMTP ready\r\n"));
            Session {
                sh: sh2.clone(),
                peer: ctx.peer_addr(),
                tls: false,
                helo: None,
                mail_from: None,
                rcpts: Vec::new(),
                data: None,
                stopped: false,
            }
        },
    ) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("smtp: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    println!("listening on {}", listener.local_addr());
    let Ok(endpoint) = metrics::serve_option("smtp", args.metrics, reactor.metrics_handle()) else {
        return ExitCode::from(1);
    };
    let _ = std::io::stdout().flush();
    if let Some(sig) = signals.forever().next() {
        log::info!("signal {sig}: shutting down");
    }
    // Stop accepting at once, then ask every session to wind down: the
    // activity timer (unused otherwise), set to fire immediately, wakes each handler
    // on its own worker; idle ones answer 421 and close, a DATA under way
    // finishes first.
    drop(listener);
    sh.draining.store(true, Ordering::Release);
    let open: Vec<Connection> = sh.sessions.lock().values().cloned().collect();
    for c in &open {
        let _ = c.set_timeout(Inactivity::Any, Some(Duration::from_nanos(1)));
    }
    drop(open);
    let deadline = Instant::now() + Duration::from_secs(7);
    while !sh.sessions.lock().is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || closed_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    reactor.shutdown();
    if let Some(e) = endpoint {
        e.shutdown();
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(codec: &mut SmtpCodec, input: &[u8]) -> Vec<String> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Ok(Some(f)) = codec.decode(&mut buf, false) {
            out.push(match f {
                SmtpFrame::Command(l) => format!("C:{}", String::from_utf8_lossy(&l)),
                SmtpFrame::TooLong => "LONG".into(),
                SmtpFrame::Body(b) => format!("B:{}", String::from_utf8_lossy(&b)),
                SmtpFrame::EndOfData => "END".into(),
            });
        }
        out
    }

    #[test]
    fn commands_and_long_lines() {
        let mut c = SmtpCodec::commands(8);
        assert_eq!(
            run(&mut c, b"NOOP\r\n12345678\r\n123456789\r\nQUIT\n"),
            ["C:NOOP", "C:12345678", "LONG", "C:QUIT"]
        );
        let mut c = SmtpCodec::commands(8);
        let mut buf = BytesMut::from(&b"0123456789abc"[..]);
        assert!(c.decode(&mut buf, false).unwrap().is_none());
        assert!(buf.is_empty(), "an over-long line is not buffered");
        assert_eq!(run(&mut c, b"def\r\nNOOP\r\n"), ["LONG", "C:NOOP"]);
        // The end of the long line already in the same buffer.
        let mut c = SmtpCodec::commands(8);
        assert_eq!(
            run(&mut c, b"0123456789abc\r\nNOOP\r\n"),
            ["LONG", "C:NOOP"]
        );
    }

    #[test]
    fn body_unstuffing_and_end() {
        let mut c = SmtpCodec::body(100);
        let got = run(&mut c, b"a\r\n..b\r\n.c\r\n.\r\nQUIT\r\n");
        assert_eq!(got.concat(), "B:a\r\n.b\r\nc\r\nENDC:QUIT");
        // Terminator split across reads.
        let mut c = SmtpCodec::body(100);
        let mut buf = BytesMut::from(&b"x\r\n."[..]);
        assert!(matches!(
            c.decode(&mut buf, false).unwrap(),
            Some(SmtpFrame::Body(_))
        ));
        assert!(c.decode(&mut buf, false).unwrap().is_none());
        buf.extend_from_slice(b"\r");
        assert!(c.decode(&mut buf, false).unwrap().is_none());
        buf.extend_from_slice(b"\n");
        assert!(matches!(
            c.decode(&mut buf, false).unwrap(),
            Some(SmtpFrame::EndOfData)
        ));
    }
}
