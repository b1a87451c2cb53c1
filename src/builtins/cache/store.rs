//! Storing a miss while it streams: a body wrapper (the tee) hands each chunk to
//! the client and, through a small bounded channel, to a writer task, which
//! fills a temporary file beside the target (each batch of chunks written on a
//! blocking thread) and renames it into place only when the body ended complete.
//! Memory stays at a few chunks whatever the body's size; when the disk is
//! slower than the client, the client waits for it (the channel applies
//! back-pressure); a slow client holds no thread, only the task.

use std::future::Future;
use std::io::{self, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::mpsc::{self, error::SendError, error::TrySendError, OwnedPermit};

use super::dir::{classify, CacheDir, TempFile};
use super::flight::Leader;
use super::path::CachePath;
use super::stats::{CacheStats, Event};
use crate::pipeline::{Body, BodyError};

/// Chunks in flight between the tee and the writer.
const CHANNEL: usize = 8;

/// How the body ended, as the tee saw it (read by the writer once the channel closes).
const DROPPED: u8 = 0;
const COMPLETE: u8 = 1;
const TOO_LARGE: u8 = 2;
const EMPTY: u8 = 3;
const FAILED: u8 = 4;

/// Everything the writer needs to put one response in place.
pub struct Job {
    pub dir: Arc<CacheDir>,
    pub path: CachePath,
    pub stats: Arc<CacheStats>,
    /// Released (with the outcome) when the writer is done.
    pub leader: Leader,
    pub fsync: bool,
    pub max_bytes: u64,
    /// The response's Content-Length, which the body must match.
    pub declared: Option<u64>,
}

/// Wrap `body` so it is stored as it streams. Needs the tokio runtime (for the
/// writer); without one the body is returned as is, unstored.
pub fn tee(body: Body, job: Job) -> Body {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return body;
    };
    let (tx, rx) = mpsc::channel(CHANNEL);
    let ending = Arc::new(AtomicU8::new(DROPPED));
    let tee = Tee {
        inner: body,
        tx: Some(tx),
        pending: None,
        ending: ending.clone(),
        seen: 0,
        max: job.max_bytes,
        declared: job.declared,
        done: false,
    };
    rt.spawn(write(job, rx, ending));
    tee.boxed_unsync()
}

/// Run file-system work on a blocking thread (a panic there becomes an error;
/// whatever the closure owned, a temporary file included, is dropped there).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("cache writer failed: {e}"))))
}

/// The writer: temporary file, chunks, then rename or removal. Each batch of
/// chunks is one trip to a blocking thread, and a small body (one batch) is
/// created, written and renamed in a single trip. Returning early drops `rx`,
/// which tells the tee to stop sending.
async fn write(job: Job, mut rx: mpsc::Receiver<Bytes>, ending: Arc<AtomicU8>) {
    let rel = job.path.rel();
    let mut temp: Option<TempFile> = None;
    let mut batch = Vec::with_capacity(CHANNEL);
    loop {
        rx.recv_many(&mut batch, CHANNEL).await;
        // Once the tee has let go, nothing more comes and its verdict is set.
        let ended = rx.is_closed() && rx.is_empty();
        if ended {
            let event = match ending.load(Ordering::Acquire) {
                COMPLETE => None,
                TOO_LARGE => Some(Event::NoStoreTooLarge),
                EMPTY => Some(Event::NoStoreEmpty),
                _ => Some(Event::NoStoreIncomplete),
            };
            if let Some(event) = event {
                let n = job.stats.count(event);
                tracing::debug!(
                    path = rel,
                    event = event.name(),
                    count = n,
                    "cache: not stored"
                );
                if let Some(temp) = temp {
                    // Removing the temporary file is a blocking call too.
                    let _ = blocking(move || {
                        drop(temp);
                        Ok(())
                    })
                    .await;
                }
                return;
            }
        }
        let chunks = std::mem::take(&mut batch);
        let (dir, path, fsync) = (job.dir.clone(), job.path.clone(), job.fsync);
        let step = blocking(move || {
            let mut temp = match temp {
                Some(t) => t,
                None => dir.parent_dir(&path).and_then(TempFile::create)?,
            };
            for chunk in &chunks {
                temp.file().write_all(chunk)?;
            }
            if ended {
                temp.commit(path.name(), fsync)?;
                return Ok(None);
            }
            Ok(Some(temp))
        })
        .await;
        match step {
            Ok(Some(t)) => temp = Some(t),
            Ok(None) => {
                let n = job.stats.count(Event::Store);
                tracing::debug!(path = rel, count = n, stats = %job.stats, "cache: stored");
                job.leader.stored();
                return;
            }
            Err(e) => return job.stats.problem(classify(&e), rel, &e),
        }
    }
}

type Reserve = Pin<Box<dyn Future<Output = Result<OwnedPermit<Bytes>, SendError<()>>> + Send>>;

/// The response body on a miss: passes every frame through unchanged and copies
/// data to the writer until it ends, fails, grows too large or the writer quits.
struct Tee {
    inner: Body,
    /// None once the store was abandoned or finished.
    tx: Option<mpsc::Sender<Bytes>>,
    /// A chunk waiting for room in the channel before it goes to the client.
    pending: Option<(Bytes, Reserve)>,
    ending: Arc<AtomicU8>,
    seen: u64,
    max: u64,
    declared: Option<u64>,
    done: bool,
}

impl Tee {
    /// Stop storing, telling the writer why (it removes the temporary file).
    fn abandon(&mut self, why: u8) {
        if let Some(tx) = self.tx.take() {
            self.ending.store(why, Ordering::Release);
            drop(tx);
        }
        self.pending = None;
    }

    /// The body ended: store it if it is whole.
    fn finish(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let why = if self.seen == 0 {
            EMPTY
        } else if self.declared.is_some_and(|d| d != self.seen) {
            FAILED
        } else {
            COMPLETE
        };
        self.abandon(why);
    }

    /// After a chunk is handed on: the inner body may know it has no more.
    fn check_end(&mut self) {
        if self.inner.is_end_stream() {
            self.finish();
        }
    }
}

impl http_body::Body for Tee {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            if let Some((chunk, reserve)) = this.pending.as_mut() {
                match ready!(reserve.as_mut().poll(cx)) {
                    Ok(permit) => {
                        permit.send(chunk.clone());
                    }
                    // The writer quit (disk error): keep serving, stop storing.
                    Err(_) => this.tx = None,
                }
                let (chunk, _) = this.pending.take().expect("checked above");
                this.check_end();
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                None => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Some(Err(e)) => {
                    this.abandon(FAILED);
                    return Poll::Ready(Some(Err(e)));
                }
                Some(Ok(frame)) => frame,
            };
            let Some(data) = frame.data_ref() else {
                // Trailers pass through; they may be the last frame.
                this.check_end();
                return Poll::Ready(Some(Ok(frame)));
            };
            this.seen += data.len() as u64;
            if this.seen > this.max {
                this.abandon(TOO_LARGE);
            } else if let Some(tx) = &this.tx {
                match tx.try_send(data.clone()) {
                    Ok(()) => {}
                    Err(TrySendError::Full(chunk)) => {
                        this.pending = Some((chunk, Box::pin(tx.clone().reserve_owned())));
                        continue;
                    }
                    Err(TrySendError::Closed(_)) => this.tx = None,
                }
            }
            this.check_end();
            return Poll::Ready(Some(Ok(frame)));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let Some((chunk, _)) = &self.pending else {
            return inner;
        };
        let n = chunk.len() as u64;
        let mut hint = SizeHint::new();
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + n);
        }
        hint.set_lower(inner.lower() + n);
        hint
    }
}
