//! How an actor starts and what the reactor calls it for: the new
//! connection's description ([`NewConn`]), and the [`Source`] entry points
//! (start, readiness, mail, timers, shutdown, a panic's aftermath).

use super::connect;
use super::ctx::Ctx;
use super::deliver::Outbox;
use super::handler::ActorSink;
use super::handler::InlineFactory;
use super::handler::PrepareFn;
use super::handler::ResolveFn;
use super::pools::Pools;
use super::read::ReadHalf;
use super::timers::Armed;
use super::timers::Inactivity;
use super::timers::TimerKind;
use super::write::WriteHalf;
use super::Actor;
use super::ConnectState;
use super::Core;
use super::Phase;
use super::WorkerCtx;
use crate::conn::shared::{ConnRef, ConnShared};
use crate::conn::Event;
use crate::conn::Options;
use crate::conn::Sink;
use crate::error::Error;
use crate::error::TimeoutKind;
use crate::net::stream::Stream;
use crate::reactor::worker::panic_message;
use crate::reactor::Readiness;
use crate::reactor::Source;
use crate::reactor::Token;
use crate::tls::TlsSetup;
use std::io;
use std::net::SocketAddr;
use std::panic::catch_unwind;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

/// How a new actor gets its socket.
pub(crate) enum Start {
    /// Adopted: already connected; the application's socket.
    Stream(Stream),
    /// Accepted from a netactor listener: non-blocking from the accept,
    /// the listener's socket options inherited where the OS does that
    /// (`sys::socket::ACCEPT_INHERITS_OPTIONS`), and the only descriptor
    /// of its socket.
    Accepted(Stream),
    /// Connect to these addresses in turn.
    Connect(Box<Dial>),
    /// Resolve `host:port` off-worker, then connect.
    Resolve(Box<Resolve>),
}

/// An outgoing connection's addresses (boxed in [`Start`]: the accepted
/// connection's hand-off stays small).
pub(crate) struct Dial {
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) prepare: Option<Arc<PrepareFn>>,
}

/// A `host:port` to resolve off-worker, then connect to.
pub(crate) struct Resolve {
    pub(crate) target: String,
    pub(crate) prepare: Option<Arc<PrepareFn>>,
    pub(crate) resolver: Option<Arc<ResolveFn>>,
}

/// Where events go once the actor starts.
pub(crate) enum SinkSetup {
    Ready(Sink),
    Factory(Arc<InlineFactory>),
}

/// A new connection on its way to its worker, carried unboxed in
/// `Task::Spawn` (the accepted connection's hand-off allocates nothing):
/// small, since it sets the size of every task — the rare parts are boxed.
pub(crate) struct NewConn {
    pub(crate) shared: ConnRef,
    pub(crate) opts: Arc<Options>,
    pub(crate) sink: SinkSetup,
    pub(crate) start: Start,
    pub(crate) tls: Option<Box<TlsSetup>>,
    /// The connection-limit slots it holds, given back when it is dropped.
    pub(crate) limit: Option<Box<crate::reactor::limit::LimitGuard>>,
}

/// What the reactor runs: the actor's entry points (readiness, mail,
/// timers, shutdown, a panic's aftermath).
impl Source for Actor {
    type Local = Pools;
    type Shared = super::live::Live;
    type New = NewConn;

