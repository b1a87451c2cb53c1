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
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustix::fs::{
    flock, fstat, mkdirat, openat, openat2, renameat, stat, statat, unlinkat, AtFlags, Dir,
    FileType, FlockOperation, Mode, OFlags, ResolveFlags,
};
use rustix::io::Errno;

use super::memo::Version;
use super::owner::{self, OwnerError};
use super::path::{CachePath, MAX_DEPTH};
use super::stats::Event;

/// Temporary files start with this. It starts with `.`, which no request can
/// map to, and the start-up sweep removes leftovers by it.
pub(crate) const TEMP_PREFIX: &str = ".plughost-tmp-";

/// A temporary file left by a writer on another host is removed only once it is
/// this old: a store in progress keeps touching its file, a crash leftover does not.
pub(super) const FOREIGN_TEMP_AGE: Duration = Duration::from_secs(3600);

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

/// A temporary file younger than this with nothing in it may belong to a
/// writer that has created it but not locked it yet: the sweep leaves it.
const UNLOCKED_GRACE: Duration = Duration::from_secs(10);

/// Whether a leftover temporary file may be removed, by its name: never this
/// process's; another host's only once untouched for [`FOREIGN_TEMP_AGE`]
/// (its writer's lock is not visible across hosts on NFS); this host's (and
/// any other naming) when its writer's lock is gone, which [`sweep_dir`]
/// checks.
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
    let Some((host, _)) = text.split_once('@') else {
        return true;
    };
    host == host_tag() || age().is_some_and(|a| a >= FOREIGN_TEMP_AGE)
}

/// Whether no writer holds `name`'s lock (taken non-blocking, released at once;
/// a file with nothing in it is left alone for [`UNLOCKED_GRACE`] while the
/// process that named it may still be running).
fn writer_gone(dir: BorrowedFd<'_>, name: &std::ffi::CStr) -> bool {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let Ok(fd) = openat(dir, name, flags, Mode::empty()) else {
        return false;
    };
    if flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
        return false;
    }
    fstat(&fd).is_ok_and(|st| {
        let modified = UNIX_EPOCH + Duration::from_secs(st.st_mtime.max(0) as u64);
        st.st_size > 0
            // An empty, unlocked file may be a writer between create and lock,
            // unless the process that named it is gone (a crash, then a restart).
            || writer_pid(name.to_bytes()).is_some_and(|pid| !Path::new("/proc").join(pid).exists())
            || SystemTime::now()
                .duration_since(modified)
                .is_ok_and(|a| a >= UNLOCKED_GRACE)
    })
}

