//! `Netstring`: D. J. Bernstein's `len:data,` frames, read and written.

use super::{DecodeError, Decoder, Encoder, DEFAULT_MAX_FRAME};
use crate::error::Error;
use bytes::{Buf, Bytes, BytesMut};

/// A netstring, `<decimal length>:<payload>,` (the reference's `netstring`
/// read type); the frame is the payload.
///
/// Errors, each raised as soon as the offending byte is buffered (never after
/// buffering a whole oversized frame):
///
/// | Input | Error | Why |
/// |---|---|---|
/// | a length that is not `0` or a decimal without leading zeros, or no `:` after it | fatal [`Error::BadMessage`] | the next frame boundary cannot be found |
/// | a declared length over [`max_len`](Netstring::max_len) (default [`DEFAULT_MAX_FRAME`]) | fatal [`Error::NoSpace`] | as soon as the digits exceed it, before the `:` |
/// | a byte other than `,` after the payload | non-fatal [`Error::BadMessage`] | the message (header, payload, bad byte) is discarded and reading goes on after it, as in the reference |
///
/// The reference raised a non-fatal error for a bad header and retried on
/// every arrival; here the stream is unusable after one, so it is fatal.
///
/// ```
/// use bytes::BytesMut;
/// use netactor::framing::{Decoder, Netstring};
/// let mut buf = BytesMut::from(&b"5:hello,0:,3:ab"[..]);
/// let mut ns = Netstring::new();
/// assert_eq!(&ns.decode(&mut buf, false).unwrap().unwrap()[..], b"hello");
/// assert_eq!(&ns.decode(&mut buf, false).unwrap().unwrap()[..], b"");
/// assert!(ns.decode(&mut buf, false).unwrap().is_none());
/// assert!(Netstring::new().decode(&mut BytesMut::from(&b"03:abc,"[..]), false).unwrap_err().fatal);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Netstring {
    max: usize,
}

impl Default for Netstring {
    fn default() -> Self {
        Self::new()
    }
}

impl Netstring {
    /// A netstring read with the default maximum payload size.
    pub fn new() -> Self {
        Netstring {
            max: DEFAULT_MAX_FRAME,
        }
    }

    /// Sets the largest accepted payload.
    pub fn max_len(mut self, max: usize) -> Self {
        self.max = max;
        self
    }
}

impl Decoder for Netstring {
    type Output = Bytes;

    fn decode(&mut self, buf: &mut BytesMut, _eof: bool) -> Result<Option<Bytes>, DecodeError> {
        // The header is re-parsed on each call: it is at most a few bytes,
        // since a length over the maximum fails at once.
        let mut len: usize = 0;
        let mut i = 0;
        loop {
            let Some(&b) = buf.get(i) else {
                return Ok(None);
            };
            match b {
                b'0'..=b'9' => {
                    if i == 1 && buf[0] == b'0' {
                        return Err(DecodeError::fatal_bad_message(
                            "netstring length has a leading zero",
                        ));
                    }
                    len = len
                        .checked_mul(10)
                        .and_then(|l| l.checked_add(usize::from(b - b'0')))
                        .filter(|&l| l <= self.max)
                        .ok_or_else(|| DecodeError::too_large(self.max))?;
                    i += 1;
                }
                b':' if i > 0 => break,
                _ if i == 0 => {
                    return Err(DecodeError::fatal_bad_message(format!(
                        "netstring must start with a decimal length, got byte 0x{b:02x}"
                    )))
                }
                _ => {
                    return Err(DecodeError::fatal_bad_message(format!(
                        "netstring length must be followed by ':', got byte 0x{b:02x}"
                    )))
                }
            }
        }
        let header = i + 1;
        // No overflow: len <= max, and the buffer holds header bytes.
        let total = header + len + 1;
        if buf.len() < total {
            return Ok(None);
        }
        if buf[total - 1] != b',' {
            let bad = buf[total - 1];
            buf.advance(total);
            return Err(DecodeError::bad_message(format!(
                "netstring of {len} bytes ends with byte 0x{bad:02x} instead of ','; message discarded"
            )));
        }
        buf.advance(header);
        let payload = buf.split_to(len).freeze();
        buf.advance(1);
        Ok(Some(payload))
    }
}

/// Sends a payload as a netstring (the reference's `netstring` write type):
/// `<len>:` + payload + `,`, queued as three buffers; the payload is not copied.
///
/// ```
/// use bytes::Bytes;
/// use netactor::framing::{Encoder, NetstringOut};
/// let mut parts = Vec::new();
/// NetstringOut::new("ns").encode(&mut parts).unwrap();
/// assert_eq!(parts.concat(), b"2:ns,");
/// ```
#[derive(Debug, Clone)]
pub struct NetstringOut {
    payload: Bytes,
}

impl NetstringOut {
    /// A netstring carrying `payload`.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        NetstringOut {
            payload: payload.into(),
        }
    }
}

impl Encoder for NetstringOut {
    fn encode(self, out: &mut Vec<Bytes>) -> Result<(), Error> {
        out.push(Bytes::from(format!("{}:", self.payload.len())));
        out.push(self.payload);
        out.push(Bytes::from_static(b","));
        Ok(())
    }
}
