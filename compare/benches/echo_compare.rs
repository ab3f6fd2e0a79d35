//! netactor's echo beside its competitors, in one run, with ratios.
//!
//! ```text
//! cargo bench -p netactor-compare --bench echo_compare              # full: 3 rounds, ~10 min on 2 cores
//! cargo bench -p netactor-compare --bench echo_compare -- --quick   # 1 round, short windows, ~2 min
//! cargo bench -p netactor-compare --bench echo_compare -- --only many,bulk --servers netactor,tokio,mio
//! ```
//!
//! The driver first builds the server examples (`cargo build --release
//! --example echo --example peer_…`, skip with `--no-build`), then for every
//! scenario runs every server in turn (netactor, tokio, mio, thread, may),
//! round after round — interleaved, so a noisy neighbour hits all of them
//! alike. Each measurement gets a fresh server process; its CPU time and RSS
//! come from /proc. One load generator (in this process, see `loadgen.rs`)
//! drives them all. Results: tables on stdout and in
//! `target/echo_compare.md`. See `benches/README.md`.

#[path = "echo_compare/host.rs"]
mod host;
#[path = "echo_compare/loadgen.rs"]
mod loadgen;
#[path = "echo_compare/report.rs"]
mod report;
#[path = "echo_compare/server.rs"]
mod server;

use host::{
    build_examples, crypto_of, examples_dir, loadavg, output_paths, publish, raise_nofile,
    report_header, snapshot_binaries, TempDir,
};
use loadgen::{Churn, Flow, Idle, Latency, Measured, Window};
use report::{ratio, si, stats, Table};
use server::{Kind, Server, TlsFiles};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: cargo bench -p netactor-compare --bench echo_compare -- [--quick] [--only SCENARIOS] \
[--servers SERVERS] [--rounds N] [--secs S] [--lg-threads N] [--idle-conns N] [--no-build]
  SCENARIOS: latency,many,bulk,tls,idle,idle-tls,scale,churn,tls-churn (or one scale point: scale-10, scale-100, scale-1000, scale-10000)
  SERVERS: netactor,tokio,mio,thread,may";

/// A scenario (scale points are separate scenarios internally).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Scen {
    Latency,
    Many,
    Bulk,
    Tls,
    Idle,
    /// Idle connections, each after a TLS handshake.
    IdleTls,
    Scale(usize),
    /// Connect → 64 B echo → close, 64 at a time (plain and TLS).
    Churn,
    TlsChurn,
}

const MANY: Flow = Flow {
    conns: 100,
    size: 64,
    inflight: 16,
    tls: None,
};
const BULK: Flow = Flow {
    conns: 10,
    size: 16 << 10,
    inflight: 4,
    tls: None,
};
const TLS_CONNS: usize = 100;
const TLS_SIZE: usize = 1024;
const TLS_INFLIGHT: usize = 4;
const LATENCY_SIZE: usize = 64;
const IDLE_MSG: usize = 16;
/// Churn: connections open at once per server, and the one message each echoes.
const CHURN_SLOTS: usize = 64;
const CHURN_SIZE: usize = 64;

impl Scen {
    fn title(self) -> String {
        match self {
            Scen::Latency => "1. latency: 1 connection, 64 B ping-pong".into(),
            Scen::Many => "2. many small messages: 100 connections × 64 B × 16 in flight".into(),
            Scen::Bulk => "3. bulk: 10 connections × 16 KiB × 4 in flight".into(),
            Scen::Tls => {
                "4. TLS: 100 connections × 1 KiB × 4 in flight (TLS 1.3, aws-lc-rs)".into()
            }
            Scen::Idle => "5. idle connections: server RSS growth per connection".into(),
            Scen::IdleTls => {
                "5b. idle TLS connections: server RSS growth per connection (TLS 1.3, aws-lc-rs)"
                    .into()
            }
            Scen::Scale(n) => format!("6. scale: {n} connections × 64 B × 16 in flight"),
            Scen::Churn => format!(
                "7. churn: {CHURN_SLOTS} slots × (connect, {CHURN_SIZE} B echo, close) — connections"
            ),
            Scen::TlsChurn => format!(
                "8. TLS churn: {CHURN_SLOTS} slots × (connect, full TLS 1.3 handshake, {CHURN_SIZE} B echo, close) — connections"
            ),
        }
    }
    fn short(self) -> String {
        match self {
            Scen::Latency => "latency".into(),
            Scen::Many => "many".into(),
            Scen::Bulk => "bulk".into(),
            Scen::Tls => "tls".into(),
            Scen::Idle => "idle".into(),
            Scen::IdleTls => "idle-tls".into(),
            Scen::Scale(n) => format!("scale-{n}"),
            Scen::Churn => "churn".into(),
            Scen::TlsChurn => "tls-churn".into(),
        }
    }
}

struct Config {
    quick: bool,
    rounds: usize,
    window: Window,
    lg_threads: usize,
    servers: Vec<Kind>,
    scens: Vec<Scen>,
    build: bool,
    idle_conns: usize,
    command: String,
    /// Open-files limit after raising it.
    nofile: u64,
}

