//! Which directories the cache may own. A cache_dir is refused when it is a
//! system directory (see [`SYSTEM_DIRS`]) or holds the configuration file; a
//! non-empty one must carry the [`MARKER`] the cache writes in the directories
//! it creates or finds empty, unless the section says `adopt = true`.

use std::io;
use std::os::fd::BorrowedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{openat, statat, AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

/// The file that marks a directory as a plughost page cache. It starts with `.`,
/// so no request maps to it and purges never delete it.
pub(crate) const MARKER: &str = ".plughost-cache";

const MARKER_TEXT: &str =
    "This directory is a plughost page cache: plughost may create and delete files here.\n";

/// Never a cache_dir, even with `adopt = true`: these exactly, and anything below
/// the ones in [`SYSTEM_TREES`].
pub(super) const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/var/tmp",
    "/var/lib",
    "/var/log",
    "/var/cache",
    "/var/run",
    "/var/www",
    "/usr/local",
    "/usr/share",
    "/snap",
    "/nix",
];

/// System trees: nothing below them is a cache_dir either.
pub(super) const SYSTEM_TREES: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/sbin",
    "/sys",
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/include",
];

/// Why a cache_dir is not the cache's.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("refusing `{0}`: a system directory is never a cache_dir (give the cache a directory of its own, e.g. `cache_dir = ./cache`)")]
    System(PathBuf),
    #[error("refusing `{}`: it contains the configuration file {}, which requests could read (give the cache a directory of its own, e.g. `cache_dir = ./cache`)", dir.display(), file.display())]
    HoldsConfig { dir: PathBuf, file: PathBuf },
    #[error("refusing `{0}`: it is not empty and has no `{MARKER}` file, so the cache did not create it; point cache_dir at a new or empty directory, or set `adopt = true` in this section if the tree was written by wsgi_cache or plughost")]
    NotOwned(PathBuf),
    #[error("cannot create or open `{0}`: {1}")]
    Io(PathBuf, io::Error),
}

/// The path with `.`/`..` resolved and symlinks followed as far as it exists.
fn resolve(path: &Path) -> PathBuf {
    let mut existing = path.to_owned();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            let mut out = real;
            for c in rest.iter().rev() {
                out.push(c);
            }
            return normalize(&out);
        }
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                existing = parent.to_owned();
            }
            _ => return normalize(path),
        }
    }
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Refuse system directories and directories holding the configuration file
/// `config` (or any ancestor of it). Checked before anything is created.
pub(super) fn check_path(dir: &Path, config: &Path) -> Result<(), OwnerError> {
    let real = resolve(dir);
    let system = |p: &Path| {
        SYSTEM_DIRS.iter().any(|s| p == Path::new(s))
            || SYSTEM_TREES.iter().any(|s| p.starts_with(s))
            || std::env::var_os("HOME").is_some_and(|h| p == resolve(Path::new(&h)))
    };
    if system(&real) || system(&normalize(dir)) {
        return Err(OwnerError::System(dir.to_owned()));
    }
    let file = resolve(config);
    if file.starts_with(&real) || normalize(config).starts_with(normalize(dir)) {
        return Err(OwnerError::HoldsConfig {
            dir: dir.to_owned(),
            file: config.to_owned(),
        });
    }
    Ok(())
}

/// Whether `root` carries the marker (a regular file, not a symlink).
pub(super) fn is_marked(root: BorrowedFd<'_>) -> bool {
    statat(root, MARKER, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
}

/// Take `root` (shown as `shown`) as the cache's: marked already, or empty, or
/// `adopt`; then make sure it carries the marker.
pub(super) fn claim(root: BorrowedFd<'_>, shown: &Path, adopt: bool) -> Result<(), OwnerError> {
    if is_marked(root) {
        return Ok(());
    }
    let io = |e: Errno| OwnerError::Io(shown.to_owned(), e.into());
    if !adopt {
        for entry in Dir::read_from(root).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                return Err(OwnerError::NotOwned(shown.to_owned()));
            }
        }
    }
    let fd = openat(
        root,
        MARKER,
        OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(io)?;
    rustix::io::write(&fd, MARKER_TEXT.as_bytes()).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_dirs_and_config_dirs_are_refused() {
        let ini = Path::new("/srv/site/deploy.ini");
        for bad in [
            "/",
            "/etc",
            "/etc/nginx",
            "/usr",
            "/var",
            "/tmp",
            "/tmp/..",
            "/proc/self",
        ] {
            assert!(check_path(Path::new(bad), ini).is_err(), "{bad}");
        }
        for bad in ["/srv/site", "/srv/site/.", "/srv/site/x/.."] {
            assert!(
                matches!(
                    check_path(Path::new(bad), ini),
                    Err(OwnerError::HoldsConfig { .. })
                ),
                "{bad}"
            );
        }
        for good in ["/srv/site/cache", "/var/cache/plughost", "/tmp/x/cache"] {
            assert!(check_path(Path::new(good), ini).is_ok(), "{good}");
        }
    }
}
