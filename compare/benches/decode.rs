//! Decode throughput per read type, in bytes of input per second.
//!
//! Each benchmark decodes ~1 MiB of back-to-back frames, as one buffer (the
//! setup that copies it into a fresh `BytesMut` is not timed), so the figures
//! are the decoders' own cost, comparable across changes:
//!
//! ```text
//! cargo bench -p netactor-compare --bench decode                    # all but CBOR
//! cargo bench -p netactor-compare --bench decode --features cbor    # with CBOR
//! cargo bench -p netactor-compare --bench decode -- json            # a subset
//! ```

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use netactor::framing::Encoder;
use netactor::framing::{
    Decoder, Json, JsonOut, LengthPrefixed, LengthPrefixedOut, Line, Netstring, NetstringOut,
    Prefix, Regex,
};
use std::hint::black_box;
use std::time::Duration;

const TARGET: usize = 1 << 20;

/// Repeats `frame(i)` until the stream reaches about 1 MiB; returns it and
/// the number of frames.
fn stream(mut frame: impl FnMut(usize) -> Vec<u8>) -> (Vec<u8>, usize) {
    let mut data = Vec::with_capacity(TARGET + 4096);
    let mut n = 0;
    while data.len() < TARGET {
        data.extend(frame(n));
        n += 1;
    }
    (data, n)
}

fn encoded<E: Encoder>(e: E) -> Vec<u8> {
    let mut parts = Vec::new();
    e.encode(&mut parts).unwrap();
    parts.concat()
}

fn bench_decoder<D, F>(c: &mut Criterion, name: &str, make: F, data: &[u8], frames: usize)
where
    D: Decoder,
    F: Fn() -> D,
{
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.sample_size(20);
    g.bench_function(name, |b| {
        b.iter_batched(
            || BytesMut::from(data),
            |mut buf| {
                let mut dec = make();
                let mut n = 0;
                while let Some(f) = dec.decode(&mut buf, false).unwrap() {
                    black_box(f);
                    n += 1;
                }
                assert_eq!(n, frames);
                buf
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn line_text(i: usize) -> Vec<u8> {
    format!("PRIVMSG #channel :message number {i} with some text\r\n").into_bytes()
}

fn benches(c: &mut Criterion) {
    let (d, n) = stream(line_text);
    bench_decoder(c, "line_crlf", Line::new, &d, n);
    let eol = Line::with_eol_regex(r"\r?\n").unwrap();
    bench_decoder(c, "line_regex_eol", || eol.clone(), &d, n);

    let (d, n) = stream(|i| {
        format!("GET /item/{i} HTTP/1.1\r\nHost: example.org\r\nAccept: */*\r\nUser-Agent: bench/1.0\r\n\r\n")
            .into_bytes()
    });
    let hdr = Regex::new(r"\r\n\r\n").unwrap();
    bench_decoder(c, "regex_http_header", || hdr.clone(), &d, n);
    // The same terminator as a literal line end: the yardstick for the
    // regex's literal fast path (issue 14: within 1.5x of this).
    let hdr_line = Line::with_eol("\r\n\r\n");
    bench_decoder(c, "line_eol_http_header", || hdr_line.clone(), &d, n);
    let guarded = Regex::new(r"\r\n\r\n")
        .unwrap()
        .reject(r"(?-u)[\x00\x80-\xff]")
        .unwrap()
        .skip(r"(?s)^.*[^\r\n]")
        .unwrap();
    bench_decoder(c, "regex_accept_reject_skip", || guarded.clone(), &d, n);

    let (d, n) = stream(|i| encoded(NetstringOut::new(vec![b'a' + (i % 26) as u8; 64])));
    bench_decoder(c, "netstring_64B", Netstring::new, &d, n);
    let (d, n) = stream(|_| encoded(NetstringOut::new(vec![b'x'; 4096])));
    bench_decoder(c, "netstring_4KiB", Netstring::new, &d, n);

    let (d, n) = stream(|_| encoded(LengthPrefixedOut::new(Prefix::U32Be, vec![7u8; 64])));
    bench_decoder(
        c,
        "length_u32be_64B",
        || LengthPrefixed::new(Prefix::U32Be),
        &d,
        n,
    );
    let (d, n) = stream(|_| encoded(LengthPrefixedOut::new(Prefix::Ber, vec![7u8; 200])));
    bench_decoder(
        c,
        "length_ber_200B",
        || LengthPrefixed::new(Prefix::Ber),
        &d,
        n,
    );

    let (d, n) = stream(|i| {
        let v = serde_json::json!({"id": i, "name": "widget", "tags": ["a", "b"], "price": 12.5});
        encoded(JsonOut::new(&v).newline())
    });
    bench_decoder(c, "json_value", Json::new, &d, n);
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Item {
        id: u64,
        name: String,
        tags: Vec<String>,
        price: f64,
    }
    bench_decoder(c, "json_typed", Json::<Item>::typed, &d, n);

    #[cfg(feature = "cbor")]
    {
        use netactor::framing::{Cbor, CborAs, CborOut};
        let (d, n) = stream(|i| {
            encoded(CborOut::new(&(
                i as u64,
                "widget",
                vec![1u32, 2, 3],
                12.5f64,
            )))
        });
        bench_decoder(c, "cbor_item", Cbor::new, &d, n);
        bench_decoder(
            c,
            "cbor_typed",
            CborAs::<(u64, String, Vec<u32>, f64)>::new,
            &d,
            n,
        );
    }
}

criterion_group!(decode, benches);
criterion_main!(decode);
