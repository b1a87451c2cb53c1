//! The Python files `serve --reload` watches when the pipeline runs Python
//! (the WSGI bridge is loaded): every `*.py` under the main config file's
//! directory and under each bridge section's `python_path`, skipping
//! virtualenvs, `site-packages`, `__pycache__`, dot-named and `node_modules`
//! directories, bounded in depth and count. Python code cannot be reloaded
//! inside one interpreter, so a change restarts the process in place
//! (`edge::handover`) instead of reloading the pipeline.

use std::path::{Path, PathBuf};

use crate::components::plugin::FileStamp;
use crate::core::config::Deployment;

/// Most files watched, and how deep a tree is walked.
const MAX_FILES: usize = 5000;
const MAX_DEPTH: usize = 12;

/// Whether `libraries` (the pipeline's plugin files) include the WSGI bridge.
pub(crate) fn runs_python(libraries: &[PathBuf]) -> bool {
    libraries.iter().any(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("libplughost_wsgi"))
    })
}

/// The Python files of `deployment`, with their stamps now.
pub(crate) fn files(deployment: &Deployment) -> Vec<(PathBuf, Option<FileStamp>)> {
    let mut roots: Vec<PathBuf> = deployment.files[..1]
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    for c in deployment.app.components() {
        if let Some((_, dirs)) = c.local_conf.iter().find(|(k, _)| k == "python_path") {
            roots.extend(dirs.split_whitespace().map(|d| c.dir().join(d)));
        }
    }
    roots.sort();
    roots.dedup();
    let mut out = Vec::new();
    for r in roots {
        walk(&r, 0, &mut out);
    }
    out.sort();
    out.dedup();
    out.into_iter()
        .map(|p| {
            let stamp = FileStamp::of(&p);
            (p, stamp)
        })
        .collect()
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > MAX_DEPTH || out.len() >= MAX_FILES || dir.join("pyvenv.cfg").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            if !matches!(
                name.as_ref(),
                "__pycache__" | "site-packages" | "node_modules"
            ) {
                walk(&e.path(), depth + 1, out);
            }
        } else if kind.is_file() && name.ends_with(".py") && out.len() < MAX_FILES {
            out.push(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn py_files_outside_venvs_and_caches() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for f in [
            "app/views.py",
            "app/__pycache__/views.cpython-311.pyc",
            "app/notes.txt",
            "venv/lib/site.py",
            ".git/hook.py",
            "pkg/sub/m.py",
        ] {
            std::fs::create_dir_all(d.join(f).parent().unwrap()).unwrap();
            std::fs::write(d.join(f), "").unwrap();
        }
        std::fs::write(d.join("venv/pyvenv.cfg"), "").unwrap();
        let mut out = Vec::new();
        walk(d, 0, &mut out);
        out.sort();
        assert_eq!(out, [d.join("app/views.py"), d.join("pkg/sub/m.py")]);
        assert!(runs_python(&[PathBuf::from("/x/libplughost_wsgi.so")]));
        assert!(!runs_python(&[PathBuf::from("/x/libhello.so")]));
    }
}
