//! Length-prefixed ("packstring") read and write types: every prefix width
//! and endianness plus BER, partial prefixes, the limit checked as soon as
//! the prefix is in, BER edge cases, payloads too long for their prefix,
//! split invariance, round trips, and interop with python3's `struct` and
//! perl's `pack` (the reference's own formats).
//!
//! Run: `cargo test --release --test framing_length`

mod framing_common;

use bytes::{Bytes, BytesMut};
use framing_common::*;
use netactor::framing::{Decoder, Encoder, LengthPrefixed, LengthPrefixedOut, Prefix};
use netactor::{Error, Limit};
use proptest::prelude::*;

const ALL: [Prefix; 8] = [
    Prefix::U8,
    Prefix::U16Be,
    Prefix::U16Le,
    Prefix::U32Be,
    Prefix::U32Le,
    Prefix::U64Be,
    Prefix::U64Le,
    Prefix::Ber,
];

fn encode(prefix: Prefix, payload: &[u8]) -> Vec<u8> {
    let mut parts = Vec::new();
    LengthPrefixedOut::new(prefix, Bytes::copy_from_slice(payload))
        .encode(&mut parts)
        .unwrap();
    parts.concat()
}

fn header(prefix: Prefix, len: usize) -> Vec<u8> {
    let mut v = encode(prefix, &vec![0; len]);
    v.truncate(v.len() - len);
    v
}

#[test]
fn known_encodings() {
    // Reference: packstring "n" "hello" -> 00 05 68 65 6c 6c 6f.
    assert_eq!(encode(Prefix::U16Be, b"hello"), b"\x00\x05hello");
    assert_eq!(header(Prefix::U8, 5), [5]);
    assert_eq!(header(Prefix::U16Le, 0x102), [2, 1]);
    assert_eq!(header(Prefix::U32Be, 0x10203), [0, 1, 2, 3]);
    assert_eq!(header(Prefix::U32Le, 0x10203), [3, 2, 1, 0]);
    assert_eq!(header(Prefix::U64Be, 258), [0, 0, 0, 0, 0, 0, 1, 2]);
    assert_eq!(header(Prefix::U64Le, 258), [2, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(header(Prefix::Ber, 0), [0x00]);
    assert_eq!(header(Prefix::Ber, 127), [0x7f]);
    assert_eq!(header(Prefix::Ber, 128), [0x81, 0x00]);
    assert_eq!(header(Prefix::Ber, 300), [0x82, 0x2c]);
    assert_eq!(header(Prefix::Ber, 16384), [0x81, 0x80, 0x00]);
}

#[test]
fn pack_formats_map_to_prefixes() {
    for (f, p) in [
        ("C", Prefix::U8),
        ("n", Prefix::U16Be),
        ("v", Prefix::U16Le),
        ("N", Prefix::U32Be),
        ("V", Prefix::U32Le),
        ("Q>", Prefix::U64Be),
        ("Q<", Prefix::U64Le),
        ("w", Prefix::Ber),
        ("S>", Prefix::U16Be),
        ("L<", Prefix::U32Le),
    ] {
        assert_eq!(Prefix::from_pack_format(f), Some(p), "{f}");
    }
    for f in [
        "c", "s", "S", "l", "L", "q", "Q", "j", "J", "i", "I", "x", "",
    ] {
        assert_eq!(Prefix::from_pack_format(f), None, "{f}");
    }
}

#[test]
fn every_prefix_decodes_frames_and_waits_on_partial_input() {
    for p in ALL {
        let data = [encode(p, b"abc"), encode(p, b""), encode(p, &[9; 200])].concat();
        let run = whole(LengthPrefixed::new(p), &data);
        let f: Vec<Vec<u8>> = run.frames().iter().map(|b| b.to_vec()).collect();
        assert_eq!(f, vec![b"abc".to_vec(), vec![], vec![9; 200]], "{p:?}");
        // Every proper prefix of one frame waits and keeps its bytes.
        let one = encode(p, b"xyz");
        for n in 0..one.len() {
            let mut buf = BytesMut::from(&one[..n]);
            assert!(
                LengthPrefixed::new(p)
                    .decode(&mut buf, false)
                    .unwrap()
                    .is_none(),
                "{p:?} {n}"
            );
            assert_eq!(buf.len(), n);
        }
    }
}

#[test]
fn declared_length_over_the_limit_is_fatal_as_soon_as_the_prefix_is_in() {
    for p in ALL {
        let hdr = header(p, 11);
        let mut buf = BytesMut::from(&hdr[..]);
        let e = LengthPrefixed::new(p)
            .max_len(10)
            .decode(&mut buf, false)
            .unwrap_err();
        assert!(e.fatal, "{p:?}");
        assert!(
            matches!(
                e.error,
                Error::NoSpace {
                    limit: Limit::Frame,
                    max: 10
                }
            ),
            "{p:?}"
        );
        // Exactly at the limit is fine.
        let mut buf = BytesMut::from(&encode(p, &[1; 10])[..]);
        assert_eq!(
            LengthPrefixed::new(p)
                .max_len(10)
                .decode(&mut buf, false)
                .unwrap()
                .unwrap()
                .len(),
            10
        );
    }
    // A 64-bit length near u64::MAX with the default limit.
    let mut buf = BytesMut::from(&[0xff; 8][..]);
    let e = LengthPrefixed::new(Prefix::U64Le)
        .decode(&mut buf, false)
        .unwrap_err();
    assert!(matches!(e.error, Error::NoSpace { max, .. } if max == 1 << 20));
}

#[test]
fn ber_lengths_fail_early_and_reject_non_minimal_forms() {
    // 0x81 0x80 0x80 ... = at least 2^21 > 1 MiB: known before the end.
    let mut buf = BytesMut::from(&[0x81, 0x80, 0x80][..]);
    let e = LengthPrefixed::new(Prefix::Ber)
        .decode(&mut buf, false)
        .unwrap_err();
    assert!(matches!(e.error, Error::NoSpace { .. }) && e.fatal);
    // An endless run of continuation bytes fails within a few bytes.
    let mut dec = LengthPrefixed::new(Prefix::Ber);
    let mut buf = BytesMut::new();
    let mut n = 0;
    loop {
        buf.extend_from_slice(&[0xff]);
        n += 1;
        match dec.decode(&mut buf, false) {
            Ok(None) => assert!(n < 5),
            Err(e) => {
                assert!(e.fatal && matches!(e.error, Error::NoSpace { .. }));
                break;
            }
            Ok(Some(_)) => panic!(),
        }
    }
    // A leading zero digit (0x80) is not how anyone writes BER.
    let mut buf = BytesMut::from(&[0x80, 0x05][..]);
    let e = LengthPrefixed::new(Prefix::Ber)
        .decode(&mut buf, false)
        .unwrap_err();
    assert!(e.fatal && matches!(e.error, Error::BadMessage(_)));
}

#[test]
fn payload_too_long_for_its_prefix_is_an_error_and_sends_nothing() {
    for (p, max) in [
        (Prefix::U8, 255usize),
        (Prefix::U16Be, 65535),
        (Prefix::U16Le, 65535),
    ] {
        let mut parts = Vec::new();
        LengthPrefixedOut::new(p, vec![0u8; max])
            .encode(&mut parts)
            .unwrap();
        let mut parts = Vec::new();
        let e = LengthPrefixedOut::new(p, vec![0u8; max + 1])
            .encode(&mut parts)
            .unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{p:?}");
        assert!(parts.is_empty(), "nothing queued");
    }
}

#[test]
fn encoder_does_not_copy_the_payload() {
    let payload = Bytes::from(vec![3u8; 255]);
    for p in ALL {
        let mut parts = Vec::new();
        LengthPrefixedOut::new(p, payload.clone())
            .encode(&mut parts)
            .unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].as_ptr(), payload.as_ptr(), "{p:?}");
    }
}

