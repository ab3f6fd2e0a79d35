//! One connection's rustls engine, driven by the actor.
//!
//! The actor reads ciphertext from the socket into a scratch buffer and hands
//! it to [`TlsSession::input`], which feeds rustls **one TLS record at a
//! time**. Feeding whole records is what lets `stoptls` work: rustls discards
//! whatever it had already accepted past a close_notify, so the session never
//! gives it bytes beyond the end of the record being processed, and the bytes
//! that follow a close_notify stay with the actor (they are the plaintext of
//! the stream after `stoptls`).
//!
//! Plaintext for the peer is moved from the actor's write queue into rustls
//! in chunks of at most [`WRITE_CHUNK`] bytes, and only while rustls has no
//! unsent records, so the engine never holds more than one chunk of
//! ciphertext. The write reservation of those bytes is held (counted in
//! `in_engine`) until rustls has handed their records to the kernel.

use super::TlsSetup;
use crate::error::{Error, Result};
use crate::net::stream::Stream;
use bytes::BytesMut;
use std::io::{self, BufRead, IoSlice, Write};

/// Most plaintext moved into rustls at once (also rustls' buffer limit).
pub(crate) const WRITE_CHUNK: usize = 64 << 10;

/// Tracks TLS record boundaries in the ciphertext stream fed to rustls.
#[derive(Debug, Default)]
struct RecordTracker {
    hdr: [u8; 5],
    hdr_len: usize,
    body_left: usize,
}

impl RecordTracker {
    /// How many bytes of `data` belong to the record in progress (up to and
    /// including its last byte). Never 0 for non-empty `data`.
    fn take(&mut self, data: &[u8]) -> usize {
        let mut i = 0;
        while self.hdr_len < 5 {
            if i == data.len() {
                return i;
            }
            self.hdr[self.hdr_len] = data[i];
            self.hdr_len += 1;
            i += 1;
            if self.hdr_len == 5 {
                self.body_left = u16::from_be_bytes([self.hdr[3], self.hdr[4]]) as usize;
            }
        }
        let n = self.body_left.min(data.len() - i);
        self.body_left -= n;
        i += n;
        if self.body_left == 0 {
            self.hdr_len = 0;
        }
        i
    }
}

/// What one call to [`TlsSession::input`] did.
#[derive(Debug, Default)]
pub(crate) struct Fed {
    /// Bytes of the input taken by TLS; the rest follows a close_notify.
    pub(crate) consumed: usize,
}

/// `Write` for a socket that never raises SIGPIPE.
struct NoSigPipe<'a>(&'a Stream);

impl Write for NoSigPipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.send_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A rustls error as netactor's [`Error::Tls`] (structured; its
/// `Display` says which side rejected a certificate).
pub(crate) fn tls_error(e: rustls::Error) -> Error {
    Error::Tls(crate::error::TlsError::Rustls(e))
}

/// One connection's TLS engine.
pub(crate) struct TlsSession {
    conn: rustls::Connection,
    /// `TlsEstablished` was reported.
    established: bool,
    /// Going back to plaintext once both close_notify alerts are through
    /// (after a local `stoptls`, or when answering the peer's).
    pub(crate) stopping: bool,
    close_sent: bool,
    /// The peer's close_notify arrived: nothing more is fed to TLS.
    pub(crate) peer_closed: bool,
    /// The peer's close_notify is to be answered (`follow_stoptls`).
    pub(crate) answer_pending: bool,
    rec: RecordTracker,
    /// Plaintext moved into rustls whose write reservation is still held.
    pub(crate) in_engine: usize,
    /// Bytes queued in clear before `starttls`: they go out before any record.
    pub(crate) plain_prefix: usize,
    /// Socket bytes that followed the peer's close_notify (plaintext after `stoptls`).
    pub(crate) leftover: BytesMut,
}

