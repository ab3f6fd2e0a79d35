//! The connections a worker runs, as metrics snapshots see them: bytes and
//! system calls are counted once, per connection (`ConnShared::counters`,
//! already kept for `Stats`), and a snapshot sums the live connections and
//! the totals of those that are gone; the read-buffer and write-queue
//! gauges are the sums over the live connections of what each published
//! at the end of its last turn and of its write reservations
//! (`ConnShared::queued`, what `Stats::write_queued` reports). So the read and write paths pay
//! nothing for the reactor-wide byte and syscall counts; a connection pays
//! one uncontended lock when it starts and one when it finishes (or its
//! actor is dropped unfinished), and no reference count: an entry is a
//! pointer its actor keeps valid (see [`Listed`]). A snapshot locks each
//! worker's registry once.

use crate::conn::shared::{ConnRef, ConnShared};
use parking_lot::Mutex;
use std::sync::atomic::Ordering;

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
    conns: Vec<Option<Listed>>,
    /// Connections on their way here from another worker (no slot yet:
    /// `Token::unplaced`), few and brief.
    arriving: Vec<Listed>,
    gone: [u64; 4],
}

/// A listed connection's shared state, not counted: its actor holds a
/// reference from before it is listed until after it is taken out
/// ([`Core::unlist`](super::Core::unlist), which its `Drop` calls before
/// the reference goes), and both happen under the registry's lock — so
/// while the lock is held, every entry points to live shared state. A
/// counted entry cost two locked instructions per connection (the count
/// up at the start, down at the finish), and kept the actor from knowing
/// at the finish that it held the only reference.
struct Listed(*const ConnShared);

// SAFETY: a `Listed` is only dereferenced under the registry's lock, while
// its actor keeps the pointee alive (above); `ConnShared` is `Send + Sync`.
unsafe impl Send for Listed {}

impl Listed {
    fn get(&self) -> &ConnShared {
        // SAFETY: only reached through the registry's lock, while the
        // entry is in it: the actor's reference keeps it alive (`Listed`).
        unsafe { &*self.0 }
    }
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
    pub(crate) fn add(&self, c: &ConnRef, slot: usize) {
        // From `as_ptr`: the pointer keeps its provenance over the whole
        // allocation, counts included (`handles` makes references from it).
        let entry = Listed(triomphe::Arc::as_ptr(c));
        let mut g = self.inner.lock();
        if g.conns.len() <= slot {
            g.conns.resize_with(slot + 1, || None);
        }
        g.conns[slot] = Some(entry);
    }

    /// The actor for `c` is gone: its counts move to the totals (under
    /// the same lock a snapshot takes, so it is counted exactly once).
    /// `slot` is `UNPLACED_SLOT` for one that was on its way here.
    pub(crate) fn remove(&self, c: &ConnShared, slot: usize) {
        let mut g = self.inner.lock();
        if g.take(c, slot).is_none() {
            return; // never added
        }
        for (t, n) in g.gone.iter_mut().zip(counts(c)) {
            *t += n;
        }
    }

    /// The actor for `c` leaves `from` (slot `slot` there) for `to`: its
    /// entry moves to `to`'s arrivals under both registries' locks, taken
    /// in worker order like [`all`](Self::all)'s — so a snapshot finds it
    /// in exactly one, and its counts neither vanish nor double.
    pub(crate) fn transfer(from: (&Live, usize), to: (&Live, usize), c: &ConnShared, slot: usize) {
        let (mut a, mut b);
        if from.1 < to.1 {
            a = from.0.inner.lock();
            b = to.0.inner.lock();
        } else {
            b = to.0.inner.lock();
            a = from.0.inner.lock();
        }
        if let Some(entry) = a.take(c, slot) {
            b.arriving.push(entry);
        }
    }

    /// The actor for `c`, on its way here, took slot `slot`.
    pub(crate) fn arrive(&self, c: &ConnShared, slot: usize) {
        let mut g = self.inner.lock();
        let Some(entry) = g.take(c, crate::reactor::UNPLACED_SLOT) else {
            return;
        };
        if g.conns.len() <= slot {
            g.conns.resize_with(slot + 1, || None);
        }
        g.conns[slot] = Some(entry);
    }

