//! Line read type with a regex end-of-line (and the default / literal
//! terminators it must not break): the reference's examples, terminators
//! that may still grow, limits, the reset contract for decoders that keep
//! scan offsets, split invariance, equivalence with `regex` on the whole
//! stream, and interop with python3's `re`.
//!
//! Run: `cargo test --release --test framing_line`

mod framing_common;

use bytes::BytesMut;
use framing_common::*;
use netactor::framing::{Decoder, Line, LineFrame};
use netactor::{Error, Limit};
use proptest::prelude::*;
use std::time::{Duration, Instant};

fn pairs(run: &Run<LineFrame>) -> Vec<(String, String)> {
    run.frames()
        .iter()
        .map(|f| {
            (
                String::from_utf8_lossy(&f.line).into_owned(),
                String::from_utf8_lossy(&f.eol).into_owned(),
            )
        })
        .collect()
}

fn rx(p: &str) -> Line {
    Line::with_eol_regex(p).unwrap()
}

#[test]
fn reference_example_regex_eol() {
    // Reference: qr/[;,]+/ on "c;;,d" -> "c", ";;,".
    let run = whole(rx(r"[;,]+"), b"c;;,d;e,");
    assert_eq!(
        pairs(&run),
        vec![
            ("c".into(), ";;,".into()),
            ("d".into(), ";".into()),
            ("e".into(), ",".into())
        ]
    );
}

#[test]
fn a_terminator_that_may_grow_waits() {
    let mut dec = rx(r"[;,]+");
    let mut buf = BytesMut::from(&b"c;"[..]);
    assert!(dec.decode(&mut buf, false).unwrap().is_none());
    buf.extend_from_slice(b",");
    assert!(dec.decode(&mut buf, false).unwrap().is_none());
    buf.extend_from_slice(b"d");
    let f = dec.decode(&mut buf, false).unwrap().unwrap();
    assert_eq!((&f.line[..], &f.eol[..]), (&b"c"[..], &b";,"[..]));
    // A fixed terminator completes at once.
    let mut buf = BytesMut::from(&b"abc\r\n"[..]);
    let f = rx(r"\r\n").decode(&mut buf, false).unwrap().unwrap();
    assert_eq!(&f.line[..], b"abc");
}

#[test]
fn regex_eol_like_the_default_line() {
    let data = b"a\r\nb\nc\r\r\nd\n";
    let ours = whole(rx(r"\r?\n"), data);
    let default = whole(Line::new(), data);
    assert_eq!(pairs(&ours), pairs(&default));
    // Reference: "c\r\r\n" -> line "c\r", eol "\r\n".
    assert_eq!(pairs(&ours)[2], ("c\r".into(), "\r\n".into()));
}

#[test]
fn partial_last_line_is_not_returned_at_eof() {
    let run = whole(rx(r"\n"), b"a\nbc");
    assert_eq!(pairs(&run), vec![("a".into(), "\n".into())]);
    assert_eq!(run.rest.as_deref(), Some(&b"bc"[..]));
}

#[test]
fn limits_cover_line_and_terminator() {
    let mut buf = BytesMut::from(&b"12345678\r\n"[..]);
    assert!(rx(r"\r\n")
        .max_len(10)
        .decode(&mut buf, false)
        .unwrap()
        .is_some());
    let mut buf = BytesMut::from(&b"123456789\r\n"[..]);
    let e = rx(r"\r\n").max_len(10).decode(&mut buf, false).unwrap_err();
    assert!(
        e.fatal
            && matches!(
                e.error,
                Error::NoSpace {
                    limit: Limit::Frame,
                    max: 10
                }
            )
    );
    // Never terminated: fails after max + 1 bytes.
    let mut dec = rx(r"\n").max_len(100);
    let mut buf = BytesMut::new();
    for i in 0.. {
        buf.extend_from_slice(b"x");
        match dec.decode(&mut buf, false) {
            Ok(None) => assert!(i < 101),
            Err(e) => {
                assert!(matches!(e.error, Error::NoSpace { .. }));
                break;
            }
            Ok(Some(_)) => panic!(),
        }
    }
    assert!(Line::with_eol_regex("(").is_err());
}

