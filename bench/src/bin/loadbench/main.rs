//! `loadbench`: plughost's cache against nginx serving the same tree, and the
//! plugin ABI against a bare hyper server, on loopback, with wrk.
//!
//!     cargo run --release -p plughost-bench --bin loadbench
//!
//! It builds what it runs (`cargo build --release -p plughost -p hello -p
//! plughost-bench`; `--no-build` skips that), finds or installs wrk and nginx,
//! starts every server in a temporary directory, checks that they answer the
//! same bytes, runs each scenario for several rounds alternating the servers,
//! checks that a purged page is not served stale, prints a table, writes
//! bench/results/latest.csv and latest.svg, and stops everything it started.

mod cluster;
mod front;
mod http;
mod procs;
mod purge;
mod report;
mod servers;
mod svg;
mod tools;
mod tree;
mod wrk;
mod wsgi;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;

use procs::Proc;
use report::{Memory, Row, Server};
use servers::{NginxSetup, Shape};

#[derive(Parser)]
#[command(about = "Load benchmark: plughost's cache vs nginx, the plugin ABI vs bare hyper")]
struct Args {
    /// Rounds per scenario (servers alternate within each round).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 4)]
    duration: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// wrk connections for the ordinary scenarios.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Connections for the many-connections scenario and the idle-RSS measurement.
    #[arg(long, default_value_t = 1000)]
    many: u32,
    /// plughost's `threads` (plugin workers), as in deploy.ini.
    #[arg(long, default_value_t = 8)]
    server_threads: u32,
    /// Only these scenarios (comma-separated): hit-2k, hit-1m, hello-abi, hit-2k-many, miss-store,
    /// the page-tree rows (tree), the front rows proxy-2k, gzip-32k, the purge rows (purge), and
    /// the cluster rows (cluster: 1-3 nodes behind nginx's consistent hash, purge propagation),
    /// and the WSGI rows (wsgi: one Python hello app under plughost, Granian, gunicorn, waitress).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Do not run `cargo build --release` first; use what is in target/release.
    #[arg(long)]
    no_build: bool,
    /// Never run apt-get for missing tools; just say what is missing.
    #[arg(long)]
    no_install: bool,
    /// Where latest.csv and latest.svg go (default: bench/results).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the temporary directory (configs, logs, the cache tree) and print it.
    #[arg(long)]
    keep_temp: bool,
}

const SMALL: usize = 2048;
const BIG: usize = 1 << 20;
/// The 2 KiB hit path and the 1 MiB one (under the `/big` mount).
const HIT_SMALL: &str = "/hit2k";
const HIT_BIG: &str = "/big/page1m";
const PURGE_PATH: &str = "/purge-check";

struct Scenario {
    key: &'static str,
    title: &'static str,
    path: &'static str,
    servers: &'static [Server],
    many: bool,
    miss_script: bool,
}

/// In the order they run: the one that writes tens of thousands of files last,
/// so its disk writeback does not disturb the others.
const SCENARIOS: &[Scenario] = &[
    Scenario {
        key: "hit-2k",
        title: "cache hit 2 KiB",
        path: HIT_SMALL,
        // The baselines answer the same bytes from memory, with the hit's
        // head and with the minimal one: the stack's limit.
        servers: &[
            Server::Plughost,
            Server::Nginx,
            Server::BaselineSameHead,
            Server::BaselineSameHeadStat,
            Server::Baseline,
        ],
        many: false,
        miss_script: false,
    },
    Scenario {
        key: "hit-1m",
        title: "cache hit 1 MiB",
        path: HIT_BIG,
        servers: &[Server::Plughost, Server::Nginx],
        many: false,
        miss_script: false,
    },
    Scenario {
        key: "hello-abi",
        title: "hello 2 KiB via plugin ABI, no cache",
        path: "/",
        servers: &[Server::PlughostNoCache, Server::Baseline],
        many: false,
        miss_script: false,
    },
    Scenario {
        key: "hit-2k-many",
        title: "cache hit 2 KiB, many connections",
        path: HIT_SMALL,
        servers: &[Server::Plughost, Server::Nginx],
        many: true,
        miss_script: false,
    },
    Scenario {
        key: "miss-store",
        title: "cache miss + store 2 KiB, unique paths",
        path: "/",
        servers: &[Server::Plughost],
        many: false,
        miss_script: true,
    },
];

