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
