//! The purge contract for hot pages, under concurrent load: deleting, renaming
//! over and truncating a page the cache holds in memory takes effect on the very
//! next request. No response to a request sent after such an operation returned
//! may carry the bytes the operation made obsolete.
//!
//! The real binary serves the echo app behind the cache. The test writes the
//! page files itself, straight into cache_dir (as a deploy script or an operator
//! would), each version with its own recognisable bytes (`old-pPP-gGGGGG-`
//! repeated), while load threads GET the pages round-robin on keep-alive
//! connections. The echo app's answer to a miss is a JSON report (never stored:
//! it is not `text/html`), so no byte of it can be mistaken for a page version.
//!
//! # Why the ordering makes the check sound
//!
//! The main thread performs one operation at a time. When the file-system call
//! has returned, it pushes a record of what the operation made obsolete (page,
//! generation, the length beyond which that generation's bytes are obsolete)
//! and only then increments `done` (SeqCst). A load thread reads `done`
//! *before* it writes each request. So for every record with index < that value,
//! the operation had returned before the request left the client: the host
//! cannot have read the request before the file system changed, and a response
//! carrying the obsolete bytes is stale, whatever the host's threads did.
//! Records with index >= the value may have happened while the request was in
//! flight, so old bytes are allowed for them. (Checked while writing this test:
//! reading `done` *after* the response instead reports violations within a
//! few operations, the in-flight requests that legitimately saw the old bytes,
//! so the check does catch old bytes when they are there.)
//!
//! Every body that claims to be a page version must also be exactly that
//! version's bytes (or, after a truncation, their prefix): a response to a
//! request sent after an operation returned that is not is a failure too.
//! The test waits, after each operation, until a request sent after it was
//! answered and checked, and until what replaced the old version has been hit
//! several times (so the next operation on the page meets a page in memory).

mod support;

use std::io::BufReader;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

/// Pages under load (`/hot/0` .. `/hot/7`).
const PAGES: usize = 8;
/// Client threads, each with its own keep-alive connection.
const LOADERS: usize = 4;
/// One page is large enough (>= 64 KiB) to be answered from its file with
/// `sendfile` after the check against the copy in memory.
const BIG_PAGE: usize = PAGES - 1;
/// Operations to perform (fewer if `TIME_BUDGET` runs out first).
const MAX_OPS: usize = 450;
const TIME_BUDGET: Duration = Duration::from_secs(10);
/// Hits of a version seen before it counts as hot (the first reads the file
/// into memory; the later ones are answered from memory).
const HOT_HITS: u64 = 3;
/// `old-pPP-gGGGGG-`
const TAG_LEN: usize = 15;

fn tag(page: usize, gen: u64) -> String {
    format!("old-p{page:02}-g{gen:05}-")
}

fn full_len(page: usize) -> usize {
    if page == BIG_PAGE {
        96 * 1024 + 5
    } else {
        2048 + 37 * page
    }
}

/// The bytes of version `gen` of `page`: its tag repeated, cut at the page's size.
fn version(page: usize, gen: u64) -> Vec<u8> {
    let len = full_len(page);
    let tag = tag(page, gen);
    let mut out = tag.repeat(len / TAG_LEN + 1).into_bytes();
    out.truncate(len);
    out
}

/// The page and generation a body claims to be (from its first tag).
fn parse(body: &[u8]) -> Option<(usize, u64)> {
    let head = std::str::from_utf8(body.get(..TAG_LEN)?).ok()?;
    let rest = head.strip_prefix("old-p")?;
    let page = rest.get(..2)?.parse().ok()?;
    let gen = rest.get(3..)?.strip_prefix('g')?.strip_suffix('-')?;
    Some((page, gen.parse().ok()?))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Delete,
    Rename,
    Truncate,
}

const KINDS: [Kind; 3] = [Kind::Delete, Kind::Rename, Kind::Truncate];

