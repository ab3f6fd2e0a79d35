//! The reactor: one poller, a pool of worker threads, per-worker timers.
//!
//! ```text
//!   app threads ──msg──▶ mailbox ──Task::Mail──▶ worker queue ─┐
//!   poller thread ──Task::Io (batched per wake-up)──▶ worker ──┤─▶ actor turn ─▶ socket
//!                                                             └─▶ events / replies ─▶ app
//! ```
//!
//! The reactor is generic over what it runs — a `Source` (in this crate
//! the connection actor) — and names no connection or listener type: mail
//! is scheduled by token, timer tags are opaque, listeners are
//! `Acceptor`s. Imports go one way: `conn` and `net` use the reactor,
//! never the reverse.
//!
//! Every source belongs to one worker at a time (a long-lived one may move
//! once its worker hosts more than another: `Task::Adopt`, between turns),
//! and a worker's sources run under its state lock, one turn at a time: normally on the
//! worker's own thread; while that thread is parked, the thread holding the
//! poller role may take the lock and run them itself instead of waking it.
//! Either way a source never runs on two threads at once and needs no lock
//! of its own.

mod admission;
pub(crate) mod limit;
mod park;
pub(crate) mod poller;
pub(crate) mod source;
#[cfg(test)]
mod tests;
pub(crate) mod timers;
pub(crate) mod worker;

pub(crate) use source::{AcceptCx, Acceptor, Readiness, Source};
pub(crate) use worker::WorkerCtx;

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

/// Poller key of a registered socket: worker index, slot generation and slot.
///
/// Layout with 64-bit keys: bit 63 = listener; bits 56..63 = worker;
/// 32..56 = generation; 0..32 = slot. With 32-bit keys (i686, armv7…): bit
/// 31 = listener; 24..31 = worker; 20..24 = generation; 0..20 = slot: 2^20
/// connections per worker, as many descriptors as Linux's default
/// `fs.nr_open` lets a whole process have. The generation only tells a
/// stale event from the slot's next occupant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Token(pub(crate) usize);

#[cfg(target_pointer_width = "64")]
mod layout {
    pub(super) const LISTENER_BIT: usize = 1 << 63;
    pub(super) const WORKER_SHIFT: u32 = 56;
    pub(super) const GEN_SHIFT: u32 = 32;
}
#[cfg(not(target_pointer_width = "64"))]
mod layout {
    pub(super) const LISTENER_BIT: usize = 1 << 31;
    pub(super) const WORKER_SHIFT: u32 = 24;
    pub(super) const GEN_SHIFT: u32 = 20;
}
use layout::{GEN_SHIFT, LISTENER_BIT, WORKER_SHIFT};
const WORKER_MASK: usize = 0x7f;
const GEN_MASK: usize = (1 << (WORKER_SHIFT - GEN_SHIFT)) - 1;
const SLOT_MASK: usize = (1 << GEN_SHIFT) - 1;

impl Token {
    pub(crate) fn conn(worker: usize, gen: u32, slot: u32) -> Token {
        Token(
            ((worker & WORKER_MASK) << WORKER_SHIFT)
                | (((gen as usize) & GEN_MASK) << GEN_SHIFT)
                | (slot as usize & SLOT_MASK),
        )
    }
    pub(crate) fn listener(idx: usize) -> Token {
        Token(LISTENER_BIT | idx)
    }
    pub(crate) fn is_listener(self) -> bool {
        self.0 & LISTENER_BIT != 0
    }
    pub(crate) fn listener_idx(self) -> usize {
        self.0 & !LISTENER_BIT
    }
    pub(crate) fn worker(self) -> usize {
        (self.0 >> WORKER_SHIFT) & WORKER_MASK
    }
    pub(crate) fn gen(self) -> u32 {
        ((self.0 >> GEN_SHIFT) & GEN_MASK) as u32
    }
    pub(crate) fn slot(self) -> usize {
        self.0 & SLOT_MASK
    }
    /// A source of worker `worker` that has no slot there (yet): before it
    /// starts, and while it moves to that worker (`Task::Adopt`). Stale
    /// for every lookup — no slab hands out this slot — but it names the
    /// worker, so mail posted under it reaches the right queue.
    pub(crate) fn unplaced(worker: usize) -> Token {
        Token::conn(worker, 0, UNPLACED_SLOT as u32)
    }
    /// Whether this is an [`unplaced`](Self::unplaced) token.
    pub(crate) fn is_unplaced(self) -> bool {
        self.slot() == UNPLACED_SLOT
    }
}

