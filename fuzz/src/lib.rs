//! Shared harness for the decoder fuzz targets.
//!
//! Each target reads a small header from the fuzz input (which decoder
//! variant, which limit, where to cut the stream) and checks, besides "no
//! panic, no hang": the decoder gives the same frames and errors whether the
//! stream comes in one read, cut at the chosen points, or one byte per read
//! (the split-invariance property of the test suite, here on arbitrary input).

use bytes::BytesMut;
use netactor::framing::Decoder;
use std::fmt::Debug;

/// What a decoder did with one stream.
#[derive(Debug, PartialEq)]
pub enum Out<T> {
    Frame(T),
    Error { fatal: bool, msg: String },
    Rest(Vec<u8>),
}

fn pump<D: Decoder>(
    dec: &mut D,
    buf: &mut BytesMut,
    eof: bool,
    out: &mut Vec<Out<D::Output>>,
) -> bool {
    for _ in 0..100_000 {
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
                assert!(buf.len() < before, "non-fatal error consumed nothing: {e}");
            }
        }
    }
    panic!("decoder did not settle");
}

/// Feeds `parts` in order, then EOF.
pub fn run<D: Decoder>(mut dec: D, parts: &[&[u8]]) -> Vec<Out<D::Output>> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for p in parts {
        buf.extend_from_slice(p);
        if pump(&mut dec, &mut buf, false, &mut out) {
            return out;
        }
    }
    if !pump(&mut dec, &mut buf, true, &mut out) {
        out.push(Out::Rest(buf.to_vec()));
    }
    out
}

/// The fuzz input, split into its header and the stream.
pub struct Input<'a> {
    /// Chooses the decoder variant.
    pub select: u8,
    /// Chooses the frame limit.
    pub max: usize,
    pub data: &'a [u8],
    cuts: [u8; 3],
}

impl<'a> Input<'a> {
    pub fn parse(raw: &'a [u8]) -> Option<Input<'a>> {
        if raw.len() < 5 {
            return None;
        }
        let max = match raw[1] {
            0..=127 => usize::from(raw[1]) / 2,
            128..=250 => 1 << 10,
            _ => 1 << 20,
        };
        Some(Input {
            select: raw[0],
            max,
            cuts: [raw[2], raw[3], raw[4]],
            data: &raw[5..],
        })
    }

    fn parts(&self) -> Vec<&'a [u8]> {
        let n = self.data.len();
        let mut cuts: Vec<usize> = self
            .cuts
            .iter()
            .map(|&c| usize::from(c) * n / 256)
            .collect();
        cuts.sort_unstable();
        let mut parts = Vec::new();
        let mut from = 0;
        for c in cuts {
            parts.push(&self.data[from..c]);
            from = c;
        }
        parts.push(&self.data[from..]);
        parts
    }
}

/// The property: one read, the chosen cuts, and byte-by-byte all agree.
pub fn check<D, F>(make: F, input: &Input<'_>)
where
    D: Decoder,
    D::Output: PartialEq + Debug,
    F: Fn() -> D,
{
    let whole = run(make(), &[input.data]);
    let cut = run(make(), &input.parts());
    assert_eq!(whole, cut, "cut stream differs");
    if input.data.len() <= 4096 {
        let bytes: Vec<&[u8]> = input.data.chunks(1).collect();
        let bw = run(make(), &bytes);
        assert_eq!(whole, bw, "byte-by-byte stream differs");
    }
}
