//! Per-worker pools the actors of one worker share (the reactor keeps one
//! per worker as its `WorkerCtx::local` and knows nothing of what is in
//! it): read buffers, event vectors, write queues and the mail scratch
//! queue go back here at the end of a turn, so an idle connection holds
//! none of them and the hot path does not allocate.

use crate::conn::shared::Msg;
use crate::conn::Event;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// Read buffers an idle connection gave back, kept for the next reader.
const POOL_MAX: usize = 64;
/// Buffers larger than this are freed rather than pooled.
const POOL_BUF_MAX: usize = 256 << 10;

#[derive(Default)]
pub(crate) struct Pools {
    /// Empty read buffers.
    pub(crate) bufs: Vec<BytesMut>,
    /// The queue a turn swaps the mailbox into.
    pub(crate) mail: VecDeque<Msg>,
    /// Empty event vectors, reused by every actor's event delivery.
    pub(crate) event_vecs: Vec<Vec<Event>>,
    /// Empty write queues, likewise.
    pub(crate) write_queues: Vec<VecDeque<Bytes>>,
    /// Where many small queued buffers are copied to leave in one `send`
    /// (at most `COALESCE_MAX` bytes, so its capacity stays bounded).
    pub(crate) coalesce: Vec<u8>,
}

impl Pools {
    /// Gives an empty read buffer back for reuse.
    #[inline]
    pub(crate) fn recycle(&mut self, mut buf: BytesMut) {
        buf.clear();
        if self.bufs.len() < POOL_MAX && buf.try_reclaim(1024) && buf.capacity() <= POOL_BUF_MAX {
            self.bufs.push(buf);
        }
    }

    /// Keeps an emptied event vector for reuse (a few, of modest size).
    #[inline]
    pub(crate) fn recycle_events(&mut self, mut v: Vec<Event>) {
        v.clear();
        if self.event_vecs.len() < 8 && v.capacity() > 0 && v.capacity() <= 64 {
            self.event_vecs.push(v);
        }
    }

    /// Keeps an emptied write queue for reuse.
    #[inline]
    pub(crate) fn recycle_write_queue(&mut self, q: VecDeque<Bytes>) {
        if self.write_queues.len() < 8 && q.is_empty() && q.capacity() <= 256 {
            self.write_queues.push(q);
        }
    }
}