fn prefix() -> impl Strategy<Value = Prefix> {
    proptest::sample::select(ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn split_invariance(
        p in prefix(),
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..256), 0..6),
        tail in proptest::collection::vec(any::<u8>(), 0..12),
        max in prop_oneof![Just(usize::MAX), 0usize..400],
        points in split_points(2000),
    ) {
        let mut data: Vec<u8> = payloads.iter().flat_map(|x| encode(p, x)).collect();
        data.extend_from_slice(&tail);
        let run = assert_split_invariant(|| LengthPrefixed::new(p).max_len(max), &data, &points);
        let fits = payloads.iter().take_while(|x| x.len() <= max).count();
        let got: Vec<Vec<u8>> = run.frames().iter().map(|b| b.to_vec()).collect();
        prop_assert_eq!(&got[..fits], &payloads[..fits]);
        if fits < payloads.len() {
            prop_assert!(run.fatal());
        }
    }

    #[test]
    fn round_trip(
        p in prefix(),
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..255), 0..8),
    ) {
        let data: Vec<u8> = payloads.iter().flat_map(|x| encode(p, x)).collect();
        let run = whole(LengthPrefixed::new(p), &data);
        let got: Vec<Vec<u8>> = run.frames().iter().map(|b| b.to_vec()).collect();
        prop_assert_eq!(got, payloads);
        prop_assert_eq!(run.rest, Some(vec![]));
    }

    #[test]
    fn ber_round_trips_every_length(n in any::<u64>()) {
        // Only the header matters: build it by the reference's algorithm
        // (base-128, most significant first, high bit on all but the last).
        let mut digits = vec![(n & 0x7f) as u8];
        let mut v = n >> 7;
        while v > 0 {
            digits.push((v & 0x7f) as u8 | 0x80);
            v >>= 7;
        }
        digits.reverse();
        let mut buf = BytesMut::from(&digits[..]);
        let r = LengthPrefixed::new(Prefix::Ber).max_len(usize::MAX).decode(&mut buf, false);
        // The header decodes to n: the decoder now waits for n payload bytes
        // (or returns the empty frame for n == 0).
        match r {
            Ok(Some(f)) => prop_assert!(n == 0 && f.is_empty()),
            Ok(None) => prop_assert!(n > 0 && buf.len() == digits.len()),
            Err(e) => prop_assert!(false, "{}", e),
        }
        if n < 1 << 20 {
            prop_assert_eq!(header(Prefix::Ber, n as usize), digits);
        }
    }
}

