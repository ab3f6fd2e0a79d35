//! The one error type of netactor.
//!
//! Every failure a connection can report is an [`Error`]. Each variant keeps
//! one of the reference's error classes (AnyEvent::Handle's errno values) and
//! maps onto a [`std::io::ErrorKind`], so code that already speaks `io::Error`
//! can convert with `?`.
//!
//! Whether an error ends the connection is not a property of the error alone
//! (a timeout is reported and the connection lives on), so events carry a
//! separate `fatal` flag; see [`crate::Event::Error`].

use std::fmt;
use std::io;
use std::sync::Arc;

/// Which of the three inactivity timers fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutKind {
    /// No successful read **or** write for the period.
    Activity,
    /// No successful read for the period.
    Read,
    /// No successful write for the period.
    Write,
    /// A connect attempt did not complete in time.
    Connect,
    /// A TLS handshake did not complete in time.
    Handshake,
    /// A caller's wait for a [`Reply`](crate::Reply) ran out
    /// ([`ReplyTimeoutError::Timeout`](crate::ReplyTimeoutError) turned into
    /// an `Error` with `?`); the read itself is still pending.
    Reply,
}

/// One of the three inactivity timers — the ones
/// [`Connection::set_timeout`](crate::Connection::set_timeout) and
/// [`reset_timeout`](crate::Connection::reset_timeout) act on (the connect
/// and handshake timeouts are options: `Options::connect_timeout`,
/// `Options::handshake_timeout`).
///
/// ```
/// use netactor::{Inactivity, TimeoutKind};
/// assert_eq!(TimeoutKind::from(Inactivity::Any), TimeoutKind::Activity);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Inactivity {
    /// No successful read **or** write for the period (`Options::timeout`).
    Any,
    /// No successful read for the period (`Options::read_timeout`).
    Read,
    /// No successful write for the period (`Options::write_timeout`).
    Write,
}

impl From<Inactivity> for TimeoutKind {
    fn from(i: Inactivity) -> Self {
        match i {
            Inactivity::Any => TimeoutKind::Activity,
            Inactivity::Read => TimeoutKind::Read,
            Inactivity::Write => TimeoutKind::Write,
        }
    }
}

/// Which buffer or frame limit was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// The read buffer grew past `rbuf_max`.
    ReadBuffer,
    /// The write queue would grow past `wbuf_max`.
    WriteBuffer,
    /// A single frame is larger than its decoder's maximum.
    Frame,
    /// The reactor already has its maximum number of open connections
    /// ([`ReactorBuilder::max_connections`](crate::ReactorBuilder::max_connections)).
    Connections,
}

/// Everything that can go wrong on a netactor connection.
///
/// ```
/// use netactor::Error;
/// let e = Error::UnexpectedEof;
/// assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
/// let io: std::io::Error = e.into();
/// assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The peer is gone: writing hit `EPIPE`, or the write side was already shut down.
    BrokenPipe,
    /// The peer reset the connection (`ECONNRESET`).
    ConnectionReset,
    /// The peer refused the connection (`ECONNREFUSED`).
    ConnectionRefused,
    /// No route to the peer (`EHOSTUNREACH` / `ENETUNREACH`).
    Unreachable,
    /// Name resolution produced no address to try (the reference's `ENXIO`).
    NoAddress(String),
    /// A timer expired. Not fatal for the inactivity timers.
    TimedOut(TimeoutKind),
    /// The peer sent something the decoder cannot accept (`EBADMSG`).
    BadMessage(String),
    /// A buffer or frame limit would be exceeded (`ENOSPC`).
    NoSpace {
        /// Which limit.
        limit: Limit,
        /// The limit's value in bytes.
        max: usize,
    },
    /// The stream ended while a read request still needed bytes (the
    /// reference's `EPIPE` at EOF), or no one handled the end of the stream.
    UnexpectedEof,
    /// A TLS failure (`EPROTO`): handshake failure, a certificate rejected
    /// either way, garbage — with rustls's own error kept inside.
    Tls(TlsError),
    /// The TLS peer closed the TCP connection without sending close_notify,
    /// so the data may have been truncated by an attacker.
    TlsTruncated,
    /// The connection is closed; the operation cannot be performed.
    Closed,
    /// A close gave up on bytes that had been accepted for writing: the
    /// linger period ran out, linger is zero, the connection was closed
    /// during a TLS handshake, or a close while connecting outlived its
    /// linger. Reported non-fatally right before `Closed`, so nothing
    /// accepted is dropped without a word.
    Unsent {
        /// How many accepted bytes were not handed to the kernel.
        bytes: usize,
    },
    /// The request is invalid (e.g. `starttls` while TLS is active).
    InvalidInput(String),
    /// A configuration cannot be built: malformed PEM, a key that does not
    /// match its certificate, no TLS crypto provider (`EINVAL`). Never a
    /// connection's failure: these come from the builders. (An unreadable
    /// file is an [`Error::Io`] naming the path.)
    Config(ConfigError),
    /// Application code called from a worker panicked; only that connection failed.
    Panicked(String),
    /// Any other operating-system error.
    Io(Arc<io::Error>),
}

