//! Accepting under descriptor exhaustion: a child process (this test binary
//! re-executed with an env var) lowers RLIMIT_NOFILE and runs an echo
//! listener; the parent opens more connections than it has descriptors for.
//! The child must pause accepting (log it, not spin on EMFILE) and serve the
//! waiting connections once descriptors are free again.
//!
//! Run: `cargo test --release --test core_accept`

mod common;

use common::*;
use netactor::{ListenOptions, Reactor};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "NETACTOR_EMFILE_CHILD";
/// RLIMIT_NOFILE in the child: room for the reactor plus a few dozen sockets.
const CHILD_NOFILE: u64 = 48;
const CONNS: usize = 100;

/// The child's side. Ignored in normal runs; the parent runs it explicitly.
#[test]
#[ignore = "helper: the EMFILE test runs this in a child process"]
fn emfile_child_server() {
    if std::env::var(CHILD_ENV).as_deref() != Ok("1") {
        return;
    }
    let _ = env_logger::builder().is_test(false).try_init();
    // SAFETY: setrlimit only reads the struct we pass.
    let rc = unsafe {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur = CHILD_NOFILE;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl)
    };
    assert_eq!(rc, 0, "setrlimit failed");
    let r = Reactor::builder().workers(1).build().unwrap();
    let listener = echo_listener(&r, ListenOptions::new());
    println!("listening on {}", listener.local_addr());
    std::io::stdout().flush().unwrap();
    // Serve until the parent closes our stdin.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    std::process::exit(0);
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime/stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as u64
}

/// Reads everything available on each stream in `idx` within `budget`;
/// returns the indices that got their 4-byte echo.
fn echoed(conns: &mut [TcpStream], idx: &[usize], budget: Duration) -> Vec<usize> {
    let end = Instant::now() + budget;
    let mut got = Vec::new();
    for &i in idx {
        let left = end
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        conns[i].set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 4];
        if conns[i].read_exact(&mut buf).is_ok() {
            assert_eq!(&buf, b"ping");
            got.push(i);
        }
    }
    got
}

#[test]
fn accept_survives_emfile_without_spinning() {
    let _w = Watchdog::new("EMFILE test", Duration::from_secs(60));
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args(["--ignored", "--exact", "emfile_child_server", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD_ENV, "1")
        .env("RUST_LOG", "netactor=warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    let pid = child.0.id();
    let stdout = child.0.stdout.take().unwrap();
    let (addr_tx, addr_rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The harness prints "test name ... " before our output on that line.
            if let Some((_, a)) = line.split_once("listening on ") {
                let _ = addr_tx.send(a.trim().parse::<SocketAddr>().unwrap());
            }
        }
    });
    let stderr = child.0.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    let addr = addr_rx.recv_timeout(WAIT).expect("child did not start");

    // More connections than the child has descriptors; the kernel completes
    // every handshake (backlog 1024), the child cannot accept them all.
    let mut conns: Vec<TcpStream> = (0..CONNS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    for c in &mut conns {
        c.write_all(b"ping").unwrap();
    }
    let all: Vec<usize> = (0..CONNS).collect();
    let first = echoed(&mut conns, &all, Duration::from_millis(800));
    assert!(!first.is_empty(), "child served nobody");
    assert!(
        first.len() < CONNS,
        "child served all {CONNS} connections with RLIMIT_NOFILE {CHILD_NOFILE}"
    );

    // Out of descriptors with connections waiting: the child must not spin.
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(700));
    let burnt = cpu_ticks(pid) - t0;
    // A spinning accept loop would burn ~70 ticks (at 100 Hz); allow 20.
    assert!(
        burnt * 10 < ticks_per_sec() * 2,
        "child used {burnt} ticks of CPU in 0.7 s while out of descriptors"
    );

    // Free descriptors: close what was served; the rest must be served now.
    let mut waiting: Vec<usize> = all.iter().copied().filter(|i| !first.contains(i)).collect();
    for &i in &first {
        let _ = conns[i].shutdown(std::net::Shutdown::Both);
    }
    let end = Instant::now() + Duration::from_secs(20);
    while !waiting.is_empty() {
        assert!(
            Instant::now() < end,
            "{} connections never served",
            waiting.len()
        );
        let got = echoed(&mut conns, &waiting, Duration::from_secs(2));
        for &i in &got {
            let _ = conns[i].shutdown(std::net::Shutdown::Both);
        }
        waiting.retain(|i| !got.contains(i));
    }
    drop(conns);
    drop(child.0.stdin.take()); // child exits on stdin EOF
    let end = Instant::now() + WAIT;
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "child did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = log.join().unwrap();
    assert!(
        log.contains("pausing accept"),
        "no accept-pause warning logged:\n{log}"
    );
}
