//! The socket calls on the data path — one `recv`, one `send`, one
//! vectored `sendmsg` — made straight to the kernel through rustix.
//!
//! Why not socket2 (which still sets the options): its calls go through
//! libc's wrappers, which bracket every `recv`/`send` with thread
//! cancellation bookkeeping that a worker never uses; in the small-message
//! benchmark that bookkeeping was ~0.7 % of the server's CPU — as much as
//! the rest of the worker loop. `MSG_NOSIGNAL` on every send: a library must
//! not depend on the application ignoring `SIGPIPE`.

use rustix::net::{RecvFlags, SendAncillaryBuffer, SendFlags};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::AsFd;

/// Reads into `buf`; returns the part of it the kernel filled — the
/// initialised prefix, as rustix hands it over (not the kernel's count).
pub(crate) fn recv(sock: impl AsFd, buf: &mut [MaybeUninit<u8>]) -> io::Result<&mut [u8]> {
    let ((init, _), _) = rustix::net::recv(sock, buf, RecvFlags::empty())?;
    Ok(init)
}

/// Sends from `buf`, without raising `SIGPIPE` on a closed connection.
pub(crate) fn send(sock: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    Ok(rustix::net::send(sock, buf, SendFlags::NOSIGNAL)?)
}

/// Sends from several buffers in one call, without raising `SIGPIPE`.
pub(crate) fn send_vectored(sock: impl AsFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    Ok(rustix::net::sendmsg(
        sock,
        bufs,
        &mut SendAncillaryBuffer::default(),
        SendFlags::NOSIGNAL,
    )?)
}
