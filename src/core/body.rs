//! Body types shared by requests and responses.
//!
//! A [`Body`] is either a boxed stream of chunks or bytes held in memory. Bytes
//! in memory may also be *file-backed* ([`file_backed`]): known to be exactly an
//! open file's content, so the connection can send them from the file
//! (`sendfile(2)`) instead of copying them from userspace. The edge takes the
//! file out with [`Body::take_file`] once the response has left the pipeline;
//! a filter that wraps the body in a stream of its own (to count or change its
//! bytes) makes it an ordinary stream, which is correct, merely not zero-copy.

use std::any::Any;
use std::fs::File;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;

use super::Handler;

/// Why a body stream failed.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// File-backed bodies smaller than this are plain bytes in memory: one copy of
/// a few pages costs less than the extra system call. [`file_backed`] drops the
/// file of a smaller body, so a caller may skip opening it.
pub const FILE_BACKED_MIN_BYTES: usize = 64 * 1024;

/// A request or response body: a stream of byte chunks that may fail.
pub struct Body {
    kind: Kind,
    /// Whatever must live as long as the body (see [`Body::keep_alive`]).
    _guard: Guard,
}

/// What a body keeps alive (held only to be dropped with it).
#[allow(dead_code)]
enum Guard {
    None,
    /// The pipeline the response came from, which every response carries (see
    /// `assembly::swap`): held as it is, without a box of its own.
    Pipeline(Arc<dyn Handler>),
    Other(Box<dyn Any + Send>),
}

enum Kind {
    /// Any other body.
    Stream(UnsyncBoxBody<Bytes, BodyError>),
    /// Bytes in memory, sent as one frame (`None` once sent, or empty); `file`,
    /// if any, holds exactly these bytes from offset 0.
    Memory {
        data: Option<Bytes>,
        file: Option<File>,
    },
}

impl Body {
    /// A body streamed from `body`.
    pub fn new<B>(body: B) -> Body
    where
        B: http_body::Body<Data = Bytes, Error = BodyError> + Send + 'static,
    {
        Body::of(Kind::Stream(body.boxed_unsync()))
    }

    fn of(kind: Kind) -> Body {
        Body {
            kind,
            _guard: Guard::None,
        }
    }

