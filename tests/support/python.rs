//! Real Python virtualenvs for tests: created once with `python3 -m venv` and
//! real packages from PyPI, under target/test-venvs, shared by every test
//! binary (a lock file serialises creation; a half-made venv is never used).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A ready virtualenv.
pub struct Venv {
    pub dir: PathBuf,
}

impl Venv {
    /// The venv's interpreter.
    pub fn python(&self) -> PathBuf {
        self.bin("python")
    }

    /// A script the venv installed (`gunicorn`, `waitress-serve`, `granian`, ...).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    /// `python -c code` in the venv, its stdout (panics when it fails).
    pub fn run(&self, code: &str) -> String {
        let out = Command::new(self.python())
            .args(["-c", code])
            .output()
            .expect("the venv's python runs");
        assert!(
            out.status.success(),
            "python -c failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// A venv named `name` with `packages` (pip requirement strings) installed.
/// `None` when python3, its venv module or pip is not usable: the caller then
/// calls `skip_unless_ci`, so CI fails loudly instead of skipping.
pub fn venv(name: &str, packages: &[&str]) -> Option<Venv> {
    let root = super::target_dir().join("test-venvs");
    std::fs::create_dir_all(&root).ok()?;
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        packages.hash(&mut h);
        format!("{name}-{:016x}", h.finish())
    };
    let dir = root.join(&key);
    let lock = std::fs::File::create(root.join(format!("{key}.lock"))).ok()?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).ok()?;
    if dir.join(".ready").is_file() {
        return Some(Venv { dir });
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(why) = create(&dir, packages) {
        eprintln!("venv {name}: {why}");
        let _ = std::fs::remove_dir_all(&dir);
        return None;
    }
    std::fs::write(dir.join(".ready"), packages.join("\n")).ok()?;
    Some(Venv { dir })
}

fn create(dir: &Path, packages: &[&str]) -> Result<(), String> {
    let python = std::env::var("PLUGHOST_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    run(Command::new(&python).args(["-m", "venv"]).arg(dir))?;
    if !packages.is_empty() {
        run(Command::new(dir.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(packages))?;
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
