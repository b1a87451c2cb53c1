//! The confined file system under cache_dir. Every open is relative to the
//! directory's descriptor (taken once at start) and never follows a symlink
//! (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, or a walk with
//! `O_NOFOLLOW` where `openat2` is missing), so no request can read, create or
//! change anything outside the tree, whatever is planted inside it.

use std::ffi::CString;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{
    mkdirat, openat, openat2, renameat, statat, unlinkat, AtFlags, Dir, FileType, Mode, OFlags,
    ResolveFlags,
};
use rustix::io::Errno;

use super::path::{CachePath, MAX_DEPTH};
use super::stats::Event;

/// Temporary files start with this. It starts with `.`, which no request can
/// map to, and the start-up sweep removes leftovers by it.
pub const TEMP_PREFIX: &str = ".plughost-tmp-";

/// A temporary file left by a writer on another host is removed only once it is
/// this old: a store in progress keeps touching its file, a crash leftover does not.
pub const FOREIGN_TEMP_AGE: Duration = Duration::from_secs(3600);

/// This host's name as it appears in temporary file names (`[A-Za-z0-9-]`).
fn host_tag() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let tag: String = raw
            .trim()
            .chars()
            .take(63)
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        if tag.is_empty() {
            "localhost".into()
        } else {
            tag
        }
    })
}

/// `TEMP_PREFIX` + `@host@` + this process's pid and start time: temporary files
/// this process creates, which a sweep after a hot reload must leave alone (a
/// bare pid is not enough: in a container every start may get the same one).
/// The host lets several hosts share one cache_dir without sweeping each
/// other's stores in progress.
fn own_prefix() -> &'static str {
    static OWN: OnceLock<String> = OnceLock::new();
    OWN.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!(
            "{TEMP_PREFIX}@{}@{}.{nanos:x}-",
            host_tag(),
            std::process::id()
        )
    })
}

/// Whether a leftover temporary file may be removed: not this process's; on
/// this host, when its writer is no longer running; from another host, only
/// when it has not been touched for [`FOREIGN_TEMP_AGE`]; in any other (older)
/// naming, always.
fn sweepable(name: &[u8], age: impl FnOnce() -> Option<Duration>) -> bool {
    if name.starts_with(own_prefix().as_bytes()) {
        return false;
    }
    let Some(rest) = name
        .strip_prefix(TEMP_PREFIX.as_bytes())
        .and_then(|r| r.strip_prefix(b"@"))
    else {
        return true;
    };
    let text = String::from_utf8_lossy(rest);
    let Some((host, after)) = text.split_once('@') else {
        return true;
    };
    if host == host_tag() {
        let pid = after.split(['.', '-']).next().unwrap_or("");
        return pid.is_empty() || !Path::new("/proc").join(pid).exists();
    }
    age().is_some_and(|a| a >= FOREIGN_TEMP_AGE)
}

pub(super) const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Set once `openat2` turned out to be unavailable (old kernel or seccomp).
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// cache_dir, held open.
pub struct CacheDir {
    root: OwnedFd,
    path: PathBuf,
}

/// What a lookup found.
pub enum Lookup {
    /// A regular, non-empty file.
    Hit(File, Metadata),
    /// Nothing usable (absent or empty): the app answers and the response may be stored.
    Miss,
    /// Something that stops a store (a directory, a file where a directory is
    /// needed, a symlink, an error): the app answers and nothing is stored.
    Blocked(Event, io::Error),
}

impl CacheDir {
    /// Create cache_dir if needed and open it.
    pub fn open(path: &Path) -> io::Result<CacheDir> {
        std::fs::create_dir_all(path)?;
        let root = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(CacheDir {
            root,
            path: path.to_owned(),
        })
    }

    /// The directory's descriptor, for lookups relative to it.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Open an existing cache_dir (never creates it).
    pub fn open_existing(path: &Path) -> io::Result<CacheDir> {
        let root = rustix::fs::open(path, DIR_FLAGS, Mode::empty())?;
        Ok(CacheDir {
            root,
            path: path.to_owned(),
        })
    }

