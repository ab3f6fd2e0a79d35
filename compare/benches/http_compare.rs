//! HTTP/1.1 "plaintext" (TechEmpower's test) driven by wrk: netactor's
//! `examples/http` beside may_minihttp, hyper on tokio (with and without
//! `pipeline_flush`) and a hand-written mio loop, in one run, with ratios.
//!
//! ```text
//! cargo bench -p netactor-compare --bench http_compare              # full: 3 rounds, ~5 min on 2 cores
//! cargo bench -p netactor-compare --bench http_compare -- --quick   # 1 round, short windows, ~1 min
//! cargo bench -p netactor-compare --bench http_compare -- --modes pipelined --servers netactor,may_minihttp
//! ```
//!
//! Needs `wrk` (Debian package `wrk`). The driver builds the servers
//! (`--no-build` skips that), copies the binaries, then round after round
//! runs every mode against every server — a fresh server process per
//! measurement, the server order rotated each round so none always goes
//! first on a shared machine. Each measurement: a sanity request (status,
//! the four headers, the body), a wrk warm-up, then the measured wrk run;
//! the server's CPU time over that run comes from /proc/PID/stat, wrk's from
//! `getrusage(RUSAGE_CHILDREN)`. Results: markdown tables on stdout and in
//! `target/http_compare.md`. See `benches/README.md`.

// `crypto_of` is echo_compare's (its TLS rows); the rest is shared.
#[allow(dead_code)]
#[path = "echo_compare/host.rs"]
mod host;
#[path = "echo_compare/report.rs"]
mod report;
// The echo servers' list (`Kind`, `Server::spawn`) is not used here, only
// `Server::start` and the /proc readings.
#[allow(dead_code)]
#[path = "echo_compare/server.rs"]
mod server;

use host::{
    build_examples, examples_dir, loadavg, output_paths, publish, raise_nofile, report_header,
    snapshot_binaries, TempDir,
};
use report::{ratio, si, stats, Table};
use server::Server;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: cargo bench -p netactor-compare --bench http_compare -- [--quick] \
[--modes MODES] [--servers SERVERS] [--rounds N] [--secs S] [--conns N] [--wrk-threads N] [--no-build]
  MODES: pipelined,plain,latency
  SERVERS: netactor,may_minihttp,hyper,hyper-pf,mio";

/// Pipelining depth of the pipelined mode (TechEmpower's).
const DEPTH: usize = 16;
/// TechEmpower's plaintext request headers (besides wrk's own `Host`).
const HEADERS: [&str; 2] = [
    "Accept: text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9,application/xml;q=0.8,*/*;q=0.7",
    "Connection: keep-alive",
];
/// wrk's script for pipelining: `DEPTH` requests in every write.
const PIPELINE_LUA: &str = r#"init = function(args)
  local r = {}
  local depth = tonumber(args[1]) or 16
  for i = 1, depth do r[i] = wrk.format(nil, nil) end
  req = table.concat(r)
end
request = function() return req end
"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Peer {
    Netactor,
    May,
    Hyper,
    HyperPf,
    Mio,
}

