//! A minimal `ncat`: stdin to a TCP (or TLS) connection, the connection to
//! stdout, written with plain threads on netactor.
//!
//! ```text
//! cargo run --release --example ncat -- --connect HOST:PORT [--tls] [--ca PEM] \
//!     [--servername NAME] [--insecure]
//! cargo run --release --example ncat -- --connect unix:PATH [--tls --servername NAME ...]
//! ```
//!
//! With `--tls` the server is verified against `--ca` (or the platform's
//! roots) and the name from `--servername` (or the host part of
//! `--connect`; an IP literal is checked against the certificate's IP
//! SANs). A verification failure is reported on stderr and exits non-zero;
//! no byte of stdin is read, let alone sent, before the handshake has
//! succeeded. `--insecure` is the only way to skip verification.
//!
//! Exits 0 when the peer closes (even while stdin is still open). At the end
//! of stdin the sending side is shut down (close_notify + FIN under TLS) and
//! the program keeps printing until the peer closes.

use netactor::framing::Raw;
use netactor::tls::{ClientBuilder, ServerName};
use netactor::{ConnectOptions, Error, Event, Options, Reactor};
use std::io::{Read, Write};
use std::process::exit;
use std::time::Duration;

struct Args {
    connect: String,
    tls: bool,
    ca: Option<String>,
    servername: Option<String>,
    insecure: bool,
}

const USAGE: &str =
    "usage: ncat --connect HOST:PORT|unix:PATH [--tls] [--ca PEM] [--servername NAME] [--insecure]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        connect: String::new(),
        tls: false,
        ca: None,
        servername: None,
        insecure: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--connect" => a.connect = val(&arg)?,
            "--tls" => a.tls = true,
            "--ca" => a.ca = Some(val(&arg)?),
            "--servername" => a.servername = Some(val(&arg)?),
            "--insecure" => a.insecure = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if a.connect.is_empty() {
        return Err(format!("--connect HOST:PORT is required\n{USAGE}"));
    }
    if !a.tls && (a.ca.is_some() || a.servername.is_some() || a.insecure) {
        return Err("--ca, --servername and --insecure need --tls".into());
    }
    if a.insecure && a.ca.is_some() {
        return Err("--insecure and --ca contradict each other".into());
    }
    Ok(a)
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("ncat: {msg}");
    exit(1)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ncat: {e}");
            exit(2)
        }
    };
    let reactor = Reactor::builder()
        .workers(1)
        .build()
        .unwrap_or_else(|e| fail(format!("cannot start: {e}")));
    let opts = Options::new().low_water_mark(Some(256 << 10));
    let mut co = ConnectOptions::new().options(opts.clone());
    let mut unix_tls = None;
    let unix_path = args.connect.strip_prefix("unix:").map(str::to_string);
    if args.tls {
        let mut b = ClientBuilder::new();
        if args.insecure {
            eprintln!("ncat: warning: --insecure: the server's certificate is NOT verified");
            b = b.dangerous_accept_any_certificate();
        } else if let Some(ca) = &args.ca {
            b = b.ca_file(ca).unwrap_or_else(|e| fail(e));
        }
        let cfg = b.build().unwrap_or_else(|e| fail(e));
        let name = args.servername.as_ref().map(|n| {
            ServerName::try_from(n.clone())
                .unwrap_or_else(|e| fail(format!("bad --servername {n:?}: {e}")))
        });
        if unix_path.is_some() {
            // No host in a path: the name to verify must be given.
            let name = name.unwrap_or_else(|| fail("--tls over unix:PATH needs --servername"));
            unix_tls = Some(netactor::tls::TlsSetup::client(cfg, name));
        } else {
            co = co.tls(cfg, name);
        }
    }
    let (tx, rx) = netactor::event_channel(256);
    let conn = match &unix_path {
        // A Unix-domain socket connects at once (errors are returned here).
        Some(path) => reactor.connect_unix(path, opts, tx),
        None => reactor.connect(args.connect.as_str(), co, tx),
    }
    .unwrap_or_else(|e| fail(format!("cannot connect to {}: {e}", args.connect)));
    conn.set_streaming(Some(Raw)).unwrap_or_else(|e| fail(e));
    let connected_now = unix_path.is_some();
    if let Some(setup) = unix_tls {
        conn.starttls(setup).unwrap_or_else(|e| fail(e));
    }

    // The stdin pump starts only once the connection is usable: after the
    // TCP connect, or under TLS after the server has been verified.
    let (ready_tx, ready_rx) = crossbeam_channel::bounded::<()>(1);
    let (drain_tx, drain_rx) = crossbeam_channel::bounded::<()>(1);
    let writer = conn.clone();
    std::thread::spawn(move || {
        if ready_rx.recv().is_err() {
            return;
        }
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("ncat: reading stdin: {e}");
                    break;
                }
            };
            let data = bytes::Bytes::copy_from_slice(&buf[..n]);
            loop {
                match writer.write(data.clone()) {
                    Ok(()) => break,
                    // Queue full: wait for the connection to drain (backpressure).
                    Err(Error::NoSpace { .. }) => {
                        let _ = drain_rx.recv_timeout(Duration::from_millis(200));
                    }
                    Err(_) => return, // closed: the main thread reports why
                }
            }
        }
        // End of stdin: half-close, keep reading until the peer closes.
        let _ = writer.shutdown();
    });

    let mut ready = Some(ready_tx);
    if connected_now && !args.tls {
        if let Some(r) = ready.take() {
            let _ = r.send(());
        }
    }
    let mut stdout = std::io::stdout().lock();
    for (_, ev) in rx.iter() {
        match ev {
            Event::Connected { .. } if !args.tls => drop(ready.take().map(|r| r.send(()))),
            Event::TlsEstablished => drop(ready.take().map(|r| r.send(()))),
            Event::Read(f) => {
                if let Some(b) = f.bytes() {
                    if stdout.write_all(b).and_then(|_| stdout.flush()).is_err() {
                        exit(1);
                    }
                }
            }
            Event::Drain => {
                let _ = drain_tx.try_send(());
            }
            Event::Eof => {
                let _ = stdout.flush();
                exit(0);
            }
            Event::Error {
                error: Error::TlsTruncated,
                ..
            } => eprintln!(
                "ncat: warning: the server closed TLS without close_notify (data may be truncated)"
            ),
            Event::Error { error, fatal: true } => match &error {
                Error::Tls(e) if e.is_certificate() => {
                    fail(format!("TLS certificate verification failed: {e}"))
                }
                Error::Tls(e) => fail(format!("TLS handshake failed: {e}")),
                other => fail(other),
            },
            // Closed without Eof first: reset or local failure.
            Event::Closed => {
                let _ = stdout.flush();
                exit(1);
            }
            _ => {}
        }
    }
    fail("connection lost")
}
