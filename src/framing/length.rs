//! `LengthPrefixed`: frames behind a length prefix (`Prefix`: the reference's
//! `packstring` formats), read and written.

use super::{DecodeError, Decoder, Encoder, DEFAULT_MAX_FRAME};
use crate::error::Error;
use bytes::{Buf, Bytes, BytesMut};

/// How a length prefix is encoded (the reference's `packstring` formats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Prefix {
    /// One byte (Perl `C`).
    U8,
    /// Two bytes, big-endian (Perl `n`, `S>`).
    U16Be,
    /// Two bytes, little-endian (Perl `v`, `S<`).
    U16Le,
    /// Four bytes, big-endian (Perl `N`, `L>`).
    U32Be,
    /// Four bytes, little-endian (Perl `V`, `L<`).
    U32Le,
    /// Eight bytes, big-endian (Perl `Q>`, `J>`).
    U64Be,
    /// Eight bytes, little-endian (Perl `Q<`, `J<`).
    U64Le,
    /// A BER-compressed integer (Perl `w`): base-128 digits, most significant
    /// first, the high bit set on all but the last byte; at most 10 bytes.
    Ber,
}

/// The longest BER encoding of a 64-bit value.
const BER_MAX_LEN: usize = 10;

impl Prefix {
    /// Maps a Perl `pack` format to a prefix: `C n v N V w` and the explicit
    /// endianness forms `S> S< L> L< Q> Q< J> J<`. Native-endian and signed
    /// formats have no portable meaning as a length and give `None`.
    ///
    /// ```
    /// use netactor::framing::Prefix;
    /// assert_eq!(Prefix::from_pack_format("N"), Some(Prefix::U32Be));
    /// assert_eq!(Prefix::from_pack_format("w"), Some(Prefix::Ber));
    /// assert_eq!(Prefix::from_pack_format("l"), None);
    /// ```
    pub fn from_pack_format(format: &str) -> Option<Prefix> {
        Some(match format {
            "C" => Prefix::U8,
            "n" | "S>" => Prefix::U16Be,
            "v" | "S<" => Prefix::U16Le,
            "N" | "L>" => Prefix::U32Be,
            "V" | "L<" => Prefix::U32Le,
            "Q>" | "J>" => Prefix::U64Be,
            "Q<" | "J<" => Prefix::U64Le,
            "w" => Prefix::Ber,
            _ => return None,
        })
    }

    /// The prefix size in bytes (`None` for the variable-length BER form).
    pub fn width(self) -> Option<usize> {
        match self {
            Prefix::U8 => Some(1),
            Prefix::U16Be | Prefix::U16Le => Some(2),
            Prefix::U32Be | Prefix::U32Le => Some(4),
            Prefix::U64Be | Prefix::U64Le => Some(8),
            Prefix::Ber => None,
        }
    }

    /// The largest length this prefix can carry.
    pub fn max_value(self) -> u64 {
        match self.width() {
            Some(w) if w < 8 => (1u64 << (8 * w)) - 1,
            _ => u64::MAX,
        }
    }

    /// Writes the prefix for `len` into `out`, returning its size.
    fn encode(self, len: u64, out: &mut [u8; BER_MAX_LEN]) -> usize {
        match self {
            Prefix::U8 => {
                out[0] = len as u8;
                1
            }
            Prefix::U16Be => put(out, &(len as u16).to_be_bytes()),
            Prefix::U16Le => put(out, &(len as u16).to_le_bytes()),
            Prefix::U32Be => put(out, &(len as u32).to_be_bytes()),
            Prefix::U32Le => put(out, &(len as u32).to_le_bytes()),
            Prefix::U64Be => put(out, &len.to_be_bytes()),
            Prefix::U64Le => put(out, &len.to_le_bytes()),
            Prefix::Ber => {
                // Base-128 digits, least significant first, then reversed.
                let mut n = 0;
                let mut v = len;
                loop {
                    out[n] = (v & 0x7f) as u8 | if n > 0 { 0x80 } else { 0 };
                    n += 1;
                    v >>= 7;
                    if v == 0 {
                        break;
                    }
                }
                out[..n].reverse();
                n
            }
        }
    }

    /// Parses the prefix at the front of `buf`: `Ok(None)` if incomplete,
    /// else the prefix size and the declared length (already checked
    /// against `max`).
    fn decode(self, buf: &[u8], max: usize) -> Result<Option<(usize, usize)>, DecodeError> {
        let check = |len: u64| -> Result<usize, DecodeError> {
            usize::try_from(len)
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(|| DecodeError::too_large(max))
        };
        let Some(w) = self.width() else {
            return self.decode_ber(buf, max);
        };
        if buf.len() < w {
            return Ok(None);
        }
        let mut b = [0u8; 8];
        let len = match self {
            Prefix::U8 => u64::from(buf[0]),
            Prefix::U16Be | Prefix::U32Be | Prefix::U64Be => {
                b[8 - w..].copy_from_slice(&buf[..w]);
                u64::from_be_bytes(b)
            }
            _ => {
                b[..w].copy_from_slice(&buf[..w]);
                u64::from_le_bytes(b)
            }
        };
        Ok(Some((w, check(len)?)))
    }

