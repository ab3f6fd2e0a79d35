//! Finding the example binaries from a test (shared by `common` and
//! `tls_support`).

use std::path::PathBuf;

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
