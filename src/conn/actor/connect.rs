//! Connecting: each resolved address in turn, each with its own timeout
//! and the prepare hook; the socket is registered while the connect is in
//! progress and kept on success.

use super::handler::PrepareFn;
use super::handler::ResolveFn;
use super::timers::TimerKind;
use super::Core;
use super::Phase;
use super::WorkerCtx;
use crate::conn::shared::ConnRef;
use crate::conn::shared::Msg;
use crate::conn::Event;
use crate::error::Error;
use crate::net::stream::Stream;
use std::io;
use std::net::SocketAddr;
use std::net::TcpStream;
use std::net::ToSocketAddrs;
use std::sync::Arc;

impl Core {
    pub(super) fn try_next_address(&mut self, w: &mut WorkerCtx) {
        loop {
            let Some(c) = self.connect.as_mut() else {
                return;
            };
            let Some(&addr) = c.addrs.get(c.next) else {
                let e = c
                    .last_err
                    .take()
                    .unwrap_or_else(|| Error::NoAddress("no address to try".into()));
                self.connect = None;
                self.fail(e, w);
                return;
            };
            c.next += 1;
            let prepare = c.prepare.clone();
            match start_connect(addr, prepare.as_deref()) {
                Ok((stream, true)) => {
                    self.connected(stream, addr, w);
                    return;
                }
                Ok((stream, false)) => {
                    // Writable is what says the connect finished.
                    let r = w.poller.add_stream(&stream, self.token.0, true);
                    match r {
                        Ok(()) => {
                            self.registered = true;
                            self.wr.out_watched = true;
                            self.sock = Some(Stream::Tcp(stream));
                            let at = w.now + self.opts.connect_timeout;
                            self.armed.clear(TimerKind::Connect);
                            self.arm(TimerKind::Connect, at, w);
                            return;
                        }
                        Err(e) => {
                            if let Some(c) = self.connect.as_mut() {
                                c.last_err = Some(Error::from_connect_io(e));
                            }
                        }
                    }
                }
                Err(e) => {
                    if let Some(c) = self.connect.as_mut() {
                        c.last_err = Some(Error::from_connect_io(e));
                    }
                }
            }
        }
    }

    pub(super) fn check_connect(&mut self, w: &mut WorkerCtx) {
        let Some(sock) = self.sock.as_ref() else {
            return;
        };
        match sock.take_error() {
            Ok(Some(e)) | Err(e) => {
                self.connect_attempt_failed(Error::from_connect_io(e), w);
            }
            Ok(None) => {
                if !self.wr.writable {
                    return;
                }
                let Some(tcp) = sock.as_tcp() else {
                    return;
                };
                match tcp.peer_addr() {
                    Ok(peer) => {
                        let Some(Stream::Tcp(stream)) = self.sock.take() else {
                            return;
                        };
                        self.connected(stream, peer, w);
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                    Err(e) => self.connect_attempt_failed(Error::from_connect_io(e), w),
                }
            }
        }
    }

    pub(super) fn connect_attempt_failed(&mut self, e: Error, w: &mut WorkerCtx) {
        if let Some(sock) = self.sock.take() {
            if self.registered {
                sock.deregister(&w.poller);
                self.registered = false;
            }
        }
        self.rd.readable = false;
        self.wr.writable = false;
        self.armed.clear(TimerKind::Connect);
        if let Some(c) = self.connect.as_mut() {
            c.last_err = Some(e);
        }
        self.try_next_address(w);
    }

    pub(super) fn connected(&mut self, stream: TcpStream, peer: SocketAddr, w: &mut WorkerCtx) {
        self.armed.clear(TimerKind::Connect);
        self.connect = None;
        self.shared.set_addrs(stream.local_addr().ok(), Some(peer));
        self.open(Stream::Tcp(stream), w);
        if self.phase == Phase::Open {
            w.metrics.conn.connected.inc();
            log::debug!("{}: connected to {peer}", self.shared.id);
            self.outbox.push(&mut w.local, Event::Connected { peer });
        }
    }
}

/// Creates a non-blocking socket for `addr` and starts connecting.
/// Returns the stream and whether it is already connected.
fn start_connect(addr: SocketAddr, prepare: Option<&PrepareFn>) -> io::Result<(TcpStream, bool)> {
    let socket = crate::sys::socket::stream_socket(
        socket2::Domain::for_address(addr),
        Some(socket2::Protocol::TCP),
    )?;
    if let Some(p) = prepare {
        p(&socket, addr)?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => Ok((socket.into(), true)),
        Err(e)
            if e.raw_os_error() == Some(libc::EINPROGRESS)
                || e.kind() == io::ErrorKind::WouldBlock =>
        {
            Ok((socket.into(), false))
        }
        Err(e) => Err(e),
    }
}

/// Resolves `target` on a short-lived thread (never on a worker or the
/// poller); the answer comes back through the connection's mailbox
/// (`Msg::Resolved`). A connection closed meanwhile refuses it.
pub(super) fn resolve(shared: ConnRef, target: String, resolver: Option<Arc<ResolveFn>>) {
    let to = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("netactor-resolve".into())
        .spawn(move || {
            let found = match resolver {
                Some(r) => match crate::net::parse_host_port(&target, None) {
                    Ok(crate::net::HostPort::Tcp { host, port }) => r(&host, port),
                    Ok(crate::net::HostPort::Unix(_)) | Err(_) => Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("cannot resolve {target:?}"),
                    )),
                },
                None => target.to_socket_addrs().map(Iterator::collect),
            };
            let res = found.map(|mut v: Vec<SocketAddr>| {
                // IPv4 first, as the reference does.
                v.sort_by_key(|a| a.is_ipv6());
                v
            });
            let _ = to.post(Msg::Resolved(res));
        });
    if let Err(e) = spawned {
        let _ = shared.post(Msg::Resolved(Err(e)));
    }
}
