//! CBOR framing (cargo feature `cbor`).
//!
//! Behind a feature because most users of netactor never see CBOR, and the
//! codec crate ([`minicbor`]) should cost them nothing. `minicbor` was chosen
//! over `ciborium` because it is maintained, decodes without copying and
//! without serde, and reports end-of-input distinctly from malformed input.
//!
//! Finding where an item ends is done here, by a small resumable scanner of
//! CBOR's well-formedness rules (RFC 8949, appendix C): `minicbor`'s
//! `Decoder::skip` cannot resume (so a slowly trickled item would be
//! rescanned from its start on every arrival — quadratic), and it accepts
//! some ill-formed input (a lone break byte `0xff`). `minicbor` decodes typed
//! values once an item is complete.

use super::{DecodeError, Decoder, Encoder, DEFAULT_MAX_FRAME};
use crate::error::Error;
use bytes::{Buf, Bytes, BytesMut};
use std::marker::PhantomData;

/// Deepest accepted nesting of arrays, maps and indefinite-length strings.
pub const MAX_CBOR_DEPTH: usize = 128;

/// One complete, well-formed CBOR data item, as received (not copied).
///
/// Well-formed means structurally complete (RFC 8949 appendix C); validity
/// (UTF-8 in text strings, tag semantics) is checked when decoding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CborItem(Bytes);

impl CborItem {
    /// The encoded item.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The encoded item.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Decodes the item with `minicbor`.
    ///
    /// ```
    /// # fn main() -> Result<(), netactor::Error> {
    /// use bytes::BytesMut;
    /// use netactor::framing::{Cbor, Decoder};
    /// let mut buf = BytesMut::from(&[0x82, 0x01, 0x63, b'a', b'b', b'c'][..]);
    /// let item = Cbor::new().decode(&mut buf, false).unwrap().unwrap();
    /// let (n, s): (u32, String) = item.decode()?;
    /// assert_eq!((n, s.as_str()), (1, "abc"));
    /// # Ok(()) }
    /// ```
    pub fn decode<'b, T: minicbor::Decode<'b, ()>>(&'b self) -> Result<T, Error> {
        minicbor::decode(&self.0).map_err(|e| Error::BadMessage(format!("CBOR: {e}")))
    }
}

impl From<CborItem> for super::Frame {
    fn from(item: CborItem) -> Self {
        super::Frame::Cbor(item)
    }
}

/// An open container in the item being scanned.
#[derive(Debug, Clone, Copy)]
enum Open {
    /// A definite-length array or map (or a map's items): items still due.
    Items(u64),
    /// An indefinite-length array.
    IndefArray,
    /// An indefinite-length map; `key` when the next item is a key (a break
    /// is allowed only there).
    IndefMap { key: bool },
    /// An indefinite-length byte (2) or text (3) string: definite chunks of
    /// the same major type until a break.
    IndefString(u8),
}

/// Resumable well-formedness scanner: `pos` always sits at an item header.
#[derive(Debug, Clone, Default)]
struct Scan {
    pos: usize,
    open: Vec<Open>,
    /// A tag was read: its content item must follow (not a break).
    tagged: bool,
}

