//! The cache's own small files (the tag index, the purge bus position), kept
//! in dot-named directories under cache_dir, which no URL maps to and no
//! purge deletes: opened without following symlinks, replaced by writing a
//! temporary file and renaming it, so a reader sees the old content or the new.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::{mkdirat, openat, renameat, Mode, OFlags};
use rustix::io::Errno;

use super::dir::DIR_FLAGS;

/// The directory `name` under `root`, if it exists.
pub(super) fn open_dir(root: BorrowedFd<'_>, name: &str) -> io::Result<Option<OwnedFd>> {
    match openat(root, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The directory `name` under `root`, made if missing.
pub(super) fn make_dir(root: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    match mkdirat(root, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(openat(root, name, DIR_FLAGS, Mode::empty())?)
}

/// The contents of file `name` in `dir`, if it exists.
pub(super) fn read(dir: BorrowedFd<'_>, name: &str) -> io::Result<Option<Vec<u8>>> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut bytes = Vec::new();
    File::from(fd).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Replace file `name` in `dir` with `bytes` (a temporary file renamed over
/// it; `fsync` first when asked).
pub(super) fn replace(
    dir: BorrowedFd<'_>,
    name: &str,
    bytes: &[u8],
    fsync: bool,
) -> io::Result<()> {
    let temp = format!(".{name}.{}", std::process::id());
    let flags =
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut f = File::from(openat(
        dir,
        temp.as_str(),
        flags,
        Mode::from_raw_mode(0o644),
    )?);
    f.write_all(bytes)?;
    if fsync {
        f.sync_data()?;
    }
    drop(f);
    renameat(dir, temp.as_str(), dir, name)?;
    Ok(())
}
