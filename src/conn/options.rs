//! Per-connection settings, with finite defaults.

use std::time::Duration;

/// Default cap on unconsumed bytes in the read buffer: 4 MiB.
pub const DEFAULT_RBUF_MAX: usize = 4 << 20;
/// Default cap on bytes queued for writing and not yet taken by the kernel: 4 MiB.
pub const DEFAULT_WBUF_MAX: usize = 4 << 20;
/// Default user-space linger after `close`: 30 s (the reference used 3600 s).
pub const DEFAULT_LINGER: Duration = Duration::from_secs(30);
/// Default per-address connect timeout: 30 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of one connection. Every limit is finite by default.
///
/// ```
/// use netactor::Options;
/// use std::time::Duration;
/// let opts = Options::new().no_delay(true).read_timeout(Some(Duration::from_secs(5))).rbuf_max(64 << 10);
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) rbuf_max: usize,
    pub(crate) wbuf_max: usize,
    pub(crate) low_water_mark: Option<usize>,
    pub(crate) autocork: bool,
    pub(crate) no_delay: bool,
    pub(crate) keepalive: bool,
    pub(crate) oobinline: bool,
    pub(crate) read_size: usize,
    pub(crate) max_read_size: usize,
    pub(crate) linger: Duration,
    pub(crate) timeout: Option<Duration>,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) connect_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) follow_stoptls: bool,
    pub(crate) pause_reading_above: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rbuf_max: DEFAULT_RBUF_MAX,
            wbuf_max: DEFAULT_WBUF_MAX,
            low_water_mark: None,
            // Off: the default gathers by itself while more input is
            // buffered (see `autocork`), at no cost to one request at a time.
            autocork: false,
            // On by default as the issue requires (the reference left Nagle
            // on and keepalive off): actors write whole messages, and dead
            // peers of idle connections must eventually be noticed.
            no_delay: true,
            keepalive: true,
            oobinline: true,
            read_size: 2048,
            max_read_size: 128 << 10,
            linger: DEFAULT_LINGER,
            timeout: None,
            read_timeout: None,
            write_timeout: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: crate::tls::DEFAULT_HANDSHAKE_TIMEOUT,
            follow_stoptls: false,
            pause_reading_above: None,
        }
    }
}

impl Options {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fail the connection (fatal `NoSpace`) when more than `n` unconsumed
    /// bytes are buffered. Default [`DEFAULT_RBUF_MAX`].
    pub fn rbuf_max(mut self, n: usize) -> Self {
        self.rbuf_max = n;
        self
    }

    /// Refuse (non-fatal `NoSpace` returned by `write`) a write that would
    /// queue more than `n` bytes. Default [`DEFAULT_WBUF_MAX`].
    ///
    /// One bounded exception: a handler's write with nothing queued ahead
    /// goes straight to the socket after checking the limit, and only what
    /// the kernel did not take is then counted as queued; a write racing in
    /// from another thread meanwhile can leave the queue above `n` by at
    /// most that remainder.
    pub fn wbuf_max(mut self, n: usize) -> Self {
        self.wbuf_max = n;
        self
    }

    /// Emit [`crate::Event::Drain`] each time the write queue falls to `n`
    /// bytes or fewer after having been above it — through either write
    /// path, also when the kernel takes a write at once. Setting a mark on a
    /// live connection whose queue is already at or below it emits one
    /// `Drain` at once (the reference's `on_drain` setter). `None` (default)
    /// sends no drain events except those asked for with `request_drain`.
    pub fn low_water_mark(mut self, n: Option<usize>) -> Self {
        self.low_water_mark = n;
        self
    }

