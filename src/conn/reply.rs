//! [`Reply`]: the answer to one read request, received like a crossbeam
//! channel — block, wait with a timeout, poll, or `select!` on its receiver.

use crate::error::{Error, Result, TimeoutKind};
use crossbeam_channel::Receiver;
use std::fmt;
use std::time::Duration;

/// The answer to one read request.
///
/// ```no_run
/// # fn f(conn: &netactor::Connection) -> netactor::Result<()> {
/// use netactor::framing::Line;
/// let line = conn.push_read(Line::new())?.recv()?;
/// println!("{:?}", line.line);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a read request's result arrives only through its Reply"]
pub struct Reply<T> {
    rx: Receiver<Result<T>>,
}

impl<T> Reply<T> {
    pub(crate) fn new(rx: Receiver<Result<T>>) -> Self {
        Reply { rx }
    }

    /// Blocks until the read completes or fails. A connection that closes
    /// first yields [`Error::Closed`].
    ///
    /// ```no_run
    /// # fn f(conn: &netactor::Connection) -> netactor::Result<()> {
    /// let chunk = conn.push_read(netactor::framing::Chunk::new(4))?.recv()?;
    /// assert_eq!(chunk.len(), 4);
    /// # Ok(()) }
    /// ```
    pub fn recv(&self) -> Result<T> {
        self.rx.recv().unwrap_or(Err(Error::Closed))
    }

    /// Waits at most `d`. [`ReplyTimeoutError::Timeout`] means the read is
    /// still pending — this `Reply` stays valid and can be waited on again;
    /// [`ReplyTimeoutError::Failed`] carries the read's own error.
    ///
    /// ```no_run
    /// # fn f(conn: &netactor::Connection) -> netactor::Result<()> {
    /// use netactor::ReplyTimeoutError;
    /// use std::time::Duration;
    /// let reply = conn.push_read(netactor::framing::Line::new())?;
    /// match reply.recv_timeout(Duration::from_secs(5)) {
    ///     Ok(line) => println!("{:?}", line.line),
    ///     Err(ReplyTimeoutError::Timeout) => println!("nothing yet"),
    ///     Err(ReplyTimeoutError::Failed(e)) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn recv_timeout(&self, d: Duration) -> std::result::Result<T, ReplyTimeoutError> {
        match self.rx.recv_timeout(d) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ReplyTimeoutError::Failed(e)),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(ReplyTimeoutError::Timeout),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                Err(ReplyTimeoutError::Failed(Error::Closed))
            }
        }
    }

    /// Returns the result if it is there, without blocking.
    /// [`TryReplyError::Empty`] means the read is still pending.
    ///
    /// ```no_run
    /// # fn f(conn: &netactor::Connection) -> netactor::Result<()> {
    /// let reply = conn.push_read(netactor::framing::Raw)?;
    /// if let Ok(bytes) = reply.try_recv() {
    ///     println!("{} bytes were already buffered", bytes.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn try_recv(&self) -> std::result::Result<T, TryReplyError> {
        match self.rx.try_recv() {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(TryReplyError::Failed(e)),
            Err(crossbeam_channel::TryRecvError::Empty) => Err(TryReplyError::Empty),
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                Err(TryReplyError::Failed(Error::Closed))
            }
        }
    }

    /// The underlying channel, for `crossbeam_channel::select!`. Its message
    /// is the read's `Result`; a disconnect means [`Error::Closed`].
    ///
    /// ```no_run
    /// # fn f(conn: &netactor::Connection, stop: crossbeam_channel::Receiver<()>) -> netactor::Result<()> {
    /// let reply = conn.push_read(netactor::framing::Raw)?;
    /// crossbeam_channel::select! {
    ///     recv(reply.receiver()) -> got => println!("{:?}", got),
    ///     recv(stop) -> _ => {}
    /// }
    /// # Ok(()) }
    /// ```
    pub fn receiver(&self) -> &Receiver<Result<T>> {
        &self.rx
    }
}

/// Why [`Reply::recv_timeout`] returned without a value.
///
/// Converts into [`Error`] for `?`: a timeout becomes
/// `Error::TimedOut(TimeoutKind::Reply)`.
#[derive(Debug, Clone)]
pub enum ReplyTimeoutError {
    /// The wait ran out; the read is still pending.
    Timeout,
    /// The read failed (or the connection closed first: [`Error::Closed`]).
    Failed(Error),
}

/// Why [`Reply::try_recv`] returned without a value.
///
/// Converts into [`Error`] for `?`: an empty reply becomes an
/// `Error::Io` of kind `WouldBlock`.
#[derive(Debug, Clone)]
pub enum TryReplyError {
    /// The read is still pending.
    Empty,
    /// The read failed (or the connection closed first: [`Error::Closed`]).
    Failed(Error),
}

impl fmt::Display for ReplyTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyTimeoutError::Timeout => f.write_str("timed out waiting for the reply"),
            ReplyTimeoutError::Failed(e) => e.fmt(f),
        }
    }
}

impl fmt::Display for TryReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryReplyError::Empty => f.write_str("the reply is not there yet"),
            TryReplyError::Failed(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReplyTimeoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReplyTimeoutError::Timeout => None,
            ReplyTimeoutError::Failed(e) => Some(e),
        }
    }
}

impl std::error::Error for TryReplyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TryReplyError::Empty => None,
            TryReplyError::Failed(e) => Some(e),
        }
    }
}

impl From<ReplyTimeoutError> for Error {
    fn from(e: ReplyTimeoutError) -> Error {
        match e {
            ReplyTimeoutError::Timeout => Error::TimedOut(TimeoutKind::Reply),
            ReplyTimeoutError::Failed(e) => e,
        }
    }
}

impl From<TryReplyError> for Error {
    fn from(e: TryReplyError) -> Error {
        match e {
            TryReplyError::Empty => Error::from_io(std::io::ErrorKind::WouldBlock.into()),
            TryReplyError::Failed(e) => e,
        }
    }
}