fn parse_args() -> Result<Config, String> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut quick = false;
    let mut only: Option<String> = None;
    let mut servers: Option<String> = None;
    let mut rounds = None;
    let mut secs = None;
    let mut lg_threads = 2;
    let mut idle_conns = 10_000;
    let mut build = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |f: &str| it.next().cloned().ok_or(format!("{f} needs a value"));
        let num = |f: &str, v: String| v.parse::<f64>().map_err(|e| format!("{f}: {e}"));
        match a.as_str() {
            "--quick" => quick = true,
            "--only" => only = Some(val("--only")?),
            "--servers" => servers = Some(val("--servers")?),
            "--rounds" => rounds = Some(num("--rounds", val("--rounds")?)? as usize),
            "--secs" => secs = Some(num("--secs", val("--secs")?)?),
            "--lg-threads" => lg_threads = num("--lg-threads", val("--lg-threads")?)? as usize,
            "--idle-conns" => idle_conns = num("--idle-conns", val("--idle-conns")?)? as usize,
            "--no-build" => build = false,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let rounds = rounds.unwrap_or(if quick { 1 } else { 3 }).max(1);
    let secs = secs.unwrap_or(if quick { 1.0 } else { 3.0 });
    if !(secs > 0.0 && secs < 600.0) {
        return Err("--secs must be in (0, 600)".into());
    }
    let window = Window {
        warmup: Duration::from_secs_f64(if quick { 0.3 } else { 0.5 }),
        measure: Duration::from_secs_f64(secs),
        setup_timeout: Duration::from_secs(30),
    };
    let servers = match servers {
        None => Kind::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .map(|s| Kind::parse(s.trim()).ok_or(format!("unknown server {s}")))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let names: Vec<String> = match only {
        None => [
            "latency",
            "many",
            "bulk",
            "tls",
            "idle",
            "idle-tls",
            "scale",
            "churn",
            "tls-churn",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
    };
    let mut scens = Vec::new();
    for n in &names {
        match n.as_str() {
            "latency" => scens.push(Scen::Latency),
            "many" => scens.push(Scen::Many),
            "bulk" => scens.push(Scen::Bulk),
            "tls" => scens.push(Scen::Tls),
            "idle" => scens.push(Scen::Idle),
            "idle-tls" => scens.push(Scen::IdleTls),
            "churn" => scens.push(Scen::Churn),
            "tls-churn" => scens.push(Scen::TlsChurn),
            "scale" => {
                // Its own 100-connection point (the same load as "many"),
                // measured beside the 10- and 1 000-connection points.
                for c in [10, 100, 1000, 10_000] {
                    scens.push(Scen::Scale(c));
                }
            }
            // One scale point alone, e.g. `scale-10000` (for profiling).
            other => match other.strip_prefix("scale-").map(str::parse::<usize>) {
                Some(Ok(c)) if [10, 100, 1000, 10_000].contains(&c) => scens.push(Scen::Scale(c)),
                _ => return Err(format!("unknown scenario {other}")),
            },
        }
    }
    let mut command = String::from("cargo bench -p netactor-compare --bench echo_compare");
    if !args.is_empty() {
        command.push_str(" -- ");
        command.push_str(&args.join(" "));
    }
    Ok(Config {
        quick,
        rounds,
        window,
        lg_threads: lg_threads.max(1),
        servers,
        scens,
        build,
        idle_conns: idle_conns.max(1),
        command,
        nofile: 0,
    })
}

/// One measurement.
#[derive(Clone, Copy, Default)]
struct Sample {
    m: Measured,
    /// Bytes per message (to turn messages into MB).
    size: usize,
    lat: Option<Latency>,
    idle: Option<Idle>,
}

impl Sample {
    fn msgs_per_sec(&self) -> f64 {
        self.m.msgs as f64 / self.m.secs.max(1e-9)
    }
    fn mb_per_sec(&self) -> f64 {
        self.msgs_per_sec() * self.size as f64 / 1e6
    }
    /// Messages per server CPU-second.
    fn msgs_per_cpu(&self) -> f64 {
        self.m.msgs as f64 / self.m.server_cpu.max(1e-3)
    }
    fn server_cores(&self) -> f64 {
        self.m.server_cpu / self.m.secs.max(1e-9)
    }
    fn lg_cores(&self) -> f64 {
        self.m.lg_cpu / self.m.secs.max(1e-9)
    }
}

type Results = BTreeMap<(Scen, Kind), Vec<Result<Sample, String>>>;

fn measure(
    cfg: &Config,
    dir: &Path,
    log: &Path,
    kind: Kind,
    scen: Scen,
    tls: Option<&(TlsFiles, Arc<rustls::ClientConfig>)>,
) -> std::io::Result<Sample> {
    let files = if uses_tls(scen) {
        tls.map(|t| &t.0)
    } else {
        None
    };
    let mut server = Server::spawn(dir, kind, files, log, Duration::from_secs(10))?;
    let flow = |f: Flow| -> std::io::Result<Sample> {
        let m = loadgen::run_flows(
            &[&server],
            &f,
            cfg.window,
            cfg.lg_threads,
            cfg.window.measure,
        )
        .pop()
        .unwrap_or_else(|| Err(std::io::Error::other("no result")))?;
        Ok(Sample {
            m,
            size: f.size,
            ..Sample::default()
        })
    };
    let s = match scen {
        Scen::Latency => unreachable!("latency runs all servers at once"),
        Scen::Many | Scen::Bulk | Scen::Tls | Scen::Scale(_) => {
            flow(flow_of(scen, tls).expect("a throughput scenario"))?
        }
        Scen::Churn | Scen::TlsChurn => {
            let c = churn_of(scen, tls).expect("a churn scenario");
            let m = loadgen::run_churn(
                &[&server],
                &c,
                cfg.window,
                cfg.lg_threads,
                cfg.window.measure,
            )
            .pop()
            .unwrap_or_else(|| Err(std::io::Error::other("no result")))?;
            Sample {
                m,
                size: c.size,
                ..Sample::default()
            }
        }
        Scen::Idle => {
            let i = loadgen::run_idle(&server, cfg.idle_conns, IDLE_MSG, Duration::from_secs(60))?;
            Sample {
                size: IDLE_MSG,
                idle: Some(i),
                ..Sample::default()
            }
        }
        Scen::IdleTls => {
            let client = tls
                .map(|t| t.1.clone())
                .ok_or_else(|| std::io::Error::other("no TLS client configuration"))?;
            let i = loadgen::run_idle_tls(
                &server,
                cfg.idle_conns,
                IDLE_MSG,
                client,
                Duration::from_secs(120),
            )?;
            Sample {
                size: IDLE_MSG,
                idle: Some(i),
                ..Sample::default()
            }
        }
    };
    server.check_alive()?;
    Ok(s)
}

/// Turn length of the finely interleaved latency scenario.
const LATENCY_TURN: Duration = Duration::from_millis(50);
/// Turn length of the finely interleaved throughput scenarios.
const FLOW_TURN: Duration = Duration::from_millis(100);

/// The closed-loop load of a throughput scenario.
fn flow_of(scen: Scen, tls: Option<&(TlsFiles, Arc<rustls::ClientConfig>)>) -> Option<Flow> {
    match scen {
        Scen::Many => Some(MANY),
        Scen::Bulk => Some(BULK),
        Scen::Tls => Some(Flow {
            conns: TLS_CONNS,
            size: TLS_SIZE,
            inflight: TLS_INFLIGHT,
            tls: tls.map(|t| t.1.clone()),
        }),
        Scen::Scale(n) => Some(Flow { conns: n, ..MANY }),
        Scen::Latency | Scen::Idle | Scen::IdleTls | Scen::Churn | Scen::TlsChurn => None,
    }
}

/// Whether a scenario's servers serve TLS.
fn uses_tls(scen: Scen) -> bool {
    matches!(scen, Scen::Tls | Scen::IdleTls | Scen::TlsChurn)
}

/// The load of a churn scenario (TLS: the churn client's own configuration,
/// made once from the driver's certificate).
fn churn_of(scen: Scen, tls: Option<&(TlsFiles, Arc<rustls::ClientConfig>)>) -> Option<Churn> {
    static CLIENT: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>> =
        std::sync::OnceLock::new();
    let tls = match scen {
        Scen::Churn => None,
        Scen::TlsChurn => {
            let files = &tls?.0;
            let c = CLIENT.get_or_init(|| {
                let pem = std::fs::read(&files.cert).map_err(|e| e.to_string())?;
                loadgen::churn_client_config(&pem)
            });
            Some(c.as_ref().ok()?.clone())
        }
        _ => return None,
    };
    Some(Churn {
        slots: CHURN_SLOTS,
        size: CHURN_SIZE,
        tls,
    })
}

/// Whether a scenario runs every server at once, the load taking turns:
/// latency always; throughput when the connections to all servers fit in
/// the open-files limit (not 10 000 × 5); idle never (it measures memory).
fn grouped(cfg: &Config, scen: Scen) -> bool {
    match scen {
        Scen::Latency => true,
        Scen::Idle | Scen::IdleTls => false,
        Scen::Churn | Scen::TlsChurn => {
            (CHURN_SLOTS * cfg.servers.len() + 256) as u64 <= cfg.nofile && cfg.servers.len() > 1
        }
        _ => flow_of(scen, None).is_some_and(|f| {
            (f.conns * cfg.servers.len() + 256) as u64 <= cfg.nofile && cfg.servers.len() > 1
        }),
    }
}

/// One round of a grouped scenario: every server up at once, and the load
/// (the ping-pong client, or the closed-loop flow) takes short turns on
/// each, so all of them see the same background load (see `loadgen`).
fn group_round(
    cfg: &Config,
    dir: &Path,
    log: &Path,
    scen: Scen,
    tls: Option<&(TlsFiles, Arc<rustls::ClientConfig>)>,
) -> Vec<(Kind, Result<Sample, String>)> {
    let files = if uses_tls(scen) {
        tls.map(|t| &t.0)
    } else {
        None
    };
    let spawned: Vec<(Kind, std::io::Result<Server>)> = cfg
        .servers
        .iter()
        .map(|&k| {
            (
                k,
                Server::spawn(dir, k, files, log, Duration::from_secs(10)),
            )
        })
        .collect();
    let live: Vec<&Server> = spawned
        .iter()
        .filter_map(|(_, s)| s.as_ref().ok())
        .collect();
    let churn = churn_of(scen, tls);
    let measured: Vec<std::io::Result<Sample>> = match flow_of(scen, tls) {
        None if matches!(scen, Scen::Churn | Scen::TlsChurn) => match churn {
            Some(c) => loadgen::run_churn(&live, &c, cfg.window, cfg.lg_threads, FLOW_TURN)
                .into_iter()
                .map(|r| {
                    r.map(|m| Sample {
                        m,
                        size: c.size,
                        ..Sample::default()
                    })
                })
                .collect(),
            None => live
                .iter()
                .map(|_| Err(std::io::Error::other("no TLS client configuration")))
                .collect(),
        },
        None => loadgen::run_latency(&live, LATENCY_SIZE, cfg.window, LATENCY_TURN)
            .into_iter()
            .map(|r| {
                r.map(|(m, l)| Sample {
                    m,
                    size: LATENCY_SIZE,
                    lat: Some(l),
                    ..Sample::default()
                })
            })
            .collect(),
        Some(f) => loadgen::run_flows(&live, &f, cfg.window, cfg.lg_threads, FLOW_TURN)
            .into_iter()
            .map(|r| {
                r.map(|m| Sample {
                    m,
                    size: f.size,
                    ..Sample::default()
                })
            })
            .collect(),
    };
    let mut measured = measured.into_iter();
    let mut out = Vec::new();
    for (k, s) in spawned {
        let r = match s {
            Err(e) => Err(e.to_string()),
            Ok(mut server) => match measured.next() {
                Some(Ok(sample)) => server
                    .check_alive()
                    .map_err(|e| e.to_string())
                    .map(|()| sample),
                Some(Err(e)) => Err(e.to_string()),
                None => Err("no result".into()),
            },
        };
        out.push((k, r));
    }
    out
}

fn describe(scen: Scen, s: &Sample, n_idle: usize) -> String {
    match scen {
        Scen::Idle | Scen::IdleTls => {
            let i = s.idle.unwrap_or_default();
            format!(
                "{:.0} B/conn idle, {:.0} B/conn after echo, {}/{} verified",
                i.rss_per_conn, i.rss_per_conn_after, i.verified, n_idle
            )
        }
        Scen::Latency => {
            let l = s.lat.unwrap_or_default();
            format!(
                "p50 {:.1} µs, p99 {:.1} µs, {} msgs/s, server {:.2} cores, LG {:.2} cores",
                l.p50,
                l.p99,
                si(s.msgs_per_sec()),
                s.server_cores(),
                s.lg_cores()
            )
        }
        Scen::Churn | Scen::TlsChurn => format!(
            "{} conns/s, {} conns/server-CPU-s, server {:.2} cores, LG {:.2} cores",
            si(s.msgs_per_sec()),
            si(s.msgs_per_cpu()),
            s.server_cores(),
            s.lg_cores()
        ),
        _ => format!(
            "{} msgs/s ({:.0} MB/s), {} msgs/server-CPU-s, server {:.2} cores, LG {:.2} cores",
            si(s.msgs_per_sec()),
            s.mb_per_sec(),
            si(s.msgs_per_cpu()),
            s.server_cores(),
            s.lg_cores()
        ),
    }
}

/// The successful samples of one cell.
fn ok(results: &Results, scen: Scen, kind: Kind) -> Vec<Sample> {
    results
        .get(&(scen, kind))
        .map(|v| v.iter().filter_map(|r| r.as_ref().ok().copied()).collect())
        .unwrap_or_default()
}

/// Median of `f` over the cell's samples.
fn med(results: &Results, scen: Scen, kind: Kind, f: impl Fn(&Sample) -> f64) -> Option<f64> {
    let v: Vec<f64> = ok(results, scen, kind).iter().map(f).collect();
    stats(&v).map(|s| s.0)
}

fn cell(
    results: &Results,
    scen: Scen,
    kind: Kind,
    f: impl Fn(&Sample) -> f64,
    fmt: fn(f64) -> String,
) -> (String, String) {
    let v: Vec<f64> = ok(results, scen, kind).iter().map(f).collect();
    match stats(&v) {
        Some((m, lo, hi)) => (fmt(m), format!("{}–{}", fmt(lo), fmt(hi))),
        None => (na(results, scen, kind), String::new()),
    }
}

fn na(results: &Results, scen: Scen, kind: Kind) -> String {
    match results.get(&(scen, kind)) {
        Some(v) if !v.is_empty() => "n/a*".into(),
        _ => "–".into(),
    }
}

fn us(v: f64) -> String {
    format!("{v:.1}")
}
fn f2(v: f64) -> String {
    format!("{v:.2}")
}
fn f0(v: f64) -> String {
    format!("{v:.0}")
}

fn throughput_table(results: &Results, servers: &[Kind], scen: Scen) -> String {
    let bulk = scen == Scen::Bulk;
    let (unit, per) = if bulk {
        ("MB/s", "MB / server CPU-s")
    } else {
        ("msgs/s", "msgs / server CPU-s")
    };
    let rate: fn(&Sample) -> f64 = if bulk {
        Sample::mb_per_sec
    } else {
        Sample::msgs_per_sec
    };
    let per_cpu: fn(&Sample) -> f64 = if bulk {
        |s| s.msgs_per_cpu() * s.size as f64 / 1e6
    } else {
        Sample::msgs_per_cpu
    };
    let cols = RateColumns {
        unit,
        per,
        rate,
        per_cpu,
        fmt: if bulk { f0 } else { si },
        per_range: false,
        bases: &[Kind::Tokio, Kind::Mio],
    };
    rate_table(results, servers, scen, &cols)
}

/// The columns of a [`rate_table`].
struct RateColumns {
    /// Headers of the rate and of the rate per server CPU-second.
    unit: &'static str,
    per: &'static str,
    rate: fn(&Sample) -> f64,
    per_cpu: fn(&Sample) -> f64,
    fmt: fn(f64) -> String,
    /// Whether the rate per CPU-second also gets its min–max.
    per_range: bool,
    /// The servers every row is compared with (rate, then per CPU).
    bases: &'static [Kind],
}

/// A rate (with its min–max), server cores, the rate per server CPU-second,
/// load-generator cores, then ratios to `cols.bases` of the rate and of the
/// rate per CPU-second: one row per server.
fn rate_table(results: &Results, servers: &[Kind], scen: Scen, cols: &RateColumns) -> String {
    let mut head: Vec<String> = ["server", cols.unit, "min–max", "server cores", cols.per]
        .map(String::from)
        .into();
    if cols.per_range {
        head.push("min–max".into());
    }
    head.push("LG cores".into());
    head.extend(cols.bases.iter().map(|b| format!("× {}", b.name())));
    head.extend(cols.bases.iter().map(|b| format!("× {} /CPU", b.name())));
    let mut t = Table::new(&head.iter().map(String::as_str).collect::<Vec<_>>());
    for &k in servers {
        let (m, mm) = cell(results, scen, k, cols.rate, cols.fmt);
        let (c, _) = cell(results, scen, k, Sample::server_cores, f2);
        let (p, pmm) = cell(results, scen, k, cols.per_cpu, cols.fmt);
        let (l, _) = cell(results, scen, k, Sample::lg_cores, f2);
        let r = |b: Kind, f: fn(&Sample) -> f64| {
            ratio(med(results, scen, k, f), med(results, scen, b, f))
        };
        let mut row = vec![k.name().into(), m, mm, c, p];
        if cols.per_range {
            row.push(pmm);
        }
        row.push(l);
        row.extend(cols.bases.iter().map(|&b| r(b, cols.rate)));
        row.extend(cols.bases.iter().map(|&b| r(b, cols.per_cpu)));
        t.row(row);
    }
    t.render()
}

fn latency_table(results: &Results, servers: &[Kind]) -> String {
    let scen = Scen::Latency;
    let p50 = |s: &Sample| s.lat.map_or(0.0, |l| l.p50);
    let p99 = |s: &Sample| s.lat.map_or(0.0, |l| l.p99);
    let p999 = |s: &Sample| s.lat.map_or(0.0, |l| l.p999);
    let mut t = Table::new(&[
        "server",
        "p50 µs",
        "min–max",
        "p99 µs",
        "p99.9 µs",
        "msgs/s",
        "server cores",
        "msgs / server CPU-s",
        "LG cores",
        "p50 × tokio",
        "p50 × mio",
        "/CPU × tokio",
    ]);
    for &k in servers {
        let (a, amm) = cell(results, scen, k, p50, us);
        let (b, _) = cell(results, scen, k, p99, us);
        let (c, _) = cell(results, scen, k, p999, us);
        let (r, _) = cell(results, scen, k, Sample::msgs_per_sec, si);
        let (sc, _) = cell(results, scen, k, Sample::server_cores, f2);
        let (pc, _) = cell(results, scen, k, Sample::msgs_per_cpu, si);
        let (l, _) = cell(results, scen, k, Sample::lg_cores, f2);
        t.row(vec![
            k.name().into(),
            a,
            amm,
            b,
            c,
            r,
            sc,
            pc,
            l,
            ratio(
                med(results, scen, k, p50),
                med(results, scen, Kind::Tokio, p50),
            ),
            ratio(
                med(results, scen, k, p50),
                med(results, scen, Kind::Mio, p50),
            ),
            ratio(
                med(results, scen, k, Sample::msgs_per_cpu),
                med(results, scen, Kind::Tokio, Sample::msgs_per_cpu),
            ),
        ]);
    }
    t.render()
}

fn idle_table(results: &Results, servers: &[Kind], scen: Scen, n: usize) -> String {
    let idle = |s: &Sample| s.idle.map_or(0.0, |i| i.rss_per_conn);
    let after = |s: &Sample| s.idle.map_or(0.0, |i| i.rss_per_conn_after);
    let verified = |s: &Sample| s.idle.map_or(0.0, |i| i.verified as f64);
    let mut t = Table::new(&[
        "server",
        "B / idle conn",
        "min–max",
        "B / conn after one echo",
        "verified (min)",
        "idle × tokio",
        "idle × mio",
    ]);
    for &k in servers {
        let (a, amm) = cell(results, scen, k, idle, f0);
        let (b, _) = cell(results, scen, k, after, f0);
        let v: Vec<f64> = ok(results, scen, k).iter().map(verified).collect();
        let vmin = stats(&v).map_or(na(results, scen, k), |(_, lo, _)| format!("{lo:.0} / {n}"));
        t.row(vec![
            k.name().into(),
            a,
            amm,
            b,
            vmin,
            ratio(
                med(results, scen, k, idle),
                med(results, scen, Kind::Tokio, idle),
            ),
            ratio(
                med(results, scen, k, idle),
                med(results, scen, Kind::Mio, idle),
            ),
        ]);
    }
    t.render()
}

/// Churn: connections per second and per server CPU-second, with ratios
/// against tokio, the mio loop and may.
fn churn_table(results: &Results, servers: &[Kind], scen: Scen) -> String {
    let cols = RateColumns {
        unit: "conns/s",
        per: "conns / server CPU-s",
        rate: Sample::msgs_per_sec,
        per_cpu: Sample::msgs_per_cpu,
        fmt: si,
        per_range: true,
        bases: &[Kind::Tokio, Kind::Mio, Kind::May],
    };
    rate_table(results, servers, scen, &cols)
}

/// The scale points that ran, with the scenario that holds each.
fn scale_points(results: &Results) -> Vec<(usize, Scen)> {
    let mut pts: Vec<(usize, Scen)> = results
        .keys()
        .filter_map(|&(s, _)| match s {
            Scen::Scale(n) => Some((n, s)),
            _ => None,
        })
        .collect();
    if !pts.is_empty()
        && !pts.iter().any(|p| p.0 == 100)
        && results.keys().any(|k| k.0 == Scen::Many)
    {
        pts.push((100, Scen::Many));
    }
    pts.sort();
    pts.dedup();
    pts
}

fn scale_table(results: &Results, servers: &[Kind], per_cpu: bool) -> String {
    let pts = scale_points(results);
    let f: fn(&Sample) -> f64 = if per_cpu {
        Sample::msgs_per_cpu
    } else {
        Sample::msgs_per_sec
    };
    let mut head: Vec<String> = vec!["server".into()];
    head.extend(pts.iter().map(|(n, _)| format!("{n} conns")));
    head.push("10 000 ÷ 100".into());
    head.push("× tokio @10 000".into());
    head.push("× mio @10 000".into());
    let head_ref: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut t = Table::new(&head_ref);
    let at = |n: usize| pts.iter().find(|p| p.0 == n).map(|p| p.1);
    for &k in servers {
        let mut row = vec![k.name().to_string()];
        for (_, s) in &pts {
            row.push(cell(results, *s, k, f, si).0);
        }
        let m = |n: usize, k: Kind| at(n).and_then(|s| med(results, s, k, f));
        row.push(ratio(m(10_000, k), m(100, k)));
        row.push(ratio(m(10_000, k), m(10_000, Kind::Tokio)));
        row.push(ratio(m(10_000, k), m(10_000, Kind::Mio)));
        t.row(row);
    }
    t.render()
}

/// One target: description, measured value, pass.
struct Target {
    what: String,
    got: String,
    pass: Option<bool>,
}

fn targets(results: &Results) -> Vec<Target> {
    let n = Kind::Netactor;
    let mut out = Vec::new();
    let mut ratio_target = |what: &str, scen: Scen, base: Kind, f: fn(&Sample) -> f64, min: f64| {
        let r = match (med(results, scen, n, f), med(results, scen, base, f)) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        out.push(Target {
            what: what.into(),
            got: r.map_or("not measured".into(), |r| format!("{r:.2}×")),
            pass: r.map(|r| r >= min),
        });
    };
    ratio_target(
        "many small ≥ 1.10× tokio (msgs/s)",
        Scen::Many,
        Kind::Tokio,
        Sample::msgs_per_sec,
        1.10,
    );
    ratio_target(
        "many small ≥ 1.10× tokio (per server CPU-s)",
        Scen::Many,
        Kind::Tokio,
        Sample::msgs_per_cpu,
        1.10,
    );
    ratio_target(
        "many small ≥ 0.95× mio (msgs/s)",
        Scen::Many,
        Kind::Mio,
        Sample::msgs_per_sec,
        0.95,
    );
    ratio_target(
        "many small ≥ 0.95× mio (per server CPU-s)",
        Scen::Many,
        Kind::Mio,
        Sample::msgs_per_cpu,
        0.95,
    );
    ratio_target(
        "bulk ≥ 0.90× mio (MB/s)",
        Scen::Bulk,
        Kind::Mio,
        Sample::msgs_per_sec,
        0.90,
    );
    ratio_target(
        "bulk ≥ 0.90× mio (per server CPU-s)",
        Scen::Bulk,
        Kind::Mio,
        Sample::msgs_per_cpu,
        0.90,
    );
    ratio_target(
        "TLS ≥ 1.0× tokio-rustls (msgs/s)",
        Scen::Tls,
        Kind::Tokio,
        Sample::msgs_per_sec,
        1.0,
    );
    ratio_target(
        "TLS ≥ 1.0× tokio-rustls (per server CPU-s)",
        Scen::Tls,
        Kind::Tokio,
        Sample::msgs_per_cpu,
        1.0,
    );
    ratio_target(
        "TLS ≥ 0.97× mio+rustls (per server CPU-s)",
        Scen::Tls,
        Kind::Mio,
        Sample::msgs_per_cpu,
        0.97,
    );
    ratio_target(
        "churn ≥ 0.97× mio (connections per server CPU-s)",
        Scen::Churn,
        Kind::Mio,
        Sample::msgs_per_cpu,
        0.97,
    );
    ratio_target(
        "TLS churn ≥ 0.97× mio (connections per server CPU-s)",
        Scen::TlsChurn,
        Kind::Mio,
        Sample::msgs_per_cpu,
        0.97,
    );
    // Latency: lower is better.
    let p50 = |s: &Sample| s.lat.map_or(0.0, |l| l.p50);
    let r = match (
        med(results, Scen::Latency, n, p50),
        med(results, Scen::Latency, Kind::Tokio, p50),
    ) {
        (Some(a), Some(b)) if b > 0.0 => Some((a, b)),
        _ => None,
    };
    out.push(Target {
        what: "latency p50 ≤ 1.15× tokio's".into(),
        got: r.map_or("not measured".into(), |(a, b)| {
            format!("{:.2}× ({a:.1} vs {b:.1} µs)", a / b)
        }),
        pass: r.map(|(a, b)| a / b <= 1.15),
    });
    let idle = med(results, Scen::Idle, n, |s| {
        s.idle.map_or(0.0, |i| i.rss_per_conn)
    });
    out.push(Target {
        what: "idle ≤ 1 KiB server memory per connection".into(),
        got: idle.map_or("not measured".into(), |v| format!("{v:.0} B")),
        pass: idle.map(|v| v <= 1024.0),
    });
    let idle_tls = med(results, Scen::IdleTls, n, |s| {
        s.idle.map_or(0.0, |i| i.rss_per_conn_after)
    });
    out.push(Target {
        what: "idle TLS ≤ 4 KiB server memory per connection (after one echo)".into(),
        got: idle_tls.map_or("not measured".into(), |v| format!("{v:.0} B")),
        pass: idle_tls.map(|v| v <= 4096.0),
    });
    let pts = scale_points(results);
    let at = |c: usize, f: fn(&Sample) -> f64| {
        pts.iter()
            .find(|p| p.0 == c)
            .and_then(|p| med(results, p.1, n, f))
    };
    for (label, f) in [
        ("msgs/s", Sample::msgs_per_sec as fn(&Sample) -> f64),
        ("per server CPU-s", Sample::msgs_per_cpu),
    ] {
        let r = match (at(10_000, f), at(100, f)) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        out.push(Target {
            what: format!("10 000 active conns ≥ 0.8× the 100-conn figure ({label})"),
            got: r.map_or("not measured".into(), |r| format!("{r:.2}×")),
            pass: r.map(|r| r >= 0.8),
        });
    }
    out
}

/// Is the load generator lean? Its CPU per message beside the leanest
/// server's, per scenario.
fn lg_table(results: &Results, cfg: &Config) -> String {
    let mut t = Table::new(&[
        "scenario",
        "LG cores (max)",
        "LG CPU µs / msg (median)",
        "leanest server CPU µs / msg",
        "server",
    ]);
    let mut scens: Vec<Scen> = results
        .keys()
        .map(|k| k.0)
        .filter(|s| *s != Scen::Idle)
        .collect();
    scens.dedup();
    for scen in scens {
        let all: Vec<Sample> = cfg
            .servers
            .iter()
            .flat_map(|&k| ok(results, scen, k))
            .collect();
        let lg_max = all.iter().map(Sample::lg_cores).fold(0.0, f64::max);
        let per: Vec<f64> = all
            .iter()
            .map(|s| s.m.lg_cpu * 1e6 / s.m.msgs.max(1) as f64)
            .collect();
        let lean = cfg
            .servers
            .iter()
            .filter_map(|&k| {
                med(results, scen, k, |s| {
                    s.m.server_cpu * 1e6 / s.m.msgs.max(1) as f64
                })
                .map(|v| (v, k))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0));
        t.row(vec![
            scen.short(),
            f2(lg_max),
            stats(&per).map_or("–".into(), |m| format!("{:.2}", m.0)),
            lean.map_or("–".into(), |l| format!("{:.2}", l.0)),
            lean.map_or("–".into(), |l| l.1.name().into()),
        ]);
    }
    t.render()
}

fn scen_section(results: &Results, cfg: &Config, scen: Scen) -> String {
    let mut s = format!("### {}\n\n", scen.title());
    s.push_str(&match scen {
        Scen::Latency => latency_table(results, &cfg.servers),
        Scen::Idle | Scen::IdleTls => idle_table(results, &cfg.servers, scen, cfg.idle_conns),
        Scen::Churn | Scen::TlsChurn => churn_table(results, &cfg.servers, scen),
        _ => throughput_table(results, &cfg.servers, scen),
    });
    s
}

fn errors(results: &Results) -> String {
    let mut s = String::new();
    for ((scen, kind), v) in results {
        for (round, r) in v.iter().enumerate() {
            if let Err(e) = r {
                let _ = writeln!(
                    s,
                    "- {} / {} round {}: {e}",
                    scen.short(),
                    kind.name(),
                    round + 1
                );
            }
        }
    }
    s
}

fn report(results: &Results, cfg: &Config, header: &str, elapsed: Duration) -> String {
    let mut s = String::new();
    s.push_str(header);
    let _ = writeln!(
        s,
        "- run time: {:.1} min; load average at the end: {}\n",
        elapsed.as_secs_f64() / 60.0,
        loadavg()
    );
    let mut done_scale = false;
    for &scen in &cfg.scens {
        match scen {
            Scen::Scale(_) => {
                if done_scale {
                    continue;
                }
                done_scale = true;
                s.push_str("### 6. scale: msgs/s by number of active connections (64 B × 16 in flight each)\n\n");
                s.push_str(&scale_table(results, &cfg.servers, false));
                s.push_str("\nmsgs per server CPU-second:\n\n");
                s.push_str(&scale_table(results, &cfg.servers, true));
            }
            _ => s.push_str(&scen_section(results, cfg, scen)),
        }
        s.push('\n');
    }
    s.push_str("### Load generator check\n\n");
    s.push_str(&lg_table(results, cfg));
    s.push('\n');
    s.push_str("### Targets (netactor, medians of one interleaved run)\n\n");
    let mut t = Table::new(&["target", "measured", "result"]);
    for tg in targets(results) {
        let res = match tg.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "–",
        };
        t.row(vec![tg.what, tg.got, res.into()]);
    }
    s.push_str(&t.render());
    let e = errors(results);
    if !e.is_empty() {
        s.push_str("\n\\* failed measurements:\n\n");
        s.push_str(&e);
    }
    s
}

/// Self-signed certificate for `localhost` in a fresh temp dir, plus a
/// client configuration trusting it (same provider as the servers).
fn tls_setup(dir: &Path) -> Result<(TlsFiles, Arc<rustls::ClientConfig>), String> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()])
        .map_err(|e| format!("rcgen: {e}"))?;
    let cert_pem = ck.cert.pem();
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, &cert_pem).map_err(|e| e.to_string())?;
    std::fs::write(&files.key, ck.signing_key.serialize_pem()).map_err(|e| e.to_string())?;
    let client = netactor::tls::ClientBuilder::new()
        .ca_pem(cert_pem.as_bytes())
        .and_then(|b| b.build())
        .map_err(|e| e.to_string())?;
    Ok((files, client))
}

