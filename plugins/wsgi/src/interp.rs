//! The one interpreter: chosen, initialised once, never finalised.
//!
//! Which Python environment: `$VIRTUAL_ENV` (an activated venv, as pserve users
//! run), else `PLUGHOST_PYTHON` (a venv directory or an interpreter), else the
//! Python this library was built against. A chosen environment lends its
//! `sys.path` (asked of its own interpreter once, at start-up); its version must
//! be the embedded one's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use pyo3::prelude::*;
use pyo3::types::PyList;

/// The environment variable naming a venv or interpreter (after `$VIRTUAL_ENV`).
pub(crate) const PYTHON_ENV: &str = "PLUGHOST_PYTHON";

static READY: OnceLock<Result<(), String>> = OnceLock::new();

/// Initialise the interpreter (first call only); later calls return the first
/// outcome, so a broken environment is the same error for every section.
pub(crate) fn ensure() -> Result<(), String> {
    READY.get_or_init(init).clone()
}

fn init() -> Result<(), String> {
    let libpython = crate::ffi::promote_libpython()?;
    let chosen = chosen_environment()?;
    let borrowed = match &chosen {
        Some((why, python)) => Some((why.clone(), python.clone(), ask(python)?)),
        None => None,
    };
    pyo3::prepare_freethreaded_python();
    Python::with_gil(|py| -> PyResult<Result<(), String>> {
        let sys = py.import("sys")?;
        sys.setattr("argv", PyList::new(py, ["plughost"])?)?;
        let embedded = py.version_info();
        if let Some((why, python, env)) = borrowed {
            if (env.major, env.minor) != (embedded.major, embedded.minor) {
                return Ok(Err(format!(
                    "{why} names {} (Python {}.{}), but the WSGI bridge embeds Python {}.{} ({libpython}); \
                     make the venv with python{}.{} or rebuild the bridge with PYO3_PYTHON",
                    python.display(),
                    env.major,
                    env.minor,
                    embedded.major,
                    embedded.minor,
                    embedded.major,
                    embedded.minor
                )));
            }
            sys.setattr("path", PyList::new(py, &env.path)?)?;
            sys.setattr("prefix", &env.prefix)?;
            sys.setattr("exec_prefix", &env.prefix)?;
        }
        Ok(Ok(()))
    })
    .map_err(|e| format!("setting up the interpreter: {e}"))?
}

/// Where the Python environment comes from, and its interpreter.
fn chosen_environment() -> Result<Option<(String, PathBuf)>, String> {
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        return interpreter_of(Path::new(&venv), "$VIRTUAL_ENV")
            .map(|p| Some(("$VIRTUAL_ENV".into(), p)));
    }
    if let Some(named) = std::env::var_os(PYTHON_ENV).filter(|v| !v.is_empty()) {
        let why = format!("--python / ${PYTHON_ENV}");
        return interpreter_of(Path::new(&named), &why).map(|p| Some((why, p)));
    }
    Ok(None)
}

/// A venv directory's interpreter, or the interpreter itself.
fn interpreter_of(path: &Path, why: &str) -> Result<PathBuf, String> {
    let python = if path.is_dir() {
        path.join("bin/python")
    } else {
        path.to_owned()
    };
    if python.is_file() {
        Ok(python)
    } else {
        Err(format!(
            "{why}: {} is neither a virtualenv (no bin/python) nor an interpreter",
            path.display()
        ))
    }
}

/// What the embedded interpreter takes from the chosen one.
struct Environment {
    major: u8,
    minor: u8,
    prefix: String,
    path: Vec<String>,
}

/// Ask `python` for its version, prefix and `sys.path` (one line each; the
/// path entries NUL-separated).
fn ask(python: &Path) -> Result<Environment, String> {
    const CODE: &str = "import sys; print(sys.version_info[0]); print(sys.version_info[1]); \
                        print(sys.prefix); print('\\0'.join(p for p in sys.path if p))";
    let out = Command::new(python)
        .args(["-I", "-c", CODE])
        .output()
        .map_err(|e| format!("running {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let mut next = || lines.next().unwrap_or_default().to_owned();
    let bad = |what: &str| format!("{}: unexpected answer ({what})", python.display());
    let major = next().parse().map_err(|_| bad("major"))?;
    let minor = next().parse().map_err(|_| bad("minor"))?;
    let prefix = next();
    let path = next().split('\0').map(str::to_owned).collect();
    Ok(Environment {
        major,
        minor,
        prefix,
        path,
    })
}

/// Put `dirs` first on `sys.path` (each once).
pub(crate) fn prepend_path(py: Python<'_>, dirs: &[PathBuf]) -> PyResult<()> {
    let path = py.import("sys")?.getattr("path")?;
    for dir in dirs.iter().rev() {
        let dir = dir.to_string_lossy();
        if !path.contains(dir.as_ref())? {
            path.call_method1("insert", (0, dir.as_ref()))?;
        }
    }
    Ok(())
}
