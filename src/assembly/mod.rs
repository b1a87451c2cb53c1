//! The third floor: turning a resolved configuration into a running pipeline
//! (built-ins and plugin instances chained into handlers), the worker pool
//! plugin calls run on, the live swappable pipeline and reloads.

mod build;
mod plugin_node;
mod pool;
mod python_watch;
pub(crate) mod reload;
mod swap;

pub use build::{build, BuildError, Failure, Pipeline};
pub(crate) use build::{build_reusing, Reusable};
pub use pool::WorkerPool;
pub(crate) use swap::Swappable;