/// The slot no slab hands out (`Token::unplaced`).
pub(crate) const UNPLACED_SLOT: usize = SLOT_MASK;
/// The generations a token can tell apart (slots count modulo this).
pub(crate) const TOKEN_GEN_MASK: u32 = GEN_MASK as u32;

/// Work for a worker thread.
pub(crate) enum Task<S: Source> {
    /// Readiness from the poller.
    Io(Token, Readiness),
    /// The source's mailbox has messages. The token is read when the mail is
    /// posted; one posted before the source started (or after its slot was
    /// reused) is stale and dropped — the source's start takes that mail.
    Mail(Token),
    /// A new source (an accepted, adopted or connecting connection) to host.
    /// Carried unboxed (no allocation per connection on the way to its
    /// worker): keep `S::New` small, it sets the size of every task.
    Spawn(S::New),
    /// A running source another worker hands over (`worker::move_out`),
    /// in the box it had in that worker's slab: it takes a slot here and
    /// [`Source::arrive`]s.
    Adopt(Box<Option<S>>),
    /// Close every source, flushing until the deadline, then exit.
    Shutdown(Instant),
}

/// How many sources a worker hosts or has on their way to it (a
/// `Task::Spawn` queued): what [`ReactorShared::pick_worker_near`]
/// balances. Three counts, so that the per-connection path makes no
/// locked read-modify-write on a line another core also writes: the
/// poller role's holder raises `by_poller` for every accepted connection
/// and whoever holds the worker's state lowers it through `gone` — each
/// of them one writer at a time, ordered by the lock it holds (the role's,
/// the state's), so a load and a store are exact. Only sources made on
/// application threads (connect, adopt: any thread, at once) pay for a
/// `fetch_add`. On a line of its own: the queue and parking state next to
/// it are hotter.
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct Load {
    by_poller: AtomicUsize,
    by_others: AtomicUsize,
    gone: AtomicUsize,
}

impl Load {
    fn get(&self) -> usize {
        // `gone` first, with acquire: a source counted gone was assigned
        // before (its `Task::Spawn` went through the worker's queue lock),
        // so the assignment counts read after it include it.
        let gone = self.gone.load(Ordering::Acquire);
        // Wrapping: each count only grows, and may pass `usize::MAX` on a
        // 32-bit target; the difference is still exact.
        let added = self
            .by_poller
            .load(Ordering::Relaxed)
            .wrapping_add(self.by_others.load(Ordering::Relaxed));
        added.wrapping_sub(gone)
    }

    /// One source assigned by the poller role's holder (the only writer:
    /// the role is held by one thread at a time, handed on under a lock).
    fn add_by_poller(&self) {
        bump(&self.by_poller, Ordering::Relaxed);
    }

    /// One source assigned from any thread (or moved here).
    pub(crate) fn add(&self) {
        self.by_others.fetch_add(1, Ordering::Relaxed);
    }

    /// One source assigned here is gone (closed, or never started). By the
    /// holder of the worker's state only (its thread, or a borrower under
    /// its lock), or by its thread after the state is gone.
    pub(crate) fn sub(&self) {
        // Release: pairs with `get`'s acquire of `gone`.
        bump(&self.gone, Ordering::Release);
    }
}

