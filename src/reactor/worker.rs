//! A worker thread: a slab of sources (connection actors), a task queue, a
//! timer heap. Generic over the [`Source`] it runs; it knows nothing of
//! connections.

use super::poller;
use super::timers::TimerHeap;
use super::{ReactorShared, Readiness, Source, Task, Token, WorkerShared};
use parking_lot::MutexGuard;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Own tasks from one poll at which a parked sibling is woken to take over polling.
const WAKE_FOLLOWER_AT: usize = 2;
/// A park shorter than this means the worker is in a busy period.
const BUSY_GAP: Duration = Duration::from_micros(200);
/// How long a busy worker spins on its queue before parking.
const ADAPTIVE_SPIN: Duration = Duration::from_micros(30);
/// How long a worker that left the poller role to a sibling parks at most.
const YIELD_PARK: Duration = Duration::from_millis(1);
/// How stale [`WorkerCtx::stamp`] may be (its unit).
pub(crate) const STAMP_GRAIN: Duration = super::timers::STAMP_UNIT;

/// What a source may use of its worker during a turn.
pub(crate) struct WorkerCtx<S: Source> {
    pub(crate) now: Instant,
    pub(crate) poller: Arc<crate::sys::Poller>,
    timers: TimerHeap,
    again: Vec<Token>,
    /// The layer above's per-worker scratch (pools).
    pub(crate) local: S::Local,
    /// The worker's counters; a turn counts into `metrics.conn` (the
    /// state lock makes it the only writer).
    pub(crate) metrics: Arc<crate::metrics::WorkerCounters>,
    /// `now` as a stamp ([`stamp`](Self::stamp)) and until when it may be
    /// reused.
    stamp: u32,
    stamp_until: Instant,
    /// The round under way is timed (`refresh_stamp`).
    timed: bool,
    /// A source that offered to move to another worker in the turn just
    /// run (`offer_move`).
    offer: Option<Token>,
}

impl<S: Source> WorkerCtx<S> {
    /// Runs the source again after the current batch (it yielded for fairness).
    pub(crate) fn again(&mut self, token: Token) {
        // One turn may ask more than once (each delivery round of a turn
        // that used its budget): one fairness round is enough. A turn's
        // requests are adjacent — one source runs at a time.
        if self.again.last() != Some(&token) {
            self.again.push(token);
        }
    }

    /// Calls `token`'s [`Source::on_timer`] with `tag` at `at` (or soon
    /// after). Entries are never cancelled: the source tells a stale one by
    /// its deadline.
    /// About `now` as a `timers::stamp` (10 ms units, never 0), at most
    /// [`STAMP_GRAIN`] earlier than `now`:
    /// converted once per grain (a comparison per round decides), because
    /// a conversion per turn would cost more than everything else metrics
    /// count. It changes at most once per grain, so publishing it can be
    /// skipped while it has not.
    #[inline]
    pub(crate) fn stamp(&self) -> u32 {
        self.stamp
    }

    /// A new grain: a new stamp, and this round is timed for
    /// `longest_round` (one round per grain at most: a clock read after
    /// every round would be a measurable share of a small message's cost).
    #[cold]
    fn refresh_stamp(&mut self) {
        self.stamp = super::timers::stamp(self.now);
        self.stamp_until = self.now + STAMP_GRAIN;
        self.timed = true;
    }

    /// Entries in the timer heap, stale ones included.
    #[cfg(test)]
    pub(crate) fn timers_pending(&self) -> usize {
        self.timers.len()
    }

    /// Offers to move the source `token` (running its turn now) to a
    /// less-loaded worker: the worker decides after the turn
    /// (`ReactorShared::move_target`) and, if it moves it, calls its
    /// [`Source::depart`] and, on the other worker, [`Source::arrive`].
    /// For a source that has proved long-lived: sources start on the
    /// worker that accepted them (`ReactorShared::pick_worker_near`).
    pub(crate) fn offer_move(&mut self, token: Token) {
        self.offer = Some(token);
    }