    fn decode_ber(self, buf: &[u8], max: usize) -> Result<Option<(usize, usize)>, DecodeError> {
        if buf.first() == Some(&0x80) {
            return Err(DecodeError::fatal_bad_message(
                "BER length prefix is not minimal (leading 0x80)",
            ));
        }
        let mut v: u64 = 0;
        for (i, &b) in buf.iter().enumerate() {
            if i == BER_MAX_LEN {
                break;
            }
            v = (v << 7) | u64::from(b & 0x7f);
            let more = b & 0x80 != 0;
            // Each further digit multiplies the value by at least 128, so an
            // oversized length shows before its last byte arrives.
            if v > max as u64 || (more && v > (max as u64) >> 7) {
                return Err(DecodeError::too_large(max));
            }
            if !more {
                return Ok(Some((i + 1, v as usize)));
            }
        }
        if buf.len() >= BER_MAX_LEN {
            // Only reachable with a maximum near u64::MAX.
            return Err(DecodeError::fatal_bad_message(
                "BER length prefix longer than 10 bytes",
            ));
        }
        Ok(None)
    }
}

fn put(out: &mut [u8; BER_MAX_LEN], bytes: &[u8]) -> usize {
    out[..bytes.len()].copy_from_slice(bytes);
    bytes.len()
}

/// A length-prefixed payload (the reference's `packstring` read type); the
/// frame is the payload.
///
/// The declared length is checked against [`max_len`](LengthPrefixed::max_len)
/// (default [`DEFAULT_MAX_FRAME`]) as soon as the prefix is in (for BER, as
/// soon as the digits so far exceed it), before anything is reserved for the
/// payload: an oversized length is a fatal [`Error::NoSpace`], since the
/// stream cannot be resynchronised without reading the payload. A BER prefix
/// with a leading `0x80` digit (a non-minimal encoding, which Perl never
/// writes) is a fatal [`Error::BadMessage`].
///
/// ```
/// use bytes::BytesMut;
/// use netactor::framing::{Decoder, LengthPrefixed, Prefix};
/// let mut buf = BytesMut::from(&b"\x00\x05hello\x00"[..]);
/// let mut read = LengthPrefixed::new(Prefix::U16Be);
/// assert_eq!(&read.decode(&mut buf, false).unwrap().unwrap()[..], b"hello");
/// assert!(read.decode(&mut buf, false).unwrap().is_none()); // partial prefix
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LengthPrefixed {
    prefix: Prefix,
    max: usize,
}

impl LengthPrefixed {
    /// A length-prefixed read with the given prefix encoding.
    pub fn new(prefix: Prefix) -> Self {
        LengthPrefixed {
            prefix,
            max: DEFAULT_MAX_FRAME,
        }
    }

    /// Sets the largest accepted payload.
    pub fn max_len(mut self, max: usize) -> Self {
        self.max = max;
        self
    }
}

impl Decoder for LengthPrefixed {
    type Output = Bytes;

    fn decode(&mut self, buf: &mut BytesMut, _eof: bool) -> Result<Option<Bytes>, DecodeError> {
        let Some((header, len)) = self.prefix.decode(buf, self.max)? else {
            return Ok(None);
        };
        if buf.len() - header < len {
            return Ok(None);
        }
        buf.advance(header);
        Ok(Some(buf.split_to(len).freeze()))
    }
}

/// Sends a payload with a length prefix (the reference's `packstring` write
/// type), queued as a small header buffer plus the payload itself.
///
/// A payload too long for the prefix (over 255 bytes for [`Prefix::U8`],
/// 65535 for the 16-bit forms, ...) fails with [`Error::InvalidInput`] and
/// nothing is sent.
///
/// ```
/// use netactor::framing::{Encoder, LengthPrefixedOut, Prefix};
/// let mut parts = Vec::new();
/// LengthPrefixedOut::new(Prefix::U16Be, "hello").encode(&mut parts).unwrap();
/// assert_eq!(parts.concat(), b"\x00\x05hello");
/// let too_long = LengthPrefixedOut::new(Prefix::U8, vec![0u8; 256]);
/// assert!(too_long.encode(&mut Vec::new()).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct LengthPrefixedOut {
    prefix: Prefix,
    payload: Bytes,
}

impl LengthPrefixedOut {
    /// `payload` with a `prefix`-encoded length in front.
    pub fn new(prefix: Prefix, payload: impl Into<Bytes>) -> Self {
        LengthPrefixedOut {
            prefix,
            payload: payload.into(),
        }
    }
}

impl Encoder for LengthPrefixedOut {
    fn encode(self, out: &mut Vec<Bytes>) -> Result<(), Error> {
        let len = self.payload.len() as u64;
        if len > self.prefix.max_value() {
            return Err(Error::InvalidInput(format!(
                "payload of {len} bytes does not fit a {:?} length prefix (at most {})",
                self.prefix,
                self.prefix.max_value()
            )));
        }
        let mut hdr = [0u8; BER_MAX_LEN];
        let n = self.prefix.encode(len, &mut hdr);
        out.push(Bytes::copy_from_slice(&hdr[..n]));
        out.push(self.payload);
        Ok(())
    }
}
