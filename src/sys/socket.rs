//! The socket calls on the data path — one `recv`, one `send`, one
//! vectored send — and the per-OS details around them.
//!
//! Where the OS has `MSG_NOSIGNAL` (Linux, Android, the BSDs) the calls go
//! straight to the kernel through rustix. Why not socket2 there (which still
//! sets the options): its calls go through libc's wrappers, which bracket
//! every `recv`/`send` with thread-cancellation bookkeeping a worker never
//! uses; in the small-message benchmark that was ~0.7 % of the server's
//! CPU — as much as the rest of the worker loop. Elsewhere (Apple
//! platforms, Windows) socket2 makes the calls; Apple sockets get
//! `SO_NOSIGPIPE` instead of the per-call flag ([`prepare_stream`]), and
//! Windows has no `SIGPIPE`. A library must not depend on the application
//! ignoring `SIGPIPE`.

use super::AsSource;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
mod imp {
    use super::*;
    use rustix::net::{RecvFlags, SendAncillaryBuffer, SendFlags};

    pub(super) fn recv(sock: &impl AsSource, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        let ((init, _), _) = rustix::net::recv(sock.as_fd(), buf, RecvFlags::empty())?;
        Ok(init.len())
    }

    pub(super) fn send(sock: &impl AsSource, buf: &[u8]) -> io::Result<usize> {
        Ok(rustix::net::send(sock.as_fd(), buf, SendFlags::NOSIGNAL)?)
    }

    pub(super) fn send_vectored(sock: &impl AsSource, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Ok(rustix::net::sendmsg(
            sock.as_fd(),
            bufs,
            &mut SendAncillaryBuffer::default(),
            SendFlags::NOSIGNAL,
        )?)
    }

    pub(super) fn prepare_stream(_sock: &impl AsSource) -> io::Result<()> {
        Ok(()) // MSG_NOSIGNAL on every send
    }
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
)))]
mod imp {
    use super::*;
    use socket2::SockRef;

    pub(super) fn recv(sock: &impl AsSource, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        SockRef::from(sock).recv(buf)
    }

    pub(super) fn send(sock: &impl AsSource, buf: &[u8]) -> io::Result<usize> {
        SockRef::from(sock).send(buf)
    }

    pub(super) fn send_vectored(sock: &impl AsSource, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        SockRef::from(sock).send_vectored(bufs)
    }

    pub(super) fn prepare_stream(sock: &impl AsSource) -> io::Result<()> {
        #[cfg(target_vendor = "apple")]
        SockRef::from(sock).set_nosigpipe(true)?;
        #[cfg(not(target_vendor = "apple"))]
        let _ = sock;
        Ok(())
    }
}

/// Reads into `buf`; returns how many bytes at its start are now
/// initialised (and hold the data read).
pub(crate) fn recv(sock: &impl AsSource, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    imp::recv(sock, buf)
}

/// Sends from `buf`, without raising `SIGPIPE` on a closed connection.
pub(crate) fn send(sock: &impl AsSource, buf: &[u8]) -> io::Result<usize> {
    imp::send(sock, buf)
}

/// Sends from several buffers in one call, without raising `SIGPIPE`.
pub(crate) fn send_vectored(sock: &impl AsSource, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    imp::send_vectored(sock, bufs)
}

/// Per-OS setup of a stream socket before its first send (`SO_NOSIGPIPE`
/// on Apple platforms; nothing elsewhere).
pub(crate) fn prepare_stream(sock: &impl AsSource) -> io::Result<()> {
    imp::prepare_stream(sock)
}

/// A new non-blocking, close-on-exec stream socket. socket2 sets
/// close-on-exec (and `SO_NOSIGPIPE` on Apple) itself; where the OS can,
/// non-blocking comes with the `socket` call, elsewhere one more call.
pub(crate) fn stream_socket(
    domain: socket2::Domain,
    protocol: Option<socket2::Protocol>,
) -> io::Result<socket2::Socket> {
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    ))]
    {
        socket2::Socket::new(domain, socket2::Type::STREAM.nonblocking(), protocol)
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    )))]
    {
        let s = socket2::Socket::new(domain, socket2::Type::STREAM, protocol)?;
        s.set_nonblocking(true)?;
        Ok(s)
    }
}