impl Error {
    /// The closest [`io::ErrorKind`].
    pub fn kind(&self) -> io::ErrorKind {
        use io::ErrorKind as K;
        match self {
            Error::BrokenPipe => K::BrokenPipe,
            Error::ConnectionReset => K::ConnectionReset,
            Error::ConnectionRefused => K::ConnectionRefused,
            Error::Unreachable => K::HostUnreachable,
            Error::NoAddress(_) => K::NotFound,
            Error::TimedOut(_) => K::TimedOut,
            Error::BadMessage(_) => K::InvalidData,
            Error::NoSpace { .. } => K::OutOfMemory,
            Error::UnexpectedEof => K::UnexpectedEof,
            Error::Tls(_) => K::InvalidData,
            Error::TlsTruncated => K::UnexpectedEof,
            Error::Closed => K::NotConnected,
            Error::Unsent { .. } => K::WriteZero,
            Error::InvalidInput(_) | Error::Config(_) => K::InvalidInput,
            Error::Panicked(_) => K::Other,
            Error::Io(e) => e.kind(),
        }
    }

    /// The errno the reference (AnyEvent::Handle) would have set for this error.
    pub fn errno(&self) -> i32 {
        match self {
            Error::BrokenPipe | Error::UnexpectedEof => libc::EPIPE,
            Error::ConnectionReset => libc::ECONNRESET,
            Error::ConnectionRefused => libc::ECONNREFUSED,
            Error::Unreachable => libc::EHOSTUNREACH,
            Error::NoAddress(_) => libc::ENXIO,
            Error::TimedOut(_) => libc::ETIMEDOUT,
            Error::BadMessage(_) => libc::EBADMSG,
            Error::NoSpace { .. } => libc::ENOSPC,
            Error::Tls(_) | Error::TlsTruncated => libc::EPROTO,
            Error::Closed => libc::ENOTCONN,
            Error::Unsent { .. } => libc::EPIPE,
            Error::InvalidInput(_) | Error::Config(_) => libc::EINVAL,
            Error::Panicked(_) => libc::EIO,
            Error::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
        }
    }

