//! Reactor metrics: per-worker counters on the hot path, a [`Metrics`]
//! snapshot that sums them, and its Prometheus text rendering.
//!
//! **Why no shared atomics.** Every counter has exactly one writer, so an
//! increment is a relaxed load and a relaxed store of a counter the writer
//! already owns in its cache — no locked read-modify-write, no cache line
//! bouncing between workers. The writers:
//!
//! * [`ConnCounters`]: whoever holds the worker's state lock — the worker's
//!   own thread, or the poller-role holder running the worker's connections
//!   while it is parked (the lock hands the counters over with the state, so
//!   an update is never lost);
//! * [`LoopCounters`]: the worker's own thread (polls, parks, …);
//! * [`PollCounters`]: the holder of the poller role (accepts, pauses).
//!
//! Each block sits on cache lines of its own (`align(128)`: two lines, for
//! the adjacent-line prefetcher), so a worker's increments never contend
//! with another worker's. A snapshot ([`Metrics`]) loads every counter of
//! every block with relaxed loads from any thread: each value is exact as of
//! some moment during the snapshot; sums across counters are not one atomic
//! cut (a connection closing while the snapshot runs may be counted as open
//! in one field and closed in another).
//!
//! Bytes and system calls are not counted here at all: every connection
//! already counts them for its `Stats` (one writer, its actor), so a
//! snapshot sums the live connections' counters and the totals of closed
//! ones (`conn/actor/live.rs`, through `Source::collect`); the read-buffer
//! and write-queue gauges are sums over live connections the same way.
//!
//! This module is a leaf: the reactor keeps the blocks, the connection and
//! net layers count into them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A counter with a single writer (see the module docs).
#[derive(Default, Debug)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    #[inline(always)]
    pub(crate) fn add(&self, n: u64) {
        // Single writer: load + store, no locked instruction.
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    #[inline(always)]
    pub(crate) fn inc(&self) {
        self.add(1);
    }

    #[inline(always)]
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    #[inline(always)]
    pub(crate) fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Raises the value to `v` if it is higher.
    #[inline(always)]
    pub(crate) fn max(&self, v: u64) {
        if v > self.get() {
            self.0.store(v, Ordering::Relaxed);
        }
    }
}

/// Why a connection closed (the `cause` label of
/// `netactor_connections_closed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCause {
    /// The peer closed (EOF) and the connection ended without an error.
    Eof,
    /// The application (or the reactor's shutdown) closed it, no error.
    Local,
    /// `ConnectionReset`.
    Reset,
    /// `BrokenPipe`.
    BrokenPipe,
    /// `ConnectionRefused` (connect).
    Refused,
    /// `Unreachable` (connect).
    Unreachable,
    /// `NoAddress`: name resolution failed or gave nothing to connect to.
    NoAddress,
    /// The connect timed out.
    ConnectTimeout,
    /// The TLS handshake timed out.
    HandshakeTimeout,
    /// An inactivity timeout ended it as an error.
    InactivityTimeout,
    /// A TLS error (handshake or record layer).
    Tls,
    /// TCP EOF under TLS without close_notify.
    TlsTruncated,
    /// A decoder rejected the input (`BadMessage`).
    BadMessage,
    /// EOF in the middle of a frame.
    UnexpectedEof,
    /// A buffer or frame limit (`NoSpace`).
    NoSpace,
    /// A handler or completion panicked.
    Panic,
    /// Any other error (other I/O errors, invalid input, …).
    Other,
}

impl CloseCause {
    /// Every cause, in the order of [`Metrics::closes`].
    pub const ALL: [CloseCause; 17] = [
        CloseCause::Eof,
        CloseCause::Local,
        CloseCause::Reset,
        CloseCause::BrokenPipe,
        CloseCause::Refused,
        CloseCause::Unreachable,
        CloseCause::NoAddress,
        CloseCause::ConnectTimeout,
        CloseCause::HandshakeTimeout,
        CloseCause::InactivityTimeout,
        CloseCause::Tls,
        CloseCause::TlsTruncated,
        CloseCause::BadMessage,
        CloseCause::UnexpectedEof,
        CloseCause::NoSpace,
        CloseCause::Panic,
        CloseCause::Other,
    ];