    /// Every registry of a reactor, locked in worker order (the order
    /// [`transfer`](Self::transfer) takes two in): one consistent view.
    fn all<'a>(lives: impl Iterator<Item = &'a Live>) -> Vec<parking_lot::MutexGuard<'a, Inner>> {
        lives.map(|l| l.inner.lock()).collect()
    }

    /// A handle to each live connection of every registry in `lives`
    /// (`Reactor::connections`).
    pub(crate) fn handles<'a>(
        lives: impl Iterator<Item = &'a Live>,
    ) -> Vec<crate::conn::Connection> {
        let all = Self::all(lives);
        let mut out = Vec::new();
        out.extend(all.iter().flat_map(|g| g.listed()).map(|c| {
            // SAFETY: the pointer came from `Arc::as_ptr` (full
            // provenance) and the actor's reference keeps the
            // allocation alive while the lock is held (`Listed`);
            // the new reference is counted.
            let borrowed = unsafe { triomphe::ArcBorrow::from_ptr(c.0) };
            crate::conn::Connection::from_shared(borrowed.clone_arc())
        }));
        out
    }

    /// Adds every registry in `lives` to a snapshot.
    pub(crate) fn collect<'a>(
        lives: impl Iterator<Item = &'a Live>,
        m: &mut crate::metrics::Metrics,
    ) {
        let all = Self::all(lives);
        let mut sum = [0u64; 4];
        let (mut rb, mut wq) = (0u64, 0u64);
        for g in &all {
            for (t, n) in sum.iter_mut().zip(g.gone) {
                *t += n;
            }
            for c in g.listed().map(Listed::get) {
                for (t, n) in sum.iter_mut().zip(counts(c)) {
                    *t += n;
                }
                rb += c.counters.read_buffered.load(Ordering::Relaxed) as u64;
                wq += c.queued.load(Ordering::Relaxed) as u64;
            }
        }
        drop(all);
        m.read_buffered_bytes += rb;
        m.write_queued_bytes += wq;
        m.bytes_read += sum[0];
        m.bytes_written += sum[1];
        m.read_calls += sum[2];
        m.write_calls += sum[3];
    }
}

impl Inner {
    /// Takes `c`'s entry out: from slot `slot`, or from the arrivals for
    /// `UNPLACED_SLOT`.
    fn take(&mut self, c: &ConnShared, slot: usize) -> Option<Listed> {
        if slot == crate::reactor::UNPLACED_SLOT {
            let i = self
                .arriving
                .iter()
                .position(|x| std::ptr::eq(x.get(), c))?;
            return Some(self.arriving.swap_remove(i));
        }
        self.conns
            .get_mut(slot)
            .filter(|x| x.as_ref().is_some_and(|x| std::ptr::eq(x.get(), c)))?
            .take()
    }

    /// Every entry: in a slot, or arriving.
    fn listed(&self) -> impl Iterator<Item = &Listed> {
        self.conns.iter().flatten().chain(self.arriving.iter())
    }
}

impl super::Core {
    /// Takes the connection out of its worker's registry (once): when it
    /// finishes — nothing is counted on it after that, and a handle can no
    /// longer be made from the registry, so `finish` can tell whether the
    /// actor holds the only reference — or when an actor that never
    /// finished is dropped.
    pub(super) fn unlist(&mut self) {
        unlist(&mut self.listed, &self.shared, self.token);
    }
}

fn unlist(listed: &mut bool, shared: &ConnShared, token: crate::reactor::Token) {
    if std::mem::take(listed) {
        shared
            .worker_of(token)
            .source_shared
            .remove(shared, token.slot());
    }
}

impl Drop for super::Core {
    /// However the actor ends (closed, aborted, or dropped with its
    /// worker), its connection leaves the registry.
    fn drop(&mut self) {
        // Taken first, so that a panic below (dropping queued mail runs
        // application closures' drops) still releases the reference.
        // SAFETY: this is the actor's drop: the field is not used again
        // (the rest of this function uses the local).
        let mut shared = unsafe { std::mem::ManuallyDrop::take(&mut self.shared) };
        // Out of the registry before the reference can go (`Listed`).
        unlist(&mut self.listed, &shared, self.token);
        if self.phase != super::Phase::Closed {
            // Dropped without finishing (a panic inside netactor's own
            // start, or a worker thread that died): handles must see
            // `Closed` rather than have their posts sit in a mailbox no
            // turn will take; what was posted is dropped, so its replies
            // see the connection gone.
            drop(ConnShared::close_mailbox(&mut shared));
        }
        // Unless a handle holds it, the allocation serves this thread's
        // next accepted connection.
        ConnShared::recycle(shared);
    }
}
