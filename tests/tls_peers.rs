//! Interoperability with a real third-party TLS stack on this machine:
//! `openssl s_server` as the server for netactor clients and
//! `openssl s_client` as the client of netactor servers, TLS 1.2 and 1.3,
//! verification failures and client certificates.

mod tls_support;

use netactor::framing::Line;
use netactor::tls::{ClientBuilder, TlsSetup};
use netactor::{ConnectOptions, Ctx, Error, Event, ListenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;
use tls_support::*;

fn openssl() -> bool {
    let ok = have("openssl");
    if !ok {
        eprintln!("openssl not installed: test cannot run");
    }
    assert!(ok, "openssl is required for the interop tests");
    ok
}

/// `openssl s_server -rev` (echoes each line reversed), one connection.
fn s_server(dir: &TempDir, cert: &Cert, extra: &[&str]) -> (Proc, SocketAddr) {
    let c = dir.write("srv.pem", &cert.cert_pem);
    let k = dir.write("srv.key", &cert.key_pem);
    let mut p = Proc::spawn(
        Command::new("openssl")
            .args(["s_server", "-accept", "0", "-rev", "-naccept", "1"])
            .arg("-cert")
            .arg(&c)
            .arg("-key")
            .arg(&k)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut out = BufReader::new(p.child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "s_server exited");
        if let Some(a) = line.trim().strip_prefix("ACCEPT ") {
            let port: u16 = a.rsplit(':').next().unwrap().parse().unwrap();
            std::thread::spawn(move || {
                let mut sink = Vec::new();
                let _ = out.read_to_end(&mut sink);
            });
            return (p, SocketAddr::from(([127, 0, 0, 1], port)));
        }
    }
}

fn reversed_echo(cfg: std::sync::Arc<netactor::tls::ClientConfig>, addr: SocketAddr) -> Vec<Event> {
    let r = reactor(1);
    let (tx, rx) = netactor::event_channel(64);
    let conn = r
        .connect(
            addr,
            ConnectOptions::new().tls(cfg, Some("localhost".try_into().unwrap())),
            tx,
        )
        .unwrap();
    let _ = conn.write(&b"hello openssl\n"[..]);
    if let Ok(reply) = conn.push_read(Line::new()) {
        if let Ok(l) = reply.recv_timeout(WAIT) {
            assert_eq!(&l.line[..], b"lssnepo olleh");
            let _ = conn.close();
        }
    }
    until_closed(&rx)
}

#[test]
fn netactor_client_against_openssl_s_server_tls13_and_tls12() {
    if !openssl() {
        return;
    }
    let pki = Pki::new();
    for version in ["-tls1_3", "-tls1_2"] {
        let dir = TempDir::new("s_server");
        let (_srv, addr) = s_server(&dir, &pki.server(), &[version]);
        let evs = reversed_echo(pki.client_config(), addr);
        assert!(fatal_error(&evs).is_none(), "{version}: {evs:?}");
        assert!(evs.iter().any(|e| matches!(e, Event::TlsEstablished)));
    }
}

#[test]
fn netactor_client_rejects_an_untrusted_openssl_server() {
    if !openssl() {
        return;
    }
    let pki = Pki::new();
    let dir = TempDir::new("s_server_bad");
    let (_srv, addr) = s_server(&dir, &self_signed(), &[]);
    let evs = reversed_echo(pki.client_config(), addr);
    match fatal_error(&evs) {
        Some(Error::Tls(e)) => assert!(e.is_certificate(), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn netactor_client_certificate_accepted_by_openssl() {
    if !openssl() {
        return;
    }
    let pki = Pki::new();
    let dir = TempDir::new("s_server_mtls");
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let ca = ca.to_str().unwrap().to_string();
    let me = pki.client("netactor-client");
    let with_cert = ClientBuilder::new()
        .ca_pem(pki.ca_pem.as_bytes())
        .unwrap()
        .client_cert_pem(me.cert_pem.as_bytes(), me.key_pem.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let (_srv, addr) = s_server(
        &dir,
        &pki.server(),
        &["-Verify", "2", "-CAfile", &ca, "-verify_return_error"],
    );
    let evs = reversed_echo(with_cert, addr);
    assert!(fatal_error(&evs).is_none(), "{evs:?}");
    // Without a certificate openssl refuses us.
    let dir2 = TempDir::new("s_server_mtls2");
    let (_srv2, addr2) = s_server(
        &dir2,
        &pki.server(),
        &["-Verify", "2", "-CAfile", &ca, "-verify_return_error"],
    );
    let evs = reversed_echo(pki.client_config(), addr2);
    assert!(fatal_error(&evs).is_some(), "{evs:?}");
}

/// A netactor TLS server answering one line with `echo: <line>`, reporting
/// the negotiated version and errors.
fn line_server(
    r: &netactor::Reactor,
    cfg: std::sync::Arc<netactor::tls::ServerConfig>,
) -> (netactor::Listener, crossbeam_channel::Receiver<String>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let l = r
        .listen_with(any_port(), ListenOptions::new().tls(cfg), move |ctx| {
            ctx.set_streaming(Some(Line::new()));
            let tx = tx.clone();
            move |ctx: &mut Ctx<'_>, ev: Event| match ev {
                Event::TlsEstablished => {
                    let _ = tx.send(format!("{:?}", ctx.tls_protocol_version().unwrap()));
                }
                Event::Read(f) => {
                    let line = String::from_utf8_lossy(f.bytes().unwrap()).into_owned();
                    ctx.write(format!("echo: {line}\n")).unwrap();
                    let _ = ctx.shutdown();
                }
                Event::Error { error, .. } => {
                    let _ = tx.send(format!("error: {error}"));
                }
                Event::Eof => ctx.close(),
                _ => {}
            }
        })
        .unwrap();
    (l, rx)
}

fn s_client(
    addr: SocketAddr,
    ca: &std::path::Path,
    extra: &[&str],
    input: &[u8],
) -> (bool, String) {
    let mut p = Proc::spawn(
        Command::new("openssl")
            .args(["s_client", "-connect", &addr.to_string(), "-quiet"])
            .args(["-verify_return_error", "-verify_hostname", "localhost"])
            .args(["-servername", "localhost"])
            .arg("-CAfile")
            .arg(ca)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    p.child.stdin.take().unwrap().write_all(input).unwrap();
    let mut out = String::new();
    let mut stdout = p.child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let st = p
        .wait_timeout(Duration::from_secs(10))
        .expect("s_client hung");
    (st.success(), reader.join().unwrap())
}

#[test]
fn openssl_s_client_against_netactor_server_tls13_and_tls12() {
    if !openssl() {
        return;
    }
    let pki = Pki::new();
    let dir = TempDir::new("s_client");
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let r = reactor(2);
    let (l, rx) = line_server(&r, pki.server().server_config());
    for (flag, want) in [("-tls1_3", "TLSv1_3"), ("-tls1_2", "TLSv1_2")] {
        let (_ok, out) = s_client(l.local_addr(), &ca, &[flag], b"ping\n");
        assert_eq!(out, "echo: ping\n", "{flag}");
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), want);
    }
}

#[test]
fn openssl_s_client_rejecting_our_certificate_is_reported_clearly() {
    if !openssl() {
        return;
    }
    let pki = Pki::new();
    let dir = TempDir::new("s_client_bad");
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let r = reactor(1);
    let (l, rx) = line_server(&r, self_signed().server_config());
    let (ok, out) = s_client(l.local_addr(), &ca, &[], b"ping\n");
    assert!(!ok);
    assert!(out.is_empty(), "{out:?}");
    let msg = rx.recv_timeout(WAIT).unwrap();
    assert!(msg.contains("rejected the certificate"), "{msg}");
}

#[test]
fn starttls_setup_helper_for_ip_literals() {
    // TlsSetup::client_for accepts DNS names and IP literals, rejects junk.
    let cfg = Pki::new().client_config();
    assert!(TlsSetup::client_for(cfg.clone(), "mail.example.com").is_ok());
    assert!(TlsSetup::client_for(cfg.clone(), "127.0.0.1").is_ok());
    assert!(TlsSetup::client_for(cfg.clone(), "::1").is_ok());
    assert!(matches!(
        TlsSetup::client_for(cfg, "bad name!"),
        Err(Error::InvalidInput(_))
    ));
}
