//! The poller: one `polling::Poller` for the whole reactor, waited on by
//! exactly one thread at a time (the crate's rule). It accepts on listeners
//! and routes readiness to the workers that own the connections — one batch
//! per worker per wake-up, so a burst of events costs each worker at most one
//! wake-up.
//!
//! Polling is a *role*, held through [`PollState`]'s lock. By default an idle
//! worker takes it instead of parking: the events for its own connections
//! then run on that same thread with no hop; when there were none, events
//! for a parked worker's connections run there too, under that worker's
//! state lock (`worker::run_parked`); the rest are handed over. With
//! [`ReactorBuilder::dedicated_poller`](super::ReactorBuilder::dedicated_poller)
//! a separate poller thread holds the role for good (the classic shape: every
//! event hops once). ARCHITECTURE.md discusses the trade-off.

use super::{PollerCmd, ReactorShared, Task, Token};
use crate::net::listen::{AcceptOutcome, ListenerShared};
use crate::sys::Ready;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections accepted from one listener per wake-up before others get a turn.
const ACCEPT_BUDGET: usize = 128;
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

struct ListenerState {
    shared: Arc<ListenerShared>,
    paused_until: Option<Instant>,
    backoff: Duration,
    /// Not re-armed because a connection limit is reached: resumed when a
    /// slot frees (`Limits::freed`).
    at_limit: bool,
}

/// Everything the holder of the poller role owns.
pub(crate) struct PollState {
    /// What one wait found.
    ready: Vec<Ready>,
    batches: Vec<Vec<Task>>,
    listeners: HashMap<usize, ListenerState>,
    accepting: bool,
    /// Some listener may be paused (set on every pause, cleared by the scan
    /// that finds none): the common poll skips the listener map and clock.
    maybe_paused: bool,
    /// `PollerCmd::Shutdown` was seen: nothing is accepted or routed any more.
    pub(crate) finished: bool,
}

impl PollState {
    pub(crate) fn new(workers: usize) -> Self {
        PollState {
            ready: Vec::with_capacity(crate::sys::WAIT_BATCH),
            batches: (0..workers).map(|_| Vec::new()).collect(),
            listeners: HashMap::new(),
            accepting: true,
            maybe_paused: false,
            finished: false,
        }
    }
}

/// The dedicated poller thread: holds the role until shutdown.
pub(crate) fn run_dedicated(shared: Arc<ReactorShared>) {
    let mut ps = shared.poll.lock();
    let mut none = Vec::new();
    let mut others = Vec::new();
    while !ps.finished {
        poll_once(&shared, &mut ps, None, None, &mut none, &mut others);
        hand_over(&shared, &mut others);
    }
}

/// Pushes each worker's batch to its queue (one lock and at most one
/// wake-up per worker).
pub(crate) fn hand_over(shared: &ReactorShared, others: &mut [Vec<Task>]) {
    for (w, batch) in shared.workers.iter().zip(others.iter_mut()) {
        w.push_batch(batch);
    }
}

