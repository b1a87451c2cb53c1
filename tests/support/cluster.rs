//! Three plughost nodes on loopback sharing nothing but a purge bus (a real
//! redis-server), with a real nginx in front sharding by URI with consistent
//! hashing and failing over to the next node (issue 19). Each node is the echo
//! app under a cache (`content_type = application/json`, so the echo's JSON
//! report is a page) plus the metrics app at `/_metrics`; each has its own
//! directory, cache_dir and `node_name`, and keeps its port across restarts so
//! nginx's upstream list stays right.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::nginx::{self, free_port, Nginx};
use super::redis::{self, stable_port, Redis};
use super::{plugins, request, signal, skip_unless_ci, tempdir, Host, Reply};

/// The node names, in order.
pub const NAMES: [&str; 3] = ["node-a", "node-b", "node-c"];

/// A node's deploy.ini: `extra` is appended to `[filter:cache]`.
pub fn node_config(name: &str, bus: &str, extra: &str) -> String {
    format!(
        "[composite:main]\nuse = egg:Paste#urlmap\n/ = site\n/_metrics = metrics\n\n\
         [app:metrics]\nuse = egg:plughost#metrics\n\n\
         [app:site]\nuse = egg:echo\nfilter-with = cache\nnode = {name}\n\n\
         [filter:cache]\nuse = egg:plughost#cache\ncache_dir = cache\n\
         status_header = X-Cache\ncontent_type = application/json\n\
         purge_bus = {bus}\nnode_name = {name}\n{extra}"
    )
}

/// The file a page of the default layout lives in, relative to cache_dir.
pub fn page_rel(path: &str) -> String {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() || rel.ends_with('/') {
        format!("{rel}__index.html")
    } else {
        rel.to_owned()
    }
}

/// Poll `cond` every 5 ms until it holds; panic naming `what` after `timeout`.
/// Returns how long it took.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// As [`wait_until`], and it must have held within `limit`: waits up to 10 s
/// longer so a failure says how long it really took (a slow fan-out, or none).
pub fn within(what: &str, limit: Duration, cond: impl FnMut() -> bool) -> Duration {
    let took = wait_until(what, limit.max(Duration::from_secs(10)), cond);
    assert!(took <= limit, "{what} took {took:?}, more than {limit:?}");
    took
}

/// One node: its directory (deploy.ini, cache/), fixed port, and the running
/// process (None while stopped).
pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub port: u16,
    pub host: Option<Host>,
}

impl Node {
    pub fn cache(&self) -> PathBuf {
        self.dir.join("cache")
    }

    pub fn page_file(&self, path: &str) -> PathBuf {
        self.cache().join(page_rel(path))
    }

    pub fn holds(&self, path: &str) -> bool {
        self.page_file(path).is_file()
    }

    /// `cache_dir/.plughost-bus/position`.
    pub fn position_file(&self) -> PathBuf {
        self.cache().join(".plughost-bus/position")
    }

    /// The running host (panics while the node is down).
    pub fn host(&self) -> &Host {
        self.host
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.name))
    }

    /// Serve deploy.ini on the node's port; returns once it printed
    /// `plughost: listening on ...`.
    pub fn start(&mut self) -> &Host {
        assert!(self.host.is_none(), "{} is already running", self.name);
        let host = self.spawn();
        self.host.insert(host)
    }

    /// The first start: as [`Node::start`], on another free port while the
    /// one picked was taken meanwhile (by another test, or a client's
    /// ephemeral port). nginx is configured after this, so any port will do.
    fn start_first(&mut self) {
        for _ in 0..5 {
            match self.try_spawn() {
                Ok(host) => {
                    self.host = Some(host);
                    return;
                }
                Err(e) if e.contains("Address already in use") => self.port = stable_port(),
                Err(e) => panic!("{}: {e}", self.name),
            }
        }
        panic!("{}: no free port in 5 tries", self.name);
    }

    fn spawn(&self) -> Host {
        self.try_spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    fn try_spawn(&self) -> Result<Host, String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_plughost"));
        command
            .arg("serve")
            .arg(self.dir.join("deploy.ini"))
            .args(["--port", &self.port.to_string()])
            .env("PLUGHOST_PLUGIN_PATH", plugins())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        let host = Host::spawn(command, &self.dir)?;
        assert_eq!(host.port, self.port, "{} listens elsewhere", self.name);
        Ok(host)
    }

    /// SIGTERM and wait (a graceful stop); returns what it logged.
    pub fn terminate(&mut self) -> String {
        let host = self.host.take().expect("running");
        let log = host.log();
        let status = host.terminate();
        assert!(status.success(), "{} exited {status}:\n{log}", self.name);
        log
    }

    /// SIGKILL: no goodbye to nginx or Redis.
    pub fn kill(&mut self) {
        let mut host = self.host.take().expect("running");
        signal(host.pid(), "KILL");
        let _ = host.child.wait();
    }

    pub fn log(&self) -> String {
        self.host.as_ref().map(Host::log).unwrap_or_default()
    }

    /// A request straight to this node (not through nginx).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.port, method, path, headers, b"")
            .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}\n{}", self.name, self.log()))
    }

    /// `PURGE path` on this node; the `purged` count it answered.
    pub fn purge(&self, path: &str, headers: &[(&str, &str)]) -> u64 {
        let r = self.request("PURGE", path, headers);
        assert_eq!(r.status, 200, "PURGE {path} on {}: {}", self.name, r.text());
        r.json()["purged"]
            .as_u64()
            .unwrap_or_else(|| panic!("PURGE answered {}", r.text()))
    }

    /// The metrics app's text.
    pub fn metrics(&self) -> String {
        let r = self.request("GET", "/_metrics", &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    }
}

