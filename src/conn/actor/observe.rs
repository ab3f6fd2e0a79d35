//! What the actor tells the outside about itself: the values handles read
//! in `Stats` and the worker's gauges (published once a turn), and how a
//! close is counted and logged.

use super::Core;
use super::WorkerCtx;
use super::{ACTIVE_READ, ACTIVE_WRITE};
use crate::conn::shared::TlsState;
use crate::error::{Error, TimeoutKind};
use crate::metrics::{tls_version_idx, CloseCause};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

impl Core {
    /// Publishes what handles and snapshots read of this turn: the read
    /// buffer's size (a plain store; snapshots sum it over the live
    /// connections, `live.rs`, as they sum the write reservations) and the
    /// activity stamps. Called at
    /// the end of every turn and on close.
    #[inline]
    pub(super) fn publish(&mut self, w: &WorkerCtx) {
        let c = &self.shared.counters;
        let rb = self.rd.buf.len().min(u32::MAX as usize) as u32;
        c.read_buffered.store(rb, Ordering::Relaxed);
        let a = self.activity;
        if a != 0 {
            // Reads and writes of a turn happen at its `now`, published as
            // a stamp at most 10 ms old (`WorkerCtx::stamp`).
            let t = w.stamp();
            if a & ACTIVE_READ != 0 {
                c.last_read.store(t, Ordering::Relaxed);
            }
            if a & ACTIVE_WRITE != 0 {
                c.last_write.store(t, Ordering::Relaxed);
            }
            self.activity = 0;
        }
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