    /// Open the file for `p` if it can answer a request: open, fstat, nothing more.
    pub fn lookup(&self, p: &CachePath) -> Lookup {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd = match open_beneath(self.root.as_fd(), p.rel(), flags) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Lookup::Miss,
            Err(e) => return Lookup::Blocked(classify_errno(e), e.into()),
        };
        let file = File::from(fd);
        match file.metadata() {
            Ok(meta) if meta.is_file() => {
                if meta.len() == 0 {
                    Lookup::Miss
                } else {
                    Lookup::Hit(file, meta)
                }
            }
            Ok(meta) => Lookup::Blocked(
                Event::ErrorCollision,
                io::Error::other(if meta.is_dir() {
                    "a directory is in the way"
                } else {
                    "not a regular file"
                }),
            ),
            Err(e) => Lookup::Blocked(classify(&e), e),
        }
    }

    /// The directory `p` goes in, created (mode 0755) where missing, no symlink followed.
    pub fn parent_dir(&self, p: &CachePath) -> io::Result<OwnedFd> {
        let parent = p.parent();
        if parent.is_empty() {
            return self.root.try_clone();
        }
        match open_beneath(
            self.root.as_fd(),
            parent,
            OFlags::RDONLY | OFlags::DIRECTORY,
        ) {
            Err(Errno::NOENT) => {}
            r => return Ok(r?),
        }
        let mut cur: Option<OwnedFd> = None;
        for seg in parent.split('/') {
            let at = cur.as_ref().map_or(self.root.as_fd(), |fd| fd.as_fd());
            let next = match openat(at, seg, DIR_FLAGS, Mode::empty()) {
                Err(Errno::NOENT) => {
                    match mkdirat(at, seg, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    openat(at, seg, DIR_FLAGS, Mode::empty())?
                }
                r => r?,
            };
            cur = Some(next);
        }
        Ok(cur.expect("a non-empty parent has a segment"))
    }

    /// Remove temporary files left by a crash, anywhere in the tree (no symlink
    /// followed, at most [`MAX_DEPTH`] levels). Returns how many were removed.
    pub fn sweep(&self) -> usize {
        let mut removed = 0;
        sweep_dir(self.root.as_fd(), &self.path, 0, &mut removed);
        removed
    }
}

/// Open `rel` (segments already validated) beneath `root` without following symlinks.
pub(super) fn open_beneath(
    root: BorrowedFd<'_>,
    rel: &str,
    flags: OFlags,
) -> rustix::io::Result<OwnedFd> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if !NO_OPENAT2.load(Relaxed) {
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        match openat2(root, rel, flags, Mode::empty(), resolve) {
            Err(Errno::NOSYS) => NO_OPENAT2.store(true, Relaxed),
            // A concurrent rename elsewhere made the kernel unsure: walk instead.
            Err(Errno::AGAIN) => {}
            r => return r,
        }
    }
    walk(root, rel, flags)
}

