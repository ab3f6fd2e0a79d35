use super::{DecodeError, Decoder, DEFAULT_MAX_LINE};
use bytes::{Bytes, BytesMut};

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
}

/// A line (the reference's `line => [$eol]`).
///
/// The default terminator is `\r?\n`; [`Line::with_eol`] takes a literal one.
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

    /// Sets the longest accepted line (terminator excluded).
    pub fn max_len(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    fn find(&self, buf: &[u8]) -> Option<(usize, usize)> {
        match &self.eol {
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
        };
        self.scanned = buf_len.saturating_sub(overlap);
    }
}

impl Decoder for Line {
    type Output = LineFrame;

    fn decode(&mut self, buf: &mut BytesMut, _eof: bool) -> Result<Option<LineFrame>, DecodeError> {
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
                };
                if buf.len() > self.max + eol_max {
                    return Err(DecodeError::too_large(self.max));
                }
                self.keep_scanned(buf.len());
                Ok(None)
            }
        }
    }
}
