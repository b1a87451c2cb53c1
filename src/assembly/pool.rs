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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;

    fn pool(threads: usize) -> WorkerPool {
        WorkerPool::new(threads, Duration::from_secs(5))
    }

    #[tokio::test]
    async fn jobs_answer_from_worker_threads() {
        let p = pool(2);
        let name = p
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("plughost-worker-"));
        for i in 0..100 {
            assert_eq!(p.run(move || i * 2).await.unwrap(), i * 2);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_than_threads_jobs_run_at_once_and_all_of_them_run() {
        let p = pool(3);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let calls: Vec<_> = (0..60)
            .map(|_| {
                let (p, running, most) = (p.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    p.run(move || {
                        let now = running.fetch_add(1, SeqCst) + 1;
                        most.fetch_max(now, SeqCst);
                        std::thread::sleep(Duration::from_millis(2));
                        running.fetch_sub(1, SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for c in calls {
            c.await.unwrap().unwrap();
        }
        assert_eq!(most.load(SeqCst), 3, "three workers, all of them used");
    }

    #[tokio::test]
    async fn a_panicking_job_costs_its_caller_an_answer_not_the_pool_a_worker() {
        let p = pool(1);
        assert!(p.run(|| panic!("in a job")).await.is_err());
        assert_eq!(p.run(|| 7).await.unwrap(), 7);
    }
}
