//! The WSGI bridge: Python WSGI apps in a plughost pipeline.
//!
//! An ordinary plugin on the public ABI. It embeds CPython through pyo3 (this
//! library links libpython; the host never does) and speaks PEP 3333:
//! `egg:plughost#wsgi` (entry `wsgi`) mounts a WSGI callable. Python runs on
//! the threads that call the plugin (the host's worker pool, and the blocking
//! threads that pull response bodies), never on the host's event loop.

#![deny(unsafe_code)]

mod call;
mod environ;
#[allow(unsafe_code)]
mod ffi;
mod filter;
mod input;
mod interp;
mod load;
mod start_response;
mod stream;

use std::path::{Path, PathBuf};

use plughost_sdk::{App, Config, Error, Filter, Next, Request, Response};
use pyo3::prelude::*;

/// The keys of `[app:] use = egg:plughost#wsgi`.
const APP_KEYS: &[&str] = &["app", "paste", "paste_protocol", "python_path"];

/// `egg:plughost#wsgi`: a Python WSGI application.
struct WsgiApp {
    app: PyObject,
}

impl App for WsgiApp {
    fn new(config: &Config) -> Result<Self, Error> {
        // With `paste`, the other keys are the Paste factory's (its local_conf).
        if config.get("paste").is_none() {
            config.expect_keys(APP_KEYS)?;
        }
        interp::ensure().map_err(Error::new)?;
        let dirs = python_path(config);
        Python::with_gil(|py| {
            interp::prepend_path(py, &dirs).map_err(|e| located(py, "python_path", e))?;
            let app = match (config.get("app"), config.get("paste")) {
                (Some(spec), None) => load::object(py, spec).map_err(|e| located(py, "app", e))?,
                (None, Some(uri)) => {
                    let factory = load::entry_point(py, uri, "paste.app_factory")
                        .map_err(|e| located(py, "paste", e))?;
                    let (global, local) = load::paste_args(py, config, APP_KEYS)
                        .map_err(|e| located(py, "paste", e))?;
                    factory
                        .call((global,), Some(&local))
                        .map_err(|e| located(py, "paste", e))?
                        .unbind()
                }
                (Some(_), Some(_)) => {
                    return Err(Error::new(
                        "`app` and `paste` both name the application; keep one",
                    ))
                }
                (None, None) => {
                    return Err(Error::new(
                        "missing required key `app` (package.module:callable) or `paste` (egg:DIST#ENTRY)",
                    ))
                }
            };
            Ok(WsgiApp { app })
        })
    }

    fn call(&self, req: Request) -> Result<Response, Error> {
        call::serve(&self.app, req)
    }
}

/// The keys of `[filter:] use = egg:plughost#wsgi-filter`.
const FILTER_KEYS: &[&str] = &["filter", "paste", "paste_protocol", "python_path"];

/// `egg:plughost#wsgi-filter`: Python middleware around the rest of the pipeline.
struct WsgiFilter {
    app: PyObject,
}

impl Filter for WsgiFilter {
    fn new(config: &Config) -> Result<Self, Error> {
        if config.get("paste").is_none() {
            config.expect_keys(FILTER_KEYS)?;
        }
        interp::ensure().map_err(Error::new)?;
        let dirs = python_path(config);
        Python::with_gil(|py| {
            interp::prepend_path(py, &dirs).map_err(|e| located(py, "python_path", e))?;
            let downstream =
                Py::new(py, filter::Downstream).map_err(|e| located(py, "filter", e))?;
            let app = match (config.get("filter"), config.get("paste")) {
                (Some(spec), None) => load::object(py, spec)
                    .and_then(|f| f.call1(py, (downstream,)))
                    .map_err(|e| located(py, "filter", e))?,
                (None, Some(uri)) => {
                    let (global, local) = load::paste_args(py, config, FILTER_KEYS)
                        .map_err(|e| located(py, "paste", e))?;
                    // `paste_protocol` (from a `paste.filter_app_factory =` key)
                    // says which; an entry point is looked up in both groups.
                    let filter_app = config.get("paste_protocol") == Some("paste.filter_app_factory");
                    let made = if filter_app {
                        filter_app_call(py, uri, &downstream, global, &local)
                    } else {
                        match load::entry_point(py, uri, "paste.filter_factory") {
                            Ok(factory) => factory
                                .call((global,), Some(&local))
                                .and_then(|f| f.call1((downstream.clone_ref(py),))),
                            Err(_) => filter_app_call(py, uri, &downstream, global, &local),
                        }
                    };
                    made.map_err(|e| located(py, "paste", e))?.unbind()
                }
                (Some(_), Some(_)) => {
                    return Err(Error::new(
                        "`filter` and `paste` both name the middleware; keep one",
                    ))
                }
                (None, None) => {
                    return Err(Error::new(
                        "missing required key `filter` (package.module:callable taking the app) or `paste` (egg:DIST#ENTRY)",
                    ))
                }
            };
            Ok(WsgiFilter { app })
        })
    }

    fn call(&self, req: Request, next: Next<'_>) -> Result<Response, Error> {
        filter::serve(&self.app, req, next)
    }
}

/// A `paste.filter_app_factory`: called with the app it wraps, then the configs.
fn filter_app_call<'py>(
    py: Python<'py>,
    uri: &str,
    downstream: &Py<filter::Downstream>,
    global: Bound<'py, pyo3::types::PyDict>,
    local: &Bound<'py, pyo3::types::PyDict>,
) -> PyResult<Bound<'py, PyAny>> {
    load::entry_point(py, uri, "paste.filter_app_factory")
        .and_then(|factory| factory.call((downstream.clone_ref(py), global), Some(local)))
}

/// `python_path`: directories (whitespace-separated), relative to `here`.
fn python_path(config: &Config) -> Vec<PathBuf> {
    let here = config
        .global("here")
        .map(Path::new)
        .unwrap_or(Path::new("."));
    config
        .get("python_path")
        .unwrap_or_default()
        .split_whitespace()
        .map(|d| here.join(d))
        .collect()
}

/// A start-up error naming the key; the host adds file, line and section.
fn located(py: Python<'_>, key: &str, err: PyErr) -> Error {
    let text = call::traceback(py, &err);
    let last = text.lines().last().unwrap_or_default();
    Error::new(format!("`{key}`: {last}\n{text}"))
}

plughost_sdk::export_plugin!(
    name: "plughost-wsgi",
    apps: { "wsgi" => WsgiApp },
    filters: { "wsgi-filter" => WsgiFilter },
);
