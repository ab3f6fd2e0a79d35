//! What the allocation-count tests share (`churn_allocs`,
//! `tls_churn_allocs`): a counting `#[global_allocator]` that skips the
//! threads marked [`UNCOUNTED`] (the clients), and the echo example's
//! handler shape.

use netactor::framing::Raw;
use netactor::tls::rustls;
use netactor::{Ctx, Event, Handler, ListenOptions, Listener, Options, Reactor};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Allocations made by the counted threads.
pub static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on the client's thread: its allocations are not the server's.
    pub static UNCOUNTED: Cell<bool> = const { Cell::new(false) };
}

struct Counting;

fn count() {
    // `try_with`: a thread being torn down has no thread-locals left.
    if !UNCOUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed on unchanged to the system allocator, which
// upholds `GlobalAlloc`'s contract; counting touches no allocated memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's layout contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` came from this allocator (that is, `System`) with
        // `layout`, as the caller guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The echo example's handler: echo each frame, half-close after the
/// client's EOF (under TLS, its close_notify), count the close.
pub struct Echo(pub Arc<AtomicUsize>);

impl Handler for Echo {
    fn on_event(&mut self, ctx: &mut Ctx<'_>, ev: Event) {
        match ev {
            Event::Read(f) => {
                if let Some(b) = f.into_bytes() {
                    let _ = ctx.write(b);
                }
            }
            Event::Eof => {
                let _ = ctx.shutdown();
            }
            Event::Closed => {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}

/// A listener on `reactor` configured as the echo example's (its options,
/// its handler), serving TLS with `tls` if given; the counter counts the
/// connections closed.
pub fn echo_listener(
    reactor: &Reactor,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> (Listener, Arc<AtomicUsize>) {
    let closed = Arc::new(AtomicUsize::new(0));
    let c2 = closed.clone();
    let opts = Options::new()
        .no_delay(true)
        .low_water_mark(Some(256 << 10))
        .linger(std::time::Duration::from_secs(5));
    let mut lo = ListenOptions::new().options(opts);
    if let Some(cfg) = tls {
        lo = lo.tls(cfg);
    }
    let listener = reactor
        .listen_with("127.0.0.1:0".parse().unwrap(), lo, move |ctx| {
            ctx.set_streaming(Some(Raw));
            Echo(c2.clone())
        })
        .expect("listen");
    (listener, closed)
}
