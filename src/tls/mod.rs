//! TLS over connection actors, with rustls 0.23.
//!
//! A connection starts TLS at connect/accept time or mid-stream with
//! [`Connection::starttls`](crate::Connection::starttls). Bytes already in the
//! read buffer when TLS starts are fed to the TLS engine as ciphertext — never
//! delivered as plaintext — which makes STARTTLS command injection
//! (CVE-2011-0411) impossible. Writes queued before `starttls` go out in
//! plaintext first; writes queued after it are encrypted.
//!
//! Configurations are built once and shared: [`ClientConfig`] and
//! [`ServerConfig`] sit behind an `Arc`, and every connection that uses them
//! holds a clone of that `Arc`.
//!
//! Client verification is **on** by default ([`client_config`] uses the
//! platform's trust store); [`insecure_client_config_no_verification`] is the
//! only way to turn it off. A handshake failure is always a fatal
//! [`Error::Tls`] — there is no fallback to plaintext.

mod config;

pub use config::{
    client_config, client_config_with_ca_pem, crypto_provider,
    insecure_client_config_no_verification, server_config_from_pem, server_config_from_pem_files,
};
pub use rustls::pki_types::ServerName;
pub use rustls::{ClientConfig, ServerConfig};

use crate::error::{Error, Result};
use bytes::BytesMut;
use socket2::SockRef;
use std::io::{self, BufRead, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// How long a TLS handshake may take before the connection fails with
/// [`Error::TimedOut`]`(Handshake)`: 10 s.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which side of TLS to start, with its shared configuration.
///
/// ```no_run
/// use netactor::tls::{client_config, ServerName, TlsSetup};
/// let cfg = client_config().unwrap();
/// let setup = TlsSetup::client(cfg, ServerName::try_from("example.com").unwrap());
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

    /// Server side.
    pub fn server(config: Arc<ServerConfig>) -> Self {
        TlsSetup::Server(config)
    }
}

/// What changed after new ciphertext was processed.
#[derive(Debug, Default)]
pub(crate) struct TlsStep {
    pub(crate) established: bool,
    pub(crate) peer_closed: bool,
    pub(crate) stopping: bool,
    pub(crate) truncated: bool,
    pub(crate) tcp_eof: bool,
}

/// One connection's TLS engine, driven by the actor over its non-blocking socket.
pub(crate) struct TlsSession {
    conn: rustls::Connection,
    handshaking: bool,
    stopping: bool,
    close_sent: bool,
    tcp_eof: bool,
    peer_closed: bool,
}

/// `Write` for a socket that never raises SIGPIPE.
struct NoSigPipe<'a>(&'a TcpStream);

impl Write for NoSigPipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        SockRef::from(self.0).send_with_flags(buf, libc::MSG_NOSIGNAL)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        SockRef::from(self.0).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsSession {
    pub(crate) fn new(setup: TlsSetup, _peer: Option<SocketAddr>) -> Result<TlsSession> {
        let conn: rustls::Connection = match setup {
            TlsSetup::Client {
                config,
                server_name,
            } => rustls::ClientConnection::new(config, server_name)?.into(),
            TlsSetup::Server(config) => rustls::ServerConnection::new(config)?.into(),
        };
        Ok(TlsSession {
            conn,
            handshaking: true,
            stopping: false,
            close_sent: false,
            tcp_eof: false,
            peer_closed: false,
        })
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Whether the socket must be read even if the application wants no data.
    pub(crate) fn needs_read(&self) -> bool {
        (self.conn.is_handshaking() || self.stopping) && !self.tcp_eof
    }

    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Feeds bytes that arrived before TLS started.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            match self.conn.read_tls(&mut bytes) {
                Ok(0) => break,
                Ok(_) => {
                    self.conn.process_new_packets()?;
                }
                Err(e) => return Err(Error::Tls(e.to_string())),
            }
        }
        Ok(())
    }

    /// Reads ciphertext from the socket. `Ok(0)` is TCP EOF.
    pub(crate) fn read_from(&mut self, sock: &TcpStream) -> io::Result<usize> {
        let mut s = sock;
        match self.conn.read_tls(&mut s) {
            Ok(0) => {
                self.tcp_eof = true;
                Ok(0)
            }
            other => other,
        }
    }

    /// Processes ciphertext and appends plaintext to `rbuf`.
    pub(crate) fn drain_plaintext(&mut self, rbuf: &mut BytesMut, _max: usize) -> Result<TlsStep> {
        let mut step = TlsStep {
            stopping: self.stopping,
            ..TlsStep::default()
        };
        let io_state = self.conn.process_new_packets()?;
        if self.handshaking && !self.conn.is_handshaking() {
            self.handshaking = false;
            step.established = true;
        }
        if io_state.plaintext_bytes_to_read() > 0 || io_state.peer_has_closed() || self.tcp_eof {
            let mut reader = self.conn.reader();
            loop {
                match reader.fill_buf() {
                    Ok([]) => {
                        if !self.peer_closed {
                            self.peer_closed = true;
                            step.peer_closed = true;
                        }
                        break;
                    }
                    Ok(buf) => {
                        let n = buf.len();
                        rbuf.extend_from_slice(buf);
                        reader.consume(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        if self.handshaking {
                            return Err(Error::Tls(
                                "peer closed the connection during the TLS handshake".into(),
                            ));
                        }
                        step.truncated = true;
                        break;
                    }
                    Err(e) => return Err(Error::Tls(e.to_string())),
                }
            }
        }
        step.tcp_eof = self.tcp_eof && !step.truncated;
        Ok(step)
    }

    /// Hands plaintext to the engine; returns how much it took (0 when full).
    pub(crate) fn write_plain(&mut self, data: &[u8]) -> usize {
        if self.close_sent {
            return 0;
        }
        self.conn.writer().write(data).unwrap_or(0)
    }

    /// Writes queued records to the socket.
    pub(crate) fn write_to(&mut self, sock: &TcpStream) -> io::Result<usize> {
        self.conn.write_tls(&mut NoSigPipe(sock))
    }

    /// Queues close_notify (once).
    pub(crate) fn close_notify(&mut self) {
        if !self.close_sent {
            self.close_sent = true;
            self.conn.send_close_notify();
        }
    }

    pub(crate) fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// `stoptls`: close_notify now, plaintext again once the peer answers.
    pub(crate) fn stop(&mut self) {
        self.stopping = true;
        self.close_notify();
    }

    /// Negotiated ALPN protocol.
    pub(crate) fn alpn(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }
}