/// What one operation made obsolete: generation `gen` of `page` longer than
/// `longer_than` bytes (0 for a delete or a rename: every byte of it).
#[derive(Debug, Clone)]
struct Obsolete {
    kind: Kind,
    page: usize,
    gen: u64,
    longer_than: usize,
}

/// The version of a page a test waits to see hot, and its hits so far.
#[derive(Default)]
struct Hot {
    want: Option<(u64, usize)>,
    hits: u64,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    /// Operations begun (incremented just before the file-system call).
    started: AtomicU64,
    /// Operations returned and recorded (incremented after the push to `ops`).
    done: AtomicU64,
    ops: Mutex<Vec<Obsolete>>,
    /// Per page: the highest `done` read before a request for it whose response
    /// has been checked.
    seen: [AtomicU64; PAGES],
    hot: [Mutex<Hot>; PAGES],
    violations: Mutex<Vec<String>>,
    /// Responses that look complete but are no version's bytes, to requests in
    /// flight while an operation ran (see `a_large_hot_page_truncated_while_it_is_sent`).
    corrupt_in_flight: Mutex<Vec<String>>,
    /// Errors and unexpected answers to requests that overlapped no operation.
    failures: Mutex<Vec<String>>,
    /// The same for requests in flight while an operation ran.
    overlapping_failures: Mutex<Vec<String>>,
    requests: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

fn x_cache(r: &Reply) -> &str {
    r.header("x-cache").unwrap_or("<none>")
}

fn load(port: u16, thread: usize, pages: &[usize], shared: &Shared) {
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut n = thread;
    while !shared.stop.load(SeqCst) {
        let page = pages[n % pages.len()];
        n += 1;
        let path = format!("/hot/{page}");
        // Read before the request is written: see the module comment.
        let done_before = shared.done.load(SeqCst);
        let result = (|| {
            if conn.is_none() {
                let s = connect(port)?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                conn = Some(BufReader::new(s));
            }
            let c = conn.as_mut().unwrap();
            write_request(c.get_mut(), "GET", &path, &[], None, false)?;
            read_response(c, false)
        })();
        let overlapped = shared.started.load(SeqCst) > done_before;
        shared.requests.fetch_add(1, SeqCst);
        let fail = |what: String| {
            let list = if overlapped {
                &shared.overlapping_failures
            } else {
                &shared.failures
            };
            list.lock()
                .unwrap()
                .push(format!("{path} (done {done_before}): {what}"));
        };
        let reply = match result {
            Ok(r) => r,
            Err(e) => {
                conn = None;
                fail(format!("request failed: {e}"));
                continue;
            }
        };
        if reply
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            conn = None;
        }
        check(shared, page, done_before, overlapped, &reply, &fail);
        shared.seen[page].fetch_max(done_before, SeqCst);
    }
}

