//! The Linux/Android backend: an epoll set and an eventfd waker, both owned
//! here (mio's selector has the same shape).
//!
//! Why not `polling` on Linux: its `wait` spends five syscalls per call
//! (timerfd set and re-arm, notifier clear and re-arm) where one
//! `epoll_wait` suffices, and it cannot ask for `EPOLLRDHUP`. Reaching into
//! its epoll descriptor and private notifier key instead (as an earlier
//! version did) would break silently on any 3.x release that changed them.

use super::notify::NotifyFlag;
use super::{AsSource, Ready, WAIT_BATCH};
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags};
use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

/// The eventfd's key: never a token (tokens have a worker or listener tag
/// in their upper bits and a slot below; all-ones is neither).
const WAKER_KEY: u64 = u64::MAX;

/// A listener's interest: readable, edge-triggered. The accept loop takes
/// connections until `EAGAIN` (a new connection then raises a new edge), so
/// a burst costs no `epoll_ctl` — a oneshot registration cost one re-arm
/// per wake-up (mio's listeners are edge-triggered too). While accepting
/// pauses (a limit, out of descriptors), [`Poller::quiet_listener`] turns
/// the interest off, so a paused listener wakes nobody.
const LISTENER: EventFlags = EventFlags::IN.union(EventFlags::ET);

/// A connection's interest before writability is asked for.
const STREAM: EventFlags = EventFlags::IN
    .union(EventFlags::RDHUP)
    .union(EventFlags::ET);

/// A connection's interest, writability included or not.
fn stream_interest(writable: bool) -> EventFlags {
    if writable {
        STREAM.union(EventFlags::OUT)
    } else {
        STREAM
    }
}

/// Whether a listener must be re-armed after every burst (oneshot).
pub(crate) const LISTENER_ONESHOT: bool = false;
/// Whether closing a connection's (never duplicated) descriptor also takes
/// it out of the poller, so the explicit delete can be skipped.
pub(crate) const CLOSE_DEREGISTERS: bool = true;

pub(crate) struct Poller {
    epoll: OwnedFd,
    /// Registered edge-triggered for reading and never read: every write is
    /// a new edge, so one `epoll_wait` reports it (mio's Linux waker does
    /// the same). Its counter would only overflow after 2^64 − 2 writes
    /// without a read; `notify` resets it then.
    waker: OwnedFd,
    /// A wake-up is written and not yet seen by a wait: later `notify` calls
    /// are free (`sys/notify.rs` has the rule and why it is safe).
    pending: NotifyFlag,
    #[cfg(test)]
    pub(crate) tally: super::Tally,
}

