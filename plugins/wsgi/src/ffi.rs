//! The plugin's only `unsafe`: making libpython's symbols globally visible.
//!
//! The host opens plugins `RTLD_LOCAL`, so libpython (a dependency of this
//! library) is loaded local too, and C extension modules (`_json`, `_ssl`,
//! `_sqlite3`, numpy) that expect `Py*` symbols in the global scope fail to
//! import. Re-opening the already loaded libpython with
//! `RTLD_NOLOAD | RTLD_GLOBAL` promotes it, as uWSGI and mod_wsgi do.

use std::ffi::{CStr, CString};

/// The file libpython was loaded from, and whether promoting it worked.
pub(crate) fn promote_libpython() -> Result<String, String> {
    let symbol = pyo3::ffi::Py_IsInitialized as *const libc::c_void;
    // SAFETY: an all-zero `Dl_info` is a valid value of this plain C struct.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: `symbol` is the address of a function in a loaded object and `info`
    // is a valid, writable `Dl_info` for the duration of the call.
    let found = unsafe { libc::dladdr(symbol, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return Err("dladdr cannot find the object that holds libpython's symbols".into());
    }
    // SAFETY: on success `dli_fname` is a NUL-terminated string owned by the loader,
    // valid while the object stays loaded (it is never unloaded).
    let path = unsafe { CStr::from_ptr(info.dli_fname) }
        .to_string_lossy()
        .into_owned();
    let c_path = CString::new(path.clone()).map_err(|e| e.to_string())?;
    // SAFETY: `c_path` is a valid C string; RTLD_NOLOAD only takes a new reference
    // to an object already loaded (it runs no initialisers) and changes its scope.
    let handle = unsafe {
        libc::dlopen(
            c_path.as_ptr(),
            libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_GLOBAL,
        )
    };
    if handle.is_null() {
        return Err(format!("dlopen({path}, RTLD_NOLOAD|RTLD_GLOBAL) failed"));
    }
    // The reference is kept on purpose: libpython stays loaded for the process.
    Ok(path)
}

thread_local! {
    /// Whether this thread has a Python thread state of its own, kept.
    static KEPT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Give the calling thread a Python thread state that outlives each GIL
/// acquisition. Without it every `Python::with_gil` on a plugin thread
/// creates a thread state and deletes it again (with its 16 KiB data stack
/// chunk, mmapped and munmapped, and a TLB shootdown across cores per
/// request: a quarter of a WSGI hello's time in `perf`). mod_wsgi keeps one
/// per thread for the same reason. The state is never deleted: plugin threads
/// live as long as the process, and Python is never finalised.
pub(crate) fn keep_thread_state() {
    KEPT.with(|kept| {
        if kept.get() {
            return;
        }
        // SAFETY: the interpreter is initialised before any request reaches
        // the bridge (`interp::ensure` runs in every factory), so
        // `PyGILState_Check` may be called; when this thread does not hold
        // the GIL, `PyGILState_Ensure`
        // takes the GIL and gives this thread a state with a count of 1;
        // `PyEval_SaveThread` releases the GIL again, keeping the state, so
        // later `PyGILState_Ensure`/`Release` pairs only move the count
        // between 1 and 2 and never delete it.
        unsafe {
            // Holding the GIL already (a factory's own `with_gil`): releasing it
            // here would pull it from under the caller; keep a state next time.
            if pyo3::ffi::PyGILState_Check() == 1 {
                return;
            }
            let _ = pyo3::ffi::PyGILState_Ensure();
            let _ = pyo3::ffi::PyEval_SaveThread();
        }
        kept.set(true);
    });
}

/// `Python::with_gil` on a thread whose Python thread state is kept.
pub(crate) fn with_gil<R>(f: impl for<'py> FnOnce(pyo3::Python<'py>) -> R) -> R {
    keep_thread_state();
    pyo3::Python::with_gil(f)
}