fn check(
    shared: &Shared,
    page: usize,
    done_before: u64,
    overlapped: bool,
    r: &Reply,
    fail: &dyn Fn(String),
) {
    if r.status != 200 {
        fail(format!("status {} {}: {}", r.status, x_cache(r), r.text()));
        return;
    }
    let Some((p, gen)) = parse(&r.body) else {
        // Not a page version: it must be the app's answer to a miss.
        shared.misses.fetch_add(1, SeqCst);
        if x_cache(r) != "MISS" || !r.body.starts_with(b"{") {
            fail(format!(
                "X-Cache {} with a body that is no page version nor the app's report: {:?}",
                x_cache(r),
                String::from_utf8_lossy(&r.body[..r.body.len().min(80)])
            ));
        }
        return;
    };
    shared.hits.fetch_add(1, SeqCst);
    let len = r.body.len();
    let intact = p == page && version(p, gen).get(..len) == Some(&r.body[..]);
    if !intact || x_cache(r) != "HIT" {
        let expected = version(p, gen);
        let at = (0..len)
            .find(|&i| expected.get(i) != Some(&r.body[i]))
            .unwrap_or(len);
        let around = |b: &[u8]| {
            let from = at.saturating_sub(TAG_LEN).min(b.len());
            String::from_utf8_lossy(&b[from..(at + 2 * TAG_LEN).min(b.len())]).into_owned()
        };
        let ops: Vec<String> = shared
            .ops
            .lock()
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(_, o)| o.page == page)
            .rev()
            .take(4)
            .map(|(i, o)| format!("#{i} {:?} g{} >{}", o.kind, o.gen, o.longer_than))
            .collect();
        let list = if overlapped {
            &shared.corrupt_in_flight
        } else {
            &shared.violations
        };
        list.lock().unwrap().push(format!(
            "CORRUPT /hot/{page}: X-Cache {}, {len} bytes claiming page {p} generation {gen}, \
             which are not a prefix of that version (intact: {intact}): they differ from \
             byte {at}: {:?}, expected {:?}; done before the request {done_before}; \
             last operations on the page {ops:?}; headers {:?}",
            x_cache(r),
            around(&r.body),
            around(&expected),
            r.headers,
        ));
        return;
    }
    {
        let ops = shared.ops.lock().unwrap();
        for (i, op) in ops[..done_before as usize].iter().enumerate() {
            if op.page == page && op.gen == gen && len > op.longer_than {
                shared.violations.lock().unwrap().push(format!(
                    "STALE /hot/{page}: a request sent after operation #{i} ({:?} of generation \
                     {gen}, obsolete beyond {} bytes) had returned got X-Cache {} with {len} \
                     bytes of generation {gen} (operations done before the request: {done_before})",
                    op.kind,
                    op.longer_than,
                    x_cache(r),
                ));
            }
        }
    }
    let mut hot = shared.hot[page].lock().unwrap();
    if hot.want == Some((gen, len)) {
        hot.hits += 1;
    }
}