    /// The label value (snake case).
    pub fn as_str(self) -> &'static str {
        match self {
            CloseCause::Eof => "eof",
            CloseCause::Local => "local",
            CloseCause::Reset => "reset",
            CloseCause::BrokenPipe => "broken_pipe",
            CloseCause::Refused => "refused",
            CloseCause::Unreachable => "unreachable",
            CloseCause::NoAddress => "no_address",
            CloseCause::ConnectTimeout => "connect_timeout",
            CloseCause::HandshakeTimeout => "handshake_timeout",
            CloseCause::InactivityTimeout => "inactivity_timeout",
            CloseCause::Tls => "tls",
            CloseCause::TlsTruncated => "tls_truncated",
            CloseCause::BadMessage => "bad_message",
            CloseCause::UnexpectedEof => "unexpected_eof",
            CloseCause::NoSpace => "no_space",
            CloseCause::Panic => "panic",
            CloseCause::Other => "other",
        }
    }
}

const CAUSES: usize = CloseCause::ALL.len();

/// TLS protocol versions as metrics count them: TLS 1.2, TLS 1.3, and
/// unknown (a handshake that failed before a version was chosen).
pub(crate) const TLS_VERSIONS: [&str; 3] = ["1.2", "1.3", "unknown"];

/// Index into [`TLS_VERSIONS`].
pub(crate) fn tls_version_idx(v: Option<rustls::ProtocolVersion>) -> usize {
    match v {
        Some(rustls::ProtocolVersion::TLSv1_2) => 0,
        Some(rustls::ProtocolVersion::TLSv1_3) => 1,
        _ => 2,
    }
}

/// Counted by whoever runs the worker's connections (holds its state lock).
#[derive(Default, Debug)]
#[repr(align(128))]
pub(crate) struct ConnCounters {
    /// Connections started on this worker (accepted, connected, adopted).
    pub(crate) opened: Counter,
    /// Outgoing connections that completed their connect.
    pub(crate) connected: Counter,
    pub(crate) closed: Counter,
    pub(crate) closes: [Counter; CAUSES],
    pub(crate) frames: Counter,
    pub(crate) events: Counter,
    /// Streaming frames handed straight to a handler: each is one frame
    /// decoded *and* one event delivered, counted once (one increment per
    /// echoed message instead of two; the snapshot adds it to both).
    pub(crate) direct_frames: Counter,
    pub(crate) mail: Counter,
    pub(crate) tls_done: [Counter; 3],
    pub(crate) tls_failed: [Counter; 3],
    /// Source turns run (tasks, fairness re-runs, timers).
    pub(crate) turns: Counter,
    pub(crate) timers_armed: Counter,
    /// Connections that moved here from another worker, and away from
    /// here to another (`WorkerCtx::offer_move`): a worker's open count is
    /// what it opened and received, less what it closed and gave away.
    pub(crate) moved_in: Counter,
    pub(crate) moved_out: Counter,
}

impl ConnCounters {
    pub(crate) fn closed_by(&self, cause: CloseCause) {
        self.closed.inc();
        self.closes[cause as usize].inc();
    }
}

/// Counted by the worker's own thread.
#[derive(Default, Debug)]
#[repr(align(128))]
pub(crate) struct LoopCounters {
    /// Waits on the poller while holding the poller role.
    pub(crate) polls: Counter,
    pub(crate) parks: Counter,
    /// Parks that ended because work arrived (not a timeout).
    pub(crate) wakeups: Counter,
    /// Tasks found for other workers and queued for them.
    pub(crate) handed_off: Counter,
    /// Tasks found for a parked worker and run here in its place.
    pub(crate) borrowed: Counter,
    /// The longest round (a batch of turns) among the timed ones, ns.
    pub(crate) longest_round_ns: Counter,
    /// The most consecutive rounds that ran without a poll or park.
    pub(crate) max_rounds_unpolled: Counter,
}

