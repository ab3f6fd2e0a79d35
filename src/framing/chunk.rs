//! `Chunk`: a read of exactly N bytes.

use super::{DecodeError, Decoder};
use bytes::{Bytes, BytesMut};

/// Exactly `n` bytes (the reference's `chunk => $n`).
///
/// `Chunk::new(0)` completes at once with an empty frame. At EOF with fewer
/// than `n` bytes buffered the read fails with `UnexpectedEof`.
///
/// ```
/// use bytes::BytesMut;
/// use netactor::framing::{Chunk, Decoder};
/// let mut buf = BytesMut::from(&b"abcdef"[..]);
/// assert_eq!(&Chunk::new(4).decode(&mut buf, false).unwrap().unwrap()[..], b"abcd");
/// assert!(Chunk::new(4).decode(&mut buf, false).unwrap().is_none());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Chunk {
    len: usize,
}

impl Chunk {
    /// A read of exactly `len` bytes.
    pub fn new(len: usize) -> Self {
        Chunk { len }
    }

    /// The number of bytes this read wants.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether this is a zero-length read.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Decoder for Chunk {
    type Output = Bytes;

    fn decode(&mut self, buf: &mut BytesMut, _eof: bool) -> Result<Option<Bytes>, DecodeError> {
        if buf.len() >= self.len {
            Ok(Some(buf.split_to(self.len).freeze()))
        } else {
            Ok(None)
        }
    }
}
