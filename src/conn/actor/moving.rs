//! Moving a connection to another worker. A connection starts on the
//! worker that accepted it (`ReactorShared::pick_worker_near`): a short
//! one is then served start to finish without crossing threads. One that
//! keeps running offers to move after [`MOVE_AFTER`] turns, and again at
//! every doubling of its turns — a quiet one also at its first turn once
//! it is [`MOVE_AGE`] old — and the reactor moves it if its worker
//! hosts more connections than another (`ReactorShared::move_target`):
//! long-lived connections accepted in a burst on one thread end up spread.
//!
//! What a move carries over: the socket's poller registration (re-keyed,
//! which re-reports readiness that came meanwhile), the armed timers
//! (re-armed in the new worker's heap; the old entries are stale), the
//! registry entry (handed over under both registries' locks), and the
//! mailbox's token (`ConnShared::set_token`, the same ordering as a start:
//! mail posted meanwhile is taken by the first turn on the new worker).

use super::timers::{TimerKind, TIMER_KINDS};
use super::{Actor, Core, Phase, WorkerCtx};
use crate::conn::shared::ConnShared;
use crate::error::Error;
use crate::reactor::Token;

/// Turns after which an accepted connection first offers to move: more
/// than a short connection's (accept, request, close: three; a TLS
/// handshake adds two or three), few enough that a burst of long-lived
/// ones spreads within milliseconds.
pub(super) const MOVE_AFTER: u32 = 16;

/// Age (in `timers::stamp` units of 10 ms: one second) at which a
/// connection that has not run [`MOVE_AFTER`] turns offers anyway, at its
/// next turn: a thousand quiet clients accepted in one burst on one thread
/// spread as they speak, not only after sixteen messages each.
pub(super) const MOVE_AGE: u32 = 100;

impl Actor {
    /// Counts a turn; at [`MOVE_AFTER`] turns and every doubling after,
    /// or at the first turn after [`MOVE_AGE`], offers to move. A counter
    /// and a test or two per turn.
    #[inline]
    pub(super) fn count_turn(&mut self, w: &mut WorkerCtx) {
        let t = self.core.turns.wrapping_add(1);
        self.core.turns = t;
        if t >= MOVE_AFTER {
            if t.is_power_of_two() {
                self.core.offer_move(w);
            }
        } else if w.stamp().wrapping_sub(self.core.born) >= MOVE_AGE {
            // From here on the doubling schedule: next offer at 2 × MOVE_AFTER.
            self.core.turns = MOVE_AFTER;
            self.core.offer_move(w);
        }
    }

    /// Leaves this worker for worker `to` (`Source::depart`).
    pub(super) fn depart(&mut self, to: usize, _w: &mut WorkerCtx) {
        let core = &mut self.core;
        let from = core.token;
        // Stale everywhere until it arrives; its `Drop` (were it dropped
        // on the way) finds its registry entry among `to`'s arrivals.
        core.token = Token::unplaced(to);
        ConnShared::set_token(&core.shared, core.token);
        if core.listed {
            let shared: &ConnShared = &core.shared;
            crate::conn::actor::live::Live::transfer(
                (&shared.worker_of(from).source_shared, from.worker()),
                (&shared.worker_of(core.token).source_shared, to),
                shared,
                from.slot(),
            );
        }
    }

    /// Arrived on this worker in slot `token` (`Source::arrive`).
    pub(super) fn arrive(&mut self, token: Token, w: &mut WorkerCtx) {
        let core = &mut self.core;
        core.token = token;
        // Mail posted while it moved is taken by the turn below (under
        // the mailbox lock whatever the count: handles can be made from
        // its registry entry among the arrivals, `set_token_moved`).
        ConnShared::set_token_moved(&core.shared, token);
        if core.listed {
            core.shared
                .worker_of(token)
                .source_shared
                .arrive(&core.shared, token.slot());
        }
        if let Some(sock) = core.sock.as_ref() {
            if let Err(e) = sock.rekey(&w.poller, token, core.wr.out_watched) {
                core.fail(Error::from_io(e), w);
            }
        }
        for tag in 0..TIMER_KINDS as u8 {
            let kind = TimerKind::from_tag(tag).expect("every tag below TIMER_KINDS is a kind");
            if let Some(at) = core.armed.get(kind) {
                w.arm(at, token, tag);
            }
        }
        // An edge that came while it moved was reported under the old
        // token: the re-key reports it again, and one read that finds
        // nothing costs less than a lost one.
        core.rd.readable = true;
        self.run(w);
    }
}

impl Core {
    /// Offers to move, if this connection can: accepted (the others are
    /// placed round robin already), open, and with nothing waiting for
    /// it to be established.
    #[cold]
    #[inline(never)]
    fn offer_move(&mut self, w: &mut WorkerCtx) {
        if self.accepted
            && self.phase == Phase::Open
            && self.registered
            && self.deferred.is_none()
            && !self.token.is_unplaced()
        {
            w.offer_move(self.token);
        }
    }
}