    /// With autocork, every write is only queued, and flushed together at
    /// the end of the actor's turn. Without it (default) the fast path is
    /// chosen per write: a handler's write while more input waits in the
    /// read buffer (the rest of a batch of pipelined requests, or anything
    /// written from [`Handler::on_read`](crate::Handler::on_read)) is
    /// gathered with the batch's other answers and they leave in one
    /// vectored `send` as soon as the decode pass is done; a write with
    /// nothing more to process (one request at a time) is tried at once,
    /// with no queueing.
    ///
    /// Every byte written during a turn — from any callback: a frame, a
    /// `Drain`, a `Timeout`, a read completion, a [`Connection::call`]
    /// closure — is flushed before the turn ends, or waits for the socket to
    /// become writable again after a real `EAGAIN`; none waits for a later,
    /// unrelated event. (The reference flushed corked data only when the
    /// event loop next reported writability.)
    ///
    /// [`Ctx`]: crate::Ctx
    /// [`Connection`]: crate::Connection
    /// [`Connection::call`]: crate::Connection::call
    pub fn autocork(mut self, on: bool) -> Self {
        self.autocork = on;
        self
    }

    /// `TCP_NODELAY` (default **on**; the reference left Nagle on).
    pub fn no_delay(mut self, on: bool) -> Self {
        self.no_delay = on;
        self
    }

    /// `SO_KEEPALIVE` (default **on**; the reference left it off).
    pub fn keepalive(mut self, on: bool) -> Self {
        self.keepalive = on;
        self
    }

    /// `SO_OOBINLINE` (default **on**, as in the reference).
    pub fn oobinline(mut self, on: bool) -> Self {
        self.oobinline = on;
        self
    }

    /// Initial read size (default 2048); doubles while reads fill it, up to `max_read_size`.
    pub fn read_size(mut self, n: usize) -> Self {
        self.read_size = n.max(64);
        if self.max_read_size < self.read_size {
            self.max_read_size = self.read_size;
        }
        self
    }

    /// Cap of the adaptive read size (default 128 KiB).
    pub fn max_read_size(mut self, n: usize) -> Self {
        self.max_read_size = n.max(self.read_size);
        self
    }

    /// How long `close` keeps flushing queued writes in the background
    /// (default [`DEFAULT_LINGER`]); zero drops them.
    pub fn linger(mut self, d: Duration) -> Self {
        self.linger = d;
        self
    }

    /// Inactivity timeout: no successful read or write for `d`.
    pub fn timeout(mut self, d: Option<Duration>) -> Self {
        self.timeout = d;
        self
    }

    /// Read inactivity timeout: no successful read for `d` (the
    /// reference's `rtimeout`).
    pub fn read_timeout(mut self, d: Option<Duration>) -> Self {
        self.read_timeout = d;
        self
    }

    /// Write inactivity timeout: no successful write for `d` (the
    /// reference's `wtimeout`).
    pub fn write_timeout(mut self, d: Option<Duration>) -> Self {
        self.write_timeout = d;
        self
    }

    /// Per-address connect timeout (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long a TLS handshake may take before the connection fails with
    /// `TimedOut(Handshake)` (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`](crate::tls::DEFAULT_HANDSHAKE_TIMEOUT), 10 s).
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }

    /// Back-pressure without hand-rolling it: while more than `n` bytes are
    /// queued for writing, the connection reads nothing (TCP flow control
    /// then holds the peer back), and it reads again by itself as soon as
    /// the queue is back at or below `n`. A server whose client pipelines
    /// requests without reading the answers then slows that client down
    /// instead of running into `wbuf_max` (`NoSpace`). Pick `n` so that `n`
    /// plus the answers to one read's worth of requests fit in `wbuf_max`
    /// (e.g. half of it). `None` (default): reading does not depend on the
    /// write queue. TLS handshakes are never paused.
    ///
    /// ```
    /// use netactor::Options;
    /// // An echo server that never fails a greedy client with NoSpace:
    /// let opts = Options::new().wbuf_max(4 << 20).pause_reading_above(Some(1 << 20));
    /// # drop(opts);
    /// ```
    pub fn pause_reading_above(mut self, n: Option<usize>) -> Self {
        self.pause_reading_above = n;
        self
    }

    /// When the TLS peer sends close_notify, answer with ours and continue
    /// the connection in plaintext ([`crate::Event::TlsStopped`]) instead of
    /// treating it as EOF: the peer side of
    /// [`Connection::stoptls`](crate::Connection::stoptls) (the reference's
    /// `on_stoptls`). Default off.
    pub fn follow_stoptls(mut self, on: bool) -> Self {
        self.follow_stoptls = on;
        self
    }
}

