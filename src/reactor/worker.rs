//! A worker thread: a slab of connection actors, a task queue, a timer heap.

use super::poller;
use super::timers::TimerHeap;
use super::{ReactorShared, Task, Token, WorkerShared};
use crate::conn::actor::{panic_message, Actor};
use crate::conn::shared::Msg;
use bytes::BytesMut;
use parking_lot::MutexGuard;
use std::collections::VecDeque;
use std::net::ToSocketAddrs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Read buffers an idle connection gave back, kept for the next reader.
const POOL_MAX: usize = 64;
/// Own tasks from one poll at which a parked sibling is woken to take over polling.
const WAKE_FOLLOWER_AT: usize = 2;
/// A park shorter than this means the worker is in a busy period.
const BUSY_GAP: Duration = Duration::from_micros(200);
/// How long a busy worker spins on its queue before parking.
const ADAPTIVE_SPIN: Duration = Duration::from_micros(30);
/// How long a worker that left the poller role to a sibling parks at most.
const YIELD_PARK: Duration = Duration::from_millis(1);
/// Buffers larger than this are freed rather than pooled.
const POOL_BUF_MAX: usize = 256 << 10;

/// What an actor may use of its worker during a turn.
pub(crate) struct WorkerCtx {
    pub(crate) now: Instant,
    pub(crate) poller: Arc<crate::sys::Poller>,
    pub(crate) timers: TimerHeap,
    pub(crate) pool: Vec<BytesMut>,
    pub(crate) mail: VecDeque<Msg>,
    /// Empty event vectors, reused by every actor's event delivery.
    pub(crate) event_vecs: Vec<Vec<crate::Event>>,
    /// Empty write queues, likewise.
    pub(crate) write_queues: Vec<VecDeque<bytes::Bytes>>,
    again: Vec<Token>,
    me: Arc<WorkerShared>,
}

impl WorkerCtx {
    /// Runs the actor again after the current batch (it yielded for fairness).
    pub(crate) fn again(&mut self, token: Token) {
        // One turn may ask more than once (each delivery round of a turn
        // that used its budget): one fairness round is enough. A turn's
        // requests are adjacent — one actor runs at a time.
        if self.again.last() != Some(&token) {
            self.again.push(token);
        }
    }

    /// Gives an empty read buffer back for reuse.
    pub(crate) fn recycle(&mut self, mut buf: BytesMut) {
        buf.clear();
        if self.pool.len() < POOL_MAX && buf.try_reclaim(1024) && buf.capacity() <= POOL_BUF_MAX {
            self.pool.push(buf);
        }
    }

    /// Keeps an emptied event vector for reuse (a few, of modest size).
    pub(crate) fn recycle_events(&mut self, mut v: Vec<crate::Event>) {
        v.clear();
        if self.event_vecs.len() < 8 && v.capacity() > 0 && v.capacity() <= 64 {
            self.event_vecs.push(v);
        }
    }

    /// Keeps an emptied write queue for reuse.
    pub(crate) fn recycle_write_queue(&mut self, q: VecDeque<bytes::Bytes>) {
        if self.write_queues.len() < 8 && q.is_empty() && q.capacity() <= 256 {
            self.write_queues.push(q);
        }
    }

    /// Resolves `target` on a short-lived thread (never on a worker or the
    /// poller) and reports back with `Task::Resolved`.
    pub(crate) fn resolve(
        &mut self,
        token: Token,
        target: String,
        resolver: Option<Arc<crate::conn::actor::ResolveFn>>,
    ) {
        let me = self.me.clone();
        let spawned = std::thread::Builder::new()
            .name("netactor-resolve".into())
            .spawn(move || {
                let found = match resolver {
                    Some(r) => match crate::net::parse_host_port(&target, None) {
                        Ok(crate::net::HostPort::Tcp { host, port }) => r(&host, port),
                        Ok(crate::net::HostPort::Unix(_)) | Err(_) => Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            format!("cannot resolve {target:?}"),
                        )),
                    },
                    None => target.to_socket_addrs().map(Iterator::collect),
                };
                let res = found.map(|mut v: Vec<std::net::SocketAddr>| {
                    // IPv4 first, as the reference does.
                    v.sort_by_key(|a| a.is_ipv6());
                    v
                });
                me.push(Task::Resolved(token, res));
            });
        if let Err(e) = spawned {
            self.me.push(Task::Resolved(token, Err(e)));
        }
    }
}

/// Actors are boxed so the slab stays 16 bytes a slot: growing it never moves
/// actors, and spare capacity costs no actor-sized holes.
struct Slot {
    gen: u32,
    actor: Option<Box<Actor>>,
}

#[derive(Default)]
struct Slab {
    slots: Vec<Slot>,
    free: Vec<usize>,
    len: usize,
}

