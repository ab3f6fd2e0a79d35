//! The reactor driven by a toy [`Source`] — no connection, no socket: the
//! worker loop, mail by token, opaque timer tags, the per-worker local and
//! shutdown, checked on their own.

use super::*;
use crossbeam_channel::{Receiver, Sender};

#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Started(Token),
    Mail {
        turns: usize,
    },
    Timer(u8),
    Shutdown,
    /// Timer entries in the worker's heap when a source started.
    Pending(usize),
    /// It left for worker `to` (`Source::depart`).
    Departed(usize),
    /// It arrived under this token (`Source::arrive`).
    Arrived(Token),
}

struct Toy {
    token: Token,
    log: Sender<Seen>,
    closed: bool,
}

struct ToyNew(Sender<Seen>);

#[derive(Default)]
struct ToyLocal {
    mail_turns: usize,
}

impl Source for Toy {
    type Local = ToyLocal;
    /// Takes room like a real registry (a lock and a few words), so the
    /// layout test sees where a sized one goes.
    type Shared = Mutex<[u64; 8]>;
    type New = ToyNew;

    fn start(new: ToyNew, token: Token, w: &mut WorkerCtx<Self>, into: &mut Option<Self>) {
        // Due at once: fires right after this batch.
        w.arm(w.now, token, 7);
        let _ = new.0.send(Seen::Started(token));
        *into = Some(Toy {
            token,
            log: new.0,
            closed: false,
        });
    }
    fn abandon(_: ToyNew) {}
    fn on_io(&mut self, _: Readiness, _: &mut WorkerCtx<Self>) {}
    fn on_mail(&mut self, w: &mut WorkerCtx<Self>) {
        w.local.mail_turns += 1;
        let turns = w.local.mail_turns;
        let _ = self.log.send(Seen::Mail { turns });
        // Every toy offers to move after each mail turn.
        w.offer_move(self.token);
    }
    fn depart(&mut self, to: usize, _: &mut WorkerCtx<Self>) {
        let _ = self.log.send(Seen::Departed(to));
    }
    fn arrive(&mut self, token: Token, _: &mut WorkerCtx<Self>) {
        self.token = token;
        let _ = self.log.send(Seen::Arrived(token));
    }
    fn on_timer(&mut self, tag: u8, _: Instant, _: &mut WorkerCtx<Self>) {
        let _ = self.log.send(Seen::Timer(tag));
    }
    fn on_shutdown(&mut self, _: Instant, _: &mut WorkerCtx<Self>) {
        self.closed = true;
        let _ = self.log.send(Seen::Shutdown);
    }
    fn abort(&mut self, _: &mut WorkerCtx<Self>) {
        self.closed = true;
    }
    fn abort_panicked(&mut self, _: String, _: &mut WorkerCtx<Self>) {
        self.closed = true;
    }
    fn is_closed(&self) -> bool {
        self.closed
    }
    fn token(&self) -> Token {
        self.token
    }
    fn label(&self) -> String {
        "toy".into()
    }
}

fn next(rx: &Receiver<Seen>) -> Seen {
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the toy source reports within 20 s")
}

#[test]
fn a_toy_source_gets_its_timer_tag_its_mail_by_token_and_shutdown() {
    let engine = ReactorBuilder::default().workers(2).start::<Toy>().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let worker = engine.shared.pick_worker().clone();
    worker.push(Task::Spawn(ToyNew(tx)));
    let Seen::Started(token) = next(&rx) else {
        panic!("not started first");
    };
    assert_eq!(token.worker(), worker.idx);
    assert_eq!(next(&rx), Seen::Timer(7));
    // Mail for a stale token (the slot's next generation) is dropped; mail
    // for the live one runs, with the worker's local state.
    let stale = Token::conn(token.worker(), token.gen() + 1, token.slot() as u32);
    worker.push(Task::Mail(stale));
    worker.push(Task::Mail(token));
    worker.push(Task::Mail(token));
    assert_eq!(next(&rx), Seen::Mail { turns: 1 });
    assert_eq!(next(&rx), Seen::Mail { turns: 2 });
    engine.shutdown();
    assert_eq!(next(&rx), Seen::Shutdown);
    // The source closed and the worker dropped it: nothing else came.
    assert!(rx.try_recv().is_err());
}

