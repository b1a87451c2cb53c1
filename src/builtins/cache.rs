//! `egg:plughost#cache` (= `egg:wsgi_cache#middleware`): the disk page cache filter.

use std::sync::Arc;

use crate::config::Component;
use crate::pipeline::Handler;

/// Create the cache filter for a section, wrapping `next`.
pub fn filter(c: &Component, next: Arc<dyn Handler>) -> Result<Arc<dyn Handler>, String> {
    let _ = (c, next);
    Err("the cache filter is not available yet".into())
}