/// The value of the sample `name{labels}` (labels exactly as rendered), if any.
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

/// The cache section's `plughost_cache_bus_up`.
pub fn bus_up(text: &str) -> Option<f64> {
    metric(text, "plughost_cache_bus_up", "section=\"filter:cache\"")
}

/// The cache section's `plughost_cache_bus_queue`.
pub fn bus_queue(text: &str) -> Option<f64> {
    metric(text, "plughost_cache_bus_queue", "section=\"filter:cache\"")
}

/// A cache event counter (`bus.published`, `bus.applied`, ...); 0 when absent.
pub fn cache_event(text: &str, event: &str) -> f64 {
    metric(
        text,
        "plughost_cache_events_total",
        &format!("section=\"filter:cache\",event=\"{event}\""),
    )
    .unwrap_or(0.0)
}

/// nginx in front of the nodes: `hash $request_uri consistent`, one failure
/// marks a node down for 5 s, and a request that failed on one node (refused,
/// reset, timed out, 502-504) is retried on the next.
pub fn nginx_conf(port: u16, nodes: &[u16]) -> String {
    let servers: String = nodes
        .iter()
        .map(|p| format!("    server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;\n"))
        .collect();
    format!(
        "events {{ worker_connections 1024; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {{logs}}/body; proxy_temp_path {{logs}}/proxy;\n\
           fastcgi_temp_path {{logs}}/fcgi; uwsgi_temp_path {{logs}}/uwsgi; scgi_temp_path {{logs}}/scgi;\n\
           upstream nodes {{\n    hash $request_uri consistent;\n{servers}    keepalive 32;\n  }}\n\
           server {{\n\
             listen 127.0.0.1:{port};\n\
             location / {{\n\
               proxy_pass http://nodes;\n\
               proxy_http_version 1.1;\n\
               proxy_set_header Connection \"\";\n\
               proxy_set_header Host $host;\n\
               proxy_next_upstream error timeout http_502 http_503 http_504 non_idempotent;\n\
               proxy_connect_timeout 1s;\n\
               proxy_read_timeout 10s;\n\
             }}\n\
           }}\n\
         }}\n"
    )
}

/// Redis, three nodes and nginx. Fields drop in order: nginx, the nodes,
/// Redis, then the directory.
pub struct Cluster {
    pub nginx: Nginx,
    pub nodes: Vec<Node>,
    pub redis: Redis,
    pub root: tempfile::TempDir,
}

impl Cluster {
    /// Start everything; None (after `skip_unless_ci`) when redis-server or
    /// nginx is not installed. `extra` goes into every node's `[filter:cache]`.
    /// Returns once every node applied one entry from the bus (so a test
    /// starts from nodes that consume, with positions on the stream).
    pub fn start(extra: &str) -> Option<Cluster> {
        let c = Cluster::start_cold(extra)?;
        c.handshake();
        Some(c)
    }

    /// Publish one purge (of a page no node has) with `cache purge --bus` and
    /// wait until every node applied it.
    pub fn handshake(&self) {
        let out = purge_cli(&self.nodes[0].dir, &["--bus", "/_cluster/ready"]);
        assert!(
            out.status.success(),
            "cache purge --bus: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for n in &self.nodes {
            let applied = || cache_event(&n.metrics(), "bus.applied") >= 1.0;
            let deadline = Instant::now() + Duration::from_secs(10);
            while !applied() {
                assert!(
                    Instant::now() < deadline,
                    "{} applied nothing from the purge bus in 10 s (is its consumer running?)\n{}",
                    n.name,
                    n.log()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// As [`Cluster::start`], without the handshake: no entry on the stream
    /// yet, and each node's position is the stream's start.
    pub fn start_cold(extra: &str) -> Option<Cluster> {
        let Some(redis_bin) = redis::binary() else {
            skip_unless_ci("redis-server is not installed");
            return None;
        };
        let Some(nginx_bin) = nginx::binary() else {
            skip_unless_ci("nginx is not installed (looked on PATH and at /usr/sbin/nginx)");
            return None;
        };
        let root = tempdir();
        let redis = Redis::start(&redis_bin, &root.path().join("redis"));
        let mut nodes: Vec<Node> = NAMES
            .iter()
            .map(|name| {
                let dir = root.path().join(name);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(
                    dir.join("deploy.ini"),
                    node_config(name, &redis.url(), extra),
                )
                .unwrap();
                Node {
                    name: name.to_string(),
                    dir,
                    port: stable_port(),
                    host: None,
                }
            })
            .collect();
        for node in &mut nodes {
            node.start_first();
        }
        let port = free_port();
        let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        let nginx = Nginx::start(&nginx_bin, root.path(), &nginx_conf(port, &ports), port);
        Some(Cluster {
            nginx,
            nodes,
            redis,
            root,
        })
    }

    /// A GET (or any method) through nginx.
    pub fn via(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.nginx.port, method, path, headers, b"")
            .unwrap_or_else(|e| panic!("{method} {path} through nginx: {e}\n{}", self.logs()))
    }

    /// The nodes whose cache_dir holds `path`'s page.
    pub fn holders(&self, path: &str) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].holds(path))
            .collect()
    }

