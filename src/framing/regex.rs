//! `Regex`: data up to (and including) a regex match, with optional reject and skip patterns.

use super::scan::{Decision, Engine, Halt, Pattern, Patterns};
use super::{DecodeError, Decoder, DEFAULT_MAX_FRAME};
use crate::error::Error;
use bytes::{Bytes, BytesMut};
use regex_automata::MatchKind;
use std::sync::Arc;

/// Bytes up to the end of a regex match (the reference's
/// `regex => $accept[, $reject[, $skip]]`).
///
/// The frame is everything from the front of the buffer up to the end of the
/// accept pattern's match, including bytes skipped before it. Patterns use
/// [`regex::bytes`](https://docs.rs/regex/latest/regex/bytes/) syntax (set
/// flags inline, e.g. `(?i)` or `(?s)`); matching is linear-time (a lazy
/// DFA), and the scan resumes where it stopped, so a peer that trickles
/// bytes costs O(n) in total, not O(n²).
///
/// # Matching on a stream
///
/// The buffer is only a prefix of the stream, so results are defined on the
/// stream and never depend on how it was split into reads:
///
/// - Positions are examined in stream order. At the first position where a
///   match of some pattern *ends*, accept wins over reject, reject over skip.
/// - An accept then extends to the end of its leftmost-first match (as
///   `regex` would find it), and is delivered once no further byte can
///   change that: `\r\n\r\n` completes as soon as the terminator is in, but
///   `\d+` on `"12"` waits for the next byte (or the end of the stream).
/// - A **reject** match is a non-fatal [`Error::BadMessage`]: the bytes up
///   to the end of the reject match (at least one byte), including skipped
///   ones, are discarded, so the next read starts after them. (The reference
///   kept the read queued and repeated the error on every arrival.)
/// - A **skip** match (non-empty) moves the start of matching to its end: the
///   skipped bytes stay in the frame, but later matches start after them and
///   `^` matches there. Use it to keep an anchored accept from rescanning.
/// - `$` and `\z` match only at the end of the stream.
/// - Unicode `\b` is not supported on streams; write `(?-u:\b)`.
///
/// This differs from the reference, which tried the patterns against
/// whatever happened to be buffered (so `accept` found anywhere in a large
/// read beat a `reject` earlier in it) — there, results depended on read
/// sizes.
///
/// # Limits and errors
///
/// A frame longer than [`max_len`](Regex::max_len) (default
/// [`DEFAULT_MAX_FRAME`]) fails with a fatal [`Error::NoSpace`] once
/// `max_len + 1` bytes are buffered without a decision, as does an accept
/// match that could still grow past the limit. When no pattern can match any
/// more (an anchored accept that failed, and no reject or skip left), the
/// read fails with a fatal [`Error::BadMessage`]: nothing will ever complete
/// it. A partial frame at end of stream is left in the buffer (the
/// connection reports `UnexpectedEof`).
///
/// Compiling the patterns is the expensive part: build one `Regex` and
/// clone it for each read (clones share the compiled patterns).
///
/// Needs the `regex` feature (on by default).
///
/// ```
/// use bytes::BytesMut;
/// use netactor::framing::{Decoder, Regex};
///
/// let header = Regex::new(r"\r\n\r\n")?.reject(r"(?-u)[\x00\x80-\xff]")?;
/// let mut buf = BytesMut::from(&b"GET / HTTP/1.0\r\nHost: x\r\n\r\nbody"[..]);
/// let frame = header.clone().decode(&mut buf, false).unwrap().unwrap();
/// assert_eq!(&frame[..], b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
/// assert_eq!(&buf[..], b"body");
///
/// let mut bad = BytesMut::from(&b"GET \x00/\r\n\r\nnext"[..]);
/// let err = header.clone().decode(&mut bad, false).unwrap_err();
/// assert!(!err.fatal);
/// assert_eq!(&bad[..], b"/\r\n\r\nnext"); // discarded through the reject match
/// # Ok::<(), netactor::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Regex {
    pats: Arc<Patterns>,
    engine: Engine,
    max: usize,
}

