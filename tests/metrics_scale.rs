//! What a metrics snapshot (`Reactor::metrics`) costs with 10 000 open
//! connections, and whether taking snapshots back to back slows the
//! workers. A measurement, not a check: it prints its figures.
//!
//! Run: `cargo test --release --test metrics_scale -- --ignored --nocapture`
//! (`NETACTOR_SNAPSHOT_CONNS=N` for another count.)
//!
//! The clients' ends of the connections live in a child process (this test
//! binary again, in client mode), so each process needs one descriptor per
//! connection and the default hard `RLIMIT_NOFILE` of 20 000 is enough.
#![cfg(unix)]

mod common;

use common::*;
use netactor::{ListenOptions, Reactor};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENT_ENV: &str = "NETACTOR_SNAPSHOT_CLIENT";
const TEST: &str = "snapshot_cost_at_10000_connections";

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn snapshot_cost_at_10000_connections() {
    if let Ok(arg) = std::env::var(CLIENT_ENV) {
        return client(&arg);
    }
    let n: usize = std::env::var("NETACTOR_SNAPSHOT_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let limit = raise_nofile();
    assert!(
        limit >= n as u64 + 200,
        "RLIMIT_NOFILE {limit} too low for {n}"
    );
    let _w = Watchdog::new("snapshot cost", Duration::from_secs(300));
    let r = reactor(2);
    let l = echo_listener(&r, ListenOptions::new().backlog(4096));
    let addr = l.local_addr();

    // First with no other connection open.
    let base = snapshot_cost(&r, 2000);
    let idle_rate = {
        let mut v: Vec<f64> = (0..5).map(|_| round_trips_per_sec(addr, None).0).collect();
        median(&mut v)
    };

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            TEST,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CLIENT_ENV, format!("{addr},{n}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(120);
    while r.metrics().connections_open < n as u64 {
        assert!(Instant::now() < end, "{:#?}", r.metrics());
        assert!(child.try_wait().unwrap().is_none(), "client process ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    let full = snapshot_cost(&r, 500);
    // The machine's other load swamps a single long run (2 cores shared),
    // so the three ways are interleaved in short slices, medians compared.
    let (mut quiet, mut looping, mut per_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut taken = (0, 0);
    for _ in 0..15 {
        quiet.push(round_trips_per_sec(addr, None).0);
        let l = round_trips_per_sec(addr, Some((&r, Duration::ZERO)));
        looping.push(l.0);
        taken.0 += l.1;
        let p = round_trips_per_sec(addr, Some((&r, Duration::from_millis(1))));
        per_ms.push(p.0);
        taken.1 += p.1;
    }
    let m = r.metrics();
    println!(
        "snapshot, 0 connections: median {:.1} µs, mean {:.1} µs",
        base.0, base.1
    );
    println!(
        "snapshot, {} connections ({} workers): median {:.1} µs, mean {:.1} µs, \
         Prometheus text {} bytes",
        m.connections_open,
        m.workers.len(),
        full.0,
        full.1,
        m.to_prometheus().len()
    );
    println!(
        "echo ping-pong on one more connection, round trips/s (median of 15 slices of \
         {SLICE:?}): no connections {idle_rate:.0}; {n} idle connections: no snapshots {:.0}, \
         snapshots back to back {:.0} ({} taken), a snapshot every ms {:.0} ({} taken)",
        median(&mut quiet),
        median(&mut looping),
        taken.0,
        median(&mut per_ms),
        taken.1
    );
    drop(child.stdin.take());
    let _ = child.wait();
}

/// Median and mean µs per snapshot over `k` snapshots.
fn snapshot_cost(r: &Reactor, k: usize) -> (f64, f64) {
    let mut t: Vec<f64> = (0..k)
        .map(|_| {
            let t0 = Instant::now();
            std::hint::black_box(r.metrics());
            t0.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (t[k / 2], t.iter().sum::<f64>() / k as f64)
}

const SLICE: Duration = Duration::from_millis(300);

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Ping-pong (64 bytes) for one [`SLICE`] on a fresh connection; meanwhile, if
/// asked, another thread takes snapshots with `gap` between them. Returns
/// round trips per second and the snapshots taken.
fn round_trips_per_sec(addr: SocketAddr, snap: Option<(&Reactor, Duration)>) -> (f64, u64) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        let taker = snap.map(|(r, gap)| {
            let stop = stop.clone();
            scope.spawn(move || {
                let mut taken = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    std::hint::black_box(r.metrics());
                    taken += 1;
                    if !gap.is_zero() {
                        std::thread::sleep(gap);
                    }
                }
                taken
            })
        });
        let msg = [7u8; 64];
        let mut back = [0u8; 64];
        let t0 = Instant::now();
        let mut trips = 0u64;
        while t0.elapsed() < SLICE {
            s.write_all(&msg).unwrap();
            s.read_exact(&mut back).unwrap();
            trips += 1;
        }
        let rate = trips as f64 / t0.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let taken = taker.map_or(0, |t| t.join().unwrap());
        (rate, taken)
    })
}

/// Client mode (the child process): opens `n` connections to `addr` and
/// holds them until stdin closes.
fn client(arg: &str) {
    let (addr, n) = arg.split_once(',').unwrap();
    let addr: SocketAddr = addr.parse().unwrap();
    let n: usize = n.parse().unwrap();
    raise_nofile();
    let conns: Vec<TcpStream> = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(conns);
}
