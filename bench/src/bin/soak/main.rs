//! `soak`: run plughost under a bounded mixed load for minutes and watch its
//! memory and file descriptors. Not part of CI.
//!
//!     cargo run --release -p plughost-bench --bin soak -- --minutes 5
//!
//! It builds what it runs (`cargo build --release -p plughost -p echo -p tag`;
//! `--no-build` skips that), starts `plughost serve deploy.ini --reload` in a
//! temporary directory with the cache over echo, an uncached echo behind tag
//! filters, and the metrics app, all on 127.0.0.1, and then, for the given
//! minutes, keeps a paced load on it from a few client threads: cache hits,
//! misses on unique paths (stored), uncached requests, plugin panics, bodies
//! that fail midway, and every `--reload-secs` a rewrite of deploy.ini that
//! adds or removes a filter (a hot reload), checked to take effect. Every
//! `--sample-secs` it reads plughost's VmRSS (/proc/PID/status) and counts its
//! open file descriptors (/proc/PID/fd). At the end it prints the requests by
//! outcome, the unexpected failures, a table of RSS and descriptors over time,
//! and a verdict (see `report::verdict` for the rule). It stops everything it
//! started, also on Ctrl-C, and exits 1 unless the verdict is PASS.

#[allow(dead_code)]
#[path = "../loadbench/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "../loadbench/procs.rs"]
mod procs;
#[allow(dead_code)]
#[path = "../loadbench/servers.rs"]
mod servers;
#[allow(dead_code)]
#[path = "../loadbench/tools.rs"]
mod tools;

mod load;
mod report;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;

use load::{Shared, Tally};
use report::Sample;

#[derive(Parser, Clone)]
#[command(about = "Soak test: plughost under a mixed load with reloads; RSS and fds over time")]
pub struct Args {
    /// How long the load runs, in minutes (fractions allowed).
    #[arg(long, default_value_t = 5.0)]
    minutes: f64,
    /// Client threads.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Total requests per second the clients aim at (the load is paced, not flooding).
    #[arg(long, default_value_t = 400)]
    rate: u32,
    /// Seconds between deploy.ini rewrites (each one is a hot reload).
    #[arg(long, default_value_t = 15)]
    reload_secs: u64,
    /// Seconds between RSS/fd samples (default: about 24 samples over the run).
    #[arg(long)]
    sample_secs: Option<u64>,
    /// plughost's `threads` (plugin workers).
    #[arg(long, default_value_t = 8)]
    server_threads: u32,
    /// Do not run `cargo build --release` first; use what is in target/release.
    #[arg(long)]
    no_build: bool,
    /// Keep the temporary directory (config, log, cache tree) and print it.
    #[arg(long)]
    keep_temp: bool,
}

