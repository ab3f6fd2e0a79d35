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

    /// Stops accepting, flushes and closes every connection, joins all threads.
    /// Idempotent; never waits longer than the shutdown timeout plus a margin.
    pub fn shutdown(&self) {
        self.engine.shutdown();
    }
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("workers", &self.workers())
            .finish()
    }
}
