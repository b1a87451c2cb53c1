//! The bounded pool plugin calls run on, so synchronous plugin code never stalls
//! the async runtime and at most `threads` plugin calls run at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::METRICS;

/// A permit-counting front for tokio's blocking threads.
#[derive(Clone, Debug)]
pub struct WorkerPool {
    permits: Arc<Semaphore>,
    size: usize,
    timeout: Duration,
}

impl WorkerPool {
    /// A pool of `threads` workers whose calls may take at most `timeout`
    /// (queueing included) before the client gets a 504.
    pub fn new(threads: usize, timeout: Duration) -> WorkerPool {
        METRICS.set_pool_size(threads);
        WorkerPool {
            permits: Arc::new(Semaphore::new(threads)),
            size: threads,
            timeout,
        }
    }

    /// How long a call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The configured number of workers.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Run `job` on a blocking thread once a worker is free.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let waiting = METRICS.pool_wait();
        let permit: OwnedSemaphorePermit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        drop(waiting);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _busy = METRICS.pool_run();
            job()
        })
        .await
    }
}
