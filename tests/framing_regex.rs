//! Regex read type: accept / reject / skip semantics on a stream, matches
//! that may still grow, anchors, limits, linear cost for trickled input,
//! split invariance against random streams, equivalence with `regex` on the
//! whole stream, and interop with python3's `re`.
//!
//! Run: `cargo test --release --test framing_regex`

mod framing_common;

use bytes::{Bytes, BytesMut};
use framing_common::*;
use netactor::framing::{Decoder, Regex};
use netactor::{Error, Limit};
use proptest::prelude::*;
use std::time::{Duration, Instant};

fn re(accept: &str) -> Regex {
    Regex::new(accept).unwrap()
}

fn frames(run: &Run<Bytes>) -> Vec<String> {
    run.frames()
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect()
}

#[test]
fn a_terminator_completes_as_soon_as_it_is_in() {
    // No extra byte is needed after "\r\n\r\n": a request/response peer would
    // otherwise wait forever.
    let mut dec = re(r"\r\n\r\n");
    let mut buf = BytesMut::from(&b"GET / HTTP/1.0\r\n\r"[..]);
    assert!(dec.decode(&mut buf, false).unwrap().is_none());
    buf.extend_from_slice(b"\n");
    assert_eq!(
        &dec.decode(&mut buf, false).unwrap().unwrap()[..],
        b"GET / HTTP/1.0\r\n\r\n"
    );
    assert!(buf.is_empty());
}

#[test]
fn a_match_that_may_grow_waits_for_the_next_byte_or_eof() {
    let mut dec = re(r"\d+");
    let mut buf = BytesMut::from(&b"ab12"[..]);
    assert!(dec.decode(&mut buf, false).unwrap().is_none());
    buf.extend_from_slice(b"3");
    assert!(dec.decode(&mut buf, false).unwrap().is_none());
    buf.extend_from_slice(b"x");
    assert_eq!(&dec.decode(&mut buf, false).unwrap().unwrap()[..], b"ab123");
    assert_eq!(&buf[..], b"x");
    let mut buf = BytesMut::from(&b"7"[..]);
    assert_eq!(
        &re(r"\d+").decode(&mut buf, true).unwrap().unwrap()[..],
        b"7"
    );
}

#[test]
fn leftmost_first_on_the_stream_not_on_the_buffer() {
    // regex::bytes on "abb" alone would answer "a"; the stream may still
    // complete the preferred alternative.
    let mut dec = re(r"ab*c|a");
    let mut buf = BytesMut::from(&b"abb"[..]);
    assert!(dec.decode(&mut buf, false).unwrap().is_none());
    buf.extend_from_slice(b"c!");
    assert_eq!(&dec.decode(&mut buf, false).unwrap().unwrap()[..], b"abbc");
    let mut buf = BytesMut::from(&b"abbd"[..]);
    assert_eq!(
        &re(r"ab*c|a").decode(&mut buf, false).unwrap().unwrap()[..],
        b"a"
    );
    // A match found later in the buffer must not pre-empt an earlier one
    // that is still possible.
    let mut dec = re(r"a.*z|b");
    let mut buf = BytesMut::from(&b"a b "[..]);
    assert!(dec.decode(&mut buf, false).unwrap().is_none());
    buf.extend_from_slice(b"z");
    assert!(
        dec.decode(&mut buf, false).unwrap().is_none(),
        ".* may go on"
    );
    assert_eq!(&dec.decode(&mut buf, true).unwrap().unwrap()[..], b"a b z");
}

#[test]
fn reject_is_non_fatal_and_discards_through_its_match() {
    let dec = || Regex::new(r"\n").unwrap().reject("x").unwrap();
    let run = whole(dec(), b"ab\ncdxef\ngh\n");
    assert_eq!(frames(&run), vec!["ab\n", "ef\n", "gh\n"]);
    assert_eq!(run.errors().len(), 1);
    assert!(!run.errors()[0].0);
    let mut buf = BytesMut::from(&b"cdxef\n"[..]);
    let e = dec().decode(&mut buf, false).unwrap_err();
    assert!(!e.fatal && matches!(e.error, Error::BadMessage(_)));
    assert_eq!(&buf[..], b"ef\n");
    // Stream order decides, not what happens to be buffered together:
    // accept ending before the reject wins; a tie goes to accept.
    let run = whole(Regex::new("ab").unwrap().reject("b").unwrap(), b"abb");
    assert_eq!(frames(&run), vec!["ab"]);
    assert_eq!(run.errors().len(), 1, "the second b is rejected");
}

