//! The page-tree rows (scenario `tree`): a 2 KiB hit with `compress = gzip`
//! and `Accept-Encoding: gzip`, plughost against nginx's `gzip_static` on the
//! same tree; and a miss storm of unique paths under a small `max_size`
//! (no errors, the tree within budget afterwards).

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::procs::Proc;
use crate::{http, servers, tools, wrk};

/// The scenario key that selects these rows.
pub const KEY: &str = "tree";

const BUDGET: u64 = 1 << 20;
const MAX_ENTRY: u64 = 64 * 1024;

/// wrk asking for gzip.
const GZIP_SCRIPT: &str = "wrk.headers[\"Accept-Encoding\"] = \"gzip\"\n";

/// What the rows need from the run.
pub struct Setup<'a> {
    pub tools: &'a tools::Tools,
    pub bins: &'a tools::Binaries,
    pub dir: &'a Path,
    pub small: &'a str,
    pub rounds: u32,
    pub duration: u32,
    pub threads: u32,
    pub connections: u32,
    pub server_threads: u32,
    pub nofile: u64,
}

/// Run both rows and print their table; an error is a failed check.
pub fn run(s: &Setup) -> Result<()> {
    let hit = hit_gzip(s)?;
    let storm = miss_storm(s)?;
    println!("| page tree | server | req/s (median) | p99 ms | errors | note |");
    println!("|---|---|---:|---:|---:|---|");
    let (p, n) = (&hit.0, &hit.1);
    println!(
        "| cache hit 2 KiB, compress = gzip, Accept-Encoding: gzip (c={}) | plughost | {:.0} | {:.2} | {} | {:.2}x nginx (target 1.2x) |",
        s.connections, p.rps, p.p99_ms, p.errors(), p.rps / n.rps
    );
    println!(
        "| cache hit 2 KiB, compress = gzip, Accept-Encoding: gzip (c={}) | nginx gzip_static | {:.0} | {:.2} | {} | |",
        s.connections, n.rps, n.p99_ms, n.errors()
    );
    println!(
        "| miss + store, unique paths, max_size = 1M (c={}) | plughost | {:.0} | {:.2} | {} | tree {} bytes after (budget {BUDGET} + {MAX_ENTRY}) |",
        s.connections, storm.0.rps, storm.0.p99_ms, storm.0.errors(), storm.1
    );
    Ok(())
}

/// plughost serving the hello app behind a cache on `cache` with `keys` added.
pub fn plughost(s: &Setup, name: &str, keys: &str, cache: &Path) -> Result<(Proc, SocketAddr)> {
    let ini = s.dir.join(format!("{name}.ini"));
    fs::write(
        &ini,
        format!(
            "[app:main]\nuse = egg:hello\nfilter-with = cache\ngreeting = {}\n\n\
             [filter:cache]\nuse = egg:plughost#cache\ncache_dir = {}\nstatus_header = X-Cache\n{keys}\n\
             [server:main]\nuse = egg:plughost#http\nhost = 127.0.0.1\nport = 0\nthreads = {}\n",
            s.small,
            cache.display(),
            s.server_threads
        ),
    )?;
    servers::start_plughost(
        name,
        &s.bins.plughost,
        &s.bins.plugin_dir,
        &ini,
        &s.dir.join(format!("{name}.log")),
    )
}

/// The median run of `rounds` wrk runs.
fn median(mut runs: Vec<wrk::Outcome>) -> wrk::Outcome {
    runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    runs.swap_remove(runs.len() / 2)
}