    pub(crate) fn arm(&mut self, at: Instant, token: Token, tag: u8) {
        self.timers.push(at, token, tag);
        self.metrics.conn.timers_armed.inc();
    }
}

/// Sources are boxed so the slab stays 16 bytes a slot: growing it never
/// moves them, and spare capacity costs no source-sized holes. The box of
/// a source that is gone is kept (emptied) for the next one: a short-lived
/// connection then costs no allocation for its actor (issue 15's churn: a
/// hand-written loop allocates nothing per connection).
struct Slot<S> {
    gen: u32,
    /// `Some` while the slot holds a source (or is being filled).
    source: Option<Box<Option<S>>>,
}

/// Emptied boxes kept for new sources, at most (per worker): enough for a
/// burst of short connections, little memory after a peak.
const SPARE_BOXES: usize = 64;

struct Slab<S> {
    slots: Vec<Slot<S>>,
    free: Vec<usize>,
    len: usize,
    /// Emptied boxes, taken by whichever slot is filled next. (Kept with
    /// their slots, as they were, a peak left the most recently freed
    /// slots — first in line — without one, and from then on every
    /// connection allocated its box and freed it again.)
    spare: Vec<Box<Option<S>>>,
    /// The worker's load as the accept path sees it: lowered here, once
    /// per source assigned to this worker that is gone.
    load: Arc<super::Load>,
}

impl<S: Source> Slab<S> {
    fn new(load: Arc<super::Load>) -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            spare: Vec::new(),
            load,
        }
    }

    fn vacant(&mut self) -> (usize, u32) {
        if let Some(i) = self.free.pop() {
            (i, self.slots[i].gen)
        } else {
            if self.slots.len() == super::UNPLACED_SLOT {
                // Never handed out: it stands for no slot (`Token::unplaced`).
                self.slots.push(Slot {
                    gen: 0,
                    source: None,
                });
            }
            self.slots.push(Slot {
                gen: 0,
                source: None,
            });
            (self.slots.len() - 1, 0)
        }
    }

    /// Where a new source for `slot` (from `vacant`) is built: a spare
    /// box, or a new one. `filled` once it holds a source to keep.
    fn place(&mut self, slot: usize) -> &mut Option<S> {
        let spare = &mut self.spare;
        self.slots[slot]
            .source
            .get_or_insert_with(|| spare.pop().unwrap_or_else(|| Box::new(None)))
    }

    fn filled(&mut self) {
        self.len += 1;
    }

    /// `slot` (its source dropped) is vacant again; its box is kept while
    /// fewer than `SPARE_BOXES` are.
    fn release(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        // Modulo what a token holds (4 bits on 32-bit targets): counted
        // further, a slot's tokens would never match it again.
        s.gen = (s.gen + 1) & super::TOKEN_GEN_MASK;
        if let Some(b) = s.source.take() {
            if self.spare.len() < SPARE_BOXES {
                self.spare.push(b);
            }
        }
        self.free.push(slot);
    }

    fn get_mut(&mut self, token: Token) -> Option<&mut S> {
        let s = self.slots.get_mut(token.slot())?;
        if s.gen != token.gen() {
            return None;
        }
        s.source.as_deref_mut()?.as_mut()
    }

    /// Drops the source behind `token` (in place: its box may be kept as a
    /// spare).
    fn remove(&mut self, token: Token) {
        let Some(s) = self.slots.get_mut(token.slot()) else {
            return;
        };
        if s.gen != token.gen() {
            return;
        }
        let Some(cell) = s.source.as_deref_mut().filter(|c| c.is_some()) else {
            return;
        };
        *cell = None;
        self.len -= 1;
        self.load.sub();
        self.release(token.slot());
    }

    /// Takes the source behind `token` out with its box (to move it to
    /// another worker): the slot is vacant again, the source no longer
    /// counts here.
    fn take(&mut self, token: Token) -> Option<Box<Option<S>>> {
        let s = self.slots.get_mut(token.slot())?;
        if s.gen != token.gen() || !s.source.as_deref().is_some_and(|c| c.is_some()) {
            return None;
        }
        let moved = s.source.take();
        self.len -= 1;
        self.load.sub();
        self.release(token.slot());
        moved
    }

    fn tokens(&self) -> Vec<Token> {
        self.slots
            .iter()
            .filter_map(|s| s.source.as_deref()?.as_ref().map(|a| a.token()))
            .collect()
    }
}

