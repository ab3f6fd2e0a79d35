//! The fanout example, both modes (netactor on one thread, and blocking std
//! sockets on threads), against the http example, a port where nothing
//! listens, and a server that accepts but never answers: every request gets
//! its own outcome (ok, refused, timeout at its deadline, bad response).

mod tls_support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;
use tls_support::*;

struct Run {
    code: Option<i32>,
    lines: Vec<String>,
}

impl Run {
    /// The summary line's counters as (name, value) pairs.
    fn summary(&self) -> Vec<(String, String)> {
        let last = self.lines.last().expect("a summary line");
        let words: Vec<&str> = last.split_whitespace().collect();
        words
            .chunks(2)
            .map(|kv| (kv[0].to_string(), kv.get(1).unwrap_or(&"").to_string()))
            .collect()
    }

    fn count(&self, name: &str) -> usize {
        self.summary()
            .iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.lines.last()))
            .1
            .parse()
            .unwrap()
    }

    /// The per-request failure lines, by request index.
    fn failures(&self, kind: &str) -> Vec<(usize, String)> {
        let mut v: Vec<(usize, String)> = self
            .lines
            .iter()
            .filter_map(|l| {
                let rest = l.strip_prefix("request ")?;
                let (i, rest) = rest.split_once(": ")?;
                let detail = rest.strip_prefix(kind)?.strip_prefix(": ")?;
                Some((i.parse().unwrap(), detail.to_string()))
            })
            .collect();
        v.sort();
        v
    }
}

fn fanout(target: SocketAddr, extra: &[&str]) -> Run {
    let t = target.to_string();
    let mut p = Proc::spawn(
        Command::new(example_bin("fanout"))
            .args(["--target", &t])
            .args(extra)
            .stdout(std::process::Stdio::piped()),
    );
    let mut out = p.child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let st = p
        .wait_timeout(Duration::from_secs(60))
        .expect("fanout did not finish within 60 s");
    let lines = reader.join().unwrap().lines().map(String::from).collect();
    Run {
        code: st.code(),
        lines,
    }
}

const MODES: [&[&str]; 2] = [&[], &["--blocking"]];

#[test]
fn every_request_succeeds_against_the_http_example() {
    let (_srv, addr) = start_server(
        &example_bin("http"),
        &["--listen", "127.0.0.1:0", "--workers", "1"],
    );
    for mode in MODES {
        let mut args = vec!["--requests", "500", "--concurrency", "16"];
        args.extend_from_slice(mode);
        let run = fanout(addr, &args);
        assert_eq!(run.code, Some(0), "{mode:?}: {:?}", run.lines);
        assert_eq!(run.count("ok"), 500, "{mode:?}: {:?}", run.lines);
        assert_eq!(run.lines.len(), 1, "{mode:?}: {:?}", run.lines);
    }
    // A status other than 200 is a bad response, per request.
    for mode in MODES {
        let mut args = vec!["--requests", "10", "--concurrency", "3", "--path", "/nope"];
        args.extend_from_slice(mode);
        let run = fanout(addr, &args);
        assert_eq!(run.code, Some(1));
        assert_eq!(run.count("bad"), 10, "{mode:?}: {:?}", run.lines);
        let bad = run.failures("bad response");
        assert_eq!(bad.len(), 10);
        assert!(bad
            .iter()
            .enumerate()
            .all(|(k, (i, d))| *i == k && d == "status 404"));
    }
}

#[test]
fn every_request_to_a_closed_port_is_refused() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    for mode in MODES {
        let mut args = vec!["--requests", "40", "--concurrency", "8", "--timeout", "20"];
        args.extend_from_slice(mode);
        let run = fanout(addr, &args);
        assert_eq!(run.code, Some(1));
        assert_eq!(run.count("refused"), 40, "{mode:?}: {:?}", run.lines);
        let refused = run.failures("refused");
        assert_eq!(
            refused.iter().map(|r| r.0).collect::<Vec<_>>(),
            (0..40).collect::<Vec<_>>(),
            "{mode:?}: {:?}",
            run.lines
        );
    }
}

#[test]
fn a_server_that_never_answers_times_each_request_out() {
    // Accepts everything and keeps it, answering nothing.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    for mode in MODES {
        let mut args = vec!["--requests", "6", "--concurrency", "3", "--timeout", "1"];
        args.extend_from_slice(mode);
        let run = fanout(addr, &args);
        assert_eq!(run.code, Some(1));
        assert_eq!(run.count("timeout"), 6, "{mode:?}: {:?}", run.lines);
        let timeouts = run.failures("timeout");
        assert_eq!(timeouts.len(), 6, "{mode:?}: {:?}", run.lines);
        for (i, detail) in timeouts {
            // "after X.XXX s": at its own deadline, not before (and not
            // only when a whole batch is over: bounded generously).
            let secs: f64 = detail
                .strip_prefix("after ")
                .and_then(|d| d.strip_suffix(" s"))
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                (0.99..10.0).contains(&secs),
                "{mode:?}: request {i} timed out after {secs} s"
            );
        }
    }
}

/// nginx (Debian's nginx-light, installed by .ci/run) on a free port,
/// answering /plaintext itself; killed on drop.
fn nginx(dir: &TempDir) -> (Proc, SocketAddr) {
    for _ in 0..5 {
        // A port that was free a moment ago (nginx cannot report port 0).
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        let conf = dir.write(
            "nginx.conf",
            &format!(
                "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{ access_log off; client_body_temp_path {d};\n\
                 server {{ listen 127.0.0.1:{port};\n\
                 location /plaintext {{ default_type text/plain; return 200 \"Hello, World!\"; }} }} }}\n"
            ),
        );
        // One process in the foreground (no master/worker pair), so that
        // killing the child stops nginx entirely — an orphaned worker would
        // hold the test's stdout open.
        let mut p = Proc::spawn(Command::new("nginx").args([
            "-c",
            conf.to_str().unwrap(),
            "-g",
            "daemon off; master_process off;",
        ]));
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < end {
            if p.child.try_wait().unwrap().is_some() {
                break; // the port was taken meanwhile: try another
            }
            if TcpStream::connect(addr).is_ok() {
                return (p, addr);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("nginx did not start");
}

#[test]
fn every_request_succeeds_against_nginx() {
    if !have("nginx") {
        // .ci/run installs it; CI must not skip.
        assert!(std::env::var_os("CI").is_none(), "nginx missing in CI");
        eprintln!("nginx not installed: skipped");
        return;
    }
    let dir = TempDir::new("fanout-nginx");
    let (_nginx, addr) = nginx(&dir);
    for mode in MODES {
        let mut args = vec!["--requests", "300", "--concurrency", "8"];
        args.extend_from_slice(mode);
        let run = fanout(addr, &args);
        assert_eq!(run.code, Some(0), "{mode:?}: {:?}", run.lines);
        assert_eq!(run.count("ok"), 300, "{mode:?}: {:?}", run.lines);
    }
}
