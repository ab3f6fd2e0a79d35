//! The connection actor: owns the socket, the buffers, the read queue and the
//! timers of one connection, and runs on the worker that owns it.
//!
//! One *turn* of the actor: apply every mailbox message in order, then pump —
//! decode what is buffered, flush the write queue, read more while someone
//! wants data — until nothing more can be done without new readiness. The
//! socket is registered edge-triggered, so the actor remembers readiness
//! itself (`readable`/`writable`) and only forgets it on `WouldBlock`.

mod connect;
mod ctx;
mod pools;
pub(crate) mod timers;
mod tls;

pub use ctx::Ctx;
pub(crate) use pools::Pools;

use super::shared::{ConnShared, Msg};
use super::{ConnId, Connection, Event, Options, Reply, Sink};
use crate::error::{Error, Limit, Result, TimeoutKind};
use crate::framing::{DecodeError, Decoder, Frame, FrameAction};
use crate::net::stream::Stream;
use crate::reactor::worker::panic_message;
use crate::reactor::{Readiness, Source, Token};
use crate::tls::{TlsSession, TlsSetup};
use bytes::{Buf, Bytes, BytesMut};
use crossbeam_channel::{Sender, TrySendError};
use socket2::SockRef;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timers::{Armed, TimerKind};

/// What an actor uses of its worker during a turn (the reactor's context,
/// with this layer's [`Pools`]).
pub(crate) type WorkerCtx = crate::reactor::WorkerCtx<Actor>;

/// Bytes one turn may read before yielding to other connections on the worker.
const READ_BUDGET: usize = 512 << 10;
/// At most this many buffers go into one vectored write.
const MAX_IOV: usize = 64;
/// Deliver-then-flush rounds one turn runs before it yields (a handler that
/// writes on every `Drain` would otherwise never let the worker go).
const MAX_DELIVERY_ROUNDS: usize = 64;
/// First retry delay when the application's event channel is full.
const RETRY_DELAY: Duration = Duration::from_millis(1);

/// Code that handles a connection's events on the reactor's worker threads.
///
/// A handler runs on a worker, so it must not block: it reacts to the event
/// through [`Ctx`] (write, read requests, close, …) and returns. Calls for
/// one connection never overlap and come in order, but not necessarily on
/// the same thread (hence `Send`; keep per-connection state in the handler,
/// not in thread-locals). A panic in a handler is caught; only its
/// connection fails, with [`Error::Panicked`].
///
/// ```
/// use netactor::{Ctx, Event, Handler};
/// struct Echo;
/// impl Handler for Echo {
///     fn on_event(&mut self, ctx: &mut Ctx<'_>, event: Event) {
///         match event {
///             Event::Read(frame) => { let _ = ctx.write(frame.into_bytes().unwrap_or_default()); }
///             Event::Eof => { let _ = ctx.shutdown(); }
///             _ => {}
///         }
///     }
/// }
/// ```
pub trait Handler: Send + 'static {
    /// Called for each event of the connection, in order.
    fn on_event(&mut self, ctx: &mut Ctx<'_>, event: Event);
}

