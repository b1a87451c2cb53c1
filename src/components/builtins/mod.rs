//! Components built into the host, each reachable under its plughost name and
//! its Paste Deploy (or wsgi_cache, waitress) name, so existing files keep working.

pub(crate) mod cache;
pub(crate) mod file_response;
pub(crate) mod gzip;
pub(crate) mod metrics;
pub(crate) mod proxy;
pub(crate) mod static_files;
pub(crate) mod translogger;
pub(crate) mod url_path;
pub(crate) mod urlmap;

#[cfg(test)]
mod tests;

use crate::core::builtin::{Builtin, Catalog, Make};

/// Every built-in. Adding one is a module with a `BUILTIN` row and a line here.
pub(crate) static ALL: &[Builtin] = &[
    urlmap::BUILTIN,
    static_files::BUILTIN,
    cache::BUILTIN,
    translogger::BUILTIN,
    metrics::BUILTIN,
    proxy::BUILTIN,
    gzip::BUILTIN,
    HTTP,
];

/// The table of built-ins, as the configuration model resolves names against it.
pub fn catalog() -> Catalog {
    Catalog(ALL)
}

/// `egg:plughost#http`: the HTTP server, only in `[server:]` sections (the edge runs it).
const HTTP: Builtin = Builtin {
    name: "http",
    aliases: &[
        ("Paste", "http"),
        ("waitress", "main"),
        ("gunicorn", "main"),
        ("pyramid", "wsgiref"),
    ],
    make: Make::Server,
};
