//! Finding (or installing) wrk and nginx, building plughost, locating binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The external tools the benchmark drives.
pub struct Tools {
    pub wrk: PathBuf,
    pub nginx: PathBuf,
}

/// `name` on PATH, then in `extra` directories.
fn which(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether `name` is on PATH.
pub fn on_path(name: &str) -> bool {
    which(name, &[]).is_some()
}

fn find() -> (Option<PathBuf>, Option<PathBuf>) {
    (
        which("wrk", &[]),
        which(
            "nginx",
            &["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"],
        ),
    )
}

fn apt_get(args: &[&str]) -> bool {
    eprintln!("loadbench: running apt-get {}", args.join(" "));
    Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Find wrk and nginx; as root with apt-get, install what is missing.
pub fn ensure(allow_install: bool) -> Result<Tools> {
    let (mut wrk, mut nginx) = find();
    let missing = |wrk: &Option<PathBuf>, nginx: &Option<PathBuf>| -> Vec<&'static str> {
        let mut m = Vec::new();
        if wrk.is_none() {
            m.push("wrk");
        }
        if nginx.is_none() {
            m.push("nginx-light");
        }
        m
    };
    let packages = missing(&wrk, &nginx);
    if packages.is_empty() {
        return Ok(Tools {
            wrk: wrk.unwrap_or_default(),
            nginx: nginx.unwrap_or_default(),
        });
    }
    let root = rustix::process::geteuid().is_root();
    let have_apt = which("apt-get", &["/usr/bin"]).is_some();
    if allow_install && root && have_apt {
        let mut args = vec!["install", "-y", "--no-install-recommends"];
        args.extend(&packages);
        // A fresh machine may have no package lists yet: update once and retry.
        let installed = apt_get(&args) || (apt_get(&["update"]) && apt_get(&args));
        if !installed {
            eprintln!(
                "loadbench: apt-get could not install {}",
                packages.join(" ")
            );
        }
        (wrk, nginx) = find();
    }
    let still = missing(&wrk, &nginx);
    if !still.is_empty() {
        let tools: Vec<&str> = still
            .iter()
            .map(|p| if *p == "nginx-light" { "nginx" } else { p })
            .collect();
        bail!(
            "missing: {} (looked on PATH{}).\n\
             Install on Debian/Ubuntu with:  sudo apt-get install -y {}\n\
             (or any distribution's `wrk` and `nginx` packages), then run this again.",
            tools.join(", "),
            if nginx.is_none() {
                " and in /usr/sbin"
            } else {
                ""
            },
            still.join(" ")
        );
    }
    Ok(Tools {
        wrk: wrk.unwrap_or_default(),
        nginx: nginx.unwrap_or_default(),
    })
}

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The cargo target directory for release builds.
pub fn release_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_relative() { root.join(t) } else { t })
        .unwrap_or_else(|| root.join("target"))
        .join("release")
}

/// `cargo build --release` of everything the benchmark runs.
pub fn build(root: &Path) -> Result<()> {
    build_packages(root, &["plughost", "hello", "plughost-bench"])
}

/// `cargo build --release -p P...`.
pub fn build_packages(root: &Path, packages: &[&str]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut args = vec!["build", "--release"];
    for p in packages {
        args.extend(["-p", p]);
    }
    eprintln!("{}: cargo {}", env!("CARGO_BIN_NAME"), args.join(" "));
    let status = Command::new(cargo)
        .args(&args)
        .current_dir(root)
        .stdin(Stdio::null())
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build --release failed ({status})");
    }
    Ok(())
}

/// The binaries the benchmark starts.
pub struct Binaries {
    pub plughost: PathBuf,
    pub plugin_dir: PathBuf,
    pub baseline: PathBuf,
}

pub fn binaries(release: &Path) -> Result<Binaries> {
    let b = Binaries {
        plughost: release.join("plughost"),
        plugin_dir: release.to_owned(),
        baseline: release.join("baseline"),
    };
    for (file, what) in [
        (&b.plughost, "the plughost binary"),
        (&release.join("libhello.so"), "the hello plugin"),
        (&b.baseline, "the baseline server"),
    ] {
        if !file.is_file() {
            bail!(
                "{what} is missing: {}\nBuild it with `cargo build --release --workspace` (or run loadbench without --no-build).",
                file.display()
            );
        }
    }
    Ok(b)
}
