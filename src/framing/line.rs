//! `Line`: data up to an end-of-line marker (`\n`, `\r\n` or any byte string or regex).

#[cfg(feature = "regex")]
use super::scan::{Decision, Engine, Halt, Pattern, Patterns};
use super::{DecodeError, Decoder, DEFAULT_MAX_LINE};
#[cfg(feature = "regex")]
use crate::error::Error;
use bytes::{Bytes, BytesMut};
#[cfg(feature = "regex")]
use regex_automata::MatchKind;
#[cfg(feature = "regex")]
use std::sync::Arc;

/// One decoded line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFrame {
    /// The line, without its terminator.
    pub line: Bytes,
    /// The terminator that ended it (`"\r\n"`, `"\n"` or the custom EOL).
    pub eol: Bytes,
}

#[derive(Debug, Clone)]
enum Eol {
    /// `\n`, with one optional `\r` before it stripped.
    CrLfOrLf,
    /// A literal byte string.
    Literal(Bytes),
    /// A regex: the line ends where its leftmost-first match starts.
    #[cfg(feature = "regex")]
    Regex(Box<RegexEol>),
}

#[cfg(feature = "regex")]
#[derive(Debug, Clone)]
struct RegexEol {
    pats: Arc<Patterns>,
    engine: Engine,
    /// The same pattern for `regex`, to find where the match starts once the
    /// scan has established where it ends.
    re: regex::bytes::Regex,
}

/// A line (the reference's `line => [$eol]`).
///
/// The default terminator is `\r?\n`; [`Line::with_eol`] takes a literal one
/// and [`Line::with_eol_regex`] (feature `regex`) a regex.
/// A line longer than its maximum (default 64 KiB) is a fatal `NoSpace`
/// error raised as soon as that many bytes are buffered without a terminator
/// — the reference had no bound at all. A partial last line at EOF is never
/// returned: the read fails with `UnexpectedEof`.
///
/// ```
/// use bytes::BytesMut;
/// use netactor::framing::{Decoder, Line};
/// let mut buf = BytesMut::from(&b"a;;b;;"[..]);
/// let mut semi = Line::with_eol(";;");
/// assert_eq!(&semi.decode(&mut buf, false).unwrap().unwrap().line[..], b"a");
/// assert_eq!(&semi.decode(&mut buf, false).unwrap().unwrap().line[..], b"b");
/// ```
#[cfg_attr(
    not(feature = "regex"),
    doc = "[`Line::with_eol_regex`]: crate#cargo-features"
)]
#[derive(Debug, Clone)]
pub struct Line {
    eol: Eol,
    max: usize,
    /// Bytes already scanned without finding the terminator.
    scanned: usize,
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Line {
    /// A line ending in `\n` or `\r\n`.
    pub fn new() -> Self {
        Line {
            eol: Eol::CrLfOrLf,
            max: DEFAULT_MAX_LINE,
            scanned: 0,
        }
    }

    /// A line ending in the literal `eol` (an empty `eol` yields an empty line at once).
    pub fn with_eol(eol: impl AsRef<[u8]>) -> Self {
        Line {
            eol: Eol::Literal(Bytes::copy_from_slice(eol.as_ref())),
            max: DEFAULT_MAX_LINE,
            scanned: 0,
        }
    }

    /// A line ending at the first match of the regex `eol` (the reference's
    /// `line => qr/.../`): the line is the shortest prefix followed by a
    /// match, and [`LineFrame::eol`] is the matched text. Fails with
    /// [`Error::InvalidInput`] if the pattern does not compile.
    ///
    /// The match is taken on the stream, as for [`Regex`](super::Regex): a
    /// match that could still grow (`[;,]+` on `"a;"`) waits for the next
    /// byte or the end of the stream, so the result never depends on how the
    /// stream was split into reads. With a regex terminator,
    /// [`max_len`](Line::max_len) bounds the line and its terminator together.
    /// Build one `Line` and clone it per read: compiling is the costly part.
    ///
    /// Needs the `regex` feature (on by default).
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use netactor::framing::{Decoder, Line};
    /// let mut line = Line::with_eol_regex(r"[;,]+")?;
    /// let mut buf = BytesMut::from(&b"c;;,d;"[..]);
    /// let got = line.decode(&mut buf, false).unwrap().unwrap();
    /// assert_eq!((&got.line[..], &got.eol[..]), (&b"c"[..], &b";;,"[..]));
    /// assert!(line.decode(&mut buf, false).unwrap().is_none()); // ";" may grow
    /// let got = line.decode(&mut buf, true).unwrap().unwrap();   // not at EOF
    /// assert_eq!((&got.line[..], &got.eol[..]), (&b"d"[..], &b";"[..]));
    /// # Ok::<(), netactor::Error>(())
    /// ```
    #[cfg(feature = "regex")]
    pub fn with_eol_regex(eol: &str) -> Result<Self, Error> {
        let pats = Patterns {
            accept: Pattern::new(eol, MatchKind::LeftmostFirst)?,
            reject: None,
            skip: None,
        };
        let re = regex::bytes::Regex::new(eol)
            .map_err(|e| Error::InvalidInput(format!("regex {eol:?}: {e}")))?;
        let engine = Engine::new(&pats)?;
        Ok(Line {
            eol: Eol::Regex(Box::new(RegexEol {
                pats: Arc::new(pats),
                engine,
                re,
            })),
            max: DEFAULT_MAX_LINE,
            scanned: 0,
        })
    }

    /// Sets the longest accepted line (terminator excluded, except for a
    /// regex terminator, see [`Line::with_eol_regex`]).
    ///
    #[cfg_attr(
        not(feature = "regex"),
        doc = "[`Line::with_eol_regex`]: crate#cargo-features"
    )]
    pub fn max_len(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    fn find(&self, buf: &[u8]) -> Option<(usize, usize)> {
        match &self.eol {
            #[cfg(feature = "regex")]
            Eol::Regex(_) => None,
            Eol::CrLfOrLf => {
                let nl = self.scanned + memchr::memchr(b'\n', &buf[self.scanned..])?;
                if nl > 0 && buf[nl - 1] == b'\r' {
                    Some((nl - 1, 2))
                } else {
                    Some((nl, 1))
                }
            }
            Eol::Literal(eol) => {
                let at = self.scanned + memchr::memmem::find(&buf[self.scanned..], eol)?;
                Some((at, eol.len()))
            }
        }
    }

    fn keep_scanned(&mut self, buf_len: usize) {
        // Resume where the terminator could still begin.
        let overlap = match &self.eol {
            Eol::CrLfOrLf => 0,
            Eol::Literal(eol) => eol.len().saturating_sub(1),
            #[cfg(feature = "regex")]
            Eol::Regex(_) => 0,
        };
        self.scanned = buf_len.saturating_sub(overlap);
    }
}