fn main() -> ExitCode {
    let mut cfg = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("echo_compare: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let nofile = raise_nofile();
    cfg.nofile = nofile;
    let need = cfg.idle_conns.max(10_000) as u64 + 64;
    if nofile < need {
        eprintln!("warning: open-files limit {nofile} < {need}: the 10 000-connection scenarios will fail");
    }
    if cfg.build {
        if let Err(e) = build_examples(&Kind::ALL.map(Kind::example)) {
            eprintln!("echo_compare: {e}");
            return ExitCode::FAILURE;
        }
    }
    let built = examples_dir();
    for k in &cfg.servers {
        if !built.join(k.example()).exists() {
            eprintln!(
                "echo_compare: {} missing: run `cargo build --release --examples` (or drop --no-build)",
                built.join(k.example()).display()
            );
            return ExitCode::FAILURE;
        }
    }
    if cfg.scens.iter().any(|&s| uses_tls(s)) {
        // One crypto library for every server, or the TLS rows compare
        // libraries, not I/O.
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for k in &cfg.servers {
            match crypto_of(&built.join(k.example())) {
                Ok(c) => seen.push((k.example(), c)),
                Err(e) => {
                    eprintln!("echo_compare: reading {}: {e}", k.example());
                    return ExitCode::FAILURE;
                }
            }
        }
        for (e, _) in seen.iter().filter(|(_, c)| *c == "none") {
            eprintln!(
                "echo_compare: warning: cannot tell which crypto library {e} links (stripped?)"
            );
        }
        if seen.iter().any(|&(_, c)| c != seen[0].1) {
            eprintln!(
                "echo_compare: the servers link different crypto libraries ({}): the TLS rows \
                 would compare those. Rebuild with `cargo build --release --examples` at the \
                 workspace root (`-p netactor-examples` builds the examples with ring), or drop \
                 --no-build",
                seen.iter()
                    .map(|(e, c)| format!("{e}: {c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return ExitCode::FAILURE;
        }
    }
    let (log, md_path) = output_paths(&built, "echo_compare");

    let tmp = TempDir(std::env::temp_dir().join(format!("echo_compare-{}", std::process::id())));
    if let Err(e) = std::fs::create_dir_all(&tmp.0) {
        eprintln!("echo_compare: temp dir: {e}");
        return ExitCode::FAILURE;
    }
    // Run private copies: on a shared tree someone may rebuild an example
    // mid-run, and one run must compare one build of each server.
    let dir = tmp.0.join("bin");
    if let Err(e) = snapshot_binaries(
        &built,
        &dir,
        &cfg.servers.iter().map(|k| k.example()).collect::<Vec<_>>(),
    ) {
        eprintln!("echo_compare: copying the server binaries: {e}");
        return ExitCode::FAILURE;
    }
    let tls = if cfg.scens.iter().any(|&s| uses_tls(s)) {
        match tls_setup(&tmp.0) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("echo_compare: TLS setup: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };

    let mut header = report_header("echo_compare", &cfg.command);
    let _ =
        writeln!(
        header,
        "- mode: {}, {} round(s), {:.1} s measured after {:.1} s warm-up per server and scenario, \
         servers in the order {}; within a round, latency and every throughput scenario whose connections to all servers fit the open-files limit run all servers at once with the load taking turns on each (50 ms for latency, 100 ms otherwise), the rest (idle, 10 000 connections) one server after another; load generator: {} thread(s) in the driver process; \
         load average at the start: {}",
        if cfg.quick { "quick" } else { "full" },
        cfg.rounds,
        cfg.window.measure.as_secs_f64(),
        cfg.window.warmup.as_secs_f64(),
        cfg.servers.iter().map(|k| k.name()).collect::<Vec<_>>().join(", "),
        cfg.lg_threads,
        loadavg()
    );
    let _ = writeln!(
        header,
        "- every pooled server runs {} workers; thread = one OS thread per connection ({} KiB stacks); \
         ratios are of medians; \"cores\" = CPU-seconds per second of the window",
        server::WORKERS,
        server::THREAD_STACK_KIB
    );
    eprint!("{header}");

    let started = Instant::now();
    let mut results: Results = BTreeMap::new();
    let total = cfg.scens.len() * cfg.rounds * cfg.servers.len();
    let mut step = 0;
    for &scen in &cfg.scens {
        for round in 0..cfg.rounds {
            let t = Instant::now();
            let group = grouped(&cfg, scen);
            let mut lat = if group {
                group_round(&cfg, &dir, &log, scen, tls.as_ref()).into_iter()
            } else {
                Vec::new().into_iter()
            };
            for &kind in &cfg.servers {
                step += 1;
                let t = if group { t } else { Instant::now() };
                let r = match lat.next() {
                    Some((_, r)) => r,
                    None => measure(&cfg, &dir, &log, kind, scen, tls.as_ref())
                        .map_err(|e| e.to_string()),
                };
                let what = match &r {
                    Ok(s) => describe(scen, s, cfg.idle_conns),
                    Err(e) => format!("FAILED: {e}"),
                };
                eprintln!(
                    "[{step}/{total} {:>5.0}s] {} round {}/{} {:<8} {what} ({:.1}s)",
                    started.elapsed().as_secs_f64(),
                    scen.short(),
                    round + 1,
                    cfg.rounds,
                    kind.name(),
                    t.elapsed().as_secs_f64()
                );
                results.entry((scen, kind)).or_default().push(r);
            }
        }
    }
    publish(
        &report(&results, &cfg, &header, started.elapsed()),
        &md_path,
    );
    ExitCode::SUCCESS
}
