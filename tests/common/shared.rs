//! What both helper modules, `common` and `tls_support`, offer: the
//! loopback address, a reactor, the example binaries.

#![allow(dead_code)] // each test binary uses a different subset

use netactor::Reactor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The loopback address with port 0 (the kernel picks a port).
pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A reactor with `n` workers and a short shutdown timeout, so that a test
/// whose connections cannot flush fails fast instead of waiting 5 s.
pub fn reactor(n: usize) -> Reactor {
    Reactor::builder()
        .workers(n)
        .shutdown_timeout(Duration::from_secs(2))
        .build()
        .expect("reactor")
}

/// Path of a compiled example: `target/<profile>/examples/<name>`, found
/// next to the running test binary (`target/<profile>/deps/`).
pub fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "example binary {} is missing: build it first with `cargo build --release --example {name}` \
         (`cargo test --release` builds the examples before running tests)",
        p.display()
    );
    p
}
