//! `Raw`: every byte that arrived, as one frame (streaming mode's simplest reader).

use super::{DecodeError, Decoder};
use bytes::{Bytes, BytesMut};

/// Whatever bytes are buffered, as one frame (the reference's plain `on_read`).
///
/// This is the streaming read type for byte streams such as an echo server:
/// each socket read becomes one frame, without a copy.
///
/// ```
/// use bytes::BytesMut;
/// use netactor::framing::{Decoder, Raw};
/// let mut buf = BytesMut::from(&b"xyz"[..]);
/// assert_eq!(&Raw.decode(&mut buf, false).unwrap().unwrap()[..], b"xyz");
/// assert!(Raw.decode(&mut buf, false).unwrap().is_none());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Decoder for Raw {
    type Output = Bytes;

    // Inlined into the streaming adapter, which is instantiated in the
    // application's crate: out of line this is a cross-crate call per frame.
    #[inline]
    fn decode(&mut self, buf: &mut BytesMut, _eof: bool) -> Result<Option<Bytes>, DecodeError> {
        if buf.is_empty() {
            Ok(None)
        } else {
            Ok(Some(buf.split().freeze()))
        }
    }
}
