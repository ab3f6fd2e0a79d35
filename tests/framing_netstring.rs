//! Netstring read and write types: valid frames, every malformed header,
//! the missing-comma recovery, limits raised before the payload is buffered,
//! split invariance, round trips and interop with a python3 implementation.
//!
//! Run: `cargo test --release --test framing_netstring`

mod framing_common;

use bytes::{Bytes, BytesMut};
use framing_common::*;
use netactor::framing::{Decoder, Encoder, Netstring, NetstringOut};
use netactor::{Error, Limit};
use proptest::prelude::*;

fn encode(payload: &[u8]) -> Vec<u8> {
    let mut parts = Vec::new();
    NetstringOut::new(Bytes::copy_from_slice(payload))
        .encode(&mut parts)
        .unwrap();
    parts.concat()
}

fn frames(run: &Run<Bytes>) -> Vec<Vec<u8>> {
    run.frames().iter().map(|b| b.to_vec()).collect()
}

#[test]
fn valid_netstrings_yield_their_payloads() {
    let run = whole(Netstring::new(), b"5:hello,0:,3:a,:,4:\x00\xff\r\n,");
    assert_eq!(
        frames(&run),
        vec![
            b"hello".to_vec(),
            vec![],
            b"a,:".to_vec(),
            b"\x00\xff\r\n".to_vec()
        ]
    );
    assert_eq!(run.rest.as_deref(), Some(&b""[..]));
}

#[test]
fn partial_netstrings_wait_and_stay_buffered() {
    for partial in [&b"1"[..], b"12", b"5:", b"5:hel", b"5:hello"] {
        let mut buf = BytesMut::from(partial);
        assert!(Netstring::new().decode(&mut buf, false).unwrap().is_none());
        assert_eq!(&buf[..], partial);
        // At EOF too: the connection turns a pending read into UnexpectedEof.
        assert!(Netstring::new().decode(&mut buf, true).unwrap().is_none());
    }
}

fn fatal_bad(input: &[u8]) -> String {
    let mut buf = BytesMut::from(input);
    let e = Netstring::new().decode(&mut buf, false).unwrap_err();
    assert!(e.fatal, "{input:?}: {e}");
    match e.error {
        Error::BadMessage(why) => why,
        other => panic!("{input:?}: expected BadMessage, got {other}"),
    }
}

#[test]
fn malformed_headers_are_fatal_bad_messages_at_the_first_bad_byte() {
    // Each is detected without waiting for more input.
    assert!(fatal_bad(b"x").contains("decimal length"));
    assert!(fatal_bad(b":abc,").contains("decimal length"));
    assert!(fatal_bad(b"-1:a,").contains("decimal length"));
    assert!(fatal_bad(b" 1:a,").contains("decimal length"));
    assert!(
        fatal_bad(b"03").contains("leading zero"),
        "reference: 03:abc, is EBADMSG"
    );
    assert!(fatal_bad(b"00:,").contains("leading zero"));
    assert!(fatal_bad(b"3x").contains("':'"));
    assert!(fatal_bad(b"3,abc,").contains("':'"));
    assert!(fatal_bad(b"1 :a,").contains("':'"));
}

#[test]
fn missing_comma_discards_the_message_and_reading_goes_on() {
    let run = whole(Netstring::new(), b"3:abcX2:ok,3:xyz;5:hello,");
    assert_eq!(frames(&run), vec![b"ok".to_vec(), b"hello".to_vec()]);
    let errs = run.errors();
    assert_eq!(errs.len(), 2);
    assert!(errs
        .iter()
        .all(|(fatal, msg)| !fatal && msg.contains("instead of ','")));
    // The error comes as soon as the terminator byte is in, not later.
    let mut buf = BytesMut::from(&b"3:abcX"[..]);
    let e = Netstring::new().decode(&mut buf, false).unwrap_err();
    assert!(!e.fatal);
    assert!(matches!(e.error, Error::BadMessage(_)));
    assert!(buf.is_empty(), "the bad message is removed");
}

#[test]
fn declared_length_over_the_limit_fails_before_the_payload_arrives() {
    // Default limit 1 MiB: seven digits over it fail before any ':' or payload.
    let mut buf = BytesMut::from(&b"2000000"[..]);
    let e = Netstring::new().decode(&mut buf, false).unwrap_err();
    assert!(e.fatal);
    assert!(matches!(e.error, Error::NoSpace { limit: Limit::Frame, max } if max == 1 << 20));
    // A custom limit, exactly at and one over.
    let mut ok = BytesMut::from(&b"5:hello,"[..]);
    assert_eq!(
        &Netstring::new()
            .max_len(5)
            .decode(&mut ok, false)
            .unwrap()
            .unwrap()[..],
        b"hello"
    );
    let mut over = BytesMut::from(&b"6"[..]);
    let e = Netstring::new()
        .max_len(5)
        .decode(&mut over, false)
        .unwrap_err();
    assert!(matches!(e.error, Error::NoSpace { max: 5, .. }) && e.fatal);
    // An absurd number of digits never overflows.
    let mut huge = BytesMut::from(&b"99999999999999999999999999999"[..]);
    let e = Netstring::new()
        .max_len(usize::MAX)
        .decode(&mut huge, false)
        .unwrap_err();
    assert!(matches!(e.error, Error::NoSpace { .. }));
}