impl Poller {
    pub(crate) fn new() -> io::Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let waker = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(
            &epoll,
            &waker,
            EventData::new_u64(WAKER_KEY),
            EventFlags::IN | EventFlags::ET,
        )?;
        Ok(Poller {
            epoll,
            waker,
            pending: NotifyFlag::default(),
            #[cfg(test)]
            tally: Default::default(),
        })
    }

    /// Registers a connection's descriptor: edge-triggered, `EPOLLRDHUP` (so
    /// a FIN that came with the data is seen without the `recv` that would
    /// only say EAGAIN), and writability only if `writable`. A socket is
    /// writable from the start, so asking for it at once raises an event
    /// that says nothing new — for a short connection, a turn and often a
    /// hand-off to its worker; [`watch_writable`](Self::watch_writable)
    /// asks for it once a write first blocks. Closing the (never
    /// duplicated) descriptor also removes it, so a forgotten `delete`
    /// cannot leave a stale registration behind.
    pub(crate) fn add_stream(
        &self,
        src: &impl AsSource,
        key: usize,
        writable: bool,
    ) -> io::Result<()> {
        super::tally!(self, ctl_add);
        epoll::add(
            &self.epoll,
            src.as_fd(),
            EventData::new_u64(key as u64),
            stream_interest(writable),
        )?;
        Ok(())
    }

    /// Adds writability to a connection's interest (after its first blocked
    /// write). Modifying re-checks readiness, so room that came since the
    /// write blocked is reported, not lost.
    pub(crate) fn watch_writable(&self, src: &impl AsSource, key: usize) -> io::Result<()> {
        self.rekey_stream(src, key, true)
    }

    /// Gives a registered connection's descriptor a new key (its source
    /// moved to another worker), with the interest it had. Modifying
    /// re-checks readiness, so an edge reported under the old key (stale
    /// now) is reported again under the new one if it still holds.
    pub(crate) fn rekey_stream(
        &self,
        src: &impl AsSource,
        key: usize,
        writable: bool,
    ) -> io::Result<()> {
        super::tally!(self, ctl_mod);
        epoll::modify(
            &self.epoll,
            src.as_fd(),
            EventData::new_u64(key as u64),
            stream_interest(writable),
        )?;
        Ok(())
    }

    /// Registers a listener: readable, edge-triggered (see [`LISTENER`]).
    pub(crate) fn add_listener(&self, src: &impl AsSource, key: usize) -> io::Result<()> {
        super::tally!(self, ctl_add);
        epoll::add(
            &self.epoll,
            src.as_fd(),
            EventData::new_u64(key as u64),
            LISTENER,
        )?;
        Ok(())
    }

    /// Turns a listener's interest back on; readiness already there (a
    /// backlog left behind) is reported at once.
    pub(crate) fn rearm_listener(&self, src: &impl AsSource, key: usize) -> io::Result<()> {
        super::tally!(self, ctl_mod);
        epoll::modify(
            &self.epoll,
            src.as_fd(),
            EventData::new_u64(key as u64),
            LISTENER,
        )?;
        Ok(())
    }

    /// Turns a listener's interest off while accepting pauses (until
    /// [`rearm_listener`](Self::rearm_listener)).
    pub(crate) fn quiet_listener(&self, src: &impl AsSource, key: usize) -> io::Result<()> {
        super::tally!(self, ctl_mod);
        epoll::modify(
            &self.epoll,
            src.as_fd(),
            EventData::new_u64(key as u64),
            EventFlags::empty(),
        )?;
        Ok(())
    }

    pub(crate) fn delete(&self, src: &impl AsSource) -> io::Result<()> {
        super::tally!(self, ctl_del);
        epoll::delete(&self.epoll, src.as_fd())?;
        Ok(())
    }

    /// Ends the current (or the next) `wait`, from any thread.
    pub(crate) fn notify(&self) -> io::Result<()> {
        if !self.pending.should_write() {
            return Ok(()); // a wake-up is already on its way
        }
        match rustix::io::write(&self.waker, &1u64.to_ne_bytes()) {
            Ok(_) => Ok(()),
            Err(rustix::io::Errno::AGAIN) => {
                // The counter is full (2^64 − 2 unread writes): empty it and
                // write again. Never seen in practice; correct anyway.
                let mut buf = [0u8; 8];
                let _ = rustix::io::read(&self.waker, &mut buf);
                rustix::io::write(&self.waker, &1u64.to_ne_bytes())?;
                Ok(())
            }
            Err(e) => {
                self.pending.write_failed();
                Err(e.into())
            }
        }
    }

    /// One `epoll_wait` (at most `timeout`; `None` blocks), appending what it
    /// found to `out`. Returns whether a [`notify`](Self::notify) ended it.
    #[inline]
    pub(crate) fn wait(&self, out: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<bool> {
        let ts = timeout.map(|d| rustix::event::Timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as _,
            tv_nsec: d.subsec_nanos() as _,
        });
        // On the stack: rustix's event type is not `Send`, and the poller
        // role (with its buffers) moves between threads.
        let mut raw = [std::mem::MaybeUninit::<epoll::Event>::uninit(); WAIT_BATCH];
        let (got, _) = epoll::wait(&self.epoll, &mut raw, ts.as_ref())?;
        let mut notified = false;
        for ev in got.iter() {
            let key = ev.data.u64();
            if key == WAKER_KEY {
                notified = true;
                continue;
            }
            let f = ev.flags;
            out.push(Ready {
                key: key as usize,
                readable: f.intersects(
                    EventFlags::IN
                        | EventFlags::HUP
                        | EventFlags::ERR
                        | EventFlags::PRI
                        | EventFlags::RDHUP,
                ),
                writable: f.intersects(EventFlags::OUT | EventFlags::HUP | EventFlags::ERR),
                hup: f.intersects(EventFlags::RDHUP | EventFlags::HUP | EventFlags::ERR),
            });
        }
        if notified {
            // Seen, before the caller looks at its queues: the next `notify`
            // must write again.
            self.pending.seen();
        }
        Ok(notified)
    }
}