    /// Keep `guard` alive until this body is dropped, whatever its kind (a
    /// file-backed body stays file-backed). A pipeline (`Arc<dyn Handler>`) as
    /// the first guard costs no allocation.
    pub fn keep_alive<G: Send + 'static>(mut self, guard: G) -> Body {
        let mut guard = Some(guard);
        let pipeline = (&mut guard as &mut dyn Any)
            .downcast_mut::<Option<Arc<dyn Handler>>>()
            .and_then(Option::take);
        self._guard = match (std::mem::replace(&mut self._guard, Guard::None), pipeline) {
            (Guard::None, Some(pipeline)) => Guard::Pipeline(pipeline),
            (Guard::None, None) => Guard::Other(Box::new(guard)),
            (earlier, Some(pipeline)) => Guard::Other(Box::new((earlier, pipeline))),
            (earlier, None) => Guard::Other(Box::new((earlier, guard))),
        };
        self
    }

    /// If this body is file-backed and not yet sent: its bytes and the file
    /// holding them from offset 0. The body keeps its bytes (it is then plain
    /// bytes in memory), so the response is the same whatever the caller does
    /// with the file.
    pub fn take_file(&mut self) -> Option<(Bytes, File)> {
        match &mut self.kind {
            Kind::Memory {
                data: Some(data),
                file,
            } => file.take().map(|f| (data.clone(), f)),
            _ => None,
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Stream(_) => f.write_str("Body(stream)"),
            Kind::Memory { data, file } => f
                .debug_struct("Body")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .field("file_backed", &file.is_some())
                .finish(),
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.kind {
            Kind::Stream(stream) => Pin::new(stream).poll_frame(cx),
            Kind::Memory { data, .. } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Stream(stream) => stream.is_end_stream(),
            Kind::Memory { data, .. } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Stream(stream) => stream.size_hint(),
            Kind::Memory { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// The empty body.
pub fn empty() -> Body {
    Body::of(Kind::Memory {
        data: None,
        file: None,
    })
}

/// A body held in memory.
pub fn full(bytes: Bytes) -> Body {
    Body::of(Kind::Memory {
        data: (!bytes.is_empty()).then_some(bytes),
        file: None,
    })
}

/// `bytes`, which the caller guarantees are exactly `file`'s content from
/// offset 0 (e.g. the same inode, size and mtime as when they were read), so
/// the connection may send them from the file. Bodies under
/// [`FILE_BACKED_MIN_BYTES`] are plain bytes in memory.
pub fn file_backed(bytes: Bytes, file: File) -> Body {
    let file = (bytes.len() >= FILE_BACKED_MIN_BYTES).then_some(file);
    Body::of(Kind::Memory {
        data: (!bytes.is_empty()).then_some(bytes),
        file,
    })
}

/// A body that fails at once (the connection is cut if the head went out).
pub fn failed(error: BodyError) -> Body {
    Body::new(Failed(Some(error)))
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
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use http_body::Body as _;

    use super::*;

    fn big() -> Bytes {
        Bytes::from(vec![7u8; FILE_BACKED_MIN_BYTES])
    }

    #[tokio::test]
    async fn a_file_backed_body_yields_its_bytes_and_gives_up_its_file_once() {
        let mut body = file_backed(big(), tempfile::tempfile().unwrap());
        assert_eq!(body.size_hint().exact(), Some(FILE_BACKED_MIN_BYTES as u64));
        let (bytes, _file) = body.take_file().expect("file-backed");
        assert!(body.take_file().is_none());
        let got = body.collect().await.unwrap().to_bytes();
        assert_eq!(got, bytes);
        assert_eq!(got.as_ptr(), bytes.as_ptr(), "the same bytes, not a copy");
    }

    #[test]
    fn small_in_memory_and_streamed_bodies_have_no_file() {
        let small = Bytes::from(vec![1u8; FILE_BACKED_MIN_BYTES - 1]);
        assert!(file_backed(small, tempfile::tempfile().unwrap())
            .take_file()
            .is_none());
        assert!(full(big()).take_file().is_none());
        assert!(Body::new(full(big())).take_file().is_none());
        assert!(empty().is_end_stream());
        assert!(full(Bytes::new()).is_end_stream());
    }

    #[tokio::test]
    async fn a_kept_guard_lives_as_long_as_the_body_and_keeps_it_file_backed() {
        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let mut body = file_backed(big(), tempfile::tempfile().unwrap())
            .keep_alive(Flag(dropped.clone()))
            .keep_alive(1u8);
        assert!(body.take_file().is_some());
        let _ = (&mut body).collect().await.unwrap();
        assert!(!dropped.load(Ordering::SeqCst));
        drop(body);
        assert!(dropped.load(Ordering::SeqCst));
    }

    struct Probe;

    impl Handler for Probe {
        fn call(&self, _req: crate::core::Request) -> crate::core::ResponseFuture<'_> {
            Box::pin(async { crate::core::error_response(http::StatusCode::NO_CONTENT) })
        }
    }

    #[test]
    fn a_pipeline_guard_is_held_unboxed_and_released_with_the_body() {
        let pipeline: Arc<dyn Handler> = Arc::new(Probe);
        let body = full(big()).keep_alive(pipeline.clone());
        assert!(matches!(body._guard, Guard::Pipeline(_)));
        assert_eq!(Arc::strong_count(&pipeline), 2);
        // A second guard (or a pipeline after another guard) joins the first.
        let body = body.keep_alive(7u8).keep_alive(pipeline.clone());
        assert!(matches!(body._guard, Guard::Other(_)));
        assert_eq!(Arc::strong_count(&pipeline), 3);
        drop(body);
        assert_eq!(Arc::strong_count(&pipeline), 1);
    }
}
