//! Helpers shared by the tests/framing_*.rs decoder tests: a driver that
//! feeds a decoder the way the connection actor does, split helpers for the
//! split-invariance properties, and a bounded runner for interop peers
//! (python3, perl).
#![allow(dead_code)]

use bytes::BytesMut;
use netactor::framing::Decoder;
use proptest::prelude::*;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What a decoder produced, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Out<T> {
    Frame(T),
    Error { fatal: bool, msg: String },
}

/// Everything a decoder did with one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Run<T> {
    pub out: Vec<Out<T>>,
    /// Bytes left in the buffer at the end (`None` after a fatal error:
    /// then it depends on how much had arrived, by design).
    pub rest: Option<Vec<u8>>,
}

impl<T: Clone> Run<T> {
    pub fn frames(&self) -> Vec<T> {
        self.out
            .iter()
            .filter_map(|o| match o {
                Out::Frame(f) => Some(f.clone()),
                Out::Error { .. } => None,
            })
            .collect()
    }

    pub fn errors(&self) -> Vec<(bool, String)> {
        self.out
            .iter()
            .filter_map(|o| match o {
                Out::Error { fatal, msg } => Some((*fatal, msg.clone())),
                Out::Frame(_) => None,
            })
            .collect()
    }

    pub fn fatal(&self) -> bool {
        self.out
            .iter()
            .any(|o| matches!(o, Out::Error { fatal: true, .. }))
    }
}

/// Decodes until the decoder wants more bytes, as the actor's streaming
/// mode does; returns true after a fatal error.
fn pump<D: Decoder>(
    dec: &mut D,
    buf: &mut BytesMut,
    eof: bool,
    out: &mut Vec<Out<D::Output>>,
) -> bool {
    // A decoder that loops without consuming is a bug; cap it loudly.
    for _ in 0..1_000_000 {
        let before = buf.len();
        match dec.decode(buf, eof) {
            Ok(Some(f)) => {
                out.push(Out::Frame(f));
                if buf.len() == before {
                    return false;
                }
            }
            Ok(None) => return false,
            Err(e) => {
                out.push(Out::Error {
                    fatal: e.fatal,
                    msg: e.error.to_string(),
                });
                if e.fatal {
                    return true;
                }
                assert!(
                    buf.len() < before,
                    "a non-fatal error consumed nothing: {e}"
                );
            }
        }
    }
    panic!("decoder did not settle");
}

/// Feeds `chunks` one at a time (decoding after each), then signals EOF.
pub fn drive<D: Decoder>(mut dec: D, chunks: &[&[u8]]) -> Run<D::Output> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for c in chunks {
        buf.extend_from_slice(c);
        if pump(&mut dec, &mut buf, false, &mut out) {
            return Run { out, rest: None };
        }
    }
    if pump(&mut dec, &mut buf, true, &mut out) {
        return Run { out, rest: None };
    }
    Run {
        out,
        rest: Some(buf.to_vec()),
    }
}

/// All of `data` in one read.
pub fn whole<D: Decoder>(dec: D, data: &[u8]) -> Run<D::Output> {
    drive(dec, &[data])
}

/// `data` cut at the given points (any order, duplicates and out-of-range
/// points ignored).
pub fn split<'a>(data: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|&p| p.min(data.len())).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut parts = Vec::new();
    let mut from = 0;
    for c in cuts {
        parts.push(&data[from..c]);
        from = c;
    }
    parts.push(&data[from..]);
    parts
}

/// `data` one byte per read.
pub fn bytewise(data: &[u8]) -> Vec<&[u8]> {
    data.chunks(1).collect()
}

/// The core property: the same frames and errors whether the stream comes
/// at once, split at `points`, or one byte at a time.
pub fn assert_split_invariant<D, F>(make: F, data: &[u8], points: &[usize]) -> Run<D::Output>
where
    D: Decoder,
    D::Output: PartialEq + std::fmt::Debug,
    F: Fn() -> D,
{
    let one = whole(make(), data);
    let parts = split(data, points);
    let cut = drive(make(), &parts);
    assert_eq!(one, cut, "split at {points:?} differs for {data:?}");
    let bw = drive(make(), &bytewise(data));
    assert_eq!(one, bw, "byte-by-byte differs for {data:?}");
    one
}

/// Runs an interop peer with `input` on stdin; fails the test if it does not
/// finish within 20 s or exits non-zero.
pub fn run_peer(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        let _ = tx.send(v);
    });
    let mut stderr = child.stderr.take().unwrap();
    let ereader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    // stdout closes when the peer exits: wait for that, bounded.
    let Ok(out) = rx.recv_timeout(Duration::from_secs(20)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{program} did not finish within 20 s");
    };
    let status = child.wait().unwrap();
    writer.join().unwrap();
    let err = ereader.join().unwrap();
    assert!(
        status.success(),
        "{program} failed: {status}: {}",
        String::from_utf8_lossy(&err)
    );
    out
}

/// Runs a python3 script (given inline) on `input`.
pub fn python(script: &str, input: &[u8]) -> Vec<u8> {
    run_peer("python3", &["-c", script], input)
}

/// Split points for [`split`]: up to ten offsets below `max`.
pub fn split_points(max: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0usize..max, 0..10)
}

/// Streams of up to `max_len` bytes drawn from `alphabet`.
pub fn byte_stream(alphabet: &[u8], max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(proptest::sample::select(alphabet.to_vec()), 0..max_len)
}

/// A frame (through the end of its match) and its match.
pub type Found<'a> = (&'a [u8], &'a [u8]);

/// The oracle on the whole stream: repeated `find` of the regex `pat` on
/// `data`: what each match ends, and the bytes after the last match.
pub fn find_all<'a>(pat: &str, data: &'a [u8]) -> (Vec<Found<'a>>, &'a [u8]) {
    let oracle = regex::bytes::Regex::new(pat).unwrap();
    let mut found = Vec::new();
    let mut rest = data;
    while let Some(m) = oracle.find(rest) {
        found.push((&rest[..m.end()], m.as_bytes()));
        rest = &rest[m.end()..];
    }
    (found, rest)
}

const PY_FIND_ALL: &str = r#"
import re, sys
pat, data = sys.stdin.buffer.read().split(b"\0", 1)
rx = re.compile(pat)
out = []
while True:
    m = rx.search(data)
    if not m:
        break
    out.append(data[:m.start()].hex() + "/" + m.group(0).hex())
    data = data[m.end():]
print(" ".join(out))
print(data.hex())
"#;

/// [`find_all`] by python3's `re`, in hex: (the bytes before each match,
/// the match), and the bytes after the last match.
pub fn python_find_all(pat: &str, data: &[u8]) -> (Vec<(String, String)>, String) {
    let mut input = pat.as_bytes().to_vec();
    input.push(0);
    input.extend_from_slice(data);
    let out = String::from_utf8(python(PY_FIND_ALL, &input)).unwrap();
    let mut lines = out.lines();
    let found = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(|p| {
            let (before, m) = p.split_once('/').unwrap();
            (before.to_owned(), m.to_owned())
        })
        .collect();
    (found, lines.next().unwrap_or("").to_owned())
}

/// Lower-case hex, as python's `bytes.hex()`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs a perl script (given inline) on `input`.
pub fn perl(script: &str, input: &[u8]) -> Vec<u8> {
    run_peer("perl", &["-e", script], input)
}
