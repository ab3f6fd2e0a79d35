//! The connections a worker runs, as metrics snapshots see them: bytes and
//! system calls are counted once, per connection (`ConnShared::counters`,
//! already kept for `Stats`), and a snapshot sums the live connections and
//! the totals of those that are gone; the read-buffer and write-queue
//! gauges are the sums over the live connections of what each published
//! at the end of its last turn and of its write reservations
//! (`ConnShared::queued`, what `Stats::write_queued` reports). So the read and write paths pay
//! nothing for the reactor-wide byte and syscall counts; a connection pays
//! one uncontended lock when it starts and one when it finishes (or its
//! actor is dropped unfinished),
//! and a snapshot locks each worker's registry once.

use crate::conn::shared::ConnShared;
use parking_lot::Mutex;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One worker's live connections and the totals of its finished ones.
#[derive(Default)]
pub(crate) struct Live {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Indexed by the actor's slot in its worker's slab (its token's
    /// slot, which the actor knows): adding and removing
    /// touch only that entry — a swap-remove would write the index of the
    /// connection moved into the hole, a cache miss on another
    /// connection's state at every close.
    conns: Vec<Option<Arc<ConnShared>>>,
    gone: [u64; 4],
}

fn counts(c: &ConnShared) -> [u64; 4] {
    let k = &c.counters;
    [
        k.bytes_read.load(Ordering::Relaxed),
        k.bytes_written.load(Ordering::Relaxed),
        k.read_calls.load(Ordering::Relaxed),
        k.write_calls.load(Ordering::Relaxed),
    ]
}

impl Live {
    /// The actor for `c` started, in slab slot `slot` (vacant until it is
    /// removed).
    pub(crate) fn add(&self, c: &Arc<ConnShared>, slot: usize) {
        let mut g = self.inner.lock();
        if g.conns.len() <= slot {
            g.conns.resize(slot + 1, None);
        }
        g.conns[slot] = Some(c.clone());
    }

    /// The actor for `c` is gone: its counts move to the totals (under
    /// the same lock a snapshot takes, so it is counted exactly once).
    pub(crate) fn remove(&self, c: &ConnShared, slot: usize) {
        let mut g = self.inner.lock();
        let Some(entry) = g
            .conns
            .get_mut(slot)
            .filter(|x| x.as_deref().is_some_and(|x| std::ptr::eq(x, c)))
        else {
            return; // never added
        };
        *entry = None;
        for (t, n) in g.gone.iter_mut().zip(counts(c)) {
            *t += n;
        }
    }

    /// Appends a handle to each live connection to `out` (`Reactor::connections`).
    pub(crate) fn handles(&self, out: &mut Vec<crate::conn::Connection>) {
        let g = self.inner.lock();
        out.extend(
            g.conns
                .iter()
                .flatten()
                .map(|c| crate::conn::Connection::from_shared(c.clone())),
        );
    }

    pub(crate) fn collect(&self, m: &mut crate::metrics::Metrics) {
        let g = self.inner.lock();
        let mut sum = g.gone;
        let (mut rb, mut wq) = (0u64, 0u64);
        for c in g.conns.iter().flatten() {
            for (t, n) in sum.iter_mut().zip(counts(c)) {
                *t += n;
            }
            rb += c.counters.read_buffered.load(Ordering::Relaxed) as u64;
            wq += c.queued.load(Ordering::Relaxed) as u64;
        }
        drop(g);
        m.read_buffered_bytes += rb;
        m.write_queued_bytes += wq;
        m.bytes_read += sum[0];
        m.bytes_written += sum[1];
        m.read_calls += sum[2];
        m.write_calls += sum[3];
    }
}

impl super::Core {
    /// Takes the connection out of its worker's registry (once): when it
    /// finishes — nothing is counted on it after that, and a handle can no
    /// longer be made from the registry, so `finish` can tell whether the
    /// actor holds the only reference — or when an actor that never
    /// finished is dropped.
    pub(super) fn unlist(&mut self) {
        if std::mem::take(&mut self.listed) {
            self.shared
                .worker
                .source_shared
                .remove(&self.shared, self.token.slot());
        }
    }
}

impl Drop for super::Core {
    /// However the actor ends (closed, aborted, or dropped with its
    /// worker), its connection leaves the registry.
    fn drop(&mut self) {
        self.unlist();
        if self.phase != super::Phase::Closed {
            // Dropped without finishing (a panic inside netactor's own
            // start, or a worker thread that died): handles must see
            // `Closed` rather than have their posts sit in a mailbox no
            // turn will take; what was posted is dropped, so its replies
            // see the connection gone.
            drop(ConnShared::close_mailbox(&mut self.shared));
        }
        // Out of the registry: unless a handle holds it, the allocation
        // serves this thread's next accepted connection.
        ConnShared::recycle(&mut self.shared);
    }
}