impl Scan {
    /// `Ok(Some(end))` once the item at the front of `buf` is complete.
    fn run(&mut self, buf: &[u8], max: usize) -> Result<Option<usize>, DecodeError> {
        loop {
            let Some(&ib) = buf.get(self.pos) else {
                return Ok(None);
            };
            let major = ib >> 5;
            let info = ib & 0x1f;
            let hlen = match info {
                0..=23 | 31 => 1,
                24 => 2,
                25 => 3,
                26 => 5,
                27 => 9,
                _ => {
                    return Err(DecodeError::fatal_bad_message(format!(
                        "CBOR: reserved additional information in byte 0x{ib:02x}"
                    )))
                }
            };
            if self.pos + hlen > max {
                return Err(DecodeError::too_large(max));
            }
            if self.pos + hlen > buf.len() {
                return Ok(None);
            }
            let arg = match info {
                0..=23 => u64::from(info),
                31 => 0,
                _ => {
                    let mut b = [0u8; 8];
                    b[9 - hlen..].copy_from_slice(&buf[self.pos + 1..self.pos + hlen]);
                    u64::from_be_bytes(b)
                }
            };
            if ib == 0xff {
                if self.tagged {
                    return Err(DecodeError::fatal_bad_message("CBOR: tag without content"));
                }
                match self.open.last() {
                    Some(
                        Open::IndefArray | Open::IndefString(_) | Open::IndefMap { key: true },
                    ) => {
                        self.open.pop();
                        self.pos += 1;
                    }
                    _ => return Err(DecodeError::fatal_bad_message("CBOR: unexpected break")),
                }
            } else {
                if let Some(Open::IndefString(m)) = self.open.last() {
                    if major != *m || info == 31 {
                        return Err(DecodeError::fatal_bad_message(
                            "CBOR: an indefinite-length string may only hold definite strings of its type",
                        ));
                    }
                }
                self.tagged = false;
                if info == 31 && matches!(major, 0 | 1 | 6) {
                    return Err(DecodeError::fatal_bad_message(format!(
                        "CBOR: indefinite length not allowed for byte 0x{ib:02x}"
                    )));
                }
                match major {
                    0 | 1 => self.pos += hlen,
                    2 | 3 if info == 31 => {
                        self.push(Open::IndefString(major))?;
                        self.pos += 1;
                        continue;
                    }
                    2 | 3 => {
                        let end = usize::try_from(arg)
                            .ok()
                            .and_then(|n| (self.pos + hlen).checked_add(n))
                            .filter(|&end| end <= max)
                            .ok_or_else(|| DecodeError::too_large(max))?;
                        if end > buf.len() {
                            return Ok(None);
                        }
                        self.pos = end;
                    }
                    4 | 5 if info == 31 => {
                        self.push(if major == 4 {
                            Open::IndefArray
                        } else {
                            Open::IndefMap { key: true }
                        })?;
                        self.pos += 1;
                        continue;
                    }
                    4 | 5 => {
                        let items = if major == 5 {
                            arg.checked_mul(2)
                        } else {
                            Some(arg)
                        };
                        // Every item takes at least one byte: a count that
                        // cannot fit is too large right away.
                        let items = items
                            .filter(|&n| {
                                usize::try_from(n)
                                    .ok()
                                    .and_then(|n| (self.pos + hlen).checked_add(n))
                                    .is_some_and(|end| end <= max)
                            })
                            .ok_or_else(|| DecodeError::too_large(max))?;
                        self.pos += hlen;
                        if items > 0 {
                            self.push(Open::Items(items))?;
                            continue;
                        }
                    }
                    // A tag: its content is the next item, in the same slot.
                    6 => {
                        self.pos += hlen;
                        self.tagged = true;
                        continue;
                    }
                    _ => {
                        if info == 24 && arg < 32 {
                            return Err(DecodeError::fatal_bad_message(
                                "CBOR: simple value below 32 in two-byte form",
                            ));
                        }
                        self.pos += hlen;
                    }
                }
            }
            // An item is complete: account for it in its container.
            loop {
                match self.open.last_mut() {
                    None => return Ok(Some(self.pos)),
                    Some(Open::Items(n)) => {
                        *n -= 1;
                        if *n > 0 {
                            break;
                        }
                        // That container is complete too.
                        self.open.pop();
                    }
                    Some(Open::IndefMap { key }) => {
                        *key = !*key;
                        break;
                    }
                    Some(Open::IndefArray | Open::IndefString(_)) => break,
                }
            }
        }
    }

    fn push(&mut self, open: Open) -> Result<(), DecodeError> {
        if self.open.len() >= MAX_CBOR_DEPTH {
            return Err(DecodeError::fatal_bad_message(format!(
                "CBOR: nesting deeper than {MAX_CBOR_DEPTH}"
            )));
        }
        self.open.push(open);
        Ok(())
    }
}

/// One CBOR data item (the reference's `cbor` read type), as its encoded
/// bytes ([`CborItem`]); [`CborAs`] decodes into a type instead.
///
/// Errors:
///
/// | Input | Error |
/// |---|---|
/// | ill-formed CBOR (reserved header values, a misplaced break, bad chunks of an indefinite string, a two-byte simple value below 32) | fatal [`Error::BadMessage`]: CBOR has no delimiters to resynchronise on (the reference reset its parser and went on, which rarely finds a real item boundary) |
/// | nesting deeper than [`MAX_CBOR_DEPTH`] | fatal [`Error::BadMessage`] |
/// | an item longer than [`max_len`](Cbor::max_len) (default [`DEFAULT_MAX_FRAME`]) | fatal [`Error::NoSpace`], as soon as a declared string length or item count shows it |
///
/// ```
/// use bytes::BytesMut;
/// use netactor::framing::{Cbor, Decoder};
/// let mut buf = BytesMut::from(&[0x01, 0x9f, 0x02][..]); // 1, then [_ 2, ...
/// let mut cbor = Cbor::new();
/// assert_eq!(&cbor.decode(&mut buf, false).unwrap().unwrap().as_bytes()[..], [0x01]);
/// assert!(cbor.decode(&mut buf, false).unwrap().is_none());
/// buf.extend_from_slice(&[0xff]);
/// assert_eq!(&cbor.decode(&mut buf, false).unwrap().unwrap().as_bytes()[..], [0x9f, 0x02, 0xff]);
/// ```
#[derive(Debug, Clone)]
pub struct Cbor {
    max: usize,
    scan: Scan,
}

