//! The connection actor: owns the socket, the buffers, the read queue and the
//! timers of one connection, and runs on the worker that owns it.
//!
//! One *turn* of the actor: apply every mailbox message in order, then pump —
//! decode what is buffered, flush the write queue, read more while someone
//! wants data — until nothing more can be done without new readiness. The
//! socket is registered edge-triggered, so the actor remembers readiness
//! itself (`readable`/`writable`) and only forgets it on `WouldBlock`.

use super::shared::{ConnShared, Msg};
use super::{ConnId, Connection, Event, Options, Reply, Sink};
use crate::error::{Error, Limit, Result, TimeoutKind};
use crate::framing::{DecodeError, Decoder, Frame, FrameAction};
use crate::reactor::timers::{Armed, TimerKind};
use crate::reactor::worker::WorkerCtx;
use crate::reactor::Token;
use crate::tls::{TlsSession, TlsSetup};
use bytes::{Buf, Bytes, BytesMut};
use crossbeam_channel::{Sender, TrySendError};
use socket2::SockRef;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes one turn may read before yielding to other connections on the worker.
const READ_BUDGET: usize = 512 << 10;
/// At most this many buffers go into one vectored write.
const MAX_IOV: usize = 64;
/// First retry delay when the application's event channel is full.
const RETRY_DELAY: Duration = Duration::from_millis(1);

/// Code that handles a connection's events on its worker thread.
///
/// A handler runs on the worker, so it must not block: it reacts to the event
/// through [`Ctx`] (write, read requests, close, …) and returns. A panic in a
/// handler is caught; only its connection fails, with [`Error::Panicked`].
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

