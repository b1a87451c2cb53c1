//! A body whose chunks come from blocking code (a file, a plugin's body),
//! read one chunk ahead on tokio's blocking threads.
//!
//! Three bodies need exactly this: a large file answered by the static app or a
//! cache hit, a request body spooled to a temporary file, and a plugin's
//! response body past its pre-read. Each read runs on a blocking thread and the
//! next one starts as soon as a chunk is handed out, so the connection rarely
//! waits; a reader that stops polling holds at most one chunk in flight and no
//! thread. The source travels to the blocking thread and back with each read,
//! so it needs no lock, and it is dropped (a plugin body released) wherever the
//! last read leaves it.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::body::BodyError;

/// Blocking code that yields a body's chunks.
pub(crate) trait BlockingChunks: Send + Unpin + 'static {
    /// The next chunk (not empty), or `None` at the end. Runs on a blocking thread.
    fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError>;
}

type Read<S> = JoinHandle<(S, Result<Option<Bytes>, BodyError>)>;

/// A body: chunks already in memory first, then the source's, read ahead.
pub(crate) struct ReadAhead<S: BlockingChunks> {
    prefix: VecDeque<Bytes>,
    /// The source while no read is in flight (`None` once it ended or failed).
    idle: Option<S>,
    pending: Option<Read<S>>,
    /// The bytes still to come, when known: kept current so `is_end_stream` is
    /// true after the last byte (hyper stops polling at Content-Length).
    remaining: Option<u64>,
    /// Where reads run: the body may be polled from a plugin worker thread,
    /// outside the runtime's context.
    rt: Handle,
}

impl<S: BlockingChunks> ReadAhead<S> {
    /// `prefix`, then `source` until it ends; `exact` is the total length when known.
    pub(crate) fn new(
        prefix: impl IntoIterator<Item = Bytes>,
        source: Option<S>,
        exact: Option<u64>,
        rt: Handle,
    ) -> ReadAhead<S> {
        ReadAhead {
            prefix: prefix.into_iter().filter(|c| !c.is_empty()).collect(),
            idle: source,
            pending: None,
            remaining: exact,
            rt,
        }
    }

    /// Start the source's first read now (while the response head goes out).
    pub(crate) fn started(mut self) -> ReadAhead<S> {
        self.start_read();
        self
    }

    fn start_read(&mut self) {
        if self.remaining == Some(0) || self.pending.is_some() {
            return;
        }
        let Some(mut source) = self.idle.take() else {
            return;
        };
        self.pending = Some(self.rt.spawn_blocking(move || {
            let chunk = source.next_chunk();
            (source, chunk)
        }));
    }

    fn sent(&mut self, n: usize) {
        if let Some(r) = &mut self.remaining {
            *r = r.saturating_sub(n as u64);
        }
    }
}

impl<S: BlockingChunks> http_body::Body for ReadAhead<S> {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Some(chunk) = this.prefix.pop_front() {
            this.sent(chunk.len());
            if this.prefix.is_empty() {
                // Read the source's first chunk while this one is consumed.
                this.start_read();
            }
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        this.start_read();
        let Some(read) = this.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let done = ready!(Pin::new(read).poll(cx));
        this.pending = None;
        match done {
            Ok((source, Ok(Some(chunk)))) => {
                this.idle = Some(source);
                this.sent(chunk.len());
                this.start_read();
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            // Ended or failed: the source was dropped with the read's result.
            Ok((_, Ok(None))) => Poll::Ready(None),
            Ok((_, Err(e))) => Poll::Ready(Some(Err(e))),
            // A panic on the blocking thread (the source was dropped there).
            Err(e) => Poll::Ready(Some(Err(Box::new(e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty() && self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// A byte range of a file, in chunks of `chunk` bytes, each one `pread`.
pub(crate) struct FileRange {
    file: Arc<File>,
    next: u64,
    end: u64,
    chunk: usize,
}

impl FileRange {
    pub(crate) fn new(file: Arc<File>, offset: u64, len: u64, chunk: usize) -> FileRange {
        FileRange {
            file,
            next: offset,
            end: offset + len,
            chunk,
        }
    }
}

impl BlockingChunks for FileRange {
    fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        if self.next >= self.end {
            return Ok(None);
        }
        let n = (self.end - self.next).min(self.chunk as u64) as usize;
        let mut buf = BytesMut::zeroed(n);
        self.file
            .read_exact_at(&mut buf, self.next)
            .map_err(shrank)?;
        self.next += n as u64;
        Ok(Some(buf.freeze()))
    }
}

/// A file that ends early shrank while it was being sent.
pub(crate) fn shrank(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(e.kind(), "file shrank while being sent")
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Write;

    struct Counted {
        left: Vec<&'static str>,
        fail: bool,
    }

    impl BlockingChunks for Counted {
        fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
            match self.left.pop() {
                Some(c) => Ok(Some(Bytes::from_static(c.as_bytes()))),
                None if self.fail => Err("the source failed".into()),
                None => Ok(None),
            }
        }
    }

    async fn collect<S: BlockingChunks>(b: ReadAhead<S>) -> Result<Vec<u8>, BodyError> {
        Ok(b.collect().await?.to_bytes().to_vec())
    }

    #[tokio::test]
    async fn the_prefix_then_the_source_in_order() {
        let source = Counted {
            left: vec!["d", "c"],
            fail: false,
        };
        let body = ReadAhead::new(
            [Bytes::from("a"), Bytes::new(), Bytes::from("b")],
            Some(source),
            Some(4),
            Handle::current(),
        );
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(4));
        assert_eq!(collect(body).await.unwrap(), b"abcd");
    }

    #[tokio::test]
    async fn a_failing_source_fails_the_body_after_its_chunks() {
        let source = Counted {
            left: vec!["x"],
            fail: true,
        };
        let mut body = ReadAhead::new([], Some(source), None, Handle::current()).started();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "x");
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "the source failed");
    }

    #[tokio::test]
    async fn a_known_length_ends_the_stream_without_another_read() {
        let source = Counted {
            left: vec!["never read", "ab"],
            fail: false,
        };
        let mut body = ReadAhead::new([], Some(source), Some(2), Handle::current());
        let chunk = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(chunk, "ab");
        assert!(http_body::Body::is_end_stream(&body));
    }

    #[tokio::test]
    async fn a_file_range_reads_its_bytes_and_notices_a_shrunk_file() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"0123456789").unwrap();
        let f = Arc::new(f);
        let range = FileRange::new(f.clone(), 2, 7, 3);
        let body = ReadAhead::new([], Some(range), Some(7), Handle::current());
        assert_eq!(collect(body).await.unwrap(), b"2345678");
        let past_end = FileRange::new(f, 8, 5, 3);
        let body = ReadAhead::new([], Some(past_end), Some(5), Handle::current());
        let err = collect(body).await.unwrap_err();
        assert!(err.to_string().contains("shrank"), "{err}");
    }
}
