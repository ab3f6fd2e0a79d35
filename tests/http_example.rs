//! The http example, driven over real sockets by curl, a Python client and
//! plain std sockets: /plaintext, /json, 404, a correct Date, keep-alive,
//! 100 pipelined requests (one write, 1–7-byte fragments, POST bodies
//! between GETs), half-close, Connection: close, bad and over-long heads,
//! idle timeout, and SIGTERM under a pipelining client (complete responses
//! then a clean EOF, exit 0).

mod tls_support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls_support::*;

fn server(extra: &[&str]) -> (Proc, SocketAddr) {
    let mut args = vec!["--listen", "127.0.0.1:0", "--workers", "2"];
    args.extend_from_slice(extra);
    start_server(&example_bin("http"), &args)
}

fn tool(name: &str) {
    assert!(have(name), "{name} is required (.ci/run installs it)");
}

fn client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Reads until EOF; `Err` carries what was read before an error (a reset).
fn read_to_eof(s: &mut TcpStream) -> Result<Vec<u8>, (Vec<u8>, std::io::Error)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err((out, e)),
        }
    }
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The value of header `name` in a response head (case-insensitive name).
fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    resp.split("\r\n\r\n").next()?.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn curl_gets_plaintext_json_and_404_on_one_connection() {
    tool("curl");
    let (_srv, addr) = server(&[]);
    let base = format!("http://{addr}");
    let r = curl(&["-i", &format!("{base}/plaintext")]);
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert_eq!(header(&r, "content-type"), Some("text/plain"));
    assert_eq!(header(&r, "content-length"), Some("13"));
    assert_eq!(header(&r, "server"), Some("netactor"));
    assert!(r.ends_with("\r\n\r\nHello, World!"), "{r}");

    // The Date is IMF-fixdate, exactly as Python formats it, and now.
    let date = header(&r, "date").expect("Date").to_string();
    let check = Command::new("python3")
        .args([
            "-c",
            "import email.utils as u, sys, time\n\
             d = sys.argv[1]; t = u.parsedate_to_datetime(d).timestamp()\n\
             assert u.formatdate(t, usegmt=True) == d, (u.formatdate(t, usegmt=True), d)\n\
             assert abs(t - time.time()) < 60, (t, time.time())\n\
             print('ok')",
            &date,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        "ok",
        "Date {date:?}: {check:?}"
    );

    let r = curl(&["-i", &format!("{base}/json")]);
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert_eq!(header(&r, "content-type"), Some("application/json"));
    assert_eq!(header(&r, "content-length"), Some("27"));
    assert!(
        r.ends_with("\r\n\r\n{\"message\":\"Hello, World!\"}"),
        "{r}"
    );

    // Three transfers on one curl command line: one connection (keep-alive),
    // and the 404 in the middle leaves it usable.
    let r = curl(&[
        "-w",
        "%{http_code} %{num_connects}\\n",
        "-o",
        "/dev/null",
        &format!("{base}/plaintext"),
        "-o",
        "/dev/null",
        &format!("{base}/nothing/here"),
        "-o",
        "/dev/null",
        &format!("{base}/json"),
    ]);
    assert_eq!(r, "200 1\n404 0\n200 0\n");
}

fn python_client(addr: SocketAddr, mode: &str) {
    tool("python3");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/http_support/pipeline_client.py"
    );
    let out = Command::new("python3")
        .args([
            script,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            mode,
        ])
        .output()
        .expect("run python3");
    assert!(
        out.status.success() && out.stdout == b"ok 100\n",
        "{mode}: {out:?}"
    );
}

#[test]
fn python_pipelines_100_requests_in_one_write() {
    let (_srv, addr) = server(&[]);
    python_client(addr, "onewrite");
}

#[test]
fn python_pipelines_100_requests_in_1_to_7_byte_fragments() {
    let (_srv, addr) = server(&[]);
    python_client(addr, "fragments");
}

#[test]
fn half_close_is_answered_then_closed() {
    let (_srv, addr) = server(&[]);
    python_client(addr, "halfclose");
}

#[test]
fn connection_close_is_answered_and_nothing_after_it() {
    let (_srv, addr) = server(&[]);
    let mut s = client(addr);
    s.write_all(
        b"GET /json HTTP/1.1\r\n\r\n\
          GET /plaintext HTTP/1.1\r\nConnection: close\r\n\r\n\
          GET /json HTTP/1.1\r\n\r\n",
    )
    .unwrap();
    // The server closes by itself: no half-close from us.
    let got = String::from_utf8(read_to_eof(&mut s).expect("clean EOF")).unwrap();
    assert_eq!(got.matches("HTTP/1.1 ").count(), 2, "{got}");
    assert!(got.ends_with("Hello, World!"), "{got}");
    let last = &got[got.rfind("HTTP/1.1 ").unwrap()..];
    assert_eq!(header(last, "connection"), Some("close"), "{got}");

    // HTTP/1.0 closes by default and keeps alive on request.
    let mut s = client(addr);
    s.write_all(
        b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /plaintext HTTP/1.0\r\n\r\n",
    )
    .unwrap();
    let got = String::from_utf8(read_to_eof(&mut s).expect("clean EOF")).unwrap();
    assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 2, "{got}");
    assert_eq!(header(&got, "connection"), Some("keep-alive"), "{got}");
}