/// A queued read request with its reply channel, type-erased.
pub(crate) trait ReadRequest: Send {
    fn poll(&mut self, buf: &mut BytesMut, eof: bool) -> ReadPoll;
    fn fail(&mut self, e: Error);
    /// The buffer changed at the front behind the decoder's back.
    fn reset(&mut self);
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

/// Builds the handler of an accepted connection, on its worker.
pub type HandlerFactory = dyn Fn(&mut Ctx<'_>) -> Box<dyn Handler> + Send + Sync;

/// How a new actor gets its socket.
pub(crate) enum Start {
    /// Accepted or adopted: already connected.
    Stream(TcpStream),
    /// Connect to these addresses in turn.
    Connect {
        addrs: Vec<SocketAddr>,
        prepare: Option<Arc<PrepareFn>>,
    },
    /// Resolve `host:port` off-worker, then connect.
    Resolve {
        target: String,
        prepare: Option<Arc<PrepareFn>>,
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
    sock: Option<TcpStream>,
    registered: bool,
    readable: bool,
    writable: bool,
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
    peer: Option<SocketAddr>,
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

impl Actor {
    /// Builds the actor for `new` in slot `token` and starts it.
    pub(crate) fn start(new: NewConn, token: Token, w: &mut WorkerCtx) -> Actor {
        let NewConn {
            shared,
            opts,
            sink,
            start,
            tls,
        } = new;
        shared.token.store(token.0, Ordering::Release);
        let now = w.now;
        let mut core = Core {
            shared,
            token,
            phase: Phase::Resolving,
            sock: None,
            registered: false,
            readable: false,
            writable: false,
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
            peer: None,
        };
        let (sink, factory) = match sink {
            SinkSetup::Ready(s) => (Some(s), None),
            SinkSetup::Factory(f) => (None, Some(f)),
        };
        match start {
            Start::Stream(stream) => {
                core.peer = stream.peer_addr().ok();
                core.open(stream, w);
            }
            Start::Connect { addrs, prepare } => {
                core.connect = Some(Box::new(ConnectState {
                    addrs,
                    next: 0,
                    prepare,
                    last_err: None,
                }));
                core.phase = Phase::Connecting;
                core.try_next_address(w);
            }
            Start::Resolve { target, prepare } => {
                core.connect = Some(Box::new(ConnectState {
                    addrs: Vec::new(),
                    next: 0,
                    prepare,
                    last_err: None,
                }));
                w.resolve(token, target);
            }
        }
        let mut actor = Actor { core, sink };
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

    pub(crate) fn token(&self) -> Token {
        self.core.token
    }

    /// Whether the worker may drop the actor: closed, and every event handed
    /// over. Events held back by a full channel (including the final
    /// `Closed`) keep the actor until the retry timer delivered them.
    pub(crate) fn is_closed(&self) -> bool {
        self.core.phase == Phase::Closed && self.core.overflow.is_empty()
    }

    pub(crate) fn shared(&self) -> &Arc<ConnShared> {
        &self.core.shared
    }

    /// Readiness from the poller.
    pub(crate) fn on_io(&mut self, readable: bool, writable: bool, w: &mut WorkerCtx) {
        self.core.readable |= readable;
        self.core.writable |= writable;
        if self.core.phase == Phase::Connecting {
            self.core.check_connect(w);
        }
        self.run(w);
    }

    pub(crate) fn on_resolved(&mut self, res: io::Result<Vec<SocketAddr>>, w: &mut WorkerCtx) {
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
        self.run(w);
    }

    pub(crate) fn on_timer(&mut self, kind: TimerKind, at: Instant, w: &mut WorkerCtx) {
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
                if self.core.phase == Phase::Closing {
                    log::debug!(
                        "{}: linger expired with {} bytes unsent",
                        self.core.shared.id,
                        self.core.wlen
                    );
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
    pub(crate) fn on_shutdown(&mut self, deadline: Instant, w: &mut WorkerCtx) {
        let core = &mut self.core;
        if core.phase == Phase::Open {
            let linger_end = w.now + core.opts.linger;
            Arc::make_mut(&mut core.opts).linger = linger_end.min(deadline).saturating_duration_since(w.now);
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
    pub(crate) fn abort(&mut self, w: &mut WorkerCtx) {
        self.core.finish(w);
        self.deliver(w);
    }

    /// Forced end after a panic escaped a turn: still tell the application
    /// why (`Error::Panicked`, fatal) before `Closed`.
    pub(crate) fn abort_panicked(&mut self, msg: String, w: &mut WorkerCtx) {
        if self.core.phase != Phase::Closed {
            self.core.fail_reads(Error::Panicked(msg.clone()));
            self.core.out.push(Event::Error {
                error: Error::Panicked(msg),
                fatal: true,
            });
        }
        self.abort(w);
    }

    /// One turn: mailbox, then pump, then event delivery.
    pub(crate) fn run(&mut self, w: &mut WorkerCtx) {
        if self.core.out.capacity() == 0 {
            if let Some(v) = w.event_vecs.pop() {
                self.core.out = v;
            }
        }
        if self.core.wqueue.capacity() == 0 {
            if let Some(q) = w.write_queues.pop() {
                self.core.wqueue = q;
            }
        }
        let mut mail = std::mem::take(&mut w.mail);
        loop {
            self.core.shared.take_mail(&mut mail);
            if mail.is_empty() {
                break;
            }
            while let Some(msg) = mail.pop_front() {
                self.apply(msg, w);
                if self.core.phase == Phase::Closed {
                    mail.clear();
                    break;
                }
            }
        }
        w.mail = mail;
        self.pump(w);
        self.deliver(w);
        if self.core.out.is_empty() && self.core.out.capacity() > 0 {
            w.recycle_events(std::mem::take(&mut self.core.out));
        }
    }

    fn apply(&mut self, msg: Msg, w: &mut WorkerCtx) {
        let core = &mut self.core;
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
                match catch_unwind(AssertUnwindSafe(|| f(Arc::make_mut(&mut core.opts)))) {
                    Ok(()) => core.apply_options(),
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
        }
        self.deliver(w);
    }

    /// Decode, flush and read until nothing more can happen without new readiness.
    fn pump(&mut self, w: &mut WorkerCtx) {
        let mut budget = READ_BUDGET;
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
            if budget == 0 {
                w.again(core.token);
                break;
            }
            match core.read_some(w) {
                Ok(n) => budget = budget.saturating_sub(n),
                Err(e) => {
                    core.fail(e, w);
                    break;
                }
            }
        }
        self.deliver(w);
        self.core.end_of_turn(w);
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
                let polled =
                    catch_unwind(AssertUnwindSafe(|| req.poll(&mut core.rbuf, core.eof)));
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
                        }
                    }
                    ReadPoll::Pending => break,
                    ReadPoll::Done(action) => {
                        core.reads.pop_front();
                        core.rbuf_front_changed();
                        if let Some(a) = action {
                            core.frame_action(a, w);
                        }
                    }
                    ReadPoll::Failed => {
                        core.reads.pop_front();
                        core.rbuf_front_changed();
                    }
                    ReadPoll::Fatal(e) => {
                        core.reads.pop_front();
                        core.fail(e, w);
                        return;
                    }
                }
            } else if let Some(dec) = core.stream.as_mut() {
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
                        // regex match) would repeat forever: one per arrival.
                        let stuck = core.rbuf.len() == before && action.is_none();
                        core.out.push(Event::Read(frame));
                        self.deliver(w);
                        if let Some(a) = action {
                            self.core.frame_action(a, w);
                        }
                        if stuck {
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

    /// Hands queued events to the sink.
    fn deliver(&mut self, w: &mut WorkerCtx) {
        while !self.core.out.is_empty() {
            // Event vectors circulate through the worker's pool: no
            // allocation per event, and an idle connection holds none.
            let spare = w.event_vecs.pop().unwrap_or_default();
            let mut events = std::mem::replace(&mut self.core.out, spare);
            match self.sink.as_mut() {
                None => {
                    // The handler factory has not run yet: keep them.
                    std::mem::swap(&mut self.core.out, &mut events);
                    self.core.out.append(&mut events);
                    w.recycle_events(events);
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
                        let r = {
                            let mut ctx = Ctx {
                                core: &mut self.core,
                                w,
                            };
                            catch_unwind(AssertUnwindSafe(|| h.on_event(&mut ctx, ev)))
                        };
                        if let Err(p) = r {
                            self.core.fail(Error::Panicked(panic_message(&p)), w);
                        }
                    }
                }
            }
            w.recycle_events(events);
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

impl Drop for Actor {
    fn drop(&mut self) {
        if let Some(sock) = self.core.sock.take() {
            if self.core.registered {
                let _ = w_delete(&sock);
            }
        }
    }
}

/// Last-resort deregistration when an actor is dropped without `finish`.
fn w_delete(_sock: &TcpStream) -> io::Result<()> {
    // Closing the fd removes it from every epoll set it is registered in (the
    // fd is never dup'd), so dropping the socket is enough.
    Ok(())
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

    fn open(&mut self, stream: TcpStream, w: &mut WorkerCtx) {
        if let Err(e) = stream.set_nonblocking(true) {
            self.fail(Error::from_io(e), w);
            return;
        }
        if !self.registered {
            // SAFETY: the socket is deleted from the poller (in `finish`, or
            // implicitly by closing its never-duplicated fd) before it is dropped.
            let r = unsafe {
                w.poller.add_with_mode(
                    &stream,
                    polling::Event::all(self.token.0),
                    polling::PollMode::Edge,
                )
            };
            if let Err(e) = r {
                self.sock = Some(stream);
                self.fail(Error::from_io(e), w);
                return;
            }
            self.registered = true;
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
        if let Some(sock) = &self.sock {
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
            && (!self.reads.is_empty()
                || self.stream.is_some()
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
            if let Some(b) = w.pool.pop() {
                self.rbuf = b;
            }
        }
        self.rbuf.reserve(self.read_size);
        let want = self.read_size.min(self.rbuf.capacity() - self.rbuf.len());
        let spare = &mut self.rbuf.spare_capacity_mut()[..want];
        match SockRef::from(sock).recv(spare) {
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
                // A short read does NOT prove the socket is drained: a FIN (or
                // RST) that arrived together with the data is only seen by the
                // next recv, and its edge was already consumed, so clearing
                // `readable` here would lose EOF/reset for good (no EPOLLRDHUP
                // in `polling`). Keep reading until WouldBlock / 0.
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

    /// Writes reserved bytes now: straight from the caller's buffer when
    /// nothing is queued ahead of them (no queue allocation, one `send`),
    /// else through the queue.
    fn write_through(&mut self, data: Bytes, w: &mut WorkerCtx) -> Result<()> {
        let direct = self.tls.is_none()
            && self.phase == Phase::Open
            && self.write_side == WriteSide::Open
            && self.writable
            && self.wqueue.is_empty();
        let Some(sock) = self.sock.as_ref().filter(|_| direct) else {
            self.enqueue(data);
            self.flush(w);
            return Ok(());
        };
        match SockRef::from(sock).send_with_flags(&data, libc::MSG_NOSIGNAL) {
            Ok(n) => {
                self.shared.release_write(n);
                self.note_write(n, w.now);
                if n < data.len() {
                    self.writable = false;
                    self.enqueue(data.slice(n..));
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.writable = false;
                self.enqueue(data);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.enqueue(data);
                self.flush(w);
                Ok(())
            }
            Err(e) => {
                self.shared.release_write(data.len());
                let e = Error::from_io(e);
                self.fail(e.clone(), w);
                Err(e)
            }
        }
    }

    /// Writes as much of the queue as the socket takes.
    fn flush(&mut self, w: &mut WorkerCtx) {
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
                if let Some(sock) = &self.sock {
                    let _ = sock.shutdown(Shutdown::Write);
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
        if let Some(lwm) = self.opts.low_water_mark {
            if self.above_lwm && self.wlen <= lwm {
                self.above_lwm = false;
                self.out.push(Event::Drain);
            }
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
            match SockRef::from(sock).send_vectored_with_flags(&iov[..k], libc::MSG_NOSIGNAL) {
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
    fn consume_written(&mut self, mut n: usize) {
        self.wlen -= n;
        self.shared.release_write(n);
        while n > 0 {
            let Some(front) = self.wqueue.front_mut() else {
                break;
            };
            if front.len() <= n {
                n -= front.len();
                self.wqueue.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    fn push_read_req(&mut self, mut r: Box<dyn ReadRequest>, front: bool) {
        if matches!(self.phase, Phase::Closing | Phase::Closed) {
            r.fail(Error::Closed);
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
            self.flush(w);
        }
    }

    fn close(&mut self, w: &mut WorkerCtx) {
        self.shared.closing.store(true, Ordering::Release);
        match self.phase {
            Phase::Closing | Phase::Closed => return,
            Phase::Resolving | Phase::Connecting => {
                self.finish(w);
                return;
            }
            Phase::Open => {}
        }
        self.stream = None;
        self.read_stopped = true;
        self.fail_reads(Error::Closed);
        // Under TLS, `flush` sends close_notify once the queue is through.
        if (self.wqueue.is_empty() && self.tls.is_none())
            || self.opts.linger.is_zero()
            || self.sock.is_none()
        {
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
        self.fail_reads(e.clone());
        self.out.push(Event::Error {
            error: e,
            fatal: true,
        });
        if socket_dead || self.phase != Phase::Open {
            self.finish(w);
        } else {
            self.close(w);
        }
    }

    fn fail_reads(&mut self, e: Error) {
        for mut r in self.reads.drain(..) {
            r.fail(e.clone());
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
                let _ = w.poller.delete(&sock);
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
        for msg in self.shared.close_mailbox() {
            match msg {
                Msg::Write(b) => self.shared.release_write(b.len()),
                Msg::WriteParts(v) => self.shared.release_write(v.iter().map(|b| b.len()).sum()),
                Msg::PushRead(mut r) | Msg::UnshiftRead(mut r) => r.fail(Error::Closed),
                _ => {}
            }
        }
        self.fail_reads(Error::Closed);
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
            w.recycle(buf);
        }
        // Nor an empty write queue's allocation.
        if self.wqueue.is_empty() && self.wqueue.capacity() > 0 {
            w.recycle_write_queue(std::mem::take(&mut self.wqueue));
        }
    }

    fn arm(&mut self, kind: TimerKind, at: Instant, w: &mut WorkerCtx) {
        if let Some(cur) = self.armed.get(kind) {
            if cur <= at {
                return; // the earlier entry re-evaluates when it fires
            }
        }
        self.armed.set(kind, at);
        w.timers.push(at, self.token, kind);
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

    // ---- connecting -------------------------------------------------------

    fn try_next_address(&mut self, w: &mut WorkerCtx) {
        loop {
            let Some(c) = self.connect.as_mut() else {
                return;
            };
            let Some(&addr) = c.addrs.get(c.next) else {
                let e = c
                    .last_err
                    .take()
                    .unwrap_or_else(|| Error::NoAddress("no address to try".into()));
                self.connect = None;
                self.fail(e, w);
                return;
            };
            c.next += 1;
            let prepare = c.prepare.clone();
            match start_connect(addr, prepare.as_deref()) {
                Ok((stream, true)) => {
                    self.connected(stream, addr, w);
                    return;
                }
                Ok((stream, false)) => {
                    // SAFETY: deleted before the socket is dropped (see `finish`
                    // and `connect_attempt_failed`).
                    let r = unsafe {
                        w.poller.add_with_mode(
                            &stream,
                            polling::Event::all(self.token.0),
                            polling::PollMode::Edge,
                        )
                    };
                    match r {
                        Ok(()) => {
                            self.registered = true;
                            self.sock = Some(stream);
                            self.peer = Some(addr);
                            let at = w.now + self.opts.connect_timeout;
                            self.armed.clear(TimerKind::Connect);
                            self.arm(TimerKind::Connect, at, w);
                            return;
                        }
                        Err(e) => {
                            if let Some(c) = self.connect.as_mut() {
                                c.last_err = Some(Error::from_io(e));
                            }
                        }
                    }
                }
                Err(e) => {
                    if let Some(c) = self.connect.as_mut() {
                        c.last_err = Some(Error::from_io(e));
                    }
                }
            }
        }
    }

    fn check_connect(&mut self, w: &mut WorkerCtx) {
        let Some(sock) = self.sock.as_ref() else {
            return;
        };
        match sock.take_error() {
            Ok(Some(e)) | Err(e) => {
                self.connect_attempt_failed(Error::from_io(e), w);
            }
            Ok(None) => {
                if !self.writable {
                    return;
                }
                match sock.peer_addr() {
                    Ok(peer) => {
                        let stream = self.sock.take().expect("checked above");
                        self.connected(stream, peer, w);
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                    Err(e) => self.connect_attempt_failed(Error::from_io(e), w),
                }
            }
        }
    }

    fn connect_attempt_failed(&mut self, e: Error, w: &mut WorkerCtx) {
        if let Some(sock) = self.sock.take() {
            if self.registered {
                let _ = w.poller.delete(&sock);
                self.registered = false;
            }
        }
        self.readable = false;
        self.writable = false;
        self.armed.clear(TimerKind::Connect);
        if let Some(c) = self.connect.as_mut() {
            c.last_err = Some(e);
        }
        self.try_next_address(w);
    }

    fn connected(&mut self, stream: TcpStream, peer: SocketAddr, w: &mut WorkerCtx) {
        self.armed.clear(TimerKind::Connect);
        self.connect = None;
        self.peer = Some(peer);
        self.open(stream, w);
        if self.phase == Phase::Open {
            self.out.push(Event::Connected { peer });
        }
    }

    // ---- TLS (see crate::tls) ---------------------------------------------

    /// Whether nothing TLS-specific remains to be written before FIN or the
    /// end of a close. Called with an empty write queue; sends close_notify
    /// once everything queued has gone through the engine.
    fn tls_close_ready(&mut self, w: &mut WorkerCtx) -> bool {
        let closing = self.phase == Phase::Closing;
        let Some(t) = self.tls.as_mut() else {
            return true;
        };
        if t.is_handshaking() {
            // Nothing was sent under TLS yet: a close ends here; a half-close
            // waits for the handshake, so the peer can still talk to us.
            return closing;
        }
        if !t.close_sent() {
            t.close_notify();
            self.tls_flush(w);
        }
        self.phase != Phase::Closed && self.tls.as_ref().is_none_or(|t| !t.wants_write())
    }

    /// The error a read request still pending at EOF gets.
    fn eof_error(&self) -> Error {
        if self.tls_truncated {
            Error::TlsTruncated
        } else {
            Error::UnexpectedEof
        }
    }

    fn starttls(&mut self, setup: TlsSetup, w: &mut WorkerCtx) {
        match self.phase {
            Phase::Resolving | Phase::Connecting => {
                // Writes queued so far still go out in clear first.
                self.pending_tls = Some((setup, self.wlen));
                return;
            }
            Phase::Open => {}
            _ => return,
        }
        let prefix = self.wlen;
        self.start_tls_session(setup, prefix, w);
    }

    /// Starts TLS on the open connection; the first `plain_prefix` queued
    /// bytes are sent in clear before the handshake.
    fn start_tls_session(&mut self, setup: TlsSetup, plain_prefix: usize, w: &mut WorkerCtx) {
        if self.phase != Phase::Open {
            return;
        }
        if self.tls.is_some() {
            self.out.push(Event::Error {
                error: Error::InvalidInput("starttls while TLS is already active".into()),
                fatal: false,
            });
            return;
        }
        let mut session = match TlsSession::new(setup) {
            Ok(s) => s,
            Err(e) => {
                self.fail(e, w);
                return;
            }
        };
        // Writes queued before starttls go out in clear, before any record.
        session.plain_prefix = plain_prefix.min(self.wlen);
        self.tls = Some(Box::new(session));
        self.tls_truncated = false;
        self.armed.clear(TimerKind::Handshake);
        let at = w.now + self.opts.handshake_timeout;
        self.arm(TimerKind::Handshake, at, w);
        // Bytes already buffered are ciphertext (the ClientHello behind a
        // STARTTLS command, or injected commands): never plaintext for the app.
        let buffered = self.rbuf.split();
        self.rbuf_front_changed();
        if !buffered.is_empty() {
            if let Err(e) = self.tls_input(&buffered) {
                self.fail(e, w);
                return;
            }
        }
        self.tls_flush(w);
    }

    fn stoptls(&mut self, w: &mut WorkerCtx) {
        if self.phase != Phase::Open {
            return;
        }
        let why = match self.tls.as_ref() {
            None => "stoptls without TLS",
            Some(t) if t.is_handshaking() => "stoptls during the TLS handshake",
            Some(t) if t.stopping || t.close_sent() => return,
            Some(_) => {
                self.tls_begin_stop();
                self.tls_flush(w);
                return;
            }
        };
        self.out.push(Event::Error {
            error: Error::InvalidInput(why.into()),
            fatal: false,
        });
    }

    /// Encrypts everything queued so far (it was written while TLS was on),
    /// then sends close_notify; later writes wait for plaintext.
    fn tls_begin_stop(&mut self) {
        let Some(t) = self.tls.as_mut() else {
            return;
        };
        t.unlimit();
        while !self.wqueue.is_empty() {
            let n = {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let mut k = 0;
                for b in self.wqueue.iter().take(MAX_IOV) {
                    iov[k] = IoSlice::new(b);
                    k += 1;
                }
                t.write_plain(&iov[..k])
            };
            if n == 0 {
                break;
            }
            pop_front_bytes(&mut self.wqueue, n);
        }
        t.stopping = true;
        t.close_notify();
    }

    /// Completes a `stoptls` once both close_notify alerts are through.
    fn tls_check_stop(&mut self) {
        let done = self
            .tls
            .as_ref()
            .is_some_and(|t| t.stopping && t.peer_closed && t.close_sent() && !t.wants_write());
        if !done {
            return;
        }
        let Some(t) = self.tls.take() else {
            return;
        };
        self.release_in_engine(t.in_engine);
        // What followed the peer's close_notify is the plaintext stream.
        self.rbuf.extend_from_slice(&t.leftover);
        self.armed.clear(TimerKind::Handshake);
        self.out.push(Event::TlsStopped);
    }

    fn release_in_engine(&mut self, n: usize) {
        if n > 0 {
            self.wlen -= n;
            self.shared.release_write(n);
        }
    }

    /// Feeds ciphertext to the engine and acts on what changed.
    fn tls_input(&mut self, data: &[u8]) -> Result<()> {
        let Some(t) = self.tls.as_mut() else {
            self.rbuf.extend_from_slice(data);
            return Ok(());
        };
        if t.peer_closed {
            // Reads pause after close_notify; keep anything that came anyway.
            if t.stopping {
                t.leftover.extend_from_slice(data);
            }
            return Ok(());
        }
        let fed = match t.input(data, &mut self.rbuf) {
            Ok(f) => f,
            Err(e) => {
                self.tls_send_alert();
                return Err(e);
            }
        };
        if t.take_established() {
            self.armed.clear(TimerKind::Handshake);
            self.out.push(Event::TlsEstablished);
        }
        if t.peer_closed {
            let answer = !t.stopping && !t.close_sent() && self.opts.follow_stoptls;
            if t.stopping || answer {
                t.leftover.extend_from_slice(&data[fed.consumed..]);
            }
            // Otherwise close_notify is a clean EOF (bytes after it are
            // ignored, RFC 8446 §6.1), applied by `tls_after_dispatch`.
            // Answered by `tls_after_dispatch`, once the frames decrypted
            // before the alert were handled.
            t.answer_pending = answer;
        }
        Ok(())
    }

    /// After a dispatch pass, acts on the peer's close_notify; returns
    /// whether to dispatch again.
    ///
    /// * With `follow_stoptls` it is answered only now, so the application's
    ///   replies to data that came before it are still encrypted, as in the
    ///   reference.
    /// * Otherwise it is EOF — once someone reads. Handshake reads can pull
    ///   in data and the alert before the application has set up a reader;
    ///   as in plaintext mode, EOF is only noticed by a reader, so that data
    ///   is delivered first.
    fn tls_after_dispatch(&mut self) -> bool {
        let Some(t) = self.tls.as_mut() else {
            return false;
        };
        if std::mem::take(&mut t.answer_pending) {
            self.tls_begin_stop();
            return false;
        }
        if t.peer_closed
            && !t.stopping
            && !self.eof
            && !self.read_stopped
            && (!self.reads.is_empty() || self.stream.is_some())
        {
            self.eof = true;
            return true;
        }
        false
    }

    /// Best effort: flush the alert rustls queued for a fatal error, so the
    /// peer learns why (e.g. "bad certificate") before the socket closes.
    fn tls_send_alert(&mut self) {
        if let (Some(t), Some(sock)) = (self.tls.as_mut(), self.sock.as_ref()) {
            if t.plain_prefix > 0 {
                return;
            }
            for _ in 0..4 {
                if !t.wants_write() || t.write_to(sock).is_err() {
                    break;
                }
            }
        }
    }

    /// One socket read, through TLS.
    fn tls_read(&mut self, w: &mut WorkerCtx) -> Result<usize> {
        let Some(sock) = self.sock.as_ref() else {
            self.readable = false;
            return Ok(0);
        };
        // Ciphertext goes through a pooled scratch buffer, so an idle TLS
        // connection keeps no read buffer of its own.
        let mut scratch = w.pool.pop().unwrap_or_default();
        scratch.clear();
        scratch.reserve(self.read_size);
        let want = self.read_size.min(scratch.capacity());
        let spare = &mut scratch.spare_capacity_mut()[..want];
        let res = match SockRef::from(sock).recv(spare) {
            Ok(0) => {
                self.readable = false;
                self.tls_eof().map(|()| 0)
            }
            Ok(n) => {
                // SAFETY: recv initialised the first `n` bytes of the spare capacity.
                unsafe { scratch.set_len(n) };
                self.note_read(n, w.now);
                if n == want && self.read_size < self.opts.max_read_size {
                    self.read_size = (self.read_size * 2).min(self.opts.max_read_size);
                }
                let r = self.tls_input(&scratch).map(|()| n);
                if self.phase == Phase::Closing {
                    // Closing reads only to finish the handshake; data is dropped.
                    self.rbuf.clear();
                }
                r
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                Ok(0)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(Error::from_io(e)),
        };
        w.recycle(scratch);
        res
    }

    /// TCP EOF under TLS.
    fn tls_eof(&mut self) -> Result<()> {
        let Some(t) = self.tls.as_ref() else {
            self.eof = true;
            return Ok(());
        };
        if t.is_handshaking() {
            return Err(Error::Tls(
                "the peer closed the connection during the TLS handshake".into(),
            ));
        }
        if !t.peer_closed {
            // No close_notify: the data may have been cut short by an attacker.
            self.tls_truncated = true;
        }
        self.eof = true;
        Ok(())
    }

    /// Writes what TLS has to write: first the plaintext queued before
    /// `starttls`, then records; moves queued plaintext into the engine one
    /// chunk at a time, only when its record buffer is empty.
    fn tls_flush(&mut self, w: &mut WorkerCtx) {
        if self.tls.as_ref().is_some_and(|t| t.plain_prefix > 0) {
            self.tls_flush_prefix(w);
            if self.phase == Phase::Closed || self.tls.as_ref().is_some_and(|t| t.plain_prefix > 0)
            {
                return;
            }
        }
        let mut failed = None;
        loop {
            let (Some(t), Some(sock)) = (self.tls.as_mut(), self.sock.as_ref()) else {
                return;
            };
            while self.writable && t.wants_write() {
                match t.write_to(sock) {
                    Ok(n) => {
                        let c = &self.shared.counters;
                        c.add_write(n);
                        self.act_any = w.now;
                        self.act_write = w.now;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failed = Some(Error::from_io(e));
                        break;
                    }
                }
            }
            if failed.is_some() || t.wants_write() {
                break;
            }
            // The record buffer is empty: what went into the engine is in the kernel.
            let sent = std::mem::take(&mut t.in_engine);
            if !t.accepts_plaintext() || self.wqueue.is_empty() {
                self.release_in_engine(sent);
                break;
            }
            let n = {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let mut k = 0;
                for b in self.wqueue.iter().take(MAX_IOV) {
                    iov[k] = IoSlice::new(b);
                    k += 1;
                }
                t.write_plain(&iov[..k])
            };
            pop_front_bytes(&mut self.wqueue, n);
            self.release_in_engine(sent);
            if n == 0 {
                break;
            }
        }
        if let Some(e) = failed {
            self.fail(e, w);
            return;
        }
        self.tls_check_stop();
    }

    /// Sends the bytes queued in clear before `starttls`.
    fn tls_flush_prefix(&mut self, w: &mut WorkerCtx) {
        while self.writable {
            let prefix = self.tls.as_ref().map_or(0, |t| t.plain_prefix);
            let Some(sock) = self.sock.as_ref() else {
                return;
            };
            if prefix == 0 {
                return;
            }
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut k = 0;
            let mut left = prefix;
            for b in self.wqueue.iter().take(MAX_IOV) {
                let m = b.len().min(left);
                iov[k] = IoSlice::new(&b[..m]);
                k += 1;
                left -= m;
                if left == 0 {
                    break;
                }
            }
            match SockRef::from(sock).send_vectored_with_flags(&iov[..k], libc::MSG_NOSIGNAL) {
                Ok(n) => {
                    self.consume_written(n);
                    self.note_write(n, w.now);
                    if let Some(t) = self.tls.as_mut() {
                        t.plain_prefix -= n;
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
fn discard_unread(mut sock: &TcpStream) {
    use std::io::Read;
    // The actor's sockets are always non-blocking: this stops at WouldBlock.
    let mut scratch = [0u8; 4096];
    for _ in 0..64 {
        match sock.read(&mut scratch) {
            Ok(n) if n > 0 => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}

/// Creates a non-blocking socket for `addr` and starts connecting.
/// Returns the stream and whether it is already connected.
fn start_connect(addr: SocketAddr, prepare: Option<&PrepareFn>) -> io::Result<(TcpStream, bool)> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM.nonblocking().cloexec(),
        Some(socket2::Protocol::TCP),
    )?;
    if let Some(p) = prepare {
        p(&socket, addr)?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => Ok((socket.into(), true)),
        Err(e)
            if e.raw_os_error() == Some(libc::EINPROGRESS)
                || e.kind() == io::ErrorKind::WouldBlock =>
        {
            Ok((socket.into(), false))
        }
        Err(e) => Err(e),
    }
}

pub(crate) fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

/// Direct access to a connection from code running on its worker (handlers,
/// [`Connection::call`]). Operations apply at once, without a mailbox hop.
pub struct Ctx<'a> {
    core: &'a mut Core,
    w: &'a mut WorkerCtx,
}

impl Ctx<'_> {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.core.shared.id
    }

    /// A handle other threads can use to talk to this connection.
    pub fn connection(&self) -> Connection {
        Connection::from_shared(self.core.shared.clone())
    }

    /// The peer's address, once connected.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.core.peer
    }

    /// Queues bytes for writing; without autocork they are written at once.
    /// Errors as [`Connection::write`].
    pub fn write(&mut self, data: impl Into<Bytes>) -> Result<()> {
        let data = data.into();
        if data.is_empty() {
            return Ok(());
        }
        if matches!(self.core.phase, Phase::Closing | Phase::Closed) {
            return Err(Error::Closed);
        }
        self.core.shared.reserve_write(data.len())?;
        if self.core.opts.autocork {
            self.core.enqueue(data);
            return Ok(());
        }
        self.core.write_through(data, self.w)
    }

    /// Encodes `msg` with its write type and queues it (all or nothing).
    pub fn send<E: crate::framing::Encoder>(&mut self, msg: E) -> Result<()> {
        if matches!(self.core.phase, Phase::Closing | Phase::Closed) {
            return Err(Error::Closed);
        }
        let mut parts = Vec::with_capacity(2);
        msg.encode(&mut parts)?;
        let n: usize = parts.iter().map(|b| b.len()).sum();
        self.core.shared.reserve_write(n)?;
        for data in parts {
            self.core.enqueue(data);
        }
        if !self.core.opts.autocork {
            self.core.flush(self.w);
        }
        Ok(())
    }

    /// Queues a read at the back of the read queue.
    pub fn push_read<D: Decoder>(&mut self, decoder: D) -> Reply<D::Output> {
        let (req, reply) = QueuedRead::request(decoder);
        self.core.push_read_req(req, false);
        reply
    }

    /// Queues a read at the front of the read queue.
    pub fn unshift_read<D: Decoder>(&mut self, decoder: D) -> Reply<D::Output> {
        let (req, reply) = QueuedRead::request(decoder);
        self.core.push_read_req(req, true);
        reply
    }

    /// Sets (or clears) the streaming decoder; see [`Connection::set_streaming`].
    pub fn set_streaming<D>(&mut self, decoder: Option<D>)
    where
        D: Decoder,
        D::Output: Into<Frame>,
    {
        self.core.stream = decoder.map(|d| Box::new(StreamAdapter(d)) as Box<dyn StreamDecode>);
    }

    /// Stops reading from the socket.
    pub fn stop_read(&mut self) {
        self.core.read_stopped = true;
    }

    /// Resumes reading.
    pub fn start_read(&mut self) {
        self.core.read_stopped = false;
    }

    /// The unconsumed bytes in the read buffer; removing from the front is allowed.
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        // The caller may take bytes off the front.
        self.core.rbuf_front_changed();
        &mut self.core.rbuf
    }

    /// Half-close after everything queued is written.
    pub fn shutdown(&mut self) -> Result<()> {
        if matches!(self.core.phase, Phase::Closed) {
            return Err(Error::Closed);
        }
        self.core.shutdown(self.w);
        Ok(())
    }

    /// Close (queued writes linger).
    pub fn close(&mut self) {
        self.core.close(self.w);
    }

    /// Sets an inactivity timeout.
    pub fn set_timeout(&mut self, kind: TimeoutKind, period: Option<Duration>) {
        self.core.set_timeout(kind, period, self.w);
    }

    /// Counts now as activity for the given timer.
    pub fn reset_timeout(&mut self, kind: TimeoutKind) {
        let now = Instant::now();
        self.core.reset_timeout(kind, now);
    }

    /// The connection's options, to change on the fly (socket options apply
    /// when the closure returns).
    pub fn configure(&mut self, f: impl FnOnce(&mut Options)) {
        f(Arc::make_mut(&mut self.core.opts));
        self.core.apply_options();
    }

    /// Starts TLS; bytes already buffered are handed to the TLS engine.
    pub fn starttls(&mut self, setup: TlsSetup) {
        self.core.starttls(setup, self.w);
    }

    /// Sends close_notify; the stream becomes plaintext once the peer answers.
    pub fn stoptls(&mut self) {
        self.core.stoptls(self.w);
    }

    /// The ALPN protocol the TLS handshake agreed on.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.core.tls.as_ref().and_then(|t| t.alpn())
    }

    /// Whether TLS is active.
    pub fn is_tls(&self) -> bool {
        self.core.tls.is_some()
    }

    /// The certificate chain the TLS peer presented (leaf first): the
    /// server's on a client, the client's on a server that asked for one.
    pub fn tls_peer_certificates(&self) -> Option<&[crate::tls::CertificateDer<'static>]> {
        self.core.tls.as_ref().and_then(|t| t.peer_certificates())
    }

    /// The server name a TLS client asked for with SNI (server side).
    pub fn tls_server_name(&self) -> Option<&str> {
        self.core.tls.as_ref().and_then(|t| t.sni())
    }

    /// The negotiated TLS version, once known.
    pub fn tls_protocol_version(&self) -> Option<crate::tls::ProtocolVersion> {
        self.core.tls.as_ref().and_then(|t| t.protocol_version())
    }

    /// The connection's counters.
    pub fn stats(&self) -> super::Stats {
        self.core.shared.stats()
    }
}

#[cfg(test)]
mod size_tests {
    #[test]
    fn print_sizes() {
        eprintln!(
            "Actor {} Core {} Options {} ConnShared {} Sink {}",
            std::mem::size_of::<super::Actor>(),
            std::mem::size_of::<super::Core>(),
            std::mem::size_of::<crate::Options>(),
            std::mem::size_of::<super::ConnShared>(),
            std::mem::size_of::<super::Sink>()
        );
    }
}
