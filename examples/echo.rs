//! An echo server on netactor.
//!
//! ```text
//! cargo run --release --example echo -- --listen 127.0.0.1:0 [--workers N] [--cert PEM --key PEM]
//!     [--idle-timeout SECS] [--metrics IP:PORT]
//! cargo run --release --example echo -- --listen unix:/tmp/echo.sock
//! ```
//!
//! Prints `listening on IP:PORT` once ready, echoes every byte, answers a
//! client's half-close by echoing what is pending and closing with FIN.
//! Memory stays bounded: when a client sends without reading, the server
//! stops reading once its write queue passes a high-water mark and resumes
//! when it drains. `--idle-timeout SECS` closes a connection with no
//! activity (nothing read, nothing written) for that long; off by default.
//! `--metrics IP:PORT` serves the reactor's metrics at `GET /metrics` in
//! the Prometheus text format and prints `metrics on IP:PORT` once ready,
//! after the `listening on` line (see `metrics/mod.rs`).
//!
//! SIGINT/SIGTERM: stop accepting, stop reading (what arrives from then on
//! is dropped), echo what was already read, half-close, exit 0 — a client
//! reads back an exact prefix of what it sent and then a clean EOF, never a
//! reset (see `graceful/mod.rs`).

#[path = "graceful/mod.rs"]
mod graceful;
#[path = "metrics/mod.rs"]
mod metrics;

use netactor::framing::Raw;
use netactor::{Ctx, Event, Handler, ListenOptions, Options, Reactor};
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// Stop reading while more than this is queued for the client.
const HIGH_WATER: usize = 1 << 20;
/// Resume reading when the queue falls to this.
const LOW_WATER: usize = 256 << 10;

struct Echo {
    /// A frame the write queue refused; sent before anything else is read.
    held: Option<bytes::Bytes>,
}

impl Handler for Echo {
    fn on_event(&mut self, ctx: &mut Ctx<'_>, event: Event) {
        match event {
            Event::Read(frame) => {
                let Some(data) = frame.into_bytes() else {
                    return;
                };
                self.send(ctx, data);
            }
            Event::Drain => {
                if let Some(data) = self.held.take() {
                    self.send(ctx, data);
                }
                if self.held.is_none() {
                    ctx.start_read();
                }
            }
            Event::Eof => {
                // Half-close: echo what is pending, then FIN.
                let _ = ctx.shutdown();
            }
            // Idle for --idle-timeout, or stopped on SIGTERM and the client
            // did not close within the grace period.
            Event::Timeout(_) => ctx.close(),
            _ => {}
        }
    }
}

impl Echo {
    fn send(&mut self, ctx: &mut Ctx<'_>, data: bytes::Bytes) {
        // Checked first, so a refused frame is kept rather than lost (and
        // the common case moves `data` into the write, with no clone).
        if data.len() > ctx.write_room() {
            self.held = Some(data);
            ctx.stop_read();
            return;
        }
        match ctx.write(data) {
            Ok(()) => {
                if ctx.write_queued() > HIGH_WATER {
                    ctx.stop_read();
                }
            }
            Err(_) => ctx.close(),
        }
    }
}

/// `--listen IP:PORT`, or `--listen unix:PATH` (a Unix-domain socket;
/// `unix:@name` is Linux's abstract namespace).
enum ListenAt {
    Tcp(SocketAddr),
    Unix(std::path::PathBuf),
}

impl std::fmt::Display for ListenAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAt::Tcp(a) => write!(f, "{a}"),
            ListenAt::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

