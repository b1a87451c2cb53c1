//! plughost: a compiled host for WSGI-style web apps and filters loaded from
//! plugin libraries and composed by a Paste-Deploy-style `deploy.ini`.
//!
//! Four floors, each importing only from the floors below it (see
//! ARCHITECTURE.md): [`core`] (requests, bodies, the handler trait, metrics,
//! the configuration model), [`components`] (built-ins and plugins),
//! [`assembly`] (building and swapping pipelines, the worker pool, reload) and
//! [`edge`] (the HTTP server, logging, `check` output; `main.rs` beside it).
//!
//! No `unsafe` code outside the plugin loader (`components::plugin`), whose
//! modules allow it one by one.

#![deny(unsafe_code)]
#![warn(unreachable_pub)]

pub mod assembly;
pub mod components;
pub mod core;
pub mod edge;

use std::path::Path;

/// Read and resolve a configuration against the host's own built-ins (what
/// `plughost check` and `serve` do before building anything).
pub fn load(
    path: &Path,
    app_name: Option<&str>,
    server_name: Option<&str>,
    vars: &[(String, String)],
) -> Result<core::config::Deployment, core::config::ConfigError> {
    core::config::load(
        path,
        app_name,
        server_name,
        vars,
        components::builtins::catalog(),
    )
}
