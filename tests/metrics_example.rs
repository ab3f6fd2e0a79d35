//! `echo --metrics ADDR`: known traffic in, the scraped Prometheus totals
//! say exactly that, and `promtool check metrics` accepts the exposition.
//!
//! promtool comes with Debian's `prometheus` package (`.ci/run` installs
//! it). Without it the promtool check is skipped locally, but with `CI`
//! set (`CI=true`) the test fails: CI must not pass without the validation.

mod tls_support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tls_support::*;

const LIMIT: Duration = Duration::from_secs(20);

/// Starts echo with `--metrics`; returns the process and both addresses.
fn start_echo(extra: &[&str]) -> (Proc, SocketAddr, SocketAddr) {
    start_with_metrics("echo", extra)
}

/// Starts example `name` with `--listen` and `--metrics` on port 0 (and
/// `extra`); returns the process and both addresses, read from its
/// `listening on` and `metrics on` lines.
fn start_with_metrics(name: &str, extra: &[&str]) -> (Proc, SocketAddr, SocketAddr) {
    let mut p = Proc::spawn(
        Command::new(example_bin(name))
            .args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let out = p.child.stdout.take().unwrap();
    let (tx, rx) = crossbeam_channel::bounded(2);
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        for _ in 0..2 {
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
        }
        let mut sink = Vec::new();
        let _ = r.read_to_end(&mut sink);
    });
    let addr = |prefix: &str| -> SocketAddr {
        let line = rx.recv_timeout(LIMIT).expect("a line from echo");
        line.trim()
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected {prefix:?}, got {line:?}"))
            .parse()
            .unwrap()
    };
    let listen = addr("listening on ");
    let metrics = addr("metrics on ");
    (p, listen, metrics)
}

/// One HTTP request; returns (status line, content type, body).
fn http(addr: SocketAddr, request: &str) -> (String, String, String) {
    http_on(TcpStream::connect(addr).unwrap(), request)
}

/// Writes `request` on `s`, reads the response to the close.
fn http_on(mut s: TcpStream, request: &str) -> (String, String, String) {
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("response, then close");
    let resp = String::from_utf8(resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("a complete head");
    let status = head.lines().next().unwrap().to_string();
    let ctype = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or("")
        .to_string();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .unwrap();
    assert_eq!(len, body.len(), "Content-Length matches the body");
    (status, ctype, body.to_string())
}

/// The status line answered to `request`, read up to the close or a reset:
/// a server that answers before reading all of a request and then closes
/// makes the kernel reset the connection, after its answer.
fn status_line_of(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let _ = s.write_all(request.as_bytes());
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the response: {e}"),
        }
    }
    let resp = String::from_utf8_lossy(&resp);
    resp.lines().next().unwrap_or("").to_string()
}

/// One HTTP request written in pieces, a pause between them.
fn http_parts(addr: SocketAddr, parts: &[&str]) -> (String, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let (last, first) = parts.split_last().expect("at least one part");
    for p in first {
        s.write_all(p.as_bytes()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    http_on(s, last)
}

fn scrape(addr: SocketAddr) -> String {
    let (status, ctype, body) = http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: text/plain\r\n\r\n",
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    body
}

/// Sample lines by name (with labels), e.g. `netactor_read_bytes_total` or
/// `netactor_connections_closed_total{cause="eof"}`.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn value(m: &HashMap<String, f64>, key: &str) -> u64 {
    *m.get(key).unwrap_or_else(|| panic!("no sample {key}")) as u64
}

/// Sum over a labeled family (every sample whose name starts `name{`).
fn family_sum(m: &HashMap<String, f64>, name: &str) -> u64 {
    let prefix = format!("{name}{{");
    m.iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| *v as u64)
        .sum()
}

