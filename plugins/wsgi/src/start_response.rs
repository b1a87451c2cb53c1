//! `start_response` and the `write()` callable it returns, with PEP 3333's
//! rules: a second call only with `exc_info`, which re-raises once the head has
//! gone out; status and headers checked (latin-1 strings, no hop-by-hop).

use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

/// What the app has said about its response so far.
#[derive(Default)]
pub(crate) struct Head {
    /// `200 OK`, once `start_response` ran.
    pub(crate) status: Option<(u16, String)>,
    pub(crate) headers: Vec<(String, String)>,
    /// The head has been handed to the host; it can no longer change.
    pub(crate) sent: bool,
    /// Bytes given to `write()`, not yet handed on.
    pub(crate) written: Vec<Vec<u8>>,
}

pub(crate) type Shared = Arc<Mutex<Head>>;

pub(crate) fn lock(head: &Shared) -> std::sync::MutexGuard<'_, Head> {
    head.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `start_response` callable of one request.
#[pyclass(module = "plughost")]
pub(crate) struct StartResponse {
    pub(crate) head: Shared,
}

/// The `write()` callable `start_response` returns.
#[pyclass(module = "plughost")]
pub(crate) struct Write {
    head: Shared,
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

/// A native string's bytes (its code points must all be latin-1).
fn latin1(what: &str, s: &str) -> PyResult<String> {
    if s.is_ascii() {
        return Ok(s.to_owned());
    }
    let bytes = s
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| PyValueError::new_err(format!("{what} {s:?} is not latin-1")))?;
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

fn parse_status(status: &str) -> PyResult<(u16, String)> {
    let status = latin1("status", status)?;
    let code = status
        .get(..3)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| *c >= 100)
        .filter(|_| status.as_bytes().get(3) == Some(&b' '))
        .ok_or_else(|| PyValueError::new_err(format!("status {status:?} is not `NNN Reason`")))?;
    Ok((code, status[4..].to_owned()))
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn __call__(
        &self,
        py: Python<'_>,
        status: &str,
        headers: Vec<(String, String)>,
        exc_info: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Write> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        let mut head = lock(&self.head);
        match &exc_info {
            Some(info) if head.sent => {
                // PEP 3333: too late to change the response; re-raise the app's error.
                let info = info.downcast::<PyTuple>().map_err(|_| {
                    PyTypeError::new_err("exc_info must be a (type, value, traceback) tuple")
                })?;
                drop(head);
                let value = info.get_item(1)?;
                return Err(PyErr::from_value(value));
            }
            None if head.status.is_some() => {
                return Err(PyAssertionError::new_err(
                    "start_response called a second time without exc_info",
                ));
            }
            _ => {}
        }
        let status = parse_status(status)?;
        let mut checked = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            if HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
                return Err(PyValueError::new_err(format!(
                    "hop-by-hop header {name:?} is the server's to send"
                )));
            }
            checked.push((
                latin1("header name", &name)?,
                latin1("header value", &value)?,
            ));
        }
        head.status = Some(status);
        head.headers = checked;
        let _ = py;
        Ok(Write {
            head: self.head.clone(),
        })
    }
}

#[pymethods]
impl Write {
    fn __call__(&self, data: &Bound<'_, PyBytes>) -> PyResult<()> {
        let mut head = lock(&self.head);
        if head.status.is_none() {
            return Err(PyAssertionError::new_err(
                "write() called before start_response",
            ));
        }
        head.written.push(data.as_bytes().to_vec());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_need_three_digits_and_a_reason() {
        assert_eq!(parse_status("200 OK").unwrap(), (200, "OK".to_owned()));
        assert_eq!(parse_status("404 ").unwrap(), (404, String::new()));
        pyo3::prepare_freethreaded_python();
        assert!(parse_status("200").is_err());
        assert!(parse_status("20 OK").is_err());
        assert!(parse_status("abc OK").is_err());
    }
}
