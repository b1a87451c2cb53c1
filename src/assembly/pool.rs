//! The bounded pool plugin calls run on, so synchronous plugin code never stalls
//! the async runtime and at most `threads` plugin calls run at once.
//!
//! The workers are plain OS threads that live as long as the pool and take jobs
//! from one shared queue (crossbeam's MPMC channel), and each job answers
//! through a oneshot channel. This costs one thread wake-up each way per call,
//! less than tokio's `spawn_blocking` (a task allocation and the blocking pool's
//! mutex) behind a semaphore. A job whose caller has gone (timed out, client
//! disconnected) before a worker picks it up is skipped.

use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use crate::core::metrics::METRICS;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of worker threads for plugin calls.
#[derive(Clone)]
pub struct WorkerPool {
    queue: Sender<Job>,
    size: usize,
    timeout: Duration,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("size", &self.size)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why a job produced no result.
#[derive(Debug, thiserror::Error)]
#[error("the plugin worker ended without an answer")]
pub struct WorkerGone;

impl WorkerPool {
    /// A pool of `threads` workers whose calls may take at most `timeout`
    /// (queueing included) before the client gets a 504.
    pub fn new(threads: usize, timeout: Duration) -> WorkerPool {
        METRICS.set_pool_size(threads);
        let (queue, jobs) = crossbeam_channel::unbounded::<Job>();
        for i in 0..threads {
            let jobs: Receiver<Job> = jobs.clone();
            std::thread::Builder::new()
                .name(format!("plughost-worker-{i}"))
                // The workers end when the last clone of the pool (the queue's
                // sender) is dropped.
                .spawn(move || {
                    for job in jobs {
                        // A panic in host code must not cost the pool a worker;
                        // the caller sees the dropped answer as a failure.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .expect("cannot start a plugin worker thread");
        }
        WorkerPool {
            queue,
            size: threads,
            timeout,
        }
    }

    /// The configured number of workers.
    pub fn size(&self) -> usize {
        self.size
    }

    /// How long a call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Run `job` on a worker thread once one is free.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WorkerGone> {
        let (tx, rx) = oneshot::channel();
        let waiting = METRICS.pool_wait();
        let task: Job = Box::new(move || {
            drop(waiting);
            if tx.is_closed() {
                // Nobody waits for the answer any more.
                return;
            }
            let _busy = METRICS.pool_run();
            let _ = tx.send(job());
        });
        self.queue.send(task).map_err(|_| WorkerGone)?;
        rx.await.map_err(|_| WorkerGone)
    }
}