/// A source that offers to move goes to the least-loaded worker only if
/// its own hosts more than one source more: it leaves its slot (mail for
/// the old token is stale from then on), arrives under a token of the
/// other worker, and its mail follows it there; its load counts move too.
#[test]
fn a_source_that_offers_to_move_goes_where_the_load_is_lower() {
    let engine = ReactorBuilder::default().workers(2).start::<Toy>().unwrap();
    let w0 = engine.shared.workers[0].clone();
    let mut toys = Vec::new();
    for _ in 0..3 {
        let (tx, rx) = crossbeam_channel::unbounded();
        w0.load.add();
        w0.push(Task::Spawn(ToyNew(tx)));
        let Seen::Started(token) = next(&rx) else {
            panic!("not started first");
        };
        assert_eq!(next(&rx), Seen::Timer(7));
        toys.push((token, rx));
    }
    // 3 against 0: the first toy that offers moves.
    let (old, rx) = &toys[0];
    w0.push(Task::Mail(*old));
    assert_eq!(next(rx), Seen::Mail { turns: 1 });
    assert_eq!(next(rx), Seen::Departed(1));
    let Seen::Arrived(new) = next(rx) else {
        panic!("moved, and did not arrive");
    };
    assert_eq!(new.worker(), 1);
    assert_eq!(engine.shared.workers[0].load.get(), 2);
    assert_eq!(engine.shared.workers[1].load.get(), 1);
    // Its old token is stale; mail under the new one reaches it on worker 1
    // (whose local state counts its first mail turn). It offers again, and
    // stays: 1 against 2.
    w0.push(Task::Mail(*old));
    engine.shared.workers[1].push(Task::Mail(new));
    assert_eq!(next(rx), Seen::Mail { turns: 1 });
    // 2 against 1: the second toy offers and stays too.
    let (second, rx2) = &toys[1];
    w0.push(Task::Mail(*second));
    assert_eq!(next(rx2), Seen::Mail { turns: 2 });
    engine.shutdown();
    for (_, rx) in &toys {
        let rest: Vec<Seen> = rx.try_iter().collect();
        assert_eq!(rest, vec![Seen::Shutdown], "only the shutdown came after");
    }
    let m = engine.shared.metrics();
    assert_eq!(m.workers[1].moved_in, 1);
    assert_eq!(m.workers[0].moved_in, 0);
}

/// A source that arms a timer an hour ahead and reports the worker's timer
/// heap; `stay`: it stays open (else it closes at once).
struct Brief {
    token: Token,
    log: Sender<Seen>,
    stay: bool,
}

struct BriefNew {
    log: Sender<Seen>,
    stay: bool,
    due: Duration,
}

#[derive(Default)]
struct NoLocal;

impl Source for Brief {
    type Local = NoLocal;
    type Shared = ();
    type New = BriefNew;

    fn start(new: BriefNew, token: Token, w: &mut WorkerCtx<Self>, into: &mut Option<Self>) {
        w.arm(w.now + new.due, token, 1);
        let _ = new.log.send(Seen::Pending(w.timers_pending()));
        *into = Some(Brief {
            token,
            log: new.log,
            stay: new.stay,
        });
    }
    fn abandon(_: BriefNew) {}
    fn on_io(&mut self, _: Readiness, _: &mut WorkerCtx<Self>) {}
    fn on_mail(&mut self, _: &mut WorkerCtx<Self>) {}
    fn arrive(&mut self, _: Token, _: &mut WorkerCtx<Self>) {
        unreachable!("a brief source never offers to move")
    }
    fn on_timer(&mut self, tag: u8, _: Instant, _: &mut WorkerCtx<Self>) {
        let _ = self.log.send(Seen::Timer(tag));
    }
    fn on_shutdown(&mut self, _: Instant, _: &mut WorkerCtx<Self>) {
        self.stay = false;
    }
    fn abort(&mut self, _: &mut WorkerCtx<Self>) {
        self.stay = false;
    }
    fn abort_panicked(&mut self, _: String, _: &mut WorkerCtx<Self>) {
        self.stay = false;
    }
    fn is_closed(&self) -> bool {
        !self.stay
    }
    fn token(&self) -> Token {
        self.token
    }
    fn label(&self) -> String {
        "brief".into()
    }
}

