//! `egg:plughost#wsgi-filter`: Python middleware around the rest of the
//! pipeline, which it sees as an ordinary WSGI app (`Downstream`).
//!
//! The SDK's `Next` belongs to the thread that got the call, so the Python side
//! of each request runs on a scoped thread of its own; when the middleware
//! calls the app below it, `Downstream` hands the request back to the calling
//! thread (with the GIL released while it waits), which calls `next`.

use std::cell::RefCell;
use std::io::Read;
use std::sync::mpsc;
use std::sync::Mutex;

use plughost_sdk::{Error, Next, Request, Response};
use pyo3::exceptions::{PyRuntimeError, PyStopIteration};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

/// What the Python thread of one request says to its calling thread.
enum Message {
    /// The middleware called the app below it.
    Downstream(Box<Request<'static>>, mpsc::Sender<Result<Response, Error>>),
    /// The middleware's own response.
    Done(Result<Response, Error>),
}

thread_local! {
    /// The calling thread of the request this (scoped) thread runs.
    static LINK: RefCell<Option<mpsc::Sender<Message>>> = const { RefCell::new(None) };
}

/// Run `app` (the middleware) for `req`, serving its calls of the rest of the
/// pipeline with `next`.
pub(crate) fn serve(app: &PyObject, req: Request, next: Next<'_>) -> Result<Response, Error> {
    let (tx, rx) = mpsc::channel::<Message>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            LINK.with(|l| *l.borrow_mut() = Some(tx.clone()));
            let result = crate::call::serve(app, req);
            LINK.with(|l| l.borrow_mut().take());
            let _ = tx.send(Message::Done(result));
        });
        let mut next = Some(next);
        for message in rx {
            match message {
                Message::Downstream(req, reply) => {
                    let answer = match next.take() {
                        Some(next) => next.call(*req),
                        None => Err(Error::new(
                            "the Python filter called the rest of the pipeline twice",
                        )),
                    };
                    let _ = reply.send(answer);
                }
                Message::Done(result) => return result,
            }
        }
        Err(Error::new(
            "the Python filter's thread ended without an answer",
        ))
    })
}

/// The rest of the pipeline, as the WSGI app the middleware wraps.
#[pyclass(module = "plughost")]
pub(crate) struct Downstream;

#[pymethods]
impl Downstream {
    fn __call__(
        &self,
        py: Python<'_>,
        environ: &Bound<'_, PyDict>,
        start_response: &Bound<'_, PyAny>,
    ) -> PyResult<PyObject> {
        let link = LINK.with(|l| l.borrow().clone()).ok_or_else(|| {
            PyRuntimeError::new_err(
                "the rest of the pipeline can be called only during its request, on its thread",
            )
        })?;
        let req = crate::environ::request_from(py, environ)?;
        let (reply, answer) = mpsc::channel();
        link.send(Message::Downstream(Box::new(req), reply))
            .map_err(|_| PyRuntimeError::new_err("the request is gone"))?;
        let answer = py
            .allow_threads(move || answer.recv())
            .map_err(|_| PyRuntimeError::new_err("the rest of the pipeline gave no answer"))?;
        let resp = match answer {
            Ok(resp) => resp,
            Err(e) => e
                .to_response()
                .unwrap_or_else(|| Response::text(500, "Internal Server Error\n")),
        };
        let status = format!(
            "{} {}",
            resp.status,
            resp.reason
                .as_deref()
                .unwrap_or_else(|| reason(resp.status))
        );
        let headers = PyList::empty(py);
        for (name, value) in &resp.headers {
            headers.append((
                crate::environ::native(py, name),
                crate::environ::native(py, value),
            ))?;
        }
        start_response.call1((status, headers))?;
        Ok(Py::new(
            py,
            BodyIter {
                body: Mutex::new(Some(resp.body.into_reader())),
            },
        )?
        .into_any())
    }
}

/// A few reason phrases; any other status gets "Unknown" (its code is what counts).
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A downstream response body as a WSGI iterable, read without the GIL.
#[pyclass(module = "plughost")]
struct BodyIter {
    body: Mutex<Option<Box<dyn Read + Send>>>,
}

#[pymethods]
impl BodyIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let chunk = py.allow_threads(|| -> std::io::Result<Vec<u8>> {
            let mut body = self.body.lock().unwrap_or_else(|e| e.into_inner());
            let Some(reader) = body.as_mut() else {
                return Ok(Vec::new());
            };
            let mut buf = vec![0u8; 64 * 1024];
            let n = reader.read(&mut buf)?;
            buf.truncate(n);
            if n == 0 {
                *body = None;
            }
            Ok(buf)
        });
        match chunk {
            Ok(c) if c.is_empty() => Err(PyStopIteration::new_err(())),
            Ok(c) => Ok(PyBytes::new(py, &c)),
            Err(e) => Err(pyo3::exceptions::PyIOError::new_err(format!(
                "reading the downstream body: {e}"
            ))),
        }
    }

    fn close(&self) {
        self.body.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
