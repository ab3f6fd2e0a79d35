//! The poller: one `sys::Poller` for the whole reactor, waited on by
//! exactly one thread at a time (the crate's rule). It accepts on listeners
//! and routes readiness to the workers that own the connections — one batch
//! per worker per wake-up, so a burst of events costs each worker at most one
//! wake-up.
//!
//! Polling is a *role*, held through [`PollState`]'s lock. By default an idle
//! worker takes it instead of parking: the events for its own connections
//! then run on that same thread with no hop; the rest are handed over to
//! their workers (with `run_for_parked`, when there were none, events for a
//! parked worker's connections run there too, under that worker's state
//! lock: `worker::run_borrowed`). With
//! [`ReactorBuilder::dedicated_poller`](super::ReactorBuilder::dedicated_poller)
//! a separate poller thread holds the role for good (the classic shape: every
//! event hops once). ARCHITECTURE.md discusses the trade-off.

use super::{AcceptCx, Acceptor, PollerCmd, ReactorShared, Readiness, Source, Task, Token};
use crate::sys::Ready;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Hashes a listener index as itself.
#[derive(Default)]
pub(crate) struct IdxHasher(u64);

impl Hasher for IdxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `usize` keys are hashed (`write_usize`); fold anything else.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_usize(&mut self, i: usize) {
        self.0 = i as u64;
    }
}

/// Everything the holder of the poller role owns.
pub(crate) struct PollState<S: Source> {
    /// What one wait found.
    ready: Vec<Ready>,
    batches: Vec<Vec<Task<S>>>,
    /// Listeners by index (their tokens are `Token::listener(idx)`),
    /// looked up on every listener event: hashed as themselves (indices are
    /// small and distinct; SipHash cost an accepted connection ~60
    /// instructions).
    listeners: HashMap<usize, Box<dyn Acceptor<S>>, BuildHasherDefault<IdxHasher>>,
    accepting: bool,
    /// Some listener may be paused (set on every pause, cleared by the scan
    /// that finds none): the common poll skips the listener map and clock.
    maybe_paused: bool,
    /// `PollerCmd::Shutdown` was seen: nothing is accepted or routed any more.
    pub(crate) finished: bool,
    /// Ids for accepted connections.
    ids: IdBlock,
}

/// Connection ids the poller role hands out, taken from the reactor's
/// counter a block at a time: one atomic add per block rather than one per
/// accepted connection, whose cache line would cross between the threads
/// that take turns holding the role. Ids stay unique; they are not handed
/// out in order across blocks (`ConnId` promises uniqueness only).
#[derive(Default)]
pub(crate) struct IdBlock {
    next: u64,
    end: u64,
}

impl IdBlock {
    const SIZE: u64 = 256;

    pub(super) fn take<S: Source>(&mut self, shared: &ReactorShared<S>) -> u64 {
        if self.next == self.end {
            self.next = shared.next_conn_ids(Self::SIZE);
            self.end = self.next + Self::SIZE;
        }
        let id = self.next;
        self.next += 1;
        id
    }
}

impl<S: Source> PollState<S> {
    pub(crate) fn new(workers: usize) -> Self {
        PollState {
            ready: Vec::with_capacity(crate::sys::WAIT_BATCH),
            batches: (0..workers).map(|_| Vec::new()).collect(),
            listeners: HashMap::default(),
            accepting: true,
            maybe_paused: false,
            finished: false,
            ids: IdBlock::default(),
        }
    }
}

/// The dedicated poller thread: holds the role until shutdown.
pub(crate) fn run_dedicated<S: Source>(shared: Arc<ReactorShared<S>>) {
    let mut ps = shared.poll.lock();
    let mut none = Vec::new();
    let mut others = Vec::new();
    while !ps.finished {
        // Workers count their own polls; this thread's are counted here
        // (it holds the role: the only writer).
        shared.poll_metrics.polls.inc();
        poll_once(&shared, &mut ps, None, None, &mut none, &mut others);
        hand_over(&shared, &mut others);
    }
}

/// Pushes each worker's batch to its queue (one lock and at most one
/// wake-up per worker).
pub(crate) fn hand_over<S: Source>(shared: &ReactorShared<S>, others: &mut [Vec<Task<S>>]) {
    for (w, batch) in shared.workers.iter().zip(others.iter_mut()) {
        w.push_batch(batch);
    }
}