/// A single writer's increment: a load and a store (with `order`), no
/// locked instruction.
fn bump(c: &AtomicUsize, order: Ordering) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), order);
}

/// The part of a worker other threads see: its task queue and wake-up.
///
/// Grouped by who writes what, each group on cache lines of its own: the
/// inbox is written by every thread that hands this worker work, the state
/// lock by the worker itself at every round of its loop, the layer above's
/// registry at every connection's start and finish. Sharing a line, each of those
/// writes made the other side's next access a cache miss (perf: the
/// registry's lock was 5 % of a churned connection's user time).
pub(crate) struct WorkerShared<S: Source> {
    pub(crate) idx: usize,
    /// Sources hosted or coming (the slab lowers it: a shared handle).
    pub(crate) load: Arc<Load>,
    thread: OnceLock<Thread>,
    poller: Arc<crate::sys::Poller>,
    pub(crate) stopped: AtomicBool,
    /// This worker's counters (`crate::metrics`: one writer per block).
    pub(crate) metrics: Arc<crate::metrics::WorkerCounters>,
    inbox: CachePadded<Inbox<S>>,
    /// The worker's connections and turn context. Its own thread holds it
    /// while it runs; while that thread is parked, the holder of the poller
    /// role may take it (`try_lock`) and run this worker's readiness itself
    /// instead of waking it, if `run_for_parked` — see
    /// `worker::run_borrowed`. `None` once the
    /// worker has exited.
    pub(crate) state: CachePadded<Mutex<Option<worker::WorkerState<S>>>>,
    /// The layer above's per-worker state other threads read.
    pub(crate) source_shared: CachePadded<S::Shared>,
}

/// A worker's task queue and parking state: what a thread that hands it
/// work writes (one line for both).
struct Inbox<S: Source> {
    queue: Mutex<Vec<Task<S>>>,
    /// Where the worker sleeps and how to wake it (`park.rs`: the protocol
    /// and its model test).
    parking: park::Parking,
}

impl<S: Source> WorkerShared<S> {
    fn new(idx: usize, poller: Arc<crate::sys::Poller>) -> Self {
        WorkerShared {
            idx,
            load: Arc::default(),
            thread: OnceLock::new(),
            poller,
            stopped: AtomicBool::new(false),
            metrics: Arc::default(),
            inbox: CachePadded::new(Inbox {
                queue: Mutex::new(Vec::with_capacity(256)),
                parking: park::Parking::default(),
            }),
            state: CachePadded::new(Mutex::new(None)),
            source_shared: CachePadded::new(S::Shared::default()),
        }
    }

    pub(crate) fn push(&self, task: Task<S>) {
        {
            let mut q = self.inbox.queue.lock();
            q.push(task);
            self.inbox.parking.published(q.len());
        }
        self.wake();
    }

    /// Moves a whole batch in with one lock and at most one wake-up.
    pub(crate) fn push_batch(&self, tasks: &mut Vec<Task<S>>) {
        if tasks.is_empty() {
            return;
        }
        {
            let mut q = self.inbox.queue.lock();
            q.append(tasks);
            self.inbox.parking.published(q.len());
        }
        self.wake();
    }

    /// Wakes the worker: unparks it, or interrupts its `wait` if it holds
    /// the poller role (`park::Parking`: a task is never missed).
    pub(crate) fn wake(&self) {
        match self.inbox.parking.wake() {
            park::Wake::Unpark => {
                if let Some(t) = self.thread.get() {
                    t.unpark();
                }
            }
            park::Wake::Notify => {
                let _ = self.poller.notify();
            }
            park::Wake::Nothing => {}
        }
    }

