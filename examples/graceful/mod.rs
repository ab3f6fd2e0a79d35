//! The graceful stop the example servers share (echo, http): on SIGTERM a
//! server stops reading new requests, finishes what it owes and half-closes,
//! so a client reads everything it was sent and then a clean EOF — never a
//! reset.
//!
//! Why not just `Reactor::shutdown`: it closes every connection, and a
//! socket closed while the client is still sending answers with RST, which
//! throws away what the kernel had not yet sent and shows the client
//! `ECONNRESET` instead of the tail of its data and a FIN.
//!
//! How: each connection is registered when accepted ([`Sessions::opened`])
//! and removed when it closes ([`Sessions::closed`]). [`Sessions::stop_all`]
//! runs [`stop`] on every connection's own worker (`Connection::call`):
//! input is read and dropped from then on (so the client's sends never meet
//! a closed socket), the write queue is flushed and followed by a FIN, and
//! the connection closes when the client closes its side too (the actor
//! closes once both directions are finished) or, for a client that never
//! does, when the write-inactivity timer fires after [`GRACE`]; the
//! handler closes on that timeout.

#![allow(dead_code)] // each example uses a different subset

use bytes::BytesMut;
use crossbeam_channel::{Receiver, Sender};
use netactor::framing::{DecodeError, Decoder, Frame};
use netactor::{ConnId, Connection, Ctx, Inactivity};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// SIGINT and SIGTERM, registered for `server` (its name, for the error
/// message). Call it before printing `listening on`, so a signal sent right
/// after that line is never missed; on failure the caller exits with the
/// code returned.
pub fn termination_signals(
    server: &str,
) -> Result<signal_hook::iterator::Signals, std::process::ExitCode> {
    signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|e| {
            eprintln!("{server}: cannot install signal handlers: {e}");
            std::process::ExitCode::from(1)
        })
}

/// How long a stopped connection waits for the client's FIN after its own
/// (counted from its last successful write).
pub const GRACE: Duration = Duration::from_secs(4);

/// Hashes a [`ConnId`] as itself: ids are distinct counters, so SipHash
/// (resistant to chosen keys, which nobody chooses here) would only cost
/// every accepted and closed connection time in its registry.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // Spread sequential ids over the table's high bits (hashbrown
        // takes the top 7 bits as a tag).
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The open connections of a server.
pub struct Sessions {
    open: Mutex<HashMap<ConnId, Connection, BuildHasherDefault<IdHasher>>>,
    /// [`Sessions::stop_all`] is waiting: closes are announced on the
    /// channel from then on. (Before, each close would leave a message
    /// nobody reads: memory growing with every connection ever closed.)
    stopping: AtomicBool,
    closed_tx: Sender<()>,
    closed_rx: Receiver<()>,
}

impl Default for Sessions {
    fn default() -> Self {
        let (closed_tx, closed_rx) = crossbeam_channel::unbounded();
        Sessions {
            open: Mutex::new(HashMap::default()),
            stopping: AtomicBool::new(false),
            closed_tx,
            closed_rx,
        }
    }
}

impl Sessions {
    /// Registers a connection just accepted (call from the handler factory).
    pub fn opened(&self, ctx: &mut Ctx<'_>) {
        self.open.lock().insert(ctx.id(), ctx.connection());
    }

    /// Forgets a connection (call on `Event::Closed`).
    pub fn closed(&self, id: ConnId) {
        if self.open.lock().remove(&id).is_some() && self.stopping.load(Ordering::Acquire) {
            let _ = self.closed_tx.send(());
        }
    }

    /// Stops every open connection with [`stop`] and waits until all have
    /// closed or `limit` has passed. Call after the listener is dropped, so
    /// no connection is added meanwhile.
    pub fn stop_all(&self, limit: Duration) {
        let end = Instant::now() + limit;
        // From here every close is announced; one removed before is no
        // longer in the map, which the loop below checks before each wait.
        self.stopping.store(true, Ordering::Release);
        let open: Vec<Connection> = self.open.lock().values().cloned().collect();
        for c in open {
            // An already-closed connection refuses the call; it is (or is
            // about to be) removed by its `Closed` event.
            let _ = c.call(stop);
        }
        while !self.open.lock().is_empty() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || self.closed_rx.recv_timeout(left).is_err() {
                return;
            }
        }
    }
}

/// Stops one connection gracefully, on its worker: drop input from now on,
/// half-close after what is queued, and arm the write-inactivity timer as
/// the deadline for the client's FIN (the handler closes on it).
pub fn stop(ctx: &mut Ctx<'_>) {
    ctx.set_streaming(Some(Discard));
    // Even if flow control had paused reading: the client's sends must be
    // consumed, not refused with a reset.
    ctx.start_read();
    let _ = ctx.shutdown();
    ctx.reset_timeout(Inactivity::Write);
    ctx.set_timeout(Inactivity::Write, Some(GRACE));
}

/// A streaming decoder that drops every byte it is given.
pub struct Discard;

impl Decoder for Discard {
    type Output = Frame;

    fn decode(&mut self, buf: &mut BytesMut, _eof: bool) -> Result<Option<Frame>, DecodeError> {
        buf.clear();
        Ok(None)
    }
}
