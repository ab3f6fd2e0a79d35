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

    #[inline]
    pub(super) fn recv<'a>(
        sock: &impl AsSource,
        buf: &'a mut [MaybeUninit<u8>],
    ) -> io::Result<&'a mut [u8]> {
        let ((init, _), _) = rustix::net::recv(sock.as_fd(), buf, RecvFlags::empty())?;
        Ok(init)
    }

    #[inline]
    pub(super) fn send(sock: &impl AsSource, buf: &[u8]) -> io::Result<usize> {
        Ok(rustix::net::send(sock.as_fd(), buf, SendFlags::NOSIGNAL)?)
    }

    /// `send` with `MSG_MORE` where the OS has it (Linux, Android): the
    /// kernel holds a short tail back for what follows — here the FIN,
    /// which then leaves in the same segment.
    #[inline]
    pub(super) fn send_before_fin(sock: &impl AsSource, buf: &[u8]) -> io::Result<usize> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let flags = SendFlags::NOSIGNAL | SendFlags::MORE;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let flags = SendFlags::NOSIGNAL;
        Ok(rustix::net::send(sock.as_fd(), buf, flags)?)
    }

    #[inline]
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

    #[inline]
    pub(super) fn close(sock: impl Into<std::os::fd::OwnedFd>) {
        use std::os::fd::IntoRawFd;
        let fd = sock.into().into_raw_fd();
        // SAFETY: `fd` was just taken out of an `OwnedFd`: this is its only
        // owner, it is closed once, here, and not used afterwards.
        unsafe { rustix::io::close(fd) }
    }

    pub(super) fn stream_socket(
        domain: socket2::Domain,
        protocol: Option<socket2::Protocol>,
    ) -> io::Result<socket2::Socket> {
        // Non-blocking from the `socket` call itself.
        socket2::Socket::new(domain, socket2::Type::STREAM.nonblocking(), protocol)
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

    #[inline]
    pub(super) fn recv<'a>(
        sock: &impl AsSource,
        buf: &'a mut [MaybeUninit<u8>],
    ) -> io::Result<&'a mut [u8]> {
        let n = SockRef::from(sock).recv(buf)?;
        let init = &mut buf[..n];
        // SAFETY: socket2's `recv` initialised the first `n` bytes of `buf`
        // (its documented contract), and `MaybeUninit<u8>` has the layout
        // of `u8`.
        Ok(unsafe { &mut *(init as *mut [MaybeUninit<u8>] as *mut [u8]) })
    }

    #[inline]
    pub(super) fn send(sock: &impl AsSource, buf: &[u8]) -> io::Result<usize> {
        SockRef::from(sock).send(buf)
    }

    /// No `MSG_MORE` here: a plain `send`.
    pub(super) fn send_before_fin(sock: &impl AsSource, buf: &[u8]) -> io::Result<usize> {
        send(sock, buf)
    }

    #[inline]
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

    #[inline]
    pub(super) fn close<T>(sock: T) {
        drop(sock);
    }

    pub(super) fn stream_socket(
        domain: socket2::Domain,
        protocol: Option<socket2::Protocol>,
    ) -> io::Result<socket2::Socket> {
        let s = socket2::Socket::new(domain, socket2::Type::STREAM, protocol)?;
        s.set_nonblocking(true)?;
        Ok(s)
    }
}

/// Closes a socket. Where the data-path calls go straight to the kernel,
/// so does this: std's drop goes through libc's `close`, a cancellation
/// point that switches asynchronous cancellation on and off around the
/// call — two locked instructions per connection, which a worker never
/// needs. Elsewhere it is the drop.
#[cfg(unix)]
#[inline]
pub(crate) fn close<T: Into<std::os::fd::OwnedFd>>(sock: T) {
    imp::close(sock)
}

#[cfg(not(unix))]
#[inline]
pub(crate) fn close<T>(sock: T) {
    imp::close(sock)
}

/// Reads into `buf`; returns the part of it now filled — the initialised
/// prefix itself, not a count, so no caller has to trust a length.
#[inline]
pub(crate) fn recv<'a>(
    sock: &impl AsSource,
    buf: &'a mut [MaybeUninit<u8>],
) -> io::Result<&'a mut [u8]> {
    imp::recv(sock, buf)
}

/// Sends from `buf`, without raising `SIGPIPE` on a closed connection.
#[inline]
pub(crate) fn send(sock: &impl AsSource, buf: &[u8]) -> io::Result<usize> {
    imp::send(sock, buf)
}

/// Sends the last bytes before a FIN that follows at once (`shutdown` or
/// `close` in the same turn): where the OS can (`MSG_MORE`), the bytes and
/// the FIN then share one segment — one packet fewer for both ends to
/// process, as when a TLS connection's close_notify precedes its FIN.
/// Only for bytes a FIN is sure to follow: held back, a short tail would
/// otherwise wait for more data (Linux sends it after about 200 ms).
#[inline]
pub(crate) fn send_before_fin(sock: &impl AsSource, buf: &[u8]) -> io::Result<usize> {
    imp::send_before_fin(sock, buf)
}

/// Sends from several buffers in one call, without raising `SIGPIPE`.
#[inline]
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
    imp::stream_socket(domain, protocol)
}

/// Accepts one TCP connection, already non-blocking and close-on-exec.
/// Linux and Android: one `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`, where
/// `TcpListener::accept` and then `set_nonblocking` take two system calls
/// (the second one per connection, which a hand-written loop never pays).
pub(crate) fn accept_tcp(
    l: &std::net::TcpListener,
) -> io::Result<(std::net::TcpStream, Option<std::net::SocketAddr>)> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::net::{acceptfrom_with, SocketFlags};
        let (fd, peer) = acceptfrom_with(l, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)?;
        let peer = peer.and_then(|a| std::net::SocketAddr::try_from(a).ok());
        Ok((std::net::TcpStream::from(fd), peer))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let (s, peer) = l.accept()?;
        s.set_nonblocking(true)?;
        Ok((s, Some(peer)))
    }
}

/// Accepts one Unix-domain connection, already non-blocking and
/// close-on-exec (one `accept4` on Linux and Android, as [`accept_tcp`]).
#[cfg(unix)]
pub(crate) fn accept_unix(
    l: &std::os::unix::net::UnixListener,
) -> io::Result<std::os::unix::net::UnixStream> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::net::{accept_with, SocketFlags};
        let fd = accept_with(l, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)?;
        Ok(std::os::unix::net::UnixStream::from(fd))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let (s, _) = l.accept()?;
        s.set_nonblocking(true)?;
        Ok(s)
    }
}

/// Whether a socket accepted from a listener inherits the listener's
/// `TCP_NODELAY`, `SO_KEEPALIVE` and `SO_OOBINLINE`. Linux copies the
/// listening socket's state into every connection it accepts (and starts
/// the keepalive timer of one that inherits `SO_KEEPALIVE`), so options
/// set once on the listener cost no `setsockopt` per connection; elsewhere
/// every accepted connection sets them itself.
pub(crate) const ACCEPT_INHERITS_OPTIONS: bool =
    cfg!(any(target_os = "linux", target_os = "android"));
