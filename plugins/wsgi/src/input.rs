//! `wsgi.input`: the request body as a Python file, streamed from the host.
//!
//! Reads never go past the declared length and release the GIL while they wait
//! for body bytes, so a slow upload stalls only its own request.

use std::io::Read;
use std::sync::Mutex;

use plughost_sdk::RequestBody;
use pyo3::exceptions::{PyIOError, PyStopIteration};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

/// Bytes asked of the host per read.
const CHUNK: usize = 64 * 1024;

struct State {
    body: RequestBody,
    /// Bytes the app may still read (the declared length, if any).
    left: Option<u64>,
    /// Read from the host but not yet by the app (after a `readline`).
    buf: Vec<u8>,
    eof: bool,
}

impl State {
    /// Fill `buf` with up to `want` more bytes from the host; false at the end.
    fn fill(&mut self, want: usize) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let mut want = want.max(1);
        if let Some(left) = self.left {
            want = want.min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        if want == 0 {
            self.eof = true;
            return Ok(false);
        }
        let start = self.buf.len();
        self.buf.resize(start + want, 0);
        let n = loop {
            match self.body.read(&mut self.buf[start..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                self.buf.truncate(start);
                return Err(e);
            }
        };
        self.buf.truncate(start + n);
        if let Some(left) = &mut self.left {
            *left -= n as u64;
        }
        if n == 0 {
            self.eof = true;
        }
        Ok(n > 0)
    }

    /// Up to `size` bytes (all when `None`).
    fn read(&mut self, size: Option<usize>) -> std::io::Result<Vec<u8>> {
        loop {
            if size.is_some_and(|s| self.buf.len() >= s) {
                break;
            }
            let want = size.map_or(CHUNK, |s| (s - self.buf.len()).min(CHUNK));
            if !self.fill(want)? {
                break;
            }
        }
        let n = size.map_or(self.buf.len(), |s| s.min(self.buf.len()));
        Ok(self.buf.drain(..n).collect())
    }

    /// One line (with its `\n`), at most `size` bytes.
    fn readline(&mut self, size: Option<usize>) -> std::io::Result<Vec<u8>> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i + 1;
                let end = size.map_or(end, |s| end.min(s));
                return Ok(self.buf.drain(..end).collect());
            }
            scanned = self.buf.len();
            if size.is_some_and(|s| self.buf.len() >= s) {
                let s = size.unwrap_or_default();
                return Ok(self.buf.drain(..s).collect());
            }
            if !self.fill(CHUNK)? {
                return Ok(std::mem::take(&mut self.buf));
            }
        }
    }
}

/// The `wsgi.input` object.
#[pyclass(module = "plughost")]
pub(crate) struct Input {
    state: Mutex<State>,
}

impl Input {
    pub(crate) fn new(body: RequestBody, length: Option<u64>) -> Input {
        Input {
            state: Mutex::new(State {
                body,
                left: length,
                buf: Vec::new(),
                eof: false,
            }),
        }
    }

    /// Run `f` on the state with the GIL released (the host may be waiting on the client).
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut State) -> std::io::Result<T> + Send,
    ) -> PyResult<T> {
        py.allow_threads(|| {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut state)
        })
        .map_err(|e| PyIOError::new_err(format!("reading the request body: {e}")))
    }
}

/// `None` and negative sizes mean "all".
fn size(size: Option<i64>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size=None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<i64>) -> PyResult<Bound<'py, PyBytes>> {
        let want = self::size(size);
        let bytes = self.with(py, |s| s.read(want))?;
        Ok(PyBytes::new(py, &bytes))
    }

    #[pyo3(signature = (size=None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<i64>) -> PyResult<Bound<'py, PyBytes>> {
        let want = self::size(size);
        let line = self.with(py, |s| s.readline(want))?;
        Ok(PyBytes::new(py, &line))
    }

    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<i64>) -> PyResult<Bound<'py, PyList>> {
        let hint = self::size(hint).filter(|&h| h > 0);
        let lines = PyList::empty(py);
        let mut total = 0;
        loop {
            let line = self.with(py, |s| s.readline(None))?;
            if line.is_empty() {
                break;
            }
            total += line.len();
            lines.append(PyBytes::new(py, &line))?;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let line = self.with(py, |s| s.readline(None))?;
        if line.is_empty() {
            return Err(PyStopIteration::new_err(()));
        }
        Ok(PyBytes::new(py, &line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(body: &[u8], length: Option<u64>) -> State {
        State {
            body: RequestBody::from_bytes(body.to_vec()),
            left: length,
            buf: Vec::new(),
            eof: false,
        }
    }

    #[test]
    fn reads_stop_at_the_declared_length() {
        let mut s = state(b"abcdefgh", Some(5));
        assert_eq!(s.read(Some(3)).unwrap(), b"abc");
        assert_eq!(s.read(None).unwrap(), b"de");
        assert_eq!(s.read(None).unwrap(), b"");
    }

    #[test]
    fn lines_keep_their_newline_and_honour_size() {
        let mut s = state(b"one\ntwo\nthree", None);
        assert_eq!(s.readline(None).unwrap(), b"one\n");
        assert_eq!(s.readline(Some(2)).unwrap(), b"tw");
        assert_eq!(s.readline(None).unwrap(), b"o\n");
        assert_eq!(s.readline(None).unwrap(), b"three");
        assert_eq!(s.readline(None).unwrap(), b"");
    }
}
