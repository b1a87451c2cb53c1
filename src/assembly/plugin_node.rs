//! A plugin app or filter as a [`Handler`]: its calls run on the worker pool,
//! except a non-blocking app's body-less requests, which run where they arrive.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::runtime::Handle;

use super::WorkerPool;
use crate::components::plugin::{Instance, NextHandle};
use crate::core::{error_response, Handler, Request, Response, ResponseFuture};

pub(crate) struct PluginNode {
    instance: Arc<Instance>,
    /// The rest of the pipeline, for a filter.
    next: Option<NextHandle>,
    pool: WorkerPool,
    rt: Handle,
}

impl PluginNode {
    pub(super) fn new(
        instance: Arc<Instance>,
        next: Option<NextHandle>,
        pool: WorkerPool,
        rt: Handle,
    ) -> PluginNode {
        PluginNode {
            instance,
            next,
            pool,
            rt,
        }
    }
}

/// Call the instance on this thread (a worker, or the event loop for a
/// non-blocking app) and turn failures into a 500. Handlers behind a filter's
/// `next` then run here too, never queueing again.
fn call_here(
    instance: &Arc<Instance>,
    next: Option<&NextHandle>,
    rt: &Handle,
    mut req: Request,
) -> Response {
    req.on_worker = true;
    match instance.call(req, next, rt) {
        Ok(resp) => resp,
        Err(e) => {
            tracing::error!(plugin = instance.label(), "{e}");
            error_response(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// A call on the event loop longer than this broke the non-blocking promise (a
/// real one takes microseconds; the margin covers preemption on a busy machine).
const INLINE_LIMIT: Duration = Duration::from_millis(20);

/// [`INLINE_LIMIT`], or `PLUGHOST_INLINE_LIMIT_MS` from the environment: for runs
/// where wall time means nothing (under valgrind, whose one-thread-at-a-time
/// scheduling makes any call look slow now and then).
fn inline_limit() -> Duration {
    static LIMIT: OnceLock<Duration> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("PLUGHOST_INLINE_LIMIT_MS")
            .ok()
            .and_then(|ms| ms.trim().parse().ok())
            .map_or(INLINE_LIMIT, Duration::from_millis)
    })
}

impl Handler for PluginNode {
    fn call(&self, req: Request) -> ResponseFuture<'_> {
        if req.on_worker {
            // Already on a worker (called from a filter's `next`): no second queue.
            let resp = call_here(&self.instance, self.next.as_ref(), &self.rt, req);
            return Box::pin(std::future::ready(resp));
        }
        if self.instance.runs_inline() && http_body::Body::is_end_stream(&req.body) {
            // A non-blocking app with nothing to read: answer right here, without
            // the two thread hand-offs of the pool. Answered before the future is
            // made, so the request is not moved into it (nor the pool's timer).
            let started = Instant::now();
            let resp = call_here(&self.instance, None, &self.rt, req);
            self.instance
                .judge_inline(started.elapsed(), inline_limit());
            return Box::pin(std::future::ready(resp));
        }
        Box::pin(self.on_pool(req))
    }
}

impl PluginNode {
    /// Run the call on the worker pool, answering 504 past `request_timeout`.
    async fn on_pool(&self, req: Request) -> Response {
        let instance = self.instance.clone();
        let next = self.next.clone();
        let rt = self.rt.clone();
        let job = self
            .pool
            .run(move || call_here(&instance, next.as_ref(), &rt, req));
        match tokio::time::timeout(self.pool.timeout(), job).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                tracing::error!(plugin = self.instance.label(), "worker failed: {e}");
                error_response(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Err(_) => {
                // The call goes on (a thread cannot be stopped) and keeps its
                // worker until it returns, so the pool never oversubscribes.
                tracing::error!(
                    plugin = self.instance.label(),
                    "no response within request_timeout ({:?}); answering 504",
                    self.pool.timeout()
                );
                error_response(StatusCode::GATEWAY_TIMEOUT)
            }
        }
    }
}
