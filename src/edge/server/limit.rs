//! The request body limits, applied while `request_body` reads a body before
//! dispatch: `max_body_bytes` for bodies without a declared length (the stream
//! fails past the limit, and the flag says to answer 413), and `body_timeout`
//! between pieces of a body (408).

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

use crate::core::BodyError;

/// Records why a request body failed, so the server can answer 413, 408 or 400
/// instead of the 500 an app's read error would produce.
#[derive(Clone, Default)]
pub(super) struct Overflow(Arc<AtomicU8>);

const TOO_LARGE: u8 = 1;
const TOO_SLOW: u8 = 2;
const MALFORMED: u8 = 3;

impl Overflow {
    /// The status the failure deserves, if the body failed.
    pub(super) fn status(&self) -> Option<http::StatusCode> {
        match self.0.load(Ordering::Relaxed) {
            TOO_LARGE => Some(http::StatusCode::PAYLOAD_TOO_LARGE),
            TOO_SLOW => Some(http::StatusCode::REQUEST_TIMEOUT),
            MALFORMED => Some(http::StatusCode::BAD_REQUEST),
            _ => None,
        }
    }
}

pub(super) struct LimitedBody {
    inner: Incoming,
    remaining: u64,
    overflow: Overflow,
    timeout: Duration,
    /// Armed while waiting for the next piece; created here, inside the
    /// runtime, because the body may be polled from a plugin worker thread.
    deadline: Pin<Box<Sleep>>,
    waiting: bool,
}

impl LimitedBody {
    /// Call inside the runtime (it creates a timer).
    pub(super) fn new(inner: Incoming, limit: u64, timeout: Duration) -> (LimitedBody, Overflow) {
        let overflow = Overflow::default();
        (
            LimitedBody {
                inner,
                remaining: limit,
                overflow: overflow.clone(),
                timeout,
                deadline: Box::pin(tokio::time::sleep(timeout)),
                waiting: false,
            },
            overflow,
        )
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_pending() {
            if !self.waiting {
                // The clock starts when we start waiting, not when the app
                // last read (an app may read its body late).
                self.waiting = true;
                let at = Instant::now() + self.timeout;
                self.deadline.as_mut().reset(at);
            }
            if self.deadline.as_mut().poll(cx).is_ready() {
                self.overflow.0.store(TOO_SLOW, Ordering::Relaxed);
                return Poll::Ready(Some(Err(format!(
                    "no request body data for {:?} (body_timeout)",
                    self.timeout
                )
                .into())));
            }
            return Poll::Pending;
        }
        self.waiting = false;
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.remaining {
                        self.overflow.0.store(TOO_LARGE, Ordering::Relaxed);
                        return Poll::Ready(Some(
                            Err("request body is over max_body_bytes".into()),
                        ));
                    }
                    self.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                // A broken chunked encoding and the like: the client's fault.
                self.overflow.0.store(MALFORMED, Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
