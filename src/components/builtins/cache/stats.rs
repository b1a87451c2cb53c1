//! Counters for every decision the cache makes, readable while it runs (for the
//! debug log now and a metrics endpoint later), and the once-per-reason warnings.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};

/// One counted outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Event {
    /// Answered from a cached file (304s included).
    Hit,
    /// A hit answered 304 Not Modified (also counted as a hit).
    NotModified,
    /// Looked up, not found: the app answered.
    Miss,
    /// A response written into the tree.
    Store,
    /// A page removed by the disk budget (`max_size`, `max_files`, `inactive`).
    Evict,
    /// A waiting request served from the file a concurrent miss stored.
    Coalesced,
    /// A waiting request that called the app itself (nothing was stored, or the wait timed out).
    CoalesceFallback,

    /// Not a candidate: a method other than GET or HEAD.
    BypassMethod,
    /// Not a candidate: a query string.
    BypassQuery,
    /// Not a candidate: an `Authorization` header.
    BypassAuthorization,
    /// Not a candidate: a `Cookie` header with a cookie `ignore_cookies` does not list.
    BypassCookie,
    /// Not a candidate: outside `cache_paths`.
    BypassScope,
    /// Not a candidate: a path that cannot map safely to a file.
    BypassUnsafePath,
    /// Not a candidate: a Host `host_dirs` cannot use or `hosts` does not list.
    BypassHost,
    /// Not a candidate: a path ending in `/` under `layout = dirs` (it would
    /// name the same file as the path without the `/`).
    BypassSlash,
    /// Not a candidate: under `compress`, a name ending in `.gz` or `.br` (a twin's name).
    BypassTwinName,

    /// A HEAD miss (passed through, never stored).
    NoStoreHead,
    NoStoreStatus,
    NoStoreSetCookie,
    NoStoreContentEncoding,
    /// A media type other than `content_type` (every hit is served as that type).
    NoStoreTypeMismatch,
    NoStoreVary,
    NoStoreCacheControl,
    NoStoreEmpty,
    /// Larger than `max_entry_bytes`.
    NoStoreTooLarge,
    /// The body failed, the client hung up, or it did not match its Content-Length.
    NoStoreIncomplete,
    /// A purge covered the page while its answer was being stored (the
    /// answer predates the purge: see `invalidate::guard`).
    NoStorePurged,

    /// Pages removed by purges in this process (HTTP, `purge_on`, tags,
    /// expired soft purges; `plughost cache purge` counts in its own process).
    Purged,
    /// `PURGE` requests accepted.
    PurgeHttp,
    /// `PURGE` requests refused (address or token).
    PurgeRefused,
    /// Writes (`purge_on`) that purged their page.
    PurgeOnWrite,
    /// Purges by tag.
    PurgeTag,
    /// Pages a soft purge asked to refresh.
    SoftPurge,
    /// Refreshed pages stored in place of the old one.
    Refreshed,
    /// Refreshed pages removed because the new answer was not storable.
    RefreshRemoved,
    /// Soft-purged pages removed because no refresh landed within `stale_max`.
    RefreshExpired,
    /// Purges published to the purge bus.
    BusPublished,
    /// Purges from other nodes applied from the purge bus.
    BusApplied,
    /// Unpublished purges dropped because the queue was full (Redis down too long).
    BusDropped,
    /// Trees wiped because purges were trimmed from the stream before this node read them.
    BusWiped,

    /// A file where a directory is needed, or the reverse (also special files).
    ErrorCollision,
    /// A symlink inside cache_dir (never followed).
    ErrorSymlink,
    ErrorPermission,
    ErrorDiskFull,
    ErrorNameTooLong,
    /// Any other I/O error.
    ErrorIo,
}

