//! Pipes and child processes as connections: read-only and write-only
//! ends, a child's stdin/stdout, EOF both ways, back-pressure on a full
//! pipe, timeouts, and the `subprocess` example.

mod common;

use common::*;
use netactor::framing::Line;
use netactor::{Error, Event, Inactivity, Options, TimeoutKind};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn a_read_only_pipe_delivers_lines_then_eof_and_refuses_writes() {
    let r = reactor(1);
    let (rd, mut wr) = std::io::pipe().unwrap();
    let (tx, events) = netactor::event_channel(16);
    let conn = r
        .adopt_pipes(Some(rd.into()), None, Options::new(), tx)
        .unwrap();
    wr.write_all(b"one\ntwo\n").unwrap();
    for want in [&b"one"[..], b"two"] {
        let l = conn
            .push_read(Line::new())
            .unwrap()
            .recv_timeout(WAIT)
            .unwrap();
        assert_eq!(&l.line[..], want);
    }
    assert!(matches!(conn.write(&b"x"[..]), Err(Error::BrokenPipe)));
    drop(wr);
    conn.set_streaming(Some(netactor::framing::Raw)).unwrap();
    let ev = wait_event(&events, WAIT, |e| matches!(e, Event::Eof));
    assert!(matches!(ev, Event::Eof));
    // Nothing more can happen: the connection closes itself.
    let evs = events_until_closed(&events, WAIT);
    assert!(matches!(evs.last(), Some(Event::Closed)));
}

#[test]
fn a_full_pipe_holds_writes_in_the_queue_and_shutdown_is_eof() {
    let r = reactor(1);
    let (mut rd, wr) = std::io::pipe().unwrap();
    let (tx, _events) = netactor::event_channel(16);
    let conn = r
        .adopt_pipes(None, Some(wr.into()), Options::new(), tx)
        .unwrap();
    let data = pattern(1 << 20); // far more than a pipe buffer (64 KiB)
    conn.write(data.clone()).unwrap();
    // The pipe takes what fits; the rest waits in the queue (nobody reads).
    assert!(wait_until(WAIT, || conn.stats().bytes_written > 0));
    std::thread::sleep(Duration::from_millis(100));
    let s = conn.stats();
    assert!(
        s.write_queued > 0 && s.bytes_written as usize + s.write_queued == data.len(),
        "{s:?}"
    );
    conn.shutdown().unwrap();
    let mut got = Vec::new();
    rd.read_to_end(&mut got).unwrap(); // EOF once everything is through
    assert!(got == data, "{} of {} bytes", got.len(), data.len());
}

#[test]
fn a_child_is_driven_line_by_line_with_timeouts() {
    let r = reactor(2);
    let mut child = Command::new("python3")
        .arg("-u")
        .arg("-c")
        .arg(
            "import sys\n\
             for l in sys.stdin:\n\
             \x20   l = l.strip()\n\
             \x20   if l != 'silence':\n\
             \x20       print(l.upper(), flush=True)\n",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let (tx, events) = netactor::event_channel(64);
    let conn = r.adopt_child(&mut child, Options::new(), tx).unwrap();
    for word in ["alpha", "beta", "gamma"] {
        conn.write(format!("{word}\n")).unwrap();
        let l = conn
            .push_read(Line::new())
            .unwrap()
            .recv_timeout(WAIT)
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&l.line), word.to_uppercase());
    }
    // No answer: the read timeout fires (non-fatal), the read stays queued.
    conn.set_timeout(Inactivity::Read, Some(Duration::from_millis(200)))
        .unwrap();
    let pending = conn.push_read(Line::new()).unwrap();
    conn.write(&b"silence\n"[..]).unwrap();
    let ev = wait_event(&events, WAIT, |e| matches!(e, Event::Timeout(_)));
    assert!(matches!(ev, Event::Timeout(TimeoutKind::Read)));
    conn.set_timeout(Inactivity::Read, None).unwrap();
    conn.write(&b"last\n"[..]).unwrap();
    let l = pending.recv_timeout(WAIT).unwrap();
    assert_eq!(&l.line[..], b"LAST");
    // Half-close: the child sees EOF on stdin, finishes, and its stdout ends.
    conn.shutdown().unwrap();
    conn.set_streaming(Some(netactor::framing::Raw)).unwrap();
    wait_event(&events, WAIT, |e| matches!(e, Event::Eof));
    assert!(child.wait().unwrap().success());
}

#[test]
fn only_pollable_descriptors_are_adopted() {
    let r = reactor(1);
    let f = tempfile_in_target();
    let file = std::fs::File::open(&f).unwrap();
    let (tx, _e) = netactor::event_channel(4);
    match r.adopt_pipes(Some(file.into()), None, Options::new(), tx) {
        Err(Error::InvalidInput(why)) => assert!(why.contains("cannot be polled"), "{why}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    let _ = std::fs::remove_file(f);
}

fn tempfile_in_target() -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("na-regular-{}", std::process::id()));
    std::fs::write(&p, b"regular file").unwrap();
    p
}

#[test]
fn the_subprocess_example_answers_line_by_line() {
    let bin = example_bin("subprocess");
    let mut p = Command::new(&bin)
        .args(["--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin
        .take()
        .unwrap()
        .write_all(b"first\nsecond\n")
        .unwrap();
    let mut out = String::new();
    p.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(p.wait().unwrap().success());
    assert_eq!(out, "< first\n< second\n");
}
