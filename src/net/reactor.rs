//! The public [`Reactor`]: the reactor engine (`crate::reactor`) running
//! connection actors. Connecting, listening and adopting are in `net/mod.rs`.

use crate::conn::actor::Actor;
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
