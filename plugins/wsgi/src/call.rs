//! One WSGI call: environ in, `Response` out, the iterable streamed.
//!
//! The head goes to the host once the app has produced its first non-empty
//! chunk (or finished), as PEP 3333 asks; until then `start_response` may be
//! called again with `exc_info`. Later chunks are pulled by the host one at a
//! time, each under the GIL only while Python produces it. The iterable's
//! `close()` runs exactly once: at its end, on an error, or when the host drops
//! the body (a client gone), then on the closer thread, never on the host's
//! event loop.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use plughost_sdk::{Body, Error, Level, Request, Response};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator, PyList, PyTuple};

use crate::start_response::{lock, Head, Shared, StartResponse};
use crate::stream::TARGET;

/// Call `app` for `req`. A Python exception (any, `SystemExit` included) is a
/// 500 with its traceback in the log.
pub(crate) fn serve(app: &PyObject, req: Request) -> Result<Response, Error> {
    crate::ffi::with_gil(|py| {
        let head: Shared = Arc::new(Mutex::new(Head::default()));
        let environ =
            crate::environ::build(py, req).map_err(|e| failed(py, "building the environ", e))?;
        let start = StartResponse { head: head.clone() };
        let result = app
            .call1(py, (environ, start))
            .map_err(|e| failed(py, "the WSGI app raised", e))?;
        respond(py, result.into_bound(py), head)
    })
}

fn respond(py: Python<'_>, result: Bound<'_, PyAny>, head: Shared) -> Result<Response, Error> {
    // A list or tuple of bytes (most apps): one body of known length.
    if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
        let mut body = Vec::new();
        for item in result.try_iter().map_err(|e| failed(py, "iterating", e))? {
            let item = item.map_err(|e| failed(py, "iterating", e))?;
            body.extend_from_slice(chunk(&item).map_err(|e| failed(py, "the body", e))?);
        }
        let mut h = lock(&head);
        let mut all: Vec<u8> = h.written.drain(..).flatten().collect();
        all.extend(body);
        drop(h);
        return head_of(py, &head).map(|r| r.body(all));
    }
    let iter = match result.try_iter() {
        Ok(iter) => iter.unbind(),
        Err(e) => {
            close(py, result.as_any());
            return Err(failed(py, "the app's result is not iterable", e));
        }
    };
    let mut stream = Chunks {
        iterable: Some(result.unbind()),
        iter,
        head: head.clone(),
        first: None,
    };
    // Pull until there is something to send, so the head is final.
    loop {
        if !lock(&head).written.is_empty() {
            break;
        }
        match stream.pull(py) {
            Ok(Some(bytes)) if bytes.is_empty() => continue,
            Ok(Some(bytes)) => {
                stream.first = Some(bytes);
                break;
            }
            Ok(None) => break,
            Err(e) => {
                stream.finish(py);
                return Err(failed(py, "the WSGI app raised", e));
            }
        }
    }
    let response = match head_of(py, &head) {
        Ok(r) => r,
        Err(e) => {
            stream.finish(py);
            return Err(e);
        }
    };
    if stream.iterable.is_none() {
        // Finished already: answer with what there is, length known.
        let mut all: Vec<u8> = lock(&head).written.drain(..).flatten().collect();
        all.extend(stream.first.take().unwrap_or_default());
        return Ok(response.body(all));
    }
    Ok(response.body(Body::from_chunks(stream)))
}

/// The response head the app gave, now final.
fn head_of(py: Python<'_>, head: &Shared) -> Result<Response, Error> {
    let mut h = lock(head);
    h.sent = true;
    let Some((code, reason)) = h.status.clone() else {
        drop(h);
        let e = pyo3::exceptions::PyAssertionError::new_err(
            "the app returned without calling start_response",
        );
        return Err(failed(py, "the WSGI app", e));
    };
    let mut response = Response::new(code);
    response.reason = (!reason.is_empty()).then_some(reason);
    response.headers = std::mem::take(&mut h.headers);
    Ok(response)
}

