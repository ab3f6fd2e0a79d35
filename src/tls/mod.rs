//! TLS over connection actors, with rustls 0.23.
//!
//! # Starting TLS
//!
//! * **At connect time**: [`ConnectOptions::tls`](crate::ConnectOptions::tls)
//!   (client; the server name defaults to the host of the connect target).
//! * **At accept time**: [`ListenOptions::tls`](crate::ListenOptions::tls)
//!   (every accepted connection is TLS) or
//!   [`Reactor::adopt_tls_server`](crate::Reactor::adopt_tls_server).
//! * **Mid-stream (STARTTLS)**: [`Connection::starttls`](crate::Connection::starttls)
//!   or [`Ctx::starttls`](crate::Ctx::starttls) with a [`TlsSetup`].
//! * **On a port shared by TLS and plaintext**:
//!   [`TlsAutostart`](crate::framing::TlsAutostart) /
//!   [`TlsDetect`](crate::framing::TlsDetect) read types.
//!
//! # What happens to buffered bytes (STARTTLS injection, CVE-2011-0411)
//!
//! When TLS starts, every byte already in the read buffer is handed to the
//! TLS engine as ciphertext; none of it is ever delivered as plaintext. A
//! client that pipelines `STARTTLS\r\nNOOP\r\n` therefore makes the
//! handshake fail instead of getting `NOOP` executed. Writes queued before
//! `starttls` go out in clear first (the "220 go ahead" reply); writes
//! queued after it are encrypted and, like all application data, leave only
//! once the handshake has completed — so a client never sends a byte to a
//! server whose certificate failed verification.
//!
//! For this to hold, nothing may decode the bytes behind the STARTTLS
//! command before `starttls` runs. With a [`Handler`](crate::Handler), call
//! `ctx.starttls(..)` from the handler that received the command (the actor
//! applies it before decoding further). In channel mode, read commands with
//! one [`push_read`](crate::Connection::push_read) at a time rather than a
//! streaming decoder, so the bytes after STARTTLS stay undecoded.
//!
//! # Verification
//!
//! Client verification is **on** by default: [`ClientBuilder`] checks the chain against the platform's roots
//! (rustls-native-certs) or the CAs you give, and the server name (from the
//! connect target, or explicit) which is also sent as SNI. An IP-address
//! server name is checked against the certificate's IP SANs.
//! [`ClientBuilder::dangerous_accept_any_certificate`] is the only way to
//! turn it off. A handshake failure is always a fatal [`crate::Error::Tls`]
//! (the alert is sent to the peer first) followed by `Closed` — never a
//! fallback to plaintext. A handshake that does not finish within
//! [`Options::handshake_timeout`](crate::Options::handshake_timeout)
//! (default 10 s) fails with `TimedOut(Handshake)`.
//!
//! # Closing
//!
//! A close during the handshake of a TLS *connect* waits for it and
//! flushes (the fire-and-forget `connect; write; close`); a close during an
//! accepted or STARTTLS handshake closes at once, reporting queued bytes as
//! `Error::Unsent` (see [`Connection::close`](crate::Connection::close)).
//!
//! [`shutdown`](crate::Connection::shutdown) sends close_notify, then FIN,
//! after everything queued; [`close`](crate::Connection::close) sends
//! close_notify after everything queued (within the linger period). The peer's
//! close_notify is a clean [`Event::Eof`](crate::Event::Eof). A peer that
//! ends TCP without close_notify after the handshake is reported as
//! `Event::Error { error: Error::TlsTruncated, fatal: false }` right before
//! `Eof` (and pending read requests fail with `TlsTruncated`), so protocols
//! that must detect truncation can; the data received before it is
//! delivered first. EOF during the handshake is a fatal `Error::Tls`.
//!
//! # Returning to plaintext (`stoptls`)
//!
//! A `stoptls` posted before the connection or its handshake is up — even
//! right after `connect` — waits for the handshake, in order with the
//! writes around it: `write(a); stoptls(); write(b)` sends `a` encrypted,
//! then close_notify, then `b` in clear once the peer has answered.
//!
//! [`Connection::stoptls`](crate::Connection::stoptls) encrypts everything
//! queued so far, sends close_notify, keeps decrypting until the peer's
//! close_notify, then emits [`Event::TlsStopped`](crate::Event::TlsStopped)
//! and continues in plaintext; writes queued after `stoptls` wait and go
//! out in clear after that point. The peer side opts in with
//! [`Options::follow_stoptls`](crate::Options::follow_stoptls): its
//! connection then answers a close_notify with its own and continues in
//! plaintext (the reference's `on_stoptls`); without it a close_notify is
//! EOF. rustls stops processing right after the peer's close_notify and
//! the ciphertext buffer is netactor's, so the bytes that follow the alert
//! — even in the same TCP segment — are kept and delivered as plaintext,
//! never lost.
//!
//! # Memory bounds
//!
//! * `rbuf_max` counts decrypted plaintext waiting in the read buffer.
//!   Besides it the connection holds at most one partial record of
//!   ciphertext (≤ 16.7 KiB; up to 64 KiB plus a record while joining a
//!   large handshake message, beyond which the handshake fails).
//! * `wbuf_max` counts application plaintext until its ciphertext has been
//!   handed to the kernel: encrypted bytes keep their write reservation
//!   until their records are in the kernel. At most one chunk (64 KiB) of
//!   plaintext is encrypted ahead of the socket.
//! * An idle TLS connection holds no buffer: rustls runs through its
//!   unbuffered API, and the connection gives its ciphertext buffers back
//!   to its worker's pool whenever they are empty. What stays is rustls's
//!   state (with aws-lc-rs and TLS 1.3 about 3.6 KiB) and netactor's own:
//!   about 5 KiB per idle connection in all (ARCHITECTURE.md, "TLS").
//!
//! # Sharing configurations
//!
//! Build [`ClientConfig`] / [`ServerConfig`] once ([`ClientBuilder`],
//! [`ServerBuilder`]) and pass clones of the `Arc` to every connection; they
//! are immutable and thread-safe, and hold the session-resumption state.
//!
//! ```no_run
//! use netactor::{tls::ServerBuilder, ListenOptions, Reactor};
//! # fn main() -> netactor::Result<()> {
//! let cfg = ServerBuilder::from_pem_files("cert.pem", "key.pem")?.build()?; // once
//! let reactor = Reactor::new()?;
//! let a = reactor.listen("127.0.0.1:443".parse().unwrap(), ListenOptions::new().tls(cfg.clone()))?;
//! let b = reactor.listen("127.0.0.1:8443".parse().unwrap(), ListenOptions::new().tls(cfg))?;
//! # Ok(()) }
//! ```
//!
//! The crypto provider is always passed explicitly ([`crypto_provider`]:
//! the application's process default if it installed one, else the
//! compiled-in aws-lc-rs or ring), so rustls never panics when both
//! providers are in the dependency graph. Built with neither feature,
//! netactor takes the process default or a provider given to the builder,
//! as rustls itself does.