impl TlsSession {
    pub(crate) fn new(setup: TlsSetup) -> Result<TlsSession> {
        let mut conn: rustls::Connection = match setup {
            TlsSetup::Client {
                config,
                server_name,
            } => rustls::ClientConnection::new(config, server_name)
                .map_err(tls_error)?
                .into(),
            TlsSetup::Server(config) => rustls::ServerConnection::new(config)
                .map_err(tls_error)?
                .into(),
        };
        conn.set_buffer_limit(Some(WRITE_CHUNK));
        Ok(TlsSession {
            conn,
            established: false,
            stopping: false,
            close_sent: false,
            peer_closed: false,
            answer_pending: false,
            rec: RecordTracker::default(),
            in_engine: 0,
            plain_prefix: 0,
            leftover: BytesMut::new(),
        })
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// True exactly once: when the handshake has just completed.
    pub(crate) fn take_established(&mut self) -> bool {
        if !self.established && !self.conn.is_handshaking() {
            self.established = true;
            return true;
        }
        false
    }

    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Whether application plaintext may be moved into the engine: only
    /// after the handshake (so nothing leaves before the peer is verified)
    /// and before our close_notify.
    pub(crate) fn accepts_plaintext(&self) -> bool {
        !self.conn.is_handshaking() && !self.close_sent
    }

    pub(crate) fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// Feeds ciphertext, record by record, appending decrypted bytes to
    /// `rbuf`. Stops right after a close_notify; `consumed` tells how far.
    pub(crate) fn input(&mut self, data: &[u8], rbuf: &mut BytesMut) -> Result<Fed> {
        let mut off = 0;
        while off < data.len() && !self.peer_closed {
            let n = self.rec.take(&data[off..]);
            let mut part = &data[off..off + n];
            while !part.is_empty() {
                match self.conn.read_tls(&mut part) {
                    // rustls takes whole records and has room for one: it
                    // refuses input only if it is broken or overrun.
                    Ok(0) => {
                        return Err(tls_error(rustls::Error::General(
                            "TLS engine refused input".into(),
                        )));
                    }
                    Ok(_) => {}
                    Err(e) => return Err(tls_error(rustls::Error::General(e.to_string()))),
                }
                let state = self.conn.process_new_packets().map_err(tls_error)?;
                self.drain_plaintext(rbuf);
                if state.peer_has_closed() {
                    self.peer_closed = true;
                    // Anything rustls accepted past the alert is dropped by it;
                    // record-wise feeding means that is nothing.
                    break;
                }
            }
            off += n - part.len();
            if !part.is_empty() {
                break;
            }
        }
        Ok(Fed { consumed: off })
    }

    fn drain_plaintext(&mut self, rbuf: &mut BytesMut) {
        let mut reader = self.conn.reader();
        loop {
            match reader.fill_buf() {
                Ok([]) => break,
                Ok(buf) => {
                    let n = buf.len();
                    rbuf.extend_from_slice(buf);
                    reader.consume(n);
                }
                // WouldBlock: need more ciphertext. rustls never sees TCP EOF
                // (the actor tracks it), so UnexpectedEof cannot occur here.
                Err(_) => break,
            }
        }
    }

    /// Moves plaintext into the engine; returns how much it took.
    pub(crate) fn write_plain(&mut self, bufs: &[IoSlice<'_>]) -> usize {
        if !self.accepts_plaintext() {
            return 0;
        }
        let n = self.conn.writer().write_vectored(bufs).unwrap_or(0);
        self.in_engine += n;
        n
    }

    /// Lifts the engine's buffer limit (used before close_notify, so that
    /// everything queued while TLS was on is encrypted).
    pub(crate) fn unlimit(&mut self) {
        self.conn.set_buffer_limit(None);
    }

    /// Writes queued records to the socket.
    pub(crate) fn write_to(&mut self, sock: &Stream) -> io::Result<usize> {
        self.conn.write_tls(&mut NoSigPipe(sock))
    }

    /// Queues close_notify (once).
    pub(crate) fn close_notify(&mut self) {
        if !self.close_sent {
            self.close_sent = true;
            self.conn.send_close_notify();
        }
    }

    /// Negotiated ALPN protocol.
    pub(crate) fn alpn(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// The certificates the peer presented (leaf first).
    pub(crate) fn peer_certificates(
        &self,
    ) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }

    /// The SNI name a client asked for (server side only).
    pub(crate) fn sni(&self) -> Option<&str> {
        match &self.conn {
            rustls::Connection::Server(s) => s.server_name(),
            rustls::Connection::Client(_) => None,
        }
    }

    /// Negotiated protocol version.
    pub(crate) fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// Negotiated cipher suite.
    pub(crate) fn cipher_suite(&self) -> Option<rustls::CipherSuite> {
        self.conn.negotiated_cipher_suite().map(|s| s.suite())
    }

    /// Everything the handshake established, for the connection's handles.
    pub(crate) fn info(&self) -> super::TlsInfo {
        super::TlsInfo {
            protocol_version: self.protocol_version(),
            cipher_suite: self.cipher_suite(),
            alpn_protocol: self.alpn().map(<[u8]>::to_vec),
            server_name: self.sni().map(str::to_string),
            peer_certificates: self
                .peer_certificates()
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RecordTracker;

    #[test]
    fn record_tracker_splits_at_record_ends() {
        // Two records: 3-byte body, then 0-byte body, then 2 bytes of a third.
        let data = [
            22, 3, 3, 0, 3, 1, 2, 3, 21, 3, 3, 0, 0, 23, 3, 3, 0, 9, 7, 7,
        ];
        let mut t = RecordTracker::default();
        assert_eq!(t.take(&data), 8);
        assert_eq!(t.take(&data[8..]), 5);
        assert_eq!(t.take(&data[13..]), 7);
        // The third record needs 7 more bytes, whatever the split.
        assert_eq!(t.take(&[0; 3]), 3);
        assert_eq!(t.take(&[0; 10]), 4);
    }

    #[test]
    fn record_tracker_header_split_across_inputs() {
        let mut t = RecordTracker::default();
        assert_eq!(t.take(&[23, 3]), 2);
        assert_eq!(t.take(&[3, 0]), 2);
        assert_eq!(t.take(&[2, 9, 9, 1]), 3);
        assert_eq!(t.take(&[1]), 1);
    }
}