#[test]
fn skip_keeps_bytes_in_the_frame_but_out_of_the_search() {
    // The reference's documented use: skip what cannot hold the terminator.
    let dec = || {
        Regex::new(r"\r\n\r\n")
            .unwrap()
            .skip(r"(?s)^.*[^\r\n]")
            .unwrap()
    };
    let data = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST\r\n\r\n";
    let run = assert_split_invariant(dec, data, &[3, 17, 27]);
    assert_eq!(
        frames(&run),
        vec!["GET / HTTP/1.1\r\nHost: a\r\n\r\n", "POST\r\n\r\n"]
    );
    // Anchors restart after a skip: accept "^b" can only match where the
    // skipped part ends.
    let run = whole(Regex::new("^b").unwrap().skip("a").unwrap(), b"aab");
    assert_eq!(frames(&run), vec!["aab"]);
}

#[test]
fn anchors_mean_frame_start_and_stream_end() {
    let run = whole(re(r"^HELLO\r\n"), b"HELLO\r\nHELLO\r\n");
    assert_eq!(frames(&run), vec!["HELLO\r\n", "HELLO\r\n"]);
    // An anchored accept that failed can never match: fatal at once.
    let mut buf = BytesMut::from(&b"HELP"[..]);
    let e = re(r"^HELLO").decode(&mut buf, false).unwrap_err();
    assert!(e.fatal && matches!(e.error, Error::BadMessage(_)));
    // `$` is the end of the stream, not of the buffer.
    let mut dec = re(r"end$");
    let mut buf = BytesMut::from(&b"the end"[..]);
    assert!(dec.decode(&mut buf, false).unwrap().is_none());
    assert_eq!(
        &dec.decode(&mut buf, true).unwrap().unwrap()[..],
        b"the end"
    );
    // A multi-line `$` needs the next byte.
    let mut dec = re(r"(?m)^\.$");
    let mut buf = BytesMut::from(&b"a\n."[..]);
    assert!(dec.decode(&mut buf, false).unwrap().is_none());
    buf.extend_from_slice(b"\n");
    assert_eq!(&dec.decode(&mut buf, false).unwrap().unwrap()[..], b"a\n.");
}

#[test]
fn patterns_that_cannot_work_on_a_stream_are_refused() {
    assert!(matches!(Regex::new("("), Err(Error::InvalidInput(_))));
    let e = Regex::new(r"\bword\b").unwrap_err();
    assert!(
        matches!(&e, Error::InvalidInput(m) if m.contains("(?-u:\\b)")),
        "{e}"
    );
    let run = whole(re(r"(?-u:\b)word(?-u:\b)"), b"a word!");
    assert_eq!(frames(&run), vec!["a word"]);
    assert!(Regex::new("a").unwrap().reject("[").is_err());
}

#[test]
fn limits() {
    // Never matching: NoSpace once max + 1 bytes are in, not later.
    let mut dec = re("END").max_len(10);
    let mut buf = BytesMut::new();
    let mut n = 0;
    let e = loop {
        buf.extend_from_slice(b"x");
        n += 1;
        match dec.decode(&mut buf, false) {
            Ok(None) => {}
            Err(e) => break e,
            Ok(Some(f)) => panic!("{f:?}"),
        }
    };
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
    assert_eq!(n, 11);
    // A frame of exactly max bytes is fine; one more is not.
    let mut buf = BytesMut::from(&b"1234567END"[..]);
    assert_eq!(
        re("END")
            .max_len(10)
            .decode(&mut buf, false)
            .unwrap()
            .unwrap()
            .len(),
        10
    );
    let mut buf = BytesMut::from(&b"12345678END"[..]);
    assert!(re("END").max_len(10).decode(&mut buf, false).is_err());
    // A greedy match still growing at the limit is too large.
    let mut buf = BytesMut::from(&b"aaaaaaaaaaaaaaaa"[..]);
    let e = re("a+").max_len(10).decode(&mut buf, false).unwrap_err();
    assert!(matches!(e.error, Error::NoSpace { .. }));
    // ... but a match that ended right at the limit is not.
    let mut buf = BytesMut::from(&b"aaaaaaaaaab"[..]);
    assert_eq!(
        re("a+")
            .max_len(10)
            .decode(&mut buf, false)
            .unwrap()
            .unwrap()
            .len(),
        10
    );
}