/// Runs `f` on the source behind `token`, removing it once it is closed. A
/// panic inside the source itself (not in application code, which is caught
/// closer) ends only that source.
fn with_source<S: Source>(
    slab: &mut Slab<S>,
    token: Token,
    ctx: &mut WorkerCtx<S>,
    f: impl FnOnce(&mut S, &mut WorkerCtx<S>),
) {
    let Some(source) = slab.get_mut(token) else {
        return; // stale: the source in that slot is gone
    };
    let r = catch_unwind(AssertUnwindSafe(|| f(source, ctx)));
    let closed = match r {
        Ok(()) => source.is_closed(),
        Err(p) => {
            let msg = panic_message(&p);
            log::error!("{}: connection actor panicked: {msg}", source.label());
            let _ = catch_unwind(AssertUnwindSafe(|| source.abort_panicked(msg, ctx)));
            true
        }
    };
    if closed {
        slab.remove(token);
    }
}

/// Moves the source that offered to (`WorkerCtx::offer_move`) to the
/// worker [`ReactorShared::move_target`] picks, if it picks one: out of
/// this slab (its slot is free again, and stale for what still names it:
/// events the poller routed here, timer entries, mail), through its
/// [`Source::depart`], to the other worker's queue as `Task::Adopt`. Not
/// once shutdown has begun: the admission guard held over the hand-over
/// is what puts the `Task::Adopt` ahead of the other worker's `Shutdown`.
fn move_out<S: Source>(
    slab: &mut Slab<S>,
    ctx: &mut WorkerCtx<S>,
    me: usize,
    reactor: &ReactorShared<S>,
    shutting_down: bool,
) {
    let Some(token) = ctx.offer.take() else {
        return;
    };
    if shutting_down {
        return;
    }
    let Some(to) = reactor.move_target(me) else {
        return;
    };
    let Some(_admitted) = reactor.spawn_guard() else {
        return;
    };
    let Some(mut moved) = slab.take(token) else {
        return; // closed in that turn
    };
    let Some(source) = moved.as_mut() else {
        return;
    };
    let departed = catch_unwind(AssertUnwindSafe(|| source.depart(to, ctx)));
    if let Err(p) = departed {
        // Not moved: it ends here, in no slab (its slot is gone).
        let msg = panic_message(&p);
        log::error!("{}: connection actor panicked: {msg}", source.label());
        let _ = catch_unwind(AssertUnwindSafe(|| source.abort_panicked(msg, ctx)));
        return;
    }
    ctx.metrics.conn.moved_out.inc();
    let target = &reactor.workers[to];
    target.load.add();
    target.push(Task::Adopt(moved));
}

/// The text of a caught panic's payload.
pub(crate) fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

/// A worker's connections and what their turns use: owned by the worker's
/// thread (with `run_for_parked`, lent to the poller-role holder while that
/// thread is parked).
pub(crate) struct WorkerState<S: Source> {
    slab: Slab<S>,
    ctx: WorkerCtx<S>,
    again: Vec<Token>,
    shutdown: Option<Instant>,
    /// The latest moment the parked owner wakes by itself (its next timer
    /// when it parked; `None` = only when woken). A borrower that arms an
    /// earlier timer must wake it.
    park_deadline: Option<Instant>,
}

impl<S: Source> WorkerState<S> {
    fn new(shared: &ReactorShared<S>, me: &WorkerShared<S>) -> Self {
        WorkerState {
            slab: Slab::new(me.load.clone()),
            ctx: WorkerCtx {
                now: Instant::now(),
                poller: shared.poller.clone(),
                timers: TimerHeap::default(),
                again: Vec::new(),
                local: S::Local::default(),
                metrics: me.metrics.clone(),
                stamp: 0,
                stamp_until: Instant::now(),
                timed: false,
                offer: None,
            },
            again: Vec::new(),
            shutdown: None,
            park_deadline: None,
        }
    }

