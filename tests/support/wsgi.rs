//! The WSGI bridge in tests: build the plugin once, and serve a config with
//! a venv as the Python environment (`VIRTUAL_ENV`, as an activated venv sets).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::python::Venv;
use super::Host;

/// Build `plughost-wsgi` (libplughost_wsgi.so) beside the other plugins.
pub fn bridge() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = super::plugins();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .current_dir(super::repo_dir())
                .args(["build", "--quiet", "-p", "plughost-wsgi"])
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building the WSGI bridge failed");
            dir
        })
        .clone()
}

/// The test apps' directory (tests/wsgi_apps).
pub fn apps_dir() -> PathBuf {
    super::repo_dir().join("tests/wsgi_apps")
}

/// Serve `dir/deploy.ini` (written from `config`) with `venv` active.
pub fn serve(
    dir: &Path,
    config: &str,
    venv: Option<&Venv>,
    envs: &[(&str, &str)],
) -> Result<Host, String> {
    serve_args(dir, config, venv, envs, &[])
}

/// As [`serve`], with more command-line arguments.
pub fn serve_args(
    dir: &Path,
    config: &str,
    venv: Option<&Venv>,
    envs: &[(&str, &str)],
    args: &[&str],
) -> Result<Host, String> {
    let path = dir.join("deploy.ini");
    std::fs::write(&path, config).unwrap();
    let plugin_dir = bridge();
    let mut command = Command::new(env!("CARGO_BIN_EXE_plughost"));
    command
        .arg("serve")
        .arg(&path)
        .args(["--port", "0"])
        .args(args)
        .env("PLUGHOST_PLUGIN_PATH", &plugin_dir)
        .env("RUST_LOG", "info")
        .env_remove("VIRTUAL_ENV")
        .env_remove("PLUGHOST_PYTHON")
        .envs(envs.iter().copied());
    if let Some(venv) = venv {
        command.env("VIRTUAL_ENV", &venv.dir);
    }
    Host::spawn(command, dir)
}