#[test]
fn trickled_input_costs_linear_time() {
    let mut data = vec![b'h'; 1 << 20];
    data.extend_from_slice(b"\r\n\r\n");
    let mut dec = Regex::new(r"\r\n\r\n")
        .unwrap()
        .reject("(?-u:\\x00)")
        .unwrap()
        .max_len(2 << 20);
    let mut buf = BytesMut::new();
    let start = Instant::now();
    let mut got = None;
    for &b in &data {
        buf.extend_from_slice(&[b]);
        if let Some(f) = dec.decode(&mut buf, false).unwrap() {
            got = Some(f.len());
        }
    }
    assert_eq!(got, Some(data.len()));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

/// Pattern sets exercised by the properties: none matches the empty string.
fn pattern_sets() -> Vec<(&'static str, Option<&'static str>, Option<&'static str>)> {
    vec![
        // Plain literals take the substring-search path (framing/scan.rs):
        // the same properties must hold for them.
        ("END", None, None),
        (r"a\.b", None, None),
        (r"\r\n\r\n", None, None),
        (r"\d+;", None, None),
        (r"ab*c|a", None, None),
        (r"a.*z|b", None, None),
        (r"[;,]+", Some("x"), None),
        (r"\n", Some(r"(?-u:\xff)"), Some(r"^[^\n]+")),
        ("END", Some("BAD"), Some("E")),
        (r"(?m)^\.$", None, None),
        (r"x(?-u:\b)", Some(r"\d{3}"), None),
        (r"(?s)c.{0,3}d", None, Some("a+")),
    ]
}

fn build(set: &(&str, Option<&str>, Option<&str>), max: usize) -> Regex {
    let mut r = Regex::new(set.0).unwrap().max_len(max);
    if let Some(p) = set.1 {
        r = r.reject(p).unwrap();
    }
    if let Some(p) = set.2 {
        r = r.skip(p).unwrap();
    }
    r
}

fn stream() -> impl Strategy<Value = Vec<u8>> {
    byte_stream(b"abcdxz;,.\n\r0123ENDBA \xff", 120)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn split_invariance(
        set in 0usize..12,
        data in stream(),
        points in split_points(130),
        max in prop_oneof![Just(1usize << 20), 0usize..40],
    ) {
        let sets = pattern_sets();
        let s = sets[set];
        assert_split_invariant(|| build(&s, max), &data, &points);
    }

    #[test]
    fn same_frames_as_regex_on_the_whole_stream(set in 0usize..7, data in stream(), points in split_points(130)) {
        // Accept-only sets: the frames are what repeated `find` on the whole
        // stream gives (each frame runs to the end of a match).
        let sets = pattern_sets();
        let pat = sets[set].0;
        let (found, rest) = find_all(pat, &data);
        let expected: Vec<String> = found
            .iter()
            .map(|(frame, _)| String::from_utf8_lossy(frame).into_owned())
            .collect();
        let run = drive(re(pat), &split(&data, &points));
        prop_assert_eq!(frames(&run), expected);
        prop_assert_eq!(run.rest.as_deref(), Some(rest));
    }
}

#[test]
fn interop_with_python_re() {
    let data = b"GET /a HTTP/1.0\r\nX: 1\r\n\r\n12;345;abbbc;a;;,,zz\r\n\r\nab\r\n\r\n7".to_vec();
    for pat in [
        r"\r\n\r\n",
        r"\d+;",
        r"ab*c|a",
        r"[;,]+",
        r"(?:HTTP|X)[^\r]*\r\n",
    ] {
        let (py_found, py_rest) = python_find_all(pat, &data);
        // A frame runs through the end of its match.
        let py_frames: Vec<String> = py_found.into_iter().map(|(b, m)| b + &m).collect();
        let run = assert_split_invariant(|| re(pat), &data, &[2, 9, 30]);
        let ours: Vec<String> = run.frames().iter().map(|f| hex(f)).collect();
        assert_eq!(ours, py_frames, "{pat}");
        assert_eq!(hex(run.rest.as_deref().unwrap()), py_rest, "{pat}");
    }
}