impl Slab {
    fn vacant(&mut self) -> (usize, u32) {
        if let Some(i) = self.free.pop() {
            (i, self.slots[i].gen)
        } else {
            self.slots.push(Slot {
                gen: 0,
                actor: None,
            });
            (self.slots.len() - 1, 0)
        }
    }

    fn fill(&mut self, slot: usize, actor: Box<Actor>) {
        self.slots[slot].actor = Some(actor);
        self.len += 1;
    }

    fn release(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        s.gen = (s.gen + 1) & 0x00ff_ffff;
        self.free.push(slot);
    }

    fn get_mut(&mut self, token: Token) -> Option<&mut Actor> {
        let s = self.slots.get_mut(token.slot())?;
        if s.gen != token.gen() {
            return None;
        }
        s.actor.as_deref_mut()
    }

    fn remove(&mut self, token: Token) -> Option<Box<Actor>> {
        let s = self.slots.get_mut(token.slot())?;
        if s.gen != token.gen() {
            return None;
        }
        let a = s.actor.take()?;
        self.len -= 1;
        self.release(token.slot());
        Some(a)
    }

    fn tokens(&self) -> Vec<Token> {
        self.slots
            .iter()
            .filter_map(|s| s.actor.as_ref().map(|a| a.token()))
            .collect()
    }
}

/// Runs `f` on the actor behind `token`, removing it once it is closed. A
/// panic inside the actor itself (not in application code, which is caught
/// closer) ends only that connection.
fn with_actor(
    slab: &mut Slab,
    token: Token,
    ctx: &mut WorkerCtx,
    f: impl FnOnce(&mut Actor, &mut WorkerCtx),
) {
    let Some(actor) = slab.get_mut(token) else {
        return; // stale: the connection in that slot is gone
    };
    let r = catch_unwind(AssertUnwindSafe(|| f(actor, ctx)));
    let closed = match r {
        Ok(()) => actor.is_closed(),
        Err(p) => {
            let msg = panic_message(&p);
            log::error!("{}: connection actor panicked: {msg}", actor.shared().id);
            let _ = catch_unwind(AssertUnwindSafe(|| actor.abort_panicked(msg, ctx)));
            true
        }
    };
    if closed {
        slab.remove(token);
    }
}

/// A worker's connections and what their turns use: owned by the worker's
/// thread, lent to the poller-role holder while that thread is parked.
pub(crate) struct WorkerState {
    slab: Slab,
    ctx: WorkerCtx,
    again: Vec<Token>,
    shutdown: Option<Instant>,
    /// The latest moment the parked owner wakes by itself (its next timer
    /// when it parked; `None` = only when woken). A borrower that arms an
    /// earlier timer must wake it.
    park_deadline: Option<Instant>,
}

impl WorkerState {
    fn new(shared: &ReactorShared, me: &Arc<WorkerShared>) -> Self {
        WorkerState {
            slab: Slab::default(),
            ctx: WorkerCtx {
                now: Instant::now(),
                poller: shared.poller.clone(),
                timers: TimerHeap::default(),
                pool: Vec::new(),
                mail: VecDeque::new(),
                event_vecs: Vec::new(),
                write_queues: Vec::new(),
                again: Vec::new(),
                me: me.clone(),
            },
            again: Vec::new(),
            shutdown: None,
            park_deadline: None,
        }
    }

    /// Runs `tasks` (draining it), then the connections that yielded for
    /// fairness during them.
    fn run_tasks(&mut self, tasks: &mut Vec<Task>, worker: usize) {
        let WorkerState {
            slab,
            ctx,
            again,
            shutdown,
            ..
        } = self;
        ctx.now = Instant::now();
        for task in tasks.drain(..) {
            match task {
                Task::Io {
                    token,
                    readable,
                    writable,
                    hup,
                } => with_actor(slab, token, ctx, |a, c| a.on_io(readable, writable, hup, c)),
                Task::Mail(conn) => {
                    let token = Token(conn.token.load(Ordering::Acquire));
                    with_actor(slab, token, ctx, |a, c| a.run(c));
                }
                Task::Adopt(new) => {
                    let (slot, gen) = slab.vacant();
                    let token = Token::conn(worker, gen, slot as u32);
                    let r = catch_unwind(AssertUnwindSafe(|| {
                        Box::new(Actor::start(*new, token, ctx))
                    }));
                    match r {
                        Ok(mut actor) => {
                            if let Some(deadline) = *shutdown {
                                actor.on_shutdown(deadline, ctx);
                            }
                            if actor.is_closed() {
                                slab.release(slot);
                            } else {
                                slab.fill(slot, actor);
                            }
                        }
                        Err(p) => {
                            log::error!("starting a connection panicked: {}", panic_message(&p));
                            slab.release(slot);
                        }
                    }
                }
                Task::Resolved(token, res) => {
                    with_actor(slab, token, ctx, |a, c| a.on_resolved(res, c))
                }
                Task::Shutdown(deadline) => {
                    *shutdown = Some(deadline);
                    for token in slab.tokens() {
                        with_actor(slab, token, ctx, |a, c| a.on_shutdown(deadline, c));
                    }
                }
            }
        }
        // Connections that yielded for fairness run again after everyone else.
        std::mem::swap(again, &mut ctx.again);
        for token in again.drain(..) {
            with_actor(slab, token, ctx, |a, c| a.on_io(false, false, false, c));
        }
    }

