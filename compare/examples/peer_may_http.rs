//! HTTP/1.1 plaintext server on `may_minihttp` — its TechEmpower server
//! (the crate's `techempower_no_db` example, `/plaintext` and `/json`), a
//! competitor in `benches/http_compare.rs`.
//!
//! ```text
//! cargo run --release -p netactor-compare --example peer_may_http -- --listen 127.0.0.1:0 [--workers N]
//! ```
//!
//! may_minihttp writes `Server`, `Date` and `Content-Length` itself; the
//! handler adds `Content-Type`. Settings as in the TechEmpower entry (pool
//! capacity 500, 32 KiB coroutine stacks), except that worker pinning is off
//! as in `peer_may_echo`: no other peer pins its threads, and on a machine
//! shared with the load generator a pinned worker cannot move off a busy core.
//!
//! `HttpServiceFactory::start` binds the address itself and does not say
//! which port it got, so for port 0 a free port is found first (bind, read,
//! drop) and then handed to may_minihttp.

#[path = "peer_common/mod.rs"]
mod common;

use may_minihttp::{HttpService, HttpServiceFactory, Request, Response};
use std::io;

const NAME: &str = "peer_may_http";

struct Techempower;

impl HttpService for Techempower {
    fn call(&mut self, req: Request, rsp: &mut Response) -> io::Result<()> {
        match req.path() {
            "/plaintext" => {
                rsp.header("Content-Type: text/plain").body("Hello, World!");
            }
            "/json" => {
                rsp.header("Content-Type: application/json")
                    .body(r#"{"message":"Hello, World!"}"#);
            }
            _ => {
                rsp.status_code(404, "Not Found");
            }
        }
        Ok(())
    }
}

struct Factory;

impl HttpServiceFactory for Factory {
    type Service = Techempower;

    fn new_service(&self, _: usize) -> Techempower {
        Techempower
    }
}

fn main() {
    let args = common::parse_args(NAME);
    let cfg = may::config();
    cfg.set_workers(args.workers);
    cfg.set_worker_pin(false);
    cfg.set_pool_capacity(500);
    // In machine words: 32 KiB, as in the TechEmpower entry.
    cfg.set_stack_size(0x1000);
    let addr = if args.listen.port() == 0 {
        let probe = std::net::TcpListener::bind(args.listen)
            .unwrap_or_else(|e| common::die(NAME, "listen", e));
        probe
            .local_addr()
            .unwrap_or_else(|e| common::die(NAME, "local_addr", e))
    } else {
        args.listen
    };
    let server = Factory
        .start(addr)
        .unwrap_or_else(|e| common::die(NAME, "listen", e));
    common::announce(addr);
    let _ = server.join();
}
