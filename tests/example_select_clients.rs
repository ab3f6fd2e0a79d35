//! The plain-threads `select!` example runs to completion against its own
//! server and checks every answer itself (it exits non-zero on a mismatch).

#[path = "common/shared.rs"]
mod shared;

use shared::example_bin;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn select_clients_example_answers_every_request() {
    let bin = example_bin("select_clients");
    let mut child = Command::new(&bin)
        .args(["--connections", "64", "--lines", "10"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("select_clients did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = std::io::read_to_string(child.stdout.take().unwrap()).unwrap();
    assert!(status.success(), "exit {status}: {out}");
    assert!(
        out.contains("640 request/response pairs over 64 connections"),
        "{out}"
    );
}