    fn run_timers(&mut self) {
        if self.ctx.timers.next_deadline().is_none() {
            return; // no clock read for a worker without timers
        }
        self.ctx.now = Instant::now();
        while let Some((at, token, kind)) = self.ctx.timers.pop_due(self.ctx.now) {
            with_actor(&mut self.slab, token, &mut self.ctx, |a, c| {
                a.on_timer(kind, at, c)
            });
        }
    }
}

/// Runs `tasks` for worker `w` on the calling thread, under `w`'s state
/// lock, taken (`try_lock`) while its own thread was parked: no wake-up, no
/// context switch, and the actors still run one at a time — whoever holds
/// `w.state` is the only one touching its connections.
fn run_borrowed(
    w: &WorkerShared,
    mut guard: MutexGuard<'_, Option<WorkerState>>,
    tasks: &mut Vec<Task>,
) {
    let Some(st) = guard.as_mut() else {
        return;
    };
    st.run_tasks(tasks, w.idx);
    // The owner parked until its `park_deadline`; an earlier timer armed
    // here, leftovers, or a shutdown in progress (only the owner decides
    // when to exit) need the owner itself.
    let earlier_timer = match (st.ctx.timers.next_deadline(), st.park_deadline) {
        (Some(t), Some(p)) => t < p,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let wake = earlier_timer || !st.ctx.again.is_empty() || st.shutdown.is_some();
    drop(guard);
    if wake {
        w.force_wake();
    }
}

/// Marks the worker gone however its thread ends — a panic that escaped
/// the loop included: its state (and the actors, whose sockets close) is
/// dropped, which also breaks the state → `WorkerCtx::me` reference cycle.
struct ExitGuard<'a>(&'a WorkerShared);

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        *self.0.state.lock() = None;
        self.0.stopped.store(true, Ordering::Release);
    }
}

