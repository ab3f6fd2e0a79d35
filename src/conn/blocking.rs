//! A blocking `std::io` view of a connection, for plain threads and for the
//! synchronous parsers and protocol crates they already use.

use super::{Connection, Reply, ReplyTimeoutError};
use crate::error::{Error, TimeoutKind};
use crate::framing::Raw;
use bytes::{Buf, Bytes};
use std::io;
use std::time::Duration;

/// [`Read`](io::Read), [`BufRead`](io::BufRead) and [`Write`](io::Write)
/// over a [`Connection`], with optional timeouts, from
/// [`Connection::blocking`].
///
/// * **Reading** queues one read request at a time (whatever is buffered,
///   without a copy; the copy into the caller's buffer is the only one) and
///   blocks on its reply. End of stream reads as `Ok(0)`. A read that times
///   out fails with [`io::ErrorKind::TimedOut`] and keeps its request, so
///   the next read picks up where it left off — no byte is lost. Use it as
///   the connection's only reader (no streaming decoder, no other reads).
/// * **Writing** queues what fits in the write buffer and, when nothing
///   fits, waits for the queue to drain ([`Connection::drained`]) up to the
///   write timeout. `flush` waits until everything written was handed to
///   the kernel.
///
/// Here `serde_json` writes a value to a connection and reads one back:
///
/// ```no_run
/// # fn f(conn: &netactor::Connection) -> std::io::Result<()> {
/// use std::io::Write;
/// let mut io = conn.blocking();
/// io.set_read_timeout(Some(std::time::Duration::from_secs(5)));
/// serde_json::to_writer(&mut io, &serde_json::json!({"op": "ping"}))?;
/// io.flush()?;
/// let answer: serde_json::Value =
///     serde_json::Deserializer::from_reader(&mut io).into_iter().next().unwrap()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct BlockingIo {
    conn: Connection,
    /// Bytes received and not yet consumed.
    buf: Bytes,
    /// A read request whose reply has not come yet (a timeout left it).
    pending: Option<Reply<Bytes>>,
    eof: bool,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl BlockingIo {
    pub(crate) fn new(conn: Connection) -> Self {
        BlockingIo {
            conn,
            buf: Bytes::new(),
            pending: None,
            eof: false,
            read_timeout: None,
            write_timeout: None,
        }
    }

    /// How long one `read` (or `fill_buf`) may wait; `None` (default): no limit.
    pub fn set_read_timeout(&mut self, t: Option<Duration>) {
        self.read_timeout = t;
    }

    /// How long one `write` (or `flush`) may wait for room; `None`
    /// (default): no limit.
    pub fn set_write_timeout(&mut self, t: Option<Duration>) {
        self.write_timeout = t;
    }

    /// The connection underneath.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// `None` if the wait ran out (the read is still pending).
    fn wait<T>(reply: &Reply<T>, timeout: Option<Duration>) -> Option<crate::Result<T>> {
        match timeout {
            Some(t) => match reply.recv_timeout(t) {
                Ok(v) => Some(Ok(v)),
                Err(ReplyTimeoutError::Failed(e)) => Some(Err(e)),
                Err(ReplyTimeoutError::Timeout) => None,
            },
            None => Some(reply.recv()),
        }
    }
}

fn io_err(e: Error) -> io::Error {
    e.into()
}

impl io::BufRead for BlockingIo {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.buf.is_empty() && !self.eof {
            let reply = match self.pending.take() {
                Some(r) => r,
                None => self.conn.push_read(Raw).map_err(io_err)?,
            };
            match Self::wait(&reply, self.read_timeout) {
                Some(Ok(bytes)) => self.buf = bytes,
                Some(Err(Error::UnexpectedEof)) => self.eof = true,
                Some(Err(e)) => return Err(io_err(e)),
                None => {
                    self.pending = Some(reply);
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        Error::TimedOut(TimeoutKind::Read),
                    ));
                }
            }
        }
        Ok(&self.buf)
    }

    fn consume(&mut self, amt: usize) {
        self.buf.advance(amt.min(self.buf.len()));
    }
}

impl io::Read for BlockingIo {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let n = {
            let got = io::BufRead::fill_buf(self)?;
            let n = got.len().min(out.len());
            out[..n].copy_from_slice(&got[..n]);
            n
        };
        io::BufRead::consume(self, n);
        Ok(n)
    }
}

impl io::Write for BlockingIo {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let deadline = self.write_timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let n = data.len().min(self.conn.shared.write_room());
            if n > 0 {
                match self.conn.write(Bytes::copy_from_slice(&data[..n])) {
                    Ok(()) => return Ok(n),
                    Err(Error::NoSpace { .. }) => {} // raced with another writer
                    Err(e) => return Err(io_err(e)),
                }
            }
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            let wait = self.conn.drained().map_err(io_err)?;
            match Self::wait(&wait, left) {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(io_err(e)),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        Error::TimedOut(TimeoutKind::Write),
                    ))
                }
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let wait = self.conn.drained().map_err(io_err)?;
        match Self::wait(&wait, self.write_timeout) {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(io_err(e)),
            None => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                Error::TimedOut(TimeoutKind::Write),
            )),
        }
    }
}
