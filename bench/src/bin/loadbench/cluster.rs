//! The cluster rows (scenario `cluster`, issue 19): plughost nodes sharing
//! nothing but a Redis purge stream, behind nginx sharding by URI with a
//! consistent hash (as examples/cluster/nginx.conf).
//!
//! One redis-server, three plughost nodes (hello with the 2 KiB page behind
//! the cache, `purge_bus` set) and one nginx holding a balancer per node count
//! (1, 2 and 3 nodes: `hash $request_uri consistent` over the first N nodes'
//! plughost ports) and, for the shipped two-tier recipe, a balancer over the
//! three nodes' own server blocks (each serving its node's tree with
//! try_files, falling back to its plughost). 200 paths are warmed through each
//! balancer, then wrk asks for them round-robin; the rows report req/s and the
//! ratio to one node. Every process shares this machine's cores (wrk too), so
//! the ratios show the cost of the extra processes, not the gain of more
//! machines.
//!
//! Then the purge propagation latency: 1,000 times, a page is stored on node 2
//! or 3 (a GET on that node), an HTTP PURGE of it is sent to node 1, and the
//! page file on its node is polled (a `stat` every 0.2 ms) until it is gone.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::procs::Proc;
use crate::tree::Setup;
use crate::{http, servers, wrk};

/// The scenario key that selects these rows.
pub const KEY: &str = "cluster";

const NODES: usize = 3;
const PATHS: usize = 200;
const PURGES: usize = 1000;
/// A purge not seen on the page's node by then counts as lost.
const PURGE_TIMEOUT: Duration = Duration::from_secs(2);

/// wrk asking for `/c/0` … `/c/N-1` in turn (N = the first argument), each
/// thread starting at its own offset.
const ROUND_ROBIN_SCRIPT: &str = r#"-- loadbench: the warmed paths, round-robin.
local next_id = 0
local paths = {}
local i = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  local n = tonumber(args[1]) or 200
  for k = 0, n - 1 do paths[#paths + 1] = "/c/" .. k end
  i = (id * 37) % #paths
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
"#;

/// redis-server on PATH or in /usr/bin.
pub fn redis_server() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
        .context(
            "redis-server is missing (looked on PATH and in /usr/bin); \
             install it with `apt-get install -y redis-server`",
        )
}

struct Node {
    proc_: Proc,
    addr: SocketAddr,
    tree: PathBuf,
}

/// The balancers in the nginx config: `direct[k]` shards over the first k+1
/// nodes' plughost ports, `blocks` over the three node server blocks.
struct Fronts {
    direct: Vec<SocketAddr>,
    blocks: SocketAddr,
}

