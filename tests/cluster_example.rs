//! examples/cluster as shipped: its one deploy.ini started three times (node=a,
//! b, c), its nginx.conf (balancer with a consistent hash, one server block per
//! node serving that node's tree) in front, and a real redis-server carrying
//! the purge stream. A page lands on exactly one node and is then served from
//! that node's tree by nginx; a PURGE on one node (or `cache purge --bus`
//! with purge.ini) removes the page from the node that holds it; killing a node under load fails no client request.
//! Skipped (with a message) when nginx or redis-server is not installed.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

const NODES: [&str; 3] = ["a", "b", "c"];

/// `text` with `from` replaced by `to`, which must be there.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the example no longer has {from:?}");
    text.replace(from, to)
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The three nodes, nginx and redis, started from examples/cluster.
struct Cluster {
    dir: tempfile::TempDir,
    nodes: Vec<Option<Host>>,
    nginx: nginx::Nginx,
    _redis: redis::Redis,
}

impl Cluster {
    fn start(nginx_bin: &Path, redis_bin: &Path) -> Cluster {
        let dir = tempdir();
        let example = repo_dir().join("examples/cluster");
        let redis = redis::Redis::start(redis_bin, &dir.path().join("redis"));
        // The shipped deploy.ini, pointed at this test's redis. `%(here)s` is
        // the copy's directory, so the trees land in this test's directory.
        let ini = std::fs::read_to_string(example.join("deploy.ini")).unwrap();
        let ini = replaced(
            &ini,
            "purge_bus = redis://127.0.0.1:6379/0",
            &format!("purge_bus = {}", redis.url()),
        );
        let ini_path = dir.path().join("deploy.ini");
        std::fs::write(&ini_path, ini).unwrap();
        // And the deploy scripts' purge.ini.
        let purge = std::fs::read_to_string(example.join("purge.ini")).unwrap();
        let purge = replaced(
            &purge,
            "purge_bus = redis://127.0.0.1:6379/0",
            &format!("purge_bus = {}", redis.url()),
        );
        std::fs::write(dir.path().join("purge.ini"), purge).unwrap();
        let nodes: Vec<Option<Host>> = NODES
            .iter()
            .map(|n| {
                let node = format!("node={n}");
                Some(
                    Host::serve_path(&ini_path, &[&node, "http_port=0"])
                        .unwrap_or_else(|e| panic!("node {n}: {e}")),
                )
            })
            .collect();
        // The shipped nginx.conf and node-block.conf, with this test's ports.
        // The node blocks' roots are relative to nginx's prefix, this directory.
        let mut conf = std::fs::read_to_string(example.join("nginx.conf")).unwrap();
        let front = nginx::free_port();
        conf = replaced(
            &conf,
            "listen 127.0.0.1:8080;",
            &format!("listen 127.0.0.1:{front};"),
        );
        for (i, node) in nodes.iter().enumerate() {
            let block = nginx::free_port();
            let plughost = node.as_ref().unwrap().port;
            conf = replaced(
                &conf,
                &format!("127.0.0.1:{};", 8091 + i),
                &format!("127.0.0.1:{block};"),
            );
            conf = replaced(
                &conf,
                &format!("127.0.0.1:{} ", 8091 + i),
                &format!("127.0.0.1:{block} "),
            );
            conf = replaced(
                &conf,
                &format!("server 127.0.0.1:{};", 8081 + i),
                &format!("server 127.0.0.1:{plughost};"),
            );
        }
        // support::nginx sets the pid file itself.
        conf = replaced(&conf, "pid logs/nginx.pid;\n", "");
        std::fs::copy(
            example.join("node-block.conf"),
            dir.path().join("node-block.conf"),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let nginx = nginx::Nginx::start(nginx_bin, dir.path(), &conf, front);
        Cluster {
            dir,
            nodes,
            nginx,
            _redis: redis,
        }
    }

    fn tree(&self, node: usize) -> PathBuf {
        self.dir
            .path()
            .join("nodes")
            .join(NODES[node])
            .join("cache")
    }

    /// The page file of `path` on `node`.
    fn page(&self, node: usize, path: &str) -> PathBuf {
        self.tree(node).join(path.trim_start_matches('/'))
    }

    /// The nodes whose tree holds `path`.
    fn holders(&self, path: &str) -> Vec<usize> {
        (0..NODES.len())
            .filter(|&i| self.page(i, path).is_file())
            .collect()
    }

    fn node(&self, i: usize) -> &Host {
        self.nodes[i].as_ref().expect("the node runs")
    }

    fn get(&self, path: &str) -> Reply {
        request(self.nginx.port, "GET", path, &[], b"").unwrap_or_else(|e| {
            let log =
                std::fs::read_to_string(self.nginx.logs.join("error.log")).unwrap_or_default();
            panic!("GET {path} through nginx: {e}\n{log}")
        })
    }

    /// Which node rendered `reply` (the example's greeting names it).
    fn rendered_by(reply: &Reply) -> usize {
        let text = reply.text();
        let name = text
            .strip_prefix("Hello from node ")
            .unwrap_or_else(|| panic!("not the example's greeting: {text:?}"));
        NODES
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("no node {name:?}"))
    }
}