    /// Classifies an `io::Error` from a socket call. A kernel `ETIMEDOUT`
    /// (keepalive probes unanswered, retransmissions given up) stays an I/O
    /// error: [`Error::TimedOut`] is netactor's own timers only. (A connect
    /// attempt the kernel timed out is reported as a connect timeout by the
    /// connect path itself.)
    ///
    /// ```
    /// use netactor::Error;
    /// let e = Error::from_io(std::io::Error::from_raw_os_error(libc::ETIMEDOUT));
    /// assert!(matches!(&e, Error::Io(_)));
    /// assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    /// let e = Error::from_io(std::io::Error::from_raw_os_error(libc::ECONNRESET));
    /// assert!(matches!(e, Error::ConnectionReset));
    /// ```
    pub fn from_io(e: io::Error) -> Error {
        match e.raw_os_error() {
            Some(libc::EPIPE) => return Error::BrokenPipe,
            Some(libc::ECONNRESET) => return Error::ConnectionReset,
            Some(libc::ECONNREFUSED) => return Error::ConnectionRefused,
            Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) => return Error::Unreachable,
            _ => {}
        }
        match e.kind() {
            io::ErrorKind::BrokenPipe => Error::BrokenPipe,
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                Error::ConnectionReset
            }
            io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
            io::ErrorKind::UnexpectedEof => Error::UnexpectedEof,
            _ => Error::Io(Arc::new(e)),
        }
    }

    /// [`from_io`](Self::from_io) for a connect attempt: the kernel giving
    /// up (`ETIMEDOUT`) is a connect timeout there.
    pub(crate) fn from_connect_io(e: io::Error) -> Error {
        if e.raw_os_error() == Some(libc::ETIMEDOUT) {
            return Error::TimedOut(TimeoutKind::Connect);
        }
        Error::from_io(e)
    }

    pub(crate) fn no_space(limit: Limit, max: usize) -> Error {
        Error::NoSpace { limit, max }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BrokenPipe => {
                f.write_str("broken pipe: the peer is gone or the write side is shut down")
            }
            Error::ConnectionReset => f.write_str("connection reset by peer"),
            Error::ConnectionRefused => f.write_str("connection refused"),
            Error::Unreachable => f.write_str("host or network unreachable"),
            Error::NoAddress(what) => write!(f, "no address to connect to: {what}"),
            Error::TimedOut(kind) => write!(f, "{kind:?} timeout expired"),
            Error::BadMessage(why) => write!(f, "bad message: {why}"),
            Error::NoSpace { limit, max } => {
                write!(f, "no space: {limit:?} limit of {max} bytes exceeded")
            }
            Error::UnexpectedEof => {
                f.write_str("unexpected end of stream (a read request was still pending)")
            }
            Error::Tls(e) => write!(f, "TLS error: {e}"),
            Error::TlsTruncated => f.write_str(
                "TLS peer closed the connection without close_notify (possible truncation)",
            ),
            Error::Closed => f.write_str("connection is closed"),
            Error::Unsent { bytes } => {
                write!(f, "closed with {bytes} accepted bytes not sent")
            }
            Error::InvalidInput(why) => write!(f, "invalid request: {why}"),
            Error::Config(e) => write!(f, "invalid configuration: {e}"),
            Error::Panicked(why) => write!(f, "application code panicked on a worker: {why}"),
            Error::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(&**e),
            Error::Tls(e) => Some(e),
            Error::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::from_io(e)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(inner) => match Arc::try_unwrap(inner) {
                Ok(inner) => inner,
                Err(shared) => io::Error::new(shared.kind(), shared.to_string()),
            },
            other => io::Error::new(other.kind(), other),
        }
    }
}

impl From<rustls::Error> for Error {
    fn from(e: rustls::Error) -> Self {
        Error::Tls(TlsError::Rustls(e))
    }
}

/// Which kind of PEM item could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PemItem {
    /// A `CERTIFICATE` block (a chain or a CA).
    Certificate,
    /// A private key (PKCS#8, PKCS#1 or SEC1).
    PrivateKey,
}