fn chunk<'a>(item: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    item.downcast::<PyBytes>()
        .map(|b| b.as_bytes())
        .map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "the app yielded {}, not bytes",
                item.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })
}

/// The streamed rest of a response.
struct Chunks {
    /// The app's iterable until `close()` ran.
    iterable: Option<PyObject>,
    iter: Py<PyIterator>,
    head: Shared,
    first: Option<Vec<u8>>,
}

impl Chunks {
    /// The next chunk; `None` (after closing) at the end.
    fn pull(&mut self, py: Python<'_>) -> PyResult<Option<Vec<u8>>> {
        if self.iterable.is_none() {
            return Ok(None);
        }
        let mut iter = self.iter.bind(py).clone();
        match iter.next() {
            Some(Ok(item)) => Ok(Some(chunk(&item)?.to_vec())),
            Some(Err(e)) => Err(e),
            None => {
                self.finish(py);
                Ok(None)
            }
        }
    }

    /// Call `close()` (once).
    fn finish(&mut self, py: Python<'_>) {
        if let Some(iterable) = self.iterable.take() {
            close(py, iterable.bind(py));
        }
    }
}

impl Iterator for Chunks {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        let written: Vec<u8> = lock(&self.head).written.drain(..).flatten().collect();
        if !written.is_empty() {
            return Some(Ok(written));
        }
        if let Some(first) = self.first.take() {
            return Some(Ok(first));
        }
        crate::ffi::with_gil(|py| loop {
            match self.pull(py) {
                Ok(Some(bytes)) if bytes.is_empty() => continue,
                Ok(Some(bytes)) => return Some(Ok(bytes)),
                Ok(None) => {
                    let rest: Vec<u8> = lock(&self.head).written.drain(..).flatten().collect();
                    return (!rest.is_empty()).then_some(Ok(rest));
                }
                Err(e) => {
                    self.finish(py);
                    let message = failed(py, "the WSGI app raised while streaming", e);
                    return Some(Err(std::io::Error::other(message.message().to_owned())));
                }
            }
        })
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        if let Some(iterable) = self.iterable.take() {
            closer(iterable);
        }
    }
}

/// Hand `iterable` to the closer thread (the host may drop a body anywhere,
/// even on its event loop, which must not wait for the GIL).
fn closer(iterable: PyObject) {
    static CLOSER: OnceLock<Mutex<mpsc::Sender<PyObject>>> = OnceLock::new();
    let sender = CLOSER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<PyObject>();
        std::thread::Builder::new()
            .name("wsgi-close".into())
            .spawn(move || {
                for iterable in rx {
                    crate::ffi::with_gil(|py| close(py, iterable.bind(py)));
                }
            })
            .expect("spawning the WSGI closer thread");
        Mutex::new(tx)
    });
    let _ = sender
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(iterable);
}

/// `iterable.close()` if it has one; its exception is logged.
fn close(py: Python<'_>, iterable: &Bound<'_, PyAny>) {
    match iterable.hasattr("close") {
        Ok(true) => {
            if let Err(e) = iterable.call_method0("close") {
                failed(py, "the app's close() raised", e);
            }
        }
        Ok(false) => {}
        Err(e) => {
            failed(py, "the app's result", e);
        }
    }
}

/// Log `err` with its traceback; the error the host answers 500 for.
pub(crate) fn failed(py: Python<'_>, what: &str, err: PyErr) -> Error {
    let text = traceback(py, &err);
    plughost_sdk::log(Level::Error, TARGET, &format!("{what}:\n{text}"));
    let last = text.lines().last().unwrap_or("").to_owned();
    Error::new(format!("{what}: {last}"))
}

/// The formatted traceback (never `PyErr_Print`, which exits on `SystemExit`).
pub(crate) fn traceback(py: Python<'_>, err: &PyErr) -> String {
    let formatted = py.import("traceback").and_then(|tb| {
        tb.call_method1(
            "format_exception",
            (err.get_type(py), err.value(py), err.traceback(py)),
        )?
        .extract::<Vec<String>>()
    });
    match formatted {
        Ok(lines) => lines.concat().trim_end().to_owned(),
        Err(_) => err.to_string(),
    }
}