/// In-place setters, one per builder method, for changing a live
/// connection in one line with
/// [`Connection::configure`](crate::Connection::configure) or
/// [`Ctx::configure`](crate::Ctx::configure):
///
/// ```no_run
/// # fn f(conn: &netactor::Connection) -> netactor::Result<()> {
/// use std::time::Duration;
/// conn.configure(|o| o.set_read_timeout(Some(Duration::from_secs(30))))?;
/// # Ok(()) }
/// ```
impl Options {
    /// Sets [`rbuf_max`](Self::rbuf_max) in place.
    pub fn set_rbuf_max(&mut self, n: usize) {
        *self = std::mem::take(self).rbuf_max(n);
    }

    /// Sets [`wbuf_max`](Self::wbuf_max) in place.
    pub fn set_wbuf_max(&mut self, n: usize) {
        *self = std::mem::take(self).wbuf_max(n);
    }

    /// Sets [`low_water_mark`](Self::low_water_mark) in place.
    pub fn set_low_water_mark(&mut self, n: Option<usize>) {
        *self = std::mem::take(self).low_water_mark(n);
    }

    /// Sets [`autocork`](Self::autocork) in place.
    pub fn set_autocork(&mut self, on: bool) {
        *self = std::mem::take(self).autocork(on);
    }

    /// Sets [`no_delay`](Self::no_delay) in place.
    pub fn set_no_delay(&mut self, on: bool) {
        *self = std::mem::take(self).no_delay(on);
    }

    /// Sets [`keepalive`](Self::keepalive) in place.
    pub fn set_keepalive(&mut self, on: bool) {
        *self = std::mem::take(self).keepalive(on);
    }

    /// Sets [`oobinline`](Self::oobinline) in place.
    pub fn set_oobinline(&mut self, on: bool) {
        *self = std::mem::take(self).oobinline(on);
    }

    /// Sets [`read_size`](Self::read_size) in place.
    pub fn set_read_size(&mut self, n: usize) {
        *self = std::mem::take(self).read_size(n);
    }

    /// Sets [`max_read_size`](Self::max_read_size) in place.
    pub fn set_max_read_size(&mut self, n: usize) {
        *self = std::mem::take(self).max_read_size(n);
    }

    /// Sets [`linger`](Self::linger) in place.
    pub fn set_linger(&mut self, d: Duration) {
        *self = std::mem::take(self).linger(d);
    }

    /// Sets [`timeout`](Self::timeout) in place.
    pub fn set_timeout(&mut self, d: Option<Duration>) {
        *self = std::mem::take(self).timeout(d);
    }

    /// Sets [`read_timeout`](Self::read_timeout) in place.
    pub fn set_read_timeout(&mut self, d: Option<Duration>) {
        *self = std::mem::take(self).read_timeout(d);
    }

    /// Sets [`write_timeout`](Self::write_timeout) in place.
    pub fn set_write_timeout(&mut self, d: Option<Duration>) {
        *self = std::mem::take(self).write_timeout(d);
    }

    /// Sets [`connect_timeout`](Self::connect_timeout) in place.
    pub fn set_connect_timeout(&mut self, d: Duration) {
        *self = std::mem::take(self).connect_timeout(d);
    }

    /// Sets [`handshake_timeout`](Self::handshake_timeout) in place.
    pub fn set_handshake_timeout(&mut self, d: Duration) {
        *self = std::mem::take(self).handshake_timeout(d);
    }

    /// Sets [`pause_reading_above`](Self::pause_reading_above) in place.
    pub fn set_pause_reading_above(&mut self, n: Option<usize>) {
        *self = std::mem::take(self).pause_reading_above(n);
    }

    /// Sets [`follow_stoptls`](Self::follow_stoptls) in place.
    pub fn set_follow_stoptls(&mut self, on: bool) {
        *self = std::mem::take(self).follow_stoptls(on);
    }
}