/// Waits once (at most `timeout`) and routes what arrived. Tasks for worker
/// `own` are appended to `own_tasks` for the caller to run without a hop;
/// everyone else's are left in `others` (indexed by worker) for the caller
/// to run or hand over. Returns how many tasks are in `others`.
pub(crate) fn poll_once(
    shared: &ReactorShared,
    ps: &mut PollState,
    timeout: Option<Duration>,
    own: Option<usize>,
    own_tasks: &mut Vec<Task>,
    others: &mut Vec<Vec<Task>>,
) -> usize {
    // Listeners paused after EMFILE & co. are rare: only then is the clock
    // read and the listener map scanned, here and after the wait.
    let any_paused = ps.maybe_paused && ps.listeners.values().any(|l| l.paused_until.is_some());
    ps.maybe_paused = any_paused;
    let paused = if any_paused {
        let now = Instant::now();
        ps.listeners
            .values()
            .filter_map(|l| l.paused_until)
            .min()
            .map(|t| t.saturating_duration_since(now))
    } else {
        None
    };
    let timeout = match (timeout, paused) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    ps.ready.clear();
    let notified = match shared.poller.wait(&mut ps.ready, timeout) {
        Ok(notified) => notified,
        Err(e) => {
            if e.kind() != io::ErrorKind::Interrupted {
                log::error!("poller wait failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
            true
        }
    };
    // Every command comes with a `notify`, so without one there is none.
    if notified {
        run_commands(shared, ps);
    }
    if ps.finished {
        return 0;
    }
    let PollState {
        ready,
        batches,
        listeners,
        maybe_paused,
        ..
    } = ps;
    for &Ready {
        key,
        readable,
        writable,
        hup,
    } in ready.iter()
    {
        let token = Token(key);
        if token.is_listener() {
            if let Some(l) = listeners.get_mut(&token.listener_idx()) {
                accept_some(shared, l, batches);
                *maybe_paused |= l.paused_until.is_some();
            }
            continue;
        }
        if let Some(batch) = batches.get_mut(token.worker()) {
            batch.push(Task::Io {
                token,
                readable,
                writable,
                hup,
            });
        }
    }
    // A connection closed at a limit: listeners waiting for a slot go on.
    if shared
        .limits
        .freed
        .swap(false, std::sync::atomic::Ordering::AcqRel)
    {
        for l in listeners.values_mut().filter(|l| l.at_limit) {
            l.at_limit = false;
            accept_some(shared, l, batches);
        }
    }
    if any_paused {
        let now = Instant::now();
        for l in listeners.values_mut() {
            if l.paused_until.is_some_and(|t| t <= now) {
                l.paused_until = None;
                accept_some(shared, l, batches);
                *maybe_paused |= l.paused_until.is_some();
            }
        }
    }
    others.resize_with(batches.len(), Vec::new);
    let mut handed = 0;
    for (i, (batch, out)) in batches.iter_mut().zip(others.iter_mut()).enumerate() {
        if Some(i) == own {
            own_tasks.append(batch);
        } else {
            handed += batch.len();
            out.append(batch);
        }
    }
    handed
}

fn run_commands(shared: &ReactorShared, ps: &mut PollState) {
    let cmds = std::mem::take(&mut *shared.cmds.lock());
    let poller = &shared.poller;
    for cmd in cmds {
        match cmd {
            PollerCmd::AddListener(l) => {
                if !ps.accepting {
                    continue; // raced with shutdown: the listener is just dropped
                }
                let token = Token::listener(l.idx);
                let r = poller.add_listener(&l.sock, token.0);
                if let Err(e) = r {
                    log::error!("cannot register listener {}: {e}", l.label);
                    continue;
                }
                ps.listeners.insert(
                    l.idx,
                    ListenerState {
                        shared: l,
                        paused_until: None,
                        backoff: BACKOFF_MIN,
                        at_limit: false,
                    },
                );
            }
            PollerCmd::RemoveListener(idx) => {
                if let Some(l) = ps.listeners.remove(&idx) {
                    let _ = poller.delete(&l.shared.sock);
                }
            }
            PollerCmd::StopAccepting(ack) => {
                ps.accepting = false;
                for (_, l) in ps.listeners.drain() {
                    let _ = poller.delete(&l.shared.sock);
                }
                let _ = ack.send(());
            }
            PollerCmd::Shutdown => {
                ps.accepting = false;
                for (_, l) in ps.listeners.drain() {
                    let _ = poller.delete(&l.shared.sock);
                }
                ps.finished = true;
            }
        }
    }
}

fn accept_some(shared: &ReactorShared, l: &mut ListenerState, batches: &mut [Vec<Task>]) {
    let token = Token::listener(l.shared.idx);
    for _ in 0..ACCEPT_BUDGET {
        match l.shared.accept_one(shared, batches) {
            AcceptOutcome::Accepted => {
                l.backoff = BACKOFF_MIN;
            }
            AcceptOutcome::WouldBlock => {
                let _ = shared.poller.rearm_listener(&l.shared.sock, token.0);
                return;
            }
            AcceptOutcome::Pause(why) => {
                log::warn!(
                    "listener {}: {why}; pausing accept for {:?}",
                    l.shared.label,
                    l.backoff
                );
                l.paused_until = Some(Instant::now() + l.backoff);
                l.backoff = (l.backoff * 2).min(BACKOFF_MAX);
                return;
            }
            AcceptOutcome::AtLimit => {
                // Not re-armed (oneshot): no wake-ups while at the limit;
                // the backlog holds the rest until a connection closes.
                if !l.at_limit {
                    log::warn!(
                        "listener {}: connection limit reached ({} here, {} in the reactor); \
                         accepting resumes when a connection closes",
                        l.shared.label,
                        l.shared.limit.max(),
                        shared.limits.reactor.max()
                    );
                }
                l.at_limit = true;
                return;
            }
            AcceptOutcome::Skip => {}
        }
    }
    // Budget used up: re-arm; a still-pending backlog fires again at once.
    let _ = shared.poller.rearm_listener(&l.shared.sock, token.0);
}
