//! JSON read and write types: complete values, whitespace-separated streams,
//! the bare-number-at-the-end trap, malformed input as non-fatal errors that
//! skip the bad bytes, typed reads, size limits, linear cost for trickled
//! input, split invariance (also over random garbage), round trips and
//! interop with python3's json module.
//!
//! Run: `cargo test --release --test framing_json`

mod framing_common;

use bytes::BytesMut;
use framing_common::*;
use netactor::framing::{Decoder, Encoder, Json, JsonOut};
use netactor::{Error, Limit};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn values(run: &Run<Value>) -> Vec<Value> {
    run.frames()
}

fn encode(v: &Value) -> Vec<u8> {
    let mut parts = Vec::new();
    JsonOut::new(v).encode(&mut parts).unwrap();
    parts.concat()
}

#[test]
fn complete_values_of_every_kind() {
    let data = br#"{"a":[1,{"b":null}],"c":"x\"}"} [] "str\\" 12 -3.5e2 true false null {}"#;
    let run = whole(Json::new(), data);
    assert_eq!(
        values(&run),
        vec![
            json!({"a": [1, {"b": null}], "c": "x\"}"}),
            json!([]),
            json!("str\\"),
            json!(12),
            json!(-350.0),
            json!(true),
            json!(false),
            json!(null),
            json!({}),
        ]
    );
    assert!(run.errors().is_empty());
    assert_eq!(run.rest.as_deref(), Some(&b""[..]));
}

#[test]
fn a_bare_number_at_the_end_of_the_buffer_is_not_complete() {
    // rust-deps.md trap 8: serde_json alone would return 12 here.
    let mut dec = Json::new();
    let mut buf = BytesMut::from(&b"12"[..]);
    assert!(dec.decode(&mut buf, false).unwrap().is_none());
    buf.extend_from_slice(b"3");
    assert!(dec.decode(&mut buf, false).unwrap().is_none());
    buf.extend_from_slice(b"\n");
    assert_eq!(dec.decode(&mut buf, false).unwrap(), Some(json!(123)));
    // The same for literals, whose end is only known from the next byte.
    for lit in [&b"true"[..], b"false", b"null", b"-0", b"1e5"] {
        let mut buf = BytesMut::from(lit);
        assert!(
            Json::new().decode(&mut buf, false).unwrap().is_none(),
            "{lit:?}"
        );
        assert!(
            Json::new().decode(&mut buf, true).unwrap().is_some(),
            "{lit:?} at EOF"
        );
    }
    // Objects, arrays and strings complete at their last byte.
    for v in [&b"{}"[..], b"[1]", b"\"s\""] {
        let mut buf = BytesMut::from(v);
        assert!(
            Json::new().decode(&mut buf, false).unwrap().is_some(),
            "{v:?}"
        );
    }
}

#[test]
fn whitespace_between_values_is_dropped_and_never_accumulates() {
    let mut dec = Json::new().max_len(100);
    let mut buf = BytesMut::new();
    for _ in 0..200 {
        buf.extend_from_slice(&[b' '; 4096]);
        buf.extend_from_slice(b"\n\t\r");
        assert!(dec.decode(&mut buf, false).unwrap().is_none());
        assert!(buf.is_empty());
    }
    buf.extend_from_slice(b"  [1]  ");
    assert_eq!(dec.decode(&mut buf, false).unwrap(), Some(json!([1])));
}

#[test]
fn ndjson_stream() {
    let data = b"{\"n\":1}\n{\"n\":2}\r\n\n{\"n\":3}\n";
    let run = assert_split_invariant(Json::new, data, &[3, 8, 9]);
    assert_eq!(
        values(&run),
        vec![json!({"n":1}), json!({"n":2}), json!({"n":3})]
    );
}

fn one_error(
    input: &[u8],
) -> (
    Result<Option<Value>, netactor::framing::DecodeError>,
    Vec<u8>,
) {
    let mut buf = BytesMut::from(input);
    let r = Json::new().decode(&mut buf, true);
    (r, buf.to_vec())
}

