//! What a connection's handles share with its actor: the mailbox, the write
//! reservation counter and statistics. Everything else is owned by the actor.

use super::actor::{Actor, ReadRequest, StreamDecode};
use super::mailbox::{Mailbox, Posted};
use super::ConnId;
use crate::conn::Ctx;
use crate::error::Inactivity;
use crate::error::{Error, Result};
use crate::reactor::{Task, Token};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A message for a connection actor.
pub(crate) enum Msg {
    /// Bytes already reserved against `wbuf_max`.
    Write(Bytes),
    /// Several buffers of one message, reserved together.
    WriteParts(Vec<Bytes>),
    PushRead(Box<dyn ReadRequest>),
    UnshiftRead(Box<dyn ReadRequest>),
    Streaming(Option<Box<dyn StreamDecode>>),
    StopRead,
    StartRead,
    Shutdown,
    Close,
    SetTimeout(Inactivity, Option<Duration>),
    ResetTimeout(Inactivity),
    Configure(Box<dyn FnOnce(&mut crate::Options) + Send>),
    Call(Box<dyn FnOnce(&mut Ctx<'_>) + Send>),
    StartTls(crate::tls::TlsSetup),
    StopTls,
    /// One `Event::Drain` once the write queue is at or below the mark.
    RequestDrain,
    /// Answer this once the write queue is at or below the mark (no event).
    Drained(crossbeam_channel::Sender<Result<()>>),
    /// Name resolution for the connect finished (posted by the resolver
    /// thread; applies whatever waits ahead of it).
    Resolved(std::io::Result<Vec<SocketAddr>>),
}

/// The worker a connection belongs to, as its handles see it.
pub(crate) type WorkerShared = crate::reactor::WorkerShared<Actor>;
/// Every worker of the connection's reactor, by index.
pub(crate) type Workers = crate::reactor::Workers<Actor>;

/// What a connection's handles can learn about it without a round trip to
/// its worker: addresses once known, TLS facts once the handshake is done.
/// Behind one lock: set a few times in a connection's life, read rarely.
/// Inline in [`ConnShared`], not boxed: almost every connection has
/// addresses, and a box would be one more allocation (and free) per
/// accepted connection than a hand-written loop makes.
#[derive(Default)]
pub(crate) struct ConnInfo {
    pub(crate) local: Option<SocketAddr>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) tls: Option<Arc<crate::tls::TlsInfo>>,
    #[cfg(unix)]
    pub(crate) peer_cred: Option<crate::net::PeerCredentials>,
}

/// Counters a connection keeps, readable from any thread.
#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) read_calls: AtomicU64,
    pub(crate) write_calls: AtomicU64,
    /// Bytes in the read buffer as of the actor's last turn
    /// (`Core::publish`; saturating at 4 GiB: four bytes in every
    /// connection), and when it last read and wrote (`reactor::timers::
    /// stamp`s, stored by each read and write; 0 = never).
    pub(crate) read_buffered: AtomicU32,
    pub(crate) last_read: AtomicU32,
    pub(crate) last_write: AtomicU32,
    /// `TlsState` in bits 0..2, the version (0 none, 1 TLS 1.2, 2 TLS 1.3,
    /// 3 other) in bits 2..4.
    tls: AtomicU8,
}

impl Counters {
    // Only the actor writes the counters, so a load and a store are enough:
    // no read-modify-write (a locked instruction) on the hot path.
    pub(crate) fn add_read(&self, n: usize) {
        bump(&self.bytes_read, n as u64);
        bump(&self.read_calls, 1);
    }

    pub(crate) fn add_write(&self, n: usize) {
        bump(&self.bytes_written, n as u64);
        bump(&self.write_calls, 1);
    }
}

impl Counters {
    /// Records the connection's TLS state (the actor only).
    pub(crate) fn set_tls(&self, state: TlsState, version: Option<rustls::ProtocolVersion>) {
        let v = match version {
            None => 0,
            Some(rustls::ProtocolVersion::TLSv1_2) => 1,
            Some(rustls::ProtocolVersion::TLSv1_3) => 2,
            Some(_) => 3,
        };
        self.tls.store(state as u8 | (v << 2), Ordering::Relaxed);
    }

    fn tls(&self) -> (TlsState, Option<rustls::ProtocolVersion>) {
        let b = self.tls.load(Ordering::Relaxed);
        let state = match b & 3 {
            0 => TlsState::None,
            1 => TlsState::Handshaking,
            2 => TlsState::Established,
            _ => TlsState::Failed,
        };
        let version = match b >> 2 {
            0 => None,
            1 => Some(rustls::ProtocolVersion::TLSv1_2),
            2 => Some(rustls::ProtocolVersion::TLSv1_3),
            _ => Some(rustls::ProtocolVersion::Unknown(0)),
        };
        (state, version)
    }
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// Where a connection's TLS session is (see [`Stats::tls`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TlsState {
    /// No TLS (never started, or stopped with `stoptls`).
    #[default]
    None = 0,
    /// The handshake is under way.
    Handshaking = 1,
    /// The handshake completed.
    Established = 2,
    /// The connection closed before the handshake completed.
    Failed = 3,
}

