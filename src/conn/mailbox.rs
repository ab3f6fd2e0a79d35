//! A connection's mailbox: messages from any thread, taken by the actor in
//! posting order, and at most one scheduling task in flight however many
//! messages are posted.
//!
//! The protocol: `post` pushes under the lock, sets `has_mail`, and
//! schedules the actor only if it was not scheduled already; `take` clears
//! `has_mail` and `scheduled` under the same lock as it takes every
//! message. So a message is either taken by a turn already due, or its
//! `post` found `scheduled` false and scheduled a new one. The actor's turn
//! reads `has_mail` without the lock to skip the common empty case; a stale
//! `false` there only means the message is taken by the turn its `post`
//! scheduled. Deciding whether to schedule in another critical section
//! than the push strands messages (a take can run in between): the model
//! test below fails then.

use crate::sync::{AtomicBool, Mutex, Ordering};
use std::collections::VecDeque;

pub(crate) struct Mailbox<M> {
    msgs: Mutex<VecDeque<M>>,
    /// A turn is due to take the messages. Read and written only with
    /// `msgs` locked (the lock orders it; an atomic only so that it packs
    /// beside the lock: one connection's mailbox is 48 bytes).
    scheduled: AtomicBool,
    /// No more messages are accepted. Locked like `scheduled`.
    closed: AtomicBool,
    /// Messages are waiting: a lock-free hint (`take` is the authority).
    has_mail: AtomicBool,
}

/// What a `post` found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Posted<M> {
    /// Queued; a turn is already due to take it.
    Queued,
    /// Queued; the caller must schedule the actor's turn.
    Schedule,
    /// The mailbox is closed: the message comes back.
    Closed(M),
}

impl<M> Mailbox<M> {
    pub(crate) fn new() -> Self {
        Mailbox {
            msgs: Mutex::new(VecDeque::new()),
            scheduled: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            has_mail: AtomicBool::new(false),
        }
    }

    /// As new, for a connection whose shared state is recycled (nothing
    /// else holds it). The queue keeps its allocation, if any. It is empty
    /// after `close`; an actor dropped without one (its worker exiting)
    /// may leave messages, which must not reach the next connection.
    pub(crate) fn reset(&mut self) {
        self.msgs.get_mut().clear();
        self.scheduled.store(false, Ordering::Relaxed);
        self.closed.store(false, Ordering::Relaxed);
        self.has_mail.store(false, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn post(&self, msg: M) -> Posted<M> {
        let mut msgs = self.msgs.lock();
        if self.closed.load(Ordering::Relaxed) {
            return Posted::Closed(msg);
        }
        msgs.push_back(msg);
        self.has_mail.store(true, Ordering::Release);
        if self.scheduled.swap(true, Ordering::Relaxed) {
            Posted::Queued
        } else {
            Posted::Schedule
        }
    }

    /// Whether messages are waiting (a hint: `take` is the authority).
    #[inline]
    pub(crate) fn has_mail(&self) -> bool {
        self.has_mail.load(Ordering::Acquire)
    }

    /// Takes every waiting message into `into` (which should be empty; its
    /// allocation is swapped in for reuse).
    #[inline]
    pub(crate) fn take(&self, into: &mut VecDeque<M>) {
        if !self.has_mail.load(Ordering::Acquire) {
            return;
        }
        let mut msgs = self.msgs.lock();
        self.has_mail.store(false, Ordering::Release);
        std::mem::swap(&mut *msgs, into);
        self.scheduled.store(false, Ordering::Relaxed);
    }

    /// Closes the mailbox: later posts get their message back. Returns what
    /// was still waiting, if anything.
    pub(crate) fn close(&self) -> Option<VecDeque<M>> {
        let mut msgs = self.msgs.lock();
        self.closed.store(true, Ordering::Relaxed);
        self.has_mail.store(false, Ordering::Release);
        (!msgs.is_empty()).then(|| std::mem::take(&mut *msgs))
    }

    /// [`close`](Self::close) without the lock: `&mut self` proves that
    /// nobody else can post.
    pub(crate) fn close_mut(&mut self) -> Option<VecDeque<M>> {
        self.closed.store(true, Ordering::Relaxed);
        self.has_mail.store(false, Ordering::Relaxed);
        let msgs = self.msgs.get_mut();
        (!msgs.is_empty()).then(|| std::mem::take(msgs))
    }

    pub(crate) fn is_closed(&self) -> bool {
        let _msgs = self.msgs.lock();
        self.closed.load(Ordering::Relaxed)
    }

    /// Runs `f` under the mailbox's lock: orders `f` with every `post`.
    pub(crate) fn locked<R>(&self, f: impl FnOnce() -> R) -> R {
        let _msgs = self.msgs.lock();
        f()
    }
}

#[cfg(all(test, netactor_shuttle))]
mod model {
    use super::*;
    use shuttle::sync::Arc;
    use shuttle::thread;

    /// Two posters, an actor that runs one turn per scheduling task (and
    /// two readiness turns anywhere in between, which take mail too). Once
    /// the posters are done and no task is left, every message must have
    /// been taken exactly once, each poster's in order: mail stranded with
    /// no turn scheduled shows up as a lost message.
    fn posters_and_actor() {
        let mb = Arc::new(Mailbox::<(u32, u32)>::new());
        // The worker's queue of scheduling tasks.
        let tasks = Arc::new(crate::sync::Mutex::new(0usize));
        let mut posters = Vec::new();
        for p in 0..2u32 {
            let (mb, tasks) = (mb.clone(), tasks.clone());
            posters.push(thread::spawn(move || {
                for i in 0..3 {
                    match mb.post((p, i)) {
                        Posted::Schedule => *tasks.lock() += 1,
                        Posted::Queued => {}
                        Posted::Closed(_) => unreachable!(),
                    }
                }
            }));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (mb2, tasks2, stop2) = (mb.clone(), tasks.clone(), stop.clone());
        let actor = thread::spawn(move || {
            let mut got = Vec::new();
            let mut batch = VecDeque::new();
            // Two readiness turns at whatever points the schedule puts them
            // (they take mail too); otherwise a turn only per queued task.
            let mut readiness = 2;
            loop {
                let scheduled = {
                    let mut t = tasks2.lock();
                    let due = *t > 0;
                    if due {
                        *t -= 1;
                    }
                    due
                };
                if scheduled || readiness > 0 {
                    if !scheduled {
                        readiness -= 1;
                    }
                    mb2.take(&mut batch);
                    got.extend(batch.drain(..));
                } else if stop2.load(Ordering::SeqCst) && *tasks2.lock() == 0 {
                    return got;
                }
                thread::yield_now();
            }
        });
        for p in posters {
            p.join().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        let got = actor.join().unwrap();
        for p in 0..2 {
            let mine: Vec<u32> = got.iter().filter(|m| m.0 == p).map(|m| m.1).collect();
            assert_eq!(
                mine,
                vec![0, 1, 2],
                "poster {p}: messages lost or out of order"
            );
        }
    }

    #[test]
    fn model_mail_is_never_stranded() {
        shuttle::check_random(posters_and_actor, 20_000);
        shuttle::check_pct(posters_and_actor, 20_000, 3);
    }
}