#[test]
fn reset_after_someone_else_consumed_the_front() {
    // A decoder that remembered a scan offset must start over when the
    // buffer changed at the front (another read ran first).
    for mut dec in [Line::new(), Line::with_eol(";;"), rx(r";;")] {
        let mut buf = BytesMut::from(&b"abcdefgh"[..]);
        assert!(dec.decode(&mut buf, false).unwrap().is_none());
        let _ = buf.split_to(6); // someone else took "abcdef"
        buf.extend_from_slice(b"\n;;x");
        dec.reset();
        let f = dec.decode(&mut buf, false).unwrap().unwrap();
        assert!(f.line.starts_with(b"gh"), "{f:?}");
    }
}

#[test]
fn trickled_input_costs_linear_time() {
    let mut data = vec![b'x'; 256 << 10];
    data.extend_from_slice(b";;,");
    data.push(b'.');
    let mut dec = rx(r"[;,]+").max_len(1 << 20);
    let mut buf = BytesMut::new();
    let start = Instant::now();
    let mut got = None;
    for &b in &data {
        buf.extend_from_slice(&[b]);
        if let Some(f) = dec.decode(&mut buf, false).unwrap() {
            got = Some(f);
        }
    }
    let f = got.unwrap();
    assert_eq!((f.line.len(), &f.eol[..]), (256 << 10, &b";;,"[..]));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

const EOLS: [&str; 6] = [
    r"[;,]+",
    r"\r?\n",
    r"\r\n|\n|\r",
    r"ab*c|a",
    r"(?m)\.$",
    r"\d{2,3}",
];

fn stream() -> impl Strategy<Value = Vec<u8>> {
    byte_stream(b"abcx;,.\n\r0123 \xff", 120)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn split_invariance_regex(
        eol in 0usize..6,
        data in stream(),
        points in split_points(130),
        max in prop_oneof![Just(1usize << 16), 0usize..30],
    ) {
        assert_split_invariant(|| rx(EOLS[eol]).max_len(max), &data, &points);
    }

    #[test]
    fn split_invariance_default_and_literal(
        literal in proptest::sample::select(vec!["\n", ";;", "\r\n", "aba"]),
        data in stream(),
        points in split_points(130),
        max in prop_oneof![Just(1usize << 16), 0usize..30],
    ) {
        assert_split_invariant(|| Line::new().max_len(max), &data, &points);
        assert_split_invariant(|| Line::with_eol(literal).max_len(max), &data, &points);
    }

    #[test]
    fn same_lines_as_regex_on_the_whole_stream(
        eol in 0usize..6,
        data in stream(),
        points in split_points(130),
    ) {
        let (found, rest) = find_all(EOLS[eol], &data);
        let expected: Vec<(String, String)> = found
            .iter()
            .map(|(frame, m)| {
                (
                    String::from_utf8_lossy(&frame[..frame.len() - m.len()]).into_owned(),
                    String::from_utf8_lossy(m).into_owned(),
                )
            })
            .collect();
        let run = drive(rx(EOLS[eol]), &split(&data, &points));
        prop_assert_eq!(pairs(&run), expected);
        prop_assert_eq!(run.rest.as_deref(), Some(rest));
    }
}

#[test]
fn interop_with_python_re() {
    let data = b"c;;,d\r\ne\nf,,;g;\r\n\r\nabbbc.a".to_vec();
    for pat in [r"[;,]+", r"\r?\n", r"\r\n|\n", r"ab*c|a"] {
        let (py, _) = python_find_all(pat, &data);
        let run = assert_split_invariant(|| rx(pat), &data, &[1, 4, 11]);
        let ours: Vec<(String, String)> = run
            .frames()
            .iter()
            .map(|f| (hex(&f.line), hex(&f.eol)))
            .collect();
        assert_eq!(ours, py, "{pat}");
    }
}