/// Every server under test, stopped when dropped.
struct Running {
    plughost: (Proc, SocketAddr),
    nocache: (Proc, SocketAddr),
    nginx: (Proc, SocketAddr),
    baseline: (Proc, SocketAddr),
    /// Started once the cache is warm, with the hit's head (see [`same_head`]).
    same_head: Option<(Proc, SocketAddr)>,
    /// The same, stat-ing the hit's cache file per request.
    same_head_stat: Option<(Proc, SocketAddr)>,
}

impl Running {
    fn get(&mut self, s: Server) -> &mut (Proc, SocketAddr) {
        match s {
            Server::Plughost => &mut self.plughost,
            Server::PlughostNoCache => &mut self.nocache,
            Server::Nginx => &mut self.nginx,
            Server::Baseline => &mut self.baseline,
            Server::BaselineSameHead => self
                .same_head
                .as_mut()
                .expect("started once the cache is warm"),
            Server::BaselineSameHeadStat => self
                .same_head_stat
                .as_mut()
                .expect("started once the cache is warm"),
            Server::PlughostDeploy => unreachable!("measured alone, before the others start"),
        }
    }

    fn rss_kib(&mut self, s: Server, field: &str) -> Option<u64> {
        procs::sum_kib(&self.get(s).0.pids(), field)
    }
}