mod config;
mod hello;
pub(crate) mod idle_keys;
mod session;

pub use config::{certs_from_pem, crypto_provider, key_from_pem, ClientBuilder, ServerBuilder};
/// The rustls this crate is built with, for matching on
/// [`TlsError::Rustls`](crate::TlsError::Rustls) and building configurations
/// by hand.
pub use rustls;
pub use rustls::pki_types::{CertificateDer, ServerName};
pub use rustls::{CipherSuite, ClientConfig, ProtocolVersion, ServerConfig};

pub(crate) use session::TlsSession;

use crate::error::{Error, Result};
use std::sync::Arc;
use std::time::Duration;

/// Default time a TLS handshake may take: 10 s (as Netty); see
/// [`Options::handshake_timeout`](crate::Options::handshake_timeout).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which side of TLS to start, with its shared configuration.
///
/// ```
/// use netactor::tls::{ClientBuilder, TlsSetup};
/// # let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap().cert.pem();
/// let cfg = ClientBuilder::new().ca_pem(ca.as_bytes()).unwrap().build().unwrap();
/// let setup = TlsSetup::client_for(cfg, "mail.example.com").unwrap();
/// ```
#[derive(Debug, Clone)]
pub enum TlsSetup {
    /// Be the TLS client, verifying the server as `server_name` (also sent as SNI).
    Client {
        /// The shared client configuration.
        config: Arc<ClientConfig>,
        /// The name the certificate must match.
        server_name: ServerName<'static>,
    },
    /// Be the TLS server.
    Server(Arc<ServerConfig>),
}

