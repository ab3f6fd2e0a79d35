//! The handler API: the [`Handler`] trait application code implements,
//! and the hooks a connection can be given (handler factory, prepare hook,
//! resolver).

use super::Ctx;
use crate::conn::Event;
use bytes::BytesMut;
use std::io;
use std::net::SocketAddr;

/// Code that handles a connection's events on the reactor's worker threads.
///
/// A handler runs on a worker, so it must not block: it reacts to the event
/// through [`Ctx`] (write, read requests, close, …) and returns. Calls for
/// one connection never overlap and come in order, on the connection's
/// worker thread — or, with
/// [`ReactorBuilder::run_for_parked`](crate::ReactorBuilder::run_for_parked),
/// not necessarily on the same thread (hence `Send`; keep per-connection
/// state in the handler, not in thread-locals). A panic in a handler is caught; only its
/// connection fails, with [`Error::Panicked`](crate::Error::Panicked).
///
/// ```
/// use netactor::{Ctx, Event, Handler};
/// struct Echo;
/// impl Handler for Echo {
///     fn on_event(&mut self, ctx: &mut Ctx<'_>, event: Event) {
///         match event {
///             Event::Read(frame) => { let _ = ctx.write(frame.into_bytes().unwrap_or_default()); }
///             Event::Eof => { let _ = ctx.shutdown(); }
///             _ => {}
///         }
///     }
/// }
/// ```
pub trait Handler: Send + 'static {
    /// Called for each event of the connection, in order.
    fn on_event(&mut self, ctx: &mut Ctx<'_>, event: Event);

    /// Called with the read buffer when bytes arrive while the connection
    /// [reads in place](Ctx::set_read_in_place) and no read request is
    /// queued (and again after a queued read completes, if bytes are left).
    /// Consume a prefix of `rbuf`; what is left stays for the next call,
    /// which comes when more bytes arrive. Events queued before the arrival
    /// are delivered first. When the peer's EOF came with these bytes,
    /// [`Ctx::read_eof`] is true; `Event::Eof` follows the call (with a
    /// non-fatal `UnexpectedEof` error first if bytes were left).
    ///
    /// The default consumes nothing: a handler that reads in place
    /// implements it.
    fn on_read(&mut self, ctx: &mut Ctx<'_>, rbuf: &mut BytesMut) {
        let _ = (ctx, rbuf);
    }
}

impl<F> Handler for F
where
    F: FnMut(&mut Ctx<'_>, Event) + Send + 'static,
{
    fn on_event(&mut self, ctx: &mut Ctx<'_>, event: Event) {
        self(ctx, event)
    }
}

/// Hook run on each new socket before `connect()`: bind, set options, …
pub type PrepareFn = dyn Fn(&socket2::Socket, SocketAddr) -> io::Result<()> + Send + Sync;

/// Custom name resolution for connects (see
/// [`ConnectOptions::resolver`](crate::ConnectOptions::resolver)): host and
/// port in, addresses to try out. Runs on a short-lived thread of its own.
pub type ResolveFn = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// A factory of boxed handlers, one per accepted connection. Kept for
/// compatibility: [`Reactor::listen_with`](crate::Reactor::listen_with)
/// takes the closure itself (and stores a small handler in the
/// connection's actor rather than in a box).
pub type HandlerFactory = dyn Fn(&mut Ctx<'_>) -> Box<dyn Handler> + Send + Sync;

/// How an actor holds its handler: in the actor itself when the handler
/// fits in four words (most do: a little state and a buffer handle), so
/// that an accepted connection's handler costs no `malloc` and `free` —
/// the one allocation a short connection still made, 4 % of its
/// user-space instructions with the `free` (benches/RESULTS.md, session
/// 11). A larger handler, or one given as a `Box` (`Sink::Handler`), is on
/// the heap as before.
pub(crate) type HandlerBox = smallbox::SmallBox<dyn Handler, smallbox::space::S4>;

/// The factory a listener in handler mode runs for each accepted
/// connection (`Reactor::listen_with` makes it from the application's
/// closure, whose handler type it knows).
pub(crate) type InlineFactory = dyn Fn(&mut Ctx<'_>) -> HandlerBox + Send + Sync;

/// Where an actor's events go: [`Sink`](crate::Sink) as the actor keeps it.
pub(crate) enum ActorSink {
    Channel(crate::conn::EventSender),
    Handler(HandlerBox),
}

impl From<crate::conn::Sink> for ActorSink {
    fn from(s: crate::conn::Sink) -> Self {
        match s {
            crate::conn::Sink::Channel(tx) => ActorSink::Channel(tx),
            crate::conn::Sink::Handler(h) => ActorSink::Handler(HandlerBox::from_box(h)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Words<const N: usize>([u64; N]);
    impl<const N: usize> Handler for Words<N> {
        fn on_event(&mut self, _: &mut Ctx<'_>, _: Event) {}
    }
    #[repr(align(16))]
    struct Aligned16(#[allow(dead_code)] u64);
    impl Handler for Aligned16 {
        fn on_event(&mut self, _: &mut Ctx<'_>, _: Event) {}
    }

    /// Where `HandlerBox` keeps which handler: in the actor up to four
    /// words at word alignment, on the heap beyond, and a handler the
    /// application boxed stays in its box.
    #[test]
    fn small_handlers_are_stored_inline() {
        let zero_sized: HandlerBox = smallbox::smallbox!(|_: &mut Ctx<'_>, _: Event| {});
        assert!(!zero_sized.is_heap());
        let four: HandlerBox = smallbox::smallbox!(Words::<4>([0; 4]));
        assert!(!four.is_heap());
        let five: HandlerBox = smallbox::smallbox!(Words::<5>([0; 5]));
        assert!(five.is_heap());
        let aligned: HandlerBox = smallbox::smallbox!(Aligned16(0));
        assert!(aligned.is_heap());
        let boxed: Box<dyn Handler> = Box::new(Words::<1>([0]));
        assert!(HandlerBox::from_box(boxed).is_heap());
    }
}
