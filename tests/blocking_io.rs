//! The blocking `std::io` view of a connection, with real crates and real
//! sockets: serde_json reading and writing through it, `BufRead::lines`,
//! read timeouts that lose nothing, EOF, and writes that wait for room.

mod common;

use common::*;
use netactor::{Error, Options, TimeoutKind};
use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

#[test]
fn serde_json_reads_and_writes_through_a_connection() {
    let r = reactor(2);
    let p = pair(&r, Options::new());
    let mut io = p.conn.blocking();
    io.set_read_timeout(Some(WAIT));
    let server = std::thread::spawn(move || {
        // A streaming deserializer straight off the connection.
        let values = serde_json::Deserializer::from_reader(&mut io)
            .into_iter::<serde_json::Value>()
            .take(3)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        for v in &values {
            serde_json::to_writer(&mut io, &serde_json::json!({ "echo": v })).unwrap();
            io.write_all(b"\n").unwrap();
        }
        io.flush().unwrap();
        values.len()
    });
    let mut peer = p.peer;
    // Split awkwardly across writes: the reader must not care.
    peer.write_all(br#"{"a": 1} [1,2"#).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    peer.write_all(br#",3] "three""#).unwrap();
    let mut lines = BufReader::new(peer).lines();
    let got: Vec<String> = (0..3).map(|_| lines.next().unwrap().unwrap()).collect();
    assert_eq!(
        got,
        [
            r#"{"echo":{"a":1}}"#,
            r#"{"echo":[1,2,3]}"#,
            r#"{"echo":"three"}"#
        ]
    );
    assert_eq!(server.join().unwrap(), 3);
}

#[test]
fn lines_end_at_eof_and_a_timed_out_read_loses_nothing() {
    let r = reactor(1);
    let p = pair(&r, Options::new());
    let mut io = p.conn.blocking();
    io.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 16];
    let e = io.read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    let mut peer = p.peer;
    peer.write_all(b"one\ntwo\nthree").unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    io.set_read_timeout(Some(WAIT));
    let lines: Vec<String> = (&mut io).lines().map(Result::unwrap).collect();
    assert_eq!(lines, ["one", "two", "three"]);
    assert_eq!(io.read(&mut buf).unwrap(), 0, "EOF stays EOF");
}

#[test]
fn writes_wait_for_room_instead_of_failing() {
    let r = reactor(1);
    let opts = Options::new().wbuf_max(64 << 10);
    let p = client_pair(&r, opts);
    // Nobody reads yet: a 1 MiB write cannot fit and times out, having
    // queued what fitted.
    let data = pattern(4 << 20);
    let e = p
        .conn
        .write_blocking(data[..1 << 20].to_vec(), Some(Duration::from_millis(300)))
        .unwrap_err();
    assert!(matches!(e, Error::TimedOut(TimeoutKind::Write)), "{e:?}");
    let queued_before = 1 << 20; // at most this much was accepted
    let mut peer = p.peer.try_clone().unwrap();
    let reader = std::thread::spawn(move || read_to_eof(&mut peer));
    // With a reader, 4 MiB through a 64 KiB buffer, via std::io::copy.
    let mut io = p.conn.blocking();
    io.set_write_timeout(Some(WAIT));
    std::io::copy(&mut &data[..], &mut io).unwrap();
    io.flush().unwrap();
    assert_eq!(p.conn.stats().write_queued, 0);
    p.conn.close().unwrap();
    let (got, clean) = reader.join().unwrap();
    assert!(clean);
    // What the timed-out write queued came first, then all of `data`.
    let first = got.len() - data.len();
    assert!(first <= queued_before);
    assert!(got[..first] == data[..first], "the partial write's bytes");
    assert!(got[first..] == data[..], "the copied bytes");
}

#[test]
fn drained_answers_at_once_when_empty_and_fails_once_closed() {
    let r = reactor(1);
    let p = pair(&r, Options::new());
    assert!(matches!(
        p.conn.drained().unwrap().recv_timeout(WAIT),
        Ok(())
    ));
    p.conn.close().unwrap();
    let _ = events_until_closed(p.events(), WAIT);
    assert!(matches!(p.conn.drained(), Err(Error::Closed)));
}
