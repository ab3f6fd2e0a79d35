//! Listening sockets: created with socket2 (configurable backlog), accepted
//! by the holder of the poller role (the reactor's [`Acceptor`] interface,
//! with the accept budget and back-off kept here), handed to a worker as
//! new actors.

use crate::conn::actor::{Actor, InlineFactory, NewConn, SinkSetup, Start};
use crate::conn::shared::ConnShared;
use crate::conn::{ConnId, Connection, Event, Options, Sink};
use crate::error::Result;
use crate::net::stream::Stream;
use crate::reactor::{AcceptCx, Acceptor, PollerCmd, ReactorShared, Token};
use crate::tls::{ServerConfig, TlsSetup};
use crossbeam_channel::{Receiver, Sender};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections accepted from one listener per wake-up before others get a turn.
const ACCEPT_BUDGET: usize = 128;
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Default listen backlog: 1024 (the kernel clamps it to `somaxconn`).
pub const DEFAULT_BACKLOG: i32 = 1024;

/// How a listener is set up.
///
/// ```
/// use netactor::{ListenOptions, Options};
/// let lo = ListenOptions::new().backlog(4096).options(Options::new().no_delay(true));
/// ```
#[derive(Clone)]
pub struct ListenOptions {
    pub(crate) backlog: i32,
    pub(crate) reuse_address: bool,
    pub(crate) reuse_port: bool,
    pub(crate) conn: Options,
    pub(crate) tls: Option<Arc<ServerConfig>>,
    pub(crate) incoming_capacity: usize,
    pub(crate) events_capacity: usize,
    pub(crate) max_connections: Option<usize>,
}

impl std::fmt::Debug for ListenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenOptions")
            .field("backlog", &self.backlog)
            .field("reuse_address", &self.reuse_address)
            .field("reuse_port", &self.reuse_port)
            .field("options", &self.conn)
            .field("tls", &self.tls.is_some())
            .field("incoming_capacity", &self.incoming_capacity)
            .field("events_capacity", &self.events_capacity)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            backlog: DEFAULT_BACKLOG,
            reuse_address: true,
            reuse_port: false,
            conn: Options::default(),
            tls: None,
            incoming_capacity: 1024,
            events_capacity: 4096,
            max_connections: None,
        }
    }
}

impl ListenOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Listen backlog (default [`DEFAULT_BACKLOG`]).
    pub fn backlog(mut self, n: i32) -> Self {
        self.backlog = n;
        self
    }

    /// `SO_REUSEADDR` (default on).
    pub fn reuse_address(mut self, on: bool) -> Self {
        self.reuse_address = on;
        self
    }

    /// `SO_REUSEPORT` (default off). Unix only: elsewhere `listen` fails
    /// with `Unsupported` when it is on.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// Options for every accepted connection.
    pub fn options(mut self, opts: Options) -> Self {
        self.conn = opts;
        self
    }

    /// Serve TLS on every accepted connection.
    pub fn tls(mut self, config: Arc<ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Capacity of the accepted-connections channel (channel mode). When it
    /// is full, accepting pauses and connections wait in the kernel backlog.
    pub fn incoming_capacity(mut self, n: usize) -> Self {
        self.incoming_capacity = n.max(1);
        self
    }

    /// At most `n` of this listener's connections open at once (default: no
    /// limit). At the limit accepting pauses — connections wait in the
    /// kernel backlog — and resumes as soon as one closes. Counted exactly
    /// (a slot is taken before `accept` and given back once the connection
    /// has closed and its `Closed` event was handed over). The reactor can have a limit of its own
    /// ([`ReactorBuilder::max_connections`](crate::ReactorBuilder::max_connections)).
    ///
    /// ```
    /// let lo = netactor::ListenOptions::new().max_connections(512);
    /// # drop(lo);
    /// ```
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// Capacity of the shared events channel (channel mode).
    pub fn events_capacity(mut self, n: usize) -> Self {
        self.events_capacity = n.max(1);
        self
    }
}

pub(crate) enum AcceptMode {
    Channel {
        incoming: Sender<Connection>,
        events: Sender<(ConnId, Event)>,
    },
    /// One factory per worker (each calling the application's): see
    /// [`PerWorker`].
    Handler(PerWorker<InlineFactory>),
}