/// nginx and redis-server, or the reason the test cannot run.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let Some(nginx) = nginx::binary() else {
        skip_unless_ci("nginx not installed (looked on PATH and at /usr/sbin/nginx)");
        return None;
    };
    let Some(redis_bin) = redis::binary() else {
        skip_unless_ci("redis-server not installed (looked on PATH and at /usr/bin)");
        return None;
    };
    Some((nginx, redis_bin))
}

/// `n` paths through the balancer, each stored on the node that rendered it
/// and on no other; returns the node of each path.
fn store_pages(c: &Cluster, prefix: &str, n: usize) -> Vec<(String, usize)> {
    let mut owners = Vec::new();
    for i in 0..n {
        let path = format!("/{prefix}/{i}");
        let r = c.get(&path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        owners.push((path, Cluster::rendered_by(&r)));
    }
    for (path, node) in &owners {
        wait_until(
            &format!("{path} stored on node {}", NODES[*node]),
            Duration::from_secs(5),
            || c.page(*node, path).is_file(),
        );
        assert_eq!(
            c.holders(path),
            vec![*node],
            "{path} must be stored on exactly the node that rendered it"
        );
    }
    owners
}

#[test]
fn the_cluster_example_shards_serves_trees_and_fans_out_purges() {
    let Some((nginx_bin, redis_bin)) = tools() else {
        return;
    };
    let c = Cluster::start(&nginx_bin, &redis_bin);
    let owners = store_pages(&c, "page", 60);
    for (node, name) in NODES.iter().enumerate() {
        assert!(
            owners.iter().any(|(_, n)| *n == node),
            "the consistent hash gave node {name} none of 60 pages"
        );
    }
    // The same URI keeps landing on the same node, and is now answered by that
    // node's nginx block from its tree: nginx sends no X-Cache header, plughost
    // always does.
    for (path, node) in &owners {
        let r = c.get(path);
        assert_eq!(r.status, 200);
        assert_eq!(Cluster::rendered_by(&r), *node, "{path} moved");
        assert_eq!(
            r.header("x-cache"),
            None,
            "{path}: a stored page must be served by nginx from the tree"
        );
    }
    // A PURGE sent to one node removes the page from the node holding it.
    for (path, owner) in owners.iter().take(12) {
        let other = (owner + 1) % NODES.len();
        let r = c.node(other).request("PURGE", path, &[], b"");
        assert_eq!(r.status, 200, "PURGE {path} on node {}", NODES[other]);
        wait_until(
            &format!(
                "{path}, purged on node {}, removed from node {}",
                NODES[other], NODES[*owner]
            ),
            Duration::from_secs(1),
            || !c.page(*owner, path).exists(),
        );
        // The next request is a miss on the owner, which renders and stores it again.
        let r = c.get(path);
        assert_eq!(Cluster::rendered_by(&r), *owner);
        assert_eq!(r.header("x-cache"), Some("MISS"), "{path} after its purge");
    }
    // A deploy script publishing with purge.ini, no node itself.
    let (path, owner) = &owners[12];
    let out = Command::new(env!("CARGO_BIN_EXE_plughost"))
        .args(["cache", "purge"])
        .arg(c.dir.path().join("purge.ini"))
        .args(["--bus", path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cache purge --bus: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(
        &format!(
            "{path}, published by cache purge --bus, removed from node {}",
            NODES[*owner]
        ),
        Duration::from_secs(1),
        || !c.page(*owner, path).exists(),
    );
    // A prefix purge on one node reaches every tree.
    let r = c
        .node(0)
        .request("PURGE", "/page", &[("X-Purge-Prefix", "1")], b"");
    assert_eq!(r.status, 200);
    for (path, owner) in &owners {
        wait_until(
            &format!(
                "{path} gone from node {} after the prefix purge",
                NODES[*owner]
            ),
            Duration::from_secs(1),
            || !c.page(*owner, path).exists(),
        );
    }
}

#[test]
fn killing_a_node_under_load_fails_no_request_through_nginx() {
    let Some((nginx_bin, redis_bin)) = tools() else {
        return;
    };
    let mut c = Cluster::start(&nginx_bin, &redis_bin);
    let owners = store_pages(&c, "warm", 30);
    let victim = 2;
    let port = c.nginx.port;
    let stop = Arc::new(AtomicBool::new(false));
    // Clients asking for stored pages (hits) and new ones (misses) all along.
    let load: Vec<_> = (0..3)
        .map(|t| {
            let stop = stop.clone();
            let paths: Vec<String> = owners.iter().map(|(p, _)| p.clone()).collect();
            std::thread::spawn(move || {
                let (mut ok, mut failed, mut i) = (0u64, Vec::new(), 0usize);
                while !stop.load(Ordering::Relaxed) {
                    let path = if i % 2 == 0 {
                        paths[i / 2 % paths.len()].clone()
                    } else {
                        format!("/load/{t}/{i}")
                    };
                    match request(port, "GET", &path, &[], b"") {
                        Ok(r) if r.status == 200 => ok += 1,
                        Ok(r) => failed.push(format!("{path}: {}", r.status)),
                        Err(e) => failed.push(format!("{path}: {e}")),
                    }
                    i += 1;
                }
                (ok, failed)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // SIGKILL: no graceful shutdown, as when the process or machine dies.
    drop(c.nodes[victim].take());
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for t in load {
        let (ok, failed) = t.join().unwrap();
        assert!(failed.is_empty(), "failed requests: {failed:?}");
        total += ok;
    }
    assert!(total > 100, "only {total} requests ran");
    // New URIs that hashed to the dead node went to the others.
    for i in 0..30 {
        let r = c.get(&format!("/after/{i}"));
        assert_eq!(r.status, 200);
        assert_ne!(
            Cluster::rendered_by(&r),
            victim,
            "a dead node rendered a page"
        );
    }
}

#[test]
fn a_node_listens_on_the_http_port_given_on_the_command_line() {
    let Some((_, redis_bin)) = tools() else {
        return;
    };
    let dir = tempdir();
    let redis = redis::Redis::start(&redis_bin, &dir.path().join("redis"));
    let ini = std::fs::read_to_string(repo_dir().join("examples/cluster/deploy.ini")).unwrap();
    let ini = replaced(
        &ini,
        "purge_bus = redis://127.0.0.1:6379/0",
        &format!("purge_bus = redis://127.0.0.1:{}/0", redis.port),
    );
    let path = dir.path().join("deploy.ini");
    std::fs::write(&path, ini).unwrap();
    let port = nginx::free_port();
    // As documented: no --port, the port from the variable.
    let mut child = Command::new(env!("CARGO_BIN_EXE_plughost"))
        .arg("serve")
        .arg(&path)
        .args(["node=a", &format!("http_port={port}")])
        .env("PLUGHOST_PLUGIN_PATH", plugins())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        line.trim(),
        format!("plughost: listening on http://127.0.0.1:{port}")
    );
    assert!(dir.path().join("nodes/a/cache").is_dir());
}
