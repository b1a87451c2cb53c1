//! The live pipeline, swappable while serving: a reload builds a whole new
//! handler tree beside the running one and swaps it in atomically. Each
//! request keeps the tree it started on alive (through its response body), so
//! old instances are dropped only when their last request has finished.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use crate::core::{Body, BodyError, Handler, Request, ResponseFuture};

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
            resp.map(|body| Keep { body, _tree: tree }.boxed_unsync())
        })
    }
}

/// A body that keeps the tree that produced it alive until it is dropped.
struct Keep {
    body: Body,
    _tree: Arc<dyn Handler>,
}

impl http_body::Body for Keep {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