impl TlsSetup {
    /// Client side, verifying `server_name`.
    pub fn client(config: Arc<ClientConfig>, server_name: ServerName<'static>) -> Self {
        TlsSetup::Client {
            config,
            server_name,
        }
    }

    /// Client side, verifying the DNS name or IP address `name`.
    pub fn client_for(config: Arc<ClientConfig>, name: &str) -> Result<Self> {
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|e| Error::InvalidInput(format!("bad TLS server name {name:?}: {e}")))?;
        Ok(Self::client(config, server_name))
    }

    /// Server side.
    pub fn server(config: Arc<ServerConfig>) -> Self {
        TlsSetup::Server(config)
    }
}

/// What a completed TLS handshake established, readable from the worker
/// ([`Ctx::tls_info`](crate::Ctx::tls_info)) and from any thread
/// ([`Connection::tls_info`](crate::Connection::tls_info)) once
/// [`Event::TlsEstablished`](crate::Event::TlsEstablished) was emitted.
///
/// ```no_run
/// # fn f(conn: &netactor::Connection) {
/// if let Some(tls) = conn.tls_info() {
///     println!("{:?} {:?}", tls.protocol_version, tls.cipher_suite);
///     if let Some(leaf) = tls.peer_certificates.first() {
///         println!("peer presented {} certificate bytes", leaf.len());
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// The negotiated protocol version (TLS 1.2 or 1.3).
    pub protocol_version: Option<ProtocolVersion>,
    /// The negotiated cipher suite.
    pub cipher_suite: Option<CipherSuite>,
    /// The ALPN protocol both sides agreed on, if any.
    pub alpn_protocol: Option<Vec<u8>>,
    /// The server name the client asked for with SNI (server side only).
    pub server_name: Option<String>,
    /// The certificate chain the peer presented, leaf first: the server's
    /// on a client, the client's on a server that asked for one (mTLS);
    /// empty when the peer presented none.
    pub peer_certificates: Vec<CertificateDer<'static>>,
}

impl TlsInfo {
    /// The connection's `TlsInfo`, shared: connections established with
    /// the same parameters (typically every connection of a listener: same
    /// version, suite, ALPN and SNI name, no client certificate) share one
    /// allocation per worker thread instead of holding ~150 bytes each.
    /// `same` says whether the last one shared on this thread is this
    /// connection's (then nothing is built or allocated); `make` builds it
    /// otherwise.
    pub(crate) fn shared(
        same: impl FnOnce(&TlsInfo) -> bool,
        make: impl FnOnce() -> TlsInfo,
    ) -> Arc<TlsInfo> {
        thread_local! {
            static LAST: std::cell::RefCell<Option<Arc<TlsInfo>>> = const { std::cell::RefCell::new(None) };
        }
        LAST.with(|last| {
            let mut last = last.borrow_mut();
            match &*last {
                Some(l) if same(l) => l.clone(),
                _ => {
                    let a = Arc::new(make());
                    *last = Some(a.clone());
                    a
                }
            }
        })
    }
}
