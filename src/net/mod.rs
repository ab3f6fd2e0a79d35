//! Making connections: listen, connect, adopt an existing socket.
//!
//! Socket options go through socket2. Name resolution never runs on the
//! poller or a worker; addresses are tried one after another, each with its
//! own connect timeout and an optional prepare hook.

mod addr;
pub(crate) mod listen;
mod reactor;
pub(crate) mod stream;
#[cfg(unix)]
mod unix;

pub use crate::conn::actor::{HandlerFactory, PrepareFn, ResolveFn};
pub use addr::{parse_host_port, HostPort};
pub use listen::{ListenOptions, Listener, DEFAULT_BACKLOG};
pub use reactor::{MetricsHandle, Reactor};
#[cfg(unix)]
pub use unix::PeerCredentials;

use crate::conn::actor::{Dial, NewConn, Resolve, SinkSetup, Start};
use crate::conn::shared::ConnShared;
use crate::conn::{ConnId, Connection, Ctx, Handler, Options, Sink};
use crate::error::{Error, Result};
use crate::reactor::Task;
use crate::tls::{ClientConfig, ServerConfig, ServerName, TlsSetup};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use stream::Stream;

/// Where to connect: `"host:port"` (resolved off-thread), one address, or a
/// list of addresses tried in order.
#[derive(Debug, Clone)]
pub enum Target {
    /// A `host:port` string; numeric hosts are used as they are.
    HostPort(String),
    /// Addresses to try in order.
    Addrs(Vec<SocketAddr>),
}

impl Target {
    /// Parses an address as users write it — `host:port`, `[v6]:port`,
    /// `host port`, a bare host or IPv6 literal with `default_port` (see
    /// [`parse_host_port`] for the whole table). IP literals become
    /// [`Target::Addrs`] (no resolution); names stay
    /// [`Target::HostPort`], resolved off the workers when connecting.
    /// A malformed address is [`Error::InvalidInput`].
    ///
    /// ```
    /// use netactor::Target;
    /// let t = Target::parse("::1", Some(8080))?;
    /// assert!(matches!(t, Target::Addrs(a) if a[0] == "[::1]:8080".parse().unwrap()));
    /// assert!(Target::parse("[::1]:", None).is_err());
    /// # Ok::<(), netactor::Error>(())
    /// ```
    pub fn parse(s: &str, default_port: Option<u16>) -> Result<Target> {
        match parse_host_port(s, default_port)? {
            HostPort::Tcp { host, port } => match host.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(Target::Addrs(vec![SocketAddr::new(ip, port)])),
                Err(_) => Ok(Target::HostPort(format!("{host}:{port}"))),
            },
            HostPort::Unix(p) => Err(Error::InvalidInput(format!(
                "{}: Unix-domain sockets cannot be connected to with a TCP target",
                p.display()
            ))),
        }
    }

    /// The host part of a `host:port` target, for the TLS server name.
    fn host(&self) -> Option<String> {
        match self {
            Target::HostPort(s) => match parse_host_port(s, Some(0)) {
                Ok(HostPort::Tcp { host, .. }) => Some(host),
                _ => None,
            },
            Target::Addrs(a) => a.first().map(|a| a.ip().to_string()),
        }
    }
}

impl From<&str> for Target {
    fn from(s: &str) -> Self {
        Target::HostPort(s.to_string())
    }
}

impl From<String> for Target {
    fn from(s: String) -> Self {
        Target::HostPort(s)
    }
}

impl From<SocketAddr> for Target {
    fn from(a: SocketAddr) -> Self {
        Target::Addrs(vec![a])
    }
}

impl From<Vec<SocketAddr>> for Target {
    fn from(a: Vec<SocketAddr>) -> Self {
        Target::Addrs(a)
    }
}