/// Why a TLS configuration could not be built — keeping what rustls and
/// the PEM parser reported.
///
/// ```
/// use netactor::tls::ServerBuilder;
/// use netactor::{ConfigError, Error};
/// let e = ServerBuilder::from_pem(b"", b"").unwrap_err();
/// assert!(matches!(e, Error::Config(ConfigError::NoCertificate)));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConfigError {
    /// Neither of netactor's `aws-lc-rs` / `ring` features is on, no process
    /// default is installed (`rustls::crypto::CryptoProvider::install_default`)
    /// and none was passed to the builder's `provider`.
    NoCryptoProvider,
    /// PEM data that should hold certificates holds none.
    NoCertificate,
    /// PEM data could not be parsed (or, for a key, holds none).
    Pem {
        /// What was being read.
        item: PemItem,
        /// The parser's error.
        error: Arc<rustls::pki_types::pem::Error>,
    },
    /// The platform's certificate store is empty or unreadable.
    NoTrustRoots,
    /// A CA certificate was refused as a trust anchor.
    CaCertificate(rustls::Error),
    /// The client-certificate verifier could not be built (e.g. no CA).
    ClientVerifier(rustls::server::VerifierBuilderError),
    /// rustls refused the configuration: a key that does not match its
    /// certificate, a provider without the protocol versions.
    Rustls(rustls::Error),
    /// A server configuration that accepts TLS 1.3 early (0-RTT) data
    /// (`max_early_data_size > 0`): netactor does not deliver early data,
    /// so accepting it would drop what the client counts as sent.
    EarlyData,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoCryptoProvider => f.write_str(
                "no TLS crypto provider: enable netactor's `aws-lc-rs` or `ring` feature, \
                 install a process default (rustls::crypto::CryptoProvider::install_default), \
                 or pass one to the builder's `provider`",
            ),
            ConfigError::NoCertificate => f.write_str("no certificate in the PEM data"),
            ConfigError::EarlyData => f.write_str(
                "the server configuration accepts 0-RTT early data, which netactor does not \
                 deliver: set max_early_data_size to 0",
            ),
            ConfigError::Pem { item, error } => {
                let what = match item {
                    PemItem::Certificate => "certificate",
                    PemItem::PrivateKey => "private key",
                };
                write!(f, "bad {what} PEM: {error}")
            }
            ConfigError::NoTrustRoots => {
                f.write_str("no trust roots: the platform certificate store is empty or unreadable")
            }
            ConfigError::CaCertificate(e) => write!(f, "bad CA certificate: {e}"),
            ConfigError::ClientVerifier(e) => write!(f, "client certificate verifier: {e}"),
            ConfigError::Rustls(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Pem { error, .. } => Some(&**error),
            ConfigError::CaCertificate(e) | ConfigError::Rustls(e) => Some(e),
            ConfigError::ClientVerifier(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Config(e)
    }
}

/// What went wrong in TLS, keeping what rustls reported.
///
/// ```
/// use netactor::{Error, TlsError};
/// use netactor::tls::rustls::{CertificateError, Error as RustlsError};
/// let e = Error::from(RustlsError::InvalidCertificate(CertificateError::Expired));
/// assert!(matches!(
///     &e,
///     Error::Tls(TlsError::Rustls(RustlsError::InvalidCertificate(CertificateError::Expired)))
/// ));
/// let Error::Tls(tls) = &e else { unreachable!() };
/// assert!(tls.is_certificate());
/// assert!(e.to_string().starts_with("TLS error: peer certificate verification failed"));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TlsError {
    /// rustls refused the peer or the protocol. Match on the inner error
    /// for the details: `InvalidCertificate(..)` (we rejected the peer's
    /// certificate), `NoCertificatesPresented`, `AlertReceived(..)` (the
    /// peer rejected us), `NoApplicationProtocol`, `InvalidMessage(..)`…
    Rustls(rustls::Error),
    /// The peer closed the connection in the middle of the handshake.
    HandshakeEof,
    /// rustls refused to encrypt another record with the session's keys
    /// (its `unbuffered::EncryptError::EncryptExhausted`): a TLS 1.2 key
    /// reached its cipher suite's confidentiality limit (rustls then queues
    /// close_notify, which netactor sends before the connection ends;
    /// TLS 1.3 updates its keys instead), or the record sequence numbers
    /// are used up. The connection cannot send any more.
    EncryptExhausted,
    /// rustls could not write a record into the buffer it was given (its
    /// `unbuffered::EncodeError`, or an `EncryptError::InsufficientSize`
    /// that survived a retry with the room rustls asked for): a bug in
    /// netactor or rustls, not the peer's doing.
    Encode(EncodeFailure),
}

