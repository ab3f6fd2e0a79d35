//! # netactor
//!
//! Buffered, framed, TLS-capable, non-blocking TCP connections for
//! thread-based programs — without an async runtime. It gives plain threads
//! what Perl's AnyEvent::Handle gives event-loop programs.
//!
//! ## The model in one page
//!
//! * A [`Reactor`] runs **one poller** (the `polling` crate) and a **pool of
//!   worker threads**. Every connection is an **actor** owned by one worker:
//!   its socket, buffers, read queue and timers belong to it alone. It starts
//!   on the worker that accepted it; a long-lived one moves (between turns,
//!   with all of that) if its worker hosts more connections than another
//!   ([`WorkerMetrics::moved_in`]). Polling is
//!   a role an idle worker takes, so events for its own connections need no
//!   thread hop; other workers' events are handed to them (or, with
//!   [`ReactorBuilder::dedicated_poller`], polling is a thread of its own).
//!   Handlers run on the connection's worker thread, never two turns of one
//!   connection at once (with [`ReactorBuilder::run_for_parked`], a parked
//!   worker's turns may run on the polling thread instead).
//! * A [`Connection`] is a cheap, cloneable handle. Each call —
//!   [`write`](Connection::write), [`push_read`](Connection::push_read),
//!   [`shutdown`](Connection::shutdown), [`close`](Connection::close),
//!   [`starttls`](Connection::starttls), … — is a message to the actor's
//!   mailbox; the actor handles messages and readiness strictly one at a time,
//!   in order.
//! * Results flow back over crossbeam channels: a [`Reply`] per read request,
//!   and [`Event`]s (data in streaming mode, EOF, drain, timeouts, errors,
//!   closed) on the channel you chose — so plain threads can block on them,
//!   `select!` over many connections, or poll. Or give the connection a
//!   [`Handler`] and its events run on the worker, with direct access to the
//!   connection through [`Ctx`] (no hop at all: the fastest path).
//! * Reading is framed by [`framing`] decoders: chunk, line, regex, …; a new
//!   read type is a new [`framing::Decoder`].
//! * Every buffer is bounded by default ([`Options`]), every error is one
//!   typed [`Error`], and TLS ([`tls`]) verifies peers by default.
//!
//! ```
//! use netactor::{framing::Line, ListenOptions, Reactor, ConnectOptions, Event};
//! use std::time::Duration;
//!
//! let reactor = Reactor::builder().workers(2).build()?;
//! // An echo server: handlers run on the workers.
//! let listener = reactor.listen_with("127.0.0.1:0".parse().unwrap(), ListenOptions::new(), |ctx| {
//!     ctx.set_streaming(Some(netactor::framing::Raw));
//!     |ctx: &mut netactor::Ctx<'_>, ev: Event| {
//!         if let Event::Read(frame) = ev {
//!             let _ = ctx.write(frame.into_bytes().unwrap());
//!         }
//!     }
//! })?;
//! // A client on a plain thread: write, then block on a line.
//! let (tx, _events) = netactor::event_channel(64);
//! let conn = reactor.connect(listener.local_addr(), ConnectOptions::new(), tx)?;
//! conn.write(&b"hello\n"[..])?;
//! let line = conn.push_read(Line::new())?.recv_timeout(Duration::from_secs(5))?;
//! assert_eq!(&line.line[..], b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Cargo features
//!
//! | Feature | Default | What it adds |
//! |---|---|---|
//! | `aws-lc-rs` | on | rustls's aws-lc-rs crypto provider (with post-quantum key exchange preferred) |
//! | `ring` | off | rustls's ring crypto provider; with neither, TLS configurations take the process default or one passed to the builder |
//! | `json` | on | the `json` read and write types, `framing::Json` and `framing::JsonOut` (and `Frame::Json`), with serde and serde_json |
//! | `regex` | on | the `regex` read type `framing::Regex` and regex line terminators (`Line::with_eol_regex`), with the regex crates |
//! | `cbor` | off | the `cbor` read and write types (`framing::Cbor`, `CborAs`, `CborOut`), with minicbor |
//! | `portable-poller` | off | readiness through the `polling` crate's public API on Linux too, instead of netactor's own epoll set |
//!
//! Everything else — the reactor, connections, TLS, and the chunk, line,
//! netstring, length-prefixed and TLS-detection framing — is always built;
//! `default-features = false` leaves out serde, serde_json and the regex
//! crates.

#![warn(missing_docs, missing_debug_implementations)]

// The layers are private modules; every public type has one path, at the
// crate root, except the two leaf namespaces `framing` and `tls`.
mod conn;
mod error;
pub mod framing;
mod metrics;
mod net;
mod reactor;
mod sync;
mod sys;
pub mod tls;

pub use conn::{
    event_channel, BlockingIo, ConnId, Connection, Ctx, Event, EventReceiver, EventSender, Handler,
    Options, Reply, ReplyTimeoutError, Sink, Stats, TlsState, TryReplyError,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_LINGER, DEFAULT_RBUF_MAX, DEFAULT_WBUF_MAX,
};
pub use error::{
    ConfigError, EncodeFailure, Error, Inactivity, Limit, PemItem, Result, TimeoutKind, TlsError,
};
pub use metrics::{CloseCause, Metrics, WorkerMetrics};
#[cfg(unix)]
pub use net::PeerCredentials;
pub use net::{
    parse_host_port, resolve, ConnectOptions, HandlerFactory, HostPort, ListenOptions, Listener,
    MetricsHandle, PrepareFn, Reactor, ResolveFn, Target, DEFAULT_BACKLOG,
};
pub use reactor::ReactorBuilder;

/// The README's example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