/// The pid in one of this host's temp file names (`…@HOST@PID.START-SEQ`).
fn writer_pid(name: &[u8]) -> Option<String> {
    let rest = name
        .strip_prefix(TEMP_PREFIX.as_bytes())?
        .strip_prefix(b"@")?;
    let rest = std::str::from_utf8(rest).ok()?;
    let (host, after) = rest.split_once('@')?;
    let pid = after.split(['.', '-']).next()?;
    (host == host_tag() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        .then(|| pid.to_owned())
}

pub(super) const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Set once `openat2` turned out to be unavailable (old kernel or seccomp).
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// cache_dir, held open. When the path comes to name another directory (`rm -rf
/// cache && mkdir cache`, or `mv cache cache.old && mkdir cache`), the new one
/// is taken (if it passes the ownership rule), checked on misses and failed
/// stores at most once per [`RECHECK`].
///
/// Writes (stores, purges, evictions) go through the held directory. Reads
/// that answer requests ([`CacheDir::lookup`], [`CacheDir::version`]) go
/// through the path instead, from cache_dir's parent by name, so a cache_dir
/// moved away is seen by the very next hit (one more path component for the
/// kernel to walk), not only once a miss has noticed the new directory.
pub(super) struct CacheDir {
    root: ArcSwap<Root>,
    /// cache_dir's parent (held open) and cache_dir's name in it: what hits
    /// are read through. `None` for a cache_dir without a parent (`/`).
    seen: Option<(OwnedFd, String)>,
    path: PathBuf,
    adopt: bool,
    /// Milliseconds after `born` of the last check for a replaced directory.
    checked: AtomicU64,
    born: Instant,
}

/// How often at most the path is checked for a replaced directory.
pub(super) const RECHECK: Duration = Duration::from_secs(1);

/// One opened cache_dir.
pub(super) struct Root {
    fd: OwnedFd,
    dev: u64,
    ino: u64,
}

impl AsFd for Root {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Root {
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    fn new(fd: OwnedFd) -> io::Result<Root> {
        let st = fstat(&fd)?;
        Ok(Root {
            fd,
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
        })
    }
}

/// What a lookup found.
pub(super) enum Lookup {
    /// A regular, non-empty file.
    Hit(File, Metadata),
    /// Nothing usable (absent or empty): the app answers and the response may be stored.
    Miss,
    /// Something that stops a store (a directory, a file where a directory is
    /// needed, a symlink, an error): the app answers and nothing is stored.
    Blocked(Event, io::Error),
}

/// The directory a file goes in, with the directories made for it (so a
/// store that fails can remove them again).
#[derive(Debug)]
pub(super) struct Parent {
    fd: OwnedFd,
    /// (directory holding it, name) of each directory created, outermost first.
    created: Vec<(OwnedFd, String)>,
}

impl Parent {
    /// Remove the directories this store created, deepest first, each only if
    /// still empty (a concurrent store may have put a file there).
    pub(super) fn remove_created_if_empty(&mut self) {
        while let Some((at, name)) = self.created.pop() {
            match unlinkat(&at, name.as_str(), AtFlags::REMOVEDIR) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(_) => {
                    self.created.clear();
                    return;
                }
            }
        }
    }
}

impl CacheDir {
    fn with_root(root: OwnedFd, path: &Path, adopt: bool) -> io::Result<CacheDir> {
        Ok(CacheDir {
            root: ArcSwap::from_pointee(Root::new(root)?),
            seen: seen_through(path)?,
            path: path.to_owned(),
            adopt,
            checked: AtomicU64::new(0),
            born: Instant::now(),
        })
    }

    /// Create cache_dir if needed and open it (no ownership checks).
    pub(super) fn open(path: &Path) -> io::Result<CacheDir> {
        std::fs::create_dir_all(path)?;
        let root = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        CacheDir::with_root(root, path, false)
    }

    /// Open cache_dir for the section in `config`: refused if a system directory
    /// or holding the config; created if needed; claimed (see [`owner`]).
    pub(super) fn open_owned(
        path: &Path,
        config: &Path,
        adopt: bool,
    ) -> Result<CacheDir, OwnerError> {
        owner::check_path(path, config)?;
        let dir = CacheDir::open(path).map_err(|e| OwnerError::Io(path.to_owned(), e))?;
        owner::claim(dir.root().as_fd(), path, adopt)?;
        Ok(dir)
    }

    /// The directory's descriptor, for lookups relative to it.
    pub(super) fn root(&self) -> arc_swap::Guard<Arc<Root>> {
        self.root.load()
    }

    /// Open an existing cache_dir (never creates it).
    pub(super) fn open_existing(path: &Path) -> io::Result<CacheDir> {
        let root = rustix::fs::open(path, DIR_FLAGS, Mode::empty())?;
        CacheDir::with_root(root, path, false)
    }

    /// If the path names another directory than the one held (at most once per
    /// [`RECHECK`]), take it: an empty one is marked, one the cache does not own
    /// is refused (and the old one kept).
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    fn check_replaced(&self) {
        let now = self.born.elapsed().as_millis() as u64 + RECHECK.as_millis() as u64;
        let last = self.checked.load(Relaxed);
        if now < last + RECHECK.as_millis() as u64
            || self
                .checked
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        let Ok(st) = stat(&self.path) else { return };
        let cur = self.root.load();
        if (st.st_dev as u64, st.st_ino as u64) == (cur.dev, cur.ino) {
            return;
        }
        let taken = rustix::fs::open(&self.path, DIR_FLAGS, Mode::empty())
            .map_err(|e| OwnerError::Io(self.path.clone(), e.into()))
            .and_then(|fd| {
                owner::claim(fd.as_fd(), &self.path, self.adopt)?;
                Root::new(fd).map_err(|e| OwnerError::Io(self.path.clone(), e))
            });
        match taken {
            Ok(root) => {
                tracing::warn!(
                    "cache: {} was replaced; using the new directory",
                    self.path.display()
                );
                self.root.store(Arc::new(root));
            }
            Err(e) => tracing::warn!("cache: cache_dir was replaced, not using the new one: {e}"),
        }
    }

    /// Call `f` with where `rel` is read from for a request: cache_dir's
    /// parent and `NAME/rel` (joined on the stack when short), or the held
    /// directory and `rel` itself.
    fn through<R>(&self, rel: &str, f: impl FnOnce(BorrowedFd<'_>, &str) -> R) -> R {
        let Some((parent, name)) = &self.seen else {
            return f(self.root().as_fd(), rel);
        };
        let len = name.len() + 1 + rel.len();
        let mut buf = [0u8; 240];
        if len <= buf.len() {
            buf[..name.len()].copy_from_slice(name.as_bytes());
            buf[name.len()] = b'/';
            buf[name.len() + 1..len].copy_from_slice(rel.as_bytes());
            // Two `str`s and an ASCII '/' joined: still UTF-8.
            let joined = std::str::from_utf8(&buf[..len]).unwrap_or_default();
            f(parent.as_fd(), joined)
        } else {
            f(parent.as_fd(), &format!("{name}/{rel}"))
        }
    }

    /// The version of the page at `rel` now (`None`: gone), read through the
    /// path: one `statx`, the check every hit from memory makes.
    pub(super) fn version(&self, rel: &str) -> Option<Version> {
        self.through(rel, Version::on_disk)
    }

    /// Open the file for `p` if it can answer a request: open, fstat, nothing more.
    pub(super) fn lookup(&self, p: &CachePath) -> Lookup {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd = match self.through(p.rel(), |at, rel| open_beneath(at, rel, flags)) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                self.check_replaced();
                return Lookup::Miss;
            }
            Err(e) => return Lookup::Blocked(classify_errno(e), e.into()),
        };
        let file = File::from(fd);
        match file.metadata() {
            Ok(meta) if meta.is_file() => {
                if meta.len() == 0 {
                    self.check_replaced();
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

    /// The directory `p` goes in, created (mode 0755) where missing, no symlink
    /// followed; on failure, the directories it made are removed again.
    pub(super) fn parent_dir(&self, p: &CachePath) -> io::Result<Parent> {
        let r = self.make_parent(p);
        if r.is_err() {
            self.check_replaced();
        }
        r
    }

    fn make_parent(&self, p: &CachePath) -> io::Result<Parent> {
        let root = self.root();
        let parent = p.parent();
        let done = |fd| Parent {
            fd,
            created: Vec::new(),
        };
        if parent.is_empty() {
            return Ok(done(root.fd.try_clone()?));
        }
        match open_beneath(root.as_fd(), parent, OFlags::RDONLY | OFlags::DIRECTORY) {
            Err(Errno::NOENT) => {}
            r => return Ok(done(r?)),
        }
        let mut made = Parent {
            fd: root.fd.try_clone()?,
            created: Vec::new(),
        };
        for seg in parent.split('/') {
            let next = match openat(&made.fd, seg, DIR_FLAGS, Mode::empty()) {
                Err(Errno::NOENT) => match mkdirat(&made.fd, seg, Mode::from_raw_mode(0o755)) {
                    Ok(()) => {
                        let at = made.fd.try_clone();
                        let opened = openat(&made.fd, seg, DIR_FLAGS, Mode::empty());
                        match at {
                            Ok(at) => made.created.push((at, seg.to_owned())),
                            Err(e) => {
                                made.remove_created_if_empty();
                                return Err(e);
                            }
                        }
                        opened
                    }
                    Err(Errno::EXIST) => openat(&made.fd, seg, DIR_FLAGS, Mode::empty()),
                    Err(e) => Err(e),
                },
                r => r,
            };
            match next {
                Ok(fd) => made.fd = fd,
                Err(e) => {
                    made.remove_created_if_empty();
                    return Err(e.into());
                }
            }
        }
        Ok(made)
    }

    /// Remove temporary files left by a crash, anywhere in the tree (no symlink
    /// followed, at most [`MAX_DEPTH`] levels). Returns how many were removed.
    pub(super) fn sweep(&self) -> usize {
        let mut removed = 0;
        sweep_dir(self.root().as_fd(), &self.path, 0, &mut removed);
        removed
    }
}

/// cache_dir's parent, opened, and cache_dir's name in it, for reads through
/// the path (see [`CacheDir`]). Resolved once, so a cache_dir that is a
/// symlink is read through its target's real parent.
fn seen_through(path: &Path) -> io::Result<Option<(OwnedFd, String)>> {
    let real = std::fs::canonicalize(path)?;
    let (Some(parent), Some(name)) = (real.parent(), real.file_name().and_then(|n| n.to_str()))
    else {
        return Ok(None);
    };
    let fd = rustix::fs::open(parent, DIR_FLAGS, Mode::empty())?;
    Ok(Some((fd, name.to_owned())))
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
            && writer_gone(dir, name)
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

/// A temporary file beside its target, removed on drop unless committed (with
/// the directories made for it, if empty), so an error, an early return or a
/// panic never leaves it behind. Its writer holds a lock on it (`flock`) for
/// its whole life: the sweep removes only files whose lock it can take.
pub(super) struct TempFile {
    dir: Parent,
    name: String,
    file: Option<File>,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl TempFile {
    /// Create a new, exclusive temporary file (mode 0644) in `dir`, open for
    /// reading too: a spooled miss reads its bytes back to the client.
    pub(super) fn create(mut dir: Parent) -> io::Result<TempFile> {
        let flags =
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut tries = 0;
        loop {
            let name = format!("{}{}", own_prefix(), SEQ.fetch_add(1, Relaxed));
            match openat(&dir.fd, name.as_str(), flags, Mode::from_raw_mode(0o644)) {
                Ok(fd) => {
                    let temp = TempFile {
                        dir,
                        name,
                        file: Some(File::from(fd)),
                    };
                    // Where locks are unsupported (ENOLCK) the file is kept by
                    // every sweep on this host instead (it cannot take the lock either).
                    let fd = temp.file.as_ref().expect("just opened");
                    let _ = flock(fd, FlockOperation::NonBlockingLockExclusive);
                    return Ok(temp);
                }
                Err(Errno::EXIST) if tries < 8 => tries += 1,
                Err(e) => {
                    dir.remove_created_if_empty();
                    return Err(e.into());
                }
            }
        }
    }

    pub(super) fn file(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("an uncommitted temporary file is open")
    }

    /// Optionally fsync, then rename over `name` in the same directory.
    pub(super) fn commit(mut self, name: &str, fsync: bool) -> io::Result<()> {
        let file = self.file.take().expect("committed once");
        if fsync {
            file.sync_data()?;
        }
        drop(file);
        renameat(&self.dir.fd, self.name.as_str(), &self.dir.fd, name)?;
        self.name.clear();
        self.dir.created.clear();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file = None;
        if !self.name.is_empty() {
            if let Err(e) = unlinkat(&self.dir.fd, self.name.as_str(), AtFlags::empty()) {
                tracing::warn!("cache: cannot remove temporary file {}: {e}", self.name);
            }
        }
        self.dir.remove_created_if_empty();
    }
}

/// The counter for a failed file-system call.
pub(super) fn classify(e: &io::Error) -> Event {
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
    fn an_uncommitted_store_removes_only_the_empty_dirs_it_made() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CacheDir::open(tmp.path()).unwrap();
        std::fs::create_dir(tmp.path().join("old")).unwrap();
        drop(TempFile::create(dir.parent_dir(&cp("/old/a/b/page")).unwrap()).unwrap());
        assert!(tmp.path().join("old").is_dir());
        assert!(!tmp.path().join("old/a").exists());
        // A file another store put there keeps its directory.
        let t = TempFile::create(dir.parent_dir(&cp("/n/m/page")).unwrap()).unwrap();
        std::fs::write(tmp.path().join("n/other"), "x").unwrap();
        drop(t);
        assert!(tmp.path().join("n/other").exists());
        assert!(!tmp.path().join("n/m").exists());
        // Committed: kept.
        let p = cp("/c/d/page");
        let mut t = TempFile::create(dir.parent_dir(&p).unwrap()).unwrap();
        std::io::Write::write_all(t.file(), b"page").unwrap();
        t.commit(p.name(), false).unwrap();
        assert!(tmp.path().join("c/d/page").is_file());
    }

    #[test]
    fn writer_pids_come_from_this_hosts_names_only() {
        let me = host_tag();
        assert_eq!(
            writer_pid(format!("{TEMP_PREFIX}@{me}@4242.1f-7").as_bytes()),
            Some("4242".into())
        );
        assert_eq!(
            writer_pid(format!("{TEMP_PREFIX}@other-host@4242.1f-7").as_bytes()),
            None
        );
        assert_eq!(writer_pid(format!("{TEMP_PREFIX}1-1").as_bytes()), None);
        assert_eq!(
            writer_pid(format!("{TEMP_PREFIX}@{me}@x1.1-1").as_bytes()),
            None
        );
    }

    #[test]
    fn shared_cache_dirs_keep_other_writers_temp_files() {
        let me = host_tag();
        // Legacy names, and this host's writers: swept unless locked.
        assert!(sweepable(format!("{TEMP_PREFIX}1-1").as_bytes(), || None));
        assert!(sweepable(
            format!("{TEMP_PREFIX}@{me}@999999999.1-1").as_bytes(),
            || None
        ));
        // This host's, whatever the PID: the writer's lock decides (see `writer_gone`).
        let live = format!("{TEMP_PREFIX}@{me}@{}.1-1", std::process::id());
        assert!(sweepable(live.as_bytes(), || None));
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