impl Regex {
    /// A read up to the end of the first match of `accept`. Fails with
    /// [`Error::InvalidInput`] if the pattern does not compile.
    pub fn new(accept: &str) -> Result<Regex, Error> {
        let pats = Patterns {
            accept: Pattern::new(accept, MatchKind::LeftmostFirst)?,
            reject: None,
            skip: None,
        };
        Self::from_patterns(pats)
    }

    fn from_patterns(pats: Patterns) -> Result<Regex, Error> {
        let engine = Engine::new(&pats)?;
        Ok(Regex {
            pats: Arc::new(pats),
            engine,
            max: DEFAULT_MAX_FRAME,
        })
    }

    fn rebuild(self, f: impl FnOnce(&mut Patterns) -> Result<(), Error>) -> Result<Regex, Error> {
        let Patterns {
            accept,
            reject,
            skip,
        } = match Arc::try_unwrap(self.pats) {
            Ok(p) => p,
            Err(shared) => Patterns {
                accept: Pattern::new(shared.accept.as_str(), MatchKind::LeftmostFirst)?,
                reject: shared
                    .reject
                    .as_ref()
                    .map(|p| Pattern::new(p.as_str(), MatchKind::All))
                    .transpose()?,
                skip: shared
                    .skip
                    .as_ref()
                    .map(|p| Pattern::new(p.as_str(), MatchKind::All))
                    .transpose()?,
            },
        };
        let mut pats = Patterns {
            accept,
            reject,
            skip,
        };
        f(&mut pats)?;
        let mut r = Self::from_patterns(pats)?;
        r.max = self.max;
        Ok(r)
    }

    /// Adds a reject pattern: a match of it (before any accept match) fails
    /// the read with a non-fatal [`Error::BadMessage`].
    pub fn reject(self, pattern: &str) -> Result<Regex, Error> {
        let p = Pattern::new(pattern, MatchKind::All)?;
        self.rebuild(|pats| {
            pats.reject = Some(p);
            Ok(())
        })
    }

    /// Adds a skip pattern: bytes through the end of a (non-empty) match of
    /// it are no longer searched, though they stay part of the frame.
    pub fn skip(self, pattern: &str) -> Result<Regex, Error> {
        let p = Pattern::new(pattern, MatchKind::All)?;
        self.rebuild(|pats| {
            pats.skip = Some(p);
            Ok(())
        })
    }

    /// Sets the longest accepted frame (skipped bytes and match included).
    pub fn max_len(mut self, max: usize) -> Self {
        self.max = max;
        self
    }
}

impl Decoder for Regex {
    type Output = Bytes;

    fn decode(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Option<Bytes>, DecodeError> {
        if buf.is_empty() {
            return Ok(None);
        }
        let decision = self.engine.poll(&self.pats, buf, eof, self.max);
        let out = match decision {
            Ok(None) => return Ok(None),
            Ok(Some(Decision::Accept { end })) => Ok(Some(buf.split_to(end).freeze())),
            Ok(Some(Decision::Reject { end })) => {
                // At least one byte, so a stream of errors always progresses.
                let n = end.max(1).min(buf.len());
                let _ = buf.split_to(n);
                Err(DecodeError::bad_message(format!(
                    "reject pattern {:?} matched",
                    self.pats.reject.as_ref().map_or("", |p| p.as_str())
                )))
            }
            Err(Halt::Limit) => Err(DecodeError::too_large(self.max)),
            Err(Halt::NoMatch) => Err(DecodeError::fatal_bad_message(format!(
                "regex {:?} can no longer match",
                self.pats.accept.as_str()
            ))),
            Err(Halt::Engine(e)) => Err(DecodeError {
                error: e,
                fatal: true,
            }),
        };
        // Whatever happened, the next frame starts a new scan.
        self.reset();
        out
    }

    fn reset(&mut self) {
        // Restarting only fetches start states; it cannot fail in practice,
        // and a failure would resurface as an error on the next decode.
        let _ = self.engine.reset(&self.pats);
    }
}
