//! `tls_detect` and `tls_autostart`: recognise a TLS ClientHello at the start
//! of a stream, so one port can serve TLS and plaintext clients.

use super::{DecodeError, Decoder, Frame, FrameAction};
use bytes::BytesMut;
use std::sync::Arc;

/// What [`TlsDetect`] found at the front of the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsDetection {
    /// The start of a TLS handshake: a handshake record (`0x16`) or an
    /// SSLv2-compatible ClientHello, with the protocol version it announces
    /// (`3.1` = TLS 1.0 record layer, which TLS 1.2 and 1.3 clients use).
    Tls {
        /// Major version byte (3 for SSL 3.0 / TLS).
        major: u8,
        /// Minor version byte.
        minor: u8,
    },
    /// Something else: the stream is not TLS.
    NotTls,
}

impl TlsDetection {
    /// Whether TLS was detected.
    pub fn is_tls(&self) -> bool {
        matches!(self, TlsDetection::Tls { .. })
    }
}

impl From<TlsDetection> for Frame {
    fn from(d: TlsDetection) -> Self {
        Frame::Other(Box::new(d))
    }
}

/// One byte of a pattern: exact, a range, or anything.
#[derive(Clone, Copy)]
enum B {
    Is(u8),
    In(u8, u8),
    Any,
}

impl B {
    fn ok(self, b: u8) -> bool {
        match self {
            B::Is(x) => b == x,
            B::In(lo, hi) => (lo..=hi).contains(&b),
            B::Any => true,
        }
    }
}

/// A TLS record header carrying a handshake: type 22, version 3.x or 4.x,
/// length high byte ≤ 0x40 (a record is at most 16 KiB + 2 KiB).
const TLS_RECORD: [B; 4] = [B::Is(0x16), B::In(3, 4), B::Any, B::In(0, 0x40)];
/// An SSLv2-compatible ClientHello: two-byte length with the high bit set,
/// message type 1, version 3.x or 4.x, and one more byte.
const SSL2_HELLO: [B; 6] = [
    B::In(0x80, 0xff),
    B::Any,
    B::Is(0x01),
    B::In(3, 4),
    B::Any,
    B::Any,
];

enum Match {
    Full,
    Prefix,
    No,
}

fn matches(buf: &[u8], pat: &[B]) -> Match {
    for (i, p) in pat.iter().enumerate() {
        match buf.get(i) {
            None => return Match::Prefix,
            Some(&b) if !p.ok(b) => return Match::No,
            Some(_) => {}
        }
    }
    Match::Full
}

/// The reference's `tls_detect` read type: looks at the first bytes of the
/// stream **without consuming them** and reports whether they start a TLS
/// handshake.
///
/// It waits while the buffer could still become either (an empty buffer,
/// or a proper prefix of a TLS record header). Plaintext protocols should
/// therefore not start with byte `0x16` or a byte ≥ `0x80`. At EOF a
/// partial prefix counts as [`TlsDetection::NotTls`].
///
/// ```
/// use bytes::BytesMut;
/// use netactor::framing::{Decoder, TlsDetect, TlsDetection};
/// let mut hello = BytesMut::from(&[0x16u8, 3, 1, 0, 0xf4, 1][..]);
/// assert_eq!(TlsDetect.decode(&mut hello, false).unwrap(), Some(TlsDetection::Tls { major: 3, minor: 1 }));
/// assert_eq!(hello.len(), 6); // nothing consumed
/// let mut plain = BytesMut::from(&b"EHLO x\r\n"[..]);
/// assert_eq!(TlsDetect.decode(&mut plain, false).unwrap(), Some(TlsDetection::NotTls));
/// let mut short = BytesMut::from(&[0x16u8, 3][..]);
/// assert_eq!(TlsDetect.decode(&mut short, false).unwrap(), None); // wait for more
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsDetect;

impl Decoder for TlsDetect {
    type Output = TlsDetection;

    fn decode(
        &mut self,
        buf: &mut BytesMut,
        eof: bool,
    ) -> Result<Option<TlsDetection>, DecodeError> {
        if buf.is_empty() {
            // Nothing to judge; at EOF the actor reports the end of the stream.
            return Ok(None);
        }
        match (matches(buf, &TLS_RECORD), matches(buf, &SSL2_HELLO)) {
            (Match::Full, _) => Ok(Some(TlsDetection::Tls {
                major: buf[1],
                minor: buf[2],
            })),
            (_, Match::Full) => Ok(Some(TlsDetection::Tls {
                major: buf[3],
                minor: buf[4],
            })),
            (Match::No, Match::No) => Ok(Some(TlsDetection::NotTls)),
            _ if eof => Ok(Some(TlsDetection::NotTls)),
            _ => Ok(None),
        }
    }
}