/// `openat2`'s fallback: one `openat(O_NOFOLLOW)` per segment.
fn walk(root: BorrowedFd<'_>, rel: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    let (dirs, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let mut cur: Option<OwnedFd> = None;
    for seg in dirs.split('/').filter(|s| !s.is_empty()) {
        let at = cur.as_ref().map_or(root, |fd| fd.as_fd());
        cur = Some(openat(at, seg, DIR_FLAGS, Mode::empty())?);
    }
    let at = cur.as_ref().map_or(root, |fd| fd.as_fd());
    openat(
        at,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn sweep_dir(dir: BorrowedFd<'_>, shown: &Path, depth: usize, removed: &mut usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let warn = |what: &str, e: &dyn std::fmt::Display| {
        tracing::warn!("cache: sweeping {}: {what}: {e}", shown.display());
    };
    let entries = match Dir::read_from(dir) {
        Ok(d) => d,
        Err(e) => return warn("cannot read the directory", &e),
    };
    let mut subdirs: Vec<CString> = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => return warn("cannot read the directory", &e),
        };
        let name = entry.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let mut kind = entry.file_type();
        if kind == FileType::Unknown {
            kind = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| FileType::from_raw_mode(st.st_mode))
                .unwrap_or(FileType::Unknown);
        }
        if kind == FileType::Directory {
            subdirs.push(name.to_owned());
        } else if bytes.starts_with(TEMP_PREFIX.as_bytes())
            && sweepable(bytes, || {
                let st = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
                let modified = UNIX_EPOCH + Duration::from_secs(st.st_mtime.max(0) as u64);
                SystemTime::now().duration_since(modified).ok()
            })
        {
            match unlinkat(dir, name, AtFlags::empty()) {
                Ok(()) => *removed += 1,
                Err(e) => warn(
                    &format!("cannot remove {}", String::from_utf8_lossy(bytes)),
                    &e,
                ),
            }
        }
    }
    for name in subdirs {
        let shown = shown.join(String::from_utf8_lossy(name.to_bytes()).as_ref());
        match openat(dir, name.as_c_str(), DIR_FLAGS, Mode::empty()) {
            Ok(fd) => sweep_dir(fd.as_fd(), &shown, depth + 1, removed),
            Err(e) => warn("cannot open", &format_args!("{}: {e}", shown.display())),
        }
    }
}

