//! Framing: how bytes in a connection's read buffer become messages.
//!
//! A read type is a [`Decoder`]: a small state machine that looks at the front
//! of the read buffer and either takes one complete frame off it, asks for more
//! bytes, or rejects what it sees. Decoders are pure functions of the buffer
//! (plus their own scan state), so they are tested with proptest and fuzzed
//! without a socket. The connection actor feeds them; adding a read type is
//! adding a decoder — nothing in the actor changes.
//!
//! Every decoder is bounded: a peer that never completes a frame costs at most
//! the decoder's maximum frame size (and the connection's `rbuf_max`), then
//! gets a [`Error::NoSpace`] error.
//!
//! Every decoder but [`Raw`] (whose frames are the reads themselves) gives the
//! same frames and errors however the stream is split into reads
//! (property-tested and fuzzed), and none rescans what it has already seen,
//! so a peer trickling one byte at a time costs linear time.
//!
//! # Read types
//!
//! | Reference (`push_read` type) | Decoder | Output (streaming [`Frame`]) | Default maximum |
//! |---|---|---|---|
//! | plain `on_read` | [`Raw`] | `Bytes` (`Frame::Bytes`) | — (`rbuf_max`) |
//! | `chunk => $n` | [`Chunk`] | `Bytes` (`Frame::Bytes`) | `n` |
//! | `line => [$eol]` | [`Line`], [`Line::with_eol`], [`Line::with_eol_regex`] (feature `regex`) | [`LineFrame`] (`Frame::Line`) | [`DEFAULT_MAX_LINE`] |
//! | `regex => $accept, $reject, $skip` | [`Regex`] (feature `regex`) | `Bytes` (`Frame::Bytes`) | [`DEFAULT_MAX_FRAME`] |
//! | `netstring` | [`Netstring`] | `Bytes` (`Frame::Bytes`) | [`DEFAULT_MAX_FRAME`] |
//! | `packstring => $format` | [`LengthPrefixed`] + [`Prefix`] | `Bytes` (`Frame::Bytes`) | [`DEFAULT_MAX_FRAME`] |
//! | `json` | [`Json`] / `Json::<T>::typed()` (feature `json`) | `serde_json::Value` (`Frame::Json`) / `T` | [`DEFAULT_MAX_FRAME`] |
//! | `cbor` (feature `cbor`) | `Cbor` / `CborAs<T>` | `CborItem` (`Frame::Cbor`) / `T` | [`DEFAULT_MAX_FRAME`] |
//!
//! Each maximum is overridable per read with the decoder's `max_len` builder.
//! `tls_detect` / `tls_autostart` are [`TlsDetect`] / [`TlsAutostart`]; `storable`
//! is Perl-only (use [`LengthPrefixed`] with [`Prefix::Ber`] for its framing).
//!
//! The read and write types that need a third-party parser are behind cargo
//! features: `json` (serde_json) and `regex` (the regex crates), both on by
//! default, and `cbor` (minicbor), off by default; every other type here is
//! always built. In documentation built without a feature, its types link to
//! the [crate's list of features](crate#cargo-features).
//!
//! # Write types
//!
//! Encoders for [`Connection::send`](crate::Connection::send): each queues a
//! small header buffer next to the payload itself, without copying it.
//!
//! | Reference (`push_write` type) | Encoder |
//! |---|---|
//! | `netstring` | [`NetstringOut`] |
//! | `packstring => $format` | [`LengthPrefixedOut`] |
//! | `json` | [`JsonOut`] (feature `json`) |
//! | `cbor` (feature `cbor`) | `CborOut` |
//!
//! ```
//! use bytes::BytesMut;
//! use netactor::framing::{Decoder, Line};
//!
//! let mut buf = BytesMut::from(&b"hello\r\nwor"[..]);
//! let mut line = Line::new();
//! let got = line.decode(&mut buf, false).unwrap().unwrap();
//! assert_eq!(&got.line[..], b"hello");
//! assert_eq!(&got.eol[..], b"\r\n");
//! assert!(line.decode(&mut buf, false).unwrap().is_none()); // "wor" is incomplete
//! assert_eq!(&buf[..], b"wor");
//! ```
// The links to feature-gated items resolve to the items when the feature is
// on and to the crate's feature list when it is off, so the docs build (with
// `-D warnings`) under every feature combination.
#![cfg_attr(feature = "json", doc = "[`Json`]: Json\n[`JsonOut`]: JsonOut")]
#![cfg_attr(
    not(feature = "json"),
    doc = "[`Json`]: crate#cargo-features\n[`JsonOut`]: crate#cargo-features"
)]
#![cfg_attr(
    feature = "regex",
    doc = "[`Regex`]: Regex\n[`Line::with_eol_regex`]: Line::with_eol_regex"
)]
#![cfg_attr(
    not(feature = "regex"),
    doc = "[`Regex`]: crate#cargo-features\n[`Line::with_eol_regex`]: crate#cargo-features"
)]

