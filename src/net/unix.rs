//! Unix-domain stream sockets: connect, listen and adopt, with the
//! reference's listen behaviour — a stale socket file left by a dead server
//! is replaced, and the path is removed on close only if it is still ours —
//! plus Linux's abstract namespace (`@name`) and peer credentials.

use crate::error::{Error, Result};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// The credentials of the process at the other end of a Unix-domain socket
/// (`SO_PEERCRED`), as the kernel recorded them when it connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerCredentials {
    /// Process id.
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// The peer's credentials, where the OS gives them.
pub(crate) fn peer_credentials(s: &UnixStream) -> Option<PeerCredentials> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let c = rustix::net::sockopt::socket_peercred(s).ok()?;
        Some(PeerCredentials {
            pid: c.pid.as_raw_nonzero().get(),
            uid: c.uid.as_raw(),
            gid: c.gid.as_raw(),
        })
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = s;
        None
    }
}

/// `@name` is a name in Linux's abstract namespace; anything else a path.
pub(crate) fn address(path: &Path) -> io::Result<UnixAddr> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(name) = path.to_str().and_then(|p| p.strip_prefix('@')) {
        use std::os::linux::net::SocketAddrExt;
        return UnixAddr::from_abstract_name(name.as_bytes());
    }
    UnixAddr::from_pathname(path)
}

fn is_abstract(path: &Path) -> bool {
    cfg!(any(target_os = "linux", target_os = "android"))
        && path.to_str().is_some_and(|p| p.starts_with('@'))
}

/// Connects (a local, immediate operation), non-blocking afterwards.
pub(crate) fn connect(path: &Path) -> Result<UnixStream> {
    let s = UnixStream::connect_addr(&address(path)?).map_err(Error::from_io)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// The socket file a listener created: removed when the listener goes, if
/// it is still the same file (a later server may have replaced it).
#[derive(Debug)]
pub(crate) struct OwnedPath {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for OwnedPath {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if m.dev() == self.dev && m.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds and listens on `path`. A socket file nobody accepts on any more
/// (connecting to it is refused) is a leftover of a dead server and is
/// replaced; a live one is `AddrInUse`; any other kind of file is left
/// alone (`AddrInUse`).
pub(crate) fn bind(path: &Path, backlog: i32) -> io::Result<(UnixListener, Option<OwnedPath>)> {
    let addr = address(path)?;
    let listen = |addr: &UnixAddr| -> io::Result<UnixListener> {
        if is_abstract(path) {
            let l = UnixListener::bind_addr(addr)?;
            l.set_nonblocking(true)?;
            return Ok(l);
        }
        let s = crate::sys::socket::stream_socket(socket2::Domain::UNIX, None)?;
        s.bind(&socket2::SockAddr::unix(path)?)?;
        s.listen(backlog)?;
        Ok(s.into())
    };
    let l = match listen(&addr) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && !is_abstract(path) => {
            let stale = std::fs::symlink_metadata(path)
                .map(|m| m.file_type().is_socket())
                .unwrap_or(false)
                && matches!(
                    UnixStream::connect(path),
                    Err(ref c) if c.kind() == io::ErrorKind::ConnectionRefused
                );
            if !stale {
                return Err(e);
            }
            log::debug!("{}: replacing a stale socket file", path.display());
            std::fs::remove_file(path)?;
            listen(&addr)?
        }
        other => other?,
    };
    let owned = if is_abstract(path) {
        None
    } else {
        let m = std::fs::symlink_metadata(path)?;
        Some(OwnedPath {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
        })
    };
    Ok((l, owned))
}