/// One `Arc` per worker of what every accepted connection holds a
/// reference to (its options, its handler factory, its TLS config): a
/// connection clones and drops its own worker's, so the reference counts
/// a connection's start and end write stay in that worker's cache. One
/// `Arc` shared by all would have its count's cache line cross between
/// the cores on every connection, both ways — with connection churn, a
/// few cache misses per connection that a hand-written loop (which keeps
/// no such references) does not have.
pub(crate) type PerWorker<T> = Box<[Arc<T>]>;

/// Aligned to two cache lines (the unit adjacent-line prefetchers pair),
/// for what a per-worker allocation must not share with its neighbour.
#[repr(align(128))]
struct Padded<T>(T);

/// `make()` for each of the reactor's `n` workers (indexed by worker).
fn per_worker<T: ?Sized>(n: usize, make: impl Fn() -> Arc<T>) -> PerWorker<T> {
    (0..n).map(|_| make()).collect()
}

pub(crate) enum AcceptOutcome {
    Accepted,
    WouldBlock,
    /// Stop accepting for a while (out of descriptors, consumer not keeping up).
    Pause(String),
    /// A connection limit is reached: stop until a connection closes.
    AtLimit,
    /// One connection failed; go on with the next.
    Skip,
}

/// A listening socket: TCP, or on Unix a Unix-domain socket (with the
/// socket file it created, removed when the listener goes).
pub(crate) enum ListenSock {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(
        std::os::unix::net::UnixListener,
        #[allow(dead_code)] // held for its Drop: removes the socket file
        Option<super::unix::OwnedPath>,
    ),
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for ListenSock {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            ListenSock::Tcp(l) => l.as_raw_fd(),
            ListenSock::Unix(l, _) => l.as_raw_fd(),
        }
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for ListenSock {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            ListenSock::Tcp(l) => l.as_fd(),
            ListenSock::Unix(l, _) => l.as_fd(),
        }
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsSocket for ListenSock {
    fn as_socket(&self) -> std::os::windows::io::BorrowedSocket<'_> {
        match self {
            ListenSock::Tcp(l) => l.as_socket(),
        }
    }
}

pub(crate) struct ListenerShared {
    pub(crate) idx: usize,
    pub(crate) sock: ListenSock,
    /// The bound TCP address (`0.0.0.0:0` for a Unix-domain listener).
    pub(crate) local: SocketAddr,
    /// How logs name the listener: `IP:PORT` or `unix:PATH`.
    pub(crate) label: String,
    #[cfg(unix)]
    pub(crate) unix_path: Option<std::path::PathBuf>,
    /// Per worker, equal (copy on write per connection).
    opts: PerWorker<Options>,
    mode: AcceptMode,
    /// Per worker, equal clones of the application's config (its caches
    /// and ticketer are shared `Arc`s inside it).
    tls: Option<PerWorker<ServerConfig>>,
    /// This listener's open connections and their maximum.
    pub(crate) limit: Arc<crate::reactor::limit::ConnLimit>,
}

