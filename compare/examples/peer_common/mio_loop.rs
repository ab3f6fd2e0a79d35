//! The hand-written mio event loops of `peer_mio_echo` and `peer_mio_http`:
//! `--workers N` loops, each owning its connections outright (no locks, no
//! hand-off after accept). Loop 0 also accepts (until `WouldBlock`,
//! `accept4` with `SOCK_NONBLOCK | SOCK_CLOEXEC`) and deals new connections
//! round-robin to the loops, waking each other loop once per burst; a
//! connection costs `accept4`, `TCP_NODELAY`, one `epoll_ctl` and `close`
//! (which also takes it out of the epoll set). What a connection does when
//! it is ready is the [`Service`]'s.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// What to do with a connection after servicing it.
#[derive(PartialEq)]
pub enum Next {
    Keep,
    /// A read budget ran out with the socket possibly not drained: run it
    /// again after the loop's other ready connections (no new edge will
    /// come for what is still in its socket).
    Again,
    Close,
}

/// An interrupted system call, to be retried.
pub fn is_retry(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::Interrupted
}

/// The protocol one event loop speaks: its connections' state and whatever
/// the loop's connections share (one per loop, made on the loop's thread).
pub trait Service {
    /// The program's name, for error messages.
    const NAME: &'static str;
    type Conn;
    /// The state of a new connection (`TCP_NODELAY` already set), or `None`
    /// to drop it (after saying why).
    fn open(&mut self, stream: TcpStream) -> Option<Self::Conn>;
    /// The connection's socket, to register with the loop.
    fn stream(conn: &mut Self::Conn) -> &mut TcpStream;
    /// One turn of a ready connection (a stale one is harmless: its reads
    /// only say `WouldBlock`).
    fn drive(&mut self, conn: &mut Self::Conn) -> Next;
}

type Inbox = crossbeam_channel::Receiver<std::net::TcpStream>;
type Peer = (crossbeam_channel::Sender<std::net::TcpStream>, Arc<Waker>);

struct Loop<S: Service> {
    poll: Poll,
    conns: Vec<Option<S::Conn>>,
    free: Vec<usize>,
    inbox: Inbox,
    /// Loop 0 only: the listener and the other loops' inboxes.
    acceptor: Option<Acceptor>,
}

struct Acceptor {
    listener: TcpListener,
    peers: Vec<Peer>,
    next: usize,
}

impl<S: Service> Loop<S> {
    fn new() -> (Self, Peer) {
        let poll = Poll::new().unwrap_or_else(|e| super::die(S::NAME, "poll", e));
        let waker = Arc::new(
            Waker::new(poll.registry(), WAKER).unwrap_or_else(|e| super::die(S::NAME, "waker", e)),
        );
        let (tx, rx) = crossbeam_channel::unbounded();
        (
            Loop {
                poll,
                conns: Vec::new(),
                free: Vec::new(),
                inbox: rx,
                acceptor: None,
            },
            (tx, waker),
        )
    }

    fn adopt(&mut self, svc: &mut S, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let Some(mut conn) = svc.open(stream) else {
            return;
        };
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        // Registering reports readiness that is already there, so nothing
        // that arrived before this point is missed.
        if let Err(e) = self.poll.registry().register(
            S::stream(&mut conn),
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            eprintln!("{}: register: {e}", S::NAME);
            self.free.push(slot);
            return;
        }
        self.conns[slot] = Some(conn);
    }

    /// Accepts until `WouldBlock` (mio's `accept` is one `accept4` with
    /// `SOCK_NONBLOCK | SOCK_CLOEXEC`), deals the connections round-robin,
    /// and wakes each other loop at most once per burst.
    fn accept(&mut self, svc: &mut S) {
        let Some(acc) = self.acceptor.as_mut() else {
            return;
        };
        let mut mine = Vec::new();
        let mut woken = 0u64; // bit i: loop i + 1 has new connections
        loop {
            match acc.listener.accept() {
                Ok((s, _)) => {
                    let target = acc.next % (acc.peers.len() + 1);
                    acc.next = acc.next.wrapping_add(1);
                    if target == 0 {
                        mine.push(s);
                    } else {
                        // Hand over as a std stream; the owning loop registers it.
                        let std_stream: std::net::TcpStream = s.into();
                        if acc.peers[target - 1].0.send(std_stream).is_ok() {
                            woken |= 1 << ((target - 1) % 64);
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if is_retry(&e) => {}
                Err(e) => {
                    // EMFILE etc.: the listener stays registered; the next
                    // connection attempt retries.
                    eprintln!("{}: accept: {e}", S::NAME);
                    break;
                }
            }
        }
        for (i, (_, waker)) in acc.peers.iter().enumerate() {
            if woken & (1 << (i % 64)) != 0 {
                let _ = waker.wake();
            }
        }
        for s in mine {
            self.adopt(svc, s);
        }
    }

    fn run(mut self, mut svc: S) {
        let mut events = Events::with_capacity(1024);
        // Connections whose read budget ran out, to run again this round
        // (`again`) and the next (`next_again`).
        let mut again: Vec<usize> = Vec::new();
        let mut next_again: Vec<usize> = Vec::new();
        loop {
            // With connections waiting for another turn, only look for
            // readiness (no blocking), so the others get theirs first.
            let timeout = (!again.is_empty()).then_some(Duration::ZERO);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if is_retry(&e) {
                    continue;
                }
                super::die(S::NAME, "poll", e);
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(&mut svc),
                    WAKER => {
                        while let Ok(s) = self.inbox.try_recv() {
                            self.adopt(&mut svc, TcpStream::from_std(s));
                        }
                    }
                    Token(slot) => self.service(&mut svc, slot, &mut next_again),
                }
            }
            for slot in again.drain(..) {
                self.service(&mut svc, slot, &mut next_again);
            }
            std::mem::swap(&mut again, &mut next_again);
        }
    }

    /// One turn of the connection in `slot`.
    fn service(&mut self, svc: &mut S, slot: usize, again: &mut Vec<usize>) {
        let Some(Some(c)) = self.conns.get_mut(slot) else {
            return;
        };
        match svc.drive(c) {
            Next::Keep => {}
            Next::Again => again.push(slot),
            Next::Close => {
                // Dropping the stream closes it and removes it from epoll.
                self.conns[slot] = None;
                self.free.push(slot);
            }
        }
    }
}

/// Listens on `listen`, starts `workers` event loops (loop 0 on this
/// thread, which also accepts), each with its own `new_service()`, prints
/// the readiness line and serves forever.
pub fn serve<S, F>(listen: SocketAddr, workers: usize, new_service: F)
where
    S: Service + 'static,
    S::Conn: Send + 'static,
    F: Fn() -> S + Clone + Send + 'static,
{
    let (std_listener, addr) = super::nonblocking_listener(S::NAME, listen);
    let mut listener = TcpListener::from_std(std_listener);

    let (mut first, _) = Loop::<S>::new();
    let mut peers = Vec::new();
    for idx in 1..workers {
        let (lp, peer) = Loop::<S>::new();
        peers.push(peer);
        let new_service = new_service.clone();
        std::thread::Builder::new()
            .name(format!("mio-loop-{idx}"))
            .spawn(move || lp.run(new_service()))
            .unwrap_or_else(|e| super::die(S::NAME, "spawn", e));
    }
    first
        .poll
        .registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .unwrap_or_else(|e| super::die(S::NAME, "register listener", e));
    first.acceptor = Some(Acceptor {
        listener,
        peers,
        next: 0,
    });
    super::announce(addr);
    first.run(new_service());
}