/// python3: for each "fmt hex" line, write struct.pack(fmt, len) + payload.
const PY_PACK: &str = r#"
import struct, sys
for line in sys.stdin.read().splitlines():
    fmt, hexp = line.split(" ")
    p = bytes.fromhex(hexp) if hexp != "-" else b""
    sys.stdout.buffer.write(struct.pack(fmt, len(p)) + p)
"#;

/// python3: read frames of the given struct format, print payloads as hex.
const PY_UNPACK: &str = r#"
import struct, sys
data = sys.stdin.buffer.read()
fmt, data = data.split(b"\n", 1)
fmt = fmt.decode()
w = struct.calcsize(fmt)
out = []
while data:
    (n,) = struct.unpack(fmt, data[:w])
    out.append(data[w:w + n].hex() or "-")
    assert len(data) >= w + n
    data = data[w + n:]
print(" ".join(out))
"#;

fn hex(p: &[u8]) -> String {
    if p.is_empty() {
        "-".into()
    } else {
        p.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[test]
fn interop_with_python_struct() {
    let payloads: Vec<Vec<u8>> = vec![
        b"hello".to_vec(),
        vec![],
        (0..255u8).collect(),
        vec![b'x'; 255],
    ];
    for (fmt, p) in [
        (">B", Prefix::U8),
        (">H", Prefix::U16Be),
        ("<H", Prefix::U16Le),
        (">I", Prefix::U32Be),
        ("<I", Prefix::U32Le),
        (">Q", Prefix::U64Be),
        ("<Q", Prefix::U64Le),
    ] {
        let listing: String = payloads
            .iter()
            .map(|x| format!("{fmt} {}\n", hex(x)))
            .collect();
        let wire = python(PY_PACK, listing.as_bytes());
        let ours: Vec<u8> = payloads.iter().flat_map(|x| encode(p, x)).collect();
        assert_eq!(ours, wire, "{fmt}: byte-identical to struct.pack");
        let run = assert_split_invariant(|| LengthPrefixed::new(p), &wire, &[1, 2, 3, 9, 270]);
        let got: Vec<Vec<u8>> = run.frames().iter().map(|b| b.to_vec()).collect();
        assert_eq!(got, payloads, "{fmt}");
        let mut input = format!("{fmt}\n").into_bytes();
        input.extend_from_slice(&ours);
        let back = String::from_utf8(python(PY_UNPACK, &input)).unwrap();
        assert_eq!(
            back.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
            payloads.iter().map(|x| hex(x)).collect::<Vec<_>>(),
            "{fmt}"
        );
    }
}

#[test]
fn interop_with_perl_pack_w() {
    // perl's own pack "w" (the reference's BER format), both directions.
    let lens = [0usize, 1, 127, 128, 300, 16383, 16384, 100_000];
    let listing: String = lens.iter().map(|n| format!("{n}\n")).collect();
    let wire = perl(
        r#"binmode STDOUT; while (my $n = <STDIN>) { chomp $n; print pack("w", $n), "x" x $n }"#,
        listing.as_bytes(),
    );
    let ours: Vec<u8> = lens
        .iter()
        .flat_map(|&n| encode(Prefix::Ber, &vec![b'x'; n]))
        .collect();
    assert_eq!(ours, wire, "byte-identical to pack 'w'");
    let run = assert_split_invariant(
        || LengthPrefixed::new(Prefix::Ber),
        &wire,
        &[1, 2, 200, 500],
    );
    assert_eq!(
        run.frames().iter().map(|b| b.len()).collect::<Vec<_>>(),
        lens
    );
    let back = perl(
        r#"binmode STDIN; local $/; my $d = <STDIN>; my @n;
           while (length $d) { my ($n) = unpack("w", $d); my $h = length(pack("w", $n));
                               push @n, $n; substr($d, 0, $h + $n) = ""; }
           print join(" ", @n);"#,
        &ours,
    );
    let back: Vec<usize> = String::from_utf8(back)
        .unwrap()
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(back, lens);
}