/// One worker's counters.
#[derive(Default, Debug)]
pub(crate) struct WorkerCounters {
    pub(crate) conn: ConnCounters,
    pub(crate) sched: LoopCounters,
}

/// Why accepting paused (the `reason` label of `netactor_accept_pauses_total`).
pub(crate) const PAUSE_REASONS: [&str; 3] = ["descriptors", "backlog", "limit"];
/// Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM).
pub(crate) const PAUSE_DESCRIPTORS: usize = 0;
/// The application's accept channel is full.
pub(crate) const PAUSE_BACKLOG: usize = 1;
/// A connection limit was reached.
pub(crate) const PAUSE_LIMIT: usize = 2;

/// Counted by the holder of the poller role.
#[derive(Default, Debug)]
#[repr(align(128))]
pub(crate) struct PollCounters {
    pub(crate) accepted: Counter,
    pub(crate) accept_pauses: [Counter; 3],
    /// Waits by a dedicated poller thread (workers count their own).
    pub(crate) polls: Counter,
}

/// A snapshot of a reactor's metrics ([`Reactor::metrics`](crate::Reactor::metrics)).
///
/// Counters only grow (until the process restarts); gauges are current
/// values. A snapshot costs relaxed loads of every worker's counters and,
/// under one short lock per worker (which that worker takes only when a
/// connection starts or ends), six loads per open connection: 30–60 µs
/// with 10 000 connections open (`tests/metrics_scale.rs`), so a scrape a
/// second costs nothing measurable. It can be taken from any thread at any
/// time; see "Operating a netactor server" in the README for what each
/// value means and what to alert on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Connections open now (started and not yet closed).
    pub connections_open: u64,
    /// Connections accepted by listeners.
    pub connections_accepted: u64,
    /// Outgoing connections that completed their connect.
    pub connections_connected: u64,
    /// Connections started (accepted, connected or adopted; includes
    /// outgoing ones still connecting).
    pub connections_opened: u64,
    /// Connections closed, for any reason.
    pub connections_closed: u64,
    /// Connections closed per cause, in the order of [`CloseCause::ALL`].
    pub closes: [u64; 17],
    /// Bytes received from sockets (ciphertext under TLS).
    pub bytes_read: u64,
    /// Bytes handed to the kernel (ciphertext under TLS).
    pub bytes_written: u64,
    /// Successful read system calls.
    pub read_calls: u64,
    /// Successful write system calls.
    pub write_calls: u64,
    /// Frames decoded (read requests answered and streaming frames).
    pub frames_decoded: u64,
    /// Events and read completions delivered to handlers or channels.
    pub events_delivered: u64,
    /// Mailbox messages applied by actors.
    pub mailbox_messages: u64,
    /// Bytes accepted for writing and not yet taken by the kernel (gauge).
    pub write_queued_bytes: u64,
    /// Bytes read and not yet consumed by a decoder (gauge).
    pub read_buffered_bytes: u64,
    /// TLS handshakes completed, by version: TLS 1.2, TLS 1.3, other.
    pub tls_handshakes: [u64; 3],
    /// TLS handshakes that failed (the connection ended before it
    /// completed), by version as far as negotiated: TLS 1.2, TLS 1.3, unknown.
    pub tls_handshake_failures: [u64; 3],
    /// Times accepting paused: out of descriptors (EMFILE, ENFILE, ENOBUFS,
    /// ENOMEM), the application's accept channel full, a connection limit
    /// reached.
    pub accept_pauses: [u64; 3],
    /// Waits on the poller, by every holder of the poller role.
    pub polls: u64,
    /// Per worker, by index.
    pub workers: Vec<WorkerMetrics>,
}

