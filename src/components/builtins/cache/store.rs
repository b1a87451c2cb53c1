//! Storing a miss at the app's pace, whatever the client's.
//!
//! A body that is already whole in memory (most pages) goes to the client as
//! it is while a task writes it to a temporary file and renames it into place.
//! Any other body is *spooled*: a writer task pulls the app's body as fast as
//! the app produces it, appends each batch of chunks to the temporary file (on
//! a blocking thread) and renames the file into place when the body ended
//! complete; the client's body follows the file, reading back what is written
//! (`pread` of page-cache-hot bytes, [`READ_CHUNK`] at a time). So a client that
//! reads slowly, or not at all, never holds up the store, the miss lock or the
//! requests waiting on it; memory stays at one batch; and a client that hangs
//! up does not stop the store.
//!
//! When the store is abandoned midway (over `max_entry_bytes`, a disk error),
//! the writer hands the client what it has not written and the rest of the app's
//! body, and the client's body goes on from there at the client's pace (nothing
//! waits on it any more). A body that fails, or does not match its
//! Content-Length, is never stored and fails the client's body too, so the
//! connection is cut rather than a short page looking complete.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;

use super::budget::Budget;
use super::dir::{classify, CacheDir, TempFile};
use super::flight::Leader;
use super::invalidate::guard::{Guard, Ticket};
use super::invalidate::tags::{self, Index};
use super::mime_store;
use super::path::CachePath;
use super::report::{Outcome, Reporter};
use super::stats::{CacheStats, Event};
use super::twins::{self, Compress};
use crate::core::{body, Body, BodyError};

/// Most bytes the client's body reads back from the file in one frame.
pub(super) const READ_CHUNK: usize = 64 * 1024;
/// Most bytes the writer collects before one trip to a blocking thread.
const BATCH_BYTES: usize = 256 * 1024;

/// Everything the writer needs to put one response in place.
pub(super) struct Job {
    pub dir: Arc<CacheDir>,
    pub path: CachePath,
    pub stats: Arc<CacheStats>,
    /// Released (with the outcome) when the writer is done.
    pub leader: Leader,
    pub fsync: bool,
    pub max_bytes: u64,
    /// The response's Content-Length, which the body must match.
    pub declared: Option<u64>,
    /// The Content-Type to record on the page (`content_type = auto` with xattrs).
    pub mime: Option<String>,
    /// The disk budget, told of each page stored (on the storing thread).
    pub budget: Option<Arc<Budget>>,
    /// `compress`: old twins are removed before the page is replaced, and
    /// with `twins` set new ones are written after it.
    pub compress: Option<Arc<Compress>>,
    pub twins: bool,
    /// When the app was asked, and the record of purges since: a page purged
    /// meanwhile is not put back.
    pub ticket: Ticket,
    pub guard: Arc<Guard>,
    /// The response's tags (`Surrogate-Key`, `Cache-Tag`), kept on the page
    /// and in the tag index.
    pub tags: Vec<String>,
    /// Told the outcome (for `cache warm` and refreshes).
    pub reporter: Reporter,
}

/// The parts of a [`Job`] the commit needs on its blocking thread.
struct Commit {
    dir: Arc<CacheDir>,
    path: CachePath,
    fsync: bool,
    mime: Option<String>,
    budget: Option<Arc<Budget>>,
    compress: bool,
    ticket: Ticket,
    guard: Arc<Guard>,
    tags: Vec<String>,
}

impl Commit {
    /// Label the temporary file, then rename it into place unless a purge
    /// since the ticket covers the page (`Ok(false)`), and record its tags.
    fn run(self, mut temp: TempFile, len: u64) -> io::Result<bool> {
        if let Some(ct) = &self.mime {
            mime_store::write(temp.file(), ct)?;
        }
        if !self.tags.is_empty() {
            tags::write_attr(temp.file(), &self.tags)?;
        }
        let name = self.path.name().to_owned();
        let fsync = self.fsync;
        let (dir, rel, compress) = (&self.dir, self.path.rel(), self.compress);
        let done = self.guard.commit(self.ticket, rel, &self.tags, move || {
            if compress {
                twins::remove(dir, rel);
            }
            temp.commit(&name, fsync)
        });
        match done {
            None => return Ok(false),
            Some(r) => r?,
        }
        if let Some(b) = &self.budget {
            b.stored(rel, len);
        }
        if !self.tags.is_empty() {
            if let Err(e) = Index::record(self.dir.root().as_fd(), rel, &self.tags) {
                tracing::warn!(
                    path = rel,
                    "cache: cannot record the page's tags in the tag index: {e}"
                );
            }
        }
        Ok(true)
    }
}