/// Run the rows and return their table; an error is a failed check.
pub fn run(s: &Setup) -> Result<String> {
    let base = s.dir.join("cluster");
    fs::create_dir_all(&base)?;
    let redis_port = servers::free_port()?;
    let mut redis_cmd = Command::new(redis_server()?);
    redis_cmd
        .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&base);
    let mut redis = Proc::spawn("redis-server", redis_cmd, &base.join("redis.log"), false)?;
    redis.wait_port(
        SocketAddr::from(([127, 0, 0, 1], redis_port)),
        Duration::from_secs(20),
    )?;
    let mut nodes = Vec::new();
    for i in 0..NODES {
        nodes.push(node(s, &base, i, redis_port)?);
    }
    let (mut nginx, fronts) = start_nginx(s, &base, &nodes)?;

    // How each balancer spreads the paths: warm it alone on empty trees and
    // count the files per node; then warm them all, so every balancer's runs
    // are hits on whichever node it picks.
    let all: Vec<SocketAddr> = fronts
        .direct
        .iter()
        .copied()
        .chain([fronts.blocks])
        .collect();
    let mut splits = Vec::new();
    for front in &all {
        for n in &nodes {
            match fs::remove_dir_all(n.tree.join("c")) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).context("cannot empty a node's tree")
                }
                _ => {}
            }
        }
        warm(*front, s.small)?;
        splits.push(split(&nodes)?);
    }
    for front in &all {
        warm(*front, s.small)?;
    }
    for n in &mut nodes {
        n.proc_.check_running()?;
    }

    let script = s.dir.join("cluster.lua");
    fs::write(&script, ROUND_ROBIN_SCRIPT)?;
    let load = wrk::Load {
        threads: s.threads,
        connections: s.connections,
        duration_secs: s.duration,
        script: Some((script, vec![PATHS.to_string()])),
    };
    let targets: Vec<(String, SocketAddr)> = (1..=NODES)
        .map(|n| {
            (
                format!("{n} node{}", if n == 1 { "" } else { "s" }),
                fronts.direct[n - 1],
            )
        })
        .chain([(
            format!("{NODES} nodes, node blocks serve the trees"),
            fronts.blocks,
        )])
        .collect();
    let mut runs: Vec<Vec<wrk::Outcome>> = vec![Vec::new(); targets.len()];
    for round in 0..s.rounds {
        let mut order: Vec<usize> = (0..targets.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (name, addr) = &targets[i];
            let o = wrk::run(&s.tools.wrk, &format!("http://{addr}/c/0"), &load)
                .with_context(|| format!("cluster: {name}"))?;
            eprintln!(
                "  cluster round {}/{} {:<40} {:>9.0} req/s  p99 {:>7.2} ms  errors {}",
                round + 1,
                s.rounds,
                name,
                o.rps,
                o.p99_ms,
                o.errors()
            );
            runs[i].push(o);
        }
    }
    nginx.check_running()?;

    let latency = purge_latency(&nodes);

    for n in &mut nodes {
        n.proc_.check_running()?;
    }
    nginx.stop(Duration::from_secs(5));
    for mut n in nodes {
        n.proc_.stop(Duration::from_secs(5));
    }
    redis.stop(Duration::from_secs(5));

    let medians: Vec<wrk::Outcome> = runs.into_iter().map(median).collect();
    let one = medians[0].rps;
    let mut out = format!(
        "| cluster: hits through nginx (hash $request_uri consistent), {PATHS} paths round-robin (c={}) | req/s (median of {}) | p99 ms | errors | ratio to 1 node | pages per node |\n|---|---:|---:|---:|---:|---|\n",
        s.connections, s.rounds
    );
    for (i, ((name, _), o)) in targets.iter().zip(&medians).enumerate() {
        let pages = &splits[i];
        let _ = writeln!(
            out,
            "| {name} | {:.0} | {:.2} | {} | {:.2}x | {pages} |",
            o.rps,
            o.p99_ms,
            o.errors(),
            o.rps / one
        );
    }
    let _ = writeln!(
        out,
        "\nCaveat: the nodes share this machine's {} cores with nginx and wrk, so more nodes cannot add capacity here; the ratios show what sharding costs on one machine, not what more machines give.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let latency = match latency {
        Ok(l) => l,
        Err(e) => {
            // The hits rows stand on their own; print them before failing.
            println!("{out}");
            return Err(e.context("cluster: purge propagation"));
        }
    };
    let _ = writeln!(
        out,
        "| purge propagation: PURGE on node 1, page on node 2 or 3 | purges | median ms | p99 ms | max ms | lost (not gone within {} s) |\n|---|---:|---:|---:|---:|---:|\n| HTTP PURGE -> Redis stream -> the page's node unlinks it (stat every 0.2 ms) | {} | {:.2} | {:.2} | {:.2} | {} |",
        PURGE_TIMEOUT.as_secs(),
        latency.count,
        latency.median_ms,
        latency.p99_ms,
        latency.max_ms,
        latency.lost
    );
    let errors: u64 = medians.iter().map(wrk::Outcome::errors).sum();
    if latency.lost > 0 || errors > 0 {
        println!("{out}");
        bail!(
            "{} of {PURGES} purges did not reach the page's node within {PURGE_TIMEOUT:?}; {errors} wrk errors",
            latency.lost
        );
    }
    Ok(out)
}

