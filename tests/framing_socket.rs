//! Every read type through a real loopback connection, as queued reads
//! (`push_read`) and in streaming mode (`set_streaming`), bytes trickled in
//! small writes; every write type through `Connection::send` to a plain
//! socket peer; non-fatal and fatal decode errors as the application sees
//! them; decoders that keep scan offsets when another read takes bytes first;
//! a streaming decoder whose frames take no bytes.
//!
//! Run: `cargo test --release --test framing_socket` (add `--features cbor`
//! for the CBOR cases; the JSON and regex cases need the default features
//! `json` and `regex`).

mod common;

use bytes::Bytes;
use common::*;
#[cfg(feature = "regex")]
use netactor::framing::Regex;
use netactor::framing::{
    Chunk, Decoder, Frame, LengthPrefixed, LengthPrefixedOut, Line, Netstring, NetstringOut, Prefix,
};
#[cfg(feature = "json")]
use netactor::framing::{Json, JsonOut};
use netactor::{Error, Event, Options, Reactor};
#[cfg(feature = "json")]
use serde_json::json;
use std::io::Read;
use std::sync::OnceLock;

fn shared_reactor() -> &'static Reactor {
    static R: OnceLock<Reactor> = OnceLock::new();
    R.get_or_init(|| reactor(2))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A frame as text, the same for queued and streamed reads.
fn show(f: Frame) -> String {
    match f {
        Frame::Bytes(b) => hex(&b),
        Frame::Line(l) => format!("{}/{}", hex(&l.line), hex(&l.eol)),
        #[cfg(feature = "json")]
        Frame::Json(v) => v.to_string(),
        #[cfg(feature = "cbor")]
        Frame::Cbor(c) => hex(c.as_bytes()),
        other => panic!("unexpected frame {other:?}"),
    }
}

/// Writes `wire` in small pieces (so frames straddle reads).
fn trickle(p: &mut Pair, wire: &[u8]) {
    p.peer.set_nodelay(true).unwrap();
    for piece in wire.chunks(3) {
        p.send(piece);
    }
}

/// Queued reads: `n` reads of `dec`, the bytes trickled after they are queued.
fn via_push_read<D>(dec: D, wire: &[u8], n: usize) -> Vec<String>
where
    D: Decoder + Clone,
    D::Output: Into<Frame>,
{
    let mut p = pair(shared_reactor(), Options::new());
    let replies: Vec<_> = (0..n)
        .map(|_| p.conn.push_read(dec.clone()).unwrap())
        .collect();
    trickle(&mut p, wire);
    replies
        .iter()
        .map(|r| match r.recv_timeout(WAIT) {
            Ok(f) => show(f.into()),
            Err(netactor::ReplyTimeoutError::Failed(e)) => panic!("read failed: {e}"),
            Err(netactor::ReplyTimeoutError::Timeout) => panic!("read pending after {WAIT:?}"),
        })
        .collect()
}

/// Streaming: frames arrive as `Event::Read` on the listener's channel.
fn via_streaming<D>(dec: D, wire: &[u8], n: usize) -> Vec<String>
where
    D: Decoder,
    D::Output: Into<Frame>,
{
    let mut p = pair(shared_reactor(), Options::new());
    p.conn.set_streaming(Some(dec)).unwrap();
    trickle(&mut p, wire);
    (0..n)
        .map(|_| match p.next_event() {
            Event::Read(f) => show(f),
            other => panic!("expected a frame, got {other:?}"),
        })
        .collect()
}

fn both<D>(dec: D, wire: &[u8], expected: &[String])
where
    D: Decoder + Clone,
    D::Output: Into<Frame>,
{
    assert_eq!(
        via_push_read(dec.clone(), wire, expected.len()),
        expected,
        "push_read"
    );
    assert_eq!(
        via_streaming(dec, wire, expected.len()),
        expected,
        "streaming"
    );
}

#[cfg(any(feature = "json", feature = "regex"))]
fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[cfg(feature = "regex")]
#[test]
fn line_with_regex_eol() {
    both(
        Line::with_eol_regex(r"[;,]+").unwrap(),
        b"abc;;,de,fgh;x",
        &strs(&["616263/3b3b2c", "6465/2c", "666768/3b"]),
    );
}

#[cfg(feature = "regex")]
#[test]
fn regex() {
    let dec = Regex::new(r"\r\n\r\n")
        .unwrap()
        .skip(r"(?s)^.*[^\r\n]")
        .unwrap();
    both(
        dec,
        b"GET / HTTP/1.0\r\n\r\nPOST /x HTTP/1.0\r\nA: b\r\n\r\n",
        &[
            hex(b"GET / HTTP/1.0\r\n\r\n"),
            hex(b"POST /x HTTP/1.0\r\nA: b\r\n\r\n"),
        ],
    );
}