impl ListenerShared {
    /// Accepts one connection and queues it for a worker.
    pub(crate) fn accept_one(&self, cx: &mut AcceptCx<'_, Actor>) -> AcceptOutcome {
        let reactor = cx.reactor;
        if let AcceptMode::Channel { incoming, .. } = &self.mode {
            if incoming.is_full() {
                reactor.poll_metrics.accept_pauses[crate::metrics::PAUSE_BACKLOG].inc();
                return AcceptOutcome::Pause(
                    "accept queue full (application not accepting)".into(),
                );
            }
        }
        // The slot first: at the limit the connection stays in the backlog.
        let Some(limit) =
            crate::reactor::limit::LimitGuard::acquire(&reactor.limits, Some(&self.limit))
        else {
            return AcceptOutcome::AtLimit;
        };
        // Non-blocking from the accept itself (one system call on Linux).
        let accepted = match &self.sock {
            ListenSock::Tcp(l) => {
                crate::sys::socket::accept_tcp(l).map(|(s, peer)| (Stream::Tcp(s), peer))
            }
            #[cfg(unix)]
            ListenSock::Unix(l, _) => {
                crate::sys::socket::accept_unix(l).map(|s| (Stream::Unix(s), None))
            }
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return AcceptOutcome::WouldBlock,
            Err(e) => {
                return match e.raw_os_error() {
                    Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS)
                    | Some(libc::ENOMEM) => {
                        reactor.poll_metrics.accept_pauses[crate::metrics::PAUSE_DESCRIPTORS].inc();
                        AcceptOutcome::Pause(format!("accept failed: {e}"))
                    }
                    _ => {
                        log::debug!("accept on {}: {e}", self.label);
                        AcceptOutcome::Skip
                    }
                }
            }
        };
        let (worker, id) = cx.place();
        let id = ConnId(id);
        let channel = matches!(self.mode, AcceptMode::Channel { .. });
        let w = worker.idx;
        let opts = self.opts[w].clone();
        // The handle knows its addresses before the actor starts: the peer
        // from accept, the local one from the listener unless it is a
        // wildcard (then one `getsockname`). Written before the state is
        // shared, so without taking its lock.
        let mut info = crate::conn::shared::ConnInfo::default();
        match &stream {
            Stream::Tcp(tcp) => {
                info.local = if self.local.ip().is_unspecified() {
                    tcp.local_addr().ok()
                } else {
                    Some(self.local)
                };
                info.peer = peer;
            }
            #[cfg(unix)]
            Stream::Unix(u) => info.peer_cred = super::unix::peer_credentials(u),
            #[cfg(unix)]
            Stream::Pipe { .. } => {} // never accepted
        }
        let shared = ConnShared::new(id, &reactor.workers, w, opts.wbuf_max, channel, info);
        let sink = match &self.mode {
            AcceptMode::Channel { events, .. } => SinkSetup::Ready(Sink::Channel(events.clone())),
            AcceptMode::Handler(f) => SinkSetup::Factory(f[w].clone()),
        };
        let handle = channel.then(|| Connection::from_shared(shared.clone()));
        let new = NewConn {
            shared,
            opts,
            sink,
            start: Start::Accepted(stream),
            tls: self
                .tls
                .as_ref()
                .map(|c| Box::new(TlsSetup::Server(c[w].clone()))),
            limit: limit.map(Box::new),
        };
        // The poller role's holder (this thread) is the only writer.
        reactor.poll_metrics.accepted.inc();
        log::trace!("{}: accepted on {} from {:?}", id, self.label, peer);
        cx.spawn(worker.idx, new);
        if let (Some(handle), AcceptMode::Channel { incoming, .. }) = (handle, &self.mode) {
            // Cannot be full: checked above, and the poller is the only sender.
            let _ = incoming.try_send(handle);
        }
        AcceptOutcome::Accepted
    }
}

/// A listener as the poller role owns it: the socket and its accept state.
pub(crate) struct ListenerState {
    shared: Arc<ListenerShared>,
    paused_until: Option<Instant>,
    backoff: Duration,
    /// Not re-armed because a connection limit is reached: resumed when a
    /// slot frees (`Limits::freed`).
    at_limit: bool,
    /// Its interest is off (`Poller::quiet_listener`) while accepting
    /// pauses: re-armed when an accept loop next runs dry.
    quiet: bool,
}

impl ListenerState {
    fn rearm(&mut self, poller: &crate::sys::Poller, token: Token) {
        self.quiet = false;
        let _ = poller.rearm_listener(&self.shared.sock, token.0);
    }

    /// Accepting pauses: no readiness reports until [`rearm`](Self::rearm).
    /// (A oneshot registration is silent already: nothing to do.)
    fn quiet(&mut self, poller: &crate::sys::Poller, token: Token) {
        if !crate::sys::LISTENER_ONESHOT && !self.quiet {
            self.quiet = true;
            let _ = poller.quiet_listener(&self.shared.sock, token.0);
        }
    }
}

impl Acceptor<Actor> for ListenerState {
    fn register(&self, poller: &crate::sys::Poller, token: Token) -> io::Result<()> {
        // Deleted again (`deregister`) before the poller role drops a
        // listener: RemoveListener / StopAccepting / Shutdown.
        let r = poller.add_listener(&self.shared.sock, token.0);
        r.inspect_err(|e| log::error!("cannot register listener {}: {e}", self.shared.label))
    }