/// Wait for `cond`, up to 5 s; false if it never held.
fn wait(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > Duration::from_secs(5) {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    true
}

/// Expect `(gen, len)` to be the page's version from now on, with no hits yet.
fn expect_hot(shared: &Shared, page: usize, gen: u64, len: usize) {
    *shared.hot[page].lock().unwrap() = Hot {
        want: Some((gen, len)),
        hits: 0,
    };
}

/// Write version `gen` of the page beside it and rename it into place.
fn install(file: &Path, page: usize, gen: u64) {
    let tmp = file.with_file_name(format!(".hotpurge-tmp-{page}"));
    std::fs::write(&tmp, version(page, gen)).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// What one run under load saw.
struct Outcome {
    ops: usize,
    per_kind: [u64; 3],
    /// Hits of the version in place seen before each operation, per kind.
    hot_hits_before: [u64; 3],
    elapsed: Duration,
    requests: u64,
    hits: u64,
    misses: u64,
    violations: Vec<String>,
    corrupt_in_flight: Vec<String>,
    failures: Vec<String>,
    overlapping: Vec<String>,
    problems: Vec<String>,
    log: String,
    exit: std::process::ExitStatus,
}

/// Serve `pages` to `LOADERS` client threads and run up to `max_ops` of
/// `kinds` (rotating) on them within `budget`, each on a hot page.
fn run(pages: &'static [usize], kinds: &[Kind], max_ops: usize, budget: Duration) -> Outcome {
    let dir = tempdir();
    let host = Host::start_in(
        dir.path(),
        "[app:main]\nuse = egg:echo\nfilter-with = cache\n\n\
         [filter:cache]\nuse = egg:wsgi_cache#middleware\ncache_dir = cache\n\
         status_header = X-Cache\n\n\
         [server:main]\nthreads = 4\n",
    );
    // The host created and marked cache_dir at start; the pages go below it.
    let hot_dir = dir.path().join("cache/hot");
    std::fs::create_dir_all(&hot_dir).unwrap();
    let files: Vec<PathBuf> = (0..PAGES).map(|p| hot_dir.join(p.to_string())).collect();

    let shared = Arc::new(Shared::default());
    // Per page: the generation in place and its length (None: deleted).
    let mut state: Vec<Option<(u64, usize)>> = vec![None; PAGES];
    let mut next_gen = 1u64;
    for &page in pages {
        expect_hot(&shared, page, next_gen, full_len(page));
        install(&files[page], page, next_gen);
        state[page] = Some((next_gen, full_len(page)));
        next_gen += 1;
    }

    let port = host.port;
    let loaders: Vec<_> = (0..LOADERS)
        .map(|t| {
            let shared = shared.clone();
            std::thread::spawn(move || load(port, t, pages, &shared))
        })
        .collect();

    let mut problems = Vec::new();
    let hot_now = |page: usize| shared.hot[page].lock().unwrap().hits;
    for &page in pages {
        if !wait(|| hot_now(page) >= HOT_HITS) {
            problems.push(format!("/hot/{page} never became hot"));
        }
    }

    let started = Instant::now();
    let mut per_kind = [0u64; 3];
    let mut hot_hits_before = [0u64; 3];
    let mut op = 0usize;
    while op < max_ops && started.elapsed() < budget && problems.is_empty() {
        // With 8 pages and 3 kinds rotating independently, every page sees
        // every kind after every other kind (a truncate of a renamed-in page,
        // a rename over a truncated page, ...).
        let kind = kinds[op % kinds.len()];
        let kind_at = KINDS.iter().position(|&k| k == kind).unwrap();
        let page = pages[op % pages.len()];
        let file = &files[page];
        op += 1;

        // Bring the page back (deleted, or truncated too short to cut again)
        // and wait until it is hot.
        if state[page].is_none_or(|(_, len)| kind == Kind::Truncate && len < 4 * TAG_LEN) {
            expect_hot(&shared, page, next_gen, full_len(page));
            install(file, page, next_gen);
            state[page] = Some((next_gen, full_len(page)));
            next_gen += 1;
            if !wait(|| hot_now(page) >= HOT_HITS) {
                problems.push(format!("/hot/{page} never became hot again"));
                break;
            }
        }
        let (gen, len) = state[page].unwrap();
        hot_hits_before[kind_at] += hot_now(page);

        // The operation, then its record, then the counter (see the module comment).
        shared.started.fetch_add(1, SeqCst);
        let obsolete = match kind {
            Kind::Delete => {
                std::fs::remove_file(file).unwrap();
                state[page] = None;
                0
            }
            Kind::Rename => {
                expect_hot(&shared, page, next_gen, full_len(page));
                install(file, page, next_gen);
                state[page] = Some((next_gen, full_len(page)));
                next_gen += 1;
                0
            }
            Kind::Truncate => {
                // Not a multiple of the tag, so the cut lands inside one.
                let shorter = len * 5 / 8 + 3;
                expect_hot(&shared, page, gen, shorter);
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(file)
                    .unwrap()
                    .set_len(shorter as u64)
                    .unwrap();
                state[page] = Some((gen, shorter));
                shorter
            }
        };
        shared.ops.lock().unwrap().push(Obsolete {
            kind,
            page,
            gen,
            longer_than: obsolete,
        });
        let done = shared.done.fetch_add(1, SeqCst) + 1;
        per_kind[kind_at] += 1;

        // At least one request sent after the operation returned has been
        // answered and checked, and what replaced the old version is hot.
        if !wait(|| shared.seen[page].load(SeqCst) >= done) {
            problems.push(format!(
                "no request for /hot/{page} was answered after operation #{}",
                done - 1
            ));
        }
        if state[page].is_some() && !wait(|| hot_now(page) >= HOT_HITS) {
            problems.push(format!(
                "/hot/{page} did not become hot after operation #{}",
                done - 1
            ));
        }
    }
    let elapsed = started.elapsed();

    shared.stop.store(true, SeqCst);
    for t in loaders {
        t.join().unwrap();
    }
    let log = host.log();
    let exit = host.terminate();
    let take = |list: &Mutex<Vec<String>>| std::mem::take(&mut *list.lock().unwrap());
    let outcome = Outcome {
        ops: op,
        per_kind,
        hot_hits_before,
        elapsed,
        requests: shared.requests.load(SeqCst),
        hits: shared.hits.load(SeqCst),
        misses: shared.misses.load(SeqCst),
        violations: take(&shared.violations),
        corrupt_in_flight: take(&shared.corrupt_in_flight),
        failures: take(&shared.failures),
        overlapping: take(&shared.overlapping_failures),
        problems,
        log,
        exit,
    };
    eprintln!(
        "{} operations ({:?} delete/rename/truncate) in {:?}: {} requests, {} hits, {} \
         misses; hits of each version before its operation {:?}; {} requests failed and {} \
         got corrupt bytes while an operation ran",
        outcome.ops,
        outcome.per_kind,
        outcome.elapsed,
        outcome.requests,
        outcome.hits,
        outcome.misses,
        outcome.hot_hits_before,
        outcome.overlapping.len(),
        outcome.corrupt_in_flight.len(),
    );
    outcome
}

fn show(v: &[String]) -> String {
    v.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
}

#[test]
fn deleting_renaming_over_and_truncating_hot_pages_under_load_never_serves_the_old_bytes() {
    const ALL: [usize; PAGES] = [0, 1, 2, 3, 4, 5, 6, 7];
    let o = run(&ALL, &KINDS, MAX_OPS, TIME_BUDGET);
    let log = &o.log;
    // The contract: nothing obsolete (or corrupt) after an operation returned.
    assert!(
        o.violations.is_empty(),
        "{} responses to requests sent after an operation returned carried obsolete or \
         corrupt bytes:\n{}\nlog:\n{log}",
        o.violations.len(),
        show(&o.violations)
    );
    assert!(
        o.problems.is_empty(),
        "{}\nlog:\n{log}",
        o.problems.join("\n")
    );
    assert!(
        o.failures.is_empty(),
        "{} requests that overlapped no operation failed:\n{}\nlog:\n{log}",
        o.failures.len(),
        show(&o.failures)
    );
    // A request in flight while a page is truncated may find the file
    // shorter than it measured it: a 500 ("a cached file could not be
    // read"), documented. Anything else is a failure.
    let unexplained: Vec<_> = o
        .overlapping
        .iter()
        .filter(|f| !f.contains("status 500"))
        .cloned()
        .collect();
    assert!(
        unexplained.is_empty(),
        "{} requests in flight during an operation failed:\n{}\nlog:\n{log}",
        unexplained.len(),
        show(&unexplained)
    );
    // Responses in flight while the big page was cut down in place can be
    // corrupt (see the ignored test below); that is outside this contract, so
    // they are only reported here.
    if !o.corrupt_in_flight.is_empty() {
        eprintln!(
            "warning: {} responses in flight during a truncation were corrupt:\n{}",
            o.corrupt_in_flight.len(),
            show(&o.corrupt_in_flight)
        );
    }
    assert!(
        o.exit.success(),
        "plughost exited with {}\nlog:\n{log}",
        o.exit
    );

    // Not vacuous: real load, every kind done many times, each on a page
    // that had just been served from the cache (from memory) several times.
    assert!(o.requests > 1000, "only {} requests", o.requests);
    assert!(o.misses > 0, "no deleted page was ever answered by the app");
    for (i, kind) in KINDS.iter().enumerate() {
        assert!(
            o.per_kind[i] >= 30,
            "only {} {kind:?} operations",
            o.per_kind[i]
        );
        assert!(
            o.hot_hits_before[i] >= HOT_HITS * o.per_kind[i],
            "{kind:?}: only {} hits of the versions before {} operations",
            o.hot_hits_before[i],
            o.per_kind[i]
        );
    }
}

/// A known problem, outside the contract above (which is about requests sent
/// after an operation returned): a page of 64 KiB or more held in memory goes
/// out with `sendfile(2)`, which hands the page cache's pages to the socket
/// without copying them. When the file is truncated in place while the
/// response is on its way, the kernel zeroes the tail of the page holding the
/// new end of file, and the client receives zeros instead of the page's bytes,
/// in a response with the full Content-Length and `X-Cache: HIT`: a corrupt
/// response that looks complete (the check before `sendfile` passed, and
/// `sendfile` was not short). Seen on ext4 (a temporary directory) in about
/// 5% of the truncations of a 96 KiB hot page under this load; never on a
/// request sent after the truncation returned. Accepted and documented (the
/// README's purge is `rm` or rename, never truncate; nginx's `sendfile on` has
/// the same hazard, and no check before or after `sendfile` can close it while
/// the pages are shared with the socket), so this reproducer stays ignored:
/// `cargo test -p plughost --test hot_page_purge -- --ignored`.
#[test]
#[ignore = "known: sendfile + in-place truncation sends zeros in a complete-looking response"]
fn a_large_hot_page_truncated_while_it_is_sent_is_never_a_complete_looking_corrupt_response() {
    const BIG: [usize; 1] = [BIG_PAGE];
    let o = run(&BIG, &[Kind::Truncate], 2000, Duration::from_secs(20));
    assert!(o.problems.is_empty(), "{}", o.problems.join("\n"));
    assert!(
        o.violations.is_empty() && o.corrupt_in_flight.is_empty(),
        "{} corrupt responses after a truncation returned, {} while it ran:\n{}\n{}",
        o.violations.len(),
        o.corrupt_in_flight.len(),
        show(&o.violations),
        show(&o.corrupt_in_flight)
    );
}

/// `mv cache cache.old && mkdir cache`, the quick way to purge a whole tree,
/// purges every page for the very next request: a page in memory and a large
/// one answered from its file alike, although the host held cache_dir open.
/// Then the new directory is taken and caches again.
#[test]
fn moving_cache_dir_away_purges_every_page_for_the_next_request() {
    let dir = tempdir();
    let host = Host::start_in(
        dir.path(),
        "[app:main]\nuse = egg:echo\nfilter-with = cache\n\n\
         [filter:cache]\nuse = egg:wsgi_cache#middleware\ncache_dir = cache\n\
         status_header = X-Cache\n",
    );
    let cache = dir.path().join("cache");
    let small = 0;
    for page in [small, BIG_PAGE] {
        std::fs::create_dir_all(cache.join("hot")).unwrap();
        install(&cache.join(format!("hot/{page}")), page, 1);
        for _ in 0..HOT_HITS + 1 {
            let r = host.get(&format!("/hot/{page}"));
            assert_eq!(x_cache(&r), "HIT", "/hot/{page} before the move");
            assert_eq!(r.body, version(page, 1), "/hot/{page} before the move");
        }
    }
    std::fs::rename(&cache, dir.path().join("cache.old")).unwrap();
    std::fs::create_dir(&cache).unwrap();
    for page in [small, BIG_PAGE] {
        let r = host.get(&format!("/hot/{page}"));
        assert_eq!(x_cache(&r), "MISS", "/hot/{page} after the move");
        assert_ne!(parse(&r.body), Some((page, 1)), "old bytes after the move");
    }
    // The new directory is taken within a second of misses and used.
    let start = Instant::now();
    loop {
        std::fs::create_dir_all(cache.join("hot")).unwrap();
        install(&cache.join(format!("hot/{small}")), small, 2);
        let r = host.get(&format!("/hot/{small}"));
        if x_cache(&r) == "HIT" {
            assert_eq!(r.body, version(small, 2));
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the new cache_dir is not read\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
