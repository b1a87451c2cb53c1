//! The host owns response framing: a handler's `Content-Length` that its body
//! does not match must never reach a keep-alive client as it is, or the client
//! reads the difference as the next response.
//!
//! A body whose length is known (an exact size hint, e.g. in memory) gets that
//! length in the head, whatever was declared. A streamed body with a declared
//! length is checked as it goes: a body that ends short or runs long fails,
//! which makes hyper close the connection, so a wrong body never looks complete
//! and no byte past the declared length is sent.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderValue, StatusCode};
use http_body::{Body as _, Frame, SizeHint};

use crate::core::headers::content_length;
use crate::core::{Body, BodyError, Response};

/// Why a streamed body was cut off.
#[derive(Debug, thiserror::Error)]
pub(super) enum FramingError {
    #[error("response body ended {missing} bytes short of its Content-Length ({declared})")]
    Short { declared: u64, missing: u64 },
    #[error("response body runs past its Content-Length ({declared})")]
    Long { declared: u64 },
}

/// Make `resp`'s head and body agree before hyper sends them. `head_request`:
/// the response answers a HEAD (its Content-Length is the GET's, no body goes out).
pub(super) fn frame(mut resp: Response, head_request: bool) -> Response {
    let status = resp.status();
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return resp;
    }
    let declared = match content_length(resp.headers()) {
        Ok(declared) => declared,
        Err(_) => {
            // Unparseable or conflicting values: hyper would refuse the head and
            // drop the connection; the body's own framing is sent instead.
            tracing::debug!("dropping an invalid Content-Length from a response");
            resp.headers_mut().remove(CONTENT_LENGTH);
            None
        }
    };
    if head_request {
        if declared.is_some() {
            // hyper sends no body for HEAD; without one it keeps the declared length.
            *resp.body_mut() = crate::core::body::empty();
        }
        return resp;
    }
    let Some(declared) = declared else {
        return resp;
    };
    let exact = if resp.body().is_end_stream() {
        Some(0)
    } else {
        resp.body().size_hint().exact()
    };
    // Bodies in memory, file-backed ones included, have an exact length and
    // go out as they are: only a streamed body is wrapped.
    match exact {
        Some(n) if n == declared => resp,
        Some(n) => {
            tracing::debug!(
                declared,
                actual = n,
                "correcting a response Content-Length to its body's length"
            );
            resp.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(n));
            resp
        }
        None => resp.map(|body| Body::new(Declared::new(body, declared))),
    }
}

/// A streamed body held to its declared length.
struct Declared {
    inner: Body,
    declared: u64,
    remaining: u64,
    /// The chunk that completes the declared length, held back until the inner
    /// body shows it has nothing more: once that many bytes are written hyper
    /// stops reading the body and keeps the connection, so a longer body would
    /// go unnoticed.
    held: Option<Frame<Bytes>>,
    done: bool,
}

impl Declared {
    fn new(inner: Body, declared: u64) -> Declared {
        Declared {
            inner,
            declared,
            remaining: declared,
            held: None,
            done: false,
        }
    }

    fn fail(&mut self, e: FramingError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        tracing::warn!("{e}; closing the connection");
        self.done = true;
        self.held = None;
        Poll::Ready(Some(Err(Box::new(e))))
    }
}