    fn deregister(&self, poller: &crate::sys::Poller) {
        let _ = poller.delete(&self.shared.sock);
    }

    fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    fn waiting_for_slot(&self) -> bool {
        self.at_limit
    }

    fn slot_freed(&mut self) {
        self.at_limit = false;
    }

    fn accept(&mut self, cx: &mut AcceptCx<'_, Actor>) {
        self.paused_until = None;
        let poller = &cx.reactor.poller;
        for _ in 0..ACCEPT_BUDGET {
            match self.shared.accept_one(cx) {
                AcceptOutcome::Accepted => {
                    self.backoff = BACKOFF_MIN;
                }
                AcceptOutcome::WouldBlock => {
                    // Edge-triggered: drained, the next connection raises a
                    // new edge — unless the interest was turned off.
                    if crate::sys::LISTENER_ONESHOT || self.quiet {
                        self.rearm(poller, cx.token);
                    }
                    return;
                }
                AcceptOutcome::Pause(why) => {
                    log::warn!(
                        "listener {}: {why}; pausing accept for {:?}",
                        self.shared.label,
                        self.backoff
                    );
                    self.paused_until = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    self.quiet(poller, cx.token);
                    return;
                }
                AcceptOutcome::AtLimit => {
                    // Not re-armed (oneshot): no wake-ups while at the limit;
                    // the backlog holds the rest until a connection closes.
                    if !self.at_limit {
                        cx.reactor.poll_metrics.accept_pauses[crate::metrics::PAUSE_LIMIT].inc();
                        log::warn!(
                            "listener {}: connection limit reached ({} here, {} in the reactor); \
                             accepting resumes when a connection closes",
                            self.shared.label,
                            self.shared.limit.max(),
                            cx.reactor.limits.reactor.max()
                        );
                    }
                    self.at_limit = true;
                    self.quiet(poller, cx.token);
                    return;
                }
                AcceptOutcome::Skip => {}
            }
        }
        // Budget used up: re-arm; a still-pending backlog fires again at once
        // (edge-triggered too: re-arming reports readiness that is there).
        self.rearm(poller, cx.token);
    }
}

/// A listening socket. Dropping it stops accepting; accepted connections live on.
///
/// In channel mode ([`crate::Reactor::listen`]) accepted connections arrive
/// on [`incoming`](Self::incoming) and all their events on
/// [`events`](Self::events). In handler mode ([`crate::Reactor::listen_with`])
/// a handler is built for each connection on its worker.
pub struct Listener {
    pub(crate) shared: Arc<ListenerShared>,
    reactor: Arc<ReactorShared<Actor>>,
    incoming: Option<Receiver<Connection>>,
    events: Option<Receiver<(ConnId, Event)>>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local", &self.shared.label)
            .finish()
    }
}

impl Listener {
    /// The bound address (with the real port when port 0 was asked for);
    /// `0.0.0.0:0` for a Unix-domain listener (see [`unix_path`](Self::unix_path)).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// The path (or `@name` in Linux's abstract namespace) of a
    /// Unix-domain listener; `None` for TCP.
    #[cfg(unix)]
    pub fn unix_path(&self) -> Option<&std::path::Path> {
        self.shared.unix_path.as_deref()
    }

    /// Accepted connections (channel mode; empty in handler mode).
    pub fn incoming(&self) -> &Receiver<Connection> {
        static NEVER: std::sync::OnceLock<Receiver<Connection>> = std::sync::OnceLock::new();
        self.incoming
            .as_ref()
            .unwrap_or_else(|| NEVER.get_or_init(crossbeam_channel::never))
    }

    /// Events of every accepted connection, tagged with its id (channel mode).
    pub fn events(&self) -> &Receiver<(ConnId, Event)> {
        static NEVER: std::sync::OnceLock<Receiver<(ConnId, Event)>> = std::sync::OnceLock::new();
        self.events
            .as_ref()
            .unwrap_or_else(|| NEVER.get_or_init(crossbeam_channel::never))
    }

    /// Waits up to `timeout` for the next accepted connection.
    pub fn accept_timeout(&self, timeout: Duration) -> Option<Connection> {
        self.incoming().recv_timeout(timeout).ok()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.reactor
            .command(PollerCmd::RemoveListener(self.shared.idx));
    }
}

