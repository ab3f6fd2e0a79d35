//! The ncat example against real servers: plaintext and TLS, byte-exact
//! binary transfer, exit when the peer closes, verification failures that
//! send nothing, `--servername`, IP literals, `--insecure`, and openssl's
//! s_server as the peer.

mod tls_support;

use netactor::framing::Raw;
use netactor::{Ctx, Event, ListenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;
use tls_support::*;

struct Run {
    ok: bool,
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs ncat with `input` on stdin; `close_stdin` false keeps it open.
fn ncat(args: &[&str], input: &[u8], close_stdin: bool) -> Run {
    let mut p = Proc::spawn(
        Command::new(example_bin("ncat"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut stdin = p.child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
        if !close_stdin {
            // Hold stdin open until ncat has exited (the write end dies with us).
            std::thread::sleep(Duration::from_secs(15));
        }
    });
    let mut out = p.child.stdout.take().unwrap();
    let mut err = p.child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let st = p
        .wait_timeout(Duration::from_secs(10))
        .expect("ncat did not exit within 10 s");
    if close_stdin {
        feeder.join().unwrap();
    }
    Run {
        ok: st.success(),
        code: st.code(),
        stdout: o.join().unwrap(),
        stderr: e.join().unwrap(),
    }
}

/// A std TCP server for one connection running `f`.
fn std_server(f: impl FnOnce(std::net::TcpStream) + Send + 'static) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        f(s)
    });
    addr
}

#[test]
fn exits_zero_when_the_peer_closes_even_with_stdin_open() {
    let addr = std_server(|s| {
        let mut r = BufReader::new(&s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "hello\n");
        (&s).write_all(b"world\n").unwrap();
        // and close
    });
    let run = ncat(&["--connect", &addr.to_string()], b"hello\n", false);
    assert!(run.ok, "{:?} {}", run.code, run.stderr);
    assert_eq!(run.stdout, b"world\n");
}

#[test]
fn binary_data_is_byte_exact_both_ways() {
    let data = random_bytes(2 << 20, 11);
    let expect = data.clone();
    let addr = std_server(move |mut s| {
        // Echo until the client's half-close, then close.
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).unwrap();
        }
    });
    let run = ncat(&["--connect", &addr.to_string()], &data, true);
    assert!(run.ok, "{:?} {}", run.code, run.stderr);
    assert!(
        run.stdout == expect,
        "stdout differs ({} bytes)",
        run.stdout.len()
    );
}

/// A netactor TLS echo server; reports whether any application data arrived.
fn tls_echo(
    cert: &Cert,
) -> (
    netactor::Reactor,
    netactor::Listener,
    crossbeam_channel::Receiver<usize>,
) {
    let r = reactor(1);
    let (tx, rx) = crossbeam_channel::unbounded();
    let l = r
        .listen_with(
            any_port(),
            ListenOptions::new()
                .options(
                    netactor::Options::new()
                        .wbuf_max(16 << 20)
                        .rbuf_max(16 << 20),
                )
                .tls(cert.server_config()),
            move |ctx| {
                ctx.set_streaming(Some(Raw));
                let tx = tx.clone();
                let mut got = 0usize;
                move |ctx: &mut Ctx<'_>, ev: Event| match ev {
                    Event::Read(f) => {
                        let b = f.into_bytes().unwrap();
                        got += b.len();
                        let _ = ctx.write(b);
                    }
                    Event::Eof => {
                        let _ = ctx.shutdown();
                    }
                    Event::Closed => {
                        let _ = tx.send(got);
                    }
                    _ => {}
                }
            },
        )
        .unwrap();
    (r, l, rx)
}

/// Runs ncat with `--connect` to `l`, `--tls` and then `extra`.
fn ncat_tls(l: &netactor::Listener, extra: &[&str], input: &[u8], close_stdin: bool) -> Run {
    let addr = l.local_addr().to_string();
    let mut args = vec!["--connect", addr.as_str(), "--tls"];
    args.extend_from_slice(extra);
    ncat(&args, input, close_stdin)
}

#[test]
fn tls_with_ca_round_trips_binary_data() {
    let pki = Pki::new();
    let dir = TempDir::new("ncat-tls");
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let (_r, l, got) = tls_echo(&pki.server());
    let data = random_bytes(1 << 20, 12);
    // Host part of --connect is an IP literal: checked against the IP SAN.
    let run = ncat_tls(&l, &["--ca", ca.to_str().unwrap()], &data, true);
    assert!(run.ok, "{:?} {}", run.code, run.stderr);
    assert!(run.stdout == data);
    assert_eq!(got.recv_timeout(WAIT).unwrap(), data.len());
}