#[cfg(feature = "cbor")]
mod cbor;
mod chunk;
#[cfg(feature = "json")]
mod json;
mod length;
mod line;
mod netstring;
mod raw;
#[cfg(feature = "regex")]
mod regex;
// The resumable regex scanner, shared by `Regex` and `Line::with_eol_regex`.
#[cfg(feature = "regex")]
mod scan;
mod tls_detect;

#[cfg(feature = "cbor")]
pub use cbor::{Cbor, CborAs, CborItem, CborOut, MAX_CBOR_DEPTH};
pub use chunk::Chunk;
#[cfg(feature = "json")]
pub use json::{Json, JsonOut};
pub use length::{LengthPrefixed, LengthPrefixedOut, Prefix};
pub use line::{Line, LineFrame};
pub use netstring::{Netstring, NetstringOut};
pub use raw::Raw;
#[cfg(feature = "regex")]
pub use regex::Regex;
pub use tls_detect::{TlsAutostart, TlsDetect, TlsDetection};

use crate::error::Error;
use bytes::{Bytes, BytesMut};
use std::any::Any;
use std::fmt;

/// Default upper bound for one frame of a variable-length read type (line,
/// regex, netstring, length-prefixed, json): 1 MiB. Override per decoder.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// Default upper bound for one line: 64 KiB.
pub const DEFAULT_MAX_LINE: usize = 64 << 10;

/// A decode failure, with whether the stream can continue after it.
///
/// Non-fatal errors answer the read request that hit them (the connection
/// stays usable; the decoder has already skipped the offending bytes, so the
/// buffer is consistent). Fatal errors fail the connection: after a corrupt
/// length prefix there is no way to find the next frame boundary.
#[derive(Debug, Clone)]
pub struct DecodeError {
    /// What went wrong.
    pub error: Error,
    /// Whether the connection must be failed.
    pub fatal: bool,
}

impl DecodeError {
    /// A non-fatal bad-message error.
    pub fn bad_message(why: impl Into<String>) -> Self {
        DecodeError {
            error: Error::BadMessage(why.into()),
            fatal: false,
        }
    }

    /// A fatal bad-message error: the stream cannot be resynchronised.
    pub fn fatal_bad_message(why: impl Into<String>) -> Self {
        DecodeError {
            error: Error::BadMessage(why.into()),
            fatal: true,
        }
    }

    /// A fatal frame-too-large error.
    pub fn too_large(max: usize) -> Self {
        DecodeError {
            error: Error::no_space(crate::error::Limit::Frame, max),
            fatal: true,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}",
            self.error,
            if self.fatal { " (fatal)" } else { "" }
        )
    }
}

impl std::error::Error for DecodeError {}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        e.error
    }
}

