//! `Json`: one JSON value per frame, read and written.

use super::{DecodeError, Decoder, Encoder, DEFAULT_MAX_FRAME};
use crate::error::Error;
use bytes::{Buf, Bytes, BytesMut};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Serialize;
use serde_json::Value;
use std::marker::PhantomData;

/// Bytes parsed before the first full parse attempt of a value that has not
/// visibly ended; later attempts happen each time the buffer doubles, so a
/// syntax error deep in a large value is found without quadratic reparsing.
const FIRST_PROBE: usize = 4096;

/// One JSON text (the reference's `json` read type): a complete top-level
/// value, parsed with `serde_json`; whitespace between values is skipped, so
/// this reads whitespace- or newline-separated streams (NDJSON).
///
/// `Json::new()` yields [`serde_json::Value`]s; `Json::<T>::typed()`
/// deserializes into any `T: DeserializeOwned`.
///
/// On a stream the end of a value is not always visible: a top-level number,
/// `true`, `false` or `null` at the end of the buffer may continue (`12` may
/// become `123`), so it completes only once the next byte or the end of the
/// stream is seen. Objects, arrays and strings complete at their closing byte.
///
/// Errors:
///
/// | Input | Error |
/// |---|---|
/// | malformed JSON | non-fatal [`Error::BadMessage`]; the bytes up to and including the one where the parser failed are discarded and reading resumes after them (as the reference's parser skipped bad text) |
/// | valid JSON that does not fit `T` (typed reads) | non-fatal [`Error::BadMessage`]; the whole value is discarded |
/// | no complete value within [`max_len`](Json::max_len) bytes (default [`DEFAULT_MAX_FRAME`]) | fatal [`Error::NoSpace`], once `max_len + 1` bytes of the value are buffered |
///
/// Nesting deeper than 128 levels is malformed (serde_json's limit), so
/// hostile input cannot exhaust the stack. The scan for the end of a value
/// resumes where it stopped, so a slowly trickled value costs O(n).
///
/// Needs the `json` feature (on by default).
///
/// ```
/// use bytes::BytesMut;
/// use netactor::framing::{Decoder, Json};
/// let mut buf = BytesMut::from(&b"{\"a\":1}\n[2] 3"[..]);
/// let mut json = Json::new();
/// assert_eq!(json.decode(&mut buf, false).unwrap().unwrap(), serde_json::json!({"a": 1}));
/// assert_eq!(json.decode(&mut buf, false).unwrap().unwrap(), serde_json::json!([2]));
/// assert!(json.decode(&mut buf, false).unwrap().is_none()); // 3 may go on
/// assert_eq!(json.decode(&mut buf, true).unwrap().unwrap(), serde_json::json!(3));
/// ```
pub struct Json<T = Value> {
    max: usize,
    scan: Scan,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        Json {
            max: self.max,
            scan: self.scan.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Json")
            .field("type", &std::any::type_name::<T>())
            .field("max", &self.max)
            .finish()
    }
}

impl Default for Json<Value> {
    fn default() -> Self {
        Self::new()
    }
}

impl Json<Value> {
    /// A read of one JSON value as a [`serde_json::Value`].
    pub fn new() -> Self {
        Self::typed()
    }
}

impl<T> Json<T> {
    /// A read of one JSON value deserialized into `T`.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use netactor::framing::{Decoder, Json};
    /// let mut buf = BytesMut::from(&b"[1,2] [\"x\"] [3]"[..]);
    /// let mut read = Json::<Vec<u32>>::typed();
    /// assert_eq!(read.decode(&mut buf, false).unwrap().unwrap(), vec![1, 2]);
    /// assert!(!read.decode(&mut buf, false).unwrap_err().fatal); // not a Vec<u32>: skipped
    /// assert_eq!(read.decode(&mut buf, false).unwrap().unwrap(), vec![3]);
    /// ```
    pub fn typed() -> Self {
        Json {
            max: DEFAULT_MAX_FRAME,
            scan: Scan::default(),
            _t: PhantomData,
        }
    }

    /// Sets the largest accepted JSON text, in bytes.
    pub fn max_len(mut self, max: usize) -> Self {
        self.max = max;
        self
    }
}

