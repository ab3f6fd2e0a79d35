//! What the reactor runs, as the layer above defines it: a [`Source`] is one
//! registered thing with a token (a connection actor, in this crate) and an
//! [`Acceptor`] is a listening socket the poller-role holder accepts on. The
//! reactor knows nothing else about either: it routes readiness, mail and
//! opaque timer tags to them by token and catches their panics.
//!
//! A new kind of source (another transport, another protocol engine) plugs
//! in by implementing these traits; the worker loop, the poller role and the
//! timer heap stay as they are.

use super::worker::WorkerCtx;
use super::{ReactorShared, Task, Token};
use std::io;
use std::time::Instant;

/// Readiness the poller saw for one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Readiness {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// The peer shut down (RDHUP/HUP/ERR): read until EOF or EAGAIN.
    pub(crate) hup: bool,
}

/// One thing a worker owns and runs, a turn at a time, under its state
/// lock. Statically dispatched: the reactor is generic over it and there is
/// one implementation per program, so a task costs no indirect call.
pub(crate) trait Source: Sized + Send + 'static {
    /// Per-worker scratch every source of a worker shares (pools of
    /// buffers and the like), lent to each turn in [`WorkerCtx::local`].
    type Local: Default + Send + 'static;
    /// Per-worker state of the layer above that other threads read
    /// (the connections' registry for metrics), kept in `WorkerShared`.
    type Shared: Default + Send + Sync + 'static;
    /// What a new source is made from (carried by `Task::Spawn`).
    type New: Send + 'static;

    /// Builds and starts the source in slot `token`, in `into` (the slot's
    /// place: built there, a source is not moved again). It may already be
    /// closed when this returns (then it is dropped at once).
    fn start(new: Self::New, token: Token, w: &mut WorkerCtx<Self>, into: &mut Option<Self>);
    /// A `Task::Spawn` that will never run (its worker exited first).
    fn abandon(new: Self::New);
    /// Readiness from the poller; `Readiness::default()` for a fairness re-run.
    fn on_io(&mut self, ready: Readiness, w: &mut WorkerCtx<Self>);
    /// Its mailbox has messages (`Task::Mail`).
    fn on_mail(&mut self, w: &mut WorkerCtx<Self>);
    /// A timer it armed with [`WorkerCtx::arm`] is due; `tag` is its own.
    fn on_timer(&mut self, tag: u8, at: Instant, w: &mut WorkerCtx<Self>);
    /// Whether its entry `tag` due `at` would still do anything when it
    /// fires: the worker drops those it says no to when it compacts its
    /// timers (`timers.rs`). Every entry, unless it says otherwise.
    fn timer_armed(&self, _tag: u8, _at: Instant) -> bool {
        true
    }
    /// It leaves this worker for worker `to` (it offered to move,
    /// [`WorkerCtx::offer_move`], and the reactor picked `to`): it is in
    /// no slab now, its token stale here, and goes to `to`'s queue next.
    /// What it keeps per worker goes with it. It is not called otherwise.
    fn depart(&mut self, _to: usize, _w: &mut WorkerCtx<Self>) {}
    /// It arrived on this worker (after [`depart`](Self::depart)) in slot
    /// `token`: events, mail and timers reach it under that token from
    /// now on. It may be closed when this returns. Only sources that
    /// offer to move are ever called.
    fn arrive(&mut self, token: Token, w: &mut WorkerCtx<Self>);
    /// The reactor shuts down: finish by `deadline`.
    fn on_shutdown(&mut self, deadline: Instant, w: &mut WorkerCtx<Self>);
    /// Forced end (the shutdown deadline passed).
    fn abort(&mut self, w: &mut WorkerCtx<Self>);
    /// Forced end after a panic escaped one of its calls.
    fn abort_panicked(&mut self, msg: String, w: &mut WorkerCtx<Self>);
    /// Whether the worker may drop it.
    fn is_closed(&self) -> bool;
    fn token(&self) -> Token;
    /// How logs name it.
    fn label(&self) -> String;
    /// Adds what every worker's [`Shared`](Self::Shared) counts to a
    /// snapshot (from any thread), as one view: a source that moves
    /// between workers is counted once.
    fn collect<'a>(
        _shared: impl Iterator<Item = &'a Self::Shared>,
        _into: &mut crate::metrics::Metrics,
    ) {
    }
}

/// A listening socket, owned by the poller role once added
/// (`PollerCmd::AddListener`). It keeps its own accept budget and back-off.
pub(crate) trait Acceptor<S: Source>: Send {
    /// Registers the socket (oneshot, readable) under `token`.
    fn register(&self, poller: &crate::sys::Poller, token: Token) -> io::Result<()>;
    /// Removes the socket from the poller (before the acceptor is dropped).
    fn deregister(&self, poller: &crate::sys::Poller);
    /// Accepts what is pending — a bounded number — handing each new
    /// source to a worker through `cx`, and re-arms itself unless paused.
    fn accept(&mut self, cx: &mut AcceptCx<'_, S>);
    /// Paused (out of descriptors, consumer behind) until this moment: the
    /// poller calls [`accept`](Self::accept) again then.
    fn paused_until(&self) -> Option<Instant>;
    /// Waiting for a connection slot: `accept` runs again when one frees.
    fn waiting_for_slot(&self) -> bool;
    /// The slot wait is over: forget it before `accept` runs.
    fn slot_freed(&mut self);
}

/// What an [`Acceptor`] may use while accepting: the reactor (worker
/// choice, ids, limits, the poller to re-arm with) and the batches the
/// poller hands to the workers after the wait.
pub(crate) struct AcceptCx<'a, S: Source> {
    pub(crate) reactor: &'a ReactorShared<S>,
    pub(crate) token: Token,
    /// The worker whose thread is accepting (`None`: the dedicated poller
    /// thread): see `ReactorShared::pick_worker_near`.
    pub(crate) near: Option<usize>,
    pub(super) batches: &'a mut [Vec<Task<S>>],
    pub(super) ids: &'a mut super::poller::IdBlock,
}

impl<'a, S: Source> AcceptCx<'a, S> {
    /// A connection id, unique in the reactor, and the worker to host the
    /// connection (`ReactorShared::pick_worker_near`).
    pub(crate) fn place(&mut self) -> (&'a std::sync::Arc<super::WorkerShared<S>>, u64) {
        let id = self.ids.take(self.reactor);
        let reactor: &'a ReactorShared<S> = self.reactor;
        (reactor.pick_worker_near(self.near, id, self.ids), id)
    }

    /// Queues a new source for worker `worker` (delivered with this wait's batch).
    pub(crate) fn spawn(&mut self, worker: usize, new: S::New) {
        self.batches[worker].push(Task::Spawn(new));
    }
}