#[test]
fn malformed_json_is_a_non_fatal_error_that_skips_the_bad_bytes() {
    for (input, rest) in [
        (&b"x [1]"[..], &b" [1]"[..]),
        (b"{\"a\":x} [2]", b"} [2]"),
        (b"] [3]", b" [3]"),
        (b"[1,] [4]", b" [4]"),
        (b"nulx [5]", b" [5]"),
        (b"12x [6]", b" [6]"),
        (b"{\"a\" 1} [7]", b"} [7]"),
        // Invalid UTF-8 in a string: discarded through the bad byte; the
        // closing quote then opens a new string.
        (b"\"\xff\" [8]", b"\" [8]"),
    ] {
        let (out, left) = one_error(input);
        match out {
            Err(e) if !e.fatal && matches!(e.error, Error::BadMessage(_)) => {}
            other => panic!("{input:?}: {other:?}"),
        }
        assert_eq!(left, rest, "{:?}", String::from_utf8_lossy(input));
    }
    // The stream goes on after the error.
    let run = whole(Json::new(), b"{\"a\":x} [1] oops {\"b\":2}");
    assert_eq!(values(&run), vec![json!([1]), json!({"b": 2})]);
    assert!(run.errors().iter().all(|(fatal, _)| !fatal));
    assert!(!run.errors().is_empty());
}

#[test]
fn deep_nesting_is_malformed_not_a_stack_overflow() {
    let mut data = vec![b'['; 100_000];
    data.extend(vec![b']'; 100_000]);
    let run = whole(Json::new(), &data);
    let errs = run.errors();
    assert!(errs[0].1.contains("recursion"), "{:?}", errs[0]);
    assert!(errs.iter().all(|(fatal, _)| !fatal));
}

#[test]
fn values_over_the_limit_are_fatal_no_space() {
    let cases: [(&[u8], bool); 5] = [
        (b"[1,2,3,45]", true),   // 10 bytes: fits
        (b"[1,2,3,4,5]", false), // 11 bytes
        (b"\"abcdefgh\"", true),
        (b"\"abcdefghi\"", false),
        (b"12345678901", false),
    ];
    for (input, fits) in cases {
        let mut buf = BytesMut::from(input);
        let r = Json::new().max_len(10).decode(&mut buf, true);
        match (r, fits) {
            (Ok(Some(_)), true) => {}
            (Err(e), false) => {
                assert!(e.fatal);
                assert!(matches!(
                    e.error,
                    Error::NoSpace {
                        limit: Limit::Frame,
                        max: 10
                    }
                ));
            }
            (r, _) => panic!("{input:?}: {r:?}"),
        }
    }
    // A peer that never finishes its value costs max + 1 bytes, then fails.
    let mut dec = Json::new().max_len(1000);
    let mut buf = BytesMut::from(&b"["[..]);
    loop {
        buf.extend_from_slice(b"1,");
        match dec.decode(&mut buf, false) {
            Ok(None) => assert!(buf.len() <= 1002),
            Err(e) => {
                assert!(e.fatal && matches!(e.error, Error::NoSpace { .. }));
                break;
            }
            Ok(Some(v)) => panic!("{v}"),
        }
    }
}

#[test]
fn typed_reads() {
    // A typed target without serde's derive (the tests build without it):
    // a map of integers, so `"x":"no"` and `[5]` do not fit.
    type Point = std::collections::BTreeMap<String, i32>;
    fn point(x: i32, y: i32) -> Point {
        Point::from([("x".to_string(), x), ("y".to_string(), y)])
    }
    let data = br#"{"x":1,"y":2} {"x":"no","y":0} {"x":3,"y":4} [5]"#;
    let run = whole(Json::<Point>::typed(), data);
    assert_eq!(run.frames(), vec![point(1, 2), point(3, 4)]);
    let errs = run.errors();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs.iter().all(|(fatal, _)| !fatal));
    // The mismatching value is discarded whole, wherever the mismatch is.
    let mut buf = BytesMut::from(&br#"{"x":"no","y":[1,2,3]} {"x":1,"y":1}"#[..]);
    let mut dec = Json::<Point>::typed();
    assert!(dec.decode(&mut buf, false).is_err());
    assert_eq!(dec.decode(&mut buf, false).unwrap(), Some(point(1, 1)));
}

