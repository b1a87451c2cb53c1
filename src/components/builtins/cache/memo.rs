//! Small hot pages kept in memory, each revalidated on every use by one
//! `statx` of its path (device, inode, size, mtime and ctime must all be
//! unchanged), so deleting or replacing a file still takes effect on the very
//! next request. A hit from here costs one system call instead of four (open,
//! fstat, read, close), and the response's headers are prepared once. A page
//! large enough to go out with `sendfile` is checked by opening it instead (the
//! cache needs the open file anyway), so every hit checks its file once.
//!
//! An entry is only ever made from a file opened safely (no symlinks, beneath
//! cache_dir). The revalidation's path lookup may follow a symlink planted
//! later, but then it finds another inode and the entry is dropped; the same
//! inode means the same bytes that were read safely.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue};
use rustix::fs::{makedev, statat, statx, AtFlags, Stat, Statx, StatxFlags};

use crate::components::builtins::file_response::etag;

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Version {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Version {
    pub(super) fn of(meta: &Metadata) -> Version {
        Version {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Its modification time (seconds, nanoseconds): what a twin is matched by.
    pub(super) fn mtime(&self) -> (i64, i64) {
        self.mtime
    }

    /// The version of `rel` under `root` now, by one `statx` asking only for
    /// the fields a version holds (no symlink followed), or `None` if it is
    /// gone. A kernel without `statx` (before 4.11) gets one `newfstatat`.
    pub(super) fn on_disk(root: BorrowedFd<'_>, rel: &str) -> Option<Version> {
        let wanted = StatxFlags::INO | StatxFlags::SIZE | StatxFlags::MTIME | StatxFlags::CTIME;
        match statx(root, rel, AtFlags::SYMLINK_NOFOLLOW, wanted) {
            Ok(sx) if sx.stx_mask & wanted.bits() == wanted.bits() => Some(Version::of_statx(&sx)),
            Err(e) if e != rustix::io::Errno::NOSYS => None,
            // No statx, or a file system that could not give every field.
            _ => statat(root, rel, AtFlags::SYMLINK_NOFOLLOW)
                .ok()
                .map(|st| Version::of_stat(&st)),
        }
    }

    fn of_statx(sx: &Statx) -> Version {
        let time = |t: &rustix::fs::StatxTimestamp| (t.tv_sec, i64::from(t.tv_nsec));
        Version {
            dev: makedev(sx.stx_dev_major, sx.stx_dev_minor),
            ino: sx.stx_ino,
            size: sx.stx_size,
            mtime: time(&sx.stx_mtime),
            ctime: time(&sx.stx_ctime),
        }
    }

    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    fn of_stat(st: &Stat) -> Version {
        Version {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            size: st.st_size as u64,
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        }
    }
}

/// One page with its response headers, prepared once.
pub(super) struct Entry {
    /// Its cache path (the memo's key for it).
    pub rel: Box<str>,
    version: Version,
    pub body: Bytes,
    /// The hit's headers: `base` (Content-Type and the like), then
    /// Content-Length, Accept-Ranges, ETag, Last-Modified and `mark`.
    pub headers: HeaderMap,
    /// For a compressed twin: the mtime of the page version it was made from.
    pub twin_of: Option<(i64, i64)>,
}

impl Entry {
    /// An entry for `body`, the whole content of a file with metadata `meta`.
    /// Its validators are the ones `serve_file` gives the same file; `content_type`
    /// and `mark` (the status header, if any) are the cache's own.
    pub(super) fn new(
        rel: &str,
        meta: &Metadata,
        body: Bytes,
        content_type: &HeaderValue,
        mark: Option<(&HeaderName, HeaderValue)>,
    ) -> Entry {
        let modified = meta.modified().ok();
        let mut headers = HeaderMap::with_capacity(6);
        headers.insert(header::CONTENT_TYPE, content_type.clone());
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        headers.insert(
            header::ETAG,
            HeaderValue::try_from(etag(meta.len(), modified))
                .expect("an entity tag is visible ASCII"),
        );
        if let Some(m) = modified {
            headers.insert(
                header::LAST_MODIFIED,
                HeaderValue::try_from(httpdate::fmt_http_date(m))
                    .expect("an HTTP date is visible ASCII"),
            );
        }
        if let Some((name, value)) = mark {
            headers.insert(name.clone(), value);
        }
        Entry {
            rel: rel.into(),
            version: Version::of(meta),
            body,
            headers,
            twin_of: None,
        }
    }
}

/// What one entry costs beyond its body: the `Entry` and its `Arc`, its header
/// map and the allocations behind its values, its key and its map slot
/// (measured at about 700 bytes; rounded up). Without it a budget counting only
/// body bytes let many tiny pages hold many times `memory_cache_bytes`.
pub(super) const ENTRY_OVERHEAD: u64 = 1024;

/// What an entry for `rel` holding `body_len` bytes counts against the budget.
fn cost(rel: &str, body_len: usize) -> u64 {
    body_len as u64 + rel.len() as u64 + ENTRY_OVERHEAD
}

/// The pages in memory, by cache path, within a byte budget (bodies and the
/// entries' own overhead).
pub(super) struct Memo {
    inner: RwLock<Inner>,
    /// Largest page kept (bytes).
    pub max_entry: u64,
    max_total: u64,
}

#[derive(Default)]
struct Inner {
    /// foldhash: several times cheaper per lookup than SipHash and still seeded
    /// per process, so clients choosing URLs cannot aim for collisions.
    map: HashMap<Box<str>, Arc<Entry>, foldhash::fast::RandomState>,
    /// Request paths as received → the cache path they map to, for pages in
    /// the map: what spares a hit the path mapping. The mapping is a pure
    /// function of the path (where no Host decides the page), so an alias
    /// can only be missing, never wrong; one whose page left the map finds
    /// nothing. Cleared whenever it outgrows [`Inner::max_targets`].
    targets: HashMap<Box<str>, Box<str>, foldhash::fast::RandomState>,
    /// What the entries cost (see [`cost`]).
    total: u64,
}

impl Inner {
    /// Room for two request paths per page (and a few more): paths that
    /// decode alike, with and without a trailing `?`.
    fn max_targets(&self) -> usize {
        64 + 2 * self.map.len()
    }

    fn remove(&mut self, rel: &str) {
        if let Some(e) = self.map.remove(rel) {
            self.total -= cost(rel, e.body.len());
        }
    }
}

impl Memo {
    /// A memo of at most `max_total` bytes of pages of at most `max_entry` bytes each.
    pub(super) fn new(max_total: u64, max_entry: u64) -> Memo {
        Memo {
            inner: RwLock::default(),
            max_entry: max_entry.min(max_total),
            max_total,
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.max_total > 0
    }

    /// The entry for `rel`, not yet checked against its file (see [`Memo::still`]).
    pub(super) fn peek(&self, rel: &str) -> Option<Arc<Entry>> {
        self.read().map.get(rel).cloned()
    }

    /// The entry for the page request path `target` was last found to map
    /// to (see [`Memo::alias`]), not yet checked against its file.
    pub(super) fn peek_target(&self, target: &str) -> Option<Arc<Entry>> {
        let inner = self.read();
        let rel = inner.targets.get(target)?;
        inner.map.get(&**rel).cloned()
    }

    /// Remember that request path `target` maps to `rel`, a page in memory.
    pub(super) fn alias(&self, target: &str, rel: &str) {
        let mut inner = self.write();
        if !inner.map.contains_key(rel) {
            return;
        }
        if inner.targets.len() >= inner.max_targets() {
            inner.targets.clear();
        }
        inner.targets.insert(target.into(), rel.into());
    }

    /// Whether `entry` (from [`Memo::peek`]) is still the file's content, given the
    /// file's version now (`None`: gone or unreadable). A stale entry is dropped,
    /// and the caller then goes to the file.
    pub(super) fn still(&self, rel: &str, entry: &Arc<Entry>, current: Option<Version>) -> bool {
        if current == Some(entry.version) {
            return true;
        }
        let mut inner = self.write();
        if inner.map.get(rel).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            inner.remove(rel);
        }
        false
    }

    /// `peek` then `still` with the version one `statx` finds.
    #[cfg(test)]
    fn get(&self, root: BorrowedFd<'_>, rel: &str) -> Option<Arc<Entry>> {
        let entry = self.peek(rel)?;
        self.still(rel, &entry, Version::on_disk(root, rel))
            .then_some(entry)
    }

    /// Keep `entry` for `rel`, making room by dropping others if needed.
    pub(super) fn put(&self, rel: &str, entry: Arc<Entry>) {
        let size = cost(rel, entry.body.len());
        if entry.body.len() as u64 > self.max_entry || size > self.max_total {
            return;
        }
        let mut inner = self.write();
        inner.remove(rel);
        while inner.total + size > self.max_total {
            // No recency bookkeeping on the hot path: drop an arbitrary entry
            // (hash order); hot pages come back on their next request.
            let Some(victim) = inner.map.keys().next().cloned() else {
                break;
            };
            inner.remove(&victim);
        }
        inner.total += size;
        inner.map.insert(rel.into(), entry);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.read().map.len()
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    fn entry(rel: &str, meta: &Metadata, body: &'static [u8]) -> Arc<Entry> {
        let ct = HeaderValue::from_static("text/html");
        Arc::new(Entry::new(rel, meta, Bytes::from_static(body), &ct, None))
    }

    #[test]
    fn entries_are_revalidated_and_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::File::open(tmp.path()).unwrap();
        let file = tmp.path().join("p");
        std::fs::write(&file, "one").unwrap();
        // Room for two entries of 4-byte bodies under 1-byte names.
        let memo = Memo::new(2 * cost("a", 4) + 3, 8);
        let meta = std::fs::metadata(&file).unwrap();
        memo.put("p", entry("p", &meta, b"one"));
        let e = memo.get(root.as_fd(), "p").expect("fresh");
        assert_eq!(&e.body[..], b"one");
        assert_eq!(e.headers[header::CONTENT_LENGTH], "3");

        // Replaced (new inode) or deleted: dropped.
        std::fs::write(tmp.path().join("q"), "two").unwrap();
        std::fs::rename(tmp.path().join("q"), &file).unwrap();
        assert!(memo.get(root.as_fd(), "p").is_none());
        assert_eq!(memo.len(), 0);
        let meta = std::fs::metadata(&file).unwrap();
        memo.put("p", entry("p", &meta, b"two"));
        std::fs::remove_file(&file).unwrap();
        assert!(memo.get(root.as_fd(), "p").is_none());

        // Too large for an entry, and the budget holds.
        let big = entry("big", &meta, b"123456789");
        memo.put("big", big);
        assert_eq!(memo.len(), 0);
        for name in ["a", "b", "c", "d"] {
            let e = entry(name, &meta, b"1234");
            memo.put(name, e);
            let inner = memo.read();
            let total: u64 = inner.map.iter().map(|(k, e)| cost(k, e.body.len())).sum();
            assert!(total <= memo.max_total, "{total}");
            assert_eq!(total, inner.total);
        }
        assert_eq!(memo.len(), 2);
    }

    /// The per-hit check and the version an entry is made with agree.
    #[test]
    fn the_version_on_disk_is_the_version_read() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::File::open(tmp.path()).unwrap();
        std::fs::write(tmp.path().join("p"), "one").unwrap();
        let meta = std::fs::symlink_metadata(tmp.path().join("p")).unwrap();
        assert_eq!(
            Version::on_disk(root.as_fd(), "p"),
            Some(Version::of(&meta))
        );
        assert_eq!(Version::on_disk(root.as_fd(), "gone"), None);
        // A symlink is not followed: its own version, not its target's.
        std::os::unix::fs::symlink("p", tmp.path().join("l")).unwrap();
        assert_ne!(
            Version::on_disk(root.as_fd(), "l"),
            Some(Version::of(&meta))
        );
    }

    #[test]
    fn aliases_find_only_pages_in_memory_and_stay_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("p");
        std::fs::write(&file, "x").unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let memo = Memo::new(1 << 20, 1024);
        memo.alias("/p", "p");
        assert!(
            memo.peek_target("/p").is_none(),
            "no alias for a page not in memory"
        );
        memo.put("p", entry("p", &meta, b"x"));
        memo.alias("/p", "p");
        memo.alias("/%70", "p");
        for target in ["/p", "/%70"] {
            assert_eq!(&*memo.peek_target(target).expect("aliased").rel, "p");
        }
        // The page leaves: its aliases find nothing, and a new copy is found again.
        memo.write().remove("p");
        assert!(memo.peek_target("/p").is_none());
        memo.put("p", entry("p", &meta, b"y"));
        assert_eq!(&memo.peek_target("/p").unwrap().body[..], b"y");
        // Bounded: many request paths for one page never pile up.
        for i in 0..1000 {
            memo.alias(&format!("/p?{i}"), "p");
            let inner = memo.read();
            assert!(inner.targets.len() <= inner.max_targets());
        }
    }

    /// Regression: the budget counted body bytes only, so a 64 KiB memo held
    /// 10 000 one-byte pages (several MiB of entries) and a full 32 MiB one
    /// could hold millions.
    #[test]
    fn many_tiny_pages_cannot_exceed_the_budget() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("p");
        std::fs::write(&file, "x").unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let memo = Memo::new(64 * 1024, 1024);
        for i in 0..10_000 {
            let rel = format!("page/{i}");
            memo.put(&rel, entry(&rel, &meta, b"x"));
        }
        let n = memo.len() as u64;
        assert!(
            n <= 64 * 1024 / ENTRY_OVERHEAD,
            "{n} entries held in a 64 KiB budget"
        );
        assert!(
            n >= 64 * 1024 / (2 * ENTRY_OVERHEAD),
            "only {n} entries kept"
        );
        assert!(memo.read().total <= 64 * 1024);
    }
}
