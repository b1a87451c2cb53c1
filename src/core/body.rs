//! Body types shared by requests and responses.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

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