impl Default for Cbor {
    fn default() -> Self {
        Self::new()
    }
}

impl Cbor {
    /// A read of one CBOR item.
    pub fn new() -> Self {
        Cbor {
            max: DEFAULT_MAX_FRAME,
            scan: Scan::default(),
        }
    }

    /// Sets the largest accepted item, in bytes.
    pub fn max_len(mut self, max: usize) -> Self {
        self.max = max;
        self
    }
}

fn take_item(
    scan: &mut Scan,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Bytes>, DecodeError> {
    if scan.pos > buf.len() {
        *scan = Scan::default();
    }
    match scan.run(buf, max) {
        Ok(Some(end)) => {
            *scan = Scan::default();
            Ok(Some(buf.split_to(end).freeze()))
        }
        Ok(None) => Ok(None),
        Err(e) => {
            *scan = Scan::default();
            Err(e)
        }
    }
}

impl Decoder for Cbor {
    type Output = CborItem;

    fn decode(&mut self, buf: &mut BytesMut, _eof: bool) -> Result<Option<CborItem>, DecodeError> {
        Ok(take_item(&mut self.scan, buf, self.max)?.map(CborItem))
    }

    fn reset(&mut self) {
        self.scan = Scan::default();
    }
}

/// One CBOR data item decoded into `T` with `minicbor`.
///
/// Framing errors are those of [`Cbor`]; an item that is well-formed but does
/// not decode as a `T` is a non-fatal [`Error::BadMessage`] and is discarded
/// whole, so the next read starts at the next item.
///
/// ```
/// use bytes::BytesMut;
/// use netactor::framing::{CborAs, Decoder};
/// let mut buf = BytesMut::from(&[0x63, b'a', b'b', b'c', 0x05][..]);
/// let mut read = CborAs::<u32>::new();
/// assert!(!read.decode(&mut buf, false).unwrap_err().fatal); // "abc" is no u32
/// assert_eq!(read.decode(&mut buf, false).unwrap().unwrap(), 5);
/// ```
pub struct CborAs<T> {
    max: usize,
    scan: Scan,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for CborAs<T> {
    fn clone(&self) -> Self {
        CborAs {
            max: self.max,
            scan: self.scan.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for CborAs<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CborAs")
            .field("type", &std::any::type_name::<T>())
            .field("max", &self.max)
            .finish()
    }
}

impl<T> Default for CborAs<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> CborAs<T> {
    /// A read of one CBOR item as a `T`.
    pub fn new() -> Self {
        CborAs {
            max: DEFAULT_MAX_FRAME,
            scan: Scan::default(),
            _t: PhantomData,
        }
    }

    /// Sets the largest accepted item, in bytes.
    pub fn max_len(mut self, max: usize) -> Self {
        self.max = max;
        self
    }
}

impl<T> Decoder for CborAs<T>
where
    T: for<'b> minicbor::Decode<'b, ()> + Send + 'static,
{
    type Output = T;

    fn decode(&mut self, buf: &mut BytesMut, _eof: bool) -> Result<Option<T>, DecodeError> {
        if buf.len() < self.scan.pos {
            self.scan = Scan::default();
        }
        let end = match self.scan.run(buf, self.max) {
            Ok(Some(end)) => end,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.scan = Scan::default();
                return Err(e);
            }
        };
        self.scan = Scan::default();
        let r = minicbor::decode::<T>(&buf[..end]);
        buf.advance(end);
        r.map(Some).map_err(|e| {
            DecodeError::bad_message(format!(
                "CBOR item does not decode as {}: {e}",
                std::any::type_name::<T>()
            ))
        })
    }

    fn reset(&mut self) {
        self.scan = Scan::default();
    }
}

/// Sends a value as one CBOR item (the reference's `cbor` write type),
/// encoded with `minicbor` into one buffer queued as it is.
///
/// ```
/// use netactor::framing::{CborOut, Encoder};
/// let mut parts = Vec::new();
/// CborOut::new(&(1u8, "abc")).encode(&mut parts).unwrap();
/// assert_eq!(parts.concat(), [0x82, 0x01, 0x63, b'a', b'b', b'c']);
/// ```
#[derive(Debug)]
pub struct CborOut<'a, T: ?Sized> {
    value: &'a T,
}

impl<'a, T: minicbor::Encode<()> + ?Sized> CborOut<'a, T> {
    /// `value` as CBOR.
    pub fn new(value: &'a T) -> Self {
        CborOut { value }
    }
}

impl<T: minicbor::Encode<()> + ?Sized> Encoder for CborOut<'_, T> {
    fn encode(self, out: &mut Vec<Bytes>) -> Result<(), Error> {
        let bytes = minicbor::to_vec(self.value)
            .map_err(|e| Error::InvalidInput(format!("cannot encode as CBOR: {e}")))?;
        out.push(Bytes::from(bytes));
        Ok(())
    }
}