/// One worker's share of a [`Metrics`] snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerMetrics {
    /// Connection turns run (readiness, mail, timers, fairness re-runs),
    /// counted as each round of them ends.
    pub turns: u64,
    /// Times this worker waited on the poller (held the poller role).
    pub polls: u64,
    /// Times it parked (nothing to do, the poller role taken).
    pub parks: u64,
    /// Parks that ended because work arrived rather than a timer.
    pub wakeups: u64,
    /// Tasks it found for other workers while polling and queued for them.
    pub handed_off: u64,
    /// Tasks it found for a parked worker and ran itself, in its place
    /// (only with [`ReactorBuilder::run_for_parked`](crate::ReactorBuilder::run_for_parked);
    /// otherwise 0).
    pub borrowed: u64,
    /// The longest round of turns among those timed (the first round of
    /// every 10 ms is timed, so the clock is not read after every round).
    pub longest_round: Duration,
    /// The most consecutive rounds it ran without polling or parking.
    pub max_rounds_unpolled: u64,
    /// Timers armed by its connections.
    pub timers_armed: u64,
    /// Connections open on it now.
    pub connections_open: u64,
    /// Connections that moved here from another worker. A connection
    /// starts on the worker that accepted it and moves, once it has proved
    /// long-lived, if its worker hosts more connections than another
    /// (ARCHITECTURE.md, "Placement").
    pub moved_in: u64,
}