fn assert_verification_failure(run: &Run, got: &crossbeam_channel::Receiver<usize>) {
    assert!(!run.ok, "should fail: {}", run.stderr);
    assert_ne!(run.code, Some(0));
    assert!(
        run.stderr.contains("certificate") && run.stderr.contains("verification failed"),
        "unclear message: {}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
    assert_eq!(
        got.recv_timeout(WAIT).unwrap(),
        0,
        "application data was sent"
    );
}

#[test]
fn verification_failures_send_nothing() {
    let pki = Pki::new();
    let dir = TempDir::new("ncat-bad");
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let ca = ca.to_str().unwrap();
    let cases: [(Cert, &[&str]); 5] = [
        // Untrusted (self-signed) server.
        (self_signed(), &["--ca", ca]),
        // Trusted CA, wrong name.
        (
            pki.server(),
            &["--ca", ca, "--servername", "mail.example.com"],
        ),
        // IP literal not among the certificate's IP SANs.
        (pki.server_for(&["localhost"]), &["--ca", ca]),
        // Expired.
        (pki.expired_server(), &["--ca", ca]),
        // No --ca: the platform roots do not know our private CA.
        (pki.server(), &[]),
    ];
    for (cert, extra) in cases {
        let (_r, l, got) = tls_echo(&cert);
        let run = ncat_tls(&l, extra, b"secret\n", false);
        assert_verification_failure(&run, &got);
    }
}

#[test]
fn servername_and_insecure() {
    let pki = Pki::new();
    let dir = TempDir::new("ncat-name");
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let ca = ca.to_str().unwrap();
    // A DNS-only certificate, reached by IP, verified by --servername.
    let (_r, l, _got) = tls_echo(&pki.server_for(&["localhost"]));
    let run = ncat_tls(
        &l,
        &["--ca", ca, "--servername", "localhost"],
        b"named\n",
        true,
    );
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(run.stdout, b"named\n");
    // --insecure accepts a self-signed server, loudly.
    let (_r, l, _got) = tls_echo(&self_signed());
    let run = ncat_tls(&l, &["--insecure"], b"anyway\n", true);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(run.stdout, b"anyway\n");
    assert!(run.stderr.contains("NOT verified"), "{}", run.stderr);
    // Connecting by host name: "localhost" is the name checked.
    let port = l.local_addr().port();
    let (_r2, l2, _got2) = tls_echo(&pki.server_for(&["localhost"]));
    let port2 = l2.local_addr().port();
    assert_ne!(port, port2);
    let run = ncat(
        &[
            "--connect",
            &format!("localhost:{port2}"),
            "--tls",
            "--ca",
            ca,
        ],
        b"by name\n",
        true,
    );
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(run.stdout, b"by name\n");
}

#[test]
fn against_openssl_s_server() {
    assert!(have("openssl"), "openssl is required");
    let pki = Pki::new();
    let cert = pki.server();
    let dir = TempDir::new("ncat-openssl");
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let c = dir.write("c.pem", &cert.cert_pem);
    let k = dir.write("k.pem", &cert.key_pem);
    let mut srv = Proc::spawn(
        Command::new("openssl")
            .args(["s_server", "-accept", "0", "-rev", "-naccept", "1", "-cert"])
            .arg(&c)
            .arg("-key")
            .arg(&k)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut out = BufReader::new(srv.child.stdout.take().unwrap());
    let mut line = String::new();
    let port = loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0);
        if let Some(a) = line.trim().strip_prefix("ACCEPT ") {
            break a.rsplit(':').next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
    });
    let mut p = Proc::spawn(
        Command::new(example_bin("ncat"))
            .args(["--connect", &format!("127.0.0.1:{port}"), "--tls", "--ca"])
            .arg(&ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut stdin = p.child.stdin.take().unwrap();
    stdin.write_all(b"hello s_server\n").unwrap();
    let mut r = BufReader::new(p.child.stdout.take().unwrap());
    let mut got = String::new();
    r.read_line(&mut got).unwrap();
    assert_eq!(got, "revres_s olleh\n");
    drop(stdin);
    drop(srv); // kill s_server: ncat sees the connection end and exits
    let st = p.wait_timeout(Duration::from_secs(10)).expect("ncat hung");
    let _ = st;
}
