//! The live pipeline, swappable while serving: a reload builds a whole new
//! handler tree beside the running one and swaps it in atomically. Each
//! request keeps the tree it started on alive (through its response body), so
//! old instances are dropped only when their last request has finished.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::core::{Handler, Head, Request, Response, ResponseFuture};

/// A handler that forwards to whichever tree is current.
pub struct Swappable {
    current: ArcSwap<Arc<dyn Handler>>,
}

impl Swappable {
    pub fn new(handler: Arc<dyn Handler>) -> Swappable {
        Swappable {
            current: ArcSwap::from_pointee(handler),
        }
    }

    /// Make `handler` current for requests that start from now on.
    pub fn swap(&self, handler: Arc<dyn Handler>) {
        self.current.store(Arc::new(handler));
    }
}

impl Handler for Swappable {
    fn call(&self, req: Request) -> ResponseFuture<'_> {
        let tree: Arc<dyn Handler> = Arc::clone(&self.current.load());
        Box::pin(async move {
            let resp = tree.call(req).await;
            // The tree rides on the body as a guard, whatever its kind: a
            // file-backed hit stays file-backed.
            resp.map(|body| body.keep_alive(tree))
        })
    }

    /// The current tree's ready answer. It needs no guard: a ready answer's
    /// body is bytes the handler shares, never code of the tree.
    fn answer_now(&self, head: &Head<'_>) -> Option<Response> {
        self.current.load().answer_now(head)
    }
}