    /// Runs `tasks` (draining it), then the connections that yielded for
    /// fairness during them.
    fn run_tasks(&mut self, tasks: &mut Vec<Task<S>>, worker: usize, reactor: &ReactorShared<S>) {
        let WorkerState {
            slab,
            ctx,
            again,
            shutdown,
            ..
        } = self;
        ctx.now = Instant::now();
        if ctx.now >= ctx.stamp_until {
            ctx.refresh_stamp();
        }
        let n = tasks.len();
        for task in tasks.drain(..) {
            match task {
                Task::Io(token, ready) => {
                    with_source(slab, token, ctx, |a, c| a.on_io(ready, c));
                    if ctx.offer.is_some() {
                        move_out(slab, ctx, worker, reactor, shutdown.is_some());
                    }
                }
                Task::Mail(token) => {
                    with_source(slab, token, ctx, |a, c| a.on_mail(c));
                    if ctx.offer.is_some() {
                        move_out(slab, ctx, worker, reactor, shutdown.is_some());
                    }
                }
                Task::Adopt(mut moved) => {
                    let (slot, gen) = slab.vacant();
                    let token = Token::conn(worker, gen, slot as u32);
                    ctx.metrics.conn.moved_in.inc();
                    if let Some(source) = moved.as_mut() {
                        let arrived = catch_unwind(AssertUnwindSafe(|| source.arrive(token, ctx)));
                        if let Err(p) = arrived {
                            let msg = panic_message(&p);
                            log::error!("{}: connection actor panicked: {msg}", source.label());
                            let _ =
                                catch_unwind(AssertUnwindSafe(|| source.abort_panicked(msg, ctx)));
                        } else if let Some(deadline) = *shutdown {
                            source.on_shutdown(deadline, ctx);
                        }
                    }
                    ctx.offer = None;
                    if moved.as_ref().as_ref().is_some_and(|s| !s.is_closed()) {
                        slab.slots[slot].source = Some(moved);
                        slab.filled();
                    } else {
                        // Gone already: its box is dropped with it.
                        drop(moved);
                        slab.release(slot);
                        slab.load.sub();
                    }
                }
                Task::Spawn(new) => {
                    let (slot, gen) = slab.vacant();
                    let token = Token::conn(worker, gen, slot as u32);
                    let place = slab.place(slot);
                    let started = catch_unwind(AssertUnwindSafe(|| {
                        S::start(new, token, ctx, place);
                    }));
                    if let Err(p) = started {
                        log::error!("starting a connection panicked: {}", panic_message(&p));
                        *place = None;
                    }
                    if let Some(source) = place.as_mut() {
                        if let Some(deadline) = *shutdown {
                            source.on_shutdown(deadline, ctx);
                        }
                        if source.is_closed() {
                            *place = None;
                        }
                    }
                    ctx.offer = None;
                    if place.is_some() {
                        slab.filled();
                    } else {
                        slab.release(slot);
                        slab.load.sub();
                    }
                }
                Task::Shutdown(deadline) => {
                    *shutdown = Some(deadline);
                    for token in slab.tokens() {
                        with_source(slab, token, ctx, |a, c| a.on_shutdown(deadline, c));
                    }
                    ctx.offer = None;
                }
            }
        }
        // Connections that yielded for fairness run again after everyone
        // else. Turns are counted once a round, these included.
        std::mem::swap(again, &mut ctx.again);
        ctx.metrics.conn.turns.add((n + again.len()) as u64);
        for token in again.drain(..) {
            with_source(slab, token, ctx, |a, c| a.on_io(Readiness::default(), c));
            if ctx.offer.is_some() {
                move_out(slab, ctx, worker, reactor, shutdown.is_some());
            }
        }
        self.compact_timers();
    }