/// A snapshot of a connection's counters and state, readable from any
/// thread without a round trip to its worker. `read_buffered` is as of the
/// end of the actor's last turn; `last_read` and `last_write` as of its
/// last read and write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes received from the socket (ciphertext under TLS).
    pub bytes_read: u64,
    /// Bytes handed to the kernel (ciphertext under TLS).
    pub bytes_written: u64,
    /// Successful read system calls.
    pub read_calls: u64,
    /// Successful write system calls (each one may carry many queued writes).
    pub write_calls: u64,
    /// Bytes queued for writing and not yet taken by the kernel.
    pub write_queued: usize,
    /// Bytes read and not yet consumed by a decoder (plaintext under TLS).
    pub read_buffered: usize,
    /// When the connection last read from its socket (`None`: never), to
    /// within 20 ms (kept in 10 ms units, and taken from the worker's
    /// clock reading for the turn).
    pub last_read: Option<Instant>,
    /// When the connection last wrote to its socket (`None`: never), to
    /// within 20 ms.
    pub last_write: Option<Instant>,
    /// Where its TLS session is.
    pub tls: TlsState,
    /// The negotiated TLS version, once known.
    pub tls_version: Option<rustls::ProtocolVersion>,
    /// The peer's address (`None` for Unix-domain sockets and pipes, or
    /// while connecting).
    pub peer_addr: Option<SocketAddr>,
}

/// A counted reference to a connection's shared state: triomphe's `Arc`,
/// which has no weak count — whether a reference is the only one is then a
/// load (std's `Arc::get_mut` takes the weak count with a locked
/// compare-and-swap), and the actor asks that twice per connection
/// ([`close_mailbox`](ConnShared::close_mailbox), the recycling in
/// [`new`](ConnShared::new)).
pub(crate) type ConnRef = triomphe::Arc<ConnShared>;

pub(crate) struct ConnShared {
    pub(crate) id: ConnId,
    /// The reactor's workers: the token's worker index says which one runs
    /// the actor now (it may move once it has proved long-lived:
    /// `WorkerCtx::offer_move`).
    workers: Workers,
    /// The actor's token: its worker and slot. Before it starts, the
    /// worker it is assigned to with no slot (`Token::unplaced`).
    pub(crate) token: AtomicUsize,
    /// Messages in posting order, at most one `Task::Mail` in flight
    /// (`mailbox.rs`: the protocol and its model test).
    mailbox: Mailbox<Msg>,
    pub(crate) queued: AtomicUsize,
    pub(crate) wbuf_max: AtomicUsize,
    pub(crate) write_shut: AtomicBool,
    /// `close` was requested: later writes are refused with `Closed`
    /// instead of being accepted and then dropped.
    pub(crate) closing: AtomicBool,
    pub(crate) handles: AtomicUsize,
    pub(crate) close_on_drop: bool,
    pub(crate) counters: Counters,
    info: Mutex<ConnInfo>,
}

/// Allocations of finished connections' shared state a thread keeps for
/// its next accepted ones (see [`ConnShared::new`]).
const RECYCLED_MAX: usize = 64;