fn main() {
    match run(Args::parse()) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("soak: error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// The deploy.ini of generation `gen`: odd generations put a second tag filter
/// in front of the uncached echo, so each reload creates and drops instances.
pub fn config(cache_dir: &Path, gen: u64, threads: u32) -> String {
    let extra = if gen % 2 == 1 {
        "filter-with = extra\n\n[filter:extra]\nuse = egg:tag\ntag = extra\n"
    } else {
        ""
    };
    format!(
        "# soak generation {gen}: the cache over echo, echo behind tag filters, metrics.\n\
         [composite:main]\nuse = egg:plughost#urlmap\n/ = site\n/raw = raw\n/_metrics = metrics\n\n\
         [app:site]\nuse = egg:echo\nfilter-with = cache\n\n\
         [filter:cache]\nuse = egg:wsgi_cache#middleware\ncache_dir = {}\nstatus_header = X-Cache\n\n\
         [app:raw]\nuse = egg:echo\nfilter-with = tag\n\n\
         [filter:tag]\nuse = egg:tag\ntag = g{gen}\n{extra}\n\
         [app:metrics]\nuse = egg:plughost#metrics\n\n\
         [server:main]\nhost = 127.0.0.1\nport = 0\nthreads = {threads}\nrequest_timeout = 30\n",
        cache_dir.display()
    )
}

/// Replace deploy.ini in one step (a reader never sees half a file).
fn write_config(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("ini.new");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// Open file descriptors of `pid`.
fn fd_count(pid: u32) -> Option<u64> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

fn threads_of(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:")?.trim().parse().ok())
}

fn sample(pid: u32, t: Duration, shared: &Shared) -> Option<Sample> {
    Some(Sample {
        t,
        requests: shared.requests.load(SeqCst),
        reloads: shared.reloads.load(SeqCst),
        rss_kib: procs::status_kib(pid, "VmRSS")?,
        fds: fd_count(pid)?,
        threads: threads_of(pid)?,
    })
}

fn run(args: Args) -> Result<i32> {
    ensure!(args.minutes > 0.0, "--minutes must be positive");
    ensure!(
        args.clients >= 1 && args.rate >= 1,
        "--clients and --rate must be positive"
    );
    ensure!(args.reload_secs >= 2, "--reload-secs must be at least 2");
    procs::install_signal_handler()?;
    let root = tools::workspace_root();
    if !args.no_build {
        tools::build_packages(&root, &["plughost", "echo", "tag"])?;
    }
    let release = tools::release_dir(&root);
    let bin = release.join("plughost");
    for file in [
        &bin,
        &release.join("libecho.so"),
        &release.join("libtag.so"),
    ] {
        if !file.is_file() {
            bail!(
                "{} is missing; build with `cargo build --release -p plughost -p echo -p tag` \
                 (or run soak without --no-build)",
                file.display()
            );
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix("plughost-soak-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    procs::set_temp_dir(Some(tmp.path()));
    let outcome = soak(&args, &bin, &release, tmp.path());
    procs::set_temp_dir(None);
    if args.keep_temp {
        println!("kept {}", tmp.keep().display());
    }
    let report = outcome?;
    println!("{report}");
    Ok(if report.pass() { 0 } else { 1 })
}

fn soak(args: &Args, bin: &Path, plugin_dir: &Path, dir: &Path) -> Result<report::Report> {
    let cache_dir = dir.join("cache");
    let ini = dir.join("deploy.ini");
    let log = dir.join("plughost.log");
    write_config(&ini, &config(&cache_dir, 0, args.server_threads))?;
    let (mut host, addr) = servers::start_plughost_with(
        "plughost",
        bin,
        plugin_dir,
        &ini,
        &log,
        &["--reload"],
        // Thousands of deliberate plugin panics: no backtrace for each.
        &[("RUST_BACKTRACE", "0")],
    )?;
    let pid = host.pid;
    eprintln!(
        "soak: plughost (pid {pid}) on {addr}; files in {}",
        dir.display()
    );

    load::warm(addr, &cache_dir)?;
    // Descriptors at rest, before the load (every warm-up connection closed).
    std::thread::sleep(Duration::from_millis(1000));
    let quiet_before = fd_count(pid).context("cannot read plughost's fds")?;

    let run_for = Duration::from_secs_f64(args.minutes * 60.0);
    let every = Duration::from_secs(
        args.sample_secs
            .unwrap_or_else(|| (run_for.as_secs() / 24).max(5)),
    );
    let shared = Arc::new(Shared::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let clients: Vec<_> = (0..args.clients)
        .map(|t| {
            let (shared, stop) = (shared.clone(), stop.clone());
            let period = Duration::from_secs_f64(args.clients as f64 / f64::from(args.rate));
            std::thread::spawn(move || load::client(t, addr, period, &shared, &stop))
        })
        .collect();
    let reloader = {
        let (shared, stop) = (shared.clone(), stop.clone());
        let (ini, cache_dir) = (ini.clone(), cache_dir.clone());
        let (every, threads) = (Duration::from_secs(args.reload_secs), args.server_threads);
        std::thread::spawn(move || reloads(addr, &ini, &cache_dir, threads, every, &shared, &stop))
    };

    let mut samples = Vec::new();
    samples.extend(sample(pid, Duration::ZERO, &shared));
    let mut next = every;
    let mut died = None;
    while started.elapsed() < run_for {
        std::thread::sleep(
            Duration::from_millis(200).min(run_for.saturating_sub(started.elapsed())),
        );
        if let Err(e) = host.check_running() {
            died = Some(e);
            break;
        }
        if started.elapsed() >= next {
            if let Some(s) = sample(pid, started.elapsed(), &shared) {
                eprintln!("soak: {}", s.line());
                samples.push(s);
            }
            next += every;
        }
    }
    stop.store(true, SeqCst);
    let mut tally = Tally::default();
    for c in clients {
        tally.merge(c.join().unwrap_or_default());
    }
    let _ = reloader.join();
    if let Some(e) = died {
        return Err(e.context("plughost died during the soak"));
    }
    samples.extend(sample(pid, started.elapsed(), &shared));
    // Descriptors at rest again.
    std::thread::sleep(Duration::from_millis(1500));
    let quiet_after = fd_count(pid).context("cannot read plughost's fds")?;
    let metrics = http::get(addr, "/_metrics")
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .unwrap_or_default();
    let pages = load::check_tree(&cache_dir);
    let exit = host.stop(Duration::from_secs(30));
    let temps_left = load::temp_files(&cache_dir);
    let log_text = fs::read_to_string(&log).unwrap_or_default();
    Ok(report::Report {
        minutes: args.minutes,
        clients: args.clients,
        rate: args.rate,
        elapsed: started.elapsed(),
        tally,
        errors: shared.take_errors(),
        samples,
        quiet_before,
        quiet_after,
        metrics,
        pages,
        temps_left,
        exit,
        log: report::LogSummary::of(&log_text),
        reload_failures: shared.reload_failures.load(SeqCst),
    })
}

/// Every `every`: rewrite deploy.ini as the next generation, wait for the
/// uncached echo to show the new tag (the reload took effect), and purge the
/// misses of two generations ago (as `rm -r` would), so the tree stays bounded.
fn reloads(
    addr: SocketAddr,
    ini: &Path,
    cache_dir: &Path,
    threads: u32,
    every: Duration,
    shared: &Shared,
    stop: &AtomicBool,
) {
    let mut gen = 0u64;
    let mut last = Instant::now();
    while !stop.load(SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        gen += 1;
        if let Err(e) = write_config(ini, &config(cache_dir, gen, threads)) {
            shared.error(format!("rewriting deploy.ini: {e}"));
            continue;
        }
        let want = format!("g{gen}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let seen = loop {
            let tag = http::get(addr, "/raw/reload-probe")
                .ok()
                .and_then(|r| r.header("x-tag-chain-out").map(str::to_owned));
            if tag
                .as_deref()
                .is_some_and(|t| t.split(',').next() == Some(want.as_str()))
            {
                break true;
            }
            if Instant::now() > deadline || stop.load(SeqCst) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if seen {
            shared.reloads.fetch_add(1, SeqCst);
            // Misses go under miss/g{gen} from now on; two generations back,
            // no store can be in flight any more.
            shared.generation.store(gen, SeqCst);
            if gen >= 2 {
                let _ = fs::remove_dir_all(cache_dir.join(format!("miss/g{}", gen - 2)));
            }
        } else if !stop.load(SeqCst) {
            shared.reload_failures.fetch_add(1, SeqCst);
            shared.error(format!("reload to generation {gen} not visible after 20 s"));
        }
    }
}