    /// Drops the timer entries no source will act on (those of sources
    /// that are gone, and those their source no longer has armed), once
    /// the heap has doubled since it was last compacted (`timers.rs`).
    fn compact_timers(&mut self) {
        if !self.ctx.timers.wants_compaction() {
            return;
        }
        let slab = &mut self.slab;
        self.ctx.timers.retain_live(|at, token, tag| {
            slab.get_mut(token).is_some_and(|s| s.timer_armed(tag, at))
        });
    }

    fn run_timers(&mut self) {
        if self.ctx.timers.next_deadline().is_none() {
            return; // no clock read for a worker without timers
        }
        self.ctx.now = Instant::now();
        while let Some((at, token, tag)) = self.ctx.timers.pop_due(self.ctx.now) {
            self.ctx.metrics.conn.turns.inc();
            with_source(&mut self.slab, token, &mut self.ctx, |a, c| {
                a.on_timer(tag, at, c)
            });
            // Offers are taken after readiness and mail only.
            self.ctx.offer = None;
        }
    }
}

/// Runs `tasks` for worker `w` on the calling thread, under `w`'s state
/// lock, taken (`try_lock`) while its own thread was parked: no wake-up, no
/// context switch, and the actors still run one at a time — whoever holds
/// `w.state` is the only one touching its connections.
fn run_borrowed<S: Source>(
    reactor: &ReactorShared<S>,
    w: &WorkerShared<S>,
    mut guard: MutexGuard<'_, Option<WorkerState<S>>>,
    tasks: &mut Vec<Task<S>>,
) {
    let Some(st) = guard.as_mut() else {
        return;
    };
    st.run_tasks(tasks, w.idx, reactor);
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
/// dropped.
struct ExitGuard<'a, S: Source>(&'a WorkerShared<S>);

impl<S: Source> Drop for ExitGuard<'_, S> {
    fn drop(&mut self) {
        *self.0.state.lock() = None;
        self.0.stopped.store(true, Ordering::Release);
    }
}

