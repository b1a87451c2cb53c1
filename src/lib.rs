//! plughost: a compiled host for WSGI-style web apps and filters loaded from
//! plugin libraries and composed by a Paste-Deploy-style `deploy.ini`.
//!
//! Four floors, each importing only from the floors below it (see
//! ARCHITECTURE.md; `tests/layering.rs` checks it): `core` (requests, bodies,
//! the handler trait, metrics, the configuration model), `components`
//! (built-ins and plugins), `assembly` (building and swapping pipelines, the
//! worker pool, reload) and `edge` (the HTTP server, logging, `check` output;
//! `main.rs` beside it).
//!
//! The floors are private. What this library exports is only what the
//! `plughost` binary, the benchmarks, the fuzz targets and the integration
//! tests use, so every other item is crate-private and an unused one is a
//! dead-code warning instead of API nobody calls.
//!
//! No `unsafe` code outside the plugin loader (`components::plugin`), whose
//! modules allow it one by one.

#![deny(unsafe_code)]
#![deny(unreachable_pub)]

mod assembly;
mod components;
mod core;
mod edge;

pub use crate::assembly::reload::{LoadSpec, Reloader};
pub use crate::assembly::{build, BuildError, Failure, Pipeline, WorkerPool};
pub use crate::components::builtins::catalog;
pub use crate::components::plugin::{Instance, Registry};
pub use crate::core::location::{Location, Warning};
pub use crate::core::{body, Body, BodyError, Handler, Head, Request, Response, ResponseFuture};

/// The configuration model: resolving a deploy.ini without loading code.
pub mod config {
    pub use crate::core::config::{
        ini, interpolate, ConfigError, Deployment, ErrorKind, MainFile, Source,
    };
}

/// The disk cache's URL mapping (for property tests, fuzzing and benchmarks)
/// and its purge (for `plughost cache purge`).
pub mod cache {
    pub use crate::components::builtins::cache::purge::{publish, PurgeError, Purger};
    pub use crate::components::builtins::cache::report::{Outcome, Report, REFRESH, REPORT};
    pub use crate::components::builtins::cache::valid_tag;
    pub use crate::components::builtins::cache::{path, BUILTIN};
}

/// The HTTP server and the environ it builds.
pub mod server {
    pub use crate::edge::server::{adopt, bind, environ, keep_unix_socket_file, serve};
}

pub use crate::edge::{check, handover, logging};

/// `plughost cache purge --soft`: pages refreshed through the pipeline in-process.
pub mod soft_purge {
    pub use crate::edge::soft_purge::{run, Refreshed, SoftPurgeError};
}

/// `plughost cache warm`: pages requested through the pipeline in-process.
pub mod warm {
    pub use crate::edge::in_process::RequestError;
    pub use crate::edge::warm::sources::SourceError;
    pub use crate::edge::warm::{run, Options, Summary, WarmError};
}

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