/// A temporary file beside its target, removed on drop unless committed, so an
/// error, an early return or a panic never leaves it behind.
pub struct TempFile {
    dir: OwnedFd,
    name: String,
    file: Option<File>,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl TempFile {
    /// Create a new, exclusive temporary file (mode 0644) in `dir`, open for
    /// reading too: a spooled miss reads its bytes back to the client.
    pub fn create(dir: OwnedFd) -> io::Result<TempFile> {
        let flags =
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut tries = 0;
        loop {
            let name = format!("{}{}", own_prefix(), SEQ.fetch_add(1, Relaxed));
            match openat(&dir, name.as_str(), flags, Mode::from_raw_mode(0o644)) {
                Ok(fd) => {
                    return Ok(TempFile {
                        dir,
                        name,
                        file: Some(File::from(fd)),
                    })
                }
                Err(Errno::EXIST) if tries < 8 => tries += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub fn file(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("an uncommitted temporary file is open")
    }

    /// Optionally fsync, then rename over `name` in the same directory.
    pub fn commit(mut self, name: &str, fsync: bool) -> io::Result<()> {
        let file = self.file.take().expect("committed once");
        if fsync {
            file.sync_data()?;
        }
        drop(file);
        renameat(&self.dir, self.name.as_str(), &self.dir, name)?;
        self.name.clear();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file = None;
        if !self.name.is_empty() {
            if let Err(e) = unlinkat(&self.dir, self.name.as_str(), AtFlags::empty()) {
                tracing::warn!("cache: cannot remove temporary file {}: {e}", self.name);
            }
        }
    }
}

/// The counter for a failed file-system call.
pub fn classify(e: &io::Error) -> Event {
    Errno::from_io_error(e).map_or(Event::ErrorIo, classify_errno)
}

fn classify_errno(e: Errno) -> Event {
    match e {
        Errno::NOTDIR | Errno::ISDIR | Errno::EXIST | Errno::NOTEMPTY => Event::ErrorCollision,
        Errno::LOOP | Errno::XDEV => Event::ErrorSymlink,
        Errno::ACCESS | Errno::PERM | Errno::ROFS => Event::ErrorPermission,
        Errno::NOSPC | Errno::DQUOT => Event::ErrorDiskFull,
        Errno::NAMETOOLONG => Event::ErrorNameTooLong,
        _ => Event::ErrorIo,
    }
}

#[cfg(test)]
mod tests {
    use super::super::path::map;
    use super::*;

    fn cp(path: &str) -> CachePath {
        map(path.as_bytes(), path, "__index.html").unwrap()
    }

    #[test]
    fn lookup_store_and_no_symlinks_both_ways() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, "secret").unwrap();
        std::fs::create_dir(tmp.path().join("outdir")).unwrap();
        let dir = CacheDir::open(&tmp.path().join("cache")).unwrap();

        assert!(matches!(dir.lookup(&cp("/a/b")), Lookup::Miss));
        let p = cp("/a/b");
        let mut t = TempFile::create(dir.parent_dir(&p).unwrap()).unwrap();
        std::io::Write::write_all(t.file(), b"page").unwrap();
        t.commit(p.name(), false).unwrap();
        assert!(matches!(dir.lookup(&p), Lookup::Hit(_, m) if m.len() == 4));

        std::os::unix::fs::symlink(&outside, tmp.path().join("cache/link")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outdir"), tmp.path().join("cache/ld")).unwrap();
        for follow in [false, true] {
            NO_OPENAT2.store(follow, Relaxed);
            assert!(matches!(
                dir.lookup(&cp("/link")),
                Lookup::Blocked(Event::ErrorSymlink, _)
            ));
            assert!(matches!(dir.lookup(&cp("/ld/x")), Lookup::Blocked(..)));
            assert!(dir.parent_dir(&cp("/ld/x")).is_err());
            assert!(matches!(dir.lookup(&p), Lookup::Hit(..)));
        }
        NO_OPENAT2.store(false, Relaxed);
        assert!(!tmp.path().join("outdir/x").exists());
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "secret");

        // File/directory collisions are blocked, not errors.
        assert!(matches!(
            dir.lookup(&cp("/a")),
            Lookup::Blocked(Event::ErrorCollision, _)
        ));
        assert!(matches!(
            dir.lookup(&cp("/a/b/c")),
            Lookup::Blocked(Event::ErrorCollision, _)
        ));
        let e = dir.parent_dir(&cp("/a/b/c")).unwrap_err();
        assert_eq!(classify(&e), Event::ErrorCollision);
    }

    #[test]
    fn temp_files_vanish_unless_committed_and_sweep_finds_leftovers() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CacheDir::open(tmp.path()).unwrap();
        let t = TempFile::create(dir.parent_dir(&cp("/x")).unwrap()).unwrap();
        let name = t.name.clone();
        assert!(name.starts_with(TEMP_PREFIX), "{name}");
        assert!(tmp.path().join(&name).exists());
        // A sweep (as after a hot reload) leaves this process's files alone.
        assert_eq!(dir.sweep(), 0);
        assert!(tmp.path().join(&name).exists());
        drop(t);
        assert!(!tmp.path().join(&name).exists());

        std::fs::create_dir_all(tmp.path().join("d/e")).unwrap();
        std::fs::write(tmp.path().join(format!("{TEMP_PREFIX}1-1")), "x").unwrap();
        std::fs::write(tmp.path().join(format!("d/e/{TEMP_PREFIX}9-9")), "x").unwrap();
        std::fs::write(tmp.path().join("d/keep"), "x").unwrap();
        assert_eq!(dir.sweep(), 2);
        assert!(tmp.path().join("d/keep").exists());
        assert_eq!(dir.sweep(), 0);
    }

    #[test]
    fn shared_cache_dirs_keep_other_writers_temp_files() {
        let me = host_tag();
        // Legacy names, and this host's dead writers: swept.
        assert!(sweepable(format!("{TEMP_PREFIX}1-1").as_bytes(), || None));
        assert!(sweepable(
            format!("{TEMP_PREFIX}@{me}@999999999.1-1").as_bytes(),
            || None
        ));
        // This host's live writer (this very test process, under another start time): kept.
        let live = format!("{TEMP_PREFIX}@{me}@{}.1-1", std::process::id());
        assert!(!sweepable(live.as_bytes(), || None));
        // Ours: kept.
        assert!(!sweepable(format!("{}7", own_prefix()).as_bytes(), || None));
        // Another host's: kept while fresh, swept once stale.
        let other = format!("{TEMP_PREFIX}@other-host@42.1-1");
        assert!(!sweepable(other.as_bytes(), || Some(Duration::from_secs(
            5
        ))));
        assert!(sweepable(other.as_bytes(), || Some(FOREIGN_TEMP_AGE)));
    }
}
