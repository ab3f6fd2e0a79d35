//! The connection actor: owns the socket, the buffers, the read queue and the
//! timers of one connection, and runs on the worker that owns it.
//!
//! One *turn* of the actor: apply every mailbox message in order, then pump —
//! decode what is buffered, flush the write queue, read more while someone
//! wants data — until nothing more can be done without new readiness. The
//! socket is registered edge-triggered, so the actor remembers readiness
//! itself (`readable`/`writable`) and only forgets it on `WouldBlock`.

#[cfg(test)]
mod churn_tests;
mod connect;
mod ctx;
mod deliver;
mod dispatch;
mod entry;
mod handler;
mod lifecycle;
pub(crate) mod live;
mod moving;
mod observe;
mod pools;
mod read;
mod requests;
pub(crate) mod timers;
mod tls;
mod turn;
mod write;

pub use ctx::Ctx;
use deliver::Outbox;
pub(crate) use entry::{Dial, NewConn, Resolve, SinkSetup, Start};
pub(crate) use handler::InlineFactory;
pub use handler::{Handler, HandlerFactory, PrepareFn, ResolveFn};
use read::ReadHalf;
pub(crate) use requests::{QueuedRead, ReadRequest, StreamAdapter, StreamDecode};
use timers::{Armed, Inactivity};
use write::WriteHalf;

use super::shared::{ConnRef, Msg};
use super::{Event, Options};
use crate::error::Error;
use crate::net::stream::Stream;
use crate::reactor::Token;
use crate::tls::{TlsSession, TlsSetup};
use handler::ActorSink;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

/// What an actor uses of its worker during a turn (the reactor's context,
/// with this layer's [`Pools`]).
pub(crate) type WorkerCtx = crate::reactor::WorkerCtx<Actor>;

/// Bytes one turn may read before yielding to other connections on the worker.
const READ_BUDGET: usize = 512 << 10;
/// At most this many buffers go into one vectored write.
const MAX_IOV: usize = 64;
/// Deliver-then-flush rounds one turn runs before it yields (a handler that
/// writes on every `Drain` would otherwise never let the worker go).
const MAX_DELIVERY_ROUNDS: usize = 64;
/// First retry delay (ms) when the application's event channel is full.
const RETRY_MS_MIN: u16 = 1;
/// The longest retry delay (ms) while the channel stays full.
const RETRY_MS_MAX: u16 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Resolving,
    Connecting,
    Open,
    /// `close` was called: flushing the write queue until the linger deadline.
    Closing,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteSide {
    Open,
    /// Half-close once the write queue is empty.
    ShutdownPending,
    Shut,
}

/// Everything of a connection except its event sink: what [`Ctx`] operates on.
pub(crate) struct Core {
    shared: std::mem::ManuallyDrop<ConnRef>,
    token: Token,
    phase: Phase,
    /// The fatal error that is ending the connection: read requests still
    /// in the mailbox when it closes are answered with it rather than a
    /// bare `Closed`. Boxed: it is rare, and the actor stays small.
    failure: Option<Box<Error>>,
    sock: Option<Stream>,
    registered: bool,
    /// In its worker's registry of live connections (`live.rs`): from the
    /// start until `finish` (or the drop, for an actor that never finished).
    listed: bool,
    /// The socket came from a netactor listener (`Start::Accepted`): it is
    /// non-blocking already, has the listener's options where accepted
    /// sockets inherit them, and its descriptor is the only one — so
    /// closing it also takes it out of the poller. Each saves a system
    /// call per connection that a hand-written loop does not make.
    accepted: bool,
    /// Turns run, for the offers to move (`moving.rs`).
    turns: u32,
    /// When it started (`WorkerCtx::stamp`), for the offer a quiet
    /// connection makes once it is a second old (`moving.rs`).
    born: u32,
    /// The read half: buffer, readiness, requests, streaming decoder.
    rd: ReadHalf,
    /// The write half: queue, readiness, half-close, `Drain`.
    wr: WriteHalf,
    /// Shared with every connection of the same listener until changed
    /// (copy on write): per-connection memory stays small.
    opts: Arc<Options>,
    /// Last activity per inactivity timer.
    idle: Inactivity,
    /// The deadline armed per timer kind.
    armed: Armed,
    /// Events and read completions on their way to the sink.
    outbox: Outbox,
    connect: Option<Box<ConnectState>>,
    tls: Option<Box<TlsSession>>,
    /// TLS to start once connected, with how many queued bytes precede it
    /// in clear (0 for connect-time TLS: everything is encrypted).
    pending_tls: Option<(TlsSetup, usize)>,
    /// TCP EOF came under TLS without close_notify.
    tls_truncated: bool,
    /// A `close` asked for while connecting waits (in `deferred`) for the
    /// connection, and its TLS handshake, to send what was queued.
    close_pending: bool,
    /// The TLS handshake under way is part of connecting (TLS asked for
    /// before the outgoing connection was up): a close waits for it.
    connect_handshake: bool,
    /// Messages that cannot apply yet (a `stoptls` before the handshake is
    /// done, a `close` while connecting with writes queued) and every
    /// message posted after them, in order: replayed once the connection
    /// is established, so nothing is dropped or reordered by state.
    // Boxed on purpose: one pointer in every actor instead of a 32-byte
    // queue header that almost every connection leaves empty.
    #[allow(clippy::box_collection)]
    deferred: Option<Box<VecDeque<Msg>>>,
    /// Connection-limit slots, held for their `Drop`: given back when the
    /// worker drops the actor, after `Closed` was handed over (boxed: only
    /// with a limit configured).
    _limit: Option<Box<crate::reactor::limit::LimitGuard>>,
}

struct ConnectState {
    addrs: Vec<SocketAddr>,
    next: usize,
    prepare: Option<Arc<PrepareFn>>,
    last_err: Option<Error>,
}

/// A connection actor: its state plus where its events go.
pub(crate) struct Actor {
    core: Core,
    sink: Option<ActorSink>,
}

#[cfg(test)]
mod size_tests {
    /// Every connection carries one boxed `Actor` and one `ConnShared`; the
    /// idle budget is 1 KiB of user-space memory per connection (benches:
    /// ~0.7 KiB measured). Growing these structs eats into it.
    #[test]
    fn per_connection_structs_stay_small() {
        let actor = std::mem::size_of::<super::Actor>();
        let shared = std::mem::size_of::<crate::conn::shared::ConnShared>();
        eprintln!("Actor {actor} B, ConnShared {shared} B");
        // The addresses (`ConnInfo`, 88 B) are inline in `ConnShared` since
        // issue 15's churn work: they were a box of their own in every TCP
        // connection (its pointer and malloc header besides), uncounted
        // here. The bounds grew by that much; the memory per connection
        // did not.
        let info = std::mem::size_of::<crate::conn::shared::ConnInfo>();
        assert!(info <= 88, "ConnInfo is {info} bytes");
        // The handler's four words (`HandlerBox`) are inline in the actor
        // since session 11: a handler that fits was a box of its own (32 B
        // and a malloc header, uncounted here). The bounds grew by 32; the
        // memory per connection went down.
        assert!(actor <= 544, "Actor is {actor} bytes");
        assert!(shared <= 192 + info, "ConnShared is {shared} bytes");
        // 640 until the per-connection stats (read-buffer size, activity
        // stamps, TLS state, the metrics registry index) came.
        assert!(actor + shared <= 696 + info);
    }
}