impl Metrics {
    /// Sums the blocks (from any thread).
    pub(crate) fn collect<'a>(
        workers: impl Iterator<Item = &'a WorkerCounters>,
        poll: &PollCounters,
    ) -> Metrics {
        let mut m = Metrics {
            connections_accepted: poll.accepted.get(),
            polls: poll.polls.get(),
            ..Default::default()
        };
        for (dst, src) in m.accept_pauses.iter_mut().zip(&poll.accept_pauses) {
            *dst = src.get();
        }
        for w in workers {
            let c = &w.conn;
            // Closed before opened: a connection is counted opened before
            // it can close, so open never reads negative. Likewise moved
            // away before moved in (a connection is counted in before it
            // can leave again, or close). One on its way between two
            // workers may be in neither count, or in both, for that moment.
            let closed = c.closed.get();
            let moved_out = c.moved_out.get();
            let opened = c.opened.get();
            let moved_in = c.moved_in.get();
            m.connections_closed += closed;
            m.connections_opened += opened;
            m.connections_connected += c.connected.get();
            for (dst, src) in m.closes.iter_mut().zip(&c.closes) {
                *dst += src.get();
            }
            let direct = c.direct_frames.get();
            m.frames_decoded += c.frames.get() + direct;
            m.events_delivered += c.events.get() + direct;
            m.mailbox_messages += c.mail.get();
            for i in 0..3 {
                m.tls_handshakes[i] += c.tls_done[i].get();
                m.tls_handshake_failures[i] += c.tls_failed[i].get();
            }
            let s = &w.sched;
            let open = (opened + moved_in).saturating_sub(closed + moved_out);
            m.connections_open += open;
            m.polls += s.polls.get();
            m.workers.push(WorkerMetrics {
                turns: c.turns.get(),
                polls: s.polls.get(),
                parks: s.parks.get(),
                wakeups: s.wakeups.get(),
                handed_off: s.handed_off.get(),
                borrowed: s.borrowed.get(),
                longest_round: Duration::from_nanos(s.longest_round_ns.get()),
                max_rounds_unpolled: s.max_rounds_unpolled.get(),
                timers_armed: c.timers_armed.get(),
                connections_open: open,
                moved_in,
            });
        }
        m
    }

    /// Connections closed for `cause`.
    pub fn closed_by(&self, cause: CloseCause) -> u64 {
        self.closes[cause as usize]
    }

    /// The snapshot in the Prometheus text exposition format (version
    /// 0.0.4; serve it with `Content-Type: text/plain; version=0.0.4`).
    /// Metric names start with `netactor_`; counters end in `_total`; times
    /// are in seconds, sizes in bytes. `promtool check metrics` accepts it.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::with_capacity(8 << 10);
        self.write_prometheus(&mut out);
        out
    }

    /// [`to_prometheus`](Self::to_prometheus), appending to `out`.
    pub fn write_prometheus(&self, out: &mut String) {
        let mut p = Prom(out);
        p.one(
            "connections_open",
            "gauge",
            "Connections open now.",
            self.connections_open,
        );
        p.one(
            "connections_accepted_total",
            "counter",
            "Connections accepted by listeners.",
            self.connections_accepted,
        );
        p.one(
            "connections_connected_total",
            "counter",
            "Outgoing connections that completed their connect.",
            self.connections_connected,
        );
        p.one(
            "connections_opened_total",
            "counter",
            "Connections started (accepted, connected or adopted).",
            self.connections_opened,
        );
        p.head(
            "connections_closed_total",
            "counter",
            "Connections closed, by cause.",
        );
        for (c, v) in CloseCause::ALL.iter().zip(self.closes) {
            p.labeled("connections_closed_total", "cause", c.as_str(), v);
        }
        p.one(
            "read_bytes_total",
            "counter",
            "Bytes received from sockets (ciphertext under TLS).",
            self.bytes_read,
        );
        p.one(
            "written_bytes_total",
            "counter",
            "Bytes handed to the kernel (ciphertext under TLS).",
            self.bytes_written,
        );
        p.one(
            "read_syscalls_total",
            "counter",
            "Successful read system calls.",
            self.read_calls,
        );
        p.one(
            "write_syscalls_total",
            "counter",
            "Successful write system calls.",
            self.write_calls,
        );
        p.one(
            "frames_decoded_total",
            "counter",
            "Frames decoded (read requests answered and streaming frames).",
            self.frames_decoded,
        );
        p.one(
            "events_delivered_total",
            "counter",
            "Events delivered to handlers or event channels.",
            self.events_delivered,
        );
        p.one(
            "mailbox_messages_total",
            "counter",
            "Mailbox messages applied by connection actors.",
            self.mailbox_messages,
        );
        p.one(
            "write_queued_bytes",
            "gauge",
            "Bytes in write queues, not yet taken by the kernel.",
            self.write_queued_bytes,
        );
        p.one(
            "read_buffered_bytes",
            "gauge",
            "Bytes read and not yet consumed by a decoder.",
            self.read_buffered_bytes,
        );
        p.head(
            "tls_handshakes_total",
            "counter",
            "TLS handshakes completed, by protocol version.",
        );
        for (v, n) in TLS_VERSIONS.iter().zip(self.tls_handshakes) {
            p.labeled("tls_handshakes_total", "version", v, n);
        }
        p.head(
            "tls_handshake_failures_total",
            "counter",
            "TLS handshakes that ended before completing, by version as far as negotiated.",
        );
        for (v, n) in TLS_VERSIONS.iter().zip(self.tls_handshake_failures) {
            p.labeled("tls_handshake_failures_total", "version", v, n);
        }
        p.head(
            "accept_pauses_total",
            "counter",
            "Times accepting paused: out of descriptors, accept channel full, connection limit.",
        );
        for (r, n) in PAUSE_REASONS.iter().zip(self.accept_pauses) {
            p.labeled("accept_pauses_total", "reason", r, n);
        }
        p.one("polls_total", "counter", "Waits on the poller.", self.polls);
        type Field = fn(&WorkerMetrics) -> u64;
        let per_worker: [(&str, &str, &str, Field); 10] = [
            (
                "worker_turns_total",
                "counter",
                "Connection turns run by the worker.",
                |w| w.turns,
            ),
            (
                "worker_polls_total",
                "counter",
                "Times the worker waited on the poller.",
                |w| w.polls,
            ),
            (
                "worker_parks_total",
                "counter",
                "Times the worker parked.",
                |w| w.parks,
            ),
            (
                "worker_wakeups_total",
                "counter",
                "Parks that ended because work arrived.",
                |w| w.wakeups,
            ),
            (
                "worker_handed_off_total",
                "counter",
                "Tasks the worker found for other workers and queued for them.",
                |w| w.handed_off,
            ),
            (
                "worker_borrowed_total",
                "counter",
                "Tasks the worker ran for a parked worker in its place (run_for_parked only).",
                |w| w.borrowed,
            ),
            (
                "worker_max_rounds_unpolled",
                "gauge",
                "The most consecutive rounds the worker ran without polling or parking.",
                |w| w.max_rounds_unpolled,
            ),
            (
                "worker_timers_armed_total",
                "counter",
                "Timers armed by the worker's connections.",
                |w| w.timers_armed,
            ),
            (
                "worker_connections_open",
                "gauge",
                "Connections open on the worker.",
                |w| w.connections_open,
            ),
            (
                "worker_moved_in_total",
                "counter",
                "Connections that moved to the worker from another one.",
                |w| w.moved_in,
            ),
        ];
        for (name, kind, help, field) in per_worker {
            p.head(name, kind, help);
            for (i, w) in self.workers.iter().enumerate() {
                p.labeled_num(name, "worker", i, field(w));
            }
        }
        p.head(
            "worker_longest_round_seconds",
            "gauge",
            "The longest round of turns among those timed (the first of every 10 ms), in seconds.",
        );
        for (i, w) in self.workers.iter().enumerate() {
            let _ = writeln!(
                p.0,
                "netactor_worker_longest_round_seconds{{worker=\"{i}\"}} {}",
                w.longest_round.as_secs_f64()
            );
        }
    }
}

