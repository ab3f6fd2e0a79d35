//! The reactor: one poller thread, a pool of worker threads, per-worker timers.
//!
//! ```text
//!   app threads ──msg──▶ mailbox ──Task::Mail──▶ worker queue ─┐
//!   poller thread ──Task::Io (batched per wake-up)──▶ worker ──┤─▶ actor turn ─▶ socket
//!                                                             └─▶ events / replies ─▶ app
//! ```
//!
//! Every connection is pinned to one worker for its whole life, and a worker
//! runs one actor turn at a time, so an actor never runs on two threads at
//! once and needs no lock for its state.

mod poller;
pub(crate) mod timers;
pub(crate) mod worker;

use crate::conn::actor::NewConn;
use crate::conn::shared::ConnShared;
use crate::net::listen::ListenerShared;
use parking_lot::Mutex;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

/// Poller key of a registered socket: worker index, slot generation and slot.
///
/// Layout (64-bit): bit 63 = listener; bits 56..63 = worker; 32..56 = generation; 0..32 = slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Token(pub(crate) usize);

const LISTENER_BIT: usize = 1 << 63;
const GEN_MASK: usize = (1 << 24) - 1;

impl Token {
    pub(crate) fn conn(worker: usize, gen: u32, slot: u32) -> Token {
        Token(((worker & 0x7f) << 56) | (((gen as usize) & GEN_MASK) << 32) | slot as usize)
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
        (self.0 >> 56) & 0x7f
    }
    pub(crate) fn gen(self) -> u32 {
        ((self.0 >> 32) & GEN_MASK) as u32
    }
    pub(crate) fn slot(self) -> usize {
        self.0 & 0xffff_ffff
    }
}

/// Work for a worker thread.
pub(crate) enum Task {
    /// Readiness from the poller.
    Io {
        token: Token,
        readable: bool,
        writable: bool,
    },
    /// The connection's mailbox has messages.
    Mail(Arc<ConnShared>),
    /// A new connection (accepted, adopted or connecting) to host.
    Adopt(Box<NewConn>),
    /// Name resolution for a connecting actor finished.
    Resolved(Token, io::Result<Vec<SocketAddr>>),
    /// Close every connection, flushing until the deadline, then exit.
    Shutdown(Instant),
}

/// The part of a worker other threads see: its task queue and wake-up.
pub(crate) struct WorkerShared {
    pub(crate) idx: usize,
    queue: Mutex<Vec<Task>>,
    queued: AtomicUsize,
    parked: AtomicBool,
    thread: OnceLock<Thread>,
    pub(crate) stopped: AtomicBool,
}

impl WorkerShared {
    fn new(idx: usize) -> Self {
        WorkerShared {
            idx,
            queue: Mutex::new(Vec::with_capacity(256)),
            queued: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            thread: OnceLock::new(),
            stopped: AtomicBool::new(false),
        }
    }

    pub(crate) fn push(&self, task: Task) {
        {
            let mut q = self.queue.lock();
            q.push(task);
            self.queued.store(q.len(), Ordering::SeqCst);
        }
        self.wake();
    }

    /// Moves a whole batch in with one lock and at most one wake-up.
    pub(crate) fn push_batch(&self, tasks: &mut Vec<Task>) {
        if tasks.is_empty() {
            return;
        }
        {
            let mut q = self.queue.lock();
            q.append(tasks);
            self.queued.store(q.len(), Ordering::SeqCst);
        }
        self.wake();
    }

    fn wake(&self) {
        if self.parked.swap(false, Ordering::SeqCst) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }

    /// Takes everything queued, swapping in `spare` to reuse allocations.
    pub(crate) fn take(&self, spare: &mut Vec<Task>) {
        debug_assert!(spare.is_empty());
        let mut q = self.queue.lock();
        std::mem::swap(&mut *q, spare);
        self.queued.store(0, Ordering::SeqCst);
    }

    pub(crate) fn has_work(&self) -> bool {
        self.queued.load(Ordering::SeqCst) > 0
    }
}

/// Commands for the poller thread.
pub(crate) enum PollerCmd {
    AddListener(Arc<ListenerShared>),
    RemoveListener(usize),
    Shutdown,
}