    /// The one node holding `path` (panics if none or several do).
    pub fn holder(&self, path: &str) -> usize {
        match self.holders(path)[..] {
            [one] => one,
            ref many => panic!("{path} is held by nodes {many:?}, not exactly one"),
        }
    }

    /// GET `path` through nginx and wait until some node stored it; asserts
    /// it is stored on exactly one node, and returns that node.
    pub fn store(&self, path: &str, headers: &[(&str, &str)]) -> usize {
        let r = self.via("GET", path, headers);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        wait_until(
            &format!("{path} to be stored on a node"),
            Duration::from_secs(10),
            || !self.holders(path).is_empty(),
        );
        self.holder(path)
    }

    /// Store `prefix/0`, `prefix/1`, ... through nginx until one lands on
    /// `node`; returns that path.
    pub fn path_on(&self, node: usize, prefix: &str, headers: &[(&str, &str)]) -> String {
        for i in 0..200 {
            let path = format!("{prefix}/{i}");
            if self.store(&path, headers) == node {
                return path;
            }
        }
        panic!("no path under {prefix} hashed to {}", self.nodes[node].name)
    }

    /// Each running node's log and nginx's error log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push_str(&format!("--- {} ---\n{}\n", n.name, n.log()));
        }
        let nginx = std::fs::read_to_string(self.nginx.logs.join("error.log")).unwrap_or_default();
        out.push_str(&format!(
            "--- nginx ---\n{nginx}\n--- redis ---\n{}",
            self.redis.log()
        ));
        out
    }
}

/// Client threads looping GETs through nginx over a few paths until stopped,
/// each request on a new connection; every answer but a 200 and every
/// connection error is a failure.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    threads: Vec<JoinHandle<(u64, Vec<String>)>>,
}

/// What a [`Load`] saw.
#[derive(Debug)]
pub struct LoadReport {
    pub ok: u64,
    pub failures: Vec<String>,
}

impl Load {
    /// `threads` clients over `paths`; every fifth request of each thread asks
    /// `/slow?...` (a bypass, answered after `X-Echo-Sleep-Ms: 50`), so some
    /// request is usually in flight on every node.
    pub fn start(port: u16, threads: usize, paths: &[String]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let threads = (0..threads)
            .map(|t| {
                let stop = stop.clone();
                let done = done.clone();
                let paths = paths.to_vec();
                std::thread::spawn(move || {
                    let (mut ok, mut failures) = (0u64, Vec::new());
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let (path, headers): (String, &[(&str, &str)]) = if i % 5 == 0 {
                            (format!("/slow/{}?{i}", i % 7), &[("X-Echo-Sleep-Ms", "50")])
                        } else {
                            (paths[i % paths.len()].clone(), &[])
                        };
                        match request(port, "GET", &path, headers, b"") {
                            Ok(r) if r.status == 200 => {
                                ok += 1;
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => {
                                failures.push(format!("GET {path}: {} {}", r.status, r.text()))
                            }
                            Err(e) => failures.push(format!("GET {path}: {e}")),
                        }
                    }
                    (ok, failures)
                })
            })
            .collect();
        Load {
            stop,
            ok: done,
            threads,
        }
    }

    /// Requests answered 200 so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Wait until `n` more requests were answered 200 (at most 20 s).
    pub fn wait_for(&self, n: u64) {
        let target = self.ok() + n;
        wait_until(
            &format!("{n} more answered requests"),
            Duration::from_secs(20),
            || self.ok() >= target,
        );
    }

    pub fn stop(mut self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = LoadReport {
            ok: 0,
            failures: Vec::new(),
        };
        for t in std::mem::take(&mut self.threads) {
            let (ok, failures) = t.join().unwrap();
            report.ok += ok;
            report.failures.extend(failures);
        }
        report
    }
}

/// A test that failed with the load running stops the clients too.
impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `plughost cache purge DIR/deploy.ini ARGS` with the plugin path set.
pub fn purge_cli(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_plughost"))
        .args(["cache", "purge"])
        .arg(dir.join("deploy.ini"))
        .args(args)
        .env("PLUGHOST_PLUGIN_PATH", plugins())
        .output()
        .unwrap()
}
