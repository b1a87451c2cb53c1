//! Body types shared by requests and responses.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use tokio::sync::mpsc;

/// Why a body stream failed.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body: a stream of byte chunks that may fail.
pub type Body = UnsyncBoxBody<Bytes, BodyError>;

/// The empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body held in memory.
pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body fed through a bounded channel by a producer on another thread: the
/// first chunk (already read) and then whatever the channel yields.
pub struct ChannelBody {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Result<Bytes, BodyError>>,
    /// The declared length, when the producer knows it.
    exact: Option<u64>,
}

impl ChannelBody {
    pub fn new(
        first: Bytes,
        rx: mpsc::Receiver<Result<Bytes, BodyError>>,
        exact: Option<u64>,
    ) -> ChannelBody {
        ChannelBody {
            first: (!first.is_empty()).then_some(first),
            rx,
            exact,
        }
    }
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// A body that fails at once (the connection is cut if the head went out).
pub fn failed(error: BodyError) -> Body {
    Failed(Some(error)).boxed_unsync()
}

struct Failed(Option<BodyError>);

impl http_body::Body for Failed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Poll::Ready(self.0.take().map(Err))
    }
}
