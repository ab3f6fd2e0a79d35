//! Connections: the handle applications hold, the events they receive, and
//! the actor that runs on a worker.
//!
//! A [`Connection`] is a cheap, cloneable, `Send + Sync` handle. Every method
//! posts a message to the connection's mailbox; the actor applies messages
//! one at a time, in order, on the worker that owns the connection. Results
//! come back as [`Event`]s (on the channel or handler chosen when the
//! connection was made) and as [`Reply`]s to read requests.

pub(crate) mod actor;
mod blocking;
pub(crate) mod deque;
mod mailbox;
mod options;
mod reply;
pub(crate) mod shared;

pub use actor::{Ctx, Handler};
pub use blocking::BlockingIo;
pub use options::{
    Options, DEFAULT_CONNECT_TIMEOUT, DEFAULT_LINGER, DEFAULT_RBUF_MAX, DEFAULT_WBUF_MAX,
};
pub use reply::{Reply, ReplyTimeoutError, TryReplyError};
pub use shared::{Stats, TlsState};

use crate::error::Inactivity;
use crate::error::{Error, Result, TimeoutKind};
use crate::framing::{Decoder, Frame};
use actor::{QueuedRead, StreamAdapter};
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use shared::{ConnRef, Msg};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Identifies a connection within its reactor (unique for the reactor's life).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Something that happened on a connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// An outgoing connection was established.
    Connected {
        /// The address actually connected to.
        peer: SocketAddr,
    },
    /// A frame decoded in streaming mode (see [`Connection::set_streaming`]).
    Read(Frame),
    /// The peer closed its sending side; writing may continue.
    Eof,
    /// The write queue is drained. Defined once for every write path
    /// ([`Connection::write`], [`Ctx::write`] whether or not the kernel took
    /// the bytes at once, encoders): the queue is at or below
    /// [`Options::low_water_mark`] after having been above it, or a drain
    /// was asked for ([`Connection::request_drain`], [`Ctx::request_drain`],
    /// or setting a low-water mark) and the queue is at or below the mark —
    /// empty when no mark is set. Without a mark and without a request, no
    /// `Drain` is sent. Bytes "out" means handed to the kernel.
    Drain,
    /// An inactivity timer expired. Not fatal: the connection stays open and
    /// the timer restarts for a full period.
    Timeout(TimeoutKind),
    /// An error. When `fatal`, the connection is being closed and `Closed` follows.
    Error {
        /// What went wrong.
        error: Error,
        /// Whether the connection is closing because of it.
        fatal: bool,
    },
    /// The TLS handshake completed (the peer is verified); application data
    /// now flows encrypted.
    TlsEstablished,
    /// Both close_notify alerts are through after [`Connection::stoptls`] (or,
    /// with [`Options::follow_stoptls`], after the peer's): the stream is
    /// plaintext again from here on.
    TlsStopped,
    /// The connection is closed; this is the last event for it.
    Closed,
}

/// The sending half of an event channel: events tagged with their connection.
pub type EventSender = Sender<(ConnId, Event)>;
/// The receiving half of an event channel.
pub type EventReceiver = Receiver<(ConnId, Event)>;

/// Where a connection's events go.
pub enum Sink {
    /// Events are sent, tagged with the connection id, over a channel.
    Channel(Sender<(ConnId, Event)>),
    /// Events are handled on the worker by this handler.
    Handler(Box<dyn Handler>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::Channel(_) => f.write_str("Sink::Channel"),
            Sink::Handler(_) => f.write_str("Sink::Handler"),
        }
    }
}

