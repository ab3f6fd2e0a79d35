//! Read requests and streaming decoders, type-erased: a queued read is
//! answered over its own channel or by a completion run on the worker; a
//! streaming decoder produces [`Frame`]s.

use super::Ctx;
use crate::conn::Reply;
use crate::error::{Error, Result};
use crate::framing::{DecodeError, Decoder, Frame, FrameAction};
use bytes::BytesMut;
use crossbeam_channel::Sender;

/// Outcome of polling one queued read request.
pub(crate) enum ReadPoll {
    Pending,
    Done(Option<FrameAction>),
    /// Answered with a non-fatal error; the request is finished.
    Failed,
    Fatal(Error),
}

/// A queued read request, type-erased: answered over its own channel
/// ([`QueuedRead`]) or by a completion run on the worker ([`CallbackRead`]).
pub(crate) trait ReadRequest: Send {
    fn poll(&mut self, buf: &mut BytesMut, eof: bool) -> ReadPoll;
    fn fail(&mut self, e: Error);
    /// The buffer changed at the front behind the decoder's back.
    fn reset(&mut self);
    /// Whether the answer is a completion to run with [`complete`](Self::complete)
    /// once the request left the queue (a channel reply is already sent).
    fn has_completion(&self) -> bool {
        false
    }
    /// Runs the completion with the answer `poll` or `fail` stored.
    fn complete(self: Box<Self>, _ctx: &mut Ctx<'_>) {}
}

pub(crate) struct QueuedRead<D: Decoder> {
    decoder: D,
    tx: Sender<Result<D::Output>>,
}

impl<D: Decoder> QueuedRead<D> {
    pub(crate) fn request(decoder: D) -> (Box<dyn ReadRequest>, Reply<D::Output>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        (Box::new(QueuedRead { decoder, tx }), Reply::new(rx))
    }
}

impl<D: Decoder> ReadRequest for QueuedRead<D> {
    fn poll(&mut self, buf: &mut BytesMut, eof: bool) -> ReadPoll {
        match self.decoder.decode(buf, eof) {
            Ok(Some(frame)) => {
                let _ = self.tx.try_send(Ok(frame));
                ReadPoll::Done(self.decoder.after_frame())
            }
            Ok(None) => ReadPoll::Pending,
            Err(DecodeError { error, fatal }) => {
                let _ = self.tx.try_send(Err(error.clone()));
                if fatal {
                    ReadPoll::Fatal(error)
                } else {
                    ReadPoll::Failed
                }
            }
        }
    }

    fn fail(&mut self, e: Error) {
        let _ = self.tx.try_send(Err(e));
    }

    fn reset(&mut self) {
        self.decoder.reset();
    }
}

/// A read whose answer runs `f` on the worker (the reference's
/// `push_read(type, cb)`): see [`Ctx::push_read_with`].
pub(crate) struct CallbackRead<D: Decoder, F> {
    decoder: D,
    f: F,
    answer: Option<Result<D::Output>>,
}

impl<D, F> CallbackRead<D, F>
where
    D: Decoder,
    F: FnOnce(&mut Ctx<'_>, Result<D::Output>) + Send + 'static,
{
    pub(crate) fn request(decoder: D, f: F) -> Box<dyn ReadRequest> {
        Box::new(CallbackRead {
            decoder,
            f,
            answer: None,
        })
    }
}

impl<D, F> ReadRequest for CallbackRead<D, F>
where
    D: Decoder,
    F: FnOnce(&mut Ctx<'_>, Result<D::Output>) + Send + 'static,
{
    fn poll(&mut self, buf: &mut BytesMut, eof: bool) -> ReadPoll {
        match self.decoder.decode(buf, eof) {
            Ok(Some(frame)) => {
                self.answer = Some(Ok(frame));
                ReadPoll::Done(self.decoder.after_frame())
            }
            Ok(None) => ReadPoll::Pending,
            Err(DecodeError { error, fatal }) => {
                self.answer = Some(Err(error.clone()));
                if fatal {
                    ReadPoll::Fatal(error)
                } else {
                    ReadPoll::Failed
                }
            }
        }
    }

    fn fail(&mut self, e: Error) {
        self.answer.get_or_insert(Err(e));
    }

    fn reset(&mut self) {
        self.decoder.reset();
    }

    fn has_completion(&self) -> bool {
        true
    }

    fn complete(self: Box<Self>, ctx: &mut Ctx<'_>) {
        let CallbackRead { f, answer, .. } = *self;
        f(ctx, answer.unwrap_or(Err(Error::Closed)));
    }
}

/// A streaming decoder, type-erased to produce [`Frame`]s.
pub(crate) trait StreamDecode: Send {
    fn decode(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Option<Frame>, DecodeError>;
    fn after_frame(&mut self) -> Option<FrameAction>;
    fn reset(&mut self);
}

pub(crate) struct StreamAdapter<D>(pub(crate) D);

impl<D> StreamDecode for StreamAdapter<D>
where
    D: Decoder,
    D::Output: Into<Frame>,
{
    fn decode(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Option<Frame>, DecodeError> {
        Ok(self.0.decode(buf, eof)?.map(Into::into))
    }
    fn after_frame(&mut self) -> Option<FrameAction> {
        self.0.after_frame()
    }
    fn reset(&mut self) {
        self.0.reset()
    }
}
