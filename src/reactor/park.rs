//! How a worker goes to sleep and how other threads wake it — the one
//! protocol every hand-over of work (mail, readiness, new connections)
//! relies on.
//!
//! A worker sleeps in one of two places: parked (`thread::park`) or, when
//! it holds the poller role, blocked in the poller's wait. Before it sleeps
//! it *publishes* where (`parked` / `polling`) and only then looks at its
//! queue a last time; a thread that queues work first publishes the new
//! length and only then reads where the worker sleeps. With `SeqCst` on
//! both sides one of the two always sees the other: either the worker sees
//! the work, or the waker sees the worker asleep and unparks it (or
//! notifies the poller). Looking before publishing loses wake-ups: the model
//! test below deadlocks then.

use crate::sync::{AtomicBool, AtomicUsize, Ordering};

/// A worker's sleep state, as other threads see it.
#[derive(Default)]
pub(crate) struct Parking {
    /// Tasks queued; stored under the queue's lock by whoever changed it.
    queued: AtomicUsize,
    /// Parked, or about to park.
    parked: AtomicBool,
    /// Holds the poller role and may be blocked in its wait.
    polling: AtomicBool,
}

/// What a thread that queued work must do so that the worker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The worker is parked (or about to be): `unpark` its thread.
    Unpark,
    /// The worker may be blocked in the poller's wait: `notify` the poller.
    Notify,
    /// The worker is running: it looks at its queue before it sleeps.
    Nothing,
}

impl Parking {
    /// Publishes the queue's new length (call under the queue's lock).
    #[inline]
    pub(crate) fn published(&self, len: usize) {
        self.queued.store(len, Ordering::SeqCst);
    }

    #[inline]
    pub(crate) fn has_work(&self) -> bool {
        self.queued.load(Ordering::SeqCst) > 0
    }

    /// After publishing new work: how to make sure the worker sees it. At
    /// most one waker unparks a parked worker (`swap`).
    #[inline]
    pub(crate) fn wake(&self) -> Wake {
        if self.parked.swap(false, Ordering::SeqCst) {
            Wake::Unpark
        } else if self.polling.load(Ordering::SeqCst) {
            Wake::Notify
        } else {
            Wake::Nothing
        }
    }

    /// Whether a sibling may be woken to take over polling.
    #[inline]
    pub(crate) fn is_parked(&self) -> bool {
        self.parked.load(Ordering::SeqCst)
    }