#[test]
fn netstring() {
    both(
        Netstring::new(),
        b"5:hello,0:,3:a,b,",
        &[hex(b"hello"), hex(b""), hex(b"a,b")],
    );
}

#[test]
fn length_prefixed() {
    both(
        LengthPrefixed::new(Prefix::U32Be),
        b"\0\0\0\x05hello\0\0\0\0\0\0\0\x01z",
        &[hex(b"hello"), hex(b""), hex(b"z")],
    );
    let mut wire = vec![0x82, 0x2c];
    wire.extend(vec![b'q'; 300]);
    wire.extend([0x01, b'!']);
    both(
        LengthPrefixed::new(Prefix::Ber),
        &wire,
        &[hex(&[b'q'; 300]), hex(b"!")],
    );
}

#[cfg(feature = "json")]
#[test]
fn json() {
    both(
        Json::new(),
        b"{\"a\":[1,2]}\n[3] \"s\"\t42\n",
        &strs(&[r#"{"a":[1,2]}"#, "[3]", r#""s""#, "42"]),
    );
    // Typed reads come back as the type itself.
    let mut p = pair(shared_reactor(), Options::new());
    let r = p.conn.push_read(Json::<Vec<u8>>::typed()).unwrap();
    trickle(&mut p, b"[1,2,3]\n");
    assert_eq!(r.recv_timeout(WAIT).unwrap(), vec![1, 2, 3]);
}

#[cfg(feature = "cbor")]
#[test]
fn cbor() {
    use netactor::framing::Cbor;
    both(
        Cbor::new(),
        &[
            0x01, 0x9f, 0x02, 0x63, b'a', b'b', b'c', 0xff, 0xa1, 0x61, b'k', 0xf5,
        ],
        &[
            hex(&[0x01]),
            hex(&[0x9f, 0x02, 0x63, b'a', b'b', b'c', 0xff]),
            hex(&[0xa1, 0x61, b'k', 0xf5]),
        ],
    );
}

/// Reads exactly `n` bytes on the peer side.
fn peer_read(p: &mut Pair, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    p.peer.read_exact(&mut v).expect("peer read");
    v
}

#[test]
fn write_types_through_send() {
    let mut p = pair(shared_reactor(), Options::new());
    p.conn.send(NetstringOut::new("hello")).unwrap();
    p.conn
        .send(LengthPrefixedOut::new(
            Prefix::U16Be,
            Bytes::from_static(b"hi"),
        ))
        .unwrap();
    p.conn
        .send(LengthPrefixedOut::new(Prefix::Ber, vec![b'x'; 200]))
        .unwrap();
    #[cfg(feature = "json")]
    p.conn
        .send(JsonOut::new(&json!({"k": [1, "v"]})).newline())
        .unwrap();
    // Too long for its prefix: an error, and nothing reaches the peer.
    let e = p
        .conn
        .send(LengthPrefixedOut::new(Prefix::U8, vec![0u8; 256]))
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)));
    let mut expected = b"5:hello,\x00\x02hi\x81\x48".to_vec();
    expected.extend(vec![b'x'; 200]);
    #[cfg(feature = "json")]
    expected.extend_from_slice(b"{\"k\":[1,\"v\"]}\n");
    assert_eq!(peer_read(&mut p, expected.len()), expected);
    // Nothing else was queued: the next bytes are the marker.
    p.conn.write(Bytes::from_static(b"END")).unwrap();
    assert_eq!(peer_read(&mut p, 3), b"END");
}

#[cfg(feature = "cbor")]
#[test]
fn cbor_write_type_through_send() {
    use netactor::framing::CborOut;
    let mut p = pair(shared_reactor(), Options::new());
    p.conn.send(CborOut::new(&(1u8, "abc"))).unwrap();
    assert_eq!(peer_read(&mut p, 6), [0x82, 0x01, 0x63, b'a', b'b', b'c']);
}

#[test]
fn non_fatal_errors_leave_the_connection_usable() {
    // Queued read: the reply carries the error, the next read works.
    #[cfg(feature = "regex")]
    {
        let mut p = pair(shared_reactor(), Options::new());
        let bad = p
            .conn
            .push_read(Regex::new(r"\n").unwrap().reject("x").unwrap())
            .unwrap();
        p.send(b"axb\nnext\n");
        assert!(matches!(
            bad.recv_timeout(WAIT),
            Err(netactor::ReplyTimeoutError::Failed(Error::BadMessage(_)))
        ));
        let good = p.conn.push_read(Line::new()).unwrap();
        assert_eq!(&good.recv_timeout(WAIT).unwrap().line[..], b"b");
    }
    // Streaming: an error event, then the frames after it.
    let mut p = pair(shared_reactor(), Options::new());
    p.conn.set_streaming(Some(Netstring::new())).unwrap();
    p.send(b"3:abcX2:ok,");
    match p.next_event() {
        Event::Error {
            error: Error::BadMessage(_),
            fatal: false,
        } => {}
        other => panic!("{other:?}"),
    }
    match p.next_event() {
        Event::Read(f) => assert_eq!(show(f), hex(b"ok")),
        other => panic!("{other:?}"),
    }
    // Malformed JSON mid-stream: skipped, the stream goes on.
    #[cfg(feature = "json")]
    {
        let mut p = pair(shared_reactor(), Options::new());
        p.conn.set_streaming(Some(Json::new())).unwrap();
        p.send(b"{\"a\":x} [1]\n");
        let mut got = Vec::new();
        while got.last().map(String::as_str) != Some("[1]") {
            match p.next_event() {
                Event::Read(f) => got.push(show(f)),
                Event::Error { fatal: false, .. } => got.push("error".into()),
                other => panic!("{other:?}"),
            }
        }
        // `{"a":x` and then the lone `}` are skipped as malformed.
        assert_eq!(got, ["error", "error", "[1]"]);
    }
}

