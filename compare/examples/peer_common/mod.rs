//! Shared by the `peer_*_echo` examples (the competitors in
//! `benches/echo_compare.rs`): the command line, the listening socket and the
//! TLS configuration, so every peer starts from the same settings as
//! `examples/echo.rs`.
//!
//! The mio peers' event loops are in [`mio_loop`].
//!
//! Command line: `--listen ADDR [--workers N] [--cert PEM --key PEM] [--stack KIB]`
//! (`peer_hyper_http` also takes `--pipeline-flush`).

#![allow(dead_code)] // each peer uses a different subset

pub mod mio_loop;

use rustls::ServerConfig;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::exit;
use std::sync::Arc;

/// Read size of every peer: one 64 KiB read takes a whole bulk window
/// (16 KiB × 4 in flight) in one system call.
pub const READ_SIZE: usize = 64 << 10;

/// Listen backlog, the same as netactor's and tokio's default, so 10 000
/// connects in a burst never overflow the accept queue of one peer only.
pub const BACKLOG: i32 = 1024;

/// Read buffer of the blocking peers (thread, may): smaller than
/// [`READ_SIZE`], as it lives per connection (on the heap) rather than per
/// worker.
pub const BLOCKING_BUF: usize = 16 << 10;

/// Parsed command line.
pub struct Args {
    pub listen: SocketAddr,
    pub workers: usize,
    pub tls: Option<Arc<ServerConfig>>,
    /// Thread (or coroutine) stack size in bytes, for the peers that have one.
    pub stack: Option<usize>,
    /// `--pipeline-flush`: hyper's `http1::Builder::pipeline_flush(true)`
    /// (only `peer_hyper_http` reads it).
    pub pipeline_flush: bool,
}

/// Parses the command line; prints usage and exits 2 on a bad one.
pub fn parse_args(name: &str) -> Args {
    match try_parse(name) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{name}: {e}");
            eprintln!(
                "usage: {name} --listen ADDR [--workers N] [--cert PEM --key PEM] [--stack KIB]"
            );
            exit(2);
        }
    }
}

fn try_parse(name: &str) -> Result<Args, String> {
    let mut listen = None;
    let mut workers = 2;
    let mut cert = None;
    let mut key = None;
    let mut stack = None;
    let mut pipeline_flush = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |flag: &str| it.next().ok_or(format!("{flag} needs a value"));
        match a.as_str() {
            "--listen" => {
                listen = Some(
                    val("--listen")?
                        .parse()
                        .map_err(|e| format!("--listen: {e}"))?,
                )
            }
            "--workers" => {
                workers = val("--workers")?
                    .parse()
                    .map_err(|e| format!("--workers: {e}"))?;
                if workers == 0 {
                    return Err("--workers must be at least 1".into());
                }
            }
            "--stack" => {
                let kib: usize = val("--stack")?
                    .parse()
                    .map_err(|e| format!("--stack: {e}"))?;
                stack = Some(kib << 10);
            }
            "--pipeline-flush" => pipeline_flush = true,
            "--cert" => cert = Some(val("--cert")?),
            "--key" => key = Some(val("--key")?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let tls = match (cert, key) {
        (Some(c), Some(k)) => Some(
            // The same configuration netactor's echo builds (same provider,
            // same defaults), so the TLS comparison measures I/O, not settings.
            netactor::tls::ServerBuilder::from_pem_files(&c, &k)
                .and_then(|b| b.build())
                .map_err(|e| format!("{name}: TLS configuration: {e}"))?,
        ),
        (None, None) => None,
        _ => return Err("--cert and --key go together".into()),
    };
    Ok(Args {
        listen: listen.ok_or("--listen ADDR is required")?,
        workers,
        tls,
        stack,
        pipeline_flush,
    })
}

/// A listening socket with `SO_REUSEADDR` and a backlog of [`BACKLOG`];
/// with `reuse_port` several can share one port (one per event loop).
pub fn listener(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

/// [`listener`] (no `SO_REUSEPORT`) in non-blocking mode, with its address,
/// for the event-loop peers; dies on an error.
pub fn nonblocking_listener(name: &str, addr: SocketAddr) -> (TcpListener, SocketAddr) {
    let l = listener(addr, false).unwrap_or_else(|e| die(name, "listen", e));
    l.set_nonblocking(true)
        .unwrap_or_else(|e| die(name, "set_nonblocking", e));
    let addr = l
        .local_addr()
        .unwrap_or_else(|e| die(name, "local_addr", e));
    (l, addr)
}

/// A multi-threaded tokio runtime with `workers` workers; dies on an error.
pub fn tokio_runtime(name: &str, workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap_or_else(|e| die(name, "runtime", e))
}

/// Accepts on `listener` forever, handing each connection to `serve`; an
/// accept error (EMFILE and friends) is reported and retried after 10 ms,
/// the connections already open keep being served.
pub async fn tokio_accept_loop(
    name: &str,
    listener: tokio::net::TcpListener,
    mut serve: impl FnMut(tokio::net::TcpStream),
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => serve(stream),
            Err(e) => {
                eprintln!("{name}: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Prints the readiness line the driver waits for.
pub fn announce(addr: SocketAddr) {
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();
}

/// Prints `what: err` and exits 1.
pub fn die(name: &str, what: &str, err: impl std::fmt::Display) -> ! {
    eprintln!("{name}: {what}: {err}");
    exit(1);
}

/// Echoes a blocking stream until EOF or an error.
pub fn echo_blocking<S: Read + Write>(mut s: S) {
    let mut buf = vec![0u8; BLOCKING_BUF];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// A blocking socket whose first byte can be waited for without taking it.
pub trait Peek: Read + Write {
    fn peek(&self, buf: &mut [u8]) -> std::io::Result<usize>;
}

impl Peek for std::net::TcpStream {
    fn peek(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::net::TcpStream::peek(self, buf)
    }
}

impl Peek for may::net::TcpStream {
    fn peek(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        may::net::TcpStream::peek(self, buf)
    }
}

/// One connection of a blocking peer: a TLS echo with `tls` (rustls'
/// blocking `StreamOwned`), else a plain one.
pub fn serve_blocking<S: Peek>(name: &str, stream: S, tls: Option<Arc<ServerConfig>>) {
    match tls {
        Some(cfg) => match rustls::ServerConnection::new(cfg) {
            Ok(conn) => echo_blocking(rustls::StreamOwned::new(conn, stream)),
            Err(e) => eprintln!("{name}: TLS: {e}"),
        },
        None => {
            // Allocate the buffer only once data comes: idle
            // connections then cost just their stack.
            let mut probe = [0u8; 1];
            if let Ok(1) = stream.peek(&mut probe) {
                echo_blocking(stream)
            }
        }
    }
}
