//! The disk budget (`max_size`, `max_files`, `inactive`): an index of the
//! pages in the tree with their sizes and last use, least recently used first.
//! A store that takes the tree over budget evicts the oldest pages (each an
//! `unlink`, so a page is there whole or not at all) on the blocking thread
//! that stored it; a background thread rebuilds the index at start by scanning
//! the tree (requests are served meanwhile) and then removes pages unused for
//! `inactive`. Off unless a key is set: then no request pays for it.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::fs::{openat, statat, unlinkat, AtFlags, Dir, FileType, Mode};
use rustix::io::Errno;

use super::dir::{open_beneath, CacheDir, DIR_FLAGS};
use super::path::MAX_DEPTH;
use super::stats::{CacheStats, Event};
use super::twins;

/// The budget keys; all `None` is no budget.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Limits {
    pub max_size: Option<u64>,
    pub max_files: Option<u64>,
    pub inactive: Option<Duration>,
}

impl Limits {
    pub(super) fn active(&self) -> bool {
        self.max_size.is_some() || self.max_files.is_some() || self.inactive.is_some()
    }
}

/// `inactive`: seconds, or a number with `s`, `m`, `h` or `d` (nginx's units).
pub(super) fn parse_duration(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    n.checked_mul(secs)
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

/// One indexed page.
struct Page {
    size: u64,
    /// Its key in `Index::order`.
    at: (i64, u64),
}

#[derive(Default)]
struct Index {
    pages: HashMap<String, Page>,
    /// (last use in ms after the budget's start, sequence) → page; oldest first.
    order: BTreeMap<(i64, u64), String>,
    seq: u64,
    bytes: u64,
}

impl Index {
    /// Record `rel` (of `size` bytes) as used at `ms`.
    fn put(&mut self, rel: &str, size: u64, ms: i64) {
        self.seq += 1;
        let at = (ms, self.seq);
        if let Some(old) = self.pages.get_mut(rel) {
            self.order.remove(&old.at);
            self.bytes = self.bytes - old.size + size;
            old.size = size;
            old.at = at;
        } else {
            self.pages.insert(rel.to_owned(), Page { size, at });
            self.bytes += size;
        }
        self.order.insert(at, rel.to_owned());
    }

    /// Take the least recently used page out of the index.
    fn pop_oldest(&mut self) -> Option<String> {
        let (_, rel) = self.order.pop_first()?;
        if let Some(p) = self.pages.remove(&rel) {
            self.bytes -= p.size;
        }
        Some(rel)
    }
}

/// The budget of one cache filter.
pub(super) struct Budget {
    limits: Limits,
    dir: Arc<CacheDir>,
    stats: Arc<CacheStats>,
    index: Mutex<Index>,
    born: Instant,
    /// `compress` is set: a page's twins count with it and are evicted with it.
    twins: bool,
}

impl Budget {
    /// A budget for `dir`, with its index built in the background.
    pub(super) fn start(
        limits: Limits,
        dir: Arc<CacheDir>,
        stats: Arc<CacheStats>,
        twins: bool,
    ) -> Arc<Budget> {
        let budget = Arc::new(Budget {
            twins,
            limits,
            dir,
            stats,
            index: Mutex::new(Index::default()),
            born: Instant::now(),
        });
        let weak = Arc::downgrade(&budget);
        let spawned = std::thread::Builder::new()
            .name("plughost-cache-budget".into())
            .spawn(move || keeper(weak));
        if let Err(e) = spawned {
            tracing::warn!("cache: cannot start the disk budget's thread: {e}");
        }
        budget
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> i64 {
        self.born.elapsed().as_millis() as i64
    }

    /// A hit on `rel` (`size` bytes): it becomes the most recently used.
    pub(super) fn touch(&self, rel: &str, size: u64) {
        let ms = self.now_ms();
        self.lock().put(rel, size, ms);
    }

    /// A page was stored: index it and evict down to the budget. Runs on the
    /// storing blocking thread.
    pub(super) fn stored(&self, rel: &str, size: u64) {
        let ms = self.now_ms();
        let victims = {
            let mut index = self.lock();
            index.put(rel, size, ms);
            self.over_budget(&mut index)
        };
        self.evict(victims);
    }

    /// A page's twins were written: they count with it (and go with it).
    pub(super) fn add_twins(&self, rel: &str, bytes: u64) {
        let victims = {
            let mut index = self.lock();
            let Some(p) = index.pages.get_mut(rel) else {
                return;
            };
            p.size += bytes;
            index.bytes += bytes;
            self.over_budget(&mut index)
        };
        self.evict(victims);
    }

    /// The pages to evict for the size and count limits, taken out of the index.
    fn over_budget(&self, index: &mut Index) -> Vec<String> {
        let mut victims = Vec::new();
        let over = |i: &Index| {
            self.limits.max_size.is_some_and(|m| i.bytes > m)
                || self
                    .limits
                    .max_files
                    .is_some_and(|m| i.pages.len() as u64 > m)
        };
        while over(index) {
            match index.pop_oldest() {
                Some(rel) => victims.push(rel),
                None => break,
            }
        }
        self.publish(index);
        victims
    }

    /// Pages unused for `inactive`, taken out of the index.
    fn expired(&self) -> Vec<String> {
        let Some(inactive) = self.limits.inactive else {
            return Vec::new();
        };
        let cutoff = self.now_ms() - inactive.as_millis() as i64;
        let mut index = self.lock();
        let mut victims = Vec::new();
        while index
            .order
            .first_key_value()
            .is_some_and(|((ms, _), _)| *ms < cutoff)
        {
            victims.extend(index.pop_oldest());
        }
        self.publish(&index);
        victims
    }

    fn publish(&self, index: &Index) {
        self.stats.disk_bytes.store(index.bytes, Relaxed);
        self.stats
            .disk_files
            .store(index.pages.len() as u64, Relaxed);
    }

    /// Unlink each page (one it finds gone, purged meanwhile, is just dropped).
    fn evict(&self, victims: Vec<String>) {
        let root = self.dir.root();
        for rel in victims {
            let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
            let removed = if parent.is_empty() {
                unlinkat(root.as_fd(), name, AtFlags::empty())
            } else {
                open_beneath(root.as_fd(), parent, DIR_FLAGS)
                    .and_then(|d| unlinkat(&d, name, AtFlags::empty()))
            };
            if self.twins {
                twins::remove(&self.dir, &rel);
            }
            match removed {
                Ok(()) => {
                    let n = self.stats.count(Event::Evict);
                    tracing::debug!(path = rel, count = n, "cache: evicted");
                }
                Err(Errno::NOENT | Errno::NOTDIR) => {}
                Err(e) => tracing::debug!(path = rel, "cache: cannot evict: {e}"),
            }
        }
    }

    /// Index what a scan found (a page already used since start keeps its place).
    fn scanned(&self, mut found: Vec<(String, u64, SystemTime)>) {
        if self.twins {
            found = with_twins(found);
        }
        let now = SystemTime::now();
        let base = self.now_ms();
        let victims = {
            let mut index = self.lock();
            for (rel, size, modified) in found {
                if index.pages.contains_key(&rel) {
                    continue;
                }
                let age = now.duration_since(modified).unwrap_or_default();
                index.put(&rel, size, base - age.as_millis() as i64);
            }
            self.over_budget(&mut index)
        };
        self.evict(victims);
    }
}

/// Scanned files with each twin's size added to its page (a twin without its
/// page is counted as a page of its own, so it is evicted in turn).
fn with_twins(found: Vec<(String, u64, SystemTime)>) -> Vec<(String, u64, SystemTime)> {
    let mut pages: HashMap<String, (u64, SystemTime)> = found
        .iter()
        .map(|(r, s, m)| (r.clone(), (*s, *m)))
        .collect();
    for (rel, size, _) in &found {
        let base = twins::SUFFIXES.iter().find_map(|s| rel.strip_suffix(s));
        if let Some(base) = base {
            if pages.contains_key(base) {
                pages.remove(rel);
                if let Some(p) = pages.get_mut(base) {
                    p.0 += size;
                }
            }
        }
    }
    pages.into_iter().map(|(r, (s, m))| (r, s, m)).collect()
}

/// The budget's thread: scan the tree once, then expire inactive pages until
/// the filter is gone.
fn keeper(budget: Weak<Budget>) {
    let Some(b) = budget.upgrade() else { return };
    let started = Instant::now();
    let mut found = Vec::new();
    scan(b.dir.root().as_fd(), "", 0, &mut found);
    let n = found.len();
    b.scanned(found);
    tracing::info!(
        "cache: disk budget: indexed {n} pages in {:?}",
        started.elapsed()
    );
    let tick = b.limits.inactive.map_or(Duration::from_secs(1), |i| {
        (i / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
    });
    drop(b);
    loop {
        std::thread::sleep(tick);
        let Some(b) = budget.upgrade() else { return };
        let victims = b.expired();
        b.evict(victims);
    }
}

/// Every page under `dir` (dot-named entries skipped, symlinks never followed).
fn scan(
    dir: BorrowedFd<'_>,
    prefix: &str,
    depth: usize,
    found: &mut Vec<(String, u64, SystemTime)>,
) {
    if depth > MAX_DEPTH + 1 {
        return;
    }
    let Ok(entries) = Dir::read_from(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_bytes().starts_with(b".") {
            continue;
        }
        let Ok(text) = name.to_str() else { continue };
        let rel = if prefix.is_empty() {
            text.to_owned()
        } else {
            format!("{prefix}/{text}")
        };
        let Ok(st) = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile if st.st_size > 0 => {
                let modified = UNIX_EPOCH + Duration::from_secs(st.st_mtime.max(0) as u64);
                found.push((rel, st.st_size as u64, modified));
            }
            FileType::Directory => {
                let Ok(c) = CString::new(name.to_bytes()) else {
                    continue;
                };
                if let Ok(sub) = openat(dir, c.as_c_str(), DIR_FLAGS, Mode::empty()) {
                    scan(sub.as_fd(), &rel, depth + 1, found);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86400)));
        for bad in ["", "0", "5y", "-1", "1.5h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn twins_count_with_their_page() {
        let t = UNIX_EPOCH;
        let found = vec![
            ("a".to_owned(), 100, t),
            ("a.gz".to_owned(), 30, t),
            ("a.br".to_owned(), 20, t),
            ("orphan.gz".to_owned(), 5, t),
        ];
        let mut got = with_twins(found);
        got.sort();
        assert_eq!(
            got,
            [("a".to_owned(), 150, t), ("orphan.gz".to_owned(), 5, t)]
        );
    }

    #[test]
    fn least_recently_used_first() {
        let mut i = Index::default();
        i.put("a", 10, 0);
        i.put("b", 20, 1);
        i.put("c", 30, 2);
        i.put("a", 15, 3); // used again, and restored larger
        assert_eq!(i.bytes, 65);
        assert_eq!(i.pop_oldest().as_deref(), Some("b"));
        assert_eq!(i.pop_oldest().as_deref(), Some("c"));
        assert_eq!(i.bytes, 15);
        assert_eq!(i.pop_oldest().as_deref(), Some("a"));
        assert_eq!((i.pop_oldest(), i.bytes, i.pages.len()), (None, 0, 0));
    }
}