impl Job {
    fn commit_parts(&self) -> Commit {
        Commit {
            dir: self.dir.clone(),
            path: self.path.clone(),
            fsync: self.fsync,
            mime: self.mime.clone(),
            budget: self.budget.clone(),
            compress: self.compress.is_some(),
            ticket: self.ticket,
            guard: self.guard.clone(),
            tags: self.tags.clone(),
        }
    }

    /// Storing failed on the disk.
    fn failed(&self, e: &io::Error) {
        self.stats.problem(classify(e), self.path.rel(), e);
        self.reporter.decide(Outcome::Failed(e.to_string()));
    }

    /// The commit's answer: stored, or dropped for a purge meanwhile.
    fn committed(self, r: io::Result<bool>) {
        match r {
            Ok(true) => self.stored(),
            Ok(false) => self.not_stored(Event::NoStorePurged),
            Err(e) => self.failed(&e),
        }
    }

    fn not_stored(&self, event: Event) {
        self.reporter.decide(Outcome::NotStored(event.name()));
        let n = self.stats.count(event);
        tracing::debug!(
            path = self.path.rel(),
            event = event.name(),
            count = n,
            "cache: not stored"
        );
    }

    /// The new page's twins to write, if it gets any.
    fn twin_job(&self) -> Option<impl FnOnce() + Send + 'static> {
        let (Some(c), true) = (&self.compress, self.twins) else {
            return None;
        };
        let (c, dir, path, fsync) = (c.clone(), self.dir.clone(), self.path.clone(), self.fsync);
        let (budget, stats) = (self.budget.clone(), self.stats.clone());
        Some(
            move || match twins::write(&dir, &path, &c.encs, c.min_size, fsync) {
                Ok(bytes) => {
                    if let Some(b) = budget {
                        b.add_twins(path.rel(), bytes);
                    }
                }
                Err(e) => stats.problem(classify(&e), path.rel(), &e),
            },
        )
    }

    /// The page is in place: waiting requests may read it now; its twins are
    /// written on a blocking thread (the miss is not kept waiting), and who
    /// asked for a report (`cache warm`) hears "stored" once they are written
    /// too, so it never exits with a twin unwritten.
    fn stored(self) {
        let n = self.stats.count(Event::Store);
        tracing::debug!(path = self.path.rel(), count = n, stats = %self.stats, "cache: stored");
        let twins = self.twin_job();
        self.leader.stored();
        match twins {
            Some(write) => {
                let reporter = self.reporter;
                tokio::task::spawn_blocking(move || {
                    write();
                    reporter.decide(Outcome::Stored);
                });
            }
            None => self.reporter.decide(Outcome::Stored),
        }
    }
}

/// Store `body` while the client receives it. Needs the tokio runtime (for the
/// writer); without one the body is returned as is, unstored.
pub(super) fn store(mut body: Body, job: Job) -> Body {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return body;
    };
    // One look without waiting: a body that is whole in memory needs no spool.
    let mut cx = Context::from_waker(Waker::noop());
    let first = match Pin::new(&mut body).poll_frame(&mut cx) {
        Poll::Ready(None) => {
            job.not_stored(Event::NoStoreEmpty);
            return body::empty();
        }
        Poll::Ready(Some(Ok(frame))) => Some(frame),
        Poll::Ready(Some(Err(e))) => {
            job.not_stored(Event::NoStoreIncomplete);
            return body::failed(e);
        }
        Poll::Pending => None,
    };
    if let Some(data) = first.as_ref().and_then(Frame::data_ref) {
        if body.is_end_stream() {
            let data = data.clone();
            rt.spawn(store_whole(data.clone(), job));
            return body::full(data);
        }
    }
    let hint = body.size_hint().exact();
    let shared = Arc::new(Shared::default());
    rt.spawn(spool(body, first, job, shared.clone()));
    Body::new(Follow {
        shared,
        file: None,
        offset: 0,
        handed: None,
        remaining: hint,
        done: false,
    })
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

/// Store a body that was whole in memory: one trip to a blocking thread.
async fn store_whole(data: Bytes, job: Job) {
    if job.declared.is_some_and(|d| d != data.len() as u64) {
        return job.not_stored(Event::NoStoreIncomplete);
    }
    if data.len() as u64 > job.max_bytes {
        return job.not_stored(Event::NoStoreTooLarge);
    }
    let commit = job.commit_parts();
    let wrote = blocking(move || {
        let mut temp = commit
            .dir
            .parent_dir(&commit.path)
            .and_then(TempFile::create)?;
        temp.file().write_all(&data)?;
        commit.run(temp, data.len() as u64)
    })
    .await;
    job.committed(wrote);
}

