//! Finding the Python callable a section names: `module:attr` (with
//! `module:factory()` calling a no-argument factory) or a Paste entry point
//! `egg:DIST#ENTRY`, called with global_conf and local_conf as Paste does.

use plughost_sdk::Config;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// `package.module:callable`, or `package.module:factory()`.
pub(crate) fn object(py: Python<'_>, spec: &str) -> PyResult<PyObject> {
    let spec = spec.trim();
    let (call, spec) = match spec.strip_suffix("()") {
        Some(s) => (true, s),
        None => (false, spec),
    };
    let (module, attr) = spec.split_once(':').ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!(
            "`{spec}`: expected package.module:callable"
        ))
    })?;
    let mut obj = py.import(module.trim())?.into_any();
    for part in attr.trim().split('.') {
        obj = obj.getattr(part)?;
    }
    if call {
        obj = obj.call0()?;
    }
    Ok(obj.unbind())
}

/// The entry point `ENTRY` (default `main`) of distribution `DIST` in `group`.
pub(crate) fn entry_point<'py>(
    py: Python<'py>,
    uri: &str,
    group: &str,
) -> PyResult<Bound<'py, PyAny>> {
    // `call:module:attr` (Paste's `call:` and protocol keys): the object itself,
    // whose protocol the caller knows.
    if let Some(spec) = uri.trim().strip_prefix("call:") {
        let found = object(py, spec)?.into_bound(py);
        let module = spec.split(':').next().unwrap_or_default();
        let file = py
            .import("sys")
            .and_then(|sys| sys.getattr("modules")?.get_item(module.trim()))
            .and_then(|m| m.getattr("__file__"))
            .and_then(|f| f.str().map(|s| s.to_string()))
            .unwrap_or_else(|_| "?".into());
        plughost_sdk::log(
            plughost_sdk::Level::Info,
            crate::stream::TARGET,
            &format!("call:{spec}: {group} from {file}"),
        );
        return Ok(found);
    }
    let rest = uri.trim().strip_prefix("egg:").ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!(
            "`{uri}`: expected egg:DIST#ENTRY or call:module:attr"
        ))
    })?;
    let (dist, entry) = rest.split_once('#').unwrap_or((rest, "main"));
    let dist = dist.split("==").next().unwrap_or(dist).trim();
    let metadata = py.import("importlib.metadata")?;
    let found = metadata
        .call_method1("distribution", (dist,))
        .map_err(|_| {
            pyo3::exceptions::PyLookupError::new_err(format!(
                "`{uri}`: no Python distribution `{dist}` in this environment"
            ))
        })?;
    for ep in found.getattr("entry_points")?.try_iter()? {
        let ep = ep?;
        if ep.getattr("group")?.extract::<String>()? == group
            && ep.getattr("name")?.extract::<String>()? == entry.trim()
        {
            let loaded = ep.call_method0("load")?;
            log_origin(py, uri, group, &found, &ep);
            return Ok(loaded);
        }
    }
    Err(pyo3::exceptions::PyLookupError::new_err(format!(
        "`{uri}`: distribution `{dist}` has no `{entry}` entry point in {group}"
    )))
}

/// Paste's `(global_conf, **local_conf)`, without the bridge's own keys.
pub(crate) fn paste_args<'py>(
    py: Python<'py>,
    config: &Config,
    own: &[&str],
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyDict>)> {
    let global = PyDict::new(py);
    for (k, v) in config.global_conf() {
        global.set_item(k, v)?;
    }
    let local = PyDict::new(py);
    for (k, v) in config.local_conf() {
        if !own.contains(&k.as_str()) {
            local.set_item(k, v)?;
        }
    }
    Ok((global, local))
}

/// Say where an entry point came from: distribution, version, `module:attr`, file.
fn log_origin(
    py: Python<'_>,
    uri: &str,
    group: &str,
    dist: &Bound<'_, PyAny>,
    ep: &Bound<'_, PyAny>,
) {
    let text = |obj: PyResult<Bound<'_, PyAny>>| {
        obj.and_then(|o| o.str().map(|s| s.to_string()))
            .unwrap_or_else(|_| "?".into())
    };
    let value = text(ep.getattr("value"));
    let module = value.split(':').next().unwrap_or_default().to_owned();
    let file = text(
        py.import("sys")
            .and_then(|sys| sys.getattr("modules")?.get_item(module.as_str()))
            .and_then(|m| m.getattr("__file__")),
    );
    let name = text(dist.getattr("name"));
    let version = text(dist.getattr("version"));
    plughost_sdk::log(
        plughost_sdk::Level::Info,
        crate::stream::TARGET,
        &format!("{uri}: {group} entry point {value} of Python distribution {name} {version}, from {file}"),
    );
}
