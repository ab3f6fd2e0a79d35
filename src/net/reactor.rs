//! The public [`Reactor`]: the reactor engine (`crate::reactor`) running
//! connection actors. Connecting, listening and adopting are in `net/mod.rs`.

use crate::conn::actor::Actor;
use crate::conn::Connection;
use crate::reactor::{Engine, ReactorBuilder, ReactorShared};
use std::io;
use std::sync::Arc;

/// A running reactor: the poller and the worker pool.
///
/// Dropping it (or calling [`Reactor::shutdown`]) stops accepting, lets
/// connections flush their queued writes (bounded by the shutdown timeout and
/// each connection's linger), delivers `Closed` events, and joins every thread.
///
/// ```
/// let reactor = netactor::Reactor::new().unwrap();
/// reactor.shutdown();
/// ```
pub struct Reactor {
    pub(crate) shared: Arc<ReactorShared<Actor>>,
    engine: Engine<Actor>,
}

impl ReactorBuilder {
    /// Starts the workers (and the dedicated poller thread, if asked for).
    pub fn build(self) -> io::Result<Reactor> {
        let engine = self.start::<Actor>()?;
        Ok(Reactor {
            shared: engine.shared.clone(),
            engine,
        })
    }
}

impl Reactor {
    /// A reactor with default settings (one worker per core).
    pub fn new() -> io::Result<Reactor> {
        ReactorBuilder::default().build()
    }

    /// A builder for custom settings.
    pub fn builder() -> ReactorBuilder {
        ReactorBuilder::default()
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.shared.workers.len()
    }

    /// A snapshot of the reactor's metrics: connections, bytes, syscalls,
    /// closes by cause, TLS handshakes, accept pauses, per-worker
    /// scheduling. Relaxed loads only (a few per open connection, under a
    /// short per-worker lock the workers take only when connections start
    /// or end), from any thread; [`Metrics::to_prometheus`](crate::Metrics::to_prometheus)
    /// renders it for a scrape.
    ///
    /// ```
    /// let reactor = netactor::Reactor::builder().workers(2).build().unwrap();
    /// let m = reactor.metrics();
    /// assert_eq!(m.connections_open, 0);
    /// assert_eq!(m.workers.len(), 2);
    /// ```
    pub fn metrics(&self) -> crate::Metrics {
        self.shared.metrics()
    }

    /// A handle that takes [`metrics`](Self::metrics) snapshots without
    /// the `Reactor` itself: cloneable, for a metrics endpoint's handler or
    /// a reporting thread. Snapshots after shutdown keep the final counts.
    pub fn metrics_handle(&self) -> MetricsHandle {
        MetricsHandle(self.shared.clone())
    }

    /// A handle to every connection whose actor is running now — accepted,
    /// connected or adopted, in handler or channel mode: a snapshot, in no
    /// particular order. What it is for: acting on all of them at once
    /// without keeping a registry of one's own, e.g. a graceful stop that
    /// [`call`](Connection::call)s each connection's own shutdown on its
    /// worker (the `echo` and `http` examples do). A registry kept by the
    /// application costs every connection a shared lock when it opens and
    /// again when it closes; this one is the reactor's own per-worker list
    /// (kept for [`metrics`](Self::metrics)), so it costs them nothing more.
    ///
    /// A connection accepted but not yet started on its worker is not in
    /// the snapshot yet, and one in the snapshot may close at any moment
    /// ([`Connection::is_closed`]; calls on it then fail with
    /// [`Error::Closed`](crate::Error::Closed)). A handle taken here
    /// counts like any other: the last handle of a channel-mode connection
    /// closes it when dropped.
    ///
    /// ```
    /// use netactor::{ListenOptions, Reactor};
    /// use std::time::{Duration, Instant};
    /// let reactor = Reactor::builder().workers(1).build().unwrap();
    /// let listener = reactor.listen("127.0.0.1:0".parse().unwrap(), ListenOptions::new()).unwrap();
    /// let _client = std::net::TcpStream::connect(listener.local_addr()).unwrap();
    /// let accepted = listener.accept_timeout(Duration::from_secs(10)).unwrap();
    /// // Started on its worker (as good as at once): in the snapshot.
    /// let deadline = Instant::now() + Duration::from_secs(10);
    /// while reactor.connections().is_empty() && Instant::now() < deadline {
    ///     std::thread::sleep(Duration::from_millis(1));
    /// }
    /// let all = reactor.connections();
    /// assert_eq!(all.len(), 1);
    /// assert_eq!(all[0].id(), accepted.id());
    /// ```
    pub fn connections(&self) -> Vec<Connection> {
        crate::conn::actor::live::Live::handles(
            self.shared.workers.iter().map(|w| &*w.source_shared),
        )
    }

    /// Stops accepting, flushes and closes every connection, joins all threads.
    /// Idempotent; never waits longer than the shutdown timeout plus a margin.
    pub fn shutdown(&self) {
        self.engine.shutdown();
    }
}

/// Takes [`Metrics`](crate::Metrics) snapshots of one reactor
/// ([`Reactor::metrics_handle`]).
#[derive(Clone)]
pub struct MetricsHandle(Arc<ReactorShared<Actor>>);

impl MetricsHandle {
    /// A snapshot, as [`Reactor::metrics`] takes it.
    pub fn snapshot(&self) -> crate::Metrics {
        self.0.metrics()
    }
}

impl std::fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsHandle")
            .field("workers", &self.0.workers.len())
            .finish()
    }
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("workers", &self.workers())
            .finish()
    }
}