/// Writes exposition lines.
struct Prom<'a>(&'a mut String);

impl Prom<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP netactor_{name} {help}");
        let _ = writeln!(self.0, "# TYPE netactor_{name} {kind}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, v: u64) {
        self.head(name, kind, help);
        let _ = writeln!(self.0, "netactor_{name} {v}");
    }

    fn labeled(&mut self, name: &str, label: &str, value: &str, v: u64) {
        let _ = writeln!(self.0, "netactor_{name}{{{label}=\"{value}\"}} {v}");
    }

    fn labeled_num(&mut self, name: &str, label: &str, value: usize, v: u64) {
        let _ = writeln!(self.0, "netactor_{name}{{{label}=\"{value}\"}} {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_sum_and_render() {
        let (a, b) = (WorkerCounters::default(), WorkerCounters::default());
        let poll = PollCounters::default();
        a.conn.opened.add(3);
        a.conn.closed_by(CloseCause::Eof);
        b.conn.opened.add(2);
        b.conn.closed_by(CloseCause::Reset);
        b.conn.closed_by(CloseCause::Reset);
        poll.accepted.add(5);
        let mut m = Metrics::collect([&a, &b].into_iter(), &poll);
        m.bytes_read = 123; // summed from the connections' own counters
        assert_eq!(m.connections_open, 2);
        assert_eq!(m.connections_closed, 3);
        assert_eq!(m.closed_by(CloseCause::Reset), 2);
        assert_eq!(m.bytes_read, 123);
        assert_eq!(m.workers.len(), 2);
        let text = m.to_prometheus();
        assert!(text.contains("netactor_connections_closed_total{cause=\"reset\"} 2\n"));
        assert!(text.contains("netactor_read_bytes_total 123\n"));
        assert!(text.contains("# TYPE netactor_connections_open gauge\n"));
        assert!(text.contains("netactor_worker_connections_open{worker=\"1\"} 0\n"));
    }

    #[test]
    fn blocks_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<ConnCounters>(), 128);
        assert_eq!(std::mem::align_of::<LoopCounters>(), 128);
    }
}
