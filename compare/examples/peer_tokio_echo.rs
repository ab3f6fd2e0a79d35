//! Echo server on tokio's multi-thread runtime, one task per connection
//! (tokio-rustls for TLS) — a competitor in `benches/echo_compare.rs`.
//!
//! ```text
//! cargo run --release --example peer_tokio_echo -- --listen 127.0.0.1:0 [--workers N] [--cert PEM --key PEM]
//! ```
//!
//! Written the way a careful tokio user would: the task waits for the first
//! byte (`peek`) before it allocates its read buffer, so an idle connection
//! costs only its task and socket, and `read().await` lets tokio skip the
//! extra `read` that would only return `WouldBlock` after a short read.

#[path = "peer_common/mod.rs"]
mod common;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const NAME: &str = "peer_tokio_echo";

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> std::io::Result<()> {
    let mut buf = vec![0u8; common::READ_SIZE];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n]).await?;
        // A no-op for plain TCP; pushes out any TLS records still queued.
        s.flush().await?;
    }
}

/// Plain TCP: an idle connection holds no buffer, only its task and socket.
async fn serve_plain(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    // Wait for the first byte before allocating the buffer. (`readable()`
    // would not do: it reports a freshly accepted socket as ready at once.)
    let mut probe = [0u8; 1];
    if let Ok(1) = stream.peek(&mut probe).await {
        // Errors (resets when the load generator stops) just end the task.
        let _ = echo(stream).await;
    }
}

/// TLS: a separate task type, so plain connections do not carry the size
/// of a TLS handshake in their future.
async fn serve_tls(stream: TcpStream, acceptor: tokio_rustls::TlsAcceptor) {
    let _ = stream.set_nodelay(true);
    if let Ok(s) = acceptor.accept(stream).await {
        let _ = echo(s).await;
    }
}

fn main() {
    let args = common::parse_args(NAME);
    let rt = common::tokio_runtime(NAME, args.workers);
    let tls = args.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    rt.block_on(async move {
        let (std_listener, addr) = common::nonblocking_listener(NAME, args.listen);
        let listener = TcpListener::from_std(std_listener)
            .unwrap_or_else(|e| common::die(NAME, "listener", e));
        common::announce(addr);
        common::tokio_accept_loop(NAME, listener, |stream| {
            match &tls {
                Some(a) => tokio::spawn(serve_tls(stream, a.clone())),
                None => tokio::spawn(serve_plain(stream)),
            };
        })
        .await;
    });
}