impl Decoder for Line {
    type Output = LineFrame;

    fn decode(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Option<LineFrame>, DecodeError> {
        #[cfg(feature = "regex")]
        if let Eol::Regex(r) = &mut self.eol {
            return decode_regex(r, self.max, buf, eof);
        }
        // Only a regex terminator can depend on the end of the stream; a
        // plain one is found or not in the bytes already here.
        #[cfg(not(feature = "regex"))]
        let _ = eof;
        if self.scanned > buf.len() {
            self.scanned = 0;
        }
        match self.find(buf) {
            Some((at, eol_len)) => {
                self.scanned = 0;
                if at > self.max {
                    return Err(DecodeError::too_large(self.max));
                }
                let line = buf.split_to(at).freeze();
                let eol = buf.split_to(eol_len).freeze();
                Ok(Some(LineFrame { line, eol }))
            }
            None => {
                // The longest acceptable line plus its longest terminator.
                let eol_max = match &self.eol {
                    Eol::CrLfOrLf => 2,
                    Eol::Literal(e) => e.len(),
                    #[cfg(feature = "regex")]
                    Eol::Regex(_) => 0,
                };
                if buf.len() > self.max + eol_max {
                    return Err(DecodeError::too_large(self.max));
                }
                self.keep_scanned(buf.len());
                Ok(None)
            }
        }
    }

    fn reset(&mut self) {
        self.scanned = 0;
        #[cfg(feature = "regex")]
        if let Eol::Regex(r) = &mut self.eol {
            let _ = r.engine.reset(&r.pats);
        }
    }
}

#[cfg(feature = "regex")]
fn decode_regex(
    r: &mut RegexEol,
    max: usize,
    buf: &mut BytesMut,
    eof: bool,
) -> Result<Option<LineFrame>, DecodeError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let end = match r.engine.poll(&r.pats, buf, eof, max) {
        Ok(None) => return Ok(None),
        Ok(Some(Decision::Accept { end })) => end,
        // There is no reject pattern, so this cannot happen; fail safe.
        Ok(Some(Decision::Reject { .. })) => usize::MAX,
        Err(Halt::Limit) => {
            let _ = r.engine.reset(&r.pats);
            return Err(DecodeError::too_large(max));
        }
        Err(Halt::NoMatch) => {
            let _ = r.engine.reset(&r.pats);
            return Err(DecodeError::fatal_bad_message(format!(
                "end-of-line regex {:?} can no longer match",
                r.re.as_str()
            )));
        }
        Err(Halt::Engine(e)) => {
            return Err(DecodeError {
                error: e,
                fatal: true,
            })
        }
    };
    let _ = r.engine.reset(&r.pats);
    // The scan proved that no continuation of the stream changes the
    // leftmost-first match, so `regex` on the buffered bytes finds the same
    // match; it is used only to learn where the match starts.
    match r.re.find(buf).map(|m| m.range()) {
        Some(m) if m.end == end => {
            let line = buf.split_to(m.start).freeze();
            let eol = buf.split_to(m.len()).freeze();
            Ok(Some(LineFrame { line, eol }))
        }
        _ => Err(DecodeError::fatal_bad_message(format!(
            "end-of-line regex {:?}: inconsistent match",
            r.re.as_str()
        ))),
    }
}