impl Sink {
    /// A handler sink from a closure.
    pub fn handler<F>(f: F) -> Sink
    where
        F: FnMut(&mut Ctx<'_>, Event) + Send + 'static,
    {
        Sink::Handler(Box::new(f))
    }
}

impl From<Sender<(ConnId, Event)>> for Sink {
    fn from(tx: Sender<(ConnId, Event)>) -> Self {
        Sink::Channel(tx)
    }
}

/// Creates a bounded event channel for [`Sink::Channel`].
///
/// When the channel is full the actor keeps further events itself and stops
/// reading from the socket until the application catches up, so a slow
/// consumer pushes back on the peer instead of growing memory.
pub fn event_channel(capacity: usize) -> (EventSender, EventReceiver) {
    crossbeam_channel::bounded(capacity.max(1))
}

/// A handle to a connection actor. Cheap to clone; `Send + Sync`.
///
/// Every method is a message to the actor and returns at once; messages
/// apply in the order they were posted, whatever state the connection is in
/// (one that cannot apply yet, like a `stoptls` before the handshake, waits
/// with everything posted after it — nothing is dropped or reordered).
///
/// Dropping the last handle of a channel-mode connection closes it (like the
/// reference's destroy-on-last-reference) with the rules of
/// [`close`](Self::close): queued writes are flushed within linger — also
/// when the connection was still being established, so
/// `connect; write; drop` delivers its bytes — and what cannot be sent is
/// reported as [`Error::Unsent`]. Handler-mode connections live until closed.
pub struct Connection {
    pub(crate) shared: ConnRef,
}

impl Clone for Connection {
    fn clone(&self) -> Self {
        Connection::from_shared(self.shared.clone())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 && self.shared.close_on_drop {
            let _ = self.shared.post(Msg::Close);
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Connection").field(&self.shared.id).finish()
    }
}

impl Connection {
    pub(crate) fn from_shared(shared: ConnRef) -> Self {
        shared.handles.fetch_add(1, Ordering::AcqRel);
        Connection { shared }
    }

    /// This connection's id (the tag on its channel events).
    pub fn id(&self) -> ConnId {
        self.shared.id
    }

    /// Queues bytes for writing. Fails at once, queueing nothing, with
    /// [`Error::NoSpace`] if the write queue would exceed `wbuf_max`, with
    /// [`Error::BrokenPipe`] after [`shutdown`](Self::shutdown), and with
    /// [`Error::Closed`] once the connection is closed.
    pub fn write(&self, data: impl Into<Bytes>) -> Result<()> {
        let data = data.into();
        let n = data.len();
        if n == 0 {
            return Ok(());
        }
        self.shared.reserve_write(n)?;
        self.shared.post(Msg::Write(data)).inspect_err(|_| {
            self.shared.release_write(n);
        })
    }

    /// Queues several buffers as one write: all of them or, on `NoSpace`,
    /// none; they leave together in one vectored `send` when they fit (no
    /// copy, no per-part system call). Errors as [`write`](Self::write).
    ///
    /// ```no_run
    /// # fn f(conn: &netactor::Connection) -> netactor::Result<()> {
    /// use bytes::Bytes;
    /// let body = Bytes::from_static(b"Hello, World!");
    /// let head = Bytes::from(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()));
    /// conn.write_parts([head, body])?;
    /// # Ok(()) }
    /// ```
    pub fn write_parts(&self, parts: impl IntoIterator<Item = Bytes>) -> Result<()> {
        self.post_parts(parts.into_iter().filter(|b| !b.is_empty()).collect())
    }

    /// Reserves `parts` together against `wbuf_max` and posts them as one
    /// message (released again if the post fails).
    fn post_parts(&self, parts: Vec<Bytes>) -> Result<()> {
        let n: usize = parts.iter().map(|b| b.len()).sum();
        if n == 0 {
            return Ok(());
        }
        self.shared.reserve_write(n)?;
        self.shared.post(Msg::WriteParts(parts)).inspect_err(|_| {
            self.shared.release_write(n);
        })
    }

    /// Encodes `msg` with its write type and queues the result (atomically:
    /// all of it or, on an encoding or `NoSpace` error, nothing).
    pub fn send<E: crate::framing::Encoder>(&self, msg: E) -> Result<()> {
        let mut parts = Vec::with_capacity(2);
        msg.encode(&mut parts)?;
        self.post_parts(parts)
    }

    /// Queues a read at the back of the read queue; the reply carries the frame.
    ///
    /// A read the connection can no longer serve is answered, never
    /// dropped: with the fatal error that ended the connection (the same
    /// one [`Event::Error`] reports — also for a request still in the
    /// mailbox at that moment), with `UnexpectedEof` when the peer's EOF
    /// leaves it unsatisfiable, or with `Closed` after an orderly close.
    /// Once the connection is gone, posting fails with `Closed` at once.
    pub fn push_read<D: Decoder>(&self, decoder: D) -> Result<Reply<D::Output>> {
        let (req, reply) = QueuedRead::request(decoder);
        self.shared.post(Msg::PushRead(req))?;
        Ok(reply)
    }

    /// Queues a read at the front of the read queue (it runs before all queued reads).
    pub fn unshift_read<D: Decoder>(&self, decoder: D) -> Result<Reply<D::Output>> {
        let (req, reply) = QueuedRead::request(decoder);
        self.shared.post(Msg::UnshiftRead(req))?;
        Ok(reply)
    }