/// Sources that close with a timer still armed (a connection's idle
/// timeout of an hour) leave stale entries: the heap is compacted once it
/// doubles, so it stays within about `COMPACT_MIN` however many come and
/// go — and a live source's entry survives every compaction and fires.
#[test]
fn timers_of_sources_that_are_gone_do_not_pile_up() {
    let engine = ReactorBuilder::default()
        .workers(1)
        .start::<Brief>()
        .unwrap();
    let worker = engine.shared.pick_worker().clone();
    let (keep_tx, keep_rx) = crossbeam_channel::unbounded();
    // Due after a few compactions (or during them, on a slow machine).
    worker.push(Task::Spawn(BriefNew {
        log: keep_tx,
        stay: true,
        due: Duration::from_secs(2),
    }));
    assert!(matches!(next(&keep_rx), Seen::Pending(_)));
    let (tx, rx) = crossbeam_channel::unbounded();
    const CHUNK: usize = 100;
    let mut most = 0;
    for _ in 0..50 {
        let mut batch: Vec<Task<Brief>> = (0..CHUNK)
            .map(|_| {
                Task::Spawn(BriefNew {
                    log: tx.clone(),
                    stay: false,
                    due: Duration::from_secs(3600),
                })
            })
            .collect();
        worker.push_batch(&mut batch);
        for _ in 0..CHUNK {
            let Seen::Pending(pending) = next(&rx) else {
                panic!("a brief source reports its start");
            };
            most = most.max(pending);
        }
    }
    // 5 000 entries armed, one live: never more than the threshold plus
    // what one batch of tasks arms before the worker compacts after it.
    assert!(
        most <= timers::COMPACT_MIN + CHUNK + 1,
        "{most} timer entries pending at once"
    );
    assert_eq!(next(&keep_rx), Seen::Timer(1));
    engine.shutdown();
}

/// What other threads write into a worker (its inbox), what the worker
/// writes at every round of its loop (its state lock) and at every
/// connection's start and finish (the layer above's registry) sit on cache
/// lines of their own, apart from the fields every thread only reads:
/// sharing a line, each side's write made the other's next access a miss.
/// `CachePadded` guarantees this while the wrappers are there; the test
/// guards against a field losing its wrapper or a hot field joining a
/// read-mostly line.
#[test]
fn a_workers_inbox_state_and_registry_share_no_cache_line() {
    type W = WorkerShared<Toy>;
    fn size<F>(_: fn(&W) -> &F) -> usize {
        std::mem::size_of::<F>()
    }
    // What `CachePadded` pads to on this target (128 on x86_64: two lines,
    // for the adjacent-line prefetcher).
    const LINE: usize = std::mem::align_of::<CachePadded<()>>();
    assert!(std::mem::align_of::<W>() >= LINE);
    let lines = |at: usize, len: usize| (at / LINE)..=((at + len.max(1) - 1) / LINE);
    // (field, its lines, written by more than its owner or at every round)
    macro_rules! field {
        ($f:ident, $hot:expr) => {
            (
                stringify!($f),
                lines(std::mem::offset_of!(W, $f), size(|w| &w.$f)),
                $hot,
            )
        };
    }
    let fields = [
        field!(inbox, true),
        field!(state, true),
        field!(source_shared, true),
        field!(idx, false),
        field!(load, false),
        field!(thread, false),
        field!(poller, false),
        field!(stopped, false),
        field!(metrics, false),
    ];
    for (i, (a, la, a_hot)) in fields.iter().enumerate() {
        for (b, lb, b_hot) in &fields[i + 1..] {
            let apart = la.end() < lb.start() || lb.end() < la.start();
            assert!(
                apart || !(a_hot | b_hot),
                "{a} (lines {la:?}) and {b} (lines {lb:?}) share a cache line"
            );
        }
    }
}
