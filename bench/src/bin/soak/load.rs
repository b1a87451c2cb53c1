//! The soak's clients: a paced mix of requests, each checked in full, and the
//! check of the cache tree at the end.

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};

use crate::http::{self, Conn, Resp};

/// The echo plugin's `X-Echo-Bytes` pattern.
const PATTERN: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789\n";
/// Pages that are always hits after the warm-up.
const HOT: u64 = 64;
/// The temporary files of the cache.
const TEMP_PREFIX: &str = ".plughost-tmp-";

/// Counters and failures shared by the client threads, the reloader and the sampler.
#[derive(Default)]
pub struct Shared {
    pub requests: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    /// The deploy.ini generation in force (misses go under miss/g{generation}).
    pub generation: AtomicU64,
    errors: Mutex<Errors>,
}

/// Unexpected failures by kind: count and first example.
#[derive(Default, Debug)]
pub struct Errors {
    pub total: u64,
    pub by_kind: BTreeMap<String, (u64, String)>,
}

impl Shared {
    /// Record an unexpected failure; the kind is the text before the first `:`.
    pub fn error(&self, message: String) {
        let kind = message.split(':').next().unwrap_or("").trim().to_owned();
        let mut e = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        e.total += 1;
        e.by_kind.entry(kind).or_insert((0, message)).0 += 1;
    }