    /// Streaming mode: when no read request is queued, decode every frame
    /// with `decoder` and deliver it as [`Event::Read`]. `None` turns it off.
    pub fn set_streaming<D>(&self, decoder: Option<D>) -> Result<()>
    where
        D: Decoder,
        D::Output: Into<Frame>,
    {
        let dec = decoder.map(|d| Box::new(StreamAdapter(d)) as Box<dyn actor::StreamDecode>);
        self.shared.post(Msg::Streaming(dec))
    }

    /// Stops reading from the socket (TCP flow control then holds the peer back).
    pub fn stop_read(&self) -> Result<()> {
        self.shared.post(Msg::StopRead)
    }

    /// Resumes reading after [`stop_read`](Self::stop_read).
    pub fn start_read(&self) -> Result<()> {
        self.shared.post(Msg::StartRead)
    }

    /// Half-closes: sends FIN once everything queued so far is written.
    /// Reading continues.
    pub fn shutdown(&self) -> Result<()> {
        self.shared.post(Msg::Shutdown)?;
        self.shared.write_shut.store(true, Ordering::Release);
        Ok(())
    }

    /// Closes the connection. Queued writes are still flushed for up to the
    /// linger period ([`Options::linger`], counted from this call); nothing
    /// more is read or delivered except `Closed`.
    ///
    /// * **While connecting**, with nothing queued, the connect is
    ///   cancelled (as in the reference). With writes queued, the connect —
    ///   and a connect-time TLS handshake — completes and the writes are
    ///   flushed, still within linger: `connect; write; close` (or drop) is
    ///   a reliable fire-and-forget send. A connect that fails reports its
    ///   fatal error; if linger runs out first, a non-fatal
    ///   [`Error::Unsent`] says how many bytes were not sent.
    /// * **During a TLS handshake** on an open connection nothing can be
    ///   flushed (plaintext waits for the handshake, and a peer being closed
    ///   on may never finish it): the connection closes at once, with
    ///   `Error::Unsent` if anything was queued.
    /// * When linger runs out with bytes left (or linger is zero), they are
    ///   dropped and `Error::Unsent` reports them, right before `Closed`.
    pub fn close(&self) -> Result<()> {
        self.shared.post(Msg::Close)?;
        self.shared.closing.store(true, Ordering::Release);
        Ok(())
    }

    /// Sets (or with `None` clears) one of the inactivity timeouts. Takes
    /// effect against the last activity, so it may fire at once.
    ///
    /// ```no_run
    /// # fn f(conn: &netactor::Connection) -> netactor::Result<()> {
    /// use netactor::Inactivity;
    /// use std::time::Duration;
    /// conn.set_timeout(Inactivity::Read, Some(Duration::from_secs(30)))?;
    /// # Ok(()) }
    /// ```
    pub fn set_timeout(&self, kind: Inactivity, period: Option<Duration>) -> Result<()> {
        self.shared.post(Msg::SetTimeout(kind, period))
    }

    /// Counts now as activity for the given timer.
    pub fn reset_timeout(&self, kind: Inactivity) -> Result<()> {
        self.shared.post(Msg::ResetTimeout(kind))
    }

    /// Changes options on the live connection (socket options are applied
    /// at once), in order with the other messages. Each option has a
    /// `set_…` method for this, so one change is one line:
    ///
    /// ```no_run
    /// # fn f(conn: &netactor::Connection) -> netactor::Result<()> {
    /// conn.configure(|o| o.set_low_water_mark(Some(64 << 10)))?;
    /// # Ok(()) }
    /// ```
    ///
    /// Setting a low-water mark at or above what is queued emits
    /// [`Event::Drain`] at once (the reference's `on_drain` setter does the same).
    pub fn configure<F>(&self, f: F) -> Result<()>
    where
        F: FnOnce(&mut Options) + Send + 'static,
    {
        self.shared.post(Msg::Configure(Box::new(f)))
    }

    /// Asks for one [`Event::Drain`] once the write queue is at or below
    /// the low-water mark (empty when none is set) — at once if it already
    /// is. With it a plain thread can wait until what it wrote has been
    /// handed to the kernel:
    ///
    /// ```no_run
    /// # fn f(conn: &netactor::Connection, events: &netactor::EventReceiver) -> netactor::Result<()> {
    /// conn.write(vec![0u8; 1 << 20])?;
    /// conn.request_drain()?;
    /// while let Ok((_, ev)) = events.recv() {
    ///     if let netactor::Event::Drain = ev { break; }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn request_drain(&self) -> Result<()> {
        self.shared.post(Msg::RequestDrain)
    }