    /// Makes the worker's next park (or the current one) return at once,
    /// whatever its state: `unpark` is sticky.
    pub(crate) fn force_wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    /// Takes everything queued (appending to `into`, swapping when it is
    /// empty so allocations are reused).
    pub(crate) fn take(&self, into: &mut Vec<Task<S>>) {
        let mut q = self.inbox.queue.lock();
        if into.is_empty() {
            std::mem::swap(&mut *q, into);
        } else {
            into.append(&mut q);
        }
        self.inbox.parking.published(0);
    }

    /// [`take`](Self::take) for the worker's loop: nothing queued, no lock.
    /// A push racing with this look is seen by the `has_work` check the
    /// worker makes before it parks.
    #[inline]
    pub(crate) fn take_if_any(&self, into: &mut Vec<Task<S>>) {
        if self.has_work() {
            self.take(into);
        }
    }

    /// Where the worker sleeps and how to wake it.
    #[inline]
    pub(crate) fn parking(&self) -> &park::Parking {
        &self.inbox.parking
    }

    #[inline]
    pub(crate) fn has_work(&self) -> bool {
        self.inbox.parking.has_work()
    }
}

/// Every worker of a reactor, by index: what a token's worker index
/// names. Held by each connection's shared state too (one reference
/// count per fresh allocation; a recycled one keeps its own).
pub(crate) type Workers<S> = Arc<[Arc<WorkerShared<S>>]>;

/// Commands for the poller thread.
pub(crate) enum PollerCmd<S: Source> {
    /// Start accepting on a listener, known by `idx` from now on.
    AddListener(usize, Box<dyn Acceptor<S>>),
    RemoveListener(usize),
    /// Drop every listener (and refuse new ones), then acknowledge: after the
    /// ack no further connection can be handed to a worker.
    StopAccepting(crossbeam_channel::Sender<()>),
    Shutdown,
}

/// State shared by every thread of one reactor.
pub(crate) struct ReactorShared<S: Source> {
    pub(crate) poller: Arc<crate::sys::Poller>,
    /// The poller role: whoever holds this lock may wait on `poller`.
    pub(crate) poll: Mutex<poller::PollState<S>>,
    /// A dedicated poller thread holds the role; workers never take it.
    pub(crate) dedicated_poller: bool,
    pub(crate) adaptive_spin: bool,
    /// The poller-role holder may run a parked worker's events itself
    /// (`ReactorBuilder::run_for_parked`).
    pub(crate) run_for_parked: bool,
    /// Shared with every connection's state (`Workers`): mail is routed
    /// by the token's worker index, so a source can change workers.
    pub(crate) workers: Workers<S>,
    pub(crate) cmds: Mutex<Vec<PollerCmd<S>>>,
    next_conn: AtomicU64,
    next_listener: AtomicUsize,
    round_robin: AtomicUsize,
    /// New connections are admitted until shutdown begins; shutdown waits
    /// for the hand-overs already admitted (`admission.rs`: the protocol
    /// and its model test).
    pub(crate) admission: admission::Admission,
    /// Open-connection limits (reactor-wide; listeners keep their own).
    pub(crate) limits: Arc<limit::Limits>,
    pub(crate) spin: Duration,
    /// Counted by the holder of the poller role (`crate::metrics`).
    pub(crate) poll_metrics: crate::metrics::PollCounters,
}

impl<S: Source> ReactorShared<S> {
    /// Sums every worker's counters (from any thread).
    pub(crate) fn metrics(&self) -> crate::metrics::Metrics {
        let mut m = crate::metrics::Metrics::collect(
            self.workers.iter().map(|w| &*w.metrics),
            &self.poll_metrics,
        );
        S::collect(self.workers.iter().map(|w| &*w.source_shared), &mut m);
        m
    }

    /// Admits one new connection unless shutdown has begun: one admitted
    /// here is always started (and later closed, with its `Closed` event)
    /// by a running worker — never stranded behind a worker that has
    /// exited.
    pub(crate) fn spawn_guard(&self) -> Option<admission::Admitted<'_>> {
        self.admission.enter()
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// `n` consecutive connection ids; the first is returned.
    pub(crate) fn next_conn_ids(&self, n: u64) -> u64 {
        self.next_conn.fetch_add(n, Ordering::Relaxed)
    }