#[test]
fn bad_and_oversized_heads_get_400_or_431_then_close() {
    let (_srv, addr) = server(&[]);
    for (input, status) in [
        (
            &b"GET /plaintext HTTP/1.1\r\nno colon here\r\n\r\n"[..],
            "400",
        ),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
            "400",
        ),
        (b"POST /json HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "400"),
        (
            b"POST /json HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "501",
        ),
    ] {
        let mut s = client(addr);
        s.write_all(input).unwrap();
        let got = String::from_utf8_lossy(&read_to_eof(&mut s).expect("clean EOF")).into_owned();
        assert!(
            got.starts_with(&format!("HTTP/1.1 {status} ")),
            "{input:?} → {got}"
        );
        assert_eq!(header(&got, "connection"), Some("close"));
    }
    // A head that never ends: 431 once 8 KiB are buffered, then EOF — while
    // the client goes on sending (its bytes are dropped, not refused).
    let mut s = client(addr);
    s.write_all(b"GET /plaintext HTTP/1.1\r\n").unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let line = format!("X-Filler: {}\r\n", "a".repeat(1000));
        for _ in 0..1000 {
            if w.write_all(line.as_bytes()).is_err() {
                break;
            }
        }
        let _ = w.shutdown(std::net::Shutdown::Write);
    });
    let got = read_to_eof(&mut s).expect("clean EOF");
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 431 "), "{got}");
    assert_eq!(got.matches("HTTP/1.1").count(), 1, "{got}");
    writer.join().unwrap();
    // The server still serves.
    let mut s = client(addr);
    s.write_all(b"GET /plaintext HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let got = read_to_eof(&mut s).expect("clean EOF");
    assert!(got.starts_with(b"HTTP/1.1 200 OK"));
}

#[test]
fn idle_connections_are_closed_at_idle_timeout() {
    let (_srv, addr) = server(&["--idle-timeout", "1"]);
    let mut s = client(addr);
    s.write_all(b"GET /plaintext HTTP/1.1\r\n\r\n").unwrap();
    let start = Instant::now();
    let got = read_to_eof(&mut s).expect("clean EOF");
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert!(got.starts_with(b"HTTP/1.1 200 OK") && got.ends_with(b"Hello, World!"));
}

/// One /plaintext response: always the same length (the Date is fixed-width).
fn plaintext_response_len(addr: SocketAddr) -> usize {
    let mut s = client(addr);
    s.write_all(b"GET /plaintext HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let got = read_to_eof(&mut s).expect("clean EOF");
    // Without the `Connection: close` line the server sends.
    got.len() - "Connection: close\r\n".len()
}

#[test]
fn sigterm_answers_what_was_read_then_fin_and_exit_zero() {
    let (mut srv, addr) = server(&[]);
    let one = plaintext_response_len(addr);
    // An idle keep-alive connection, and one that pipelines without pause.
    let mut idle = client(addr);
    idle.write_all(b"GET /json HTTP/1.1\r\n\r\n").unwrap();
    let mut s = client(addr);
    let mut w = s.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let writer = std::thread::spawn(move || {
        let burst = b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n".repeat(64);
        let mut sent = 0u64;
        while !stop2.load(Ordering::Acquire) {
            if let Err(e) = w.write_all(&burst) {
                // Part of this burst may have gone out (and been answered).
                return (sent + 64, Some(e));
            }
            sent += 64;
        }
        (sent, None)
    });
    // Let responses flow, then SIGTERM mid-stream.
    let mut got = Vec::new();
    let mut buf = [0u8; 64 << 10];
    while got.len() < 2000 * one {
        let n = s.read(&mut buf).expect("read before SIGTERM");
        assert!(n > 0, "EOF before SIGTERM");
        got.extend_from_slice(&buf[..n]);
    }
    // Stop reading for a while: the server's write queue reaches its
    // pause mark, it stops reading, and the client's requests pile up in
    // the kernel buffers — the moment a close would answer with RST.
    std::thread::sleep(Duration::from_millis(500));
    srv.signal(libc::SIGTERM);
    let rest = read_to_eof(&mut s);
    stop.store(true, Ordering::Release);
    let _ = s.shutdown(std::net::Shutdown::Both);
    let (sent, write_error) = writer.join().unwrap();
    let rest = match rest {
        Ok(r) => r,
        Err((_, e)) => panic!("the pipelining client saw {e} instead of EOF"),
    };
    // A reset can pass for EOF when the writer's `send` takes the socket
    // error first; after our own shutdown the writer sees `BrokenPipe`.
    if let Some(e) = write_error.filter(|e| e.kind() == ErrorKind::ConnectionReset) {
        panic!("the server reset the connection: {e}");
    }
    got.extend_from_slice(&rest);
    // Whole responses only, every one complete, no more than were asked for.
    assert_eq!(
        got.len() % one,
        0,
        "a partial response ({} bytes)",
        got.len()
    );
    let n = got.len() / one;
    assert!(n as u64 <= sent, "{n} responses to {sent} requests");
    for (i, r) in got.chunks(one).enumerate() {
        assert!(
            r.starts_with(b"HTTP/1.1 200 OK\r\n") && r.ends_with(b"\r\n\r\nHello, World!"),
            "response {i} of {n}: {:?}",
            String::from_utf8_lossy(r)
        );
    }
    // The idle client got its answer and a FIN too.
    let got = read_to_eof(&mut idle).expect("idle client: clean EOF");
    assert!(got.ends_with(b"{\"message\":\"Hello, World!\"}"));
    // No longer accepting.
    if let Ok(mut late) = TcpStream::connect(addr) {
        late.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let _ = late.write_all(b"GET /plaintext HTTP/1.1\r\n\r\n");
        let mut b = [0u8; 64];
        assert!(
            matches!(late.read(&mut b), Ok(0) | Err(_)),
            "a connection made after SIGTERM was served"
        );
    }
    let st = srv
        .wait_timeout(Duration::from_secs(10))
        .expect("no exit within 10 s of SIGTERM");
    assert!(st.success(), "{st:?}");
}
