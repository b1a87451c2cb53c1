//! Body types shared by requests and responses.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

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
    /// The bytes still to come, when the producer declared the length. Kept
    /// current so `is_end_stream` is true after the last byte: hyper stops
    /// polling a body once its Content-Length is written, so a body (or a filter
    /// wrapping it, like the cache's store) learns it is complete only that way.
    remaining: Option<u64>,
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
            remaining: exact,
        }
    }

    fn sent(&mut self, n: usize) {
        if let Some(r) = &mut self.remaining {
            *r = r.saturating_sub(n as u64);
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
            self.sent(first.len());
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        let item = ready!(self.rx.poll_recv(cx));
        if let Some(Ok(chunk)) = &item {
            let n = chunk.len();
            self.sent(n);
        }
        Poll::Ready(item.map(|r| r.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
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

#[cfg(test)]
mod tests {
    use http_body::Body as _;

    use super::*;

    #[test]
    fn channel_body_knows_when_its_declared_length_is_sent() {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Ok(Bytes::from_static(b"de"))).unwrap();
        let mut body = ChannelBody::new(Bytes::from_static(b"abc"), rx, Some(5));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        let first = pollster::block_on(body.frame()).unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "abc");
        assert_eq!(body.size_hint().exact(), Some(2));
        assert!(!body.is_end_stream());
        let second = pollster::block_on(body.frame()).unwrap().unwrap();
        assert_eq!(second.into_data().unwrap(), "de");
        // hyper stops polling here (Content-Length reached): the end must show.
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }

    #[test]
    fn channel_body_of_unknown_length_ends_with_the_channel() {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Ok(Bytes::from_static(b"x"))).unwrap();
        drop(tx);
        let mut body = ChannelBody::new(Bytes::new(), rx, None);
        assert_eq!(body.size_hint().exact(), None);
        let chunk = pollster::block_on(body.frame()).unwrap().unwrap();
        assert_eq!(chunk.into_data().unwrap(), "x");
        assert!(!body.is_end_stream());
        assert!(pollster::block_on(body.frame()).is_none());
    }
}
