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
//! How: [`stop_all`] runs [`stop`] on every open connection's own worker
//! (`Reactor::connections`, then `Connection::call`):
//! input is read and dropped from then on (so the client's sends never meet
//! a closed socket), the write queue is flushed and followed by a FIN, and
//! the connection closes when the client closes its side too (the actor
//! closes once both directions are finished) or, for a client that never
//! does, when the write-inactivity timer fires after [`GRACE`]; the
//! handler closes on that timeout.

#![allow(dead_code)] // each example uses a different subset

use bytes::BytesMut;
use netactor::framing::{DecodeError, Decoder, Frame};
use netactor::{ConnId, Ctx, Inactivity, Reactor};
use std::collections::HashSet;
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

/// How often [`stop_all`] looks again for connections still open.
const POLL: Duration = Duration::from_millis(10);

/// Stops every open connection of `reactor` with [`stop`] and waits until
/// all have closed or `limit` has passed. Call after the listener is
/// dropped, so no connection is accepted meanwhile.
///
/// The reactor's own list of running connections
/// ([`Reactor::connections`]) says which are open: a registry of the
/// server's own would cost every connection a shared lock when it opens
/// and again when it closes. Each look takes a fresh snapshot, so a
/// connection accepted just before the listener went (its actor starting
/// after the first look) is stopped by the next one.
pub fn stop_all(reactor: &Reactor, limit: Duration) {
    let end = Instant::now() + limit;
    let mut stopped: HashSet<ConnId> = HashSet::new();
    loop {
        let mut open = 0;
        for c in reactor.connections() {
            if c.is_closed() {
                continue;
            }
            open += 1;
            // A connection that closed meanwhile refuses the call.
            if !stopped.contains(&c.id()) && c.call(stop).is_ok() {
                stopped.insert(c.id());
            }
        }
        let left = end.saturating_duration_since(Instant::now());
        if open == 0 || left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(POLL));
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
