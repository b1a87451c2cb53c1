//! The cache's disk budget (`max_size`, `max_files`, `inactive`) against the
//! real binary: usage measured on disk after every batch of a storm of unique
//! URLs, least-recently-used eviction, inactive pages removed, the index
//! rebuilt by the start-up scan, and the metrics gauges.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::page_tree::wait_for_file;
use support::*;

const BUDGET: u64 = 256 * 1024;
const MAX_ENTRY: u64 = 64 * 1024;

fn config(extra: &str) -> String {
    format!(
        "[composite:main]\nuse = egg:plughost#urlmap\n/ = site\n/_metrics = metrics\n\n\
         [app:site]\nuse = egg:echo\nfilter-with = cache\n\n[app:metrics]\nuse = egg:plughost#metrics\n\n\
         [filter:cache]\nuse = egg:plughost#cache\ncache_dir = cache\nstatus_header = X-Cache\n{extra}"
    )
}

/// (bytes, files) of the pages under `dir` (dot-named entries aside), as on disk.
fn usage(dir: &Path) -> (u64, u64) {
    let mut total = (0, 0);
    // Pages come and go while this walks (stores, evictions): a vanished
    // entry is simply not counted.
    let Ok(entries) = std::fs::read_dir(dir) else {
        return total;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let (b, f) = usage(&entry.path());
            total = (total.0 + b, total.1 + f);
        } else if meta.is_file() {
            total = (total.0 + meta.len(), total.1 + 1);
        }
    }
    total
}

fn metric(host: &Host, name: &str) -> u64 {
    let text = host.get("/_metrics").text();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn evicted_now(host: &Host) -> u64 {
    metric(
        host,
        "plughost_cache_events_total{section=\"filter:cache\",event=\"evict\"}",
    )
}

fn page(host: &Host, path: &str, bytes: u64) -> Reply {
    let n = bytes.to_string();
    host.request("GET", path, &[("X-Echo-Bytes", &n)], b"")
}

#[test]
fn max_size_holds_under_a_storm_of_unique_urls_evicting_the_least_recently_used() {
    let dir = tempdir();
    let host = Host::start_in(
        dir.path(),
        &config(&format!("max_size = 256K\nmax_entry_bytes = {MAX_ENTRY}\n")),
    );
    let cache = dir.path().join("cache");
    assert_eq!(page(&host, "/keep", 4096).header("x-cache"), Some("MISS"));
    wait_for_file(&cache.join("keep"));
    let port = host.port;
    for batch in 0..10 {
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    for i in 0..6 {
                        let path = format!("/storm/{batch}/{t}/{i}");
                        let r =
                            request(port, "GET", &path, &[("X-Echo-Bytes", "4096")], b"").unwrap();
                        assert_eq!((r.status, r.body.len()), (200, 4096), "{path}");
                    }
                });
            }
        });
        // The page used all along stays; the storm's oldest go first.
        assert_eq!(
            host.get("/keep").header("x-cache"),
            Some("HIT"),
            "batch {batch}"
        );
        let (bytes, _) = usage(&cache);
        assert!(
            bytes <= BUDGET + MAX_ENTRY,
            "batch {batch}: {bytes} bytes on disk"
        );
    }
    // The last stores may still be settling; then usage is within budget exactly.
    let deadline = Instant::now() + Duration::from_secs(5);
    while usage(&cache).0 > BUDGET {
        assert!(Instant::now() < deadline, "{:?}", usage(&cache));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (bytes, files) = usage(&cache);
    assert!(
        bytes > BUDGET / 2,
        "the budget is used, not emptied: {bytes}"
    );
    assert!(
        !cache.join("storm/0/0/0").exists(),
        "the oldest were evicted"
    );
    assert!(cache.join("keep").exists());
    // Every response was stored (the count follows the rename by a moment).
    let stored = |host: &Host| {
        metric(
            host,
            "plughost_cache_events_total{section=\"filter:cache\",event=\"store\"}",
        )
    };
    while stored(&host) < 241 {
        assert!(Instant::now() < deadline + Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(20));
    }
    // The eviction counter follows each unlink by a moment too: read both
    // until they agree (they must, within the deadline).
    let mut files = files;
    let gauge = |host: &Host| metric(host, "plughost_cache_disk_files{section=\"filter:cache\"}");
    while evicted_now(&host) != 241 - files || gauge(&host) != files {
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "every stored page not on disk was evicted: {} evicted, {files} files",
            evicted_now(&host)
        );
        std::thread::sleep(Duration::from_millis(20));
        files = usage(&cache).1;
    }
    assert_eq!(gauge(&host), files);
    assert_eq!(
        metric(&host, "plughost_cache_disk_bytes{section=\"filter:cache\"}"),
        bytes
    );
}

#[test]
fn inactive_pages_are_removed_and_used_ones_kept() {
    let dir = tempdir();
    let host = Host::start_in(dir.path(), &config("inactive = 1s\n"));
    let cache = dir.path().join("cache");
    page(&host, "/old", 100);
    page(&host, "/hot", 100);
    wait_for_file(&cache.join("old"));
    wait_for_file(&cache.join("hot"));
    let start = Instant::now();
    while cache.join("old").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "/old was never removed"
        );
        assert_eq!(host.get("/hot").header("x-cache"), Some("HIT"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "removed too early"
    );
    assert!(cache.join("hot").exists(), "a page in use is kept");
    // Removed means a miss again, never a stale hit.
    assert_eq!(page(&host, "/old", 100).header("x-cache"), Some("MISS"));
}

#[test]
fn the_start_up_scan_rebuilds_the_index_and_enforces_max_files() {
    let dir = tempdir();
    let host = Host::start_in(dir.path(), &config(""));
    let cache = dir.path().join("cache");
    for i in 0..30 {
        page(&host, &format!("/p/{i}"), 1000);
    }
    wait_for_file(&cache.join("p/29"));
    host.terminate();
    assert_eq!(usage(&cache).1, 30);

    let host = Host::start_in(dir.path(), &config("max_files = 10\n"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while usage(&cache).1 > 10 {
        assert!(Instant::now() < deadline, "{:?}", usage(&cache));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(usage(&cache).1, 10);
    // New stores keep to the count.
    for i in 0..5 {
        page(&host, &format!("/q/{i}"), 1000);
    }
    wait_for_file(&cache.join("q/4"));
    std::thread::sleep(Duration::from_millis(100));
    assert!(usage(&cache).1 <= 10, "{:?}", usage(&cache));
    assert_eq!(
        metric(&host, "plughost_cache_disk_files{section=\"filter:cache\"}"),
        10
    );
}

#[test]
fn bad_budget_keys_name_their_line() {
    for (line, want) in [
        (
            "max_size = lots",
            "max_size: expected a number of bytes above 0",
        ),
        (
            "max_files = 0",
            "max_files: expected a number of pages above 0",
        ),
        ("inactive = 5y", "inactive: expected a duration above 0"),
    ] {
        let dir = tempdir();
        let err = Host::try_start_in(dir.path(), &config(&format!("{line}\n")), &[])
            .err()
            .unwrap_or_else(|| panic!("{line} was accepted"));
        assert!(
            err.contains(&format!("deploy.ini:17: [filter:cache] {want}")),
            "{line}: {err}"
        );
    }
}
