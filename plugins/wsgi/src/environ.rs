//! The one place that reads the SDK's `Request`: it becomes a PEP 3333 environ.
//!
//! Strings are "native strings": the bytes as received, decoded as latin-1
//! (PEP 3333), so an app that re-encodes them gets the client's bytes back.

use plughost_sdk::Request;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::input::Input;
use crate::stream::{Errors, FileWrapper};

/// `s`'s bytes as a latin-1 native string.
pub(crate) fn native<'py>(py: Python<'py>, s: &str) -> Bound<'py, PyString> {
    if s.is_ascii() {
        PyString::new(py, s)
    } else {
        let wide: String = s.bytes().map(char::from).collect();
        PyString::new(py, &wide)
    }
}

/// The environ for `req`; its body moves into `wsgi.input`.
pub(crate) fn build<'py>(py: Python<'py>, mut req: Request) -> PyResult<Bound<'py, PyDict>> {
    let env = PyDict::new(py);
    env.set_item("REQUEST_METHOD", native(py, &req.method))?;
    env.set_item("SCRIPT_NAME", native(py, &req.script_name))?;
    env.set_item("PATH_INFO", native(py, &req.path_info))?;
    env.set_item("QUERY_STRING", native(py, &req.query_string))?;
    env.set_item("SERVER_NAME", native(py, &req.server_name))?;
    env.set_item("SERVER_PORT", req.server_port.to_string())?;
    env.set_item("SERVER_PROTOCOL", native(py, &req.protocol))?;
    env.set_item("REMOTE_ADDR", native(py, &req.remote_addr))?;
    env.set_item("REMOTE_PORT", req.remote_port.to_string())?;
    env.set_item("RAW_URI", native(py, &req.raw_path))?;
    env.set_item("REQUEST_URI", native(py, &req.raw_path))?;
    if let Some(len) = req.content_length {
        env.set_item("CONTENT_LENGTH", len.to_string())?;
    }
    for (name, value) in &req.headers {
        let name: &str = name;
        let value: &str = value;
        let key = match name {
            n if n.eq_ignore_ascii_case("content-type") => "CONTENT_TYPE".to_owned(),
            n if n.eq_ignore_ascii_case("content-length") => continue,
            n => format!("HTTP_{}", n.to_ascii_uppercase().replace('-', "_")),
        };
        // Repeated headers are joined, as CGI does (`Cookie` with "; ").
        let joined = match env.get_item(&key)? {
            Some(prev) => {
                let sep = if key == "HTTP_COOKIE" { "; " } else { "," };
                format!("{}{sep}{}", prev.extract::<String>()?, native(py, value))
            }
            None => native(py, value).to_string(),
        };
        env.set_item(key, joined)?;
    }
    for (key, value) in &req.extras {
        let key: &str = key;
        let value: &str = value;
        env.set_item(key, native(py, value))?;
    }
    env.set_item("wsgi.version", (1, 0))?;
    env.set_item("wsgi.url_scheme", native(py, &req.scheme))?;
    let body = std::mem::take(&mut req.body);
    env.set_item("wsgi.input", Input::new(body, req.content_length))?;
    env.set_item("wsgi.errors", Errors::new())?;
    env.set_item("wsgi.multithread", true)?;
    env.set_item("wsgi.multiprocess", false)?;
    env.set_item("wsgi.run_once", false)?;
    env.set_item("wsgi.input_terminated", true)?;
    env.set_item("wsgi.file_wrapper", py.get_type::<FileWrapper>())?;
    Ok(env)
}

/// The request a Python filter passes on: the environ turned back into an SDK
/// `Request` (native strings back to their bytes), its body read from
/// `wsgi.input` as the handlers downstream ask for it.
pub(crate) fn request_from(py: Python<'_>, env: &Bound<'_, PyDict>) -> PyResult<Request<'static>> {
    let get = |key: &str| -> PyResult<String> {
        match env.get_item(key)? {
            Some(v) => Ok(unnative(&v.extract::<String>()?)),
            None => Ok(String::new()),
        }
    };
    let method = get("REQUEST_METHOD")?;
    let mut req = Request::new(
        if method.is_empty() { "GET" } else { &method },
        &get("PATH_INFO")?,
    );
    req.script_name = get("SCRIPT_NAME")?.into();
    req.query_string = get("QUERY_STRING")?.into();
    req.raw_path = format!("{}{}", req.script_name, req.path_info).into();
    if !req.query_string.is_empty() {
        req.raw_path = format!("{}?{}", req.raw_path, req.query_string).into();
    }
    req.scheme = get("wsgi.url_scheme")?.into();
    req.protocol = get("SERVER_PROTOCOL")?.into();
    req.server_name = get("SERVER_NAME")?.into();
    req.server_port = get("SERVER_PORT")?.parse().unwrap_or(0);
    req.remote_addr = get("REMOTE_ADDR")?.into();
    req.remote_port = get("REMOTE_PORT")?.parse().unwrap_or(0);
    req.content_length = get("CONTENT_LENGTH")?.trim().parse().ok();
    for (key, value) in env.iter() {
        let Ok(key) = key.extract::<String>() else {
            continue;
        };
        let Ok(value) = value.extract::<String>() else {
            continue;
        };
        let value = unnative(&value);
        if let Some(name) = key.strip_prefix("HTTP_") {
            req.headers.push((
                name.to_ascii_lowercase().replace('_', "-").into(),
                value.into(),
            ));
        } else if key == "CONTENT_TYPE" {
            req.headers.push(("content-type".into(), value.into()));
        } else if !CGI_KEYS.contains(&key.as_str()) && !key.starts_with("wsgi.") {
            req.extras.push((key.into(), value.into()));
        }
    }
    if let Some(len) = req.content_length {
        req.headers
            .push(("content-length".into(), len.to_string().into()));
    }
    if let Some(input) = env.get_item("wsgi.input")? {
        req.body = plughost_sdk::RequestBody::from_reader(PyReader(input.unbind()));
    }
    let _ = py;
    Ok(req)
}

/// The environ keys `request_from` maps to `Request` fields.
const CGI_KEYS: &[&str] = &[
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_PROTOCOL",
    "SERVER_NAME",
    "SERVER_PORT",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "CONTENT_LENGTH",
    "CONTENT_TYPE",
    "RAW_URI",
    "REQUEST_URI",
];

/// A native string back to its bytes (read as UTF-8, lossily).
fn unnative(s: &str) -> String {
    if s.is_ascii() {
        return s.to_owned();
    }
    match s
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
    {
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        None => s.to_owned(),
    }
}

/// A Python file (`wsgi.input`) as `std::io::Read`, taking the GIL per read.
struct PyReader(PyObject);

impl std::io::Read for PyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        crate::ffi::with_gil(|py| {
            let data = self
                .0
                .call_method1(py, "read", (buf.len(),))
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let data = data
                .downcast_bound::<pyo3::types::PyBytes>(py)
                .map_err(|_| std::io::Error::other("wsgi.input.read() returned no bytes"))?;
            let bytes = data.as_bytes();
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            Ok(n)
        })
    }
}
