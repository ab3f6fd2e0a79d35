//! The platform layer: the only place that knows which operating system it
//! runs on.
//!
//! * [`Poller`] — readiness for many descriptors and a cross-thread wake-up.
//!   On Linux and Android netactor owns its epoll set and an eventfd waker
//!   outright (`epoll.rs`, as mio's selector does): one `epoll_wait` per
//!   poll, `EPOLLRDHUP` so a FIN that came with the data saves a `recv`.
//!   Everywhere else — and on Linux with the `portable-poller` feature — the
//!   `polling` crate's public API does the job (`portable.rs`: kqueue on
//!   macOS and the BSDs).
//! * [`socket`] — the data-path socket calls and the per-OS flags they need
//!   (`MSG_NOSIGNAL` where it exists, `SO_NOSIGPIPE` on Apple platforms,
//!   non-blocking stream sockets).
//!
//! Nothing above this layer names an OS facility: the reactor, connections
//! and the net layer only see a `Poller`, its [`Ready`] events and the
//! functions in [`socket`].

#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(feature = "portable-poller")
))]
mod epoll;
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(feature = "portable-poller")
))]
pub(crate) use epoll::{Poller, CLOSE_DEREGISTERS, LISTENER_ONESHOT};

#[cfg(not(all(
    any(target_os = "linux", target_os = "android"),
    not(feature = "portable-poller")
)))]
mod portable;
#[cfg(not(all(
    any(target_os = "linux", target_os = "android"),
    not(feature = "portable-poller")
)))]
pub(crate) use portable::{Poller, CLOSE_DEREGISTERS, LISTENER_ONESHOT};

#[cfg_attr(
    not(all(any(target_os = "linux", target_os = "android"), not(feature = "portable-poller"))),
    allow(dead_code) // only the epoll backend spares its writes
)]
pub(crate) mod notify;
pub(crate) mod socket;

/// What can be registered with the [`Poller`]: a file descriptor on Unix, a
/// socket on Windows.
#[cfg(unix)]
pub(crate) use std::os::fd::AsFd as AsSource;
#[cfg(windows)]
pub(crate) use std::os::windows::io::AsSocket as AsSource;

/// One readiness event, whichever backend produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ready {
    /// The key the source was registered under.
    pub(crate) key: usize,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// The peer may have shut down (RDHUP/HUP/ERR): read until EOF or
    /// EAGAIN rather than stopping at a short read. Backends that cannot
    /// tell say `true`, which is always safe.
    pub(crate) hup: bool,
}

/// Events taken per wait; more are delivered by the next one.
pub(crate) const WAIT_BATCH: usize = 1024;

/// Test builds only: the set-up and tear-down system calls made around
/// connections, tallied per [`Poller`] (so per reactor, whatever the
/// thread), so tests can check what a connection costs beyond its data
/// path — the calls a hand-written event loop does not make.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// `fcntl`/`ioctl` making a socket non-blocking.
    pub(crate) nonblocking: std::sync::atomic::AtomicUsize,
    /// `setsockopt` on a connection's socket.
    pub(crate) sockopt: std::sync::atomic::AtomicUsize,
    /// `epoll_ctl` (or the portable backend's registration calls), by kind.
    pub(crate) ctl_add: std::sync::atomic::AtomicUsize,
    pub(crate) ctl_mod: std::sync::atomic::AtomicUsize,
    pub(crate) ctl_del: std::sync::atomic::AtomicUsize,
    /// `shutdown(SHUT_WR)`.
    pub(crate) shutdown: std::sync::atomic::AtomicUsize,
    /// `recv` calls that drop unread input before a close.
    pub(crate) discard_recv: std::sync::atomic::AtomicUsize,
    /// Ciphertext `send` calls (records handed to the kernel).
    pub(crate) tls_send: std::sync::atomic::AtomicUsize,
    /// Ciphertext `recv` calls that found nothing (`EAGAIN`), after the
    /// connection's first read.
    pub(crate) tls_recv_again: std::sync::atomic::AtomicUsize,
}

