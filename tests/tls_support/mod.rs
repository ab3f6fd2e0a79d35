//! Helpers shared by the TLS, smtp and ncat test files: a private PKI made
//! with rcgen at test time, temp dirs, bounded event waits, the example
//! binaries and third-party tools (openssl, curl, python3).
//!
//! Every wait has a deadline, so a bug fails a test instead of hanging it.

#![allow(dead_code)] // each test binary uses a different subset

// Also loaded by `common`: a test binary with both holds two copies.
#[allow(clippy::duplicate_mod)]
#[path = "../common/shared.rs"]
mod shared;
#[allow(unused_imports)] // each test binary uses a different subset
pub use shared::{any_port, example_bin, reactor};

use crossbeam_channel::Receiver;
use netactor::tls::{ClientBuilder, ClientConfig, ServerBuilder, ServerConfig};
use netactor::{
    ConnId, Connection, Event, ListenOptions, Listener, Options, Reactor, Sink, Target,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::ServerName;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Upper bound for "this should happen promptly" waits.
pub const WAIT: Duration = Duration::from_secs(10);

/// A certificate with its key, as PEM.
#[derive(Clone)]
pub struct Cert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Cert {
    pub fn server_config(&self) -> Arc<ServerConfig> {
        ServerBuilder::from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
            .unwrap()
            .build()
            .unwrap()
    }
}

/// A private CA plus the leaf certificates tests need.
pub struct Pki {
    pub ca_pem: String,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

impl Pki {
    pub fn new() -> Pki {
        Self::named("netactor test CA")
    }

    pub fn named(cn: &str) -> Pki {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            ca_params: p,
            ca_key: key,
        }
    }

    fn leaf(&self, names: &[&str], client: bool, expired: bool) -> Cert {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("client"),
        );
        p.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = p.signed_by(&key, &issuer).unwrap();
        Cert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn server(&self) -> Cert {
        self.leaf(&["localhost", "127.0.0.1"], false, false)
    }

    pub fn server_for(&self, names: &[&str]) -> Cert {
        self.leaf(names, false, false)
    }

    pub fn expired_server(&self) -> Cert {
        self.leaf(&["localhost", "127.0.0.1"], false, true)
    }

    pub fn client(&self, name: &str) -> Cert {
        self.leaf(&[name], true, false)
    }

    /// A verifying client config trusting only this CA.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        ClientBuilder::new()
            .ca_pem(self.ca_pem.as_bytes())
            .unwrap()
            .build()
            .unwrap()
    }
}

/// A netactor TLS server on any port with `opts` and a certificate from `pki`.
pub fn tls_listener(r: &Reactor, pki: &Pki, opts: Options) -> Listener {
    r.listen(
        any_port(),
        ListenOptions::new()
            .options(opts)
            .tls(pki.server().server_config()),
    )
    .unwrap()
}

/// [`tls_listener`] whose connections get their handlers from `factory`.
pub fn tls_listener_with<F, H>(r: &Reactor, pki: &Pki, opts: Options, factory: F) -> Listener
where
    F: Fn(&mut netactor::Ctx<'_>) -> H + Send + Sync + 'static,
    H: netactor::Handler,
{
    r.listen_with(
        any_port(),
        ListenOptions::new()
            .options(opts)
            .tls(pki.server().server_config()),
        factory,
    )
    .unwrap()
}

/// A netactor TLS client of `target`, verifying the server's certificate
/// against `pki` for the host of `target`.
pub fn tls_connect(
    r: &Reactor,
    pki: &Pki,
    target: impl Into<Target>,
    sink: impl Into<Sink>,
) -> Connection {
    r.connect(
        target,
        netactor::ConnectOptions::new().tls(pki.client_config(), None),
        sink,
    )
    .unwrap()
}

/// An independent client session: rustls, for `localhost`, trusting `pki`.
pub fn rustls_session(pki: &Pki) -> rustls::ClientConnection {
    rustls::ClientConnection::new(
        pki.client_config(),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap()
}

/// [`rustls_session`] over `sock`, as a blocking stream.
pub fn rustls_stream(
    pki: &Pki,
    sock: TcpStream,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    rustls::StreamOwned::new(rustls_session(pki), sock)
}

/// [`rustls_stream`] over a new connection to `addr` whose reads and writes
/// time out after [`WAIT`].
pub fn rustls_client(
    pki: &Pki,
    addr: SocketAddr,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    rustls_stream(pki, s)
}

/// Drives the handshake of a blocking rustls stream (either side) to its end.
pub fn finish_handshake<C, S>(tls: &mut rustls::StreamOwned<C, TcpStream>)
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData,
{
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
}

/// One `\r\n`-terminated line (with its `\r\n`), read a byte at a time so
/// nothing after it is consumed; panics on EOF before it.
pub fn read_line(s: &mut impl Read) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !out.ends_with(b"\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "EOF after {out:?}");
        out.push(b[0]);
    }
    String::from_utf8(out).unwrap()
}

/// A self-signed certificate for localhost (trusted by nobody).
pub fn self_signed() -> Cert {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    Cert {
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "netactor-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, data: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The next event on `rx`, or panic after `timeout`.
pub fn next_event(rx: &Receiver<(ConnId, Event)>) -> Event {
    match rx.recv_timeout(WAIT) {
        Ok((_, ev)) => ev,
        Err(e) => panic!("no event within {WAIT:?}: {e}"),
    }
}

/// Waits for the first event matching `pred`; returns it and those skipped.
pub fn wait_event(
    rx: &Receiver<(ConnId, Event)>,
    mut pred: impl FnMut(&Event) -> bool,
) -> (Event, Vec<Event>) {
    let end = Instant::now() + WAIT;
    let mut skipped = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((_, ev)) if pred(&ev) => return (ev, skipped),
            Ok((_, ev)) => skipped.push(ev),
            Err(_) => panic!("expected event not seen within {WAIT:?}; got {skipped:?}"),
        }
    }
}

/// Collects events until `Closed` (inclusive).
pub fn until_closed(rx: &Receiver<(ConnId, Event)>) -> Vec<Event> {
    let (last, mut before) = wait_event(rx, |e| matches!(e, Event::Closed));
    before.push(last);
    before
}

/// The fatal error among `events`, if any.
pub fn fatal_error(events: &[Event]) -> Option<&netactor::Error> {
    events.iter().find_map(|e| match e {
        Event::Error { error, fatal: true } => Some(error),
        _ => None,
    })
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// Whether an external tool is on PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A child process killed on drop (so a failing test leaves nothing behind).
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child }
    }

    /// Waits for exit at most `limit`; `None` if still running.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts an example with stdout piped and waits for `listening on IP:PORT`.
pub fn start_server(bin: &Path, args: &[&str]) -> (Proc, SocketAddr) {
    let mut p = Proc::spawn(
        Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let out = p.child.stdout.take().unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining so the child never blocks on a full pipe.
        let mut sink = Vec::new();
        let _ = r.read_to_end(&mut sink);
    });
    let line = rx
        .recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("{} printed no `listening on` line", bin.display()));
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (p, addr)
}
