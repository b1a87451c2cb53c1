//! `egg:plughost#static`: serve files from `document_root`.

use std::sync::Arc;

use crate::config::Component;
use crate::pipeline::Handler;

/// Create the static app for a section.
pub fn app(c: &Component) -> Result<Arc<dyn Handler>, String> {
    let _ = c;
    Err("the static app is not available yet".into())
}