    /// Builds the actor for `new` in slot `token`, in `into`, and starts it.
    fn start(new: NewConn, token: Token, w: &mut WorkerCtx, into: &mut Option<Actor>) {
        let NewConn {
            shared,
            opts,
            sink,
            start,
            tls,
            limit,
        } = new;
        // Mail posted from now on is scheduled under this token; mail
        // posted before (its `Task::Mail` is stale) is in the mailbox and
        // runs in this first turn. `token_set` orders the two (see it).
        ConnShared::set_token(&shared, token);
        w.metrics.conn.opened.inc();
        let now = w.now;
        let (sink, factory) = match sink {
            SinkSetup::Ready(s) => (Some(ActorSink::from(s)), None),
            SinkSetup::Factory(f) => (None, Some(f)),
        };
        // Built in its place at once: the actor (~0.5 KiB) is not moved
        // (built aside and then moved in, it cost a copy per connection).
        let actor = into.insert(Actor {
            core: Core {
                shared: std::mem::ManuallyDrop::new(shared),
                token,
                phase: Phase::Resolving,
                failure: None,
                sock: None,
                registered: false,
                listed: true,
                accepted: false,
                turns: 0,
                born: w.stamp(),
                rd: ReadHalf::new(opts.read_size),
                wr: WriteHalf::new(),
                opts,
                idle: Inactivity::new(now),
                armed: Armed::default(),
                outbox: Outbox::new(),
                connect: None,
                tls: None,
                pending_tls: tls.map(|t| (*t, 0)),
                tls_truncated: false,
                close_pending: false,
                connect_handshake: false,
                deferred: None,
                _limit: limit,
            },
            sink,
        });
        let core = &mut actor.core;
        // Counted in snapshots from now on (until it finishes, or its actor
        // is dropped). Only once the actor exists: the registry's entry is
        // uncounted, and the actor's `Drop` is what takes it out again
        // before the reference goes (`live.rs`, `Listed`) — listed earlier,
        // a panic in between would leave an entry to freed state.
        core.shared
            .worker_of(token)
            .source_shared
            .add(&core.shared, token.slot());
        log::trace!("{}: started on worker {}", core.shared.id, token.worker());
        match start {
            Start::Stream(stream) => core.open(stream, w),
            Start::Accepted(stream) => {
                core.accepted = true;
                core.open(stream, w)
            }
            Start::Connect(dial) => {
                let Dial { addrs, prepare } = *dial;
                core.connect_handshake = core.pending_tls.is_some();
                core.connect = Some(Box::new(ConnectState {
                    addrs,
                    next: 0,
                    prepare,
                    last_err: None,
                }));
                core.phase = Phase::Connecting;
                core.try_next_address(w);
            }
            Start::Resolve(r) => {
                let Resolve {
                    target,
                    prepare,
                    resolver,
                } = *r;
                core.connect_handshake = core.pending_tls.is_some();
                core.connect = Some(Box::new(ConnectState {
                    addrs: Vec::new(),
                    next: 0,
                    prepare,
                    last_err: None,
                }));
                connect::resolve(ConnRef::clone(&core.shared), target, resolver);
            }
        }
        if let Some(factory) = factory {
            let built = {
                let mut ctx = Ctx {
                    core: &mut actor.core,
                    w,
                };
                catch_unwind(AssertUnwindSafe(|| factory(&mut ctx)))
            };
            match built {
                Ok(handler) => actor.sink = Some(ActorSink::Handler(handler)),
                Err(p) => actor.core.fail(Error::Panicked(panic_message(&p)), w),
            }
        }
        // Messages posted before the actor existed run in this first turn,
        // application closures included: contain a panic to this connection.
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| actor.run(w))) {
            actor.abort_panicked(panic_message(&p), w);
        }
    }

    fn abandon(mut new: NewConn) {
        drop(ConnShared::close_mailbox(&mut new.shared));
    }

    fn token(&self) -> Token {
        self.core.token
    }

    fn label(&self) -> String {
        self.core.shared.id.to_string()
    }

    fn collect<'a>(
        lives: impl Iterator<Item = &'a super::live::Live>,
        into: &mut crate::metrics::Metrics,
    ) {
        super::live::Live::collect(lives, into);
    }

    /// Whether the worker may drop the actor: closed, and every event handed
    /// over. Events held back by a full channel (including the final
    /// `Closed`) keep the actor until the retry timer delivered them.
    fn is_closed(&self) -> bool {
        self.core.phase == Phase::Closed
            && self.core.outbox.overflow.is_empty()
            && self.core.outbox.completions.is_none()
    }

    /// Readiness from the poller.
    fn on_io(&mut self, ready: Readiness, w: &mut WorkerCtx) {
        self.core.rd.peer_hup |= ready.hup;
        self.core.rd.readable |= ready.readable;
        self.core.wr.writable |= ready.writable;
        if self.core.phase == Phase::Connecting {
            self.core.check_connect(w);
        }
        self.run(w);
    }

    fn on_mail(&mut self, w: &mut WorkerCtx) {
        self.run(w);
    }

    fn depart(&mut self, to: usize, w: &mut WorkerCtx) {
        Actor::depart(self, to, w);
    }

    fn arrive(&mut self, token: Token, w: &mut WorkerCtx) {
        Actor::arrive(self, token, w);
    }

    /// Only the entry it armed last for a kind fires (`on_timer`); none
    /// once it has finished.
    fn timer_armed(&self, tag: u8, at: Instant) -> bool {
        TimerKind::from_tag(tag).is_some_and(|k| self.core.armed.is(k, at))
    }

    fn on_timer(&mut self, tag: u8, at: Instant, w: &mut WorkerCtx) {
        let Some(kind) = TimerKind::from_tag(tag) else {
            return;
        };
        if !self.core.armed.is(kind, at) {
            return; // stale entry: re-armed or cancelled since
        }
        self.core.armed.clear(kind);
        match kind {
            TimerKind::Activity | TimerKind::Read | TimerKind::Write => {
                self.core.check_inactivity(kind, w)
            }
            TimerKind::Connect => {
                if self.core.phase == Phase::Connecting {
                    self.core
                        .connect_attempt_failed(Error::TimedOut(TimeoutKind::Connect), w);
                }
            }
            TimerKind::Linger => {
                if self.core.phase == Phase::Closing || self.core.close_pending {
                    // Linger is up (or a close asked for while connecting
                    // is still waiting for the connection): give up on
                    // what is left, and say so.
                    self.core.report_unsent(&mut w.local);
                    self.core.finish(w);
                }
            }
            TimerKind::Handshake => {
                if self.core.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
                    self.core.tls_handshake_timer(w);
                } else {
                    self.core.tls_keys_idle(w);
                }
            }
            TimerKind::Retry => {}
        }
        self.run(w);
    }

    /// Shutdown of the reactor: close, flushing until `deadline` at most.
    fn on_shutdown(&mut self, deadline: Instant, w: &mut WorkerCtx) {
        let core = &mut self.core;
        if core.phase == Phase::Open {
            let linger_end = w.now + core.opts.linger;
            Arc::make_mut(&mut core.opts).linger =
                linger_end.min(deadline).saturating_duration_since(w.now);
            core.close(w);
        } else if core.phase == Phase::Closing {
            let at = deadline;
            core.arm(TimerKind::Linger, at, w);
        } else if core.phase != Phase::Closed {
            core.finish(w);
        }
        self.run(w);
    }

    /// Forced end (shutdown deadline passed, or the actor panicked).
    fn abort(&mut self, w: &mut WorkerCtx) {
        self.core.finish(w);
        self.deliver(w);
    }

    /// Forced end after a panic escaped a turn: still tell the application
    /// why (`Error::Panicked`, fatal) before `Closed`.
    fn abort_panicked(&mut self, msg: String, w: &mut WorkerCtx) {
        if self.core.phase != Phase::Closed {
            let e = Error::Panicked(msg.clone());
            self.core.failure.get_or_insert_with(|| Box::new(e.clone()));
            self.core.fail_reads(e);
            self.core.outbox.push(
                &mut w.local,
                Event::Error {
                    error: Error::Panicked(msg),
                    fatal: true,
                },
            );
        }
        self.abort(w);
    }
}

impl Actor {
    /// Name resolution for the connect finished (`Msg::Resolved`).
    pub(super) fn on_resolved(&mut self, res: io::Result<Vec<SocketAddr>>, w: &mut WorkerCtx) {
        if self.core.phase != Phase::Resolving {
            return;
        }
        match res {
            Ok(addrs) if !addrs.is_empty() => {
                if let Some(c) = self.core.connect.as_mut() {
                    c.addrs = addrs;
                }
                self.core.phase = Phase::Connecting;
                self.core.try_next_address(w);
            }
            Ok(_) => self
                .core
                .fail(Error::NoAddress("name resolved to no address".into()), w),
            Err(e) => self.core.fail(Error::NoAddress(e.to_string()), w),
        }
    }
}