fn main() {
    match run(Args::parse()) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("loadbench: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(args: Args) -> Result<i32> {
    ensure!(args.rounds >= 1, "--rounds must be at least 1");
    ensure!(args.duration >= 1, "--duration must be at least 1");
    for s in &args.scenarios {
        ensure!(
            s == tree::KEY
                || s == purge::KEY
                || s == cluster::KEY
                || s == wsgi::KEY
                || SCENARIOS.iter().any(|x| x.key == s)
                || front::KEYS.contains(&s.as_str()),
            "unknown scenario {s:?}; known: {}",
            SCENARIOS
                .iter()
                .map(|x| x.key)
                .chain([tree::KEY, purge::KEY, cluster::KEY, wsgi::KEY])
                .chain(front::KEYS.iter().copied())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let started = Instant::now();
    procs::install_signal_handler()?;
    let root = tools::workspace_root();
    let tools = tools::ensure(!args.no_install)?;
    if !args.no_build {
        tools::build(&root)?;
        let named = args.scenarios.iter().any(|k| k == wsgi::KEY);
        if named || (args.scenarios.is_empty() && tools::on_path("python3-config")) {
            wsgi::build(&root)?;
        }
    }
    let bins = tools::binaries(&tools::release_dir(&root))?;
    let machine = report::Machine::detect(&root);
    let nofile = procs::raise_nofile(65_536);
    let many = if u64::from(args.many) + 512 > nofile {
        let n = nofile.saturating_sub(512).max(64) as u32;
        eprintln!(
            "loadbench: open-file limit is {nofile}; using {n} connections instead of {}",
            args.many
        );
        n
    } else {
        args.many
    };
    eprintln!("loadbench: {}", machine.describe());

    let tmp = tempfile::Builder::new()
        .prefix("plughost-bench-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    procs::set_temp_dir(Some(tmp.path()));
    let dir = tmp.path();
    let cache_dir = dir.join("cache");
    fs::create_dir_all(&cache_dir)?;

    let small = servers::page(SMALL, 1);
    let big = servers::page(BIG, 2);
    let small_file = dir.join("small.body");
    fs::write(&small_file, &small)?;

    let outcome = bench(
        &args,
        &tools,
        &bins,
        dir,
        &cache_dir,
        &small,
        &big,
        &small_file,
        nofile,
        many,
    );
    let code = match outcome {
        Ok((rows, mem, purge)) => {
            let targets = report::targets(&rows, &mem, &purge);
            let table = report::table(&rows, &mem, &targets);
            println!("\n{}\n", machine.describe());
            println!("{table}");
            if front::wanted(&args.scenarios) {
                let settings = front::Settings {
                    rounds: args.rounds,
                    duration: args.duration,
                    threads: args.threads,
                    connections: args.connections,
                    server_threads: args.server_threads,
                };
                println!(
                    "{}",
                    front::run(&settings, &tools, &bins, dir, &args.scenarios)?
                );
            }
            let out = args
                .out
                .clone()
                .unwrap_or_else(|| root.join("bench").join("results"));
            fs::create_dir_all(&out)?;
            let csv_path = out.join("latest.csv");
            let svg_path = out.join("latest.svg");
            fs::write(&csv_path, report::csv(&rows, &mem, &machine))?;
            fs::write(
                &svg_path,
                svg::chart(&rows, &mem, &targets, &machine, args.rounds, args.duration),
            )?;
            println!("wrote {} and {}", csv_path.display(), svg_path.display());
            let rows_ok = extra_rows(&args, &tools, &bins, dir, &small, nofile);
            println!("total time {:.0} s", started.elapsed().as_secs_f64());
            if !rows_ok || targets.iter().any(|t| t.correctness && !t.pass) {
                eprintln!("loadbench: a correctness check failed (see FAIL above)");
                1
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("loadbench: error: {e:#}");
            if !args.keep_temp {
                eprintln!("(run with --keep-temp to keep the configs and logs)");
            }
            1
        }
    };
    procs::set_temp_dir(None);
    if args.keep_temp {
        let kept = tmp.keep();
        println!("kept {}", kept.display());
    }
    Ok(code)
}

/// The page-tree rows (tree.rs), the purge rows (purge.rs) and the cluster
/// rows (cluster.rs), each when selected; false when one of their checks failed.
fn extra_rows(
    args: &Args,
    tools: &tools::Tools,
    bins: &tools::Binaries,
    dir: &Path,
    small: &str,
    nofile: u64,
) -> bool {
    let selected = |key: &str| args.scenarios.is_empty() || args.scenarios.iter().any(|k| k == key);
    let setup = tree::Setup {
        tools,
        bins,
        dir,
        small,
        rounds: args.rounds,
        duration: args.duration,
        threads: args.threads,
        connections: args.connections,
        server_threads: args.server_threads,
        nofile,
    };
    let mut ok = true;
    if selected(tree::KEY) {
        if let Err(e) = tree::run(&setup) {
            eprintln!("loadbench: page tree FAILED: {e:#}");
            ok = false;
        }
    }
    if selected(purge::KEY) {
        match purge::run(&setup) {
            Ok(table) => println!("{table}"),
            Err(e) => {
                eprintln!("loadbench: purge rows FAILED: {e:#}");
                ok = false;
            }
        }
    }
    if args.scenarios.is_empty() && cluster::redis_server().is_err() {
        // Not asked for by name: a machine without Redis skips these rows.
        eprintln!("loadbench: cluster rows skipped: redis-server is not installed");
    } else if selected(cluster::KEY) {
        match cluster::run(&setup) {
            Ok(table) => println!("{table}"),
            Err(e) => {
                eprintln!("loadbench: cluster rows FAILED: {e:#}");
                ok = false;
            }
        }
    }
    let release = &bins.plugin_dir;
    let skip_wsgi = args
        .scenarios
        .is_empty()
        .then(|| wsgi::unavailable(release))
        .flatten();
    if let Some(why) = skip_wsgi {
        eprintln!("loadbench: WSGI rows skipped: {why}");
    } else if selected(wsgi::KEY) {
        match wsgi::run(&setup, release) {
            Ok(table) => println!("{table}"),
            Err(e) => {
                eprintln!("loadbench: WSGI rows FAILED: {e:#}");
                ok = false;
            }
        }
    }
    ok
}

type Results = (Vec<Row>, Memory, Result<String, String>);

#[allow(clippy::too_many_arguments)]
fn bench(
    args: &Args,
    tools: &tools::Tools,
    bins: &tools::Binaries,
    dir: &Path,
    cache_dir: &Path,
    small: &str,
    big: &str,
    small_file: &Path,
    nofile: u64,
    many: u32,
) -> Result<Results> {
    // Memory first, on a quiet machine: plughost with the root deploy.ini's shape.
    let mut mem = Memory {
        conns: many as usize,
        ..Memory::default()
    };
    memory_of_deploy_shape(args, bins, dir, small, many, &mut mem)?;

    // The servers under test.
    let cached_ini = dir.join("cached.ini");
    fs::write(
        &cached_ini,
        servers::plughost_config(
            &Shape::CacheWithBig { cache_dir, big },
            small,
            args.server_threads,
        ),
    )?;
    let plain_ini = dir.join("nocache.ini");
    fs::write(
        &plain_ini,
        servers::plughost_config(&Shape::NoCache, small, args.server_threads),
    )?;
    let plughost = servers::start_plughost(
        "plughost",
        &bins.plughost,
        &bins.plugin_dir,
        &cached_ini,
        &dir.join("plughost.log"),
    )?;
    let nocache = servers::start_plughost(
        "plughost (no cache)",
        &bins.plughost,
        &bins.plugin_dir,
        &plain_ini,
        &dir.join("plughost-nocache.log"),
    )?;
    let baseline = servers::start_baseline(&bins.baseline, small_file, &dir.join("baseline.log"))?;
    let nginx = servers::start_nginx(
        &tools.nginx,
        &NginxSetup {
            dir,
            root: cache_dir,
            port: servers::free_port()?,
            nofile,
            as_root: rustix::process::geteuid().is_root(),
        },
    )?;
    let mut run = Running {
        plughost,
        nocache,
        nginx,
        baseline,
        same_head: None,
        same_head_stat: None,
    };
    eprintln!(
        "loadbench: plughost (cache) on {}, plughost (no cache) on {}, nginx on {}, baseline on {}",
        run.plughost.1, run.nocache.1, run.nginx.1, run.baseline.1
    );

    // Idle memory of each, before any request.
    std::thread::sleep(Duration::from_millis(300));
    for s in [
        Server::Plughost,
        Server::PlughostNoCache,
        Server::Nginx,
        Server::Baseline,
    ] {
        if let Some(kib) = run.rss_kib(s, "VmRSS") {
            mem.idle.push((s, kib));
        }
    }

    warm_and_verify(&mut run, cache_dir, small, big)?;
    run.same_head = Some(same_head(
        run.plughost.1,
        &bins.baseline,
        small_file,
        None,
        &dir.join("baseline-same-head.log"),
    )?);
    run.same_head_stat = Some(same_head(
        run.plughost.1,
        &bins.baseline,
        small_file,
        Some(&cache_file(cache_dir, HIT_SMALL)),
        &dir.join("baseline-same-head-stat.log"),
    )?);

    // nginx with many idle keep-alive connections, to compare.
    let nginx_addr = run.nginx.1;
    let kib = with_idle_connections(nginx_addr, many as usize, || {
        std::thread::sleep(Duration::from_millis(500));
        run.rss_kib(Server::Nginx, "VmRSS")
    })?;
    if let Some(kib) = kib {
        mem.with_conns.push((Server::Nginx, kib));
    }

    // Load.
    let script = dir.join("miss.lua");
    fs::write(&script, wrk::MISS_SCRIPT)?;
    let mut rows = Vec::new();
    let chosen: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|s| args.scenarios.is_empty() || args.scenarios.iter().any(|k| k == s.key))
        .collect();
    for sc in chosen {
        let connections = if sc.many { many } else { args.connections };
        let mut scenario_rows: Vec<Row> = sc
            .servers
            .iter()
            .map(|s| Row {
                scenario: sc.key,
                title: sc.title,
                server: *s,
                connections,
                runs: Vec::new(),
                peak_rss_kib: None,
            })
            .collect();
        for round in 0..args.rounds {
            // Alternate which server goes first.
            let mut order: Vec<usize> = (0..scenario_rows.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let row = &mut scenario_rows[i];
                let (proc_, addr) = run.get(row.server);
                proc_.check_running()?;
                let pids = proc_.pids();
                let peak_resettable = procs::reset_peak(&pids);
                let load = wrk::Load {
                    threads: args.threads,
                    connections,
                    duration_secs: args.duration,
                    script: sc
                        .miss_script
                        .then(|| (script.clone(), vec![format!("r{round}")])),
                };
                let url = format!("http://{addr}{}", sc.path);
                let o = wrk::run(&tools.wrk, &url, &load)
                    .with_context(|| format!("{} on {}", sc.title, row.server.name()))?;
                let peak = procs::sum_kib(&run.get(row.server).0.pids(), "VmHWM");
                if let Some(p) = peak {
                    row.peak_rss_kib = Some(row.peak_rss_kib.map_or(p, |q| q.max(p)));
                }
                eprintln!(
                    "  round {}/{} {:<52} {:<20} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}{}",
                    round + 1,
                    args.rounds,
                    format!("{} (c={connections})", sc.title),
                    row.server.name(),
                    o.rps,
                    o.p50_ms,
                    o.p99_ms,
                    o.errors(),
                    if peak_resettable { "" } else { "  (peak RSS is cumulative)" }
                );
                row.runs.push(o);
            }
        }
        rows.extend(scenario_rows);
    }

    let purge = purge_check(&mut run, cache_dir, small);
    match &purge {
        Ok(m) => eprintln!("loadbench: purge check passed: {m}"),
        Err(m) => eprintln!("loadbench: purge check FAILED: {m}"),
    }
    for s in [
        Server::Plughost,
        Server::PlughostNoCache,
        Server::Nginx,
        Server::Baseline,
        Server::BaselineSameHead,
        Server::BaselineSameHeadStat,
    ] {
        run.get(s).0.check_running()?;
    }
    Ok((rows, mem, purge))
}

/// plughost with exactly the root deploy.ini's shape (hello with a 2 KiB
/// greeting, `filter-with = cache`): RSS right after start-up, then with `many`
/// idle keep-alive connections open (one request each). The serving instance is
/// not used for this because its config carries the 1 MiB greeting.
fn memory_of_deploy_shape(
    args: &Args,
    bins: &tools::Binaries,
    dir: &Path,
    small: &str,
    many: u32,
    mem: &mut Memory,
) -> Result<()> {
    let ini = dir.join("deploy-shape.ini");
    let cache_dir = dir.join("cache-deploy-shape");
    fs::write(
        &ini,
        servers::plughost_config(
            &Shape::Deploy {
                cache_dir: &cache_dir,
            },
            small,
            args.server_threads,
        ),
    )?;
    let (proc_, addr) = servers::start_plughost(
        "plughost (deploy.ini shape)",
        &bins.plughost,
        &bins.plugin_dir,
        &ini,
        &dir.join("plughost-deploy-shape.log"),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    if let Some(kib) = procs::status_kib(proc_.pid, "VmRSS") {
        mem.idle.push((Server::PlughostDeploy, kib));
    }
    let kib = with_idle_connections(addr, many as usize, || {
        std::thread::sleep(Duration::from_millis(500));
        procs::status_kib(proc_.pid, "VmRSS")
    })?;
    if let Some(kib) = kib {
        mem.with_conns.push((Server::PlughostDeploy, kib));
    }
    eprintln!(
        "loadbench: plughost (deploy.ini shape): idle {}, with {many} idle connections {}",
        mem.idle_of(Server::PlughostDeploy)
            .map_or("?".into(), report::mib),
        mem.conns_of(Server::PlughostDeploy)
            .map_or("?".into(), report::mib),
    );
    Ok(())
}

/// Wait up to 3 s for `file` to hold exactly `want` (stores may finish just after
/// the response).
fn wait_for_file(file: &Path, want: &[u8]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match fs::read(file) {
            Ok(got) if got == want => return Ok(()),
            Ok(got) if Instant::now() > deadline => bail!(
                "{} holds {} bytes, not the {} the app answered",
                file.display(),
                got.len(),
                want.len()
            ),
            Err(e) if Instant::now() > deadline => {
                bail!("the cache did not store {}: {e}", file.display())
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn cache_file(cache_dir: &Path, url_path: &str) -> PathBuf {
    cache_dir.join(url_path.trim_start_matches('/'))
}

fn expect_body(what: &str, resp: &http::Resp, want: &str) -> Result<()> {
    ensure!(resp.status == 200, "{what}: status {}", resp.status);
    ensure!(
        resp.body == want.as_bytes(),
        "{what}: got {} bytes that differ from the {} expected",
        resp.body.len(),
        want.len()
    );
    Ok(())
}

/// Fill the cache through plughost and check that every server answers the same
/// bytes (so the comparisons compare like with like).
/// The bare hyper baseline answering the 2 KiB page with exactly the head
/// plughost's hit sends (its Content-Type, validators, Accept-Ranges and
/// X-Cache; hyper adds Date and Content-Length to both): the same response
/// bytes, so the hit's ratio to it is the cost of the cache alone.
/// The baseline answering with the hit's head; with `stat`, it stats that
/// file before each answer.
fn same_head(
    plughost: SocketAddr,
    bin: &Path,
    small_file: &Path,
    stat: Option<&Path>,
    log: &Path,
) -> Result<(Proc, SocketAddr)> {
    let hit = http::get(plughost, HIT_SMALL)?;
    ensure!(
        hit.header("x-cache") == Some("HIT"),
        "plughost GET {HIT_SMALL} is no hit, cannot copy its head"
    );
    let content_type = hit.header("content-type").map(str::to_owned);
    let headers: Vec<(String, String)> = hit
        .headers
        .iter()
        .filter(|(n, _)| {
            !["date", "content-length", "content-type"]
                .iter()
                .any(|x| n.eq_ignore_ascii_case(x))
        })
        .cloned()
        .collect();
    let started = servers::start_baseline_with(
        bin,
        small_file,
        content_type.as_deref(),
        &headers,
        stat,
        log,
    )?;
    let copy = http::get(started.1, HIT_SMALL)?;
    ensure!(
        copy.headers.len() == hit.headers.len() && copy.body == hit.body,
        "the same-head baseline answers differently: {:?} vs {:?}",
        copy.headers,
        hit.headers
    );
    Ok(started)
}

fn warm_and_verify(run: &mut Running, cache_dir: &Path, small: &str, big: &str) -> Result<()> {
    let p = run.plughost.1;
    for (path, body) in [(HIT_SMALL, small), (HIT_BIG, big)] {
        let first = http::get(p, path)?;
        expect_body(&format!("plughost GET {path} (first)"), &first, body)?;
        let file = cache_file(cache_dir, path);
        wait_for_file(&file, body.as_bytes())?;
        warn_unreadable(&file);
        let second = http::get(p, path)?;
        expect_body(&format!("plughost GET {path} (second)"), &second, body)?;
        match second.header("x-cache") {
            Some(v) if v.eq_ignore_ascii_case("HIT") => {}
            Some(v) => bail!("plughost GET {path} again: X-Cache is {v}, expected HIT"),
            None => {
                eprintln!("loadbench: warning: plughost sends no X-Cache header (status_header)")
            }
        }
        let n = http::get(run.nginx.1, path)?;
        expect_body(&format!("nginx GET {path}"), &n, body)?;
    }
    let b = http::get(run.baseline.1, "/")?;
    expect_body("baseline GET /", &b, small)?;
    let h = http::get(run.nocache.1, "/")?;
    expect_body("plughost (no cache) GET /", &h, small)?;
    ensure!(
        h.header("x-cache").is_none(),
        "the no-cache plughost answered with an X-Cache header"
    );
    eprintln!(
        "loadbench: cache warm ({} and {} stored by plughost, served by nginx); all servers answer identical bodies",
        HIT_SMALL, HIT_BIG
    );
    Ok(())
}

/// nginx in production runs as another user than the cache's writer: say so if
/// a stored file could not be read by it.
fn warn_unreadable(file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(file) {
        let mode = meta.permissions().mode();
        if mode & 0o004 == 0 {
            eprintln!(
                "loadbench: warning: {} has mode {:o}: an nginx running as another user could not read it",
                file.display(),
                mode & 0o777
            );
        }
    }
}

/// Open `n` keep-alive connections to `addr`, make one request on each, keep them
/// open while `measure` runs.
fn with_idle_connections<T>(addr: SocketAddr, n: usize, measure: impl FnOnce() -> T) -> Result<T> {
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = http::Conn::open(addr).with_context(|| format!("idle connection {i}"))?;
        let r = c.get(HIT_SMALL)?;
        ensure!(r.status == 200, "idle connection {i}: status {}", r.status);
        conns.push(c);
    }
    let out = measure();
    drop(conns);
    Ok(out)
}

/// Delete a stored file and check that plughost asks the app again instead of
/// answering from memory: "speed may not come from serving stale files".
fn purge_check(run: &mut Running, cache_dir: &Path, small: &str) -> Result<String, String> {
    let inner = || -> Result<String> {
        let p = run.plughost.1;
        let file = cache_file(cache_dir, PURGE_PATH);
        let first = http::get(p, PURGE_PATH)?;
        expect_body("purge page (store)", &first, small)?;
        wait_for_file(&file, small.as_bytes())?;
        let hit = http::get(p, PURGE_PATH)?;
        expect_body("purge page (hit)", &hit, small)?;
        let status_header = hit.header("x-cache").is_some();
        ensure!(
            !status_header || hit.header("x-cache") == Some("HIT"),
            "the second request was not a HIT"
        );
        // The tree is what is served: a changed file is a changed answer.
        let tampered = servers::page(small.len(), 9);
        let tmp = cache_dir.join(".loadbench-tamper");
        fs::write(&tmp, &tampered)?;
        fs::rename(&tmp, &file)?;
        let changed = http::get(p, PURGE_PATH)?;
        let serves_tree = changed.body == tampered.as_bytes();
        // Purge: delete the file; the next answer must come from the app.
        fs::remove_file(&file)?;
        let after = http::get(p, PURGE_PATH)?;
        expect_body("purge page (after delete)", &after, small)?;
        ensure!(
            after.body != tampered.as_bytes(),
            "after the file was deleted plughost still answered its old content"
        );
        let verdict = after.header("x-cache").map(str::to_owned);
        if status_header {
            ensure!(
                verdict.as_deref() != Some("HIT"),
                "after the file was deleted plughost answered X-Cache: HIT"
            );
        }
        wait_for_file(&file, small.as_bytes())?;
        Ok(format!(
            "after deleting the file: {} and the app's body, then stored again; {}",
            verdict.map_or("no X-Cache header".into(), |v| format!("X-Cache: {v}")),
            if serves_tree {
                "an edited file is served as edited (hits read the tree)"
            } else {
                "an edited file was NOT served as edited"
            }
        ))
    };
    inner().map_err(|e| format!("{e:#}"))
}