/// A read type: turns the front of the read buffer into one frame at a time.
///
/// Contract, for implementors:
/// - `Ok(Some(frame))`: a frame was complete; its bytes (and delimiter) have
///   been removed from the front of `buf`.
/// - `Ok(None)`: more bytes are needed. Leave `buf` as it is (the decoder may
///   remember how far it scanned, so the next call does not rescan), except
///   that bytes which can never belong to a frame (whitespace between JSON
///   values) may be dropped from the front.
/// - `Err(e)`: the bytes are unacceptable. For a non-fatal error, first remove
///   whatever the error covers so the next decode starts clean.
/// - `eof` is true when no more bytes will ever arrive: accept a frame that
///   ends at the end of the buffer only then (a regex or number might grow).
/// - Never let `buf` force unbounded growth: once the frame in progress is
///   known to exceed the maximum, return [`DecodeError::too_large`] at once.
/// - Never panic on any input.
/// - When is it called: a queued read ([`Connection::push_read`](crate::Connection::push_read))
///   whenever it is at the front of the queue — also with an empty buffer,
///   so `Chunk::new(0)` completes at once; a streaming decoder only when
///   the buffer holds bytes or at EOF.
pub trait Decoder: Send + 'static {
    /// What one decoded frame is.
    type Output: Send + 'static;

    /// Tries to take one frame off the front of `buf`.
    fn decode(
        &mut self,
        buf: &mut BytesMut,
        eof: bool,
    ) -> Result<Option<Self::Output>, DecodeError>;

    /// What the actor should do after this decoder produced a frame
    /// (e.g. `tls_autostart` starts TLS on the bytes still buffered).
    fn after_frame(&mut self) -> Option<FrameAction> {
        None
    }

    /// Forgets what the decoder remembered about `buf` between calls (how
    /// far it scanned): the connection calls this when someone else removed
    /// bytes from the front of the buffer since the last call (another read
    /// ran first, the application took bytes, TLS started). Stateless
    /// decoders need not implement it.
    fn reset(&mut self) {}
}

/// A write type: turns one message into wire bytes, as one or more buffers
/// appended to the write queue as they are (payloads are not copied).
///
/// ```
/// use bytes::Bytes;
/// use netactor::framing::Encoder;
/// struct Crlf(Bytes);
/// impl Encoder for Crlf {
///     fn encode(self, out: &mut Vec<Bytes>) -> Result<(), netactor::Error> {
///         out.push(self.0);
///         out.push(Bytes::from_static(b"\r\n"));
///         Ok(())
///     }
/// }
/// ```
pub trait Encoder {
    /// Appends the buffers that make up the message. On error nothing is sent.
    fn encode(self, out: &mut Vec<Bytes>) -> Result<(), Error>;
}

impl Encoder for Bytes {
    fn encode(self, out: &mut Vec<Bytes>) -> Result<(), Error> {
        out.push(self);
        Ok(())
    }
}

/// A side effect a decoder asks the connection to perform right after its
/// frame, before any further byte is decoded.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FrameAction {
    /// Start server-side TLS with the given configuration; bytes still in
    /// the read buffer are fed to the TLS engine as ciphertext.
    StartTlsServer(std::sync::Arc<rustls::ServerConfig>),
}

/// A frame delivered in streaming mode, where one event stream carries the
/// output of any decoder.
#[derive(Debug)]
#[non_exhaustive]
pub enum Frame {
    /// Raw bytes, a chunk, a netstring payload, a length-prefixed payload, a regex frame.
    Bytes(Bytes),
    /// A line and the end-of-line bytes that terminated it.
    Line(LineFrame),
    /// One JSON value (feature `json`).
    #[cfg(feature = "json")]
    Json(serde_json::Value),
    /// One CBOR item (feature `cbor`).
    #[cfg(feature = "cbor")]
    Cbor(CborItem),
    /// The output of a decoder defined outside this crate.
    Other(Box<dyn Any + Send>),
}

impl Frame {
    /// The payload bytes, for byte-like frames (raw, chunk, line without its EOL).
    // Inlined (here and below): a handler in another crate calls these per
    // frame, and out of line each costs a call and a copy of the frame.
    #[inline]
    pub fn bytes(&self) -> Option<&Bytes> {
        match self {
            Frame::Bytes(b) => Some(b),
            Frame::Line(l) => Some(&l.line),
            _ => None,
        }
    }

    /// Consumes the frame and returns its payload bytes, if byte-like.
    #[inline]
    pub fn into_bytes(self) -> Option<Bytes> {
        match self {
            Frame::Bytes(b) => Some(b),
            Frame::Line(l) => Some(l.line),
            _ => None,
        }
    }
}

impl From<Bytes> for Frame {
    #[inline]
    fn from(b: Bytes) -> Self {
        Frame::Bytes(b)
    }
}

impl From<LineFrame> for Frame {
    #[inline]
    fn from(l: LineFrame) -> Self {
        Frame::Line(l)
    }
}

#[cfg(feature = "json")]
impl From<serde_json::Value> for Frame {
    fn from(v: serde_json::Value) -> Self {
        Frame::Json(v)
    }
}