/// How to make an outgoing connection.
///
/// ```
/// use netactor::{ConnectOptions, Options};
/// use std::time::Duration;
/// let co = ConnectOptions::new()
///     .options(Options::new().connect_timeout(Duration::from_secs(3)))
///     .prepare(|sock, _addr| sock.set_tcp_nodelay(true));
/// ```
#[derive(Clone, Default)]
pub struct ConnectOptions {
    pub(crate) conn: Options,
    pub(crate) prepare: Option<Arc<PrepareFn>>,
    pub(crate) resolver: Option<Arc<ResolveFn>>,
    pub(crate) tls: Option<(Arc<ClientConfig>, Option<ServerName<'static>>)>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("options", &self.conn)
            .field("prepare", &self.prepare.is_some())
            .field("resolver", &self.resolver.is_some())
            .field("tls", &self.tls.as_ref().map(|(_, name)| name))
            .finish()
    }
}

impl ConnectOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Options of the connection.
    pub fn options(mut self, opts: Options) -> Self {
        self.conn = opts;
        self
    }

    /// A hook run on each new socket before `connect()` (bind, socket options…).
    pub fn prepare<F>(mut self, f: F) -> Self
    where
        F: Fn(&socket2::Socket, SocketAddr) -> std::io::Result<()> + Send + Sync + 'static,
    {
        self.prepare = Some(Arc::new(f));
        self
    }

    /// Custom name resolution (a hosts override, a DNS crate, service
    /// discovery): called with the host and port of a `host:port` target
    /// that is not an IP literal, on a short-lived thread of its own (never
    /// a worker or the poller, so it may block); the addresses it returns
    /// are tried in order. An error fails the connect with
    /// [`Error::NoAddress`].
    ///
    /// ```
    /// use netactor::ConnectOptions;
    /// use std::net::SocketAddr;
    /// let co = ConnectOptions::new().resolver(|host, port| {
    ///     match host {
    ///         "db.internal" => Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))]),
    ///         _ => std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).map(Iterator::collect),
    ///     }
    /// });
    /// ```
    pub fn resolver<F>(mut self, f: F) -> Self
    where
        F: Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
    {
        self.resolver = Some(Arc::new(f));
        self
    }

    /// Start TLS as client once connected, verifying `server_name` (or, when
    /// `None`, the host part of the target).
    pub fn tls(
        mut self,
        config: Arc<ClientConfig>,
        server_name: Option<ServerName<'static>>,
    ) -> Self {
        self.tls = Some((config, server_name));
        self
    }
}

impl Reactor {
    /// Listens on `addr` in channel mode: accepted connections arrive on
    /// [`Listener::incoming`], their events on [`Listener::events`].
    ///
    /// ```
    /// let reactor = netactor::Reactor::builder().workers(1).build().unwrap();
    /// let listener = reactor.listen("127.0.0.1:0".parse().unwrap(), netactor::ListenOptions::new()).unwrap();
    /// assert_ne!(listener.local_addr().port(), 0);
    /// ```
    pub fn listen(&self, addr: SocketAddr, opts: ListenOptions) -> Result<Listener> {
        listen::start(&self.shared, listen::Bind::Tcp(addr), opts, None)
    }