fn promtool_check(text: &str) {
    if !have("promtool") {
        // As the socat and nginx tests: in CI (CI set, e.g. CI=true) a
        // missing tool is a failure, never a silent skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool missing in CI (Debian package `prometheus`; .ci/run installs it)"
        );
        eprintln!("promtool not found: skipping the exposition check (with CI set this fails)");
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn scraped_totals_match_the_traffic_and_promtool_accepts_them() {
    let (mut echo, addr, metrics) = start_echo(&["--workers", "2"]);

    // Before any traffic: everything zero (the scrape runs on the
    // endpoint's own reactor, so it is not counted here).
    let before = samples(&scrape(metrics));
    assert_eq!(value(&before, "netactor_connections_accepted_total"), 0);
    assert_eq!(value(&before, "netactor_read_bytes_total"), 0);

    // N connections, B bytes in all, each echoed in full; then the client
    // half-closes and reads the server's FIN (the echo answers EOF with
    // shutdown, and closes once both directions are done).
    const N: usize = 12;
    let mut total = 0u64;
    let clients: Vec<_> = (0..N)
        .map(|i| {
            let len = 1000 * i + 17 * (i + 1) + (i % 3) * 70_000;
            total += len as u64;
            std::thread::spawn(move || {
                let data = random_bytes(len, i as u64);
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(LIMIT)).unwrap();
                let mut w = s.try_clone().unwrap();
                let d2 = data.clone();
                let writer = std::thread::spawn(move || {
                    w.write_all(&d2).unwrap();
                    w.shutdown(std::net::Shutdown::Write).unwrap();
                });
                let mut back = Vec::new();
                s.read_to_end(&mut back).expect("echo, then FIN");
                writer.join().unwrap();
                assert!(back == data, "client {i}: echo differs");
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }

    // The server counts a close when its actor finishes, which can come a
    // moment after the client saw the FIN: wait (bounded) for all N.
    let end = Instant::now() + LIMIT;
    let (text, m) = loop {
        let text = scrape(metrics);
        let m = samples(&text);
        if value(&m, "netactor_connections_open") == 0
            && family_sum(&m, "netactor_connections_closed_total") == N as u64
        {
            break (text, m);
        }
        assert!(Instant::now() < end, "connections not all closed:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(value(&m, "netactor_connections_accepted_total"), N as u64);
    assert_eq!(value(&m, "netactor_connections_opened_total"), N as u64);
    assert_eq!(value(&m, "netactor_connections_connected_total"), 0);
    assert_eq!(
        value(&m, "netactor_connections_closed_total{cause=\"eof\"}"),
        N as u64,
        "every client closed cleanly first"
    );
    assert_eq!(value(&m, "netactor_read_bytes_total"), total);
    assert_eq!(value(&m, "netactor_written_bytes_total"), total);
    assert!(value(&m, "netactor_read_syscalls_total") >= N as u64);
    assert!(value(&m, "netactor_write_syscalls_total") >= N as u64);
    // Raw streaming: at least one frame (and one event) per connection.
    assert!(value(&m, "netactor_frames_decoded_total") >= N as u64);
    assert!(value(&m, "netactor_events_delivered_total") >= N as u64);
    assert_eq!(value(&m, "netactor_write_queued_bytes"), 0);
    assert_eq!(value(&m, "netactor_read_buffered_bytes"), 0);
    assert_eq!(family_sum(&m, "netactor_accept_pauses_total"), 0);
    assert_eq!(family_sum(&m, "netactor_worker_connections_open"), 0);
    assert!(family_sum(&m, "netactor_worker_turns_total") >= N as u64);
    assert!(value(&m, "netactor_polls_total") > 0);
    // Both workers are listed.
    assert!(m.contains_key("netactor_worker_turns_total{worker=\"1\"}"));
    promtool_check(&text);

    // Anything but GET /metrics.
    let (status, _, _) = http(metrics, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _, _) = http(metrics, "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    // A head that arrives in pieces is answered once it is whole; HEAD gets
    // the head alone; a head over 8 KiB and garbage get their errors.
    let (status, _, body) = http_parts(
        metrics,
        &["GET /metr", "ics HTTP/1.1\r\nHo", "st: x\r\n\r", "\n"],
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("# TYPE netactor_connections_accepted_total counter"));
    let mut s = TcpStream::connect(metrics).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.write_all(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("response, then close");
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.ends_with("\r\n\r\n"), "HEAD: no body: {resp}");
    let long = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
    assert_eq!(
        status_line_of(metrics, &long),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    let (status, _, _) = http(metrics, "\x01\x02 nonsense\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 400 Bad Request");

    // SIGTERM: exit 0 as without --metrics.
    echo.signal(libc::SIGTERM);
    let status = echo.wait_timeout(LIMIT).expect("echo exits after SIGTERM");
    assert!(status.success(), "{status}");
}

#[test]
fn smtp_serves_metrics_too() {
    let pki = Pki::new();
    let cert = pki.server();
    let files = TempDir::new("metrics-smtp");
    let c = files.write("cert.pem", &cert.cert_pem);
    let k = files.write("key.pem", &cert.key_pem);
    let maildir = TempDir::new("metrics-smtp-mail");
    let (mut smtp, addr, metrics) = start_with_metrics(
        "smtp",
        &[
            "--cert",
            c.to_str().unwrap(),
            "--key",
            k.to_str().unwrap(),
            "--maildir",
            maildir.path().to_str().unwrap(),
        ],
    );
    // One session: greeting, QUIT, the server's 221 and close.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut greeting = String::new();
    r.read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("220 "), "{greeting}");
    s.write_all(b"QUIT\r\n").unwrap();
    let mut rest = String::new();
    r.read_to_string(&mut rest).expect("221, then close");
    assert!(rest.starts_with("221 "), "{rest}");
    let end = Instant::now() + LIMIT;
    let (text, m) = loop {
        let text = scrape(metrics);
        let m = samples(&text);
        if family_sum(&m, "netactor_connections_closed_total") == 1 {
            break (text, m);
        }
        assert!(Instant::now() < end, "the session did not close:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(value(&m, "netactor_connections_accepted_total"), 1);
    assert_eq!(value(&m, "netactor_read_bytes_total"), 6);
    assert_eq!(
        value(&m, "netactor_written_bytes_total"),
        (greeting.len() + rest.len()) as u64
    );
    promtool_check(&text);
    smtp.signal(libc::SIGTERM);
    let status = smtp.wait_timeout(LIMIT).expect("smtp exits after SIGTERM");
    assert!(status.success(), "{status}");
}
