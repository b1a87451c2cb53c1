//! `wsgi.errors` (lines into the host's log) and `wsgi.file_wrapper`.

use std::sync::Mutex;

use plughost_sdk::Level;
use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

/// The log target of everything the bridge and the apps' `wsgi.errors` log.
pub(crate) const TARGET: &str = "plughost.wsgi";

/// `wsgi.errors`: text written here goes to the host's log, one line per line.
#[pyclass(module = "plughost")]
pub(crate) struct Errors {
    pending: Mutex<String>,
}

impl Errors {
    pub(crate) fn new() -> Errors {
        Errors {
            pending: Mutex::new(String::new()),
        }
    }
}

#[pymethods]
impl Errors {
    fn write(&self, text: &str) -> usize {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.push_str(text);
        while let Some(i) = pending.find('\n') {
            let line: String = pending.drain(..=i).collect();
            plughost_sdk::log(Level::Warn, TARGET, line.trim_end_matches(['\n', '\r']));
        }
        text.chars().count()
    }

    fn writelines(&self, lines: Vec<String>) {
        for line in lines {
            self.write(&line);
        }
    }

    fn flush(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !pending.is_empty() {
            plughost_sdk::log(Level::Warn, TARGET, &std::mem::take(&mut *pending));
        }
    }
}

impl Drop for Errors {
    fn drop(&mut self) {
        let pending = self.pending.get_mut().unwrap_or_else(|e| e.into_inner());
        if !pending.is_empty() {
            plughost_sdk::log(Level::Warn, TARGET, pending);
        }
    }
}

/// `wsgi.file_wrapper(filelike, block_size=8192)`: an iterable of the file's
/// blocks whose `close()` closes the file.
#[pyclass(module = "plughost")]
pub(crate) struct FileWrapper {
    file: PyObject,
    block: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, block_size=8192))]
    fn new(filelike: PyObject, block_size: usize) -> FileWrapper {
        FileWrapper {
            file: filelike,
            block: block_size.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<PyObject> {
        let data = self.file.call_method1(py, "read", (self.block,))?;
        if data.bind(py).len()? == 0 {
            return Err(PyStopIteration::new_err(()));
        }
        Ok(data)
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.file.bind(py).hasattr("close")? {
            self.file.call_method0(py, "close")?;
        }
        Ok(())
    }
}