pub(crate) fn run<S: Source>(shared: Arc<ReactorShared<S>>, me: Arc<WorkerShared<S>>) {
    *me.state.lock() = Some(WorkerState::new(&shared, &me));
    let exit = ExitGuard(&me);
    let mut tasks: Vec<Task<S>> = Vec::with_capacity(256);
    let mut others: Vec<Vec<Task<S>>> = Vec::new();
    let mut yield_role = false;
    let mut last_park = Duration::MAX;
    let spin = shared.spin;
    // Loop counters: this thread is their only writer.
    let m = &me.metrics.sched;
    let mut unpolled: u64 = 0;
    let mut most_unpolled: u64 = 0;

    loop {
        let mut guard = me.state.lock();
        let st = guard.as_mut().expect("a running worker has its state");
        me.take_if_any(&mut tasks);
        st.run_tasks(&mut tasks, me.idx, &shared);
        if st.ctx.timed {
            // The first round of a stamp grain (see `refresh_stamp`).
            st.ctx.timed = false;
            m.longest_round_ns
                .max(st.ctx.now.elapsed().as_nanos() as u64);
        }
        st.run_timers();
        if let Some(deadline) = st.shutdown {
            if st.slab.len == 0 {
                break;
            }
            if st.ctx.now >= deadline {
                for token in st.slab.tokens() {
                    with_source(&mut st.slab, token, &mut st.ctx, |a, c| a.abort(c));
                }
                break;
            }
        }
        if me.has_work() {
            // Another round right away, without polling or parking first.
            unpolled += 1;
            if unpolled > most_unpolled {
                most_unpolled = unpolled;
                m.max_rounds_unpolled.set(unpolled + 1);
            }
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
                    unpolled = 0;
                    m.polls.inc();
                    poller::poll_once(
                        &shared,
                        &mut ps,
                        Some(Duration::ZERO),
                        Some(me.idx),
                        &mut tasks,
                        &mut others,
                    );
                    m.handed_off
                        .add(others.iter().map(|b| b.len() as u64).sum());
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
                    unpolled = 0;
                    let handed = if !me.parking().begin_polling() {
                        0 // work arrived: no wait
                    } else {
                        m.polls.inc();
                        poller::poll_once(
                            &shared,
                            &mut ps,
                            wait,
                            Some(me.idx),
                            &mut tasks,
                            &mut others,
                        )
                    };
                    me.parking().end_polling();
                    // Another worker's events are queued for their owners
                    // (a parked one is woken), so every connection's turns
                    // run on its own worker's thread and both halves of a
                    // busy batch run in parallel. With `run_for_parked`, a
                    // thread with nothing of its own to do runs one parked
                    // worker's batch itself (no wake-up, no context
                    // switch). Decided while still holding the
                    // role: a `StopAccepting` acknowledgement (which needs
                    // the role) then proves every accepted connection is
                    // queued or in a locked state, so no worker can exit past
                    // one (shutdown queues `Shutdown` only after the ack).
                    let mut pushed = 0;
                    let mut borrowed = None;
                    if handed > 0 {
                        let mut idle = shared.run_for_parked && tasks.is_empty();
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
                        m.handed_off.add(pushed as u64);
                    }
                    drop(ps);
                    drop(guard);
                    if let Some((i, g)) = borrowed {
                        m.borrowed.add(others[i].len() as u64);
                        run_borrowed(&shared, &shared.workers[i], g, &mut others[i]);
                    }
                    if tasks.len() >= WAKE_FOLLOWER_AT {
                        // A long batch ahead: let a parked sibling poll meanwhile.
                        shared.wake_follower(me.idx);
                    } else if tasks.is_empty() && pushed > 0 {
                        // Everything was for others (busy, or parked and
                        // woken now): leave the role to them (they will be
                        // idle next), or every one of their events would
                        // keep hopping through this thread.
                        yield_role = true;
                    }
                    continue;
                }
            }
        }
        st.park_deadline = until;
        drop(guard);
        unpolled = 0;
        m.parks.inc();
        if shared.adaptive_spin {
            // Only adaptive spinning looks at how long the park was: two
            // clock reads per park otherwise saved (a park per message
            // when a single connection ping-pongs).
            let parked_at = Instant::now();
            me.park_until_work(wait);
            last_park = parked_at.elapsed();
        } else {
            me.park_until_work(wait);
        }
        if me.has_work() {
            m.wakeups.inc();
        }
    }
    // This worker may have held the poller role last. A sibling still
    // flushing at shutdown can be parked until its next timer (seconds away)
    // while its sockets' readiness sits unread in the poller: wake every
    // sibling so one of them takes the role. `unpark` is sticky, so a sibling
    // that has not parked yet returns from its park at once.
    for w in shared.workers.iter().filter(|w| w.idx != me.idx) {
        w.force_wake();
    }
    // Dropping the state closes whatever sources are left (none after an
    // orderly exit).
    drop(exit);
    // Anything still queued can no longer run: new sources are told so
    // (connections close their mailboxes, so senders see `Closed`).
    me.take(&mut tasks);
    for task in tasks.drain(..) {
        match task {
            Task::Spawn(new) => {
                me.load.sub();
                S::abandon(new);
            }
            // A move is admitted like a spawn, so it is queued ahead of
            // `Shutdown`; one left here (shutdown's admission wait is
            // bounded) is dropped, and its source tells its handles it is
            // closed.
            Task::Adopt(moved) => {
                me.load.sub();
                drop(moved);
            }
            _ => {}
        }
    }
}

impl<S: Source> WorkerShared<S> {
    /// Parks the calling worker until a task arrives or `wait` passes.
    fn park_until_work(&self, wait: Option<Duration>) {
        if !self.parking().prepare_park() {
            return; // work arrived
        }
        match wait {
            Some(d) if d.is_zero() => {}
            Some(d) => std::thread::park_timeout(d),
            None => std::thread::park(),
        }
        self.parking().unparked();
    }
}