    /// A reply that completes once the write queue is at or below the
    /// low-water mark (empty when none is set) — at once if it already is —
    /// or fails with the error that ends the connection. Unlike
    /// [`request_drain`](Self::request_drain) it emits no event, so a plain
    /// thread can wait for its writes without touching the event stream:
    ///
    /// ```no_run
    /// # fn f(conn: &netactor::Connection) -> netactor::Result<()> {
    /// conn.write(vec![0u8; 1 << 20])?;
    /// conn.drained()?.recv()?; // handed to the kernel
    /// # Ok(()) }
    /// ```
    pub fn drained(&self) -> Result<Reply<()>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.shared.post(Msg::Drained(tx))?;
        Ok(Reply::new(rx))
    }

    /// Like [`write`](Self::write), but when the write queue has no room
    /// (`NoSpace`) the calling thread waits for it to drain — up to
    /// `timeout` in all (`None`: no limit) — instead of failing. Data larger
    /// than `wbuf_max` is queued in parts. On timeout it fails with
    /// `TimedOut(Write)`, having queued the parts that fitted (see the
    /// returned error's docs); other errors are those of `write`.
    ///
    /// ```no_run
    /// # fn f(conn: &netactor::Connection) -> netactor::Result<()> {
    /// use std::time::Duration;
    /// conn.write_blocking(vec![7u8; 64 << 20], Some(Duration::from_secs(30)))?;
    /// # Ok(()) }
    /// ```
    pub fn write_blocking(&self, data: impl Into<Bytes>, timeout: Option<Duration>) -> Result<()> {
        let mut data = data.into();
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        while !data.is_empty() {
            let n = data.len().min(self.shared.write_room());
            if n > 0 {
                match self.write(data.slice(..n)) {
                    Ok(()) => {
                        data = data.slice(n..);
                        continue;
                    }
                    Err(Error::NoSpace { .. }) => {} // raced with another writer
                    Err(e) => return Err(e),
                }
            }
            let wait = self.drained()?;
            match deadline {
                Some(d) => {
                    match wait.recv_timeout(d.saturating_duration_since(std::time::Instant::now()))
                    {
                        Ok(()) => {}
                        Err(ReplyTimeoutError::Failed(e)) => return Err(e),
                        Err(ReplyTimeoutError::Timeout) => {
                            return Err(Error::TimedOut(TimeoutKind::Write))
                        }
                    }
                }
                None => wait.recv()?,
            }
        }
        Ok(())
    }

    /// A blocking `std::io` view of this connection — [`Read`](std::io::Read),
    /// [`BufRead`](std::io::BufRead) and [`Write`](std::io::Write) — so
    /// synchronous parsers and protocol crates run on it unchanged. See
    /// [`BlockingIo`].
    pub fn blocking(&self) -> BlockingIo {
        BlockingIo::new(self.clone())
    }

    /// The peer's address, once connected (accepted and adopted
    /// connections know it from the start).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.shared.peer_addr()
    }

    /// The local address, once connected.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared.local_addr()
    }

    /// The peer process's credentials, for a Unix-domain socket where the
    /// OS gives them (Linux: `SO_PEERCRED`); `None` for TCP.
    #[cfg(unix)]
    pub fn peer_credentials(&self) -> Option<crate::net::PeerCredentials> {
        self.shared.peer_credentials()
    }

    /// What the TLS handshake established — protocol version, cipher suite,
    /// ALPN, SNI and the peer's certificate chain — once
    /// [`Event::TlsEstablished`] was emitted; `None` without TLS (and again
    /// after [`Event::TlsStopped`]).
    pub fn tls_info(&self) -> Option<Arc<crate::tls::TlsInfo>> {
        self.shared.tls_info()
    }

    /// Runs `f` on the connection's worker, with direct access to the actor.
    pub fn call<F>(&self, f: F) -> Result<()>
    where
        F: FnOnce(&mut Ctx<'_>) + Send + 'static,
    {
        self.shared.post(Msg::Call(Box::new(f)))
    }

    /// Starts TLS on the connection (see [`crate::tls`]).
    pub fn starttls(&self, setup: crate::tls::TlsSetup) -> Result<()> {
        self.shared.post(Msg::StartTls(setup))
    }

    /// Sends close_notify and returns to plaintext once the peer answers.
    pub fn stoptls(&self) -> Result<()> {
        self.shared.post(Msg::StopTls)
    }

    /// A snapshot of the connection's counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }
}
