//! HTTP/1.1 plaintext server on hyper 1.x and tokio's multi-thread runtime,
//! a task per connection — a competitor in `benches/http_compare.rs`.
//!
//! ```text
//! cargo run --release -p netactor-compare --example peer_hyper_http -- --listen 127.0.0.1:0 [--workers N] [--pipeline-flush]
//! ```
//!
//! `GET /plaintext` → `Hello, World!` with `Server`, `Content-Type`,
//! `Content-Length` (from the body) and `Date` (hyper's own, cached once a
//! second); `/json` likewise; anything else `404`. `--pipeline-flush` turns
//! on `http1::Builder::pipeline_flush(true)`: hyper then keeps answering the
//! requests already buffered before it flushes, so pipelined responses
//! leave together (off by default in hyper).

#[path = "peer_common/mod.rs"]
mod common;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, SERVER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpListener;

const NAME: &str = "peer_hyper_http";

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (body, ctype, status): (&'static [u8], &'static str, StatusCode) = match req.uri().path() {
        "/plaintext" => (b"Hello, World!", "text/plain", StatusCode::OK),
        "/json" => (
            br#"{"message":"Hello, World!"}"#,
            "application/json",
            StatusCode::OK,
        ),
        _ => (b"", "text/plain", StatusCode::NOT_FOUND),
    };
    let mut rsp = Response::new(Full::new(Bytes::from_static(body)));
    *rsp.status_mut() = status;
    let h = rsp.headers_mut();
    h.insert(SERVER, HeaderValue::from_static("hyper"));
    h.insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    Ok(rsp)
}

fn main() {
    let args = common::parse_args(NAME);
    let rt = common::tokio_runtime(NAME, args.workers);
    let mut builder = http1::Builder::new();
    builder.pipeline_flush(args.pipeline_flush);
    rt.block_on(async move {
        let (std_listener, addr) = common::nonblocking_listener(NAME, args.listen);
        let listener = TcpListener::from_std(std_listener)
            .unwrap_or_else(|e| common::die(NAME, "listener", e));
        common::announce(addr);
        common::tokio_accept_loop(NAME, listener, |stream| {
            let _ = stream.set_nodelay(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service_fn(handle));
            tokio::spawn(async move {
                // Errors (resets when wrk stops) just end the task.
                let _ = conn.await;
            });
        })
        .await;
    });
}