    /// Listens on `addr` in handler mode: `factory` builds a [`Handler`] for
    /// each accepted connection, on that connection's worker.
    pub fn listen_with<F, H>(
        &self,
        addr: SocketAddr,
        opts: ListenOptions,
        factory: F,
    ) -> Result<Listener>
    where
        F: Fn(&mut Ctx<'_>) -> H + Send + Sync + 'static,
        H: Handler,
    {
        listen::start(
            &self.shared,
            listen::Bind::Tcp(addr),
            opts,
            Some(boxed(factory)),
        )
    }

    /// Listens on a Unix-domain socket in channel mode, like
    /// [`listen`](Self::listen). `path` is a file system path or, on Linux,
    /// `@name` in the abstract namespace. A socket file left by a server
    /// that is gone (connecting to it is refused) is replaced; a live one
    /// is `AddrInUse`. The file is removed when the listener is dropped —
    /// only if it is still the one this listener created.
    ///
    /// ```
    /// let reactor = netactor::Reactor::builder().workers(1).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("netactor-doc-{}.sock", std::process::id()));
    /// let listener = reactor.listen_unix(&path, netactor::ListenOptions::new()).unwrap();
    /// assert!(path.exists());
    /// drop(listener);
    /// reactor.shutdown(); // the poller lets the listener go
    /// assert!(!path.exists());
    /// ```
    #[cfg(unix)]
    pub fn listen_unix(
        &self,
        path: impl AsRef<std::path::Path>,
        opts: ListenOptions,
    ) -> Result<Listener> {
        listen::start(&self.shared, listen::Bind::Unix(path.as_ref()), opts, None)
    }

    /// Listens on a Unix-domain socket in handler mode (see
    /// [`listen_unix`](Self::listen_unix) and [`listen_with`](Self::listen_with)).
    #[cfg(unix)]
    pub fn listen_unix_with<F, H>(
        &self,
        path: impl AsRef<std::path::Path>,
        opts: ListenOptions,
        factory: F,
    ) -> Result<Listener>
    where
        F: Fn(&mut Ctx<'_>) -> H + Send + Sync + 'static,
        H: Handler,
    {
        listen::start(
            &self.shared,
            listen::Bind::Unix(path.as_ref()),
            opts,
            Some(boxed(factory)),
        )
    }

    /// Connects to a Unix-domain socket (`path`, or `@name` in Linux's
    /// abstract namespace). A local connect completes at once, so unlike
    /// [`connect`](Self::connect) its failure (no such file, refused,
    /// permission denied) is returned here, as the OS error.
    ///
    /// ```no_run
    /// # fn f(reactor: &netactor::Reactor) -> netactor::Result<()> {
    /// let (tx, events) = netactor::event_channel(16);
    /// let conn = reactor.connect_unix("/run/app.sock", netactor::Options::new(), tx)?;
    /// conn.write("PING\n")?;
    /// # Ok(()) }
    /// ```
    #[cfg(unix)]
    pub fn connect_unix(
        &self,
        path: impl AsRef<std::path::Path>,
        opts: Options,
        sink: impl Into<Sink>,
    ) -> Result<Connection> {
        let s = unix::connect(path.as_ref())?;
        self.adopt_unix(s, opts, sink)
    }

    /// Takes over pipe ends as one connection: bytes are read from `read`
    /// and written to `write` — a child's stdout and stdin, a pipe pair, a
    /// FIFO. Either may be `None`: a read-only connection refuses writes
    /// (`BrokenPipe`, as after [`Connection::shutdown`]), a write-only one
    /// reads as end of stream. Everything else is as for sockets — framing,
    /// back-pressure (a full pipe holds writes in the queue, bounded by
    /// `wbuf_max`), timeouts, events; [`Connection::shutdown`] closes the
    /// write end, so the reader sees end of file. The descriptors are made
    /// non-blocking; each must be a pipe, FIFO, socket or character device
    /// (a regular file cannot be polled): anything else is `InvalidInput`.
    ///
    /// ```
    /// let reactor = netactor::Reactor::builder().workers(1).build().unwrap();
    /// let (r, mut w) = std::io::pipe().unwrap();
    /// let (tx, _events) = netactor::event_channel(16);
    /// let conn = reactor.adopt_pipes(Some(r.into()), None, netactor::Options::new(), tx).unwrap();
    /// std::io::Write::write_all(&mut w, b"from a pipe\n").unwrap();
    /// let line = conn.push_read(netactor::framing::Line::new()).unwrap()
    ///     .recv_timeout(std::time::Duration::from_secs(5)).unwrap();
    /// assert_eq!(&line.line[..], b"from a pipe");
    /// ```
    #[cfg(unix)]
    pub fn adopt_pipes(
        &self,
        read: Option<std::os::fd::OwnedFd>,
        write: Option<std::os::fd::OwnedFd>,
        opts: Options,
        sink: impl Into<Sink>,
    ) -> Result<Connection> {
        for fd in read.iter().chain(write.iter()) {
            check_pollable(fd)?;
        }
        if read.is_none() && write.is_none() {
            return Err(Error::InvalidInput(
                "adopt_pipes needs at least one end".into(),
            ));
        }
        let read_only = write.is_none();
        let stream = Stream::Pipe { read, write };
        stream.set_nonblocking(true)?;
        let conn = self.spawn_conn(Start::Stream(stream), opts, sink.into(), None)?;
        if read_only {
            conn.shared
                .write_shut
                .store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(conn)
    }

    /// Takes over a child process's stdout (read) and stdin (write) as one
    /// connection (see [`adopt_pipes`](Self::adopt_pipes)); spawn it with
    /// `Stdio::piped()` for both. Its stderr, if piped, stays in `child`
    /// (adopt it on its own as a read-only connection if you want it).
    ///
    /// ```no_run
    /// # fn f(reactor: &netactor::Reactor) -> netactor::Result<()> {
    /// use std::process::{Command, Stdio};
    /// let mut child = Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    /// let (tx, events) = netactor::event_channel(16);
    /// let conn = reactor.adopt_child(&mut child, netactor::Options::new(), tx)?;
    /// conn.write("hello\n")?;
    /// # Ok(()) }
    /// ```
    #[cfg(unix)]
    pub fn adopt_child(
        &self,
        child: &mut std::process::Child,
        opts: Options,
        sink: impl Into<Sink>,
    ) -> Result<Connection> {
        let read = child.stdout.take().map(std::os::fd::OwnedFd::from);
        let write = child.stdin.take().map(std::os::fd::OwnedFd::from);
        if read.is_none() && write.is_none() {
            return Err(Error::InvalidInput(
                "the child has neither a piped stdin nor a piped stdout".into(),
            ));
        }
        self.adopt_pipes(read, write, opts, sink)
    }

    /// Takes over a connected `UnixStream` (made non-blocking here).
    #[cfg(unix)]
    pub fn adopt_unix(
        &self,
        stream: std::os::unix::net::UnixStream,
        opts: Options,
        sink: impl Into<Sink>,
    ) -> Result<Connection> {
        check_stream_socket(&stream)?;
        stream.set_nonblocking(true)?;
        let cred = unix::peer_credentials(&stream);
        let conn = self.spawn_conn(Start::Stream(Stream::Unix(stream)), opts, sink.into(), None)?;
        conn.shared.set_peer_credentials(cred);
        Ok(conn)
    }

    /// Connects to `target`. Returns at once: the handle is usable
    /// immediately (writes and reads are queued until the connection is up).
    /// Success is reported as [`crate::Event::Connected`], failure as a fatal
    /// [`crate::Event::Error`] with the last address's error.
    pub fn connect(
        &self,
        target: impl Into<Target>,
        opts: ConnectOptions,
        sink: impl Into<Sink>,
    ) -> Result<Connection> {
        let target = target.into();
        let tls = match &opts.tls {
            None => None,
            Some((cfg, name)) => {
                let name = match name {
                    Some(n) => n.clone(),
                    None => {
                        let host = target
                            .host()
                            .ok_or_else(|| Error::InvalidInput("no host name for TLS".into()))?;
                        ServerName::try_from(host)
                            .map_err(|e| Error::InvalidInput(format!("bad TLS server name: {e}")))?
                    }
                };
                Some(TlsSetup::client(cfg.clone(), name))
            }
        };
        let start = match target {
            Target::Addrs(addrs) => Start::Connect(Box::new(Dial {
                addrs,
                prepare: opts.prepare.clone(),
            })),
            Target::HostPort(s) => match s.parse::<SocketAddr>() {
                Ok(a) => Start::Connect(Box::new(Dial {
                    addrs: vec![a],
                    prepare: opts.prepare.clone(),
                })),
                Err(_) => Start::Resolve(Box::new(Resolve {
                    target: s,
                    prepare: opts.prepare.clone(),
                    resolver: opts.resolver.clone(),
                })),
            },
        };
        self.spawn_conn(start, opts.conn, sink.into(), tls)
    }

    /// Takes over an already connected std `TcpStream` (made non-blocking here).
    ///
    /// The socket must be a stream socket: anything else (a UDP socket
    /// turned into a `TcpStream`, say) is refused with
    /// [`Error::InvalidInput`], and nothing is registered. (The reference
    /// refuses non-stream sockets the same way.)
    pub fn adopt(
        &self,
        stream: TcpStream,
        opts: Options,
        sink: impl Into<Sink>,
    ) -> Result<Connection> {
        check_stream_socket(&stream)?;
        stream.set_nonblocking(true)?;
        self.spawn_conn(Start::Stream(Stream::Tcp(stream)), opts, sink.into(), None)
    }

    /// Like [`adopt`](Self::adopt), starting server-side TLS at once.
    pub fn adopt_tls_server(
        &self,
        stream: TcpStream,
        opts: Options,
        sink: impl Into<Sink>,
        config: Arc<ServerConfig>,
    ) -> Result<Connection> {
        check_stream_socket(&stream)?;
        stream.set_nonblocking(true)?;
        self.spawn_conn(
            Start::Stream(Stream::Tcp(stream)),
            opts,
            sink.into(),
            Some(TlsSetup::Server(config)),
        )
    }

    fn spawn_conn(
        &self,
        start: Start,
        opts: Options,
        sink: Sink,
        tls: Option<TlsSetup>,
    ) -> Result<Connection> {
        let Some(_admitted) = self.shared.spawn_guard() else {
            return Err(Error::Closed);
        };
        let Some(limit) = crate::reactor::limit::LimitGuard::acquire(&self.shared.limits, None)
        else {
            return Err(Error::no_space(
                crate::error::Limit::Connections,
                self.shared.limits.reactor.max(),
            ));
        };
        let worker = self.shared.pick_worker().clone();
        let id = ConnId(self.shared.next_conn_id());
        let close_on_drop = matches!(sink, Sink::Channel(_));
        let shared = ConnShared::new(
            id,
            &self.shared.workers,
            worker.idx,
            opts.wbuf_max,
            close_on_drop,
            Default::default(),
        );
        if let Start::Stream(Stream::Tcp(s)) = &start {
            shared.set_addrs(s.local_addr().ok(), s.peer_addr().ok());
        }
        let handle = Connection::from_shared(shared.clone());
        worker.push(Task::Spawn(NewConn {
            shared,
            opts: Arc::new(opts),
            sink: SinkSetup::Ready(sink),
            start,
            tls: tls.map(Box::new),
            limit: limit.map(Box::new),
        }));
        Ok(handle)
    }
}

/// A listener's handler factory, type-erased: each handler in its actor
/// when it fits (`HandlerBox`), else in a box of its own.
fn boxed<F, H>(factory: F) -> Arc<crate::conn::actor::InlineFactory>
where
    F: Fn(&mut Ctx<'_>) -> H + Send + Sync + 'static,
    H: Handler,
{
    Arc::new(move |ctx: &mut Ctx<'_>| {
        let handler = factory(ctx);
        // smallbox's constructor for a value behind a trait object: in
        // place when `H` fits (`HandlerBox`), on the heap otherwise.
        smallbox::smallbox!(handler)
    })
}

/// Refuses a descriptor the poller cannot watch as a stream (a regular
/// file, a directory): pipes, FIFOs, sockets and character devices pass.
#[cfg(unix)]
fn check_pollable(fd: &std::os::fd::OwnedFd) -> Result<()> {
    use rustix::fs::FileType;
    let st = rustix::fs::fstat(fd).map_err(std::io::Error::from)?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Fifo | FileType::Socket | FileType::CharacterDevice => Ok(()),
        other => Err(Error::InvalidInput(format!(
            "not a pipe, socket or character device ({other:?}): it cannot be polled"
        ))),
    }
}

/// Refuses a socket that is not a stream socket (`SO_TYPE`).
fn check_stream_socket(stream: &impl crate::sys::AsSource) -> Result<()> {
    let ty = socket2::SockRef::from(stream).r#type()?;
    if ty != socket2::Type::STREAM {
        return Err(Error::InvalidInput(format!(
            "only stream sockets can be adopted (this one is {ty:?})"
        )));
    }
    Ok(())
}

/// Resolves `host:port` on the calling thread (a blocking helper for tools
/// and tests; the reactor itself resolves off-thread).
pub fn resolve(target: &str) -> Result<Vec<SocketAddr>> {
    let v: Vec<_> = target
        .to_socket_addrs()
        .map_err(|e| Error::NoAddress(e.to_string()))?
        .collect();
    if v.is_empty() {
        return Err(Error::NoAddress(target.to_string()));
    }
    Ok(v)
}