/// The reference's `tls_autostart` read type: [`TlsDetect`], then, if the
/// stream starts with a ClientHello, server-side TLS with `config` — the
/// buffered ClientHello is fed to the TLS engine.
///
/// It yields the [`TlsDetection`] as its frame. Reads after it see
/// decrypted data if TLS started and the raw stream otherwise, so one port
/// can serve both. It is one-shot: use it with `push_read`, or replace the
/// streaming decoder when its frame arrives.
///
/// ```no_run
/// use netactor::framing::{Line, TlsAutostart};
/// # fn f(conn: &netactor::Connection, cfg: std::sync::Arc<netactor::tls::ServerConfig>) -> netactor::Result<()> {
/// let detected = conn.push_read(TlsAutostart::new(cfg))?;
/// let first_line = conn.push_read(Line::new())?; // decrypted if the client spoke TLS
/// println!("tls: {}", detected.recv()?.is_tls());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TlsAutostart {
    config: Arc<rustls::ServerConfig>,
    found: Option<TlsDetection>,
}

impl TlsAutostart {
    /// Starts TLS with `config` when a ClientHello is detected.
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        TlsAutostart {
            config,
            found: None,
        }
    }
}

impl Decoder for TlsAutostart {
    type Output = TlsDetection;

    fn decode(
        &mut self,
        buf: &mut BytesMut,
        eof: bool,
    ) -> Result<Option<TlsDetection>, DecodeError> {
        if self.found.is_some() {
            // One-shot: after its frame it never produces another.
            return Ok(None);
        }
        let d = TlsDetect.decode(buf, eof)?;
        self.found = d;
        Ok(d)
    }

    fn after_frame(&mut self) -> Option<FrameAction> {
        match self.found {
            Some(TlsDetection::Tls { .. }) => {
                Some(FrameAction::StartTlsServer(self.config.clone()))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn detect(bytes: &[u8], eof: bool) -> Option<TlsDetection> {
        TlsDetect.decode(&mut BytesMut::from(bytes), eof).unwrap()
    }

    #[test]
    fn recognises_hellos() {
        assert_eq!(
            detect(&[0x16, 3, 3, 0x02, 0], false),
            Some(TlsDetection::Tls { major: 3, minor: 3 })
        );
        assert_eq!(
            detect(&[0x80, 0x2e, 0x01, 3, 1, 0], false),
            Some(TlsDetection::Tls { major: 3, minor: 1 })
        );
        // Record length high byte too large: not a TLS record.
        assert_eq!(
            detect(&[0x16, 3, 1, 0x41], false),
            Some(TlsDetection::NotTls)
        );
        assert_eq!(
            detect(b"GET / HTTP/1.1\r\n", false),
            Some(TlsDetection::NotTls)
        );
        assert_eq!(detect(&[0x16, 2], false), Some(TlsDetection::NotTls));
    }

    #[test]
    fn waits_on_prefixes() {
        assert_eq!(detect(&[], false), None);
        assert_eq!(detect(&[0x16], false), None);
        assert_eq!(detect(&[0x16, 3, 1], false), None);
        assert_eq!(detect(&[0x80, 0, 1, 3, 0], false), None);
        assert_eq!(detect(&[0x16, 3, 1], true), Some(TlsDetection::NotTls));
        assert_eq!(detect(&[], true), None);
    }

    #[test]
    fn autostart_is_one_shot() {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cfg = crate::tls::ServerBuilder::from_pem(
            ck.cert.pem().as_bytes(),
            ck.signing_key.serialize_pem().as_bytes(),
        )
        .and_then(|b| b.build())
        .unwrap();
        let mut a = TlsAutostart::new(cfg);
        let mut buf = BytesMut::from(&[0x16u8, 3, 1, 0, 5][..]);
        assert!(a.decode(&mut buf, false).unwrap().unwrap().is_tls());
        assert!(matches!(
            a.after_frame(),
            Some(FrameAction::StartTlsServer(_))
        ));
        assert_eq!(a.decode(&mut buf, false).unwrap(), None);
        assert_eq!(buf.len(), 5);
    }

    proptest! {
        #[test]
        fn never_consumes_and_is_prefix_stable(data in proptest::collection::vec(any::<u8>(), 0..12)) {
            let mut buf = BytesMut::from(&data[..]);
            let got = TlsDetect.decode(&mut buf, false).unwrap();
            prop_assert_eq!(&buf[..], &data[..]);
            // A definite answer never changes when more bytes arrive.
            if let Some(d) = got {
                let mut more = data.clone();
                more.extend_from_slice(b"xyz");
                prop_assert_eq!(TlsDetect.decode(&mut BytesMut::from(&more[..]), false).unwrap(), Some(d));
            }
        }
    }
}