fn hit_gzip(s: &Setup) -> Result<(wrk::Outcome, wrk::Outcome)> {
    let cache = s.dir.join("tree-gzip");
    let (mut ph, ph_addr) = plughost(s, "plughost-gzip", "compress = gzip\n", &cache)?;
    // Warm: one miss stores the page, its twin follows.
    http::get(ph_addr, "/hit2k")?;
    let twin = cache.join("hit2k.gz");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !twin.exists() {
        ensure!(
            Instant::now() < deadline,
            "{} was not written",
            twin.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let nginx_dir = s.dir.join("nginx-gzip");
    fs::create_dir_all(nginx_dir.join("nginx-tmp"))?;
    let port = servers::free_port()?;
    let conf = nginx_dir.join("nginx.conf");
    let d = nginx_dir.display();
    fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process on;\nworker_processes auto;\nworker_rlimit_nofile {};\n\
             pid {d}/nginx.pid;\nerror_log {d}/nginx-error.log warn;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  default_type text/html;\n  keepalive_requests 100000000;\n\
             \x20 client_body_temp_path {d}/nginx-tmp/body;\n  proxy_temp_path {d}/nginx-tmp/proxy;\n\
             \x20 fastcgi_temp_path {d}/nginx-tmp/fastcgi;\n  uwsgi_temp_path {d}/nginx-tmp/uwsgi;\n\
             \x20 scgi_temp_path {d}/nginx-tmp/scgi;\n\
             \x20 gzip_static on;\n  gzip_vary on;\n\
             \x20 server {{\n    listen 127.0.0.1:{port};\n    root {};\n\
             \x20   location / {{ try_files $uri =404; }}\n  }}\n}}\n",
            s.nofile,
            cache.display()
        ),
    )?;
    let mut cmd = std::process::Command::new(&s.tools.nginx);
    cmd.arg("-p")
        .arg(&nginx_dir)
        .arg("-e")
        .arg(nginx_dir.join("nginx-error.log"))
        .arg("-c")
        .arg(&conf);
    let mut nginx = Proc::spawn(
        "nginx gzip_static",
        cmd,
        &nginx_dir.join("stderr.log"),
        false,
    )?;
    let nginx_addr = SocketAddr::from(([127, 0, 0, 1], port));
    nginx.wait_port(nginx_addr, Duration::from_secs(20))?;
    // Both answer with the same twin.
    let want = fs::read(&twin)?;
    for (who, addr) in [("plughost", ph_addr), ("nginx", nginx_addr)] {
        let r = http::Conn::open(addr)?.request("GET", "/hit2k", &[("Accept-Encoding", "gzip")])?;
        if r.header("content-encoding") != Some("gzip") || r.body != want {
            bail!("{who} did not answer /hit2k with its gzip twin");
        }
    }
    let script = s.dir.join("gzip.lua");
    fs::write(&script, GZIP_SCRIPT)?;
    let load = wrk::Load {
        threads: s.threads,
        connections: s.connections,
        duration_secs: s.duration,
        script: Some((script, Vec::new())),
    };
    let (mut p_runs, mut n_runs) = (Vec::new(), Vec::new());
    for round in 0..s.rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (addr, runs) = if i == 0 {
                (ph_addr, &mut p_runs)
            } else {
                (nginx_addr, &mut n_runs)
            };
            let o = wrk::run(&s.tools.wrk, &format!("http://{addr}/hit2k"), &load)
                .context("page tree: gzip hit")?;
            eprintln!(
                "  tree round {}/{} gzip hit 2 KiB {:<18} {:>9.0} req/s  errors {}",
                round + 1,
                s.rounds,
                if i == 0 {
                    "plughost"
                } else {
                    "nginx gzip_static"
                },
                o.rps,
                o.errors()
            );
            runs.push(o);
        }
    }
    ph.check_running()?;
    nginx.check_running()?;
    Ok((median(p_runs), median(n_runs)))
}

/// Bytes of regular files under `dir` (dot-named entries aside).
fn usage(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => usage(&e.path()),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}

fn miss_storm(s: &Setup) -> Result<(wrk::Outcome, u64)> {
    let cache = s.dir.join("tree-budget");
    let keys = format!("max_size = {BUDGET}\nmax_entry_bytes = {MAX_ENTRY}\n");
    let (mut ph, addr) = plughost(s, "plughost-budget", &keys, &cache)?;
    let script = s.dir.join("tree-miss.lua");
    fs::write(&script, wrk::MISS_SCRIPT)?;
    let mut runs = Vec::new();
    let mut worst = 0;
    for round in 0..s.rounds {
        let load = wrk::Load {
            threads: s.threads,
            connections: s.connections,
            duration_secs: s.duration,
            script: Some((script.clone(), vec![format!("t{round}")])),
        };
        let o = wrk::run(&s.tools.wrk, &format!("http://{addr}/"), &load)
            .context("page tree: miss storm")?;
        std::thread::sleep(Duration::from_millis(200));
        let used = usage(&cache);
        worst = worst.max(used);
        eprintln!(
            "  tree round {}/{} miss storm, max_size = 1M       {:>9.0} req/s  errors {}  tree {used} bytes",
            round + 1,
            s.rounds,
            o.rps,
            o.errors()
        );
        ensure!(o.errors() == 0, "the miss storm had {} errors", o.errors());
        ensure!(
            used <= BUDGET + MAX_ENTRY,
            "the tree holds {used} bytes, over max_size {BUDGET} + max_entry_bytes {MAX_ENTRY}"
        );
        runs.push(o);
    }
    ph.check_running()?;
    Ok((median(runs), worst))
}