struct Args {
    listen: ListenAt,
    workers: Option<usize>,
    cert: Option<String>,
    key: Option<String>,
    dedicated_poller: bool,
    spin_us: u64,
    idle: Option<Duration>,
    metrics: Option<SocketAddr>,
}

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut workers = None;
    let mut cert = None;
    let mut key = None;
    let mut dedicated_poller = false;
    let mut spin_us = 0;
    let mut idle = None;
    let mut metrics = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--listen" => {
                let v = val("--listen")?;
                listen = Some(match v.strip_prefix("unix:") {
                    Some(path) if !path.is_empty() => ListenAt::Unix(path.into()),
                    Some(_) => return Err("--listen unix: needs a path".into()),
                    None => ListenAt::Tcp(v.parse().map_err(|e| format!("--listen: {e}"))?),
                })
            }
            "--workers" => {
                workers = Some(
                    val("--workers")?
                        .parse()
                        .map_err(|e| format!("--workers: {e}"))?,
                )
            }
            "--cert" => cert = Some(val("--cert")?),
            "--key" => key = Some(val("--key")?),
            // Tuning knobs for benchmarks (see ARCHITECTURE.md, "Performance").
            "--dedicated-poller" => dedicated_poller = true,
            "--spin-us" => {
                spin_us = val("--spin-us")?
                    .parse()
                    .map_err(|e| format!("--spin-us: {e}"))?
            }
            "--idle-timeout" => {
                let secs: u64 = val("--idle-timeout")?
                    .parse()
                    .map_err(|e| format!("--idle-timeout: {e}"))?;
                if secs == 0 {
                    return Err("--idle-timeout must be > 0".into());
                }
                idle = Some(Duration::from_secs(secs));
            }
            "--metrics" => {
                metrics = Some(
                    val("--metrics")?
                        .parse()
                        .map_err(|e| format!("--metrics: {e}"))?,
                )
            }
            "-h" | "--help" => {
                return Err("usage: echo --listen IP:PORT|unix:PATH [--workers N] \
                     [--cert PEM --key PEM] [--idle-timeout SECS] [--metrics IP:PORT]"
                    .into())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if cert.is_some() != key.is_some() {
        return Err("--cert and --key go together".into());
    }
    Ok(Args {
        listen: listen.ok_or("--listen ADDR is required")?,
        workers,
        cert,
        key,
        dedicated_poller,
        spin_us,
        idle,
        metrics,
    })
}

fn main() -> ExitCode {
    env_logger::init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo: {e}");
            return ExitCode::from(2);
        }
    };
    // Register signals before announcing readiness, so a signal sent right
    // after the `listening on` line is never missed.
    let mut signals = match graceful::termination_signals("echo") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut builder = Reactor::builder()
        .shutdown_timeout(Duration::from_secs(2))
        .dedicated_poller(args.dedicated_poller)
        .spin(Duration::from_micros(args.spin_us));
    if let Some(n) = args.workers {
        builder = builder.workers(n);
    }
    let reactor = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("echo: cannot start reactor: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = Options::new()
        .no_delay(true)
        .low_water_mark(Some(LOW_WATER))
        .timeout(args.idle)
        .linger(Duration::from_secs(5));
    let mut lo = ListenOptions::new().options(opts);
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        match netactor::tls::ServerBuilder::from_pem_files(cert, key).and_then(|b| b.build()) {
            Ok(cfg) => lo = lo.tls(cfg),
            Err(e) => {
                eprintln!("echo: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let factory = |ctx: &mut netactor::Ctx<'_>| {
        ctx.set_streaming(Some(Raw));
        Echo { held: None }
    };
    let listening = match &args.listen {
        ListenAt::Tcp(addr) => reactor.listen_with(*addr, lo, factory),
        ListenAt::Unix(path) => reactor.listen_unix_with(path, lo, factory),
    };
    let listener = match listening {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    match &args.listen {
        ListenAt::Tcp(_) => println!("listening on {}", listener.local_addr()),
        ListenAt::Unix(path) => println!("listening on unix:{}", path.display()),
    }
    let Ok(endpoint) = metrics::serve_option("echo", args.metrics, reactor.metrics_handle()) else {
        return ExitCode::from(1);
    };
    let _ = std::io::stdout().flush();
    if let Some(sig) = signals.forever().next() {
        log::info!("signal {sig}: shutting down");
    }
    drop(listener);
    // Within the contract's 10 s: up to 6 s for connections to finish, then
    // at most the reactor's 2 s shutdown timeout for any left.
    graceful::stop_all(&reactor, Duration::from_secs(6));
    reactor.shutdown();
    if let Some(e) = endpoint {
        e.shutdown();
    }
    ExitCode::SUCCESS
}