/// Resumable search for where the value at the front of the buffer ends.
///
/// It only tracks strings and bracket depth — enough to see a value's last
/// byte; serde_json does the real parsing once per candidate end.
#[derive(Clone, Debug)]
struct Scan {
    /// Bytes examined so far.
    pos: usize,
    depth: usize,
    in_str: bool,
    escaped: bool,
    /// The value visibly ended.
    candidate: bool,
    /// A parse at the visible end was inconclusive once already.
    retried: bool,
    /// Parse once the view is at least this long.
    next_parse: usize,
}

impl Default for Scan {
    fn default() -> Self {
        Scan {
            pos: 0,
            depth: 0,
            in_str: false,
            escaped: false,
            candidate: false,
            retried: false,
            next_parse: FIRST_PROBE,
        }
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_delimiter(b: u8) -> bool {
    is_ws(b) || matches!(b, b',' | b':' | b'[' | b']' | b'{' | b'}' | b'"')
}

/// Whether a value starting with `b` is self-delimiting (it ends at a byte
/// of its own, not at the byte after it).
fn self_delimiting(b: u8) -> bool {
    matches!(b, b'{' | b'[' | b'"')
}

impl Scan {
    fn run(&mut self, view: &[u8]) {
        let Some(&first) = view.first() else {
            return;
        };
        if self.candidate {
            return;
        }
        self.scan(view, first);
        if self.candidate {
            // The value visibly ended: parse now.
            self.next_parse = 0;
        }
    }

    fn scan(&mut self, view: &[u8], first: u8) {
        while self.pos < view.len() && !self.candidate {
            let b = view[self.pos];
            let i = self.pos;
            self.pos += 1;
            if i == 0 {
                match first {
                    b'{' | b'[' => self.depth = 1,
                    b'"' => self.in_str = true,
                    b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {}
                    // Not a value at all: let the parser say so.
                    _ => self.candidate = true,
                }
                continue;
            }
            if !self_delimiting(first) {
                // A number or literal ends at the first byte that cannot
                // continue one (a delimiter, or garbage for the parser to
                // report now rather than after more input).
                if is_delimiter(b)
                    || !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
                {
                    self.candidate = true;
                }
                continue;
            }
            if self.in_str {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_str = false;
                    if self.depth == 0 {
                        self.candidate = true;
                    }
                }
                continue;
            }
            match b {
                b'"' => self.in_str = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        self.candidate = true;
                    }
                }
                _ => {}
            }
        }
    }
}

/// What one parse attempt established.
enum Parsed<T> {
    Value(T, usize),
    /// Malformed (or not a `T`): discard this many bytes.
    Bad(String, usize),
    Incomplete,
    TooLarge,
}

/// The 0-based index of the byte a serde_json error points at.
fn error_index(view: &[u8], e: &serde_json::Error) -> usize {
    let mut line_start = 0;
    for _ in 1..e.line() {
        match memchr::memchr(b'\n', &view[line_start..]) {
            Some(i) => line_start += i + 1,
            None => break,
        }
    }
    line_start + e.column().saturating_sub(1)
}

/// Parses the value at the front of `view`. `stream_end`: no byte follows
/// `view` in the stream. `truncated`: `view` was cut at `max + 1` bytes.
fn parse<T: DeserializeOwned>(
    view: &[u8],
    stream_end: bool,
    truncated: bool,
    max: usize,
) -> Parsed<T> {
    let scalar = !self_delimiting(view[0]);
    let mut it = serde_json::Deserializer::from_slice(view).into_iter::<T>();
    match it.next() {
        Some(Ok(v)) => {
            let end = it.byte_offset();
            if scalar && end == view.len() && !stream_end {
                // `12` may be the start of `123`.
                return if truncated {
                    Parsed::TooLarge
                } else {
                    Parsed::Incomplete
                };
            }
            if end > max {
                return Parsed::TooLarge;
            }
            Parsed::Value(v, end)
        }
        None => Parsed::Incomplete,
        Some(Err(e)) => {
            if e.is_eof() {
                return if truncated {
                    Parsed::TooLarge
                } else {
                    Parsed::Incomplete
                };
            }
            if e.is_data() {
                // Well-formed so far but not a `T`: find where the value ends
                // and discard all of it.
                return match parse::<IgnoredAny>(view, stream_end, truncated, max) {
                    Parsed::Value(_, end) => Parsed::Bad(e.to_string(), end),
                    Parsed::Bad(why, n) => Parsed::Bad(why, n),
                    Parsed::Incomplete => Parsed::Incomplete,
                    Parsed::TooLarge => Parsed::TooLarge,
                };
            }
            let at = error_index(view, &e);
            if at + 1 >= view.len() && !stream_end {
                // An error at the last byte may depend on the next one
                // (`1e999` vs `1e9999`, `nul` vs `nulx`): wait for it.
                return if truncated {
                    Parsed::TooLarge
                } else {
                    Parsed::Incomplete
                };
            }
            Parsed::Bad(e.to_string(), (at + 1).clamp(1, view.len()))
        }
    }
}

