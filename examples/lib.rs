//! The netactor example programs live beside this file, one per `.rs`
//! (see Cargo.toml); this package has no library of its own. Run one from
//! the repository root: `cargo run --release --example echo -- --listen 127.0.0.1:0`.
