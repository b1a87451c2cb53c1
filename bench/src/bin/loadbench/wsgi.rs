//! The WSGI rows (scenario `wsgi`, issue 15): the same hello app (a 2 KiB
//! page) under plughost's WSGI bridge, a cache hit in front of it, Granian,
//! gunicorn sync and gthread, and waitress, in rounds within this run. The
//! measuring is `wsgibench`'s (built beside loadbench); this module builds the
//! bridge, runs it with loadbench's settings and passes its table on.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::tree::Setup;

/// The scenario key that selects these rows.
pub const KEY: &str = "wsgi";

/// Why these rows cannot run here, if they cannot: a default run (no
/// `--scenarios`) skips them then, as it skips the cluster rows without Redis.
pub fn unavailable(release: &Path) -> Option<String> {
    if !release.join("libplughost_wsgi.so").is_file() {
        return Some(format!(
            "the WSGI bridge is not built ({}); build it with `cargo build --release -p plughost-wsgi` (needs python3-dev)",
            release.join("libplughost_wsgi.so").display()
        ));
    }
    None
}

/// Build the bridge (loadbench's own build leaves it out: it needs
/// python3-dev, which the other rows do not).
pub fn build(root: &Path) -> Result<()> {
    crate::tools::build_packages(root, &["plughost-wsgi"])
}

/// Run wsgibench and return what it printed (its progress goes to stderr).
pub fn run(s: &Setup, release: &Path) -> Result<String> {
    if let Some(why) = unavailable(release) {
        bail!("{why}");
    }
    let out = Command::new(release.join("wsgibench"))
        .args([
            "--rounds",
            &s.rounds.to_string(),
            "--duration",
            &s.duration.to_string(),
            "--connections",
            &s.connections.to_string(),
            "--threads",
            &s.server_threads.to_string(),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run wsgibench")?;
    if !out.status.success() {
        bail!("wsgibench failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