impl<T: DeserializeOwned + Send + 'static> Decoder for Json<T> {
    type Output = T;

    fn decode(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Option<T>, DecodeError> {
        if self.scan.pos > buf.len() {
            // The buffer shrank behind our back: start over.
            self.scan = Scan::default();
        }
        if self.scan.pos == 0 {
            // Whitespace between values belongs to no frame: drop it, so a
            // stream of whitespace never accumulates.
            let ws = buf.iter().take_while(|&&b| is_ws(b)).count();
            buf.advance(ws);
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let truncated = buf.len() > self.max;
        let view = &buf[..buf.len().min(self.max.saturating_add(1))];
        self.scan.run(view);
        let due = eof || truncated || view.len() >= self.scan.next_parse;
        if !due {
            return Ok(None);
        }
        let stream_end = eof && !truncated;
        match parse::<T>(view, stream_end, truncated, self.max) {
            Parsed::Value(v, end) => {
                buf.advance(end);
                self.scan = Scan::default();
                Ok(Some(v))
            }
            Parsed::Bad(why, n) => {
                buf.advance(n);
                self.scan = Scan::default();
                Err(DecodeError::bad_message(format!("malformed JSON: {why}")))
            }
            Parsed::TooLarge => {
                self.scan = Scan::default();
                Err(DecodeError::too_large(self.max))
            }
            Parsed::Incomplete => {
                // After a visible end, one more byte settles it; otherwise
                // (and to stay linear if it does not) try again when the
                // value has doubled.
                self.scan.next_parse = if self.scan.candidate && !self.scan.retried {
                    self.scan.retried = true;
                    view.len() + 1
                } else {
                    view.len().saturating_mul(2).max(FIRST_PROBE)
                };
                Ok(None)
            }
        }
    }

    fn reset(&mut self) {
        self.scan = Scan::default();
    }
}

/// Sends a value as compact JSON (the reference's `json` write type: UTF-8,
/// no trailing newline unless [`newline`](JsonOut::newline) asks for one).
/// The text is serialized into one buffer that is queued as it is.
///
/// A value serde_json cannot serialize (e.g. a map with non-string keys)
/// fails with [`Error::InvalidInput`] and nothing is sent.
///
/// Needs the `json` feature (on by default).
///
/// ```
/// use netactor::framing::{Encoder, JsonOut};
/// let mut parts = Vec::new();
/// JsonOut::new(&serde_json::json!({"a": [1, 2]})).newline().encode(&mut parts).unwrap();
/// assert_eq!(parts.concat(), b"{\"a\":[1,2]}\n");
/// ```
#[derive(Debug)]
pub struct JsonOut<'a, T: ?Sized> {
    value: &'a T,
    newline: bool,
}

impl<'a, T: Serialize + ?Sized> JsonOut<'a, T> {
    /// `value` as JSON.
    pub fn new(value: &'a T) -> Self {
        JsonOut {
            value,
            newline: false,
        }
    }

    /// Appends `\n` (for newline-delimited peers).
    pub fn newline(mut self) -> Self {
        self.newline = true;
        self
    }
}

impl<T: Serialize + ?Sized> Encoder for JsonOut<'_, T> {
    fn encode(self, out: &mut Vec<Bytes>) -> Result<(), Error> {
        let mut text = serde_json::to_vec(self.value)
            .map_err(|e| Error::InvalidInput(format!("cannot encode as JSON: {e}")))?;
        if self.newline {
            text.push(b'\n');
        }
        out.push(Bytes::from(text));
        Ok(())
    }
}
