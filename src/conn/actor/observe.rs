//! What the actor tells the outside about itself: the read buffer's size
//! handles read in `Stats` and snapshots sum (published once a turn), and
//! how a close is counted and logged.

use super::Core;
use super::WorkerCtx;
use crate::conn::shared::TlsState;
use crate::error::{Error, TimeoutKind};
use crate::metrics::{tls_version_idx, CloseCause};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

impl Core {
    /// Publishes the read buffer's size for handles (`Stats`) and
    /// snapshots (which sum it over the live connections, `live.rs`, as
    /// they sum the write reservations): a plain store at the end of every
    /// turn and on close (cheaper than a test for whether it changed). The
    /// activity stamps are stored as reads and writes happen
    /// (`note_read_at`, `note_write_at`); `_w` keeps the callers' shape.
    #[inline]
    pub(super) fn publish(&mut self, _w: &WorkerCtx) {
        let len = self.rd.buf.len();
        let rb = len.min(u32::MAX as usize) as u32;
        self.shared
            .counters
            .read_buffered
            .store(rb, Ordering::Relaxed);
    }

    /// Counts (and logs) the close `finish` is making: its cause, and a TLS
    /// handshake it cuts short.
    pub(super) fn record_close(&mut self, w: &WorkerCtx) {
        let m = &w.metrics.conn;
        let cause = match self.failure.as_deref() {
            Some(e) => close_cause(e),
            None if self.rd.eof => CloseCause::Eof,
            None => CloseCause::Local,
        };
        m.closed_by(cause);
        let id = self.shared.id;
        if let Some(t) = self.tls.as_ref().filter(|t| t.is_handshaking()) {
            let v = t.protocol_version();
            m.tls_failed[tls_version_idx(v)].inc();
            self.shared.counters.set_tls(TlsState::Failed, v);
        }
        match self.failure.as_deref() {
            // A dropped connection: said at warn, with who it was.
            Some(e) => log::warn!(
                "{id} ({}): closed on error ({}): {e}",
                Peer(self.shared.peer_addr()),
                cause.as_str()
            ),
            None => log::debug!(
                "{id} ({}): closed ({})",
                Peer(self.shared.peer_addr()),
                cause.as_str()
            ),
        }
    }
}

/// The close cause an error stands for.
pub(super) fn close_cause(e: &Error) -> CloseCause {
    match e {
        Error::BrokenPipe => CloseCause::BrokenPipe,
        Error::ConnectionReset => CloseCause::Reset,
        Error::ConnectionRefused => CloseCause::Refused,
        Error::Unreachable => CloseCause::Unreachable,
        Error::NoAddress(_) => CloseCause::NoAddress,
        Error::TimedOut(TimeoutKind::Connect) => CloseCause::ConnectTimeout,
        Error::TimedOut(TimeoutKind::Handshake) => CloseCause::HandshakeTimeout,
        Error::TimedOut(_) => CloseCause::InactivityTimeout,
        Error::BadMessage(_) => CloseCause::BadMessage,
        Error::NoSpace { .. } => CloseCause::NoSpace,
        Error::UnexpectedEof => CloseCause::UnexpectedEof,
        Error::Tls(_) => CloseCause::Tls,
        Error::TlsTruncated => CloseCause::TlsTruncated,
        Error::Panicked(_) => CloseCause::Panic,
        _ => CloseCause::Other,
    }
}

/// A peer address in a log line.
pub(super) struct Peer(pub(super) Option<SocketAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => write!(f, "peer {a}"),
            None => f.write_str("peer unknown"),
        }
    }
}