impl Peer {
    const ALL: [Peer; 5] = [
        Peer::Netactor,
        Peer::May,
        Peer::Hyper,
        Peer::HyperPf,
        Peer::Mio,
    ];
    fn name(self) -> &'static str {
        match self {
            Peer::Netactor => "netactor",
            Peer::May => "may_minihttp",
            Peer::Hyper => "hyper",
            Peer::HyperPf => "hyper-pf",
            Peer::Mio => "mio",
        }
    }
    fn example(self) -> &'static str {
        match self {
            Peer::Netactor => "http",
            Peer::May => "peer_may_http",
            Peer::Hyper | Peer::HyperPf => "peer_hyper_http",
            Peer::Mio => "peer_mio_http",
        }
    }
    fn args(self) -> Vec<OsString> {
        match self {
            Peer::HyperPf => vec!["--pipeline-flush".into()],
            // For experiments, e.g. HTTP_COMPARE_NETACTOR_ARGS="--workers 1".
            Peer::Netactor => std::env::var("HTTP_COMPARE_NETACTOR_ARGS")
                .map(|v| v.split_whitespace().map(Into::into).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
    fn parse(s: &str) -> Option<Peer> {
        Peer::ALL.into_iter().find(|p| p.name() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Mode {
    Pipelined,
    Plain,
    Latency,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Pipelined => "pipelined",
            Mode::Plain => "plain",
            Mode::Latency => "latency",
        }
    }
}

struct Config {
    quick: bool,
    rounds: usize,
    warmup_secs: u32,
    secs: u32,
    conns: usize,
    wrk_threads: usize,
    servers: Vec<Peer>,
    modes: Vec<Mode>,
    build: bool,
    command: String,
}

fn parse_args() -> Result<Config, String> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (mut quick, mut build) = (false, true);
    let (mut rounds, mut secs) = (None, None);
    let (mut conns, mut wrk_threads) = (256, 2);
    let mut servers = Peer::ALL.to_vec();
    let mut modes = vec![Mode::Pipelined, Mode::Plain, Mode::Latency];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |f: &str| it.next().cloned().ok_or(format!("{f} needs a value"));
        let num = |f: &str, v: String| v.parse::<usize>().map_err(|e| format!("{f}: {e}"));
        match a.as_str() {
            "--quick" => quick = true,
            "--no-build" => build = false,
            "--rounds" => rounds = Some(num("--rounds", val("--rounds")?)?.max(1)),
            "--secs" => secs = Some(num("--secs", val("--secs")?)?.clamp(1, 600) as u32),
            "--conns" => conns = num("--conns", val("--conns")?)?.max(1),
            "--wrk-threads" => wrk_threads = num("--wrk-threads", val("--wrk-threads")?)?.max(1),
            "--servers" => {
                servers = val("--servers")?
                    .split(',')
                    .map(|s| Peer::parse(s.trim()).ok_or(format!("unknown server {s}")))
                    .collect::<Result<_, _>>()?
            }
            "--modes" => {
                modes = val("--modes")?
                    .split(',')
                    .map(|s| match s.trim() {
                        "pipelined" => Ok(Mode::Pipelined),
                        "plain" => Ok(Mode::Plain),
                        "latency" => Ok(Mode::Latency),
                        other => Err(format!("unknown mode {other}")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let mut command = String::from("cargo bench -p netactor-compare --bench http_compare");
    if !args.is_empty() {
        command.push_str(" -- ");
        command.push_str(&args.join(" "));
    }
    Ok(Config {
        quick,
        rounds: rounds.unwrap_or(if quick { 1 } else { 3 }),
        warmup_secs: 1,
        secs: secs.unwrap_or(if quick { 2 } else { 5 }),
        conns: conns.max(wrk_threads),
        wrk_threads,
        servers,
        modes,
        build,
        command,
    })
}

/// One measured wrk run against one server.
struct Sample {
    requests: f64,
    wall: f64,
    server_cpu: f64,
    wrk_cpu: f64,
    /// Socket errors plus non-2xx/3xx responses (must be 0).
    errors: u64,
    /// Latency percentiles (latency mode), µs.
    p50: f64,
    p99: f64,
}

impl Sample {
    fn rps(&self) -> f64 {
        self.requests / self.wall
    }
    fn per_cpu(&self) -> f64 {
        if self.server_cpu > 0.0 {
            self.requests / self.server_cpu
        } else {
            0.0
        }
    }
    fn server_cores(&self) -> f64 {
        self.server_cpu / self.wall
    }
    fn wrk_cores(&self) -> f64 {
        self.wrk_cpu / self.wall
    }
}

/// CPU seconds of reaped children (wrk, once it has exited).
fn children_cpu() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) != 0 {
            return 0.0;
        }
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// `GET /plaintext` once on a fresh connection: a server that answers
/// wrongly fails instead of scoring.
fn sanity_check(server: &Server) -> Result<(), String> {
    let mut s = TcpStream::connect(server.addr).map_err(|e| format!("connect: {e}"))?;
    let t = Some(Duration::from_secs(10));
    s.set_read_timeout(t)
        .and_then(|_| s.set_write_timeout(t))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.ends_with(b"Hello, World!") {
        if buf.len() > 4096 {
            return Err("response too long".into());
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let ok = text.starts_with("http/1.1 200 ")
        && [
            "\r\nserver: ",
            "\r\ndate: ",
            "\r\ncontent-type: text/plain",
            "\r\ncontent-length: 13\r\n",
        ]
        .iter()
        .all(|h| text.contains(h))
        && text.ends_with("\r\n\r\nhello, world!");
    if ok {
        Ok(())
    } else {
        Err(format!("unexpected response {text:?}"))
    }
}

/// Runs wrk against `server`; returns its stdout and its CPU seconds.
fn run_wrk(
    cfg: &Config,
    server: &Server,
    mode: Mode,
    secs: u32,
    lua: &Path,
) -> Result<(String, f64), String> {
    let (threads, conns) = match mode {
        Mode::Latency => (1, 1),
        _ => (cfg.wrk_threads, cfg.conns),
    };
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{conns}"))
        .arg(format!("-d{secs}s"))
        .args(["--timeout", "10s"]);
    for h in HEADERS {
        cmd.args(["-H", h]);
    }
    if mode == Mode::Latency {
        cmd.arg("--latency");
    }
    if mode == Mode::Pipelined {
        cmd.arg("-s").arg(lua);
    }
    cmd.arg(format!("http://{}/plaintext", server.addr));
    if mode == Mode::Pipelined {
        cmd.args(["--", &DEPTH.to_string()]);
    }
    cmd.stdin(Stdio::null()).stderr(Stdio::inherit());
    let before = children_cpu();
    let out = cmd.output().map_err(|e| format!("wrk: {e}"))?;
    let cpu = children_cpu() - before;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("wrk failed ({}): {text}", out.status));
    }
    Ok((text, cpu))
}

/// A latency such as `123.45us`, `1.20ms`, `2.00s` in µs.
fn parse_duration_us(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

/// Parses wrk's report: `N requests in T, …`, socket errors, non-2xx
/// responses and (with `--latency`) the 50 % and 99 % lines.
fn parse_wrk(text: &str) -> Result<(f64, f64, u64, f64, f64), String> {
    let (mut requests, mut wall, mut errors) = (None, None, 0u64);
    let (mut p50, mut p99) = (0.0, 0.0);
    for line in text.lines().map(str::trim) {
        if let Some((n, rest)) = line.split_once(" requests in ") {
            requests = n.trim().parse::<f64>().ok();
            wall = rest
                .split(',')
                .next()
                .and_then(parse_duration_us)
                .map(|us| us / 1e6);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            errors += rest
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += n.trim().parse::<u64>().unwrap_or(1);
        } else if let Some(v) = line.strip_prefix("50%") {
            p50 = parse_duration_us(v).unwrap_or(0.0);
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = parse_duration_us(v).unwrap_or(0.0);
        }
    }
    match (requests, wall) {
        (Some(r), Some(w)) if w > 0.0 => Ok((r, w, errors, p50, p99)),
        _ => Err(format!("cannot read wrk's output: {text}")),
    }
}

fn measure(
    cfg: &Config,
    dir: &Path,
    log: &Path,
    peer: Peer,
    mode: Mode,
    lua: &Path,
) -> Result<Sample, String> {
    let mut server = Server::start(
        &dir.join(peer.example()),
        &peer.args(),
        peer.name(),
        log,
        Duration::from_secs(30),
    )
    .map_err(|e| e.to_string())?;
    sanity_check(&server)?;
    run_wrk(cfg, &server, mode, cfg.warmup_secs, lua)?;
    let cpu0 = server.cpu_secs().map_err(|e| e.to_string())?;
    let (text, wrk_cpu) = run_wrk(cfg, &server, mode, cfg.secs, lua)?;
    let cpu1 = server.cpu_secs().map_err(|e| e.to_string())?;
    server
        .check_alive()
        .map_err(|e| format!("{}: {e}", peer.name()))?;
    let (requests, wall, errors, p50, p99) = parse_wrk(&text)?;
    Ok(Sample {
        requests,
        wall,
        server_cpu: cpu1 - cpu0,
        wrk_cpu,
        errors,
        p50,
        p99,
    })
}

type Results = BTreeMap<(Mode, Peer), Vec<Result<Sample, String>>>;

fn ok(results: &Results, mode: Mode, peer: Peer) -> Vec<&Sample> {
    results
        .get(&(mode, peer))
        .map(|v| v.iter().filter_map(|r| r.as_ref().ok()).collect())
        .unwrap_or_default()
}

fn med(results: &Results, mode: Mode, peer: Peer, f: impl Fn(&Sample) -> f64) -> Option<f64> {
    stats(
        &ok(results, mode, peer)
            .into_iter()
            .map(f)
            .collect::<Vec<_>>(),
    )
    .map(|s| s.0)
}

/// `median (min–max)` of a rate, or `n/a*` if every round failed.
fn cell(results: &Results, mode: Mode, peer: Peer, f: impl Fn(&Sample) -> f64) -> String {
    let v: Vec<f64> = ok(results, mode, peer).into_iter().map(f).collect();
    match stats(&v) {
        Some((m, lo, hi)) if v.len() > 1 => format!("{} ({}–{})", si(m), si(lo), si(hi)),
        Some((m, _, _)) => si(m),
        None => "n/a*".into(),
    }
}

fn throughput_table(results: &Results, cfg: &Config, mode: Mode) -> String {
    let mut t = Table::new(&[
        "server",
        "req/s",
        "server cores",
        "req per server CPU-s",
        "req/s vs may_minihttp",
        "per CPU-s vs may_minihttp",
        "wrk cores",
        "errors",
    ]);
    let base = |f: fn(&Sample) -> f64| med(results, mode, Peer::May, f);
    for &p in &cfg.servers {
        let errs: u64 = ok(results, mode, p).iter().map(|s| s.errors).sum();
        t.row(vec![
            p.name().into(),
            cell(results, mode, p, Sample::rps),
            med(results, mode, p, Sample::server_cores).map_or("–".into(), |v| format!("{v:.2}")),
            cell(results, mode, p, Sample::per_cpu),
            ratio(med(results, mode, p, Sample::rps), base(Sample::rps)),
            ratio(
                med(results, mode, p, Sample::per_cpu),
                base(Sample::per_cpu),
            ),
            med(results, mode, p, Sample::wrk_cores).map_or("–".into(), |v| format!("{v:.2}")),
            errs.to_string(),
        ]);
    }
    t.render()
}

fn latency_table(results: &Results, cfg: &Config) -> String {
    let mode = Mode::Latency;
    let mut t = Table::new(&[
        "server",
        "p50 µs",
        "p99 µs",
        "req/s",
        "server cores",
        "p50 vs may_minihttp",
        "errors",
    ]);
    for &p in &cfg.servers {
        let errs: u64 = ok(results, mode, p).iter().map(|s| s.errors).sum();
        let us = |f: fn(&Sample) -> f64| {
            med(results, mode, p, f).map_or("n/a*".into(), |v| format!("{v:.0}"))
        };
        t.row(vec![
            p.name().into(),
            us(|s| s.p50),
            us(|s| s.p99),
            cell(results, mode, p, Sample::rps),
            med(results, mode, p, Sample::server_cores).map_or("–".into(), |v| format!("{v:.2}")),
            ratio(
                med(results, mode, p, |s| s.p50),
                med(results, mode, Peer::May, |s| s.p50),
            ),
            errs.to_string(),
        ]);
    }
    t.render()
}

fn report(results: &Results, cfg: &Config, header: &str, elapsed: Duration) -> String {
    let mut s = String::from(header);
    let _ = writeln!(
        s,
        "- run time: {:.1} min; load average at the end: {}\n",
        elapsed.as_secs_f64() / 60.0,
        loadavg()
    );
    for &mode in &cfg.modes {
        match mode {
            Mode::Pipelined => {
                let _ = writeln!(
                    s,
                    "### pipelined ×{DEPTH}: wrk -t{} -c{}, {DEPTH} requests per write\n",
                    cfg.wrk_threads, cfg.conns
                );
                s.push_str(&throughput_table(results, cfg, mode));
            }
            Mode::Plain => {
                let _ = writeln!(
                    s,
                    "### plain: wrk -t{} -c{}, one request at a time per connection\n",
                    cfg.wrk_threads, cfg.conns
                );
                s.push_str(&throughput_table(results, cfg, mode));
            }
            Mode::Latency => {
                s.push_str("### latency: wrk -t1 -c1 --latency, one request at a time\n\n");
                s.push_str(&latency_table(results, cfg));
            }
        }
        s.push('\n');
    }
    let mut t = Table::new(&["target", "measured", "result"]);
    for mode in [Mode::Pipelined, Mode::Plain] {
        if !cfg.modes.contains(&mode) {
            continue;
        }
        let (a, b) = (
            med(results, mode, Peer::Netactor, Sample::per_cpu),
            med(results, mode, Peer::May, Sample::per_cpu),
        );
        let pass = match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => {
                if a / b >= 1.0 {
                    "PASS"
                } else {
                    "FAIL"
                }
            }
            _ => "–",
        };
        t.row(vec![
            format!(
                "{}: netactor ≥ 1.0× may_minihttp per server CPU-s",
                mode.name()
            ),
            ratio(a, b),
            pass.into(),
        ]);
    }
    s.push_str("### Targets (medians of one interleaved run)\n\n");
    s.push_str(&t.render());
    let mut errs = String::new();
    for ((mode, peer), v) in results {
        for e in v.iter().filter_map(|r| r.as_ref().err()) {
            let _ = writeln!(errs, "- {} / {}: {e}", mode.name(), peer.name());
        }
    }
    if !errs.is_empty() {
        s.push_str("\n\\* failed measurements:\n\n");
        s.push_str(&errs);
    }
    s
}

fn main() -> ExitCode {
    let cfg = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("http_compare: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = Command::new("wrk").arg("-v").output() {
        eprintln!("http_compare: cannot run wrk ({e}): install it (Debian: apt-get install wrk)");
        return ExitCode::FAILURE;
    }
    raise_nofile();
    let mut names: Vec<&str> = cfg.servers.iter().map(|p| p.example()).collect();
    names.dedup();
    if cfg.build {
        if let Err(e) = build_examples(&names) {
            eprintln!("http_compare: {e}");
            return ExitCode::FAILURE;
        }
    }
    let built = examples_dir();
    let (log, md_path) = output_paths(&built, "http_compare");
    let tmp = TempDir(std::env::temp_dir().join(format!("http_compare-{}", std::process::id())));
    // Private copies: one run compares one build of each server.
    let dir = tmp.0.join("bin");
    if let Err(e) = snapshot_binaries(&built, &dir, &names) {
        eprintln!(
            "http_compare: copying the server binaries from {}: {e} (drop --no-build?)",
            built.display()
        );
        return ExitCode::FAILURE;
    }
    let lua = tmp.0.join("pipeline.lua");
    if let Err(e) = std::fs::write(&lua, PIPELINE_LUA) {
        eprintln!("http_compare: {e}");
        return ExitCode::FAILURE;
    }
    let wrk_version = Command::new("wrk")
        .arg("-v")
        .output()
        .map(|o| {
            let t = String::from_utf8_lossy(&o.stdout).into_owned();
            t.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_default();

    let mut header = report_header("http_compare", &cfg.command);
    let _ = writeln!(
        header,
        "- mode: {}, {} round(s); per server and mode a fresh process, one sanity request, {} s wrk warm-up, {} s measured; \
         the server order rotates every round; load generator: {wrk_version}; load average at the start: {}",
        if cfg.quick { "quick" } else { "full" },
        cfg.rounds,
        cfg.warmup_secs,
        cfg.secs,
        loadavg()
    );
    let _ = writeln!(
        header,
        "- every server runs {} workers; `GET /plaintext` with TechEmpower's request headers; ratios are of medians; \
         \"cores\" = CPU-seconds per second of the measured run (server: /proc/PID/stat utime+stime, all threads; wrk: getrusage)",
        server::WORKERS
    );
    eprint!("{header}");

    let started = Instant::now();
    let mut results: Results = BTreeMap::new();
    let total = cfg.rounds * cfg.modes.len() * cfg.servers.len();
    let mut step = 0;
    for round in 0..cfg.rounds {
        let mut order = cfg.servers.clone();
        let n = order.len().max(1);
        order.rotate_left(round % n);
        for &mode in &cfg.modes {
            for &peer in &order {
                step += 1;
                let t = Instant::now();
                let r = measure(&cfg, &dir, &log, peer, mode, &lua);
                let what = match &r {
                    Ok(s) if mode == Mode::Latency => format!(
                        "p50 {:.0} µs, p99 {:.0} µs, {} req/s",
                        s.p50,
                        s.p99,
                        si(s.rps())
                    ),
                    Ok(s) => format!(
                        "{} req/s, {:.2} cores, {} req/CPU-s, {} errors",
                        si(s.rps()),
                        s.server_cores(),
                        si(s.per_cpu()),
                        s.errors
                    ),
                    Err(e) => format!("FAILED: {e}"),
                };
                eprintln!(
                    "[{step}/{total} {:>5.0}s] round {}/{} {:<9} {:<12} {what} ({:.1}s)",
                    started.elapsed().as_secs_f64(),
                    round + 1,
                    cfg.rounds,
                    mode.name(),
                    peer.name(),
                    t.elapsed().as_secs_f64()
                );
                results.entry((mode, peer)).or_default().push(r);
            }
        }
    }
    publish(
        &report(&results, &cfg, &header, started.elapsed()),
        &md_path,
    );
    ExitCode::SUCCESS
}