    pub(crate) fn next_listener_idx(&self) -> usize {
        self.next_listener.fetch_add(1, Ordering::Relaxed)
    }

    /// Picks the worker for a new connection (round robin): for sources
    /// made on application threads (connect, adopt).
    pub(crate) fn pick_worker(&self) -> &Arc<WorkerShared<S>> {
        let n = self.round_robin.fetch_add(1, Ordering::Relaxed);
        let w = &self.workers[n % self.workers.len()];
        w.load.add();
        w
    }

    /// Picks the worker for connection `id`, accepted on worker `near`'s
    /// thread: `near` itself (`None`, the dedicated poller thread: round
    /// robin by id).
    ///
    /// Why near: the thread that accepts is the one that was polling, and
    /// it often polls again when the client's first bytes and its FIN
    /// arrive; a connection it keeps is then served with no hand-off at
    /// all (a hand-off is a queue lock, and cache lines moving between
    /// cores). Dealt round robin, every other short connection crossed
    /// threads at its start, its read and its close: under connection
    /// churn on 2 workers that cost 3 % of a connection's server CPU
    /// (benches/RESULTS.md, session 13). Long-lived connections still end
    /// up evenly spread: one that keeps running offers to move
    /// ([`WorkerCtx::offer_move`]) and goes to the least-loaded worker if
    /// its own hosts more ([`move_target`](Self::move_target)) — a burst of
    /// ten bulk transfers or a thousand clients accepted on one thread
    /// spreads once each has run 16 turns, or at its first turn after it
    /// is a second old (one that never runs again stays where it started). Only the poller role's holder
    /// calls this (`_role`, its id block, proves it), so the load count
    /// it raises is not a read-modify-write shared with other cores.
    pub(crate) fn pick_worker_near(
        &self,
        near: Option<usize>,
        id: u64,
        _role: &mut poller::IdBlock,
    ) -> &Arc<WorkerShared<S>> {
        let n = self.workers.len();
        let pick = near.filter(|&o| o < n).unwrap_or((id % n as u64) as usize);
        let w = &self.workers[pick];
        w.load.add_by_poller();
        w
    }

    /// Where a source of worker `from` that offered to move should go: the
    /// least-loaded other worker, if `from` hosts more than one source more
    /// than it (plus 1/32 of its count, so that two busy workers with
    /// nearly equal counts do not trade connections back and forth).
    /// Reads every worker's count: a source offers rarely
    /// (`WorkerCtx::offer_move`), never per turn.
    pub(crate) fn move_target(&self, from: usize) -> Option<usize> {
        let own = self.workers.get(from)?.load.get();
        let (to, theirs) = self
            .workers
            .iter()
            // A worker whose thread died (a panic outside any source)
            // would strand what it is handed.
            .filter(|w| w.idx != from && !w.stopped.load(Ordering::Acquire))
            .map(|w| (w.idx, w.load.get()))
            .min_by_key(|&(_, l)| l)?;
        (own > theirs + 1 + theirs / 32).then_some(to)
    }

    pub(crate) fn command(&self, cmd: PollerCmd<S>) {
        self.cmds.lock().push(cmd);
        let _ = self.poller.notify();
    }

    /// Wakes one parked worker (other than `except`) so it can take the
    /// poller role while the current holder is busy with a large batch.
    pub(crate) fn wake_follower(&self, except: usize) {
        if let Some(w) = self
            .workers
            .iter()
            .find(|w| w.idx != except && w.parking().is_parked())
        {
            w.wake();
        }
    }
}

