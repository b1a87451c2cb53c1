//! Components built into the host, each reachable under its plughost name and
//! its Paste Deploy (or wsgi_cache, waitress) name, so existing files keep working.

pub mod cache;
pub mod file_response;
pub mod metrics;
pub mod static_files;
pub mod translogger;
pub mod urlmap;

pub(crate) use crate::core::config::builtin::{Builtin, Role};
