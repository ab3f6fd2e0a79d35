//! Echo server on `may` stackful coroutines, one coroutine per connection
//! with blocking-style sockets — a competitor in `benches/echo_compare.rs`.
//!
//! ```text
//! cargo run --release --example peer_may_echo -- --listen 127.0.0.1:0 [--workers N] [--cert PEM --key PEM] [--stack KIB]
//! ```
//!
//! Worker pinning is turned off: no other peer pins its threads, and on a
//! machine shared with the load generator a pinned worker cannot move away
//! from a busy core. TLS uses rustls' blocking `StreamOwned` over may's
//! coroutine-aware `TcpStream`.

#[path = "peer_common/mod.rs"]
mod common;

const NAME: &str = "peer_may_echo";
/// Coroutine stack when TLS is on (see `main`).
const TLS_STACK: usize = 256 << 10;

fn main() {
    let args = common::parse_args(NAME);
    let cfg = may::config();
    cfg.set_workers(args.workers);
    cfg.set_worker_pin(false);
    // may's default coroutine stack is 32 KiB; a TLS handshake (post-quantum
    // key exchange in aws-lc) needs more, and an overflow is a SIGSEGV.
    let stack = args.stack.or(args.tls.as_ref().map(|_| TLS_STACK));
    if let Some(stack) = stack {
        // may counts the stack in machine words.
        cfg.set_stack_size(stack / std::mem::size_of::<usize>());
    }
    let listener =
        may::net::TcpListener::bind(args.listen).unwrap_or_else(|e| common::die(NAME, "listen", e));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| common::die(NAME, "local_addr", e));
    let tls = args.tls.clone();
    let acceptor = may::go!(move || {
        common::announce(addr);
        loop {
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) => {
                    eprintln!("{NAME}: accept: {e}");
                    may::coroutine::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let tls = tls.clone();
            may::go!(move || common::serve_blocking(NAME, stream, tls));
        }
    });
    let _ = acceptor.join();
}