/// Builds a [`Reactor`](crate::Reactor).
///
/// ```
/// let reactor = netactor::Reactor::builder().workers(2).build().unwrap();
/// assert_eq!(reactor.workers(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct ReactorBuilder {
    workers: usize,
    spin: Duration,
    shutdown_timeout: Duration,
    dedicated_poller: bool,
    adaptive_spin: bool,
    run_for_parked: bool,
    max_connections: Option<usize>,
}

impl Default for ReactorBuilder {
    fn default() -> Self {
        ReactorBuilder {
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            spin: Duration::from_micros(0),
            shutdown_timeout: Duration::from_secs(5),
            dedicated_poller: false,
            adaptive_spin: false,
            run_for_parked: false,
            max_connections: None,
        }
    }
}

impl ReactorBuilder {
    /// Number of worker threads (default: available cores; 1..=127).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.clamp(1, 127);
        self
    }

    /// How long an idle worker spins on its queue before parking (default 0).
    /// Spinning trades CPU for latency: a spinning worker skips the wake-up.
    pub fn spin(mut self, d: Duration) -> Self {
        self.spin = d;
        self
    }

    /// Upper bound on how long shutdown lets connections flush (default 5 s).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// Let a worker that is in a busy period (its last park was short) spin
    /// up to 30 µs on its queue before parking again (default off). It saves
    /// the futex wake-up of a hand-off under load and never spins when idle;
    /// on a 2-core machine shared with its clients it bought no throughput
    /// (benches/RESULTS.md), so it is opt-in.
    pub fn adaptive_spin(mut self, on: bool) -> Self {
        self.adaptive_spin = on;
        self
    }

    /// Run the poller on a thread of its own instead of letting an idle
    /// worker take the poller role (default off). Every event then crosses
    /// threads once (poller → worker); see ARCHITECTURE.md for the numbers.
    pub fn dedicated_poller(mut self, on: bool) -> Self {
        self.dedicated_poller = on;
        self
    }

    /// Let the worker holding the poller role, when a wait brought it no
    /// events of its own, run a *parked* worker's events itself, under
    /// that worker's state lock, instead of handing them over and waking
    /// it (default off). It saves the parked worker's futex wake-up and
    /// context switch. It is off because on a 2-core machine it cost
    /// bulk echo 3–19 % of its throughput per server CPU-second (every one
    /// of ten rounds) and bought nothing in latency, small messages, TLS
    /// or connection churn: the borrowed turns run on a thread whose
    /// caches hold the other worker's connections and buffers, and the
    /// parked worker's core stays idle while they do (benches/RESULTS.md,
    /// session 10). Handed over, every connection's turns run on its own
    /// worker's thread.
    ///
    /// ```
    /// let reactor = netactor::Reactor::builder().workers(2).run_for_parked(true).build().unwrap();
    /// # drop(reactor);
    /// ```
    pub fn run_for_parked(mut self, on: bool) -> Self {
        self.run_for_parked = on;
        self
    }

    /// At most `n` connections open at once in the whole reactor — accepted,
    /// connected and adopted alike (default: no limit). At the limit every
    /// listener stops accepting (connections wait in the kernel backlog)
    /// until one closes, and `connect`/`adopt` fail with
    /// `Error::NoSpace { limit: Limit::Connections, .. }`. Counted exactly:
    /// a slot is taken before a connection is accepted or admitted and given
    /// back when it has closed. Listeners can have their own limit too
    /// (`ListenOptions::max_connections`).
    ///
    /// ```
    /// let reactor = netactor::Reactor::builder().max_connections(10_000).build().unwrap();
    /// # drop(reactor);
    /// ```
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// Starts the workers (and the dedicated poller thread, if asked for),
    /// running sources of type `S` (the public `build` names the type).
    pub(crate) fn start<S: Source>(self) -> io::Result<Engine<S>> {
        timers::epoch();
        let poller = Arc::new(crate::sys::Poller::new()?);
        let workers: Workers<S> = (0..self.workers)
            .map(|i| Arc::new(WorkerShared::new(i, poller.clone())))
            .collect();
        let limits = Arc::new(limit::Limits::new(self.max_connections, poller.clone()));
        let shared = Arc::new(ReactorShared {
            poll: Mutex::new(poller::PollState::new(workers.len())),
            dedicated_poller: self.dedicated_poller,
            adaptive_spin: self.adaptive_spin,
            run_for_parked: self.run_for_parked,
            poller,
            workers,
            cmds: Mutex::new(Vec::new()),
            next_conn: AtomicU64::new(1),
            next_listener: AtomicUsize::new(0),
            round_robin: AtomicUsize::new(0),
            admission: admission::Admission::default(),
            limits,
            spin: self.spin,
            poll_metrics: Default::default(),
        });
        let mut threads = Vec::new();
        for w in shared.workers.iter() {
            let sh = shared.clone();
            let w2 = w.clone();
            let t = std::thread::Builder::new()
                .name(format!("netactor-worker-{}", w.idx))
                .spawn(move || worker::run(sh, w2))?;
            let _ = w.thread.set(t.thread().clone());
            threads.push(t);
        }
        let poller_thread = if self.dedicated_poller {
            let sh = shared.clone();
            Some(
                std::thread::Builder::new()
                    .name("netactor-poller".into())
                    .spawn(move || poller::run_dedicated(sh))?,
            )
        } else {
            None
        };
        log::debug!(
            "reactor started: {} workers{}",
            shared.workers.len(),
            if self.dedicated_poller {
                ", dedicated poller"
            } else {
                ""
            }
        );
        Ok(Engine {
            shared,
            threads: Mutex::new(threads),
            poller_thread: Mutex::new(poller_thread),
            shutdown_timeout: self.shutdown_timeout,
        })
    }
}