/// State shared by every thread of one reactor.
pub(crate) struct ReactorShared {
    pub(crate) poller: Arc<polling::Poller>,
    pub(crate) workers: Vec<Arc<WorkerShared>>,
    pub(crate) cmds: Mutex<Vec<PollerCmd>>,
    next_conn: AtomicU64,
    next_listener: AtomicUsize,
    round_robin: AtomicUsize,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) spin: Duration,
}

impl ReactorShared {
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn next_listener_idx(&self) -> usize {
        self.next_listener.fetch_add(1, Ordering::Relaxed)
    }

    /// Picks the worker for a new connection (round robin).
    pub(crate) fn pick_worker(&self) -> &Arc<WorkerShared> {
        let n = self.round_robin.fetch_add(1, Ordering::Relaxed);
        &self.workers[n % self.workers.len()]
    }

    pub(crate) fn command(&self, cmd: PollerCmd) {
        self.cmds.lock().push(cmd);
        let _ = self.poller.notify();
    }
}

/// Builds a [`Reactor`].
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
}

impl Default for ReactorBuilder {
    fn default() -> Self {
        ReactorBuilder {
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            spin: Duration::from_micros(0),
            shutdown_timeout: Duration::from_secs(5),
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

    /// Starts the poller thread and the workers.
    pub fn build(self) -> io::Result<Reactor> {
        let poller = Arc::new(polling::Poller::new()?);
        let workers: Vec<_> = (0..self.workers)
            .map(|i| Arc::new(WorkerShared::new(i)))
            .collect();
        let shared = Arc::new(ReactorShared {
            poller,
            workers,
            cmds: Mutex::new(Vec::new()),
            next_conn: AtomicU64::new(1),
            next_listener: AtomicUsize::new(0),
            round_robin: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            spin: self.spin,
        });
        let mut threads = Vec::new();
        for w in &shared.workers {
            let sh = shared.clone();
            let w2 = w.clone();
            let t = std::thread::Builder::new()
                .name(format!("netactor-worker-{}", w.idx))
                .spawn(move || worker::run(sh, w2))?;
            let _ = w.thread.set(t.thread().clone());
            threads.push(t);
        }
        let sh = shared.clone();
        let poller_thread = std::thread::Builder::new()
            .name("netactor-poller".into())
            .spawn(move || poller::run(sh))?;
        Ok(Reactor {
            shared,
            threads: Mutex::new(threads),
            poller_thread: Mutex::new(Some(poller_thread)),
            shutdown_timeout: self.shutdown_timeout,
        })
    }
}

/// A running reactor: the poller thread and the worker pool.
///
/// Dropping it (or calling [`Reactor::shutdown`]) stops accepting, lets
/// connections flush their queued writes (bounded by the shutdown timeout and
/// each connection's linger), delivers `Closed` events, and joins every thread.
///
/// ```
/// let reactor = netactor::Reactor::new().unwrap();
/// reactor.shutdown();
/// ```
pub struct Reactor {
    pub(crate) shared: Arc<ReactorShared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    poller_thread: Mutex<Option<JoinHandle<()>>>,
    shutdown_timeout: Duration,
}

impl Reactor {
    /// A reactor with default settings (one worker per core).
    pub fn new() -> io::Result<Reactor> {
        ReactorBuilder::default().build()
    }

    /// A builder for custom settings.
    pub fn builder() -> ReactorBuilder {
        ReactorBuilder::default()
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.shared.workers.len()
    }

    /// Stops accepting, flushes and closes every connection, joins all threads.
    /// Idempotent; never waits longer than the shutdown timeout plus a margin.
    pub fn shutdown(&self) {
        if self.shared.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        self.shared.command(PollerCmd::Shutdown);
        if let Some(t) = self.poller_thread.lock().take() {
            let _ = t.join();
        }
        let deadline = Instant::now() + self.shutdown_timeout;
        for w in &self.shared.workers {
            w.push(Task::Shutdown(deadline));
        }
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("workers", &self.workers())
            .finish()
    }
}