impl http_body::Body for Declared {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let polled = ready!(Pin::new(&mut this.inner).poll_frame(cx));
            if this.held.is_some() {
                match polled {
                    None => {
                        this.done = true;
                        return Poll::Ready(this.held.take().map(Ok));
                    }
                    Some(Ok(frame)) if frame.data_ref().is_some_and(|d| !d.is_empty()) => {
                        let declared = this.declared;
                        return this.fail(FramingError::Long { declared });
                    }
                    // Empty chunks and trailers (not sent with a length): keep looking.
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            return match polled {
                Some(Ok(frame)) => {
                    let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                    if len > this.remaining {
                        // Fail before sending any of it: hyper would cut the chunk
                        // to fit and keep the connection, hiding the fault.
                        let declared = this.declared;
                        return this.fail(FramingError::Long { declared });
                    }
                    this.remaining -= len;
                    if len > 0 && this.remaining == 0 && !this.inner.is_end_stream() {
                        this.held = Some(frame);
                        continue;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                None if this.remaining > 0 => {
                    let (declared, missing) = (this.declared, this.remaining);
                    this.fail(FramingError::Short { declared, missing })
                }
                None => {
                    this.done = true;
                    Poll::Ready(None)
                }
                Some(Err(e)) => {
                    this.done = true;
                    Poll::Ready(Some(Err(e)))
                }
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || (self.held.is_none() && self.remaining == 0 && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::body;
    use http_body_util::BodyExt;

    fn response(body: Body, declared: &str) -> Response {
        let mut resp = http::Response::new(body);
        resp.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_str(declared).unwrap());
        resp
    }

    /// A streamed body (no exact size) of `chunks`.
    fn streamed(chunks: &[&'static [u8]]) -> Body {
        Body::new(Chunks(
            chunks.iter().map(|c| Bytes::from_static(c)).collect(),
        ))
    }

    /// Chunks one frame each, with no size hint (as a streamed body has).
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl http_body::Body for Chunks {
        type Data = Bytes;
        type Error = crate::core::BodyError;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Ready(self.0.pop_front().map(|c| Ok(http_body::Frame::data(c))))
        }
    }

    /// Every frame of `body` until it ends or fails; `Err` at the failure.
    async fn collect(mut body: Body) -> Result<Vec<u8>, BodyError> {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            if let Ok(data) = frame.into_data() {
                out.extend_from_slice(&data);
            }
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_streamed_body_is_held_to_its_declared_length() {
        let ok = frame(response(streamed(&[b"abc", b"de"]), "5"), false);
        assert_eq!(collect(ok.into_body()).await.unwrap(), b"abcde");
        let short = frame(response(streamed(&[b"abc"]), "5"), false);
        assert!(collect(short.into_body())
            .await
            .unwrap_err()
            .to_string()
            .contains("short"));
        let long = frame(response(streamed(&[b"abc", b"def"]), "5"), false);
        assert!(collect(long.into_body())
            .await
            .unwrap_err()
            .to_string()
            .contains("past"));
        // Longer, but the declared length ends on a chunk boundary.
        let long = frame(response(streamed(&[b"abc", b"de", b"f"]), "5"), false);
        assert!(collect(long.into_body())
            .await
            .unwrap_err()
            .to_string()
            .contains("past"));
    }

    #[test]
    fn an_in_memory_body_gets_its_real_length() {
        let resp = frame(
            response(body::full(Bytes::from_static(b"hello")), "2"),
            false,
        );
        assert_eq!(resp.headers()[CONTENT_LENGTH], "5");
        let resp = frame(response(body::empty(), "7"), false);
        assert_eq!(resp.headers()[CONTENT_LENGTH], "0");
    }

    #[test]
    fn head_and_304_keep_their_declared_length() {
        let resp = frame(
            response(body::full(Bytes::from_static(b"hello")), "9"),
            true,
        );
        assert_eq!(resp.headers()[CONTENT_LENGTH], "9");
        assert!(resp.body().is_end_stream());
        let mut resp = response(body::empty(), "9");
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        assert_eq!(frame(resp, false).headers()[CONTENT_LENGTH], "9");
    }

    #[test]
    fn invalid_or_conflicting_lengths_are_dropped() {
        let resp = frame(response(body::full(Bytes::from_static(b"x")), "+1"), false);
        assert!(resp.headers().get(CONTENT_LENGTH).is_none());
        let mut resp = response(body::full(Bytes::from_static(b"x")), "1");
        resp.headers_mut()
            .append(CONTENT_LENGTH, HeaderValue::from_static("2"));
        assert!(frame(resp, false).headers().get(CONTENT_LENGTH).is_none());
    }
}