    pub fn take_errors(&self) -> Errors {
        std::mem::take(&mut *self.errors.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Requests that went as expected, by outcome.
#[derive(Default, Debug)]
pub struct Tally(pub BTreeMap<&'static str, u64>);

impl Tally {
    fn add(&mut self, outcome: &'static str) {
        *self.0.entry(outcome).or_default() += 1;
    }

    pub fn merge(&mut self, other: Tally) {
        for (k, n) in other.0 {
            *self.0.entry(k).or_default() += n;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

pub const HIT: &str = "cache hit (hot page)";
pub const MISS: &str = "cache miss, unique path (stored)";
pub const RAW: &str = "uncached echo behind tag filters";
pub const PANIC: &str = "plugin panic -> 500";
pub const CUT: &str = "body failed midway -> connection cut";

/// xorshift64*: enough randomness for a request mix.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// The body of hot page `k` (sent as X-Echo-Body, so a miss would answer the same).
fn hot_body(k: u64) -> String {
    let unit = format!("hot-page-{k};");
    unit.repeat((200 + 50 * k as usize) / unit.len() + 1)
}

fn is_pattern(body: &[u8]) -> bool {
    body.iter()
        .enumerate()
        .all(|(i, b)| *b == PATTERN[i % PATTERN.len()])
}

/// Load the hot pages into the cache and check they are hits.
pub fn warm(addr: SocketAddr, cache_dir: &Path) -> Result<()> {
    for k in 0..HOT {
        let path = format!("/hot/{k}");
        let body = hot_body(k);
        let r = Conn::open(addr)?.request("GET", &path, &[("X-Echo-Body", &body)])?;
        ensure!(
            r.status == 200 && r.body == body.as_bytes(),
            "warming {path}: status {}, {} bytes",
            r.status,
            r.body.len()
        );
        let file = cache_dir.join(format!("hot/{k}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while fs::read(&file).ok().as_deref() != Some(body.as_bytes()) {
            ensure!(
                Instant::now() < deadline,
                "{} was not stored",
                file.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let r = http::get(addr, &path)?;
        ensure!(
            r.header("x-cache") == Some("HIT"),
            "{path} is not a hit after warming"
        );
    }
    Ok(())
}

/// One client thread: paced requests of the mix until `stop`.
pub fn client(
    t: usize,
    addr: SocketAddr,
    period: Duration,
    shared: &Shared,
    stop: &AtomicBool,
) -> Tally {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1).wrapping_mul(0x1234_5678_9abc_def1));
    let mut tally = Tally::default();
    let mut keep_alive: Option<Conn> = None;
    let mut next = Instant::now();
    let mut i = 0u64;
    while !stop.load(SeqCst) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        } else if now > next + Duration::from_secs(1) {
            next = now; // far behind (a stall): do not burst to catch up
        }
        next += period;
        i += 1;
        let gen = shared.generation.load(SeqCst);
        let roll = rng.below(100);
        let result = match roll {
            0..=49 => hit(addr, &mut keep_alive, rng.below(HOT)),
            50..=69 => miss(addr, gen, t, i, &mut rng),
            70..=86 => raw(addr, t, i),
            87..=94 => panic(addr, t, i),
            _ => cut(addr, gen, t, i),
        };
        shared.requests.fetch_add(1, SeqCst);
        match result {
            Ok(outcome) => tally.add(outcome),
            Err(e) => shared.error(format!("{e:#}")),
        }
    }
    tally
}

fn hit(addr: SocketAddr, conn: &mut Option<Conn>, k: u64) -> Result<&'static str> {
    let path = format!("/hot/{k}");
    let body = hot_body(k);
    if conn.is_none() {
        *conn = Some(Conn::open(addr)?);
    }
    let c = conn.as_mut().expect("just opened");
    let r = match c.request("GET", &path, &[("X-Echo-Body", &body)]) {
        Ok(r) => r,
        Err(e) => {
            *conn = None;
            bail!("hit on a keep-alive connection failed: {e:#}");
        }
    };
    ensure!(r.status == 200, "hit: {path}: status {}", r.status);
    ensure!(r.body == body.as_bytes(), "hit: {path}: wrong body");
    ensure!(
        r.header("x-cache") == Some("HIT"),
        "hit: hot page answered {:?}",
        r.header("x-cache")
    );
    Ok(HIT)
}

fn miss_size(rng: &mut Rng) -> u64 {
    match rng.below(100) {
        0..=69 => 1 + rng.below(16 * 1024),
        70..=94 => 16 * 1024 + rng.below(112 * 1024),
        _ => 128 * 1024 + rng.below(384 * 1024),
    }
}

fn fresh(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Resp> {
    Conn::open(addr)?.request("GET", path, headers)
}

fn miss(addr: SocketAddr, gen: u64, t: usize, i: u64, rng: &mut Rng) -> Result<&'static str> {
    let size = miss_size(rng);
    let path = format!("/miss/g{gen}/{size}/{t}-{i}");
    let r = fresh(addr, &path, &[("X-Echo-Bytes", &size.to_string())])
        .map_err(|e| e.context("miss"))?;
    ensure!(r.status == 200, "miss: {path}: status {}", r.status);
    ensure!(
        r.header("x-cache") == Some("MISS"),
        "miss: unique path answered {:?}",
        r.header("x-cache")
    );
    ensure!(
        r.body.len() as u64 == size && is_pattern(&r.body),
        "miss: {path}: wrong body ({} bytes)",
        r.body.len()
    );
    Ok(MISS)
}

fn raw(addr: SocketAddr, t: usize, i: u64) -> Result<&'static str> {
    let path = format!("/raw/r{t}-{i}");
    let r = fresh(addr, &path, &[]).map_err(|e| e.context("uncached"))?;
    ensure!(r.status == 200, "uncached: {path}: status {}", r.status);
    let text = String::from_utf8_lossy(&r.body);
    ensure!(
        text.contains(&format!("\"path_info\": \"/r{t}-{i}\"")),
        "uncached: {path}: wrong report"
    );
    ensure!(
        r.header("x-tag-chain-out")
            .is_some_and(|v| v.starts_with('g')),
        "uncached: no tag filter ran (X-Tag-Chain-Out {:?})",
        r.header("x-tag-chain-out")
    );
    Ok(RAW)
}

fn panic(addr: SocketAddr, t: usize, i: u64) -> Result<&'static str> {
    // Half straight to the app, half through the cache (a miss that is not stored).
    let path = if i.is_multiple_of(2) {
        "/raw/panic".to_owned()
    } else {
        format!("/boom/{t}-{i}")
    };
    let r = fresh(addr, &path, &[("X-Echo-Panic", "1")]).map_err(|e| e.context("panic"))?;
    ensure!(r.status == 500, "panic: {path}: status {}", r.status);
    Ok(PANIC)
}

fn cut(addr: SocketAddr, gen: u64, t: usize, i: u64) -> Result<&'static str> {
    let path = if i.is_multiple_of(2) {
        "/raw/cut".to_owned()
    } else {
        format!("/cut/g{gen}/{t}-{i}")
    };
    let headers = [("X-Echo-Bytes", "400000"), ("X-Echo-Fail-After", "200000")];
    match fresh(addr, &path, &headers) {
        Ok(r) => bail!(
            "cut: {path}: a body failing midway arrived complete ({} with {} bytes)",
            r.status,
            r.body.len()
        ),
        Err(_) => Ok(CUT),
    }
}

/// What the cache tree holds at the end.
#[derive(Debug, Default)]
pub struct Pages {
    pub whole: u64,
    pub bad_total: u64,
    /// The first few bad ones.
    pub bad: Vec<String>,
}

/// Check every page in the tree: hot pages hold their body, misses the pattern
/// of the size in their path (miss/g{gen}/{size}/{name}); nothing else is there.
pub fn check_tree(cache_dir: &Path) -> Pages {
    let mut pages = Pages::default();
    let mut stack = vec![cache_dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(cache_dir).unwrap_or(&p).to_owned();
            let parts: Vec<String> = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|n| n.starts_with(TEMP_PREFIX)) {
                continue;
            }
            let body = fs::read(&p).unwrap_or_default();
            let ok = match parts
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice()
            {
                ["hot", k] => k.parse().is_ok_and(|k| body == hot_body(k).as_bytes()),
                ["miss", _, size, _] => size
                    .parse::<usize>()
                    .is_ok_and(|n| body.len() == n && is_pattern(&body)),
                _ => false,
            };
            if ok {
                pages.whole += 1;
            } else {
                pages.bad_total += 1;
                if pages.bad.len() < 20 {
                    pages
                        .bad
                        .push(format!("{} ({} bytes)", rel.display(), body.len()));
                }
            }
        }
    }
    pages
}

/// Temporary files anywhere in the tree.
pub fn temp_files(cache_dir: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![cache_dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                stack.push(p);
            } else if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                n += 1;
            }
        }
    }
    n
}