const N: usize = Event::ErrorIo as usize + 1;
/// Every event, in counter order.
const EVENTS: [Event; N] = [
    Event::Hit,
    Event::NotModified,
    Event::Miss,
    Event::Store,
    Event::Evict,
    Event::Coalesced,
    Event::CoalesceFallback,
    Event::BypassMethod,
    Event::BypassQuery,
    Event::BypassAuthorization,
    Event::BypassCookie,
    Event::BypassScope,
    Event::BypassUnsafePath,
    Event::BypassHost,
    Event::BypassSlash,
    Event::BypassTwinName,
    Event::NoStoreHead,
    Event::NoStoreStatus,
    Event::NoStoreSetCookie,
    Event::NoStoreContentEncoding,
    Event::NoStoreTypeMismatch,
    Event::NoStoreVary,
    Event::NoStoreCacheControl,
    Event::NoStoreEmpty,
    Event::NoStoreTooLarge,
    Event::NoStoreIncomplete,
    Event::NoStorePurged,
    Event::Purged,
    Event::PurgeHttp,
    Event::PurgeRefused,
    Event::PurgeOnWrite,
    Event::PurgeTag,
    Event::SoftPurge,
    Event::Refreshed,
    Event::RefreshRemoved,
    Event::RefreshExpired,
    Event::BusPublished,
    Event::BusApplied,
    Event::BusDropped,
    Event::BusWiped,
    Event::ErrorCollision,
    Event::ErrorSymlink,
    Event::ErrorPermission,
    Event::ErrorDiskFull,
    Event::ErrorNameTooLong,
    Event::ErrorIo,
];

impl Event {
    /// The counter's name, e.g. `bypass.query` or `store_error.disk_full`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Event::Hit => "hit",
            Event::NotModified => "not_modified",
            Event::Miss => "miss",
            Event::Store => "store",
            Event::Evict => "evict",
            Event::Coalesced => "coalesced",
            Event::CoalesceFallback => "coalesce_fallback",
            Event::BypassMethod => "bypass.method",
            Event::BypassQuery => "bypass.query",
            Event::BypassAuthorization => "bypass.authorization",
            Event::BypassCookie => "bypass.cookie",
            Event::BypassScope => "bypass.scope",
            Event::BypassUnsafePath => "bypass.unsafe_path",
            Event::BypassHost => "bypass.host",
            Event::BypassSlash => "bypass.slash",
            Event::BypassTwinName => "bypass.twin_name",
            Event::NoStoreHead => "no_store.head",
            Event::NoStoreStatus => "no_store.status",
            Event::NoStoreSetCookie => "no_store.set_cookie",
            Event::NoStoreContentEncoding => "no_store.content_encoding",
            Event::NoStoreTypeMismatch => "no_store.type_mismatch",
            Event::NoStoreVary => "no_store.vary",
            Event::NoStoreCacheControl => "no_store.cache_control",
            Event::NoStoreEmpty => "no_store.empty",
            Event::NoStoreTooLarge => "no_store.too_large",
            Event::NoStoreIncomplete => "no_store.incomplete",
            Event::NoStorePurged => "no_store.purged",
            Event::Purged => "purge.pages",
            Event::PurgeHttp => "purge.http",
            Event::PurgeRefused => "purge.refused",
            Event::PurgeOnWrite => "purge.on_write",
            Event::PurgeTag => "purge.tag",
            Event::SoftPurge => "purge.soft",
            Event::Refreshed => "refresh.stored",
            Event::RefreshRemoved => "refresh.removed",
            Event::RefreshExpired => "refresh.expired",
            Event::BusPublished => "bus.published",
            Event::BusApplied => "bus.applied",
            Event::BusDropped => "bus.dropped",
            Event::BusWiped => "bus.wiped",
            Event::ErrorCollision => "store_error.collision",
            Event::ErrorSymlink => "store_error.symlink",
            Event::ErrorPermission => "store_error.permission",
            Event::ErrorDiskFull => "store_error.disk_full",
            Event::ErrorNameTooLong => "store_error.name_too_long",
            Event::ErrorIo => "store_error.io",
        }
    }

    /// Whether this is a disk problem worth one warning.
    fn warns(self) -> bool {
        self as usize >= Event::ErrorCollision as usize
    }
}

/// The counters of one cache filter.
pub(crate) struct CacheStats {
    /// The section that configured the filter, e.g. `filter:cache`.
    pub section: String,
    /// What else identifies the filter across reloads (its cache_dir).
    key: String,
    counts: [AtomicU64; N],
    warned: [AtomicBool; N],
    /// Whether a disk budget keeps the two gauges below.
    pub budgeted: AtomicBool,
    /// Bytes of the pages in the budget's index.
    pub disk_bytes: AtomicU64,
    /// Pages in the budget's index.
    pub disk_files: AtomicU64,
    /// Whether a purge bus is configured (the bus gauges below mean something).
    pub bus_active: AtomicBool,
    /// Whether Redis answered the last time the bus asked.
    pub bus_up: AtomicBool,
    /// Purges waiting to be published.
    pub bus_queue: AtomicU64,
    /// Publication to application of the last entry applied from the bus, ms.
    pub bus_lag_ms: AtomicU64,
}