/// Waits for the server side of `p` to close, checking that a fatal
/// `NoSpace` closed it.
fn closed_by_no_space(p: &Pair) {
    let evs = events_until_closed(p.events(), WAIT);
    assert!(
        evs.iter().any(|e| matches!(
            e,
            Event::Error {
                error: Error::NoSpace { .. },
                fatal: true
            }
        )),
        "{evs:?}"
    );
}

#[test]
fn oversized_declared_length_closes_the_connection() {
    let mut p = pair(shared_reactor(), Options::new());
    let r = p
        .conn
        .push_read(LengthPrefixed::new(Prefix::U32Be).max_len(10))
        .unwrap();
    p.send(&[0, 0, 0, 11]);
    assert!(matches!(
        r.recv_timeout(WAIT),
        Err(netactor::ReplyTimeoutError::Failed(Error::NoSpace { .. }))
    ));
    closed_by_no_space(&p);
    // The peer sees the close.
    let mut rest = Vec::new();
    let _ = p.peer.read_to_end(&mut rest);
}

#[test]
fn streaming_decoder_forgets_its_scan_when_a_queued_read_takes_bytes() {
    // The streaming decoder scans "abcdef" (no terminator); a queued read
    // then takes 8 bytes, leaving a buffer longer than the old scan offset
    // whose terminator sits before that offset: a stale scan would miss it.
    let cases = [
        (Line::new(), b'\n'),
        (Line::with_eol(";"), b';'),
        #[cfg(feature = "regex")]
        (Line::with_eol_regex(r";+").unwrap(), b';'),
    ];
    for (dec, term) in cases {
        let mut p = pair(shared_reactor(), Options::new());
        p.conn.set_streaming(Some(dec)).unwrap();
        p.send(b"abcdef");
        p.wait_read(6);
        let chunk = p.conn.push_read(Chunk::new(8)).unwrap();
        // Once this runs on the worker, the queued read is in place: only
        // then may the rest arrive (else streaming would take it first).
        let (tx, rx) = crossbeam_channel::bounded(1);
        p.conn.call(move |_| tx.send(()).unwrap()).unwrap();
        rx.recv_timeout(WAIT).unwrap();
        let mut more = b"gh".to_vec();
        more.push(term);
        more.extend_from_slice(b"XYZWVUTS.");
        p.send(&more);
        assert_eq!(&chunk.recv_timeout(WAIT).unwrap()[..], b"abcdefgh");
        match p.next_event() {
            Event::Read(f) => assert_eq!(show(f), format!("/{term:02x}")),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn streaming_frames_that_take_no_bytes_do_not_spin_the_worker() {
    let mut p = pair(shared_reactor(), Options::new());
    p.conn.set_streaming(Some(Chunk::new(0))).unwrap();
    p.send(b"x");
    match p.next_event() {
        Event::Read(f) => assert_eq!(show(f), ""),
        other => panic!("{other:?}"),
    }
    // The worker is still serving this connection.
    let r = p.conn.push_read(Chunk::new(1)).unwrap();
    assert_eq!(&r.recv_timeout(WAIT).unwrap()[..], b"x");
    p.conn.close().unwrap();
}

#[cfg(feature = "regex")]
#[test]
fn a_flood_without_frame_end_costs_at_most_the_limit() {
    // 4 MiB without a newline against a 64 KiB line limit: fatal NoSpace,
    // and the server never buffers more than its limits.
    let p = pair(shared_reactor(), Options::new());
    p.conn
        .set_streaming(Some(Line::with_eol_regex(r"\n").unwrap().max_len(64 << 10)))
        .unwrap();
    let flood = vec![b'a'; 4 << 20];
    let mut peer = p.peer.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        // The server closes mid-flood: a write error is expected.
        let _ = std::io::Write::write_all(&mut peer, &flood);
    });
    closed_by_no_space(&p);
    assert!(p.conn.stats().bytes_read < 4 << 20, "stopped reading early");
    writer.join().unwrap();
}
