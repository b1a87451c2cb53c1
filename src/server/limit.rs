//! The request body limit (`max_body_bytes`) for bodies without a declared
//! length: the stream fails past the limit, and the flag lets the server answer
//! 413 instead of the 500 the app's read error would produce.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::pipeline::BodyError;

/// Set once a body went over its limit.
#[derive(Clone, Default)]
pub struct Overflow(Arc<AtomicBool>);

impl Overflow {
    pub fn hit(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

pub struct LimitedBody {
    inner: Incoming,
    remaining: u64,
    overflow: Overflow,
}

impl LimitedBody {
    pub fn new(inner: Incoming, limit: u64) -> (LimitedBody, Overflow) {
        let overflow = Overflow::default();
        (
            LimitedBody {
                inner,
                remaining: limit,
                overflow: overflow.clone(),
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
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.remaining {
                        self.overflow.0.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(
                            Err("request body is over max_body_bytes".into()),
                        ));
                    }
                    self.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
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