/// A running reactor for sources of type `S`: the poller and the worker
/// pool, and their orderly shutdown (the public `Reactor` wraps one).
pub(crate) struct Engine<S: Source> {
    pub(crate) shared: Arc<ReactorShared<S>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    poller_thread: Mutex<Option<JoinHandle<()>>>,
    shutdown_timeout: Duration,
}

impl<S: Source> Engine<S> {
    /// Stops accepting, lets every source finish (bounded by the shutdown
    /// timeout), joins all threads. Idempotent.
    pub(crate) fn shutdown(&self) {
        if !self.shared.admission.close() {
            return; // already shutting down
        }
        log::debug!("reactor shutting down");
        // Connections admitted just before the flag went up reach their
        // workers ahead of the Shutdown tasks (a handful of instructions
        // each; bounded all the same).
        let admitted_by = Instant::now() + Duration::from_secs(1);
        while self.shared.admission.busy() && Instant::now() < admitted_by {
            std::thread::yield_now();
        }
        // Stop accepting first. The poller keeps running while the workers
        // flush: lingering connections still need readiness events
        // (edge-triggered writability) to drain their queues.
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        self.shared.command(PollerCmd::StopAccepting(ack_tx));
        // Bounded, so a dead poller thread cannot hang shutdown.
        let _ = ack_rx.recv_timeout(Duration::from_secs(1));
        let deadline = Instant::now() + self.shutdown_timeout;
        for w in self.shared.workers.iter() {
            w.push(Task::Shutdown(deadline));
        }
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        self.shared.command(PollerCmd::Shutdown);
        if let Some(t) = self.poller_thread.lock().take() {
            let _ = t.join();
        } else {
            // Every worker is gone, so the role is free: close the listeners.
            let mut ps = self.shared.poll.lock();
            let (mut none, mut others) = (Vec::new(), Vec::new());
            poller::poll_once(
                &self.shared,
                &mut ps,
                Some(Duration::ZERO),
                None,
                &mut none,
                &mut others,
            );
        }
    }
}

impl<S: Source> Drop for Engine<S> {
    fn drop(&mut self) {
        self.shutdown();
    }
}
