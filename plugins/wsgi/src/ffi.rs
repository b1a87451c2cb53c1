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
