//! Shutdown admission: a new connection is handed to a worker only while
//! the reactor is not shutting down, and shutdown waits until every hand-over
//! that was admitted is done — so no accepted or connecting connection is
//! ever queued behind a worker that has already exited.
//!
//! The spawner counts itself in, *then* reads the flag; shutdown raises the
//! flag, *then* waits for the count to drop to zero. With `SeqCst` one of
//! the two sees the other: either the spawner sees the flag and backs out,
//! or shutdown sees it counted in and waits for its hand-over. Reading the
//! flag before counting in strands connections: the model test below fails
//! then.

use crate::sync::{AtomicBool, AtomicUsize, Ordering};

#[derive(Default)]
pub(crate) struct Admission {
    in_flight: AtomicUsize,
    closed: AtomicBool,
}

/// Held while one admitted hand-over is in progress.
pub(crate) struct Admitted<'a>(&'a AtomicUsize);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Admission {
    /// Admits one hand-over unless shutdown has begun.
    pub(crate) fn enter(&self) -> Option<Admitted<'_>> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let admitted = Admitted(&self.in_flight);
        if self.closed.load(Ordering::SeqCst) {
            return None; // dropping `admitted` counts back out
        }
        Some(admitted)
    }

    /// Refuses every later hand-over. `false` if it was closed already.
    pub(crate) fn close(&self) -> bool {
        !self.closed.swap(true, Ordering::SeqCst)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Whether admitted hand-overs are still in progress (shutdown waits,
    /// after `close`, until this is false).
    pub(crate) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) > 0
    }
}

#[cfg(all(test, netactor_shuttle))]
mod model {
    use super::*;
    use crate::sync::Mutex;
    use shuttle::sync::Arc;
    use shuttle::thread;

    /// Two spawners hand connections to a worker's queue while shutdown
    /// closes admission, waits, and then lets the worker drain the queue
    /// and exit. Every admitted connection must be in the queue by then.
    fn spawners_and_shutdown() {
        let adm = Arc::new(Admission::default());
        let queue = Arc::new(Mutex::new(Vec::new()));
        let admitted = Arc::new(Mutex::new(Vec::new()));
        let mut spawners = Vec::new();
        for s in 0..2u32 {
            let (adm, queue, admitted) = (adm.clone(), queue.clone(), admitted.clone());
            spawners.push(thread::spawn(move || {
                for i in 0..2 {
                    let id = s * 10 + i;
                    if let Some(_g) = adm.enter() {
                        admitted.lock().push(id);
                        queue.lock().push(id);
                    }
                }
            }));
        }
        // Shutdown: close, wait for admitted hand-overs, then the worker
        // takes what is queued and exits.
        adm.close();
        while adm.busy() {
            thread::yield_now();
        }
        let drained: Vec<u32> = std::mem::take(&mut *queue.lock());
        let admitted_then: Vec<u32> = admitted.lock().clone();
        for id in &admitted_then {
            assert!(
                drained.contains(id),
                "connection {id} admitted but stranded"
            );
        }
        for s in spawners {
            s.join().unwrap();
        }
        // Nothing admitted after the worker exited.
        assert_eq!(
            admitted.lock().len(),
            admitted_then.len(),
            "admitted after shutdown"
        );
    }

    #[test]
    fn model_shutdown_never_strands_an_admitted_connection() {
        shuttle::check_random(spawners_and_shutdown, 20_000);
        shuttle::check_pct(spawners_and_shutdown, 20_000, 3);
    }
}