/// Why rustls could not write a TLS record (see [`TlsError::Encode`]):
/// rustls's `unbuffered::EncodeError`, kept as data.
///
/// ```
/// use netactor::{EncodeFailure, TlsError};
/// let e = TlsError::Encode(EncodeFailure::InsufficientSize { required_size: 517 });
/// assert_eq!(
///     e.to_string(),
///     "cannot encode a TLS record: the buffer is too small (517 bytes are required)"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EncodeFailure {
    /// The buffer was too small: rustls needed `required_size` bytes.
    InsufficientSize {
        /// How many bytes rustls asked for.
        required_size: usize,
    },
    /// The handshake record had already been encoded.
    AlreadyEncoded,
}

impl From<rustls::unbuffered::EncodeError> for EncodeFailure {
    fn from(e: rustls::unbuffered::EncodeError) -> Self {
        use rustls::unbuffered::EncodeError as E;
        match e {
            E::InsufficientSize(s) => EncodeFailure::InsufficientSize {
                required_size: s.required_size,
            },
            E::AlreadyEncoded => EncodeFailure::AlreadyEncoded,
        }
    }
}

impl From<rustls::unbuffered::EncodeError> for TlsError {
    fn from(e: rustls::unbuffered::EncodeError) -> Self {
        TlsError::Encode(e.into())
    }
}

impl From<rustls::unbuffered::EncryptError> for TlsError {
    fn from(e: rustls::unbuffered::EncryptError) -> Self {
        use rustls::unbuffered::EncryptError as E;
        match e {
            E::EncryptExhausted => TlsError::EncryptExhausted,
            E::InsufficientSize(s) => TlsError::Encode(EncodeFailure::InsufficientSize {
                required_size: s.required_size,
            }),
        }
    }
}

impl fmt::Display for EncodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeFailure::InsufficientSize { required_size } => write!(
                f,
                "the buffer is too small ({required_size} bytes are required)"
            ),
            EncodeFailure::AlreadyEncoded => f.write_str("the record was already encoded"),
        }
    }
}

impl TlsError {
    /// A certificate was the problem, either way round: we rejected the
    /// peer's (or it sent none when one was required), or the peer rejected
    /// ours with a certificate alert.
    pub fn is_certificate(&self) -> bool {
        use rustls::{AlertDescription as A, Error as E};
        matches!(
            self,
            TlsError::Rustls(
                E::InvalidCertificate(_)
                    | E::NoCertificatesPresented
                    | E::AlertReceived(
                        A::BadCertificate
                            | A::UnsupportedCertificate
                            | A::CertificateRevoked
                            | A::CertificateExpired
                            | A::CertificateUnknown
                            | A::UnknownCA
                            | A::CertificateRequired
                    )
            )
        )
    }

    /// rustls's own error, if this came from rustls.
    pub fn rustls(&self) -> Option<&rustls::Error> {
        match self {
            TlsError::Rustls(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use rustls::Error as E;
        match self {
            TlsError::Rustls(E::InvalidCertificate(c)) => {
                write!(f, "peer certificate verification failed: {c}")
            }
            TlsError::Rustls(E::NoCertificatesPresented) => {
                f.write_str("certificate verification failed: the peer sent no certificate")
            }
            TlsError::Rustls(E::AlertReceived(a)) if self.is_certificate() => {
                write!(
                    f,
                    "the peer rejected the certificate it was sent (alert {a:?})"
                )
            }
            TlsError::Rustls(e) => write!(f, "{e}"),
            TlsError::HandshakeEof => {
                f.write_str("the peer closed the connection during the TLS handshake")
            }
            TlsError::EncryptExhausted => f.write_str(
                "the TLS session's keys are exhausted: rustls refuses to encrypt more records \
                 (confidentiality limit reached or sequence numbers used up)",
            ),
            TlsError::Encode(e) => write!(f, "cannot encode a TLS record: {e}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Rustls(e) => Some(e),
            _ => None,
        }
    }
}

/// Shorthand for `Result<T, netactor::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