/// Counts one call in the poller's [`Tally`] (test builds; nothing otherwise).
macro_rules! tally {
    ($poller:expr, $field:ident) => {{
        #[cfg(test)]
        $poller
            .tally
            .$field
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(test))]
        let _ = &$poller;
    }};
}
pub(crate) use tally;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    const LONG: Duration = Duration::from_secs(20);

    fn wait_for(p: &Poller, out: &mut Vec<Ready>, what: impl Fn(&[Ready], bool) -> bool) {
        let deadline = Instant::now() + LONG;
        loop {
            out.clear();
            let notified = p.wait(out, Some(Duration::from_millis(200))).unwrap();
            if what(out, notified) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no matching readiness in {LONG:?}"
            );
        }
    }

    #[test]
    fn a_notification_from_another_thread_ends_a_wait_and_is_reported_once() {
        let p = Arc::new(Poller::new().unwrap());
        let p2 = p.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            p2.notify().unwrap();
        });
        let mut out = Vec::new();
        // Blocks (no timeout) until the notification: a lost wake-up hangs
        // here, and the test harness's timeout reports it.
        assert!(p.wait(&mut out, None).unwrap());
        assert!(out.is_empty());
        t.join().unwrap();
        // Consumed: the next wait times out without a notification.
        out.clear();
        assert!(!p.wait(&mut out, Some(Duration::from_millis(20))).unwrap());
        // Many notifications before a wait collapse into one.
        for _ in 0..100 {
            p.notify().unwrap();
        }
        assert!(p.wait(&mut out, Some(LONG)).unwrap());
        out.clear();
        assert!(!p.wait(&mut out, Some(Duration::from_millis(20))).unwrap());
    }

    #[test]
    fn streams_are_edge_triggered_in_both_directions() {
        let p = Poller::new().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        p.add_stream(&server, 7, true).unwrap();
        let mut out = Vec::new();
        // Writable at once.
        wait_for(&p, &mut out, |r, _| {
            r.iter().any(|e| e.key == 7 && e.writable)
        });
        client.write_all(b"x").unwrap();
        wait_for(&p, &mut out, |r, _| {
            r.iter().any(|e| e.key == 7 && e.readable)
        });
        // Edge-triggered: unread data does not report again by itself.
        out.clear();
        p.wait(&mut out, Some(Duration::from_millis(50))).unwrap();
        assert!(out.iter().all(|e| e.key != 7), "{out:?}");
        // A new arrival is a new edge.
        client.write_all(b"y").unwrap();
        wait_for(&p, &mut out, |r, _| {
            r.iter().any(|e| e.key == 7 && e.readable)
        });
        // The peer's FIN is readable, with `hup`.
        drop(client);
        wait_for(&p, &mut out, |r, _| {
            r.iter().any(|e| e.key == 7 && e.readable && e.hup)
        });
        p.delete(&server).unwrap();
    }

    #[test]
    fn writability_is_reported_only_once_asked_for() {
        let p = Poller::new().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        p.add_stream(&server, 7, false).unwrap();
        // Writable from the start, and not reported: nothing happened.
        let mut out = Vec::new();
        p.wait(&mut out, Some(Duration::from_millis(50))).unwrap();
        assert!(out.iter().all(|e| e.key != 7), "{out:?}");
        // Reading is.
        client.write_all(b"x").unwrap();
        wait_for(&p, &mut out, |r, _| {
            r.iter().any(|e| e.key == 7 && e.readable && !e.writable)
        });
        // Asked for later, writability that is already there is reported.
        p.watch_writable(&server, 7).unwrap();
        wait_for(&p, &mut out, |r, _| {
            r.iter().any(|e| e.key == 7 && e.writable)
        });
        p.delete(&server).unwrap();
    }

    #[test]
    fn listeners_report_new_connections_until_quieted_and_again_once_rearmed() {
        let p = Poller::new().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        p.add_listener(&l, 3).unwrap();
        let _c1 = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let mut out = Vec::new();
        wait_for(&p, &mut out, |r, _| {
            r.iter().any(|e| e.key == 3 && e.readable)
        });
        let _c2 = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        if LISTENER_ONESHOT {
            // Not re-armed: a second connection is not reported.
            out.clear();
            p.wait(&mut out, Some(Duration::from_millis(50))).unwrap();
            assert!(out.iter().all(|e| e.key != 3), "{out:?}");
        } else {
            // Edge-triggered: a new connection is a new edge, reported
            // with nothing accepted and no re-arm.
            wait_for(&p, &mut out, |r, _| {
                r.iter().any(|e| e.key == 3 && e.readable)
            });
            // Quieted (a pause): the next one is not.
            p.quiet_listener(&l, 3).unwrap();
            let _c3 = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            out.clear();
            p.wait(&mut out, Some(Duration::from_millis(50))).unwrap();
            assert!(out.iter().all(|e| e.key != 3), "{out:?}");
        }
        // Re-armed with a backlog pending: reported at once.
        p.rearm_listener(&l, 3).unwrap();
        wait_for(&p, &mut out, |r, _| {
            r.iter().any(|e| e.key == 3 && e.readable)
        });
        p.delete(&l).unwrap();
    }
}