/// Waits once (at most `timeout`) and routes what arrived. Tasks for worker
/// `own` are appended to `own_tasks` for the caller to run without a hop;
/// everyone else's are left in `others` (indexed by worker) for the caller
/// to run or hand over. Returns how many tasks are in `others`.
pub(crate) fn poll_once<S: Source>(
    shared: &ReactorShared<S>,
    ps: &mut PollState<S>,
    timeout: Option<Duration>,
    own: Option<usize>,
    own_tasks: &mut Vec<Task<S>>,
    others: &mut Vec<Vec<Task<S>>>,
) -> usize {
    // Listeners paused after EMFILE & co. are rare: only then is the clock
    // read and the listener map scanned, here and after the wait.
    let any_paused = ps.maybe_paused && ps.listeners.values().any(|l| l.paused_until().is_some());
    ps.maybe_paused = any_paused;
    let paused = if any_paused {
        let now = Instant::now();
        ps.listeners
            .values()
            .filter_map(|l| l.paused_until())
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
        ids,
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
                accept(shared, token, l.as_mut(), batches, ids, own);
                *maybe_paused |= l.paused_until().is_some();
            }
            continue;
        }
        if let Some(batch) = batches.get_mut(token.worker()) {
            let ready = Readiness {
                readable,
                writable,
                hup,
            };
            batch.push(Task::Io(token, ready));
        }
    }
    // A connection closed at a limit: listeners waiting for a slot go on.
    if shared
        .limits
        .freed
        .swap(false, std::sync::atomic::Ordering::AcqRel)
    {
        for (&idx, l) in listeners.iter_mut() {
            if l.waiting_for_slot() {
                l.slot_freed();
                accept(shared, Token::listener(idx), l.as_mut(), batches, ids, own);
            }
        }
    }
    if any_paused {
        let now = Instant::now();
        for (&idx, l) in listeners.iter_mut() {
            if l.paused_until().is_some_and(|t| t <= now) {
                accept(shared, Token::listener(idx), l.as_mut(), batches, ids, own);
                *maybe_paused |= l.paused_until().is_some();
            }
        }
    }
    if others.len() < batches.len() {
        others.resize_with(batches.len(), Vec::new);
    }
    let mut handed = 0;
    for (i, (batch, out)) in batches.iter_mut().zip(others.iter_mut()).enumerate() {
        if Some(i) == own {
            if own_tasks.is_empty() {
                // The usual case: trade the vectors rather than copy the
                // tasks (`append` is a `memcpy` call for one task).
                std::mem::swap(own_tasks, batch);
            } else {
                own_tasks.append(batch);
            }
        } else {
            handed += batch.len();
            out.append(batch);
        }
    }
    handed
}

fn run_commands<S: Source>(shared: &ReactorShared<S>, ps: &mut PollState<S>) {
    let cmds = std::mem::take(&mut *shared.cmds.lock());
    let poller = &shared.poller;
    for cmd in cmds {
        match cmd {
            PollerCmd::AddListener(idx, l) => {
                if !ps.accepting {
                    continue; // raced with shutdown: the listener is just dropped
                }
                // Deleted from the poller (RemoveListener / StopAccepting /
                // Shutdown) before it is dropped.
                if l.register(poller, Token::listener(idx)).is_err() {
                    continue; // logged by the listener, which is dropped
                }
                ps.listeners.insert(idx, l);
            }
            PollerCmd::RemoveListener(idx) => {
                if let Some(l) = ps.listeners.remove(&idx) {
                    l.deregister(poller);
                }
            }
            PollerCmd::StopAccepting(ack) => {
                ps.accepting = false;
                for (_, l) in ps.listeners.drain() {
                    l.deregister(poller);
                }
                let _ = ack.send(());
            }
            PollerCmd::Shutdown => {
                ps.accepting = false;
                for (_, l) in ps.listeners.drain() {
                    l.deregister(poller);
                }
                ps.finished = true;
            }
        }
    }
}

/// Lets one listener accept; what it accepts joins this wait's batches.
fn accept<S: Source>(
    shared: &ReactorShared<S>,
    token: Token,
    l: &mut dyn Acceptor<S>,
    batches: &mut [Vec<Task<S>>],
    ids: &mut IdBlock,
    near: Option<usize>,
) {
    l.accept(&mut AcceptCx {
        reactor: shared,
        token,
        near,
        batches,
        ids,
    });
}