    /// The worker is about to park: publishes it, then looks at the queue.
    /// `false`: work arrived, do not park.
    #[inline]
    pub(crate) fn prepare_park(&self) -> bool {
        self.parked.store(true, Ordering::SeqCst);
        if self.has_work() {
            self.parked.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Back from `park` (woken, timed out or spurious).
    #[inline]
    pub(crate) fn unparked(&self) {
        self.parked.store(false, Ordering::SeqCst);
    }

    /// The worker holds the poller role and is about to wait: publishes it,
    /// then looks at the queue. `false`: work arrived, do not block.
    #[inline]
    pub(crate) fn begin_polling(&self) -> bool {
        self.polling.store(true, Ordering::SeqCst);
        !self.has_work()
    }

    #[inline]
    pub(crate) fn end_polling(&self) {
        self.polling.store(false, Ordering::SeqCst);
    }
}

/// Model tests: `RUSTFLAGS="--cfg netactor_shuttle" cargo test --lib model_`
/// (see `crate::sync`). Each explores thousands of random schedules and
/// fails with a deadlock or an assertion if work can be lost.
#[cfg(all(test, netactor_shuttle))]
mod model {
    use super::*;
    use crate::sync::Mutex;
    use crate::sys::notify::NotifyFlag;
    use shuttle::sync::Arc;
    use shuttle::thread;

    /// The poller of the model: an edge-triggered eventfd that is never
    /// read (`kernel_edge`), the `NotifyFlag` that spares writes, and the
    /// thread blocked in its wait, if any.
    #[derive(Default)]
    struct Poller {
        flag: NotifyFlag,
        kernel_edge: AtomicBool,
        waiter: Mutex<Option<thread::Thread>>,
    }

    impl Poller {
        fn notify(&self) {
            if self.flag.should_write() {
                self.kernel_edge.store(true, Ordering::SeqCst);
                if let Some(t) = self.waiter.lock().as_ref() {
                    t.unpark();
                }
            }
        }

        /// Blocks until a wake-up edge (no timeout: a lost wake-up is a
        /// deadlock shuttle reports).
        fn wait(&self) {
            *self.waiter.lock() = Some(thread::current());
            while !self.kernel_edge.swap(false, Ordering::SeqCst) {
                thread::park();
            }
            *self.waiter.lock() = None;
            self.flag.seen();
        }
    }

    struct Worker {
        queue: Mutex<Vec<u32>>,
        parking: Parking,
        /// `unpark` for this worker's own park (separate from the poller's
        /// wake-up, as a thread's park token is from an eventfd).
        unparked: AtomicBool,
        thread: Mutex<Option<thread::Thread>>,
    }

    impl Worker {
        fn push(&self, task: u32, poller: &Poller) {
            {
                let mut q = self.queue.lock();
                q.push(task);
                self.parking.published(q.len());
            }
            match self.parking.wake() {
                Wake::Unpark => {
                    self.unparked.store(true, Ordering::SeqCst);
                    if let Some(t) = self.thread.lock().as_ref() {
                        t.unpark();
                    }
                }
                Wake::Notify => poller.notify(),
                Wake::Nothing => {}
            }
        }

        fn take(&self) -> Vec<u32> {
            let mut q = self.queue.lock();
            self.parking.published(0);
            std::mem::take(&mut *q)
        }
    }

    /// Two workers share one poller role; two threads queue work for both.
    /// Every task must run: a lost wake-up leaves a worker asleep with work
    /// queued, and since nothing times out in the model, shuttle reports a
    /// deadlock.
    fn two_workers_two_pushers() {
        const PER_PUSHER: u32 = 2;
        let poller = Arc::new(Poller::default());
        let role = Arc::new(Mutex::new(()));
        let workers: Vec<Arc<Worker>> = (0..2)
            .map(|_| {
                Arc::new(Worker {
                    queue: Mutex::new(Vec::new()),
                    parking: Parking::default(),
                    unparked: AtomicBool::new(false),
                    thread: Mutex::new(None),
                })
            })
            .collect();
        let expected_per_worker = PER_PUSHER as usize * 2 / 2;
        let mut handles = Vec::new();
        for w in &workers {
            let (w, poller, role) = (w.clone(), poller.clone(), role.clone());
            handles.push(thread::spawn(move || {
                *w.thread.lock() = Some(thread::current());
                let mut done = 0;
                while done < expected_per_worker {
                    let got = w.take();
                    if !got.is_empty() {
                        done += got.len();
                        continue;
                    }
                    // Idle: take the poller role if it is free, else park.
                    if let Some(_role) = role.try_lock() {
                        if w.parking.begin_polling() {
                            poller.wait();
                        }
                        w.parking.end_polling();
                    } else if w.parking.prepare_park() {
                        while !w.unparked.swap(false, Ordering::SeqCst) {
                            thread::park();
                        }
                        w.parking.unparked();
                    }
                }
                // Done: a sibling may still be blocked in the poller's wait
                // with its work in flight; it is woken by its pushers.
            }));
        }
        for p in 0..2u32 {
            let (workers, poller) = (workers.clone(), poller.clone());
            handles.push(thread::spawn(move || {
                for i in 0..PER_PUSHER {
                    // Pusher p gives task i to worker (p + i) % 2: each
                    // worker gets PER_PUSHER tasks in all.
                    workers[((p + i) % 2) as usize].push(p * 10 + i, &poller);
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn model_wake_ups_are_never_lost() {
        shuttle::check_random(two_workers_two_pushers, 20_000);
    }

    #[test]
    fn model_wake_ups_are_never_lost_pct() {
        shuttle::check_pct(two_workers_two_pushers, 20_000, 3);
    }
}
