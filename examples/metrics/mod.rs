//! The `--metrics ADDR` endpoint the example servers share (echo, smtp):
//! `GET /metrics` answered with [`netactor::Metrics::to_prometheus`], over
//! HTTP/1.1 served by netactor itself.
//!
//! The endpoint runs on a reactor of its own (one worker) rather than on the
//! server's: a scrape's own connection and bytes then never show up in the
//! numbers it reports (the totals are exactly the traffic served), and a
//! server whose workers are saturated still answers its scrapes — which is
//! when they matter most. The snapshot is taken on that worker from a
//! [`MetricsHandle`] of the served reactor: relaxed loads of per-worker
//! counters, nothing the served workers wait on.
//!
//! One request per connection (`Connection: close`): what Prometheus and
//! curl need, and nothing to get wrong about pipelining.

#![allow(dead_code)] // each example uses a different subset

use bytes::BytesMut;
use netactor::{Ctx, Event, Handler, ListenOptions, Listener, MetricsHandle, Options, Reactor};
use std::net::SocketAddr;
use std::time::Duration;

/// A request head larger than this is refused (431) and the connection closed.
const MAX_HEAD: usize = 8 << 10;

/// The running endpoint; dropping it stops it.
pub struct Endpoint {
    // Field order: the listener goes before its reactor.
    listener: Listener,
    reactor: Reactor,
}

impl Endpoint {
    /// The bound address (the port chosen for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Stops accepting and closes the endpoint's connections.
    pub fn shutdown(self) {
        drop(self.listener);
        self.reactor.shutdown();
    }
}

/// The `--metrics ADDR` option of an example server: nothing without it;
/// with it, serves and prints the contract line `metrics on IP:PORT`, or
/// says on stderr why it cannot (`Err`: the server exits 1).
pub fn serve_option(
    prog: &str,
    addr: Option<SocketAddr>,
    source: MetricsHandle,
) -> Result<Option<Endpoint>, ()> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    match serve(addr, source) {
        Ok(e) => {
            println!("metrics on {}", e.local_addr());
            Ok(Some(e))
        }
        Err(e) => {
            eprintln!("{prog}: cannot serve metrics on {addr}: {e}");
            Err(())
        }
    }
}

/// Serves `GET /metrics` for `source` on `addr`.
pub fn serve(addr: SocketAddr, source: MetricsHandle) -> std::io::Result<Endpoint> {
    let reactor = Reactor::builder()
        .workers(1)
        .shutdown_timeout(Duration::from_secs(1))
        .build()?;
    let opts = Options::new()
        .no_delay(true)
        .timeout(Some(Duration::from_secs(10)))
        .linger(Duration::from_secs(2));
    let listener = reactor.listen_with(addr, ListenOptions::new().options(opts), move |ctx| {
        // The head is parsed where it arrives, in the read buffer, and
        // parsed again whole when more of it comes: no copy of its own.
        ctx.set_read_in_place(true);
        Scrape {
            source: source.clone(),
            answered: false,
        }
    })?;
    Ok(Endpoint { listener, reactor })
}

struct Scrape {
    source: MetricsHandle,
    answered: bool,
}

impl Handler for Scrape {
    fn on_event(&mut self, ctx: &mut Ctx<'_>, event: Event) {
        if let Event::Eof | Event::Timeout(_) = event {
            ctx.close();
        }
    }

    fn on_read(&mut self, ctx: &mut Ctx<'_>, rbuf: &mut BytesMut) {
        if self.answered {
            // After the answer: ignored, the close is under way.
            rbuf.clear();
            return;
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(rbuf) {
            Ok(httparse::Status::Complete(_)) => {
                let (status, body) = match (req.method, req.path) {
                    (Some("GET" | "HEAD"), Some(p))
                        if p == "/metrics" || p.starts_with("/metrics?") =>
                    {
                        ("200 OK", self.source.snapshot().to_prometheus())
                    }
                    (Some("GET" | "HEAD"), _) => ("404 Not Found", "not found\n".into()),
                    _ => ("405 Method Not Allowed", "GET /metrics\n".into()),
                };
                let head_only = req.method == Some("HEAD");
                rbuf.clear();
                self.respond(ctx, status, body, head_only);
            }
            // An incomplete head stays in the buffer for the next arrival.
            Ok(httparse::Status::Partial) if rbuf.len() <= MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                rbuf.clear();
                self.respond(
                    ctx,
                    "431 Request Header Fields Too Large",
                    String::new(),
                    false,
                )
            }
            Err(_) => {
                rbuf.clear();
                self.respond(ctx, "400 Bad Request", String::new(), false)
            }
        }
    }
}

impl Scrape {
    fn respond(&mut self, ctx: &mut Ctx<'_>, status: &str, body: String, head_only: bool) {
        self.answered = true;
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = ctx.write(head);
        if !head_only {
            let _ = ctx.write(body);
        }
        // Flushes what was queued, then closes (within linger).
        ctx.close();
    }
}