#[test]
fn trickled_input_costs_linear_time() {
    // 512 KiB of JSON, one byte per read: a decoder that reparsed from the
    // start on each arrival would need ~10^11 steps.
    let mut data = b"[".to_vec();
    while data.len() < 512 << 10 {
        data.extend_from_slice(b"{\"k\":\"v\\\"\",\"n\":[1,2]},");
    }
    data.extend_from_slice(b"0]");
    let start = Instant::now();
    let mut dec = Json::new();
    let mut buf = BytesMut::new();
    let mut got = None;
    for &b in &data {
        buf.extend_from_slice(&[b]);
        if let Some(v) = dec.decode(&mut buf, false).unwrap() {
            got = Some(v);
        }
    }
    assert!(got.is_some());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-4000i32..4000).prop_map(|n| json!(f64::from(n) / 8.0)),
        "[a-z\\\\\"\u{0}-\u{1f}é😀 ]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z\"]{0,4}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn separator() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec![" ", "\n", "\t", "\r\n", "  \n "])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn split_invariance_valid(
        vals in proptest::collection::vec((json_value(), separator(), any::<bool>()), 0..6),
        points in split_points(600),
    ) {
        let mut data = Vec::new();
        for (v, sep, pretty) in &vals {
            if *pretty {
                data.extend(serde_json::to_vec_pretty(v).unwrap());
            } else {
                data.extend(encode(v));
            }
            data.extend_from_slice(sep.as_bytes());
        }
        let run = assert_split_invariant(Json::new, &data, &points);
        prop_assert_eq!(values(&run), vals.iter().map(|(v, _, _)| v.clone()).collect::<Vec<_>>());
    }

    #[test]
    fn split_invariance_garbage(
        data in proptest::collection::vec(proptest::sample::select(b"[]{}\",:0123456789eE.+-tfnrulasx \n\\\xff".to_vec()), 0..80),
        points in split_points(100),
        max in prop_oneof![Just(1usize << 20), 0usize..30],
    ) {
        assert_split_invariant(|| Json::new().max_len(max), &data, &points);
    }

    #[test]
    fn split_invariance_typed(
        vals in proptest::collection::vec(json_value(), 0..6),
        points in split_points(400),
    ) {
        let data: Vec<u8> = vals.iter().flat_map(|v| { let mut e = encode(v); e.push(b' '); e }).collect();
        let run = assert_split_invariant(Json::<Vec<i64>>::typed, &data, &points);
        prop_assert_eq!(run.frames().len() + run.errors().len(), vals.len());
    }

    #[test]
    fn round_trip(vals in proptest::collection::vec(json_value(), 0..8)) {
        let mut data = Vec::new();
        for v in &vals {
            let mut parts = Vec::new();
            JsonOut::new(v).newline().encode(&mut parts).unwrap();
            data.extend(parts.concat());
        }
        let run = whole(Json::new(), &data);
        prop_assert_eq!(values(&run), vals);
        prop_assert_eq!(run.rest, Some(vec![]));
    }
}

#[test]
fn encoder_errors_send_nothing() {
    use std::collections::HashMap;
    // serde_json cannot write a map with non-string keys.
    let mut m = HashMap::new();
    m.insert(vec![1u8], 2);
    let mut parts = Vec::new();
    let e = JsonOut::new(&m).encode(&mut parts).unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)));
    assert!(parts.is_empty());
}

const PY_WRITE: &str = r#"
import json, sys
vals = [{"a": [1, 2.5, None]}, [], "snow\u2603\n\"", 0, -17, True, False, None, {"deep": [[[{}]]]}, 1e300]
for i, v in enumerate(vals):
    sep = [" ", "\n", "\t", "\r\n"][i % 4]
    sys.stdout.write(json.dumps(v, indent=(2 if i % 3 == 0 else None)) + sep)
sys.stderr.write(json.dumps(vals, separators=(",", ":")))
"#;

const PY_READ: &str = r#"
import json, sys
dec = json.JSONDecoder()
data = sys.stdin.read()
i, out = 0, []
while True:
    while i < len(data) and data[i] in " \t\r\n":
        i += 1
    if i == len(data):
        break
    v, i = dec.raw_decode(data, i)
    out.append(v)
print(json.dumps(out, separators=(",", ":")))
"#;

#[test]
fn interop_with_python_json() {
    // python3 writes a stream; we read it.
    let wire = python(PY_WRITE, b"");
    let run = assert_split_invariant(Json::new, &wire, &[1, 5, 17, 40]);
    let expected: Vec<Value> = vec![
        json!({"a": [1, 2.5, null]}),
        json!([]),
        json!("snow\u{2603}\n\""),
        json!(0),
        json!(-17),
        json!(true),
        json!(false),
        json!(null),
        json!({"deep": [[[{}]]]}),
        json!(1e300),
    ];
    assert_eq!(values(&run), expected);
    // We write a stream; python3 reads it.
    let vals = vec![
        json!({"k": "v\u{0}\u{1f}"}),
        json!([1, -2, 3.25]),
        json!("é"),
        json!(null),
        json!(12),
    ];
    let mut data = Vec::new();
    for v in &vals {
        data.extend(encode(v));
        data.push(b'\n');
    }
    let back: Value = serde_json::from_slice(&python(PY_READ, &data)).unwrap();
    assert_eq!(back, Value::Array(vals));
}