/// What the writer has done, as the client's body sees it.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Change the state and wake the client's body if it waits.
    fn update(&self, f: impl FnOnce(&mut State)) {
        let waker = {
            let mut s = self.lock();
            f(&mut s);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

#[derive(Default)]
struct State {
    /// The temporary file, for reading back (set with its first bytes).
    file: Option<Arc<File>>,
    /// Bytes of the file the client's body may read.
    written: u64,
    end: End,
    waker: Option<Waker>,
}

#[derive(Default)]
enum End {
    /// More is coming.
    #[default]
    Open,
    /// The body ended whole; its trailers, if any, follow the data.
    Complete(Option<HeaderMap>),
    /// The body failed (or broke its Content-Length): the client's body fails too.
    Failed(Option<BodyError>),
    /// No longer stored: after the file's bytes, these chunks, then the body.
    Handover(Option<Handed>),
}

/// What the writer hands the client's body when it stops storing.
struct Handed {
    chunks: VecDeque<Frame<Bytes>>,
    rest: Option<Body>,
}

/// What one pull from the app's body gave the writer.
enum Pulled {
    More,
    Ended(Option<HeaderMap>),
    Failed(BodyError),
}

/// The writer: pulls `body` at the app's pace into a temporary file, then
/// renames it into place, releasing the miss lock either way.
async fn spool(mut body: Body, first: Option<Frame<Bytes>>, job: Job, shared: Arc<Shared>) {
    let mut temp: Option<TempFile> = None;
    let mut seen: u64 = 0;
    let mut pending = first;
    loop {
        // A batch: the next frame (waiting for it), then whatever is ready now.
        let mut batch: Vec<Bytes> = Vec::new();
        let mut bytes = 0usize;
        let mut outcome = Pulled::More;
        loop {
            let frame = match pending.take() {
                Some(f) => Some(Ok(f)),
                None if batch.is_empty() => body.frame().await,
                None => match futures_now(&mut body) {
                    Some(f) => f,
                    None => break,
                },
            };
            match frame {
                None => {
                    outcome = Pulled::Ended(None);
                    break;
                }
                Some(Err(e)) => {
                    outcome = Pulled::Failed(e);
                    break;
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        seen += data.len() as u64;
                        bytes += data.len();
                        batch.push(data);
                    }
                    Err(frame) => {
                        outcome = Pulled::Ended(frame.into_trailers().ok());
                        break;
                    }
                },
            }
            // The declared length reached: that is the end (hyper stops
            // there too), whether or not the body has said so yet.
            if job.declared == Some(seen) || body.is_end_stream() {
                outcome = Pulled::Ended(None);
                break;
            }
            if bytes >= BATCH_BYTES || seen > job.max_bytes {
                break;
            }
        }
        if let Pulled::Failed(e) = outcome {
            shared.update(|s| s.end = End::Failed(Some(e)));
            return abandon(temp, &job, Event::NoStoreIncomplete).await;
        }
        if job.declared.is_some_and(|d| seen > d) {
            let e: BodyError = "the app's body is longer than its Content-Length".into();
            shared.update(|s| s.end = End::Failed(Some(e)));
            return abandon(temp, &job, Event::NoStoreIncomplete).await;
        }
        let ended = matches!(outcome, Pulled::Ended(_));
        if ended && job.declared.is_some_and(|d| seen < d) {
            let e: BodyError = "the app's body is shorter than its Content-Length".into();
            shared.update(|s| s.end = End::Failed(Some(e)));
            return abandon(temp, &job, Event::NoStoreIncomplete).await;
        }
        if let (Pulled::Ended(trailers), 0) = (&mut outcome, seen) {
            let trailers = trailers.take();
            shared.update(|s| s.end = End::Complete(trailers));
            return abandon(temp, &job, Event::NoStoreEmpty).await;
        }
        if seen > job.max_bytes {
            let trailers = match outcome {
                Pulled::Ended(t) => t,
                _ => None,
            };
            hand_over(&shared, batch, trailers, (!ended).then_some(body));
            return abandon(temp, &job, Event::NoStoreTooLarge).await;
        }
        // Append the batch (creating the file with the first one).
        let (dir, path) = (job.dir.clone(), job.path.clone());
        let chunks = batch.clone();
        let first_write = temp.is_none();
        let temp_now = temp.take();
        let step = blocking(move || {
            let temp = temp_now;
            let mut temp = match temp {
                Some(t) => t,
                None => dir.parent_dir(&path).and_then(TempFile::create)?,
            };
            for chunk in &chunks {
                temp.file().write_all(chunk)?;
            }
            let reader = temp.file().try_clone()?;
            Ok((temp, reader))
        })
        .await;
        let (t, reader) = match step {
            Ok(ok) => ok,
            Err(e) => {
                // The disk failed us: the client still gets every byte.
                let trailers = match outcome {
                    Pulled::Ended(t) => t,
                    _ => None,
                };
                hand_over(&shared, batch, trailers, (!ended).then_some(body));
                return job.failed(&e);
            }
        };
        temp = Some(t);
        shared.update(|s| {
            if first_write {
                s.file = Some(Arc::new(reader));
            }
            s.written += bytes as u64;
            if let Pulled::Ended(trailers) = outcome {
                s.end = End::Complete(trailers);
            }
        });
        if ended {
            let (temp, commit) = (temp.take(), job.commit_parts());
            let committed = blocking(move || match temp {
                Some(t) => commit.run(t, seen),
                None => Ok(true),
            })
            .await;
            return job.committed(committed);
        }
    }
}

/// The next frame of `body` if it is ready now, without waiting.
fn futures_now(body: &mut Body) -> Option<Option<Result<Frame<Bytes>, BodyError>>> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(body).poll_frame(&mut cx) {
        Poll::Ready(f) => Some(f),
        Poll::Pending => None,
    }
}