/// Start node `i` (named n1, n2, n3).
fn node(s: &Setup, base: &Path, i: usize, redis_port: u16) -> Result<Node> {
    let name = format!("n{}", i + 1);
    let tree = base.join(&name).join("cache");
    let ini = base.join(format!("{name}.ini"));
    fs::write(
        &ini,
        format!(
            "[app:main]\nuse = egg:hello\nfilter-with = cache\ngreeting = {}\n\n\
             [filter:cache]\nuse = egg:plughost#cache\ncache_dir = {}\nstatus_header = X-Cache\n\
             purge_bus = redis://127.0.0.1:{redis_port}/0\nnode_name = {name}\n\n\
             [server:main]\nuse = egg:plughost#http\nhost = 127.0.0.1\nport = 0\nthreads = {}\n",
            s.small,
            tree.display(),
            s.server_threads
        ),
    )?;
    let (proc_, addr) = servers::start_plughost(
        &format!("plughost node {name}"),
        &s.bins.plughost,
        &s.bins.plugin_dir,
        &ini,
        &base.join(format!("{name}.log")),
    )?;
    Ok(Node { proc_, addr, tree })
}

/// One nginx with every balancer and the node blocks.
fn start_nginx(s: &Setup, base: &Path, nodes: &[Node]) -> Result<(Proc, Fronts)> {
    let dir = base.join("nginx");
    fs::create_dir_all(dir.join("tmp"))?;
    let d = dir.display();
    let user = if rustix::process::geteuid().is_root() {
        "user root;\n"
    } else {
        ""
    };
    let mut conf = format!(
        "# loadbench: the cluster rows' nginx (see examples/cluster/nginx.conf).\n\
         daemon off;\nmaster_process on;\nworker_processes auto;\nworker_rlimit_nofile {};\n{user}\
         pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  default_type text/html;\n  keepalive_requests 100000000;\n\
         \x20 client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
         \x20 fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n\
         \x20 scgi_temp_path {d}/tmp/scgi;\n",
        s.nofile
    );
    let proxy = "proxy_http_version 1.1; proxy_set_header Connection \"\"; \
                 proxy_set_header Host $http_host; \
                 proxy_next_upstream error timeout http_502 http_503 http_504;";
    let mut direct = Vec::new();
    // A balancer over the first n nodes' plughost ports.
    for n in 1..=nodes.len() {
        let port = servers::free_port()?;
        let _ = writeln!(
            conf,
            "  upstream direct{n} {{\n    hash $request_uri consistent;"
        );
        for node in &nodes[..n] {
            let _ = writeln!(
                conf,
                "    server {} max_fails=1 fail_timeout=10s;",
                node.addr
            );
        }
        let _ = writeln!(
            conf,
            "    keepalive 64;\n  }}\n  server {{\n    listen 127.0.0.1:{port};\n    location / {{ proxy_pass http://direct{n}; {proxy} }}\n  }}"
        );
        direct.push(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    // The two-tier recipe: a balancer over the node blocks, each block the
    // node's tree with try_files, then its plughost.
    let mut block_ports = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let port = servers::free_port()?;
        let _ = writeln!(
            conf,
            "  upstream plughost{i} {{ server {}; keepalive 16; }}\n  server {{\n    listen 127.0.0.1:{port};\n    root {};\n    disable_symlinks on;\n    location / {{ try_files $uri @plughost; }}\n    location @plughost {{ proxy_pass http://plughost{i}; {proxy} }}\n  }}",
            node.addr,
            node.tree.display()
        );
        block_ports.push(port);
    }
    let blocks = servers::free_port()?;
    let _ = writeln!(
        conf,
        "  upstream blocks {{\n    hash $request_uri consistent;"
    );
    for port in &block_ports {
        let _ = writeln!(
            conf,
            "    server 127.0.0.1:{port} max_fails=1 fail_timeout=10s;"
        );
    }
    let _ = writeln!(
        conf,
        "    keepalive 64;\n  }}\n  server {{\n    listen 127.0.0.1:{blocks};\n    location / {{ proxy_pass http://blocks; {proxy} }}\n  }}\n}}"
    );
    let conf_path = dir.join("nginx.conf");
    fs::write(&conf_path, conf)?;
    let mut cmd = Command::new(&s.tools.nginx);
    cmd.arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&conf_path);
    let mut p = Proc::spawn("nginx (cluster)", cmd, &dir.join("stderr.log"), false)?;
    let blocks = SocketAddr::from(([127, 0, 0, 1], blocks));
    for addr in direct.iter().chain([&blocks]) {
        p.wait_port(*addr, Duration::from_secs(20))?;
    }
    Ok((p, Fronts { direct, blocks }))
}

