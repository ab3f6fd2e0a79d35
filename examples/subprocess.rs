//! Drives a line-oriented subprocess through netactor, line by line, from a
//! plain thread: each line of this program's stdin is written to the
//! child's stdin, and the child's answer (one line) is awaited with a
//! timeout and printed.
//!
//! ```text
//! cargo run --release --example subprocess -- [--timeout SECS] -- CMD [ARGS...]
//! printf '1+2\n6*7\n' | cargo run --release --example subprocess -- -- python3 -u -c \
//!     'import sys
//! for l in sys.stdin: print(eval(l), flush=True)'
//! ```
//!
//! Prints `< ANSWER` per line. At the end of its stdin it closes the
//! child's stdin (the child sees EOF), waits for the child to finish and
//! exits with 0 if it did so successfully; a missing answer within the
//! timeout exits 1. The child must answer each line and flush (an
//! unbuffered tool: `cat`, `sed -u`, `python3 -u`, …).

use netactor::framing::Line;
use netactor::{Options, Reactor};
use std::io::{BufRead, Write};
use std::process::{exit, Command, ExitCode, Stdio};
use std::time::Duration;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut timeout = Duration::from_secs(10);
    let mut cmd = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--timeout" => {
                let v = args.next().and_then(|v| v.parse::<f64>().ok());
                let Some(secs) = v.filter(|s| *s > 0.0) else {
                    eprintln!("subprocess: --timeout needs a positive number of seconds");
                    return ExitCode::from(2);
                };
                timeout = Duration::from_secs_f64(secs);
            }
            "--" => {
                cmd.extend(args.by_ref());
            }
            other => {
                eprintln!("subprocess: unknown argument {other}");
                eprintln!("usage: subprocess [--timeout SECS] -- CMD [ARGS...]");
                return ExitCode::from(2);
            }
        }
    }
    let Some((prog, rest)) = cmd.split_first() else {
        eprintln!("usage: subprocess [--timeout SECS] -- CMD [ARGS...]");
        return ExitCode::from(2);
    };
    let reactor = Reactor::builder()
        .workers(1)
        .build()
        .unwrap_or_else(|e| fail(format!("cannot start: {e}")));
    let mut child = Command::new(prog)
        .args(rest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| fail(format!("cannot run {prog}: {e}")));
    let (tx, _events) = netactor::event_channel(64);
    let conn = reactor
        .adopt_child(&mut child, Options::new(), tx)
        .unwrap_or_else(|e| fail(e));
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap_or_else(|e| fail(format!("reading stdin: {e}")));
        conn.write(format!("{line}\n")).unwrap_or_else(|e| fail(e));
        // One answer per request, bounded by the timeout.
        let answer = conn.push_read(Line::new()).unwrap_or_else(|e| fail(e));
        match answer.recv_timeout(timeout) {
            Ok(l) => {
                let _ = writeln!(out, "< {}", String::from_utf8_lossy(&l.line));
                let _ = out.flush();
            }
            Err(netactor::ReplyTimeoutError::Failed(e)) => {
                fail(format!("{prog} did not answer {line:?}: {e}"))
            }
            Err(netactor::ReplyTimeoutError::Timeout) => {
                fail(format!("{prog} did not answer {line:?} within {timeout:?}"))
            }
        }
    }
    // End of input: the child sees EOF on its stdin.
    let _ = conn.shutdown();
    let status = child
        .wait()
        .unwrap_or_else(|e| fail(format!("waiting for {prog}: {e}")));
    drop(conn);
    reactor.shutdown();
    if status.success() {
        ExitCode::SUCCESS
    } else {
        eprintln!("subprocess: {prog} exited with {status}");
        ExitCode::from(1)
    }
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("subprocess: {msg}");
    exit(1)
}