pub(crate) fn bind(addr: SocketAddr, lo: &ListenOptions) -> io::Result<TcpListener> {
    let socket = crate::sys::socket::stream_socket(
        socket2::Domain::for_address(addr),
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(lo.reuse_address)?;
    if lo.reuse_port {
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
        #[cfg(not(unix))]
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_REUSEPORT does not exist on this platform",
        ));
    }
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    socket.bind(&addr.into())?;
    socket.listen(lo.backlog)?;
    if crate::sys::socket::ACCEPT_INHERITS_OPTIONS {
        // Every accepted connection inherits these (see the constant): set
        // once here, they cost nothing per connection. Off is the kernel's
        // default. Errors are ignored as they are per connection elsewhere.
        let o = &lo.conn;
        if o.no_delay {
            let _ = socket.set_tcp_nodelay(true);
        }
        if o.keepalive {
            let _ = socket.set_keepalive(true);
        }
        if o.oobinline {
            let _ = socket.set_out_of_band_inline(true);
        }
    }
    Ok(socket.into())
}

/// What to listen on.
pub(crate) enum Bind<'a> {
    Tcp(SocketAddr),
    #[cfg(unix)]
    Unix(&'a std::path::Path),
    #[allow(dead_code)]
    Never(std::marker::PhantomData<&'a ()>),
}

pub(crate) fn start(
    reactor: &Arc<ReactorShared<Actor>>,
    addr: Bind<'_>,
    lo: ListenOptions,
    handler: Option<Arc<InlineFactory>>,
) -> Result<Listener> {
    if reactor.admission.is_closed() {
        return Err(crate::Error::Closed);
    }
    #[cfg(unix)]
    let mut unix_path = None;
    let (sock, local, label) = match addr {
        Bind::Tcp(addr) => {
            let sock = bind(addr, &lo)?;
            let local = sock.local_addr()?;
            (ListenSock::Tcp(sock), local, local.to_string())
        }
        #[cfg(unix)]
        Bind::Unix(path) => {
            let (l, owned) = super::unix::bind(path, lo.backlog)?;
            unix_path = Some(path.to_path_buf());
            (
                ListenSock::Unix(l, owned),
                SocketAddr::from(([0, 0, 0, 0], 0)),
                format!("unix:{}", path.display()),
            )
        }
        Bind::Never(_) => unreachable!(),
    };
    let n = reactor.workers.len();
    let (mode, incoming, events) = match handler {
        Some(f) => {
            let each = per_worker(n, || {
                // Padded: the reference count every connection of this
                // worker raises and drops gets cache lines of its own. The
                // closure alone is one pointer, and the workers' copies
                // would be neighbours in one line, counted by both cores.
                let f = Padded(f.clone());
                Arc::new(move |ctx: &mut crate::Ctx<'_>| (f.0)(ctx)) as Arc<InlineFactory>
            });
            (AcceptMode::Handler(each), None, None)
        }
        None => {
            let (itx, irx) = crossbeam_channel::bounded(lo.incoming_capacity);
            let (etx, erx) = crossbeam_channel::bounded(lo.events_capacity);
            (
                AcceptMode::Channel {
                    incoming: itx,
                    events: etx,
                },
                Some(irx),
                Some(erx),
            )
        }
    };
    let shared = Arc::new(ListenerShared {
        idx: reactor.next_listener_idx(),
        sock,
        local,
        label,
        #[cfg(unix)]
        unix_path,
        opts: per_worker(n, || Arc::new(lo.conn.clone())),
        mode,
        tls: lo
            .tls
            .map(|c| per_worker(n, || Arc::new(ServerConfig::clone(&c)))),
        limit: Arc::new(crate::reactor::limit::ConnLimit::new(lo.max_connections)),
    });
    let state = ListenerState {
        shared: shared.clone(),
        paused_until: None,
        backoff: BACKOFF_MIN,
        at_limit: false,
        quiet: false,
    };
    reactor.command(PollerCmd::AddListener(shared.idx, Box::new(state)));
    Ok(Listener {
        shared,
        reactor: reactor.clone(),
        incoming,
        events,
    })
}
