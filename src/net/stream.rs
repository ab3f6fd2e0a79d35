//! The byte streams an actor can own: a TCP socket, on Unix a Unix-domain
//! stream socket, or pipe ends (a child's stdin/stdout, a pipe pair). The
//! actor only sees these methods: the data path, registration, half-close.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::{Shutdown, TcpStream};
#[cfg(unix)]
use std::os::fd::{AsFd, OwnedFd};
#[cfg(unix)]
use std::os::unix::net::UnixStream;

/// A connected stream owned by one actor.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
    /// Pipe ends: read from `read`, write to `write`; either may be absent
    /// (a read-only or write-only connection). Half-close drops `write`.
    #[cfg(unix)]
    Pipe {
        read: Option<OwnedFd>,
        write: Option<OwnedFd>,
    },
}

impl Stream {
    pub(crate) fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            #[cfg(unix)]
            Stream::Unix(s) => s.set_nonblocking(on),
            #[cfg(unix)]
            Stream::Pipe { read, write } => {
                for fd in read.iter().chain(write.iter()) {
                    set_fd_nonblocking(fd, on)?;
                }
                Ok(())
            }
        }
    }

    /// Reads into `buf` (`recv`, or `read` on a pipe); returns the part of
    /// `buf` that was filled, initialised (empty: end of stream). A
    /// write-only pipe has nothing to read: end of stream.
    #[inline(always)]
    pub(crate) fn recv<'a>(&self, buf: &'a mut [MaybeUninit<u8>]) -> io::Result<&'a mut [u8]> {
        match self {
            Stream::Tcp(s) => crate::sys::socket::recv(s, buf),
            #[cfg(unix)]
            Stream::Unix(s) => crate::sys::socket::recv(s, buf),
            #[cfg(unix)]
            Stream::Pipe { read: Some(fd), .. } => {
                let (init, _) = rustix::io::read(fd, buf)?;
                Ok(init)
            }
            #[cfg(unix)]
            Stream::Pipe { read: None, .. } => Ok(&mut []),
        }
    }

    /// Writes from `buf` (never raising `SIGPIPE` on a socket; a pipe whose
    /// reader is gone fails with `EPIPE`, as Rust programs ignore `SIGPIPE`).
    #[inline]
    pub(crate) fn send(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => crate::sys::socket::send(s, buf),
            #[cfg(unix)]
            Stream::Unix(s) => crate::sys::socket::send(s, buf),
            #[cfg(unix)]
            Stream::Pipe { write, .. } => Ok(rustix::io::write(pipe_writer(write)?, buf)?),
        }
    }

    /// [`send`](Self::send) for the last bytes before a FIN that follows
    /// at once (`sys::socket::send_before_fin`); a pipe's plain write.
    pub(crate) fn send_before_fin(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => crate::sys::socket::send_before_fin(s, buf),
            #[cfg(unix)]
            Stream::Unix(s) => crate::sys::socket::send(s, buf),
            #[cfg(unix)]
            Stream::Pipe { .. } => self.send(buf),
        }
    }

    /// Writes from several buffers in one call.
    #[inline]
    pub(crate) fn send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => crate::sys::socket::send_vectored(s, bufs),
            #[cfg(unix)]
            Stream::Unix(s) => crate::sys::socket::send_vectored(s, bufs),
            #[cfg(unix)]
            Stream::Pipe { write, .. } => Ok(rustix::io::writev(pipe_writer(write)?, bufs)?),
        }
    }

    /// Registers every descriptor under `token` (edge-triggered:
    /// `sys::Poller::add_stream`), after the per-OS socket setup. A socket
    /// is registered for reading only: writability is asked for when a
    /// write first blocks ([`watch_writable`](Self::watch_writable)). A
    /// pipe's write end is registered for it at once (it has nothing else
    /// to report). Returns whether writability is watched already.
    pub(crate) fn register(
        &self,
        poller: &crate::sys::Poller,
        token: crate::reactor::Token,
    ) -> io::Result<bool> {
        use crate::sys::socket::prepare_stream;
        match self {
            Stream::Tcp(s) => {
                prepare_stream(s)?;
                poller.add_stream(s, token.0, false)?;
                Ok(false)
            }
            #[cfg(unix)]
            Stream::Unix(s) => {
                prepare_stream(s)?;
                poller.add_stream(s, token.0, false)?;
                Ok(false)
            }
            #[cfg(unix)]
            Stream::Pipe { read, write } => {
                if let Some(fd) = read {
                    poller.add_stream(fd, token.0, false)?;
                }
                if let Some(fd) = write {
                    poller.add_stream(fd, token.0, true)?;
                }
                Ok(true)
            }
        }
    }

    /// Adds writability to a registered socket's interest (a pipe's write
    /// end has it from the start).
    pub(crate) fn watch_writable(
        &self,
        poller: &crate::sys::Poller,
        token: crate::reactor::Token,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => poller.watch_writable(s, token.0),
            #[cfg(unix)]
            Stream::Unix(s) => poller.watch_writable(s, token.0),
            #[cfg(unix)]
            Stream::Pipe { .. } => Ok(()),
        }
    }

    /// Registers every descriptor again under `token` (its connection
    /// moved to another worker), writability included where it was asked
    /// for (`watched`; a pipe's write end always has it).
    pub(crate) fn rekey(
        &self,
        poller: &crate::sys::Poller,
        token: crate::reactor::Token,
        watched: bool,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => poller.rekey_stream(s, token.0, watched),
            #[cfg(unix)]
            Stream::Unix(s) => poller.rekey_stream(s, token.0, watched),
            #[cfg(unix)]
            Stream::Pipe { read, write } => {
                if let Some(fd) = read {
                    poller.rekey_stream(fd, token.0, false)?;
                }
                if let Some(fd) = write {
                    poller.rekey_stream(fd, token.0, true)?;
                }
                Ok(())
            }
        }
    }

    /// Closes the stream: its drop, with a socket's `close` made the way
    /// its data-path calls are (`sys::socket::close`).
    pub(crate) fn close(self) {
        match self {
            Stream::Tcp(s) => crate::sys::socket::close(s),
            #[cfg(unix)]
            Stream::Unix(s) => crate::sys::socket::close(s),
            #[cfg(unix)]
            pipe @ Stream::Pipe { .. } => drop(pipe),
        }
    }

    /// Removes every descriptor from the poller.
    pub(crate) fn deregister(&self, poller: &crate::sys::Poller) {
        match self {
            Stream::Tcp(s) => drop(poller.delete(s)),
            #[cfg(unix)]
            Stream::Unix(s) => drop(poller.delete(s)),
            #[cfg(unix)]
            Stream::Pipe { read, write } => {
                for fd in read.iter().chain(write.iter()) {
                    let _ = poller.delete(fd);
                }
            }
        }
    }

    /// Half-close: FIN on a socket, closing the write end of a pipe (the
    /// reader — a child's stdin — sees end of file).
    pub(crate) fn shutdown_write(&mut self, poller: &crate::sys::Poller) -> io::Result<()> {
        #[cfg(not(unix))]
        let _ = poller; // only pipes deregister here
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            #[cfg(unix)]
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
            #[cfg(unix)]
            Stream::Pipe { write, .. } => {
                if let Some(fd) = write.take() {
                    let _ = poller.delete(&fd);
                }
                Ok(())
            }
        }
    }

    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
            #[cfg(unix)]
            Stream::Unix(s) => s.take_error(),
            #[cfg(unix)]
            Stream::Pipe { .. } => Ok(None),
        }
    }

    /// The TCP socket, for TCP-only options (`TCP_NODELAY`, keepalive…).
    #[inline]
    pub(crate) fn as_tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            #[cfg(unix)]
            _ => None,
        }
    }
}

#[cfg(unix)]
fn pipe_writer(write: &Option<OwnedFd>) -> io::Result<&OwnedFd> {
    write
        .as_ref()
        .ok_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))
}

#[cfg(unix)]
fn set_fd_nonblocking(fd: &impl AsFd, on: bool) -> io::Result<()> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    let mut flags = fcntl_getfl(fd)?;
    flags.set(OFlags::NONBLOCK, on);
    fcntl_setfl(fd, flags)?;
    Ok(())
}