impl CacheStats {
    pub(crate) fn new(section: &str) -> CacheStats {
        CacheStats {
            section: section.to_owned(),
            key: String::new(),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            warned: std::array::from_fn(|_| AtomicBool::new(false)),
            budgeted: AtomicBool::new(false),
            disk_bytes: AtomicU64::new(0),
            disk_files: AtomicU64::new(0),
            bus_active: AtomicBool::new(false),
            bus_up: AtomicBool::new(false),
            bus_queue: AtomicU64::new(0),
            bus_lag_ms: AtomicU64::new(0),
        }
    }

    /// Count `event`; returns the new count.
    pub(crate) fn count(&self, event: Event) -> u64 {
        self.counts[event as usize].fetch_add(1, Relaxed) + 1
    }

    /// The current count of `event`.
    pub(crate) fn get(&self, event: Event) -> u64 {
        self.counts[event as usize].load(Relaxed)
    }

    /// Every counter by name, in a fixed order.
    pub(crate) fn snapshot(&self) -> Vec<(&'static str, u64)> {
        EVENTS.iter().map(|&e| (e.name(), self.get(e))).collect()
    }

    /// Count a store problem, log it at debug, and at warn the first time this
    /// reason occurs (a full disk must not flood the log).
    pub(crate) fn problem(&self, event: Event, path: &str, detail: &dyn fmt::Display) {
        let n = self.count(event);
        tracing::debug!(section = %self.section, path, event = event.name(), count = n, "cache: {detail}");
        if event.warns() && !self.warned[event as usize].swap(true, Relaxed) {
            tracing::warn!(
                section = %self.section,
                "cache: cannot store /{path} ({}: {detail}); the app's response is served unstored. \
                 Later `{}` problems are only counted",
                event.name(),
                event.name()
            );
        }
    }
}

impl fmt::Display for CacheStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, n) in self.snapshot() {
            if n > 0 {
                write!(f, "{}{name}={n}", if first { "" } else { " " })?;
                first = false;
            }
        }
        Ok(())
    }
}

static REGISTRY: Mutex<Vec<Weak<CacheStats>>> = Mutex::new(Vec::new());

/// The counters for the filter of `section` keeping pages in `cache_dir`: the
/// live ones if a running pipeline has that filter (so counters carry on across
/// a hot reload instead of restarting or appearing twice), else new ones.
pub(crate) fn for_filter(section: &str, cache_dir: &str) -> Arc<CacheStats> {
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    reg.retain(|w| w.strong_count() > 0);
    if let Some(live) = reg
        .iter()
        .filter_map(Weak::upgrade)
        .find(|s| s.section == section && s.key == cache_dir)
    {
        return live;
    }
    let stats = Arc::new(CacheStats {
        key: cache_dir.to_owned(),
        ..CacheStats::new(section)
    });
    reg.push(Arc::downgrade(&stats));
    stats
}

/// The counters of every cache filter alive in this process.
pub(crate) fn all() -> Vec<Arc<CacheStats>> {
    let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    reg.iter().filter_map(Weak::upgrade).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_every_event_once() {
        for (i, e) in EVENTS.iter().enumerate() {
            assert_eq!(*e as usize, i, "{e:?}");
        }
        let s = CacheStats::new("filter:c");
        let names: Vec<_> = s.snapshot().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), N);
        let mut dedup = names.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), N, "{names:?}");
        s.count(Event::Hit);
        s.count(Event::Hit);
        s.count(Event::BypassQuery);
        assert_eq!(s.get(Event::Hit), 2);
        assert_eq!(s.to_string(), "hit=2 bypass.query=1");
    }

    #[test]
    fn a_reloaded_filter_keeps_its_counters() {
        let a = for_filter("filter:reg-test", "/c");
        a.count(Event::Miss);
        let b = for_filter("filter:reg-test", "/c");
        assert!(Arc::ptr_eq(&a, &b));
        let other = for_filter("filter:reg-test", "/elsewhere");
        assert!(!Arc::ptr_eq(&a, &other));
        assert!(all().iter().any(|s| Arc::ptr_eq(s, &a)));
        drop((a, b));
        assert_eq!(for_filter("filter:reg-test", "/c").get(Event::Miss), 0);
    }
}