/// Stop storing: the client's body takes the unwritten chunks and the rest.
fn hand_over(shared: &Shared, batch: Vec<Bytes>, trailers: Option<HeaderMap>, rest: Option<Body>) {
    let mut chunks: VecDeque<Frame<Bytes>> = batch.into_iter().map(Frame::data).collect();
    if let Some(t) = trailers {
        chunks.push_back(Frame::trailers(t));
    }
    shared.update(|s| s.end = End::Handover(Some(Handed { chunks, rest })));
}

/// Count why nothing was stored and remove the temporary file (a blocking call).
async fn abandon(temp: Option<TempFile>, job: &Job, event: Event) {
    job.not_stored(event);
    if let Some(temp) = temp {
        let _ = blocking(move || {
            drop(temp);
            Ok(())
        })
        .await;
    }
}

/// The client's body on a spooled miss: the file's bytes as they are written,
/// then the end the writer reached (or what it handed over).
struct Follow {
    shared: Arc<Shared>,
    file: Option<Arc<File>>,
    offset: u64,
    handed: Option<Handed>,
    /// Bytes still to come, when the app's body knew its exact length.
    remaining: Option<u64>,
    done: bool,
}

impl Follow {
    fn sent(&mut self, n: usize) {
        if let Some(r) = &mut self.remaining {
            *r = r.saturating_sub(n as u64);
        }
    }
}

impl http_body::Body for Follow {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(handed) = &mut this.handed {
            if let Some(frame) = handed.chunks.pop_front() {
                if let Some(d) = frame.data_ref() {
                    let n = d.len();
                    this.sent(n);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            let Some(rest) = &mut handed.rest else {
                this.done = true;
                return Poll::Ready(None);
            };
            let polled = Pin::new(rest).poll_frame(cx);
            if let Poll::Ready(Some(Ok(f))) = &polled {
                if let Some(d) = f.data_ref() {
                    let n = d.len();
                    this.sent(n);
                }
            }
            return polled;
        }
        let mut s = this.shared.lock();
        if this.offset < s.written {
            if this.file.is_none() {
                this.file = s.file.clone();
            }
            let n = (s.written - this.offset).min(READ_CHUNK as u64) as usize;
            drop(s);
            let file = this.file.as_ref().expect("set with the first bytes");
            let mut buf = BytesMut::zeroed(n);
            // Bytes just written: served from the page cache.
            if let Err(e) = file.read_exact_at(&mut buf, this.offset) {
                this.done = true;
                return Poll::Ready(Some(Err(Box::new(e))));
            }
            this.offset += n as u64;
            this.sent(n);
            return Poll::Ready(Some(Ok(Frame::data(buf.freeze()))));
        }
        match &mut s.end {
            End::Open => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            End::Complete(trailers) => {
                let trailers = trailers.take();
                this.done = true;
                Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))))
            }
            End::Failed(e) => {
                let e = e.take();
                this.done = true;
                Poll::Ready(e.map(Err))
            }
            End::Handover(handed) => {
                this.handed = handed.take();
                drop(s);
                if this.handed.is_none() {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Pin::new(this).poll_frame(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
