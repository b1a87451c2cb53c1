//! Waiting for a future from a plugin worker thread.
//!
//! Plugin code is synchronous, but what it calls back into (a request body, the
//! rest of the pipeline behind a filter) is async. Tokio's `Handle::block_on`
//! refuses to nest, and nesting is normal here: filter → next → app → body. So
//! worker threads wait with a minimal thread-parking executor (pollster) inside
//! the runtime's context, which lets the futures use tokio's timers, I/O and
//! blocking pool while never entering the runtime twice.

use std::future::Future;

use tokio::runtime::Handle;

/// Wait for `fut` on this (non-runtime) thread.
pub(crate) fn wait<F: Future>(fut: F) -> F::Output {
    pollster::block_on(fut)
}

/// Wait for `fut` with `rt`'s context entered (for futures that need tokio).
pub(crate) fn wait_in<F: Future>(rt: &Handle, fut: F) -> F::Output {
    let _context = rt.enter();
    pollster::block_on(fut)
}
