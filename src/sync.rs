//! The primitives the small concurrency protocols are written with —
//! `reactor/park.rs`, `reactor/admission.rs`, `conn/mailbox.rs`,
//! `sys/notify.rs`: std's atomics and parking_lot's mutex in a normal build,
//! shuttle's under `--cfg netactor_shuttle`, where the model tests next to
//! each protocol explore thousands of thread interleavings:
//!
//! ```sh
//! RUSTFLAGS="--cfg netactor_shuttle" CARGO_TARGET_DIR=target/shuttle \
//!     cargo test --release --lib model_
//! ```
//!
//! Why shuttle rather than loom: the protocols rely on `SeqCst` loads and
//! stores (a flag published, then a count read, on both sides — Dekker's
//! pattern), which loom does not model (it treats them as acquire/release
//! and reports interleavings `SeqCst` forbids); shuttle explores schedules
//! under sequential consistency, which is what `SeqCst` promises.

#[cfg(not(netactor_shuttle))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[cfg(netactor_shuttle)]
pub(crate) use shuttle::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A mutex whose `lock` cannot fail (a panic while holding it does not
/// poison it, as with parking_lot).
#[derive(Default)]
pub(crate) struct Mutex<T> {
    #[cfg(not(netactor_shuttle))]
    inner: parking_lot::Mutex<T>,
    #[cfg(netactor_shuttle)]
    inner: shuttle::sync::Mutex<T>,
}

#[cfg(not(netactor_shuttle))]
pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;
#[cfg(netactor_shuttle)]
pub(crate) type MutexGuard<'a, T> = shuttle::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex {
            #[cfg(not(netactor_shuttle))]
            inner: parking_lot::Mutex::new(value),
            #[cfg(netactor_shuttle)]
            inner: shuttle::sync::Mutex::new(value),
        }
    }

    #[cfg_attr(not(netactor_shuttle), allow(dead_code))] // the models' poller role
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        #[cfg(not(netactor_shuttle))]
        {
            self.inner.try_lock()
        }
        #[cfg(netactor_shuttle)]
        {
            self.inner.try_lock().ok()
        }
    }

    /// The value, without locking: `&mut self` proves nobody else can.
    pub(crate) fn get_mut(&mut self) -> &mut T {
        #[cfg(not(netactor_shuttle))]
        {
            self.inner.get_mut()
        }
        #[cfg(netactor_shuttle)]
        {
            self.inner.get_mut().unwrap_or_else(|e| e.into_inner())
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(netactor_shuttle))]
        {
            self.inner.lock()
        }
        #[cfg(netactor_shuttle)]
        {
            self.inner.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}
