//! Fault suites over real sockets, with the real binary and real plugins:
//! plugin faults (panics, blocking past request_timeout, invalid heads, bodies
//! that fail midway) in the middle of ordinary traffic; SIGKILL in the middle
//! of a storm of cache stores, repeatedly, checking that no partial file is
//! ever visible and that a restart sweeps the leftovers; and a read-only or
//! full cache_dir under concurrent load.
//!
//! The tests of this file run one at a time (they load a 2-core machine on
//! their own, and the pool-recovery check measures time).

mod support;

use std::collections::BTreeMap;
use std::io::BufReader;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use support::*;

/// One test of this file at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

const PATTERN: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789\n";

/// The first `len` bytes of the echo plugin's `X-Echo-Bytes` body.
fn pattern(len: usize) -> Vec<u8> {
    PATTERN.iter().cycle().take(len).copied().collect()
}

fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// Metrics, read from `egg:plughost#metrics` mounted at /_metrics.

fn metrics(port: u16) -> String {
    let r = request(port, "GET", "/_metrics", &[], b"").expect("the metrics app answers");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

/// The value of an unlabelled gauge.
fn gauge(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// `plughost_cache_events_total{...,event="EVENT"}` (0 when absent).
fn cache_event(text: &str, event: &str) -> u64 {
    let label = format!("event=\"{event}\"}}");
    text.lines()
        .filter(|l| l.starts_with("plughost_cache_events_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The sum of every `store_error.*` cache event.
fn store_errors(text: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.starts_with("plughost_cache_events_total{") && l.contains("event=\"store_error.")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn warn_lines(host: &Host, needle: &str) -> usize {
    host.log()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(needle))
        .count()
}

// ---------------------------------------------------------------------------
// Plugin faults under load.

const THREADS: usize = 6;
/// request_timeout, in seconds.
const TIMEOUT_S: u64 = 4;
/// A blocking call: longer than request_timeout.
const BLOCK_MS: u64 = 6000;
/// The recovery burst's calls: shorter than request_timeout, longer than half of it,
/// so a call that had to wait for a lost worker would run out of time (504).
const BURST_MS: u64 = 2500;

fn faults_config() -> String {
    format!(
        "[composite:main]\nuse = egg:plughost#urlmap\n/ = echo\n/_metrics = metrics\n\n\
         [app:echo]\nuse = egg:echo\n\n[app:metrics]\nuse = egg:plughost#metrics\n\n\
         [server:main]\nthreads = {THREADS}\nrequest_timeout = {TIMEOUT_S}\n"
    )
}

/// One ordinary request (of three kinds, by `i`), on `conn` (keep-alive) or a
/// new connection; checks the answer in full.
fn normal_request(
    port: u16,
    conn: &mut Option<BufReader<TcpStream>>,
    t: usize,
    i: usize,
) -> Result<(), String> {
    let path = format!("/normal/{t}/{i}");
    let body = vec![b'q'; (i % 5) * 3000];
    let bytes = (50_000 + 7 * i).to_string();
    let (method, headers): (&str, Vec<(&str, &str)>) = match i % 3 {
        0 => ("GET", vec![]),
        1 => ("POST", vec![]),
        _ => ("GET", vec![("X-Echo-Bytes", bytes.as_str())]),
    };
    let send_body = if method == "POST" { &body[..] } else { b"" };
    let reply = match conn {
        Some(r) => write_request(r.get_mut(), method, &path, &headers, Some(send_body), false)
            .and_then(|()| read_response(r, false)),
        None => request(port, method, &path, &headers, send_body),
    }
    .map_err(|e| format!("{method} {path}: {e}"))?;
    if reply.status != 200 {
        return Err(format!("{method} {path}: status {}", reply.status));
    }
    if i % 3 == 2 {
        if reply.body != pattern(50_000 + 7 * i) {
            return Err(format!("{path}: wrong {} byte body", reply.body.len()));
        }
        return Ok(());
    }
    let j: serde_json::Value =
        serde_json::from_slice(&reply.body).map_err(|e| format!("{path}: not JSON: {e}"))?;
    if j["path_info"] != path.as_str() || j["method"] != method || j["body_len"] != send_body.len()
    {
        return Err(format!("{method} {path}: wrong report {j}"));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Panic,
    Block,
    BadStatus,
    BadHeader,
    CutBody,
}

/// Send one faulty request and check its definite outcome.
fn fault_request(port: u16, fault: Fault, i: usize) -> Result<(), String> {
    let path = format!("/fault/{fault:?}/{i}");
    let block = BLOCK_MS.to_string();
    let (headers, want): (Vec<(&str, &str)>, u16) = match fault {
        Fault::Panic => (vec![("X-Echo-Panic", "1")], 500),
        Fault::Block => (vec![("X-Echo-Sleep-Ms", block.as_str())], 504),
        Fault::BadStatus => (vec![("X-Echo-Status", "42")], 500),
        Fault::BadHeader => (vec![("X-Echo-Header", "Bad Name: x")], 500),
        Fault::CutBody => {
            // The head goes out, then the body fails: the client must see the
            // connection cut, never a response that looks complete.
            let mut s = connect(port).map_err(|e| e.to_string())?;
            let headers = [("X-Echo-Bytes", "1000000"), ("X-Echo-Fail-After", "300000")];
            write_request(&mut s, "GET", &path, &headers, None, true).map_err(|e| e.to_string())?;
            let mut got = 0usize;
            let r = read_response_with(
                &mut BufReader::new(s),
                false,
                &mut |piece: &[u8], _: &mut Vec<u8>| got += piece.len(),
            );
            return match r {
                Ok(reply) => Err(format!(
                    "{path}: a body failing midway arrived as a complete {} of {} bytes",
                    reply.status, got
                )),
                Err(_) if got == 0 || got > 300_000 => Err(format!(
                    "{path}: cut after {got} bytes, expected the head and at most 300000 bytes"
                )),
                Err(_) => Ok(()),
            };
        }
    };
    let started = Instant::now();
    let reply = request(port, "GET", &path, &headers, b"").map_err(|e| format!("{path}: {e}"))?;
    if reply.status != want {
        return Err(format!(
            "{path}: status {} (expected {want}): {}",
            reply.status,
            reply.text()
        ));
    }
    if matches!(fault, Fault::Block) && started.elapsed() >= Duration::from_millis(BLOCK_MS) {
        return Err(format!(
            "{path}: the 504 came after {:?}, not at request_timeout",
            started.elapsed()
        ));
    }
    Ok(())
}

#[test]
fn plugin_faults_under_load_get_definite_outcomes_and_no_worker_is_lost() {
    let _serial = serial();
    let (host, _d) = Host::start(&faults_config());
    let port = host.port;
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let normal_done = Arc::new(AtomicUsize::new(0));

    // Ordinary traffic from start to end: half on keep-alive connections.
    let normal: Vec<_> = (0..4)
        .map(|t| {
            let (stop, failures, done) = (stop.clone(), failures.clone(), normal_done.clone());
            std::thread::spawn(move || {
                let mut conn = None;
                let mut i = 0;
                while !stop.load(SeqCst) || i < 20 {
                    if t % 2 == 0 && conn.is_none() {
                        conn = Some(BufReader::new(connect(port).unwrap()));
                    }
                    if let Err(e) = normal_request(port, &mut conn, t, i) {
                        failures.lock().unwrap().push(format!("normal: {e}"));
                        conn = None;
                    }
                    done.fetch_add(1, SeqCst);
                    i += 1;
                }
            })
        })
        .collect();

    // The faults, each kind from its own thread. Blocking calls run one after
    // another, so at most two workers are held by them (the second starts when
    // the first gets its 504, while the first still sleeps).
    let plan = [
        (Fault::Panic, 25),
        (Fault::BadStatus, 25),
        (Fault::BadHeader, 25),
        (Fault::CutBody, 15),
        (Fault::Block, 2),
    ];
    let faults: Vec<_> = plan
        .into_iter()
        .map(|(fault, reps)| {
            let failures = failures.clone();
            std::thread::spawn(move || {
                for i in 0..reps {
                    if let Err(e) = fault_request(port, fault, i) {
                        failures.lock().unwrap().push(format!("fault: {e}"));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    for f in faults {
        f.join().unwrap();
    }
    stop.store(true, SeqCst);
    for n in normal {
        n.join().unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}\nlog:\n{}",
        failures.len(),
        failures.join("\n"),
        host.log()
    );
    let done = normal_done.load(SeqCst);
    eprintln!("{done} ordinary requests succeeded beside the faults");
    for line in [
        "X-Echo-Panic requested a panic",
        "invalid status code 42",
        "invalid header name",
        "no response within request_timeout",
        "plugin response body failed midway",
    ] {
        assert!(
            host.wait_log(line, Duration::from_secs(5)),
            "no log line {line:?}:\n{}",
            host.log()
        );
    }

    // The blocked calls end on their own (their sleep runs out); then every
    // worker is idle again.
    wait_until(
        "the worker pool to become idle",
        Duration::from_secs(30),
        || {
            let m = metrics(port);
            gauge(&m, "plughost_worker_pool_busy") == 0
                && gauge(&m, "plughost_worker_pool_queue") == 0
        },
    );
    let m = metrics(port);
    assert_eq!(gauge(&m, "plughost_worker_pool_size"), THREADS as i64);
    // Only the metrics request itself is in flight.
    assert_eq!(gauge(&m, "plughost_requests_in_flight"), 1, "{m}");

    // Every worker is there: `threads` slow calls run side by side. A lost
    // worker would leave one call queued behind a whole BURST_MS, past
    // request_timeout (a 504), and the pool would never show all busy.
    let started = Instant::now();
    let burst: Vec<_> = (0..THREADS)
        .map(|i| {
            std::thread::spawn(move || {
                let ms = BURST_MS.to_string();
                request(
                    port,
                    "GET",
                    &format!("/burst/{i}"),
                    &[("X-Echo-Sleep-Ms", &ms)],
                    b"",
                )
                .map(|r| r.status)
                .map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut max_busy = 0;
    while !burst.iter().all(|b| b.is_finished()) {
        let m = metrics(port);
        max_busy = max_busy.max(gauge(&m, "plughost_worker_pool_busy"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let statuses: Vec<_> = burst.into_iter().map(|b| b.join().unwrap()).collect();
    let elapsed = started.elapsed();
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(200))),
        "burst: {statuses:?}\nlog:\n{}",
        host.log()
    );
    assert_eq!(
        max_busy, THREADS as i64,
        "the pool never ran {THREADS} calls at once"
    );
    assert!(
        elapsed < Duration::from_millis(2 * BURST_MS),
        "{THREADS} parallel {BURST_MS} ms calls took {elapsed:?}: a worker is missing"
    );
    eprintln!("burst of {THREADS} x {BURST_MS} ms calls took {elapsed:?}");
    wait_until("busy workers back to 0", Duration::from_secs(10), || {
        gauge(&metrics(port), "plughost_worker_pool_busy") == 0
    });
    assert_eq!(host.get("/after").status, 200);
}

// ---------------------------------------------------------------------------
// Cache trees: what a reader could see.

/// The regular files under `dir` (not following symlinks), relative; entries
/// that vanish while we look (a rename racing the walk) are skipped.
fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
            } else {
                out.push((p.strip_prefix(dir).unwrap().to_owned(), meta.len()));
            }
        }
    }
    out.sort();
    out
}

fn is_temp(rel: &Path) -> bool {
    rel.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(".plughost-tmp-"))
}

fn temp_count(dir: &Path) -> usize {
    files_under(dir).iter().filter(|(p, _)| is_temp(p)).count()
}

/// The size a cached page must have, from its path (`storm/<round>/<size>/<name>`).
fn size_from_path(rel: &Path) -> Option<usize> {
    let parts: Vec<_> = rel.iter().map(|s| s.to_string_lossy()).collect();
    match parts.as_slice() {
        [storm, _, size, _] if storm == "storm" => size.parse().ok(),
        _ => None,
    }
}

/// Check every visible (non-temporary) file: it must be the whole page its path
/// names, byte for byte. Returns (pages, temporary files).
fn check_tree(cache: &Path) -> (Vec<(PathBuf, usize)>, usize) {
    let mut pages = Vec::new();
    let mut temps = 0;
    for (rel, len) in files_under(cache) {
        if rel == Path::new(".plughost-cache") {
            continue;
        }
        if is_temp(&rel) {
            temps += 1;
            continue;
        }
        let size = size_from_path(&rel)
            .unwrap_or_else(|| panic!("unexpected file {} in the cache", rel.display()));
        assert_eq!(
            len as usize,
            size,
            "{} is visible with {len} of its {size} bytes",
            rel.display()
        );
        let bytes = std::fs::read(cache.join(&rel)).unwrap();
        assert!(
            bytes == pattern(size),
            "{} holds other bytes than the page",
            rel.display()
        );
        pages.push((rel, size));
    }
    (pages, temps)
}

/// Page sizes for the storms: tiny, around the host's 64 KiB pre-read and chunk
/// size, and large enough that many writes are in flight at any moment.
const STORM_SIZES: [usize; 8] = [
    1, 999, 65_535, 65_536, 65_537, 300_001, 1_000_003, 2_500_007,
];
const STORM_CLIENTS: usize = 32;
const ROUNDS: usize = 5;

fn storm_config(round: usize) -> String {
    // Both commit paths: with and without fsync before the rename.
    let fsync = if round.is_multiple_of(2) {
        "true"
    } else {
        "false"
    };
    format!(
        "[app:main]\nuse = egg:echo\nfilter-with = cache\n\n\
         [filter:cache]\nuse = egg:wsgi_cache#middleware\ncache_dir = cache\n\
         status_header = X-Cache\nfsync = {fsync}\n\n\
         [server:main]\nthreads = 8\nmax_connections = 1000\n"
    )
}

#[test]
fn sigkill_during_a_storm_of_stores_never_leaves_a_partial_page() {
    let _serial = serial();
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let mut host = Host::start_in(dir.path(), &storm_config(0));
    let mut leftovers_total = 0;
    let mut pages_total = 0;
    for round in 0..ROUNDS {
        let port = host.port;
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..STORM_CLIENTS)
            .map(|t| {
                let (stop, answered) = (stop.clone(), answered.clone());
                std::thread::spawn(move || {
                    let mut i = 0;
                    while !stop.load(SeqCst) {
                        let size = STORM_SIZES[(t + i) % STORM_SIZES.len()];
                        let path = format!("/storm/{round}/{size}/{t}-{i}");
                        let n = size.to_string();
                        // After the kill every request fails; before it, they must not.
                        match request(port, "GET", &path, &[("X-Echo-Bytes", &n)], b"") {
                            Ok(r) if r.status == 200 && r.body.len() == size => {
                                answered.fetch_add(1, SeqCst);
                            }
                            Ok(r) if !stop.load(SeqCst) => {
                                panic!("{path}: {} with {} bytes", r.status, r.body.len())
                            }
                            _ => {}
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        // Kill mid-storm (a little later each round) while stores are in flight:
        // once pages have landed and temporary files are being written.
        std::thread::sleep(Duration::from_millis(300 + 300 * round as u64));
        let this_round = cache.join(format!("storm/{round}"));
        wait_until(
            &format!("round {round}: pages stored and writes in flight"),
            Duration::from_secs(60),
            || {
                let files = files_under(&this_round);
                let temps = files.iter().filter(|(p, _)| is_temp(p)).count();
                files.len() - temps >= 3 && temps >= 2
            },
        );
        host.child.kill().unwrap();
        host.child.wait().unwrap();
        stop.store(true, SeqCst);
        for c in clients {
            c.join().unwrap();
        }
        let (pages, leftovers) = check_tree(&cache);
        eprintln!(
            "round {round}: {} responses before SIGKILL; {} whole pages in the tree, {leftovers} temporary files left",
            answered.load(SeqCst),
            pages.len()
        );
        leftovers_total += leftovers;
        pages_total = pages.len();

        // A restart on the same cache_dir sweeps the leftovers before it listens.
        drop(host);
        host = Host::start_in(dir.path(), &storm_config(round + 1));
        assert_eq!(
            temp_count(&cache),
            0,
            "temporary files survived the restart"
        );
        if leftovers > 0 {
            assert!(
                host.wait_log(
                    &format!("removed {leftovers} temporary files"),
                    Duration::from_secs(5)
                ),
                "{}",
                host.log()
            );
        }
        // What was stored is served as hits, whole.
        let mine: Vec<_> = pages
            .iter()
            .filter(|(p, _)| p.starts_with(format!("storm/{round}")))
            .collect();
        assert!(!mine.is_empty(), "round {round} stored nothing");
        for (rel, size) in mine.iter().step_by((mine.len() / 6).max(1)) {
            let url = format!("/{}", rel.display());
            let r = host.get(&url);
            assert_eq!((r.status, r.header("x-cache")), (200, Some("HIT")), "{url}");
            assert!(r.body == pattern(*size), "{url}: the hit is not the page");
        }
        // And the cache still stores.
        let url = format!("/storm/{round}/70000/after-restart");
        let r = host.request("GET", &url, &[("X-Echo-Bytes", "70000")], b"");
        assert_eq!((r.status, r.header("x-cache")), (200, Some("MISS")));
        wait_until(
            &format!("{url} to be stored"),
            Duration::from_secs(30),
            || std::fs::metadata(cache.join(&url[1..])).is_ok_and(|m| m.len() == 70_000),
        );
        assert_eq!(host.get(&url).header("x-cache"), Some("HIT"));
    }
    check_tree(&cache);
    eprintln!("{ROUNDS} rounds: {pages_total} pages, {leftovers_total} temporary files swept");
    assert!(
        leftovers_total > 0,
        "no SIGKILL landed while a page was being written; the test proved nothing"
    );
    assert!(host.terminate().success());
}

// ---------------------------------------------------------------------------
// A cache_dir that cannot be written, under concurrent load.

/// Something mounted for a test; unmounted on drop, also when the test fails.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let out = Command::new("umount").arg(&self.0).output();
        if !out.is_ok_and(|o| o.status.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Run `mount ARGS... TARGET`; Err(reason) when mounting is not permitted here.
fn mount(args: &[&str], target: &Path) -> Result<Mounted, String> {
    let out = Command::new("mount")
        .args(args)
        .arg(target)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if out.status.success() {
        Ok(Mounted(target.to_owned()))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Echo behind the cache (cache_dir `cache`), metrics beside it.
fn cached_echo_with_metrics() -> &'static str {
    "[composite:main]\nuse = egg:plughost#urlmap\n/ = site\n/_metrics = metrics\n\n\
     [app:site]\nuse = egg:echo\nfilter-with = cache\n\n\
     [filter:cache]\nuse = egg:wsgi_cache#middleware\ncache_dir = cache\nstatus_header = X-Cache\n\n\
     [app:metrics]\nuse = egg:plughost#metrics\n\n[server:main]\nthreads = 8\n"
}

/// `clients` threads × `each` GETs of unique paths (flat and nested, sizes by
/// `sizes`), each checked to be the app's whole 200. Returns each path (without
/// its leading `/`) with its page's size.
fn concurrent_misses(
    port: u16,
    clients: usize,
    each: usize,
    sizes: &[usize],
) -> BTreeMap<PathBuf, usize> {
    let sizes = sizes.to_vec();
    let handles: Vec<_> = (0..clients)
        .map(|t| {
            let sizes = sizes.clone();
            std::thread::spawn(move || {
                let mut paths = Vec::new();
                for i in 0..each {
                    let size = sizes[(t + i) % sizes.len()];
                    let path = if i % 2 == 0 {
                        format!("/p{t}-{i}")
                    } else {
                        format!("/d{t}/n{i}/page")
                    };
                    let n = size.to_string();
                    let r = request(port, "GET", &path, &[("X-Echo-Bytes", &n)], b"")
                        .unwrap_or_else(|e| panic!("{path}: {e}"));
                    assert_eq!(
                        (r.status, r.header("x-cache")),
                        (200, Some("MISS")),
                        "{path}"
                    );
                    assert!(r.body == pattern(size), "{path}: not the app's body");
                    paths.push((PathBuf::from(&path[1..]), size));
                }
                paths
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

#[test]
fn a_read_only_cache_dir_serves_hits_and_every_miss_under_load() {
    let _serial = serial();
    let dir = tempdir();
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(cache.join("pre")).unwrap();
    std::fs::write(cache.join("pre/page"), "stored before").unwrap();
    // A tree this cache wrote before (its marker).
    std::fs::write(cache.join(".plughost-cache"), "").unwrap();
    // A leftover the start-up sweep cannot remove from a read-only tree.
    std::fs::write(cache.join(".plughost-tmp-1.1-1"), "partial").unwrap();
    // As root, permission bits do not stop writes: a read-only bind mount does.
    let _ro = match mount(&["--bind", &cache.to_string_lossy()], &cache) {
        Ok(bind) => match mount(&["-o", "remount,ro,bind"], &cache) {
            Ok(remount) => {
                std::mem::forget(remount); // one umount undoes both
                bind
            }
            Err(e) => {
                skip_unless_ci(&format!("cannot remount the bind mount read-only ({e})"));
                return;
            }
        },
        Err(e) => {
            skip_unless_ci(&format!("mounting is not permitted here ({e})"));
            return;
        }
    };
    assert!(
        std::fs::write(cache.join("probe"), "x").is_err(),
        "the read-only mount accepts writes"
    );
    let host = Host::start_in(dir.path(), cached_echo_with_metrics());
    let port = host.port;

    // Hits from the read-only tree, beside misses that cannot be stored.
    let hits: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let r = request(port, "GET", "/pre/page", &[], b"").unwrap();
                    assert_eq!((r.status, r.header("x-cache")), (200, Some("HIT")));
                    assert_eq!(r.text(), "stored before");
                }
            })
        })
        .collect();
    let paths = concurrent_misses(port, 12, 16, &[1, 5_000, 70_000, 400_000]);
    for h in hits {
        h.join().unwrap();
    }
    let misses = paths.len() as u64;
    // Every store attempt failed, and each was counted once.
    wait_until(
        "every failed store to be counted",
        Duration::from_secs(30),
        || store_errors(&metrics(port)) >= misses,
    );
    let m = metrics(port);
    assert_eq!(cache_event(&m, "store_error.permission"), misses, "{m}");
    assert_eq!(store_errors(&m), misses, "{m}");
    assert_eq!(cache_event(&m, "store"), 0);
    assert_eq!(
        warn_lines(&host, "store_error.permission"),
        1,
        "{}",
        host.log()
    );
    // The unremovable leftover was reported, not fatal.
    assert!(
        host.wait_log("cannot remove", Duration::from_secs(5)),
        "{}",
        host.log()
    );
    // Nothing changed on disk, and the host still answers.
    let files: Vec<_> = files_under(&cache).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        files,
        [
            PathBuf::from(".plughost-cache"),
            PathBuf::from(".plughost-tmp-1.1-1"),
            PathBuf::from("pre/page")
        ]
    );
    assert_eq!(host.get("/pre/page").text(), "stored before");
    assert!(host.terminate().success());
}

#[test]
fn a_full_cache_dir_under_load_serves_every_request_and_keeps_only_whole_pages() {
    let _serial = serial();
    let dir = tempdir();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let _tmpfs = match mount(&["-t", "tmpfs", "-o", "size=256k", "tmpfs"], &cache) {
        Ok(m) => m,
        Err(e) => {
            skip_unless_ci(&format!("cannot mount a 256 KiB tmpfs to fill ({e})"));
            return;
        }
    };
    let host = Host::start_in(dir.path(), cached_echo_with_metrics());
    let port = host.port;
    // Far more than fits, from many clients at once: some stores land, most
    // run out of space part way.
    let paths = concurrent_misses(port, 12, 12, &[3_000, 40_000, 100_000, 600_000]);
    let misses = paths.len() as u64;
    wait_until(
        "every store to finish or fail",
        Duration::from_secs(30),
        || {
            let m = metrics(port);
            cache_event(&m, "store") + store_errors(&m) >= misses
        },
    );
    let m = metrics(port);
    let full = cache_event(&m, "store_error.disk_full");
    assert!(full > 0, "the disk never filled:\n{m}");
    assert_eq!(
        cache_event(&m, "store") + store_errors(&m),
        misses,
        "each miss is stored or counted as an error once:\n{m}"
    );
    assert_eq!(
        warn_lines(&host, "store_error.disk_full"),
        1,
        "{}",
        host.log()
    );
    wait_until("temporary files to go", Duration::from_secs(10), || {
        temp_count(&cache) == 0
    });
    // What landed is whole, and is served as hits.
    let stored: BTreeMap<PathBuf, u64> = files_under(&cache)
        .into_iter()
        .filter(|(p, _)| p != Path::new(".plughost-cache"))
        .collect();
    assert_eq!(stored.len() as u64, cache_event(&m, "store"), "{stored:?}");
    for (rel, len) in &stored {
        let size = paths[rel];
        assert_eq!(*len as usize, size, "{} is not whole", rel.display());
        assert!(std::fs::read(cache.join(rel)).unwrap() == pattern(size));
        let url = format!("/{}", rel.display());
        let r = host.get(&url);
        assert_eq!((r.status, r.header("x-cache")), (200, Some("HIT")), "{url}");
        assert!(r.body == pattern(size), "{url}: not the page");
    }
    // Space freed by the failed stores is usable: after a purge, pages store again.
    for rel in stored.keys() {
        std::fs::remove_file(cache.join(rel)).unwrap();
    }
    let r = host.request("GET", "/again", &[("X-Echo-Bytes", "50000")], b"");
    assert_eq!((r.status, r.header("x-cache")), (200, Some("MISS")));
    wait_until("/again to be stored", Duration::from_secs(10), || {
        std::fs::metadata(cache.join("again")).is_ok_and(|m| m.len() == 50_000)
    });
    assert!(std::fs::read(cache.join("again")).unwrap() == pattern(50_000));
    assert!(host.terminate().success());
}

// ---------------------------------------------------------------------------
// Signals the moment the host says it listens.

/// Regression: the SIGHUP and SIGTERM handlers were installed only after
/// `listening on` was printed (when their tasks first ran), so a reload or stop
/// requested right after start-up hit the default action and killed the
/// process (SIGHUP: exit by signal, no reload; SIGTERM: no graceful drain).
#[test]
fn signals_sent_as_soon_as_plughost_listens_are_handled() {
    let _serial = serial();
    let dir = tempdir();
    for i in 0..25 {
        let host = Host::start_in(dir.path(), "[app:main]\nuse = egg:echo\n");
        signal(host.pid(), "HUP");
        let r = request(host.port, "GET", "/after-hup", &[], b"");
        assert!(
            matches!(&r, Ok(r) if r.status == 200),
            "round {i}: SIGHUP right after start-up: {r:?}\nlog:\n{}",
            host.log()
        );
        assert!(
            host.wait_log("reloaded", Duration::from_secs(10)),
            "{}",
            host.log()
        );
        let host = Host::start_in(dir.path(), "[app:main]\nuse = egg:echo\n");
        let status = host.terminate();
        assert!(
            status.success(),
            "round {i}: SIGTERM right after start-up: {status}"
        );
    }
}
