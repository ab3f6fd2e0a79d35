//! Decode dispatch: buffered bytes go to the queued read requests first,
//! then to the streaming decoder (the reference's §3.4 order); EOF and the
//! read-buffer limit are noticed here.

use super::ctx::Ctx;
use super::handler::ActorSink;
use super::requests::ReadPoll;
use super::requests::StreamDecode;
use super::Actor;
use super::Core;
use super::Phase;
use super::WorkerCtx;
use crate::conn::Event;
use crate::error::Error;
use crate::error::Limit;
use crate::framing::DecodeError;
use crate::framing::FrameAction;
use crate::reactor::worker::panic_message;
use crate::tls::TlsSetup;
use std::panic::catch_unwind;
use std::panic::AssertUnwindSafe;

impl Actor {
    /// Feeds buffered bytes to the read queue, then to the streaming decoder.
    pub(super) fn dispatch(&mut self, w: &mut WorkerCtx) {
        loop {
            let core = &mut self.core;
            if core.phase != Phase::Open {
                return;
            }
            if let Some(req) = core.rd.reads.front_mut() {
                // A custom decoder is application code: a panic in it fails
                // this connection (and every queued read) with `Panicked`.
                let polled =
                    catch_unwind(AssertUnwindSafe(|| req.poll(&mut core.rd.buf, core.rd.eof)));
                let polled = match polled {
                    Ok(polled) => polled,
                    Err(p) => {
                        core.fail(Error::Panicked(panic_message(&p)), w);
                        return;
                    }
                };
                match polled {
                    ReadPoll::Pending if core.rd.eof => {
                        let e = core.eof_error();
                        if let Some(mut r) = core.rd.reads.pop_front() {
                            r.fail(e);
                            if r.has_completion() {
                                self.complete_read(r, w);
                            }
                        }
                    }
                    ReadPoll::Pending => break,
                    ReadPoll::Done(action) => {
                        w.metrics.conn.frames.inc();
                        let r = core.rd.reads.pop_front();
                        core.rbuf_front_changed();
                        if let Some(a) = action {
                            core.frame_action(a, w);
                        }
                        if let Some(r) = r.filter(|r| r.has_completion()) {
                            self.complete_read(r, w);
                        }
                    }
                    ReadPoll::Failed => {
                        let r = core.rd.reads.pop_front();
                        core.rbuf_front_changed();
                        if let Some(r) = r.filter(|r| r.has_completion()) {
                            self.complete_read(r, w);
                        }
                    }
                    ReadPoll::Fatal(e) => {
                        if let Some(r) = core.rd.reads.pop_front() {
                            if r.has_completion() {
                                // Answered (with `e`) ahead of the error event.
                                core.outbox.push_completion(r);
                            }
                        }
                        core.fail(e, w);
                        return;
                    }
                }
            } else if let Some(dec) = core.rd.stream.as_mut() {
                // A streaming decoder runs when there are bytes (or at EOF):
                // not on every turn with an empty buffer — which each echo
                // turn has twice, before the read and after the frame.
                if core.rd.buf.is_empty() && !core.rd.eof {
                    break;
                }
                let before = core.rd.buf.len();
                let decoded = catch_unwind(AssertUnwindSafe(|| {
                    dec.decode(&mut core.rd.buf, core.rd.eof)
                }));
                let decoded = match decoded {
                    Ok(decoded) => decoded,
                    Err(p) => {
                        core.fail(Error::Panicked(panic_message(&p)), w);
                        return;
                    }
                };
                match decoded {
                    Ok(Some(frame)) => {
                        let action = dec.after_frame();
                        // A frame that took no bytes (Chunk(0), an empty
                        // regex match, a detection) would repeat forever:
                        // one per arrival — unless its handler changed what
                        // reads next (a new decoder, a queued read), which
                        // must then see the bytes already buffered: no new
                        // arrival may ever come for them.
                        let stuck = core.rd.buf.len() == before && action.is_none();
                        let decoder = if stuck {
                            stream_id(&core.rd.stream)
                        } else {
                            None
                        };
                        self.deliver_frame(frame, w);
                        if let Some(a) = action {
                            self.core.frame_action(a, w);
                        }
                        if stuck
                            && self.core.rd.reads.is_empty()
                            && same_stream(stream_id(&self.core.rd.stream), decoder)
                        {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(DecodeError {
                        error,
                        fatal: false,
                    }) => {
                        core.outbox.push(
                            &mut w.local,
                            Event::Error {
                                error,
                                fatal: false,
                            },
                        );
                        let stuck = core.rd.buf.len() == before;
                        self.deliver(w);
                        if stuck {
                            break;
                        }
                    }
                    Err(DecodeError { error, fatal: true }) => {
                        core.fail(error, w);
                        return;
                    }
                }
            } else if core.rd.in_place {
                // Only for bytes the handler has not seen: not on every
                // dispatch of a turn while an incomplete tail waits.
                if core.rd.buf.is_empty() || core.rd.in_place_seen {
                    break;
                }
                match self.read_in_place(w) {
                    InPlace::Again => {}
                    InPlace::Wait => break,
                    InPlace::Failed => return,
                }
            } else {
                break;
            }
        }
        let core = &mut self.core;
        if core.rd.eof && !core.rd.eof_reported && core.phase == Phase::Open {
            core.rd.eof_reported = true;
            if core.tls_truncated {
                // Distinct from a clean close_notify, for protocols that care.
                core.outbox.push(
                    &mut w.local,
                    Event::Error {
                        error: Error::TlsTruncated,
                        fatal: false,
                    },
                );
            }
            if (core.rd.stream.is_some() || core.rd.in_place) && !core.rd.buf.is_empty() {
                core.outbox.push(
                    &mut w.local,
                    Event::Error {
                        error: Error::UnexpectedEof,
                        fatal: false,
                    },
                );
            }
            self.emit(Event::Eof, w);
        }
        let core = &mut self.core;
        if core.phase == Phase::Open && core.rd.buf.len() > core.opts.rbuf_max {
            let max = core.opts.rbuf_max;
            core.fail(Error::no_space(Limit::ReadBuffer, max), w);
        }
    }
}

/// What one [`Actor::read_in_place`] call leaves to do.
enum InPlace {
    /// The handler changed what reads next: dispatch again.
    Again,
    /// What is left is an incomplete tail: wait for more bytes.
    Wait,
    /// The connection failed.
    Failed,
}

impl Actor {
    /// Hands the read buffer to `Handler::on_read`.
    fn read_in_place(&mut self, w: &mut WorkerCtx) -> InPlace {
        // Whatever was queued before these bytes arrived goes first.
        self.deliver(w);
        let Some(ActorSink::Handler(h)) = self.sink.as_mut() else {
            self.core.fail(
                Error::InvalidInput(
                    "reading in place needs a handler; this connection delivers to a channel"
                        .into(),
                ),
                w,
            );
            return InPlace::Failed;
        };
        let core = &mut self.core;
        // Out of the actor for the call, so the handler can hold both the
        // buffer and `Ctx` (which borrows the actor); `BytesMut` moves
        // without copying its bytes.
        let mut buf = std::mem::take(&mut core.rd.buf);
        let before = buf.len();
        core.rd.in_place_call = true;
        let called = {
            let mut ctx = Ctx {
                core: &mut *core,
                w,
            };
            catch_unwind(AssertUnwindSafe(|| h.on_read(&mut ctx, &mut buf)))
        };
        core.rd.in_place_call = false;
        // `ctx.read_buffer()` may have been written to meanwhile: keep its
        // bytes after the ones already buffered, in order.
        if !core.rd.buf.is_empty() {
            buf.extend_from_slice(&core.rd.buf);
        }
        core.rd.buf = buf;
        if let Err(p) = called {
            core.fail(Error::Panicked(panic_message(&p)), w);
            return InPlace::Failed;
        }
        let consumed = core.rd.buf.len() < before;
        if consumed {
            core.rbuf_front_changed();
        }
        self.deliver(w);
        let core = &self.core;
        if core.phase != Phase::Open {
            return InPlace::Failed;
        }

        // What the handler left is a tail it cannot use yet — unless it
        // made someone else the consumer (a queued read, a decoder): they
        // must see the bytes already buffered, as no new arrival may come
        // for them.
        if !core.rd.reads.is_empty() || !core.rd.in_place {
            InPlace::Again
        } else {
            self.core.rd.in_place_seen = true;
            InPlace::Wait
        }
    }
}

impl Core {
    /// Bytes left the front of `rbuf` other than through the decoder that
    /// will run next: decoders that remember scan offsets must forget them.
    pub(super) fn rbuf_front_changed(&mut self) {
        self.rd.in_place_seen = false;
        if let Some(r) = self.rd.reads.front_mut() {
            r.reset();
        }
        if let Some(s) = self.rd.stream.as_mut() {
            s.reset();
        }
    }

    pub(super) fn frame_action(&mut self, action: FrameAction, w: &mut WorkerCtx) {
        match action {
            FrameAction::StartTlsServer(config) => self.starttls(TlsSetup::Server(config), w),
        }
    }
}

/// Identifies the streaming decoder in place (its allocation), to tell
/// whether a handler replaced it.
/// (Wide pointers: a stateless decoder is zero-sized and allocates nothing,
/// so its type — the vtable — tells it apart from another.)
pub(super) fn stream_id(s: &Option<Box<dyn StreamDecode>>) -> Option<*const dyn StreamDecode> {
    s.as_deref().map(|d| d as *const dyn StreamDecode)
}

pub(super) fn same_stream(
    a: Option<*const dyn StreamDecode>,
    b: Option<*const dyn StreamDecode>,
) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => std::ptr::eq(a, b),
        (None, None) => true,
        _ => false,
    }
}