thread_local! {
    /// This thread's recycled shared states: each held by nothing else.
    static RECYCLED: std::cell::RefCell<Vec<triomphe::UniqueArc<ConnShared>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl ConnShared {
    /// A new connection's shared state. In the allocation of one that
    /// finished on this thread, when there is one: a short-lived
    /// connection then costs no `malloc` and `free` for it (the hand-written
    /// loops it is measured against allocate nothing per connection).
    pub(crate) fn new(
        id: ConnId,
        workers: &Workers,
        worker: usize,
        wbuf_max: usize,
        close_on_drop: bool,
        info: ConnInfo,
    ) -> ConnRef {
        let reused = RECYCLED.try_with(|r| r.borrow_mut().pop()).ok().flatten();
        if let Some(mut kept) = reused {
            kept.reset(id, workers, worker, wbuf_max, close_on_drop, info);
            return kept.shareable();
        }
        triomphe::Arc::new(ConnShared {
            id,
            workers: workers.clone(),
            token: AtomicUsize::new(Token::unplaced(worker).0),
            mailbox: Mailbox::new(),
            queued: AtomicUsize::new(0),
            wbuf_max: AtomicUsize::new(wbuf_max),
            write_shut: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            handles: AtomicUsize::new(0),
            close_on_drop,
            counters: Counters::default(),
            info: Mutex::new(info),
        })
    }

    /// As [`new`](Self::new) builds it, in place. Every field is named (no
    /// `..`): a field added later cannot be left over from the last
    /// connection.
    fn reset(
        &mut self,
        new_id: ConnId,
        new_workers: &Workers,
        new_worker: usize,
        new_wbuf_max: usize,
        new_close_on_drop: bool,
        new_info: ConnInfo,
    ) {
        let ConnShared {
            id,
            workers,
            token,
            mailbox,
            queued,
            wbuf_max,
            write_shut,
            closing,
            handles,
            close_on_drop,
            counters,
            info,
        } = self;
        *id = new_id;
        // The same reactor's, unless this thread ran another reactor's
        // connections before: no reference count touched.
        if !Arc::ptr_eq(workers, new_workers) {
            *workers = new_workers.clone();
        }
        *token = AtomicUsize::new(Token::unplaced(new_worker).0);
        mailbox.reset();
        *queued = AtomicUsize::new(0);
        *wbuf_max = AtomicUsize::new(new_wbuf_max);
        *write_shut = AtomicBool::new(false);
        *closing = AtomicBool::new(false);
        *handles = AtomicUsize::new(0);
        *close_on_drop = new_close_on_drop;
        *counters = Counters::default();
        *info.get_mut() = new_info;
    }

    /// The actor is done with `this` (its `Drop`): if nothing else holds
    /// it — no handle, no registry entry — this thread keeps the
    /// allocation for its next connection; otherwise this reference is
    /// dropped.
    pub(crate) fn recycle(this: ConnRef) {
        // A load, not a locked instruction (`ConnRef`).
        let Ok(kept) = triomphe::Arc::try_unique(this) else {
            return;
        };
        let _ = RECYCLED.try_with(|r| {
            let mut r = r.borrow_mut();
            if r.len() < RECYCLED_MAX {
                r.push(kept);
            }
        });
    }

    /// Records the connection's addresses (once connected or accepted).
    pub(crate) fn set_addrs(&self, local: Option<SocketAddr>, peer: Option<SocketAddr>) {
        let mut info = self.info.lock();
        info.local = local;
        info.peer = peer;
    }

    /// Records (or with `None` forgets) the TLS session's facts.
    pub(crate) fn set_tls_info(&self, tls: Option<Arc<crate::tls::TlsInfo>>) {
        self.info.lock().tls = tls;
    }

    /// Records the peer's credentials (Unix-domain sockets).
    #[cfg(unix)]
    pub(crate) fn set_peer_credentials(&self, c: Option<crate::net::PeerCredentials>) {
        self.info.lock().peer_cred = c;
    }

    #[cfg(unix)]
    pub(crate) fn peer_credentials(&self) -> Option<crate::net::PeerCredentials> {
        self.info.lock().peer_cred
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.info.lock().local
    }

    pub(crate) fn peer_addr(&self) -> Option<SocketAddr> {
        self.info.lock().peer
    }

    pub(crate) fn tls_info(&self) -> Option<Arc<crate::tls::TlsInfo>> {
        self.info.lock().tls.clone()
    }

    /// Posts a message; schedules the actor if its mailbox was idle.
    pub(crate) fn post(&self, msg: Msg) -> Result<()> {
        let schedule = match self.mailbox.post(msg) {
            Posted::Schedule => true,
            Posted::Queued => false,
            Posted::Closed(_) => return Err(Error::Closed),
        };
        if schedule {
            // Unplaced before the actor started (or while it moves to
            // another worker): a stale token, and the actor's first turn
            // there takes this message (`set_token`).
            let token = Token(self.token.load(Ordering::Acquire));
            let worker = self.worker_of(token);
            if worker.stopped.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            worker.push(Task::Mail(token));
        }
        Ok(())
    }

    /// Worker `token.worker()` of this connection's reactor.
    pub(crate) fn worker_of(&self, token: Token) -> &WorkerShared {
        &self.workers[token.worker()]
    }

    /// The actor started (or arrived from another worker) in slot
    /// `token`: mail is scheduled under it from now on. Taking the mailbox lock orders this with every `post`: one
    /// that locked earlier left `has_mail` set for the actor's first turn
    /// (which runs right after this) to see; one that locks later reads
    /// this token.
    ///
    /// `this` is the only reference (an accepted connection without a
    /// handle): nobody can post, so there is nothing to order with.
    pub(crate) fn set_token(this: &ConnRef, token: Token) {
        Self::set_token_inner(this, token, false);
    }

    /// [`set_token`](Self::set_token) for an actor arriving from another
    /// worker: always under the mailbox lock. Its registry entry was
    /// listed (among the arrivals) before this, so a handle can appear
    /// without any ordering with the count's check — a post from it could
    /// read the old token and find the mailbox already scheduled.
    pub(crate) fn set_token_moved(this: &ConnRef, token: Token) {
        Self::set_token_inner(this, token, true);
    }

    fn set_token_inner(this: &ConnRef, token: Token, always_lock: bool) {
        this.token.store(token.0, Ordering::Release);
        // The count is read with acquire: a handle that posted and was
        // dropped just before (its decrement a release) has its post seen
        // by the first turn, as the lock would have ensured.
        if always_lock || !this.is_unique() {
            this.mailbox.locked(|| ());
        }
    }

    /// Whether messages are waiting (a hint: `take_mail` is the authority).
    #[inline]
    pub(crate) fn has_mail(&self) -> bool {
        self.mailbox.has_mail()
    }

    /// Takes all pending messages (the actor calls this at the start of a turn).
    #[inline]
    pub(crate) fn take_mail(&self, into: &mut VecDeque<Msg>) {
        self.mailbox.take(into);
    }

    /// Marks the mailbox closed and returns what was still in it (`None`:
    /// nothing). Without the lock when `this` is the only reference (no
    /// handle: nobody can post). The actor's callers take the connection
    /// out of the live-connection registry first, so that its entry does
    /// not count as a holder.
    #[inline]
    pub(crate) fn close_mailbox(this: &mut ConnRef) -> Option<VecDeque<Msg>> {
        match triomphe::Arc::get_mut(this) {
            Some(s) => s.mailbox.close_mut(),
            None => this.mailbox.close(),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.mailbox.is_closed()
    }

    /// Reserves `n` bytes of write queue, or refuses with `NoSpace`.
    pub(crate) fn reserve_write(&self, n: usize) -> Result<()> {
        let mut cur = self.check_room(n)?;
        let max = self.wbuf_max.load(Ordering::Relaxed);
        loop {
            match self.queued.compare_exchange_weak(
                cur,
                cur + n,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) if actual + n > max => {
                    return Err(Error::no_space(crate::error::Limit::WriteBuffer, max))
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// What [`reserve_write`](Self::reserve_write) would answer for `n`
    /// bytes, without reserving: the bytes queued now if they fit.
    pub(crate) fn check_room(&self, n: usize) -> Result<usize> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if self.write_shut.load(Ordering::Acquire) {
            // `finish` also sets `write_shut`; once the actor is gone the
            // truthful answer is `Closed`, not "shut down" (only this error
            // path pays for the mailbox lock).
            return Err(if self.is_closed() {
                Error::Closed
            } else {
                Error::BrokenPipe
            });
        }
        let max = self.wbuf_max.load(Ordering::Relaxed);
        let cur = self.queued.load(Ordering::Relaxed);
        if cur + n > max {
            return Err(Error::no_space(crate::error::Limit::WriteBuffer, max));
        }
        Ok(cur)
    }

    /// Bytes accepted for writing and not yet taken by the kernel.
    #[inline]
    pub(crate) fn write_queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Bytes that can be queued now before `wbuf_max` refuses.
    pub(crate) fn write_room(&self) -> usize {
        self.wbuf_max
            .load(Ordering::Relaxed)
            .saturating_sub(self.queued.load(Ordering::Relaxed))
    }

    /// Counts `n` bytes as queued without checking the limit: the rest of a
    /// write whose start the kernel already took cannot be refused any more.
    pub(crate) fn add_queued(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::AcqRel);
    }

    pub(crate) fn release_write(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
    }

    #[inline]
    pub(crate) fn stats(&self) -> Stats {
        let c = &self.counters;
        let (tls, tls_version) = c.tls();
        let (r, w) = (
            c.last_read.load(Ordering::Relaxed),
            c.last_write.load(Ordering::Relaxed),
        );
        // One clock reading for both, so equal stamps give equal instants.
        let now = if r | w != 0 {
            Instant::now()
        } else {
            crate::reactor::timers::epoch()
        };
        Stats {
            bytes_read: c.bytes_read.load(Ordering::Relaxed),
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
            read_calls: c.read_calls.load(Ordering::Relaxed),
            write_calls: c.write_calls.load(Ordering::Relaxed),
            write_queued: self.queued.load(Ordering::Relaxed),
            read_buffered: c.read_buffered.load(Ordering::Relaxed) as usize,
            last_read: crate::reactor::timers::instant_of(r, now),
            last_write: crate::reactor::timers::instant_of(w, now),
            tls,
            tls_version,
            peer_addr: self.peer_addr(),
        }
    }
}