#[test]
fn a_peer_streaming_digits_forever_costs_at_most_the_header() {
    // The decoder never needs more than the digits of the limit to decide.
    let mut dec = Netstring::new().max_len(1000);
    let mut buf = BytesMut::new();
    let mut failed = false;
    for _ in 0..100 {
        buf.extend_from_slice(b"9");
        match dec.decode(&mut buf, false) {
            Ok(None) => {}
            Err(e) => {
                assert!(e.fatal && matches!(e.error, Error::NoSpace { .. }));
                failed = true;
                break;
            }
            Ok(Some(_)) => panic!("no frame expected"),
        }
    }
    assert!(failed);
    assert_eq!(buf.len(), 4, "failed at the fourth digit");
}

#[test]
fn encoder_queues_header_payload_and_comma_without_copying() {
    let payload = Bytes::from(vec![7u8; 1000]);
    let mut parts = Vec::new();
    NetstringOut::new(payload.clone())
        .encode(&mut parts)
        .unwrap();
    assert_eq!(parts.len(), 3);
    assert_eq!(&parts[0][..], b"1000:");
    assert_eq!(parts[1].as_ptr(), payload.as_ptr(), "payload not copied");
    assert_eq!(&parts[2][..], b",");
    assert_eq!(encode(b"ns"), b"2:ns,", "reference: 2:ns,");
    assert_eq!(encode(b""), b"0:,");
}

/// One piece of a test stream: a valid netstring or one with a bad terminator.
fn piece() -> impl Strategy<Value = (Vec<u8>, bool)> {
    (
        proptest::collection::vec(any::<u8>(), 0..40),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(|(payload, good, term)| {
            let mut v = encode(&payload);
            if !good && term != b',' {
                *v.last_mut().unwrap() = term;
                (v, false)
            } else {
                (v, true)
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn split_invariance(
        pieces in proptest::collection::vec(piece(), 0..8),
        tail in proptest::collection::vec(any::<u8>(), 0..12),
        points in split_points(400),
    ) {
        let mut data: Vec<u8> = pieces.iter().flat_map(|(p, _)| p.clone()).collect();
        data.extend_from_slice(&tail); // often a malformed or partial header
        let run = assert_split_invariant(Netstring::new, &data, &points);
        // Every good piece before the tail is a frame; every bad one an error.
        let good = pieces.iter().filter(|(_, g)| *g).count();
        let bad = pieces.len() - good;
        prop_assert!(run.frames().len() >= good);
        prop_assert!(run.errors().iter().filter(|(f, _)| !f).count() >= bad);
    }

    #[test]
    fn limit_split_invariance(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..60), 1..6),
        max in 0usize..50,
        points in split_points(400),
    ) {
        let data: Vec<u8> = payloads.iter().flat_map(|p| encode(p)).collect();
        let run = assert_split_invariant(|| Netstring::new().max_len(max), &data, &points);
        let fits = payloads.iter().take_while(|p| p.len() <= max).count();
        prop_assert_eq!(run.frames().len(), fits);
        prop_assert_eq!(run.fatal(), fits < payloads.len());
    }

    #[test]
    fn round_trip(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..10)) {
        let data: Vec<u8> = payloads.iter().flat_map(|p| encode(p)).collect();
        let run = whole(Netstring::new(), &data);
        prop_assert_eq!(frames(&run), payloads);
        prop_assert_eq!(run.rest, Some(vec![]));
    }
}

const PY_ENCODE: &str = r#"
import sys
for line in sys.stdin.read().split():
    p = bytes.fromhex(line) if line != "-" else b""
    sys.stdout.buffer.write(str(len(p)).encode() + b":" + p + b",")
"#;

const PY_DECODE: &str = r#"
import sys
data = sys.stdin.buffer.read()
out = []
while data:
    colon = data.index(b":")
    n = int(data[:colon])
    assert data[colon + 1 + n] == ord(","), "missing comma"
    out.append(data[colon + 1:colon + 1 + n].hex() or "-")
    data = data[colon + 2 + n:]
print(" ".join(out))
"#;

#[test]
fn interop_with_python() {
    let payloads: Vec<Vec<u8>> = vec![
        b"hello".to_vec(),
        vec![],
        b"1:x,".to_vec(),
        (0..=255u8).collect(),
        vec![b','; 1000],
    ];
    let hex = |p: &Vec<u8>| {
        if p.is_empty() {
            "-".to_string()
        } else {
            p.iter().map(|b| format!("{b:02x}")).collect()
        }
    };
    let listing = payloads.iter().map(hex).collect::<Vec<_>>().join("\n");
    // python3 writes, we read.
    let wire = python(PY_ENCODE, listing.as_bytes());
    let run = assert_split_invariant(Netstring::new, &wire, &[1, 7, 300]);
    assert_eq!(frames(&run), payloads);
    // We write, python3 reads.
    let ours: Vec<u8> = payloads.iter().flat_map(|p| encode(p)).collect();
    assert_eq!(ours, wire, "byte-identical to python's encoding");
    let back = python(PY_DECODE, &ours);
    let back = String::from_utf8(back).unwrap();
    assert_eq!(
        back.split_whitespace().collect::<Vec<_>>(),
        payloads.iter().map(hex).collect::<Vec<_>>()
    );
}
