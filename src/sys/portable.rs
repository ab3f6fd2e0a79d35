//! The portable backend: `polling`'s public API (kqueue on macOS and the
//! BSDs; epoll on Linux when the `portable-poller` feature forces it).
//!
//! Connections need edge-triggered readiness (an actor reads and writes
//! until EAGAIN, then waits for the next edge). `polling` offers it where
//! the OS does — epoll and kqueue; on the backends that lack it (IOCP on
//! Windows, event ports on illumos) `Poller::new` fails with `Unsupported`
//! rather than spinning on level-triggered writability: netactor builds
//! there but does not run yet (README, "Platforms").

use super::{AsSource, Ready};
use polling::{Event, Events, PollMode};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub(crate) struct Poller {
    inner: polling::Poller,
    /// `notify` was called since the last wait reported it. `polling` does
    /// not say whether its notifier fired, and the reactor runs its command
    /// queue only when it did.
    notified: AtomicBool,
    /// Reused by every wait; only the holder of the poller role waits.
    events: parking_lot::Mutex<Events>,
    #[cfg(test)]
    pub(crate) tally: super::Tally,
}

/// A connection's interest under `key`, writability included or not.
fn stream_event(key: usize, writable: bool) -> Event {
    if writable {
        Event::all(key)
    } else {
        Event::readable(key)
    }
}

/// Listeners are registered oneshot here: re-armed after every burst.
pub(crate) const LISTENER_ONESHOT: bool = true;
/// `polling` requires a source to be deleted before it is closed.
pub(crate) const CLOSE_DEREGISTERS: bool = false;

impl Poller {
    pub(crate) fn new() -> io::Result<Self> {
        let inner = polling::Poller::new()?;
        if !inner.supports_edge() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "netactor needs edge-triggered readiness, which this platform's \
                 polling backend does not offer",
            ));
        }
        Ok(Poller {
            inner,
            notified: AtomicBool::new(false),
            events: parking_lot::Mutex::new(Events::with_capacity(
                std::num::NonZeroUsize::new(super::WAIT_BATCH).expect("non-zero"),
            )),
            #[cfg(test)]
            tally: Default::default(),
        })
    }

    /// Registers a connection: edge-triggered, writability only if
    /// `writable` (see the epoll backend's `add_stream`).
    pub(crate) fn add_stream(
        &self,
        src: &impl AsSource,
        key: usize,
        writable: bool,
    ) -> io::Result<()> {
        super::tally!(self, ctl_add);
        let ev = stream_event(key, writable);
        // SAFETY: `polling` requires the source to be deleted before it is
        // closed. A connection deletes its descriptors when it finishes
        // (`Stream::deregister`); on the only backends `new` accepts (epoll
        // and kqueue) closing a descriptor also removes it from the kernel
        // set and `polling` keeps no state of its own per source, so a
        // connection dropped by a panic leaves nothing dangling either.
        unsafe { self.inner.add_with_mode(borrow(src), ev, PollMode::Edge) }
    }

    /// Adds writability to a connection's interest (after its first
    /// blocked write); readiness already there is reported.
    pub(crate) fn watch_writable(&self, src: &impl AsSource, key: usize) -> io::Result<()> {
        self.rekey_stream(src, key, true)
    }

    /// Gives a registered connection a new key, with the interest it had
    /// (see the epoll backend's `rekey_stream`).
    pub(crate) fn rekey_stream(
        &self,
        src: &impl AsSource,
        key: usize,
        writable: bool,
    ) -> io::Result<()> {
        super::tally!(self, ctl_mod);
        self.inner
            .modify_with_mode(src, stream_event(key, writable), PollMode::Edge)
    }

    /// Registers a listener: readable, reported once until re-armed.
    pub(crate) fn add_listener(&self, src: &impl AsSource, key: usize) -> io::Result<()> {
        super::tally!(self, ctl_add);
        // SAFETY: as above; a listener is also deleted explicitly
        // (RemoveListener, StopAccepting, Shutdown) before it is dropped.
        unsafe { self.inner.add(borrow(src), Event::readable(key)) }
    }

    pub(crate) fn rearm_listener(&self, src: &impl AsSource, key: usize) -> io::Result<()> {
        super::tally!(self, ctl_mod);
        self.inner.modify(src, Event::readable(key))
    }

    /// Nothing to do: a oneshot listener reports nothing until re-armed.
    pub(crate) fn quiet_listener(&self, _src: &impl AsSource, _key: usize) -> io::Result<()> {
        Ok(())
    }

    pub(crate) fn delete(&self, src: &impl AsSource) -> io::Result<()> {
        super::tally!(self, ctl_del);
        self.inner.delete(src)
    }

    pub(crate) fn notify(&self) -> io::Result<()> {
        self.notified.store(true, Ordering::SeqCst);
        self.inner.notify()
    }

    pub(crate) fn wait(&self, out: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<bool> {
        let mut events = self.events.lock();
        events.clear();
        self.inner.wait(&mut events, timeout)?;
        // `polling` does not say whether the peer hung up: assume it may
        // have (the actor then reads until EAGAIN, which is always safe).
        out.extend(events.iter().map(|ev| Ready {
            key: ev.key,
            readable: ev.readable,
            writable: ev.writable,
            hup: true,
        }));
        Ok(self.notified.swap(false, Ordering::SeqCst))
    }
}

/// The raw descriptor `polling`'s (unsafe) registration takes.
#[cfg(unix)]
fn borrow(src: &impl AsSource) -> std::os::fd::RawFd {
    use std::os::fd::AsRawFd;
    src.as_fd().as_raw_fd()
}
#[cfg(windows)]
fn borrow(src: &impl AsSource) -> std::os::windows::io::RawSocket {
    use std::os::windows::io::AsRawSocket;
    src.as_socket().as_raw_socket()
}
