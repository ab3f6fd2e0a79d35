//! Echo server, one OS thread per connection with blocking std sockets —
//! the "no runtime at all" baseline for `benches/echo_compare.rs`.
//!
//! ```text
//! cargo run --release --example peer_thread_echo -- --listen 127.0.0.1:0 [--cert PEM --key PEM] [--stack KIB]
//! ```
//!
//! `--workers` is accepted and ignored (every connection has its own
//! thread). Threads get small stacks (`--stack`, default 64 KiB) so that
//! 10 000 connections fit. TLS uses rustls' blocking `StreamOwned`.

#[path = "peer_common/mod.rs"]
mod common;

use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const NAME: &str = "peer_thread_echo";
const DEFAULT_STACK: usize = 64 << 10;

fn main() {
    let args = common::parse_args(NAME);
    let listener =
        common::listener(args.listen, false).unwrap_or_else(|e| common::die(NAME, "listen", e));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| common::die(NAME, "local_addr", e));
    common::announce(addr);
    let stack = args.stack.unwrap_or(DEFAULT_STACK);
    let warned = Arc::new(AtomicBool::new(false));
    loop {
        let stream: TcpStream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                // EMFILE and friends: keep serving the connections we have.
                eprintln!("{NAME}: accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let tls = args.tls.clone();
        let spawned = std::thread::Builder::new()
            .stack_size(stack)
            .spawn(move || common::serve_blocking(NAME, stream, tls));
        if let Err(e) = spawned {
            // The connection is dropped (closed); say so once.
            if !warned.swap(true, Ordering::Relaxed) {
                eprintln!("{NAME}: cannot spawn a thread: {e}");
            }
        }
    }
}