/// GET every path through `front`, checking each answer is the page.
fn warm(front: SocketAddr, small: &str) -> Result<()> {
    let mut conn = http::Conn::open(front)?;
    for i in 0..PATHS {
        let path = format!("/c/{i}");
        let r = conn.get(&path)?;
        ensure!(
            r.status == 200 && r.body == small.as_bytes(),
            "GET {path} through nginx on {front}: status {}, {} bytes",
            r.status,
            r.body.len()
        );
    }
    Ok(())
}

/// How the paths fell on `nodes` (from their trees), e.g. `n1 70 / n2 64 / n3 66`;
/// an error when a path was stored nowhere within 5 s or on two nodes.
fn split(nodes: &[Node]) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut counts = vec![0usize; nodes.len()];
        let (mut missing, mut twice) = (0, 0);
        for i in 0..PATHS {
            let mut found = 0;
            for (k, n) in nodes.iter().enumerate() {
                if n.tree.join(format!("c/{i}")).is_file() {
                    counts[k] += 1;
                    found += 1;
                }
            }
            missing += usize::from(found == 0);
            twice += usize::from(found > 1);
        }
        ensure!(
            twice == 0,
            "{twice} paths were stored on more than one node"
        );
        if missing == 0 {
            return Ok(counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(k, c)| format!("n{} {c}", k + 1))
                .collect::<Vec<_>>()
                .join(" / "));
        }
        ensure!(
            Instant::now() < deadline,
            "{missing} of {PATHS} warmed paths were stored on no node"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn median(mut runs: Vec<wrk::Outcome>) -> wrk::Outcome {
    runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    runs.swap_remove(runs.len() / 2)
}

struct Latency {
    count: usize,
    median_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    lost: usize,
}

/// 1,000 purges on node 1 of pages stored on node 2 or 3.
fn purge_latency(nodes: &[Node]) -> Result<Latency> {
    ensure!(nodes.len() >= 2, "the purge latency needs two nodes");
    let mut purger = http::Conn::open(nodes[0].addr)?;
    let mut stores: Vec<http::Conn> = nodes[1..]
        .iter()
        .map(|n| http::Conn::open(n.addr))
        .collect::<Result<_>>()?;
    let mut times = Vec::with_capacity(PURGES);
    let mut lost = 0;
    for i in 0..PURGES {
        let k = 1 + i % (nodes.len() - 1);
        let path = format!("/purge-lat/{}", i % 50);
        let file = nodes[k].tree.join(path.trim_start_matches('/'));
        // Store the page on node k (a GET there), and wait for its file.
        let r = stores[k - 1].get(&path)?;
        ensure!(
            r.status == 200,
            "GET {path} on node {}: {}",
            k + 1,
            r.status
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while !file.is_file() {
            ensure!(
                Instant::now() < deadline,
                "{} was not stored on node {}",
                path,
                k + 1
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        let start = Instant::now();
        let r = purger.request("PURGE", &path, &[])?;
        if r.status != 200 {
            bail!(
                "PURGE {path} on node 1 answered {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        loop {
            if fs::symlink_metadata(&file).is_err() {
                times.push(start.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if start.elapsed() > PURGE_TIMEOUT {
                lost += 1;
                ensure!(
                    lost < 5 || !times.is_empty(),
                    "none of the first purges on node 1 reached node 2 or 3 within {PURGE_TIMEOUT:?}: is the purge bus in this build?"
                );
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    ensure!(!times.is_empty(), "no purge reached its node");
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let l = Latency {
        count: times.len() + lost,
        median_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: *times.last().expect("not empty"),
        lost,
    };
    eprintln!(
        "  cluster purge propagation: {} purges, median {:.2} ms, p99 {:.2} ms, max {:.2} ms, lost {}",
        l.count, l.median_ms, l.p99_ms, l.max_ms, l.lost
    );
    Ok(l)
}
