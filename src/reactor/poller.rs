//! The poller thread: waits on the one `polling::Poller`, accepts on
//! listeners, and routes readiness to workers — one batch per worker per
//! wake-up, so a burst of events costs each worker at most one wake-up.

use super::{PollerCmd, ReactorShared, Task, Token};
use crate::net::listen::{AcceptOutcome, ListenerShared};
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections accepted from one listener per wake-up before others get a turn.
const ACCEPT_BUDGET: usize = 128;
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

struct ListenerState {
    shared: Arc<ListenerShared>,
    paused_until: Option<Instant>,
    backoff: Duration,
}

pub(crate) fn run(shared: Arc<ReactorShared>) {
    let poller = shared.poller.clone();
    let mut events = polling::Events::with_capacity(std::num::NonZeroUsize::new(1024).unwrap());
    let mut batches: Vec<Vec<Task>> = shared.workers.iter().map(|_| Vec::new()).collect();
    let mut listeners: HashMap<usize, ListenerState> = HashMap::new();
    loop {
        let now = Instant::now();
        let timeout = listeners
            .values()
            .filter_map(|l| l.paused_until)
            .min()
            .map(|t| t.saturating_duration_since(now));
        events.clear();
        if let Err(e) = poller.wait(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                log::error!("poller wait failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let cmds = std::mem::take(&mut *shared.cmds.lock());
        for cmd in cmds {
            match cmd {
                PollerCmd::AddListener(l) => {
                    let token = Token::listener(l.idx);
                    // SAFETY: the listener socket stays alive inside `l` until
                    // it is deleted from the poller (RemoveListener / Shutdown).
                    let r = unsafe { poller.add(&l.sock, polling::Event::readable(token.0)) };
                    if let Err(e) = r {
                        log::error!("cannot register listener {}: {e}", l.local);
                        continue;
                    }
                    listeners.insert(
                        l.idx,
                        ListenerState {
                            shared: l,
                            paused_until: None,
                            backoff: BACKOFF_MIN,
                        },
                    );
                }
                PollerCmd::RemoveListener(idx) => {
                    if let Some(l) = listeners.remove(&idx) {
                        let _ = poller.delete(&l.shared.sock);
                    }
                }
                PollerCmd::Shutdown => {
                    for (_, l) in listeners.drain() {
                        let _ = poller.delete(&l.shared.sock);
                    }
                    return;
                }
            }
        }
        for ev in events.iter() {
            let token = Token(ev.key);
            if token.is_listener() {
                if let Some(l) = listeners.get_mut(&token.listener_idx()) {
                    accept_some(&shared, l, &mut batches);
                }
                continue;
            }
            let w = token.worker();
            if let Some(batch) = batches.get_mut(w) {
                batch.push(Task::Io {
                    token,
                    readable: ev.readable,
                    writable: ev.writable,
                });
            }
        }
        let now = Instant::now();
        for l in listeners.values_mut() {
            if l.paused_until.is_some_and(|t| t <= now) {
                l.paused_until = None;
                accept_some(&shared, l, &mut batches);
            }
        }
        for (w, batch) in shared.workers.iter().zip(batches.iter_mut()) {
            w.push_batch(batch);
        }
    }
}

fn accept_some(shared: &ReactorShared, l: &mut ListenerState, batches: &mut [Vec<Task>]) {
    let token = Token::listener(l.shared.idx);
    for _ in 0..ACCEPT_BUDGET {
        match l.shared.accept_one(shared, batches) {
            AcceptOutcome::Accepted => {
                l.backoff = BACKOFF_MIN;
            }
            AcceptOutcome::WouldBlock => {
                let _ = shared
                    .poller
                    .modify(&l.shared.sock, polling::Event::readable(token.0));
                return;
            }
            AcceptOutcome::Pause(why) => {
                log::warn!(
                    "listener {}: {why}; pausing accept for {:?}",
                    l.shared.local,
                    l.backoff
                );
                l.paused_until = Some(Instant::now() + l.backoff);
                l.backoff = (l.backoff * 2).min(BACKOFF_MAX);
                return;
            }
            AcceptOutcome::Skip => {}
        }
    }
    // Budget used up: re-arm; a still-pending backlog fires again at once.
    let _ = shared
        .poller
        .modify(&l.shared.sock, polling::Event::readable(token.0));
}