impl<F> Handler for F
where
    F: FnMut(&mut Ctx<'_>, Event) + Send + 'static,
{
    fn on_event(&mut self, ctx: &mut Ctx<'_>, event: Event) {
        self(ctx, event)
    }
}

/// Outcome of polling one queued read request.
pub(crate) enum ReadPoll {
    Pending,
    Done(Option<FrameAction>),
    /// Answered with a non-fatal error; the request is finished.
    Failed,
    Fatal(Error),
}

/// A queued read request, type-erased: answered over its own channel
/// ([`QueuedRead`]) or by a completion run on the worker ([`CallbackRead`]).
pub(crate) trait ReadRequest: Send {
    fn poll(&mut self, buf: &mut BytesMut, eof: bool) -> ReadPoll;
    fn fail(&mut self, e: Error);
    /// The buffer changed at the front behind the decoder's back.
    fn reset(&mut self);
    /// Whether the answer is a completion to run with [`complete`](Self::complete)
    /// once the request left the queue (a channel reply is already sent).
    fn has_completion(&self) -> bool {
        false
    }
    /// Runs the completion with the answer `poll` or `fail` stored.
    fn complete(self: Box<Self>, _ctx: &mut Ctx<'_>) {}
}

pub(crate) struct QueuedRead<D: Decoder> {
    decoder: D,
    tx: Sender<Result<D::Output>>,
}

impl<D: Decoder> QueuedRead<D> {
    pub(crate) fn request(decoder: D) -> (Box<dyn ReadRequest>, Reply<D::Output>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        (Box::new(QueuedRead { decoder, tx }), Reply::new(rx))
    }
}

impl<D: Decoder> ReadRequest for QueuedRead<D> {
    fn poll(&mut self, buf: &mut BytesMut, eof: bool) -> ReadPoll {
        match self.decoder.decode(buf, eof) {
            Ok(Some(frame)) => {
                let _ = self.tx.try_send(Ok(frame));
                ReadPoll::Done(self.decoder.after_frame())
            }
            Ok(None) => ReadPoll::Pending,
            Err(DecodeError { error, fatal }) => {
                let _ = self.tx.try_send(Err(error.clone()));
                if fatal {
                    ReadPoll::Fatal(error)
                } else {
                    ReadPoll::Failed
                }
            }
        }
    }

    fn fail(&mut self, e: Error) {
        let _ = self.tx.try_send(Err(e));
    }

    fn reset(&mut self) {
        self.decoder.reset();
    }
}

/// A read whose answer runs `f` on the worker (the reference's
/// `push_read(type, cb)`): see [`Ctx::push_read_with`].
pub(crate) struct CallbackRead<D: Decoder, F> {
    decoder: D,
    f: F,
    answer: Option<Result<D::Output>>,
}

impl<D, F> CallbackRead<D, F>
where
    D: Decoder,
    F: FnOnce(&mut Ctx<'_>, Result<D::Output>) + Send + 'static,
{
    pub(crate) fn request(decoder: D, f: F) -> Box<dyn ReadRequest> {
        Box::new(CallbackRead {
            decoder,
            f,
            answer: None,
        })
    }
}

impl<D, F> ReadRequest for CallbackRead<D, F>
where
    D: Decoder,
    F: FnOnce(&mut Ctx<'_>, Result<D::Output>) + Send + 'static,
{
    fn poll(&mut self, buf: &mut BytesMut, eof: bool) -> ReadPoll {
        match self.decoder.decode(buf, eof) {
            Ok(Some(frame)) => {
                self.answer = Some(Ok(frame));
                ReadPoll::Done(self.decoder.after_frame())
            }
            Ok(None) => ReadPoll::Pending,
            Err(DecodeError { error, fatal }) => {
                self.answer = Some(Err(error.clone()));
                if fatal {
                    ReadPoll::Fatal(error)
                } else {
                    ReadPoll::Failed
                }
            }
        }
    }

    fn fail(&mut self, e: Error) {
        self.answer.get_or_insert(Err(e));
    }

    fn reset(&mut self) {
        self.decoder.reset();
    }

    fn has_completion(&self) -> bool {
        true
    }

    fn complete(self: Box<Self>, ctx: &mut Ctx<'_>) {
        let CallbackRead { f, answer, .. } = *self;
        f(ctx, answer.unwrap_or(Err(Error::Closed)));
    }
}

/// A streaming decoder, type-erased to produce [`Frame`]s.
pub(crate) trait StreamDecode: Send {
    fn decode(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Option<Frame>, DecodeError>;
    fn after_frame(&mut self) -> Option<FrameAction>;
    fn reset(&mut self);
}

pub(crate) struct StreamAdapter<D>(pub(crate) D);

impl<D> StreamDecode for StreamAdapter<D>
where
    D: Decoder,
    D::Output: Into<Frame>,
{
    fn decode(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Option<Frame>, DecodeError> {
        Ok(self.0.decode(buf, eof)?.map(Into::into))
    }
    fn after_frame(&mut self) -> Option<FrameAction> {
        self.0.after_frame()
    }
    fn reset(&mut self) {
        self.0.reset()
    }
}

/// Hook run on each new socket before `connect()`: bind, set options, …
pub type PrepareFn = dyn Fn(&socket2::Socket, SocketAddr) -> io::Result<()> + Send + Sync;

/// Custom name resolution for connects (see
/// [`ConnectOptions::resolver`](crate::ConnectOptions::resolver)): host and
/// port in, addresses to try out. Runs on a short-lived thread of its own.
pub type ResolveFn = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// Builds the handler of an accepted connection, on its worker.
pub type HandlerFactory = dyn Fn(&mut Ctx<'_>) -> Box<dyn Handler> + Send + Sync;

/// How a new actor gets its socket.
pub(crate) enum Start {
    /// Accepted or adopted: already connected.
    Stream(Stream),
    /// Connect to these addresses in turn.
    Connect {
        addrs: Vec<SocketAddr>,
        prepare: Option<Arc<PrepareFn>>,
    },
    /// Resolve `host:port` off-worker, then connect.
    Resolve {
        target: String,
        prepare: Option<Arc<PrepareFn>>,
        resolver: Option<Arc<ResolveFn>>,
    },
}

/// Where events go once the actor starts.
pub(crate) enum SinkSetup {
    Ready(Sink),
    Factory(Arc<HandlerFactory>),
}

pub(crate) struct NewConn {
    pub(crate) shared: Arc<ConnShared>,
    pub(crate) opts: Arc<Options>,
    pub(crate) sink: SinkSetup,
    pub(crate) start: Start,
    pub(crate) tls: Option<TlsSetup>,
    /// The connection-limit slots it holds, given back when it finishes.
    pub(crate) limit: Option<crate::reactor::limit::LimitGuard>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Resolving,
    Connecting,
    Open,
    /// `close` was called: flushing the write queue until the linger deadline.
    Closing,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteSide {
    Open,
    /// Half-close once the write queue is empty.
    ShutdownPending,
    Shut,
}

/// Everything of a connection except its event sink: what [`Ctx`] operates on.
pub(crate) struct Core {
    shared: Arc<ConnShared>,
    token: Token,
    phase: Phase,
    /// The fatal error that is ending the connection: read requests still
    /// in the mailbox when it closes are answered with it rather than a
    /// bare `Closed`. Boxed: it is rare, and the actor stays small.
    failure: Option<Box<Error>>,
    sock: Option<Stream>,
    registered: bool,
    readable: bool,
    writable: bool,
    /// The poller reported RDHUP/HUP/ERR: a short read is not the end.
    peer_hup: bool,
    rbuf: BytesMut,
    read_size: usize,
    eof: bool,
    eof_reported: bool,
    reads: VecDeque<Box<dyn ReadRequest>>,
    stream: Option<Box<dyn StreamDecode>>,
    read_stopped: bool,
    wqueue: VecDeque<Bytes>,
    wlen: usize,
    write_side: WriteSide,
    above_lwm: bool,
    /// Shared with every connection of the same listener until changed
    /// (copy on write): per-connection memory stays small.
    opts: Arc<Options>,
    act_any: Instant,
    act_read: Instant,
    act_write: Instant,
    armed: Armed,
    retry_delay: Duration,
    overflow: VecDeque<Event>,
    out: Vec<Event>,
    connect: Option<Box<ConnectState>>,
    tls: Option<Box<TlsSession>>,
    /// TLS to start once connected, with how many queued bytes precede it
    /// in clear (0 for connect-time TLS: everything is encrypted).
    pending_tls: Option<(TlsSetup, usize)>,
    /// TCP EOF came under TLS without close_notify.
    tls_truncated: bool,
    /// One `Drain` was asked for ([`Ctx::request_drain`]).
    drain_requested: bool,
    /// A `close` asked for while connecting waits (in `deferred`) for the
    /// connection, and its TLS handshake, to send what was queued.
    close_pending: bool,
    /// The TLS handshake under way is part of connecting (TLS asked for
    /// before the outgoing connection was up): a close waits for it.
    connect_handshake: bool,
    /// Messages that cannot apply yet (a `stoptls` before the handshake is
    /// done, a `close` while connecting with writes queued) and every
    /// message posted after them, in order: replayed once the connection
    /// is established, so nothing is dropped or reordered by state.
    // Boxed on purpose: one pointer in every actor instead of a 32-byte
    // queue header that almost every connection leaves empty.
    #[allow(clippy::box_collection)]
    deferred: Option<Box<VecDeque<Msg>>>,
    /// Read completions answered outside a decode pass (an error ended
    /// them): run by the next delivery, before events.
    /// Boxed: rare, and the actor stays small.
    #[allow(clippy::box_collection)]
    completions: Option<Box<Vec<Box<dyn ReadRequest>>>>,
    /// Threads waiting (`Connection::drained`) for the queue to be at or
    /// below the mark. Boxed: rare, and the actor stays small.
    #[allow(clippy::box_collection)]
    drain_waiters: Option<Box<Vec<Sender<Result<()>>>>>,
    /// Connection-limit slots, given back in `finish` (boxed: only with a
    /// limit configured).
    limit: Option<Box<crate::reactor::limit::LimitGuard>>,
}

struct ConnectState {
    addrs: Vec<SocketAddr>,
    next: usize,
    prepare: Option<Arc<PrepareFn>>,
    last_err: Option<Error>,
}

/// A connection actor: its state plus where its events go.
pub(crate) struct Actor {
    core: Core,
    sink: Option<Sink>,
}

/// What the reactor runs: the actor's entry points (readiness, mail,
/// timers, shutdown, a panic's aftermath).
impl Source for Actor {
    type Local = Pools;
    type New = NewConn;

    /// Builds the actor for `new` in slot `token` and starts it.
    fn start(new: Box<NewConn>, token: Token, w: &mut WorkerCtx) -> Box<Actor> {
        let NewConn {
            shared,
            opts,
            sink,
            start,
            tls,
            limit,
        } = *new;
        // Mail posted from now on is scheduled under this token; mail
        // posted before (its `Task::Mail` is stale) is in the mailbox and
        // runs in this first turn. `token_set` orders the two (see it).
        shared.set_token(token);
        let now = w.now;
        let mut core = Core {
            shared,
            token,
            phase: Phase::Resolving,
            failure: None,
            sock: None,
            registered: false,
            readable: false,
            writable: false,
            peer_hup: false,
            rbuf: BytesMut::new(),
            read_size: opts.read_size,
            eof: false,
            eof_reported: false,
            reads: VecDeque::new(),
            stream: None,
            read_stopped: false,
            wqueue: VecDeque::new(),
            wlen: 0,
            write_side: WriteSide::Open,
            above_lwm: false,
            opts,
            act_any: now,
            act_read: now,
            act_write: now,
            armed: Armed::default(),
            retry_delay: RETRY_DELAY,
            overflow: VecDeque::new(),
            out: Vec::new(),
            connect: None,
            tls: None,
            pending_tls: tls.map(|t| (t, 0)),
            tls_truncated: false,
            drain_requested: false,
            close_pending: false,
            connect_handshake: false,
            deferred: None,
            completions: None,
            drain_waiters: None,
            limit: limit.map(Box::new),
        };
        let (sink, factory) = match sink {
            SinkSetup::Ready(s) => (Some(s), None),
            SinkSetup::Factory(f) => (None, Some(f)),
        };
        match start {
            Start::Stream(stream) => core.open(stream, w),
            Start::Connect { addrs, prepare } => {
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
            Start::Resolve {
                target,
                prepare,
                resolver,
            } => {
                core.connect_handshake = core.pending_tls.is_some();
                core.connect = Some(Box::new(ConnectState {
                    addrs: Vec::new(),
                    next: 0,
                    prepare,
                    last_err: None,
                }));
                connect::resolve(core.shared.clone(), target, resolver);
            }
        }
        let mut actor = Box::new(Actor { core, sink });
        if let Some(factory) = factory {
            let built = {
                let mut ctx = Ctx {
                    core: &mut actor.core,
                    w,
                };
                catch_unwind(AssertUnwindSafe(|| factory(&mut ctx)))
            };
            match built {
                Ok(handler) => actor.sink = Some(Sink::Handler(handler)),
                Err(p) => actor.core.fail(Error::Panicked(panic_message(&p)), w),
            }
        }
        // Messages posted before the actor existed run in this first turn,
        // application closures included: contain a panic to this connection.
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| actor.run(w))) {
            actor.abort_panicked(panic_message(&p), w);
        }
        actor
    }

    fn abandon(new: Box<NewConn>) {
        drop(new.shared.close_mailbox());
    }

    fn token(&self) -> Token {
        self.core.token
    }

    fn label(&self) -> String {
        self.core.shared.id.to_string()
    }

    /// Whether the worker may drop the actor: closed, and every event handed
    /// over. Events held back by a full channel (including the final
    /// `Closed`) keep the actor until the retry timer delivered them.
    fn is_closed(&self) -> bool {
        self.core.phase == Phase::Closed
            && self.core.overflow.is_empty()
            && self.core.completions.is_none()
    }

    /// Readiness from the poller.
    fn on_io(&mut self, ready: Readiness, w: &mut WorkerCtx) {
        self.core.peer_hup |= ready.hup;
        self.core.readable |= ready.readable;
        self.core.writable |= ready.writable;
        if self.core.phase == Phase::Connecting {
            self.core.check_connect(w);
        }
        self.run(w);
    }

    fn on_mail(&mut self, w: &mut WorkerCtx) {
        self.run(w);
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
                    self.core.report_unsent();
                    self.core.finish(w);
                }
            }
            TimerKind::Handshake => {
                if self.core.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
                    self.core.fail(Error::TimedOut(TimeoutKind::Handshake), w);
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
            self.core.out.push(Event::Error {
                error: Error::Panicked(msg),
                fatal: true,
            });
        }
        self.abort(w);
    }
}

impl Actor {
    /// Name resolution for the connect finished (`Msg::Resolved`).
    fn on_resolved(&mut self, res: io::Result<Vec<SocketAddr>>, w: &mut WorkerCtx) {
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

    /// One turn: mailbox, then pump, then event delivery.
    pub(crate) fn run(&mut self, w: &mut WorkerCtx) {
        if self.core.out.capacity() == 0 {
            if let Some(v) = w.local.event_vecs.pop() {
                self.core.out = v;
            }
        }
        if self.core.wqueue.capacity() == 0 {
            if let Some(q) = w.local.write_queues.pop() {
                self.core.wqueue = q;
            }
        }
        loop {
            if self.core.deferred.is_some() && !self.core.establishing() {
                self.replay_deferred(w);
            }
            // Most turns (readiness) find no mail: skip the buffer shuffle.
            if self.core.shared.has_mail() {
                let mut mail = std::mem::take(&mut w.local.mail);
                loop {
                    self.core.shared.take_mail(&mut mail);
                    if mail.is_empty() {
                        break;
                    }
                    while let Some(msg) = mail.pop_front() {
                        self.apply(msg, w);
                        if self.core.phase == Phase::Closed {
                            // What this batch still holds is answered like
                            // what `finish` found left in the mailbox.
                            let why = self.core.end_error();
                            self.core.discard_mail(mail.drain(..), &why);
                            break;
                        }
                    }
                }
                w.local.mail = mail;
            }
            self.pump(w);
            // The connection (or its handshake) may have completed in this
            // pump: what waited for it applies now, in the same turn.
            if self.core.deferred.is_some()
                && !self.core.establishing()
                && self.core.phase != Phase::Closed
            {
                continue;
            }
            break;
        }
        self.deliver(w);
        if self.core.out.is_empty() && self.core.out.capacity() > 0 {
            w.local.recycle_events(std::mem::take(&mut self.core.out));
        }
    }

    /// Applies the messages that waited for the connection to be
    /// established, in order, ahead of anything newer.
    fn replay_deferred(&mut self, w: &mut WorkerCtx) {
        let Some(mut q) = self.core.deferred.take() else {
            return;
        };
        while let Some(msg) = q.pop_front() {
            self.apply(msg, w);
            if self.core.phase == Phase::Closed {
                let why = self.core.end_error();
                self.core.discard_mail(q.drain(..), &why);
                return;
            }
            if let Some(d) = self.core.deferred.as_mut() {
                // It had to wait again: the rest stays behind it, in order.
                d.extend(q.drain(..));
                return;
            }
        }
    }

    fn apply(&mut self, msg: Msg, w: &mut WorkerCtx) {
        if let Msg::Resolved(res) = msg {
            // Never deferred: what is deferred waits for this.
            self.on_resolved(res, w);
            self.deliver(w);
            return;
        }
        let core = &mut self.core;
        if let Some(d) = core.deferred.as_mut() {
            if let Msg::Close = msg {
                core.close_requested(w);
                self.deliver(w);
            } else {
                // Something ahead waits for the connection: so does this.
                d.push_back(msg);
            }
            return;
        }
        match msg {
            Msg::Write(data) => core.enqueue(data),
            Msg::WriteParts(parts) => {
                for data in parts {
                    core.enqueue(data);
                }
            }
            Msg::PushRead(r) => core.push_read_req(r, false),
            Msg::UnshiftRead(r) => core.push_read_req(r, true),
            Msg::Streaming(s) => core.stream = s,
            Msg::StopRead => core.read_stopped = true,
            Msg::StartRead => core.read_stopped = false,
            Msg::Shutdown => core.shutdown(w),
            Msg::Close => core.close(w),
            Msg::SetTimeout(kind, period) => core.set_timeout(kind, period, w),
            Msg::ResetTimeout(kind) => core.reset_timeout(kind, w.now),
            Msg::Configure(f) => {
                // Application code: a panic fails this connection only.
                let before = core.opts.clone();
                match catch_unwind(AssertUnwindSafe(|| f(Arc::make_mut(&mut core.opts)))) {
                    Ok(()) => core.configured(&before, w),
                    Err(p) => core.fail(Error::Panicked(panic_message(&p)), w),
                }
            }
            Msg::Call(f) => {
                let r = {
                    let mut ctx = Ctx { core, w };
                    catch_unwind(AssertUnwindSafe(|| f(&mut ctx)))
                };
                if let Err(p) = r {
                    self.core.fail(Error::Panicked(panic_message(&p)), w);
                }
            }
            Msg::StartTls(setup) => core.starttls(setup, w),
            Msg::StopTls => core.stoptls(w),
            Msg::RequestDrain => core.request_drain(),
            Msg::Drained(tx) => core.add_drain_waiter(tx),
            Msg::Resolved(_) => {} // applied above
        }
        self.deliver(w);
    }

    /// Decode, flush and read until nothing more can happen without new readiness.
    fn pump(&mut self, w: &mut WorkerCtx) {
        let mut budget = READ_BUDGET;
        let mut rounds = 0;
        'turn: loop {
            self.pump_once(&mut budget, w);
            let delivered = self.core.has_output();
            self.deliver(w);
            if delivered && matches!(self.core.phase, Phase::Open | Phase::Closing) {
                // Handlers that just got events (`Drain`, `Timeout`, …) may
                // have written (queued only, with autocork) after this
                // turn's flush. The socket is edge-triggered: no later
                // writable edge comes for those bytes, so they leave now —
                // or wait on a real EAGAIN. A `Drain` that produces starts
                // another round; a handler that writes on every `Drain`
                // yields to the worker's other connections now and then.
                self.core.flush(w);
                if self.core.has_output() {
                    rounds += 1;
                    if rounds < MAX_DELIVERY_ROUNDS {
                        continue 'turn;
                    }
                    w.again(self.core.token);
                    break;
                }
            }
            // A handler that just got an event (typically `Drain`) may have
            // resumed reading: bytes already waiting in the socket raise no
            // new edge, so read them in this turn or never.
            let core = &self.core;
            if core.phase == Phase::Open && core.readable && core.wants_read() && budget > 0 {
                continue 'turn;
            }
            break;
        }
        self.core.end_of_turn(w);
    }

    fn pump_once(&mut self, budget: &mut usize, w: &mut WorkerCtx) {
        loop {
            self.dispatch(w);
            if !matches!(self.core.phase, Phase::Open | Phase::Closing) {
                break;
            }
            if self.core.tls_after_dispatch() {
                continue;
            }
            self.core.flush(w);
            let core = &mut self.core;
            if !(core.readable && core.wants_read()) {
                break;
            }
            if *budget == 0 {
                w.again(core.token);
                break;
            }
            match core.read_some(w) {
                Ok(n) => *budget = budget.saturating_sub(n),
                Err(e) => {
                    core.fail(e, w);
                    break;
                }
            }
        }
    }

    /// Feeds buffered bytes to the read queue, then to the streaming decoder.
    fn dispatch(&mut self, w: &mut WorkerCtx) {
        loop {
            let core = &mut self.core;
            if core.phase != Phase::Open {
                return;
            }
            if let Some(req) = core.reads.front_mut() {
                // A custom decoder is application code: a panic in it fails
                // this connection (and every queued read) with `Panicked`.
                let polled = catch_unwind(AssertUnwindSafe(|| req.poll(&mut core.rbuf, core.eof)));
                let polled = match polled {
                    Ok(polled) => polled,
                    Err(p) => {
                        core.fail(Error::Panicked(panic_message(&p)), w);
                        return;
                    }
                };
                match polled {
                    ReadPoll::Pending if core.eof => {
                        let e = core.eof_error();
                        if let Some(mut r) = core.reads.pop_front() {
                            r.fail(e);
                            if r.has_completion() {
                                self.complete_read(r, w);
                            }
                        }
                    }
                    ReadPoll::Pending => break,
                    ReadPoll::Done(action) => {
                        let r = core.reads.pop_front();
                        core.rbuf_front_changed();
                        if let Some(a) = action {
                            core.frame_action(a, w);
                        }
                        if let Some(r) = r.filter(|r| r.has_completion()) {
                            self.complete_read(r, w);
                        }
                    }
                    ReadPoll::Failed => {
                        let r = core.reads.pop_front();
                        core.rbuf_front_changed();
                        if let Some(r) = r.filter(|r| r.has_completion()) {
                            self.complete_read(r, w);
                        }
                    }
                    ReadPoll::Fatal(e) => {
                        if let Some(r) = core.reads.pop_front() {
                            if r.has_completion() {
                                // Answered (with `e`) ahead of the error event.
                                core.push_completion(r);
                            }
                        }
                        core.fail(e, w);
                        return;
                    }
                }
            } else if let Some(dec) = core.stream.as_mut() {
                // A streaming decoder runs when there are bytes (or at EOF):
                // not on every turn with an empty buffer — which each echo
                // turn has twice, before the read and after the frame.
                if core.rbuf.is_empty() && !core.eof {
                    break;
                }
                let before = core.rbuf.len();
                let decoded =
                    catch_unwind(AssertUnwindSafe(|| dec.decode(&mut core.rbuf, core.eof)));
                let decoded = match decoded {
                    Ok(decoded) => decoded,
                    Err(p) => {
                        core.fail(Error::Panicked(panic_message(&p)), w);
                        return;
                    }
                };
                match decoded {
                    Ok(Some(frame)) => {
                        let action = dec.after_frame();
                        // A frame that took no bytes (Chunk(0), an empty
                        // regex match, a detection) would repeat forever:
                        // one per arrival — unless its handler changed what
                        // reads next (a new decoder, a queued read), which
                        // must then see the bytes already buffered: no new
                        // arrival may ever come for them.
                        let stuck = core.rbuf.len() == before && action.is_none();
                        let decoder = if stuck { stream_id(&core.stream) } else { None };
                        self.deliver_one(Event::Read(frame), w);
                        if let Some(a) = action {
                            self.core.frame_action(a, w);
                        }
                        if stuck
                            && self.core.reads.is_empty()
                            && same_stream(stream_id(&self.core.stream), decoder)
                        {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(DecodeError {
                        error,
                        fatal: false,
                    }) => {
                        core.out.push(Event::Error {
                            error,
                            fatal: false,
                        });
                        let stuck = core.rbuf.len() == before;
                        self.deliver(w);
                        if stuck {
                            break;
                        }
                    }
                    Err(DecodeError { error, fatal: true }) => {
                        core.fail(error, w);
                        return;
                    }
                }
            } else {
                break;
            }
        }
        let core = &mut self.core;
        if core.eof && !core.eof_reported && core.phase == Phase::Open {
            core.eof_reported = true;
            if core.tls_truncated {
                // Distinct from a clean close_notify, for protocols that care.
                core.out.push(Event::Error {
                    error: Error::TlsTruncated,
                    fatal: false,
                });
            }
            if core.stream.is_some() && !core.rbuf.is_empty() {
                core.out.push(Event::Error {
                    error: Error::UnexpectedEof,
                    fatal: false,
                });
            }
            core.out.push(Event::Eof);
            self.deliver(w);
        }
        let core = &mut self.core;
        if core.phase == Phase::Open && core.rbuf.len() > core.opts.rbuf_max {
            let max = core.opts.rbuf_max;
            core.fail(Error::no_space(Limit::ReadBuffer, max), w);
        }
    }

    /// Hands queued events to the sink (called several times a turn, most
    /// often with nothing to do: that check stays inline at the call site).
    #[inline]
    fn deliver(&mut self, w: &mut WorkerCtx) {
        if self.core.out.is_empty()
            && self.core.overflow.is_empty()
            && self.core.completions.is_none()
        {
            return;
        }
        self.deliver_queued(w);
    }

    /// Runs a finished read's completion, after the events queued ahead of it.
    fn complete_read(&mut self, r: Box<dyn ReadRequest>, w: &mut WorkerCtx) {
        self.deliver(w);
        self.run_completion(r, w);
    }

    /// Runs one read completion (application code: a panic fails only this
    /// connection).
    fn run_completion(&mut self, r: Box<dyn ReadRequest>, w: &mut WorkerCtx) {
        let res = {
            let mut ctx = Ctx {
                core: &mut self.core,
                w,
            };
            catch_unwind(AssertUnwindSafe(|| r.complete(&mut ctx)))
        };
        if let Err(p) = res {
            self.core.fail(Error::Panicked(panic_message(&p)), w);
        }
    }

    /// Delivers one event now: straight to a handler when nothing is queued
    /// ahead of it (no trip through the event vector), else in order.
    fn deliver_one(&mut self, ev: Event, w: &mut WorkerCtx) {
        if let (Some(Sink::Handler(h)), true) = (self.sink.as_mut(), self.core.out.is_empty()) {
            self.core.call_handler(h, ev, w);
        } else {
            self.core.out.push(ev);
        }
        self.deliver(w);
    }

    fn deliver_queued(&mut self, w: &mut WorkerCtx) {
        loop {
            // Reads an error ended outside a decode pass (also one a handler
            // below just caused, by closing): answered before the events
            // that report it, `Closed` included.
            while let Some(batch) = self.core.completions.take() {
                for r in *batch {
                    self.run_completion(r, w);
                }
            }
            if self.core.out.is_empty() {
                break;
            }
            // Event vectors circulate through the worker's pool: no
            // allocation per event, and an idle connection holds none.
            let spare = w.local.event_vecs.pop().unwrap_or_default();
            let mut events = std::mem::replace(&mut self.core.out, spare);
            match self.sink.as_mut() {
                None => {
                    // The handler factory has not run yet: keep them.
                    std::mem::swap(&mut self.core.out, &mut events);
                    self.core.out.append(&mut events);
                    w.local.recycle_events(events);
                    return;
                }
                Some(Sink::Channel(tx)) => {
                    let id = self.core.shared.id;
                    for ev in events.drain(..) {
                        if !self.core.overflow.is_empty() {
                            self.core.overflow.push_back(ev);
                            continue;
                        }
                        match tx.try_send((id, ev)) {
                            Ok(()) => {}
                            Err(TrySendError::Full((_, ev))) => {
                                self.core.overflow.push_back(ev);
                            }
                            Err(TrySendError::Disconnected(_)) => {}
                        }
                    }
                    if !self.core.overflow.is_empty() {
                        let at = w.now + self.core.retry_delay;
                        self.core.arm(TimerKind::Retry, at, w);
                    }
                }
                Some(Sink::Handler(h)) => {
                    for ev in events.drain(..) {
                        self.core.call_handler(h, ev, w);
                    }
                }
            }
            w.local.recycle_events(events);
        }
        self.retry_overflow(w);
    }

    fn retry_overflow(&mut self, w: &mut WorkerCtx) {
        if self.core.overflow.is_empty() {
            return;
        }
        let Some(Sink::Channel(tx)) = self.sink.as_ref() else {
            return;
        };
        let id = self.core.shared.id;
        let mut progressed = false;
        while let Some(ev) = self.core.overflow.pop_front() {
            match tx.try_send((id, ev)) {
                Ok(()) => progressed = true,
                Err(TrySendError::Full((_, ev))) => {
                    self.core.overflow.push_front(ev);
                    // Back off only while the consumer makes no progress at all;
                    // one that keeps up (merely a small channel) is served at
                    // the short delay, not at 2 events per 50 ms.
                    self.core.retry_delay = if progressed {
                        RETRY_DELAY
                    } else {
                        (self.core.retry_delay * 2).min(Duration::from_millis(50))
                    };
                    let at = w.now + self.core.retry_delay;
                    self.core.arm(TimerKind::Retry, at, w);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.core.overflow.clear();
                }
            }
        }
        self.core.retry_delay = RETRY_DELAY;
    }
}

impl Core {
    /// Bytes left the front of `rbuf` other than through the decoder that
    /// will run next: decoders that remember scan offsets must forget them.
    fn rbuf_front_changed(&mut self) {
        if let Some(r) = self.reads.front_mut() {
            r.reset();
        }
        if let Some(s) = self.stream.as_mut() {
            s.reset();
        }
    }

    fn open(&mut self, stream: Stream, w: &mut WorkerCtx) {
        if let Err(e) = stream.set_nonblocking(true) {
            self.fail(Error::from_io(e), w);
            return;
        }
        if !self.registered {
            let r = stream.register(&w.poller, self.token);
            if let Err(e) = r {
                self.sock = Some(stream);
                self.fail(Error::from_io(e), w);
                return;
            }
            self.registered = true;
        }
        if let (Some(tcp), None) = (stream.as_tcp(), self.shared.peer_addr()) {
            self.shared
                .set_addrs(tcp.local_addr().ok(), tcp.peer_addr().ok());
        }
        #[cfg(unix)]
        if let Stream::Pipe { write: None, .. } = &stream {
            // Read-only: nothing to write to (the handle refuses writes).
            self.write_side = WriteSide::Shut;
        }
        self.sock = Some(stream);
        self.phase = Phase::Open;
        self.readable = true;
        self.writable = true;
        self.act_any = w.now;
        self.act_read = w.now;
        self.act_write = w.now;
        self.apply_options();
        for kind in [TimeoutKind::Activity, TimeoutKind::Read, TimeoutKind::Write] {
            self.check_inactivity(timer_of(kind), w);
        }
        if let Some((setup, prefix)) = self.pending_tls.take() {
            self.start_tls_session(setup, prefix, w);
        }
    }

    fn apply_options(&mut self) {
        self.shared
            .wbuf_max
            .store(self.opts.wbuf_max, Ordering::Relaxed);
        if let Some(sock) = self.sock.as_ref().and_then(Stream::as_tcp) {
            let s = SockRef::from(sock);
            let _ = s.set_tcp_nodelay(self.opts.no_delay);
            let _ = s.set_keepalive(self.opts.keepalive);
            let _ = s.set_out_of_band_inline(self.opts.oobinline);
        }
        if self.read_size > self.opts.max_read_size {
            self.read_size = self.opts.max_read_size;
        }
    }

    fn wants_read(&self) -> bool {
        if let Some(t) = self.tls.as_ref() {
            if t.peer_closed {
                // Nothing more goes into TLS after close_notify; after a
                // `stoptls` reading resumes in plaintext.
                return false;
            }
            if self.phase == Phase::Closing && t.is_handshaking() && !self.eof {
                // A close waits for the handshake to send what was queued.
                return true;
            }
        }
        self.phase == Phase::Open
            && !self.eof
            && !self.read_stopped
            && self.overflow.is_empty()
            && (((!self.reads.is_empty() || self.stream.is_some())
                // Automatic back-pressure: no new requests while the
                // answers to earlier ones wait to be sent.
                && self.opts.pause_reading_above.is_none_or(|h| self.wlen <= h))
                || self
                    .tls
                    .as_ref()
                    .is_some_and(|t| t.is_handshaking() || t.stopping))
    }

    /// One read from the socket into `rbuf` (through TLS if active).
    fn read_some(&mut self, w: &mut WorkerCtx) -> Result<usize> {
        if self.tls.is_some() {
            return self.tls_read(w);
        }
        let Some(sock) = self.sock.as_ref() else {
            self.readable = false;
            return Ok(0);
        };
        if self.rbuf.capacity() == 0 {
            if let Some(b) = w.local.bufs.pop() {
                self.rbuf = b;
            }
        }
        self.rbuf.reserve(self.read_size);
        let want = self.read_size.min(self.rbuf.capacity() - self.rbuf.len());
        let spare = &mut self.rbuf.spare_capacity_mut()[..want];
        match sock.recv(spare) {
            Ok(0) => {
                self.eof = true;
                self.readable = false;
                Ok(0)
            }
            Ok(n) => {
                // SAFETY: recv initialised the first `n` bytes of the spare capacity.
                unsafe { self.rbuf.set_len(self.rbuf.len() + n) };
                self.note_read(n, w.now);
                if n == want && self.read_size < self.opts.max_read_size {
                    self.read_size = (self.read_size * 2).min(self.opts.max_read_size);
                }
                // A short read emptied the kernel buffer: with edge-triggered
                // registration, later data raises a new edge, so the `recv`
                // that would only say EAGAIN is skipped — unless the poller
                // reported RDHUP/HUP: a FIN (or RST) that came with the data
                // is only seen by the next recv, and its edge is spent.
                if n < want && !self.peer_hup {
                    self.readable = false;
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                Ok(0)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(Error::from_io(e)),
        }
    }

    fn note_read(&mut self, n: usize, now: Instant) {
        let c = &self.shared.counters;
        c.add_read(n);
        self.act_any = now;
        self.act_read = now;
    }

    fn note_write(&mut self, n: usize, now: Instant) {
        let c = &self.shared.counters;
        c.add_write(n);
        self.act_any = now;
        self.act_write = now;
    }

    /// Queues bytes that were already reserved against `wbuf_max`.
    fn enqueue(&mut self, data: Bytes) {
        if self.write_side != WriteSide::Open
            || matches!(self.phase, Phase::Closing | Phase::Closed)
        {
            // Refused at the handle already; a race with shutdown/close ends here.
            self.shared.release_write(data.len());
            return;
        }
        self.wlen += data.len();
        self.wqueue.push_back(data);
        if let Some(lwm) = self.opts.low_water_mark {
            if self.wlen > lwm {
                self.above_lwm = true;
            }
        }
    }

    /// Writes `data` (not yet reserved) now: straight from the caller's
    /// buffer when nothing is queued ahead of it (no queue allocation, one
    /// `send`), else through the queue. The direct path only *checks* the
    /// limit and counts as queued just what the kernel did not take — two
    /// atomic read-modify-writes per message saved on the hot path. (A
    /// concurrent reservation from another thread may then find the limit
    /// passed by at most this one write's remainder.)
    fn write_through(&mut self, data: Bytes, w: &mut WorkerCtx) -> Result<()> {
        let direct = self.tls.is_none()
            && self.phase == Phase::Open
            && self.write_side == WriteSide::Open
            && self.writable
            && self.wqueue.is_empty();
        let Some(sock) = self.sock.as_ref().filter(|_| direct) else {
            self.shared.reserve_write(data.len())?;
            self.enqueue(data);
            self.flush(w);
            return Ok(());
        };
        self.shared.check_room(data.len())?;
        match sock.send(&data) {
            Ok(n) => {
                self.note_write(n, w.now);
                if n < data.len() {
                    self.writable = false;
                    self.shared.add_queued(data.len() - n);
                    self.enqueue(data.slice(n..));
                }
                // `Drain` as if the bytes had gone through the queue (as a
                // `Connection::write` does): above the mark, then at or below.
                if self.opts.low_water_mark.is_some_and(|m| data.len() > m) {
                    self.above_lwm = true;
                    self.check_drain();
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.writable = false;
                self.shared.add_queued(data.len());
                self.enqueue(data);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.shared.add_queued(data.len());
                self.enqueue(data);
                self.flush(w);
                Ok(())
            }
            Err(e) => {
                let e = Error::from_io(e);
                self.fail(e.clone(), w);
                Err(e)
            }
        }
    }

    /// Writes as much of the queue as the socket takes.
    #[inline]
    fn flush(&mut self, w: &mut WorkerCtx) {
        // The common case decides nothing: open, plaintext, nothing queued,
        // no shutdown or Drain event pending (checked inline at the caller).
        if self.phase == Phase::Open
            && self.wqueue.is_empty()
            && self.tls.is_none()
            && !self.above_lwm
            && !self.drain_requested
            && self.drain_waiters.is_none()
            && self.write_side != WriteSide::ShutdownPending
        {
            return;
        }
        self.flush_queued(w);
    }

    fn flush_queued(&mut self, w: &mut WorkerCtx) {
        if !matches!(self.phase, Phase::Open | Phase::Closing) {
            return;
        }
        if self.tls.is_some() {
            self.tls_flush(w);
        }
        // Not `else`: a completed `stoptls` leaves plaintext to send.
        if self.tls.is_none() {
            self.flush_plain(w);
        }
        if self.phase == Phase::Closed {
            return;
        }
        if self.wqueue.is_empty()
            && (self.write_side == WriteSide::ShutdownPending || self.phase == Phase::Closing)
            // Under TLS: close_notify first (the reference sent a bare FIN,
            // indistinguishable from truncation).
            && self.tls_close_ready(w)
        {
            if self.write_side == WriteSide::ShutdownPending {
                self.write_side = WriteSide::Shut;
                if let Some(sock) = self.sock.as_mut() {
                    let _ = sock.shutdown_write(&w.poller);
                }
            }
            if self.phase == Phase::Closing {
                self.finish(w);
                return;
            }
        }
        if self.phase == Phase::Closed {
            return;
        }
        self.check_drain();
    }

    /// `Drain`, defined once for every write path: the queue is at or below
    /// the low-water mark after having been above it, or a drain was asked
    /// for ([`Ctx::request_drain`], or setting the mark) and the queue is
    /// at or below the mark (empty, without one).
    fn check_drain(&mut self) {
        if self.drain_waiters.is_some() && self.wlen <= self.opts.low_water_mark.unwrap_or(0) {
            for tx in self.drain_waiters.take().into_iter().flat_map(|v| *v) {
                let _ = tx.try_send(Ok(()));
            }
        }
        if !(self.above_lwm || self.drain_requested) {
            return;
        }
        if self.wlen <= self.opts.low_water_mark.unwrap_or(0) {
            self.above_lwm = false;
            self.drain_requested = false;
            self.out.push(Event::Drain);
        }
    }

    /// Answers `tx` once the queue is at or below the mark (at once if it
    /// is); with the error that ends the connection if that comes first.
    pub(super) fn add_drain_waiter(&mut self, tx: Sender<Result<()>>) {
        match self.phase {
            Phase::Closing | Phase::Closed => {
                let _ = tx.try_send(Err(self.end_error()));
            }
            Phase::Open if self.wlen <= self.opts.low_water_mark.unwrap_or(0) => {
                let _ = tx.try_send(Ok(()));
            }
            _ => self
                .drain_waiters
                .get_or_insert_with(Default::default)
                .push(tx),
        }
    }

    /// One `Drain` once the queue is at or below the mark: at once if it is.
    pub(super) fn request_drain(&mut self) {
        if matches!(self.phase, Phase::Closing | Phase::Closed) {
            return;
        }
        self.drain_requested = true;
        if matches!(self.phase, Phase::Open) {
            self.check_drain();
        }
    }

    /// Options changed: apply them, and treat a new low-water mark like the
    /// reference's `on_drain` setter — `Drain` at once if the queue is
    /// already at or below it.
    pub(super) fn configured(&mut self, before: &Options, w: &mut WorkerCtx) {
        self.apply_options();
        // Changed inactivity timeouts take effect at once, as with `set_timeout`.
        let timers = [
            (before.timeout, self.opts.timeout, TimerKind::Activity),
            (before.rtimeout, self.opts.rtimeout, TimerKind::Read),
            (before.wtimeout, self.opts.wtimeout, TimerKind::Write),
        ];
        for (old, new, kind) in timers {
            if old != new {
                self.check_inactivity(kind, w);
            }
        }
        let lwm = self.opts.low_water_mark;
        if lwm != before.low_water_mark {
            self.above_lwm = false;
            if let Some(m) = lwm {
                if self.wlen > m {
                    self.above_lwm = true;
                } else {
                    self.request_drain();
                }
            }
        }
    }

    /// Events or read completions wait for delivery.
    fn has_output(&self) -> bool {
        !self.out.is_empty() || self.completions.is_some()
    }

    /// Keeps a read whose answer is a completion, for the next delivery.
    fn push_completion(&mut self, r: Box<dyn ReadRequest>) {
        self.completions
            .get_or_insert_with(Default::default)
            .push(r);
    }

    /// While this holds, a `stoptls` (or a `close` with writes queued)
    /// cannot apply yet: the TCP connection or its TLS handshake is still
    /// being set up.
    pub(super) fn establishing(&self) -> bool {
        matches!(self.phase, Phase::Resolving | Phase::Connecting)
            || self.pending_tls.is_some()
            || self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// The outgoing connection is not up yet: resolving, connecting, or in
    /// the TLS handshake that is part of its connect.
    fn connecting(&self) -> bool {
        matches!(self.phase, Phase::Resolving | Phase::Connecting)
            || (self.phase == Phase::Open
                && self.connect_handshake
                && self.tls.as_ref().is_some_and(|t| t.is_handshaking()))
    }

    /// `close` from the application (mailbox or `Ctx`). Behind deferred
    /// messages it waits in order, bounded by linger from now — unless
    /// nothing waits to be sent, then what is deferred is answered and the
    /// close applies at once.
    pub(super) fn close_requested(&mut self, w: &mut WorkerCtx) {
        if self.deferred.is_none() {
            self.close(w);
            return;
        }
        self.shared.closing.store(true, Ordering::Release);
        if self.unsent() == 0 || self.opts.linger.is_zero() {
            if let Some(q) = self.deferred.take() {
                self.discard_mail(*q, &Error::Closed);
            }
            self.close_pending = false;
            self.close(w);
            return;
        }
        self.defer_close(w);
    }

    /// A close that must wait for the connection (see `close_pending`):
    /// it is deferred, bounded by linger from now; nothing more is read
    /// for the application (reading stays on for a handshake only).
    fn defer_close(&mut self, w: &mut WorkerCtx) {
        if self.close_pending {
            return;
        }
        self.close_pending = true;
        self.stream = None;
        self.fail_reads(Error::Closed);
        let at = w.now + self.opts.linger;
        self.arm(TimerKind::Linger, at, w);
        self.defer(Msg::Close);
    }

    /// Keeps `msg` until the connection is established (see `deferred`).
    pub(super) fn defer(&mut self, msg: Msg) {
        self.deferred
            .get_or_insert_with(Default::default)
            .push_back(msg);
    }

    /// Bytes accepted for writing that a close is about to give up on.
    fn unsent(&self) -> usize {
        let deferred: usize = self.deferred.as_deref().map_or(0, |q| {
            q.iter()
                .map(|m| match m {
                    Msg::Write(b) => b.len(),
                    Msg::WriteParts(v) => v.iter().map(|b| b.len()).sum(),
                    _ => 0,
                })
                .sum()
        });
        self.wlen + deferred
    }

    /// Tells the application what a close gives up on (nothing is dropped
    /// silently): a non-fatal `Error::Unsent` before `Closed`.
    fn report_unsent(&mut self) {
        let bytes = self.unsent();
        if bytes > 0 {
            log::debug!("{}: closing with {bytes} bytes unsent", self.shared.id);
            self.out.push(Event::Error {
                error: Error::Unsent { bytes },
                fatal: false,
            });
        }
    }

    fn flush_plain(&mut self, w: &mut WorkerCtx) {
        while self.writable && !self.wqueue.is_empty() {
            let Some(sock) = self.sock.as_ref() else {
                return;
            };
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut k = 0;
            for b in self.wqueue.iter().take(MAX_IOV) {
                iov[k] = IoSlice::new(b);
                k += 1;
            }
            let offered: usize = iov[..k].iter().map(|s| s.len()).sum();
            match sock.send_vectored(&iov[..k]) {
                Ok(n) => {
                    self.consume_written(n);
                    self.note_write(n, w.now);
                    if n < offered {
                        // The send buffer is full; the next edge says when it has room.
                        self.writable = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(Error::from_io(e), w);
                    return;
                }
            }
        }
    }

    /// Drops `n` written bytes from the front of the write queue.
    fn consume_written(&mut self, n: usize) {
        self.wlen -= n;
        self.shared.release_write(n);
        pop_front_bytes(&mut self.wqueue, n);
    }

    fn push_read_req(&mut self, mut r: Box<dyn ReadRequest>, front: bool) {
        if matches!(self.phase, Phase::Closing | Phase::Closed) || self.close_pending {
            // A reply learns why at once. A completion is dropped uncalled,
            // as the reference's destroyed handle ignores calls: calling it
            // back with the error would let a handler that re-queues its
            // read on every answer spin forever on a closed connection.
            r.fail(self.end_error());
            return;
        }
        if front {
            self.reads.push_front(r);
        } else {
            self.reads.push_back(r);
        }
    }

    fn shutdown(&mut self, w: &mut WorkerCtx) {
        self.shared.write_shut.store(true, Ordering::Release);
        if self.write_side == WriteSide::Open {
            self.write_side = WriteSide::ShutdownPending;
            // Drain events stop with the shutdown (the reference removes on_drain).
            Arc::make_mut(&mut self.opts).low_water_mark = None;
            self.drain_requested = false;
            self.flush(w);
        }
    }

    fn close(&mut self, w: &mut WorkerCtx) {
        self.shared.closing.store(true, Ordering::Release);
        if self.close_pending && self.deferred.is_none() {
            // The deferred close is being replayed: the connection is up.
            self.close_pending = false;
        }
        let connecting = self.connecting();
        match self.phase {
            Phase::Closing | Phase::Closed => return,
            _ if connecting => {
                if self.unsent() == 0 || self.opts.linger.is_zero() {
                    // Nothing to deliver: cancel the connect (as the reference).
                    self.report_unsent();
                    self.finish(w);
                    return;
                }
                // Writes were accepted: connect (and finish the TLS
                // handshake), flush them, then close — all within linger,
                // counted from now. A failed connect reports its error.
                self.defer_close(w);
                return;
            }
            _ => {}
        }
        self.stream = None;
        self.read_stopped = true;
        self.fail_reads(Error::Closed);
        if self.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
            // Mid-handshake (accepted, or STARTTLS) nothing can be flushed:
            // plaintext waits for the handshake, and a peer that is being
            // closed on will not finish it. Close at once, saying what was
            // not sent.
            self.report_unsent();
            self.finish(w);
            return;
        }
        // Under TLS, `flush` sends close_notify once the queue is through.
        if (self.wqueue.is_empty() && self.tls.is_none())
            || self.opts.linger.is_zero()
            || self.sock.is_none()
        {
            self.report_unsent();
            self.finish(w);
            return;
        }
        self.phase = Phase::Closing;
        let at = w.now + self.opts.linger;
        self.arm(TimerKind::Linger, at, w);
        self.flush(w);
    }

    /// Reports a fatal error and closes.
    pub(crate) fn fail(&mut self, e: Error, w: &mut WorkerCtx) {
        if self.phase == Phase::Closed {
            return;
        }
        let socket_dead = matches!(
            e,
            Error::BrokenPipe
                | Error::ConnectionReset
                | Error::ConnectionRefused
                | Error::Unreachable
                | Error::Io(_)
                | Error::Tls(_)
                | Error::TlsTruncated
                | Error::NoAddress(_)
        );
        if self.phase != Phase::Closing {
            // The error that ends the connection (connecting or open) — not
            // one met while an orderly close lingers: reads then get `Closed`.
            self.failure.get_or_insert_with(|| Box::new(e.clone()));
        }
        self.fail_reads(e.clone());
        self.out.push(Event::Error {
            error: e,
            fatal: true,
        });
        if socket_dead || self.phase != Phase::Open || self.connecting() {
            self.finish(w);
        } else {
            self.close(w);
        }
    }

    /// Runs the handler on one event; a panic in it fails the connection.
    fn call_handler(&mut self, h: &mut Box<dyn Handler>, ev: Event, w: &mut WorkerCtx) {
        let r = {
            let mut ctx = Ctx { core: self, w };
            catch_unwind(AssertUnwindSafe(|| h.on_event(&mut ctx, ev)))
        };
        if let Err(p) = r {
            self.fail(Error::Panicked(panic_message(&p)), w);
        }
    }

    /// Messages that will never run: their reserved write bytes are
    /// released and their reads answered with `why`.
    fn discard_mail(&mut self, msgs: impl IntoIterator<Item = Msg>, why: &Error) {
        for msg in msgs {
            match msg {
                Msg::Write(b) => self.shared.release_write(b.len()),
                Msg::WriteParts(v) => self.shared.release_write(v.iter().map(|b| b.len()).sum()),
                Msg::PushRead(mut r) | Msg::UnshiftRead(mut r) => {
                    r.fail(why.clone());
                    if r.has_completion() {
                        self.push_completion(r);
                    }
                }
                Msg::Drained(tx) => {
                    let _ = tx.try_send(Err(why.clone()));
                }
                _ => {}
            }
        }
    }

    /// What a read that can no longer be served is told: the fatal error
    /// that ended the connection, or `Closed` after an orderly close.
    fn end_error(&self) -> Error {
        self.failure.as_deref().cloned().unwrap_or(Error::Closed)
    }

    fn fail_reads(&mut self, e: Error) {
        let Core {
            reads, completions, ..
        } = self;
        for mut r in reads.drain(..) {
            r.fail(e.clone());
            if r.has_completion() {
                completions.get_or_insert_with(Default::default).push(r);
            }
        }
    }

    /// Releases everything and emits `Closed`.
    fn finish(&mut self, w: &mut WorkerCtx) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        if let Some(sock) = self.sock.take() {
            if self.registered {
                sock.deregister(&w.poller);
                self.registered = false;
            }
            discard_unread(&sock);
            drop(sock);
        }
        self.tls = None;
        self.shared.write_shut.store(true, Ordering::Release);
        self.shared.release_write(self.wlen);
        self.wlen = 0;
        self.wqueue.clear();
        let why = self.end_error();
        if let Some(q) = self.deferred.take() {
            self.discard_mail(*q, &why);
        }
        self.close_pending = false;
        // The socket is closed: the slot it held is free again.
        self.limit = None;
        for tx in self.drain_waiters.take().into_iter().flat_map(|v| *v) {
            let _ = tx.try_send(Err(why.clone()));
        }
        let left = self.shared.close_mailbox();
        self.discard_mail(left, &why);
        self.fail_reads(why);
        self.stream = None;
        self.rbuf = BytesMut::new();
        self.armed.clear_all();
        self.out.push(Event::Closed);
    }

    fn end_of_turn(&mut self, w: &mut WorkerCtx) {
        // Both directions are finished: nothing more can happen on this socket.
        if self.phase == Phase::Open && self.eof_reported && self.write_side == WriteSide::Shut {
            self.close(w);
        }
        // An idle connection keeps no read buffer: return it to the worker's pool.
        if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            let buf = std::mem::take(&mut self.rbuf);
            w.local.recycle(buf);
        }
        // Nor an empty write queue's allocation.
        if self.wqueue.is_empty() && self.wqueue.capacity() > 0 {
            w.local
                .recycle_write_queue(std::mem::take(&mut self.wqueue));
        }
    }

    fn arm(&mut self, kind: TimerKind, at: Instant, w: &mut WorkerCtx) {
        if let Some(cur) = self.armed.get(kind) {
            if cur <= at {
                return; // the earlier entry re-evaluates when it fires
            }
        }
        self.armed.set(kind, at);
        w.arm(at, self.token, kind as u8);
    }

    fn period_of(&self, kind: TimerKind) -> Option<(Duration, Instant)> {
        match kind {
            TimerKind::Activity => self.opts.timeout.map(|p| (p, self.act_any)),
            TimerKind::Read => self.opts.rtimeout.map(|p| (p, self.act_read)),
            TimerKind::Write => self.opts.wtimeout.map(|p| (p, self.act_write)),
            _ => None,
        }
    }

    fn check_inactivity(&mut self, kind: TimerKind, w: &mut WorkerCtx) {
        if self.phase != Phase::Open {
            return;
        }
        let Some((period, stamp)) = self.period_of(kind) else {
            return;
        };
        if period.is_zero() {
            return;
        }
        let due = stamp + period;
        if w.now >= due {
            match kind {
                TimerKind::Activity => self.act_any = w.now,
                TimerKind::Read => self.act_read = w.now,
                _ => self.act_write = w.now,
            }
            self.out.push(Event::Timeout(match kind {
                TimerKind::Activity => TimeoutKind::Activity,
                TimerKind::Read => TimeoutKind::Read,
                _ => TimeoutKind::Write,
            }));
            let at = w.now + period;
            self.arm(kind, at, w);
        } else {
            self.arm(kind, due, w);
        }
    }

    fn set_timeout(&mut self, kind: TimeoutKind, period: Option<Duration>, w: &mut WorkerCtx) {
        match kind {
            TimeoutKind::Activity => Arc::make_mut(&mut self.opts).timeout = period,
            TimeoutKind::Read => Arc::make_mut(&mut self.opts).rtimeout = period,
            TimeoutKind::Write => Arc::make_mut(&mut self.opts).wtimeout = period,
            TimeoutKind::Connect => {
                if let Some(p) = period {
                    Arc::make_mut(&mut self.opts).connect_timeout = p;
                }
                return;
            }
            TimeoutKind::Handshake => {
                if let Some(p) = period {
                    Arc::make_mut(&mut self.opts).handshake_timeout = p;
                }
                return;
            }
        }
        self.check_inactivity(timer_of(kind), w);
    }

    fn reset_timeout(&mut self, kind: TimeoutKind, now: Instant) {
        match kind {
            TimeoutKind::Activity => self.act_any = now,
            TimeoutKind::Read => self.act_read = now,
            TimeoutKind::Write => self.act_write = now,
            _ => {}
        }
    }

    fn frame_action(&mut self, action: FrameAction, w: &mut WorkerCtx) {
        match action {
            FrameAction::StartTlsServer(config) => self.starttls(TlsSetup::Server(config), w),
        }
    }
}

/// Identifies the streaming decoder in place (its allocation), to tell
/// whether a handler replaced it.
/// (Wide pointers: a stateless decoder is zero-sized and allocates nothing,
/// so its type — the vtable — tells it apart from another.)
fn stream_id(s: &Option<Box<dyn StreamDecode>>) -> Option<*const dyn StreamDecode> {
    s.as_deref().map(|d| d as *const dyn StreamDecode)
}

fn same_stream(a: Option<*const dyn StreamDecode>, b: Option<*const dyn StreamDecode>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => std::ptr::eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Drops `n` bytes from the front of a write queue (no accounting).
fn pop_front_bytes(q: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = q.front_mut() else {
            return;
        };
        if front.len() <= n {
            n -= front.len();
            q.pop_front();
        } else {
            front.advance(n);
            n = 0;
        }
    }
}

fn timer_of(kind: TimeoutKind) -> TimerKind {
    match kind {
        TimeoutKind::Read => TimerKind::Read,
        TimeoutKind::Write => TimerKind::Write,
        _ => TimerKind::Activity,
    }
}

/// Reads and drops input nobody consumed before the socket is closed: Linux
/// answers `close()` on a socket with unread input with RST instead of FIN,
/// which throws away output the kernel has not sent yet (the tail of a
/// lingering close) and shows the peer a reset instead of EOF. Bounded: a
/// peer that keeps sending more than this gets the reset.
fn discard_unread(sock: &Stream) {
    // The actor's sockets are always non-blocking: this stops at WouldBlock.
    let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    for _ in 0..64 {
        match sock.recv(&mut scratch) {
            Ok(n) if n > 0 => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod size_tests {
    /// Every connection carries one boxed `Actor` and one `ConnShared`; the
    /// idle budget is 1 KiB of user-space memory per connection (benches:
    /// ~0.7 KiB measured). Growing these structs eats into it.
    #[test]
    fn per_connection_structs_stay_small() {
        let actor = std::mem::size_of::<super::Actor>();
        let shared = std::mem::size_of::<super::ConnShared>();
        eprintln!("Actor {actor} B, ConnShared {shared} B");
        assert!(actor <= 512, "Actor is {actor} bytes");
        assert!(shared <= 192, "ConnShared is {shared} bytes");
        assert!(actor + shared <= 640);
    }
}