pub(crate) fn run(shared: Arc<ReactorShared>, me: Arc<WorkerShared>) {
    *me.state.lock() = Some(WorkerState::new(&shared, &me));
    let exit = ExitGuard(&me);
    let mut tasks: Vec<Task> = Vec::with_capacity(256);
    let mut others: Vec<Vec<Task>> = Vec::new();
    let mut yield_role = false;
    let mut last_park = Duration::MAX;
    let spin = shared.spin;

    loop {
        let mut guard = me.state.lock();
        let st = guard.as_mut().expect("a running worker has its state");
        me.take_if_any(&mut tasks);
        st.run_tasks(&mut tasks, me.idx);
        st.run_timers();
        if let Some(deadline) = st.shutdown {
            if st.slab.len == 0 {
                break;
            }
            if st.ctx.now >= deadline {
                for token in st.slab.tokens() {
                    with_actor(&mut st.slab, token, &mut st.ctx, |a, c| a.abort(c));
                }
                break;
            }
        }
        if me.has_work() {
            continue;
        }
        if !st.ctx.again.is_empty() {
            // A connection used its whole read budget and runs again — but
            // only after a look at the poller: without one, a peer that
            // keeps its socket full would get round after round while every
            // other connection's readiness waited in the kernel. The look
            // never blocks; what it finds for this worker runs before the
            // fairness round (`run_tasks` runs tasks first), the rest is
            // handed to its owners. If another thread holds the role, it is
            // waiting (and routes new readiness here) or about to.
            if shared.dedicated_poller {
                // The poller thread routes new readiness here on its own.
            } else if let Some(mut ps) = shared.poll.try_lock() {
                if !ps.finished {
                    poller::poll_once(
                        &shared,
                        &mut ps,
                        Some(Duration::ZERO),
                        Some(me.idx),
                        &mut tasks,
                        &mut others,
                    );
                    // Handed over while still holding the role, like the
                    // idle path: a `StopAccepting` ack then proves that an
                    // accepted connection is already in its worker's queue.
                    poller::hand_over(&shared, &mut others);
                    drop(ps);
                }
            }
            continue;
        }
        // Spin briefly before parking while work keeps coming (the last
        // park was short): a spinning worker takes the next hand-off without
        // a futex wake on either side. An idle worker never spins.
        let spin = if !spin.is_zero() {
            spin
        } else if shared.adaptive_spin && last_park < BUSY_GAP {
            ADAPTIVE_SPIN
        } else {
            Duration::ZERO
        };
        if !spin.is_zero() {
            let until = Instant::now() + spin;
            while !me.has_work() && Instant::now() < until {
                std::hint::spin_loop();
            }
            if me.has_work() {
                continue;
            }
        }
        // Until when to wait, as an instant: stored as `park_deadline` for
        // borrowers to compare exactly (a duration re-added to a later clock
        // read would always look later than a timer they left alone).
        let mut until = st.ctx.timers.next_deadline();
        if let Some(deadline) = st.shutdown {
            until = Some(until.map_or(deadline, |u| u.min(deadline)));
        }
        let yielding = std::mem::take(&mut yield_role);
        if yielding {
            // Bounded, so a sibling stuck in a long turn cannot stop polling.
            let y = Instant::now() + YIELD_PARK;
            until = Some(until.map_or(y, |u| u.min(y)));
        }
        let wait = until.map(|u| u.saturating_duration_since(Instant::now()));
        if !shared.dedicated_poller && !yielding {
            // Idle: take the poller role instead of parking. Events for this
            // worker's own connections then run right here, with no hop.
            if let Some(mut ps) = shared.poll.try_lock() {
                if !ps.finished {
                    me.polling.store(true, Ordering::SeqCst);
                    let handed = if me.has_work() {
                        0
                    } else {
                        poller::poll_once(
                            &shared,
                            &mut ps,
                            wait,
                            Some(me.idx),
                            &mut tasks,
                            &mut others,
                        )
                    };
                    me.polling.store(false, Ordering::SeqCst);
                    // Another worker's events: if this thread has nothing of
                    // its own to do, it runs one parked worker's batch itself
                    // (no wake-up, no context switch); otherwise they are
                    // queued for their owners, so both halves of a busy
                    // batch run in parallel. Decided while still holding the
                    // role: a `StopAccepting` acknowledgement (which needs
                    // the role) then proves every accepted connection is
                    // queued or in a locked state, so no worker can exit past
                    // one (shutdown queues `Shutdown` only after the ack).
                    let mut pushed = 0;
                    let mut borrowed = None;
                    if handed > 0 {
                        let mut idle = tasks.is_empty();
                        for (i, (w, batch)) in
                            shared.workers.iter().zip(others.iter_mut()).enumerate()
                        {
                            if batch.is_empty() {
                                continue;
                            }
                            if idle {
                                if let Some(g) = w.state.try_lock().filter(|g| g.is_some()) {
                                    borrowed = Some((i, g));
                                    idle = false;
                                    continue;
                                }
                            }
                            pushed += batch.len();
                            w.push_batch(batch);
                        }
                    }
                    drop(ps);
                    drop(guard);
                    if let Some((i, g)) = borrowed {
                        run_borrowed(&shared.workers[i], g, &mut others[i]);
                    }
                    if tasks.len() >= WAKE_FOLLOWER_AT {
                        // A long batch ahead: let a parked sibling poll meanwhile.
                        shared.wake_follower(me.idx);
                    } else if tasks.is_empty() && pushed > 0 {
                        // Everything was for busy others: leave the role to
                        // them (they will be idle next), or every one of
                        // their events would keep hopping through this thread.
                        yield_role = true;
                    }
                    continue;
                }
            }
        }
        st.park_deadline = until;
        drop(guard);
        let parked_at = Instant::now();
        me.park_until_work(wait);
        last_park = parked_at.elapsed();
    }
    // This worker may have held the poller role last. A sibling still
    // flushing at shutdown can be parked until its next timer (seconds away)
    // while its sockets' readiness sits unread in the poller: wake every
    // sibling so one of them takes the role. `unpark` is sticky, so a sibling
    // that has not parked yet returns from its park at once.
    for w in shared.workers.iter().filter(|w| w.idx != me.idx) {
        w.force_wake();
    }
    // Dropping the state closes whatever connections are left (none after
    // an orderly exit) and breaks the state → ctx → `me` reference cycle.
    drop(exit);
    // Anything still queued can no longer run: close mailboxes so senders see `Closed`.
    me.take(&mut tasks);
    for task in tasks.drain(..) {
        if let Task::Adopt(new) = task {
            drop(new.shared.close_mailbox());
        }
    }
}

impl WorkerShared {
    /// Parks the calling worker until a task arrives or `wait` passes.
    fn park_until_work(&self, wait: Option<Duration>) {
        self.parked.store(true, Ordering::SeqCst);
        if self.has_work() {
            self.parked.store(false, Ordering::SeqCst);
            return;
        }
        match wait {
            Some(d) if d.is_zero() => {}
            Some(d) => std::thread::park_timeout(d),
            None => std::thread::park(),
        }
        self.parked.store(false, Ordering::SeqCst);
    }
}
