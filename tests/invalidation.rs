//! Invalidation against the real binary (issue 18): `purge_on` and
//! `purge_parent`, the `PURGE` method (who may, prefix, tags), tags kept across
//! a restart and a lost index, soft purges under concurrent clients (with nginx
//! serving the tree in front), and a store in flight never putting a purged
//! page back.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::page_tree::wait_for_file;
use support::*;

/// The echo app's JSON report is the page: it carries the app's call counter.
const ECHO: &str = "[app:main]\nuse = egg:echo\nfilter-with = cache\n\n\
                    [filter:cache]\nuse = egg:plughost#cache\ncache_dir = cache\n\
                    status_header = X-Cache\ncontent_type = application/json\n";

/// Every page (regular file, not dot-named) under `dir`, relative.
fn tree(dir: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn counter(r: &Reply) -> u64 {
    r.json()["counter"].as_u64().unwrap()
}

/// GET `path` until it is stored (the store lands after the response).
fn store(host: &Host, path: &str, headers: &[(&str, &str)]) -> Reply {
    let r = host.request("GET", path, headers, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let rel = path.trim_start_matches('/');
    let file = if rel.is_empty() || rel.ends_with('/') {
        format!("{rel}__index.html")
    } else {
        rel.to_owned()
    };
    wait_for_file(&host.dir.join("cache").join(file));
    r
}

#[test]
fn a_post_purges_its_page_and_purge_parent_the_listing() {
    let dir = tempdir();
    let host = Host::start_in(
        dir.path(),
        &format!("{ECHO}purge_on = POST DELETE\npurge_parent = true\n"),
    );
    let cache = dir.path().join("cache");
    store(&host, "/items/", &[]);
    store(&host, "/items/7", &[]);
    store(&host, "/other", &[]);
    assert_eq!(host.get("/items/").header("x-cache"), Some("HIT"));

    // A failed write purges nothing.
    let r = host.request("POST", "/items/7", &[("X-Echo-Status", "500")], b"x");
    assert_eq!(r.status, 500);
    assert_eq!(
        tree(&cache),
        set(&["items/7", "items/__index.html", "other"])
    );

    // A PUT is not in purge_on.
    let r = host.request("PUT", "/items/7", &[], b"x");
    assert_eq!(r.status, 200);
    assert_eq!(tree(&cache).len(), 3);

    // The POST's answer arrives after the purge: the next GET is a miss.
    let r = host.request("POST", "/items/7", &[], b"{\"name\": \"seven\"}");
    assert_eq!(r.status, 200);
    assert_eq!(tree(&cache), set(&["other"]));
    let after = host.get("/items/");
    assert_eq!(after.header("x-cache"), Some("MISS"));
    assert_eq!(host.get("/other").header("x-cache"), Some("HIT"));
}

#[test]
fn purge_on_alone_purges_only_the_page() {
    let dir = tempdir();
    let host = Host::start_in(dir.path(), &format!("{ECHO}purge_on = POST\n"));
    let cache = dir.path().join("cache");
    store(&host, "/api/items/", &[]);
    store(&host, "/api/items/1", &[]);
    let r = host.request("POST", "/api/items/", &[], b"new");
    assert_eq!(r.status, 200);
    assert_eq!(tree(&cache), set(&["api/items/1"]));
    // A query string does not change the page a write names.
    host.request("DELETE", "/api/items/1?force=1", &[], b"");
    assert_eq!(
        tree(&cache),
        set(&["api/items/1"]),
        "DELETE is not in purge_on"
    );
    host.request("POST", "/api/items/1?x=1", &[], b"new");
    assert!(tree(&cache).is_empty());
}

#[test]
fn purge_is_allowed_by_address_and_token() {
    let dir = tempdir();
    let host = Host::start_in(dir.path(), &format!("{ECHO}purge_token = s3cret\n"));
    let cache = dir.path().join("cache");
    let first = counter(&store(&host, "/a", &[]));
    for auth in [
        None,
        Some("Bearer nope"),
        Some("Basic s3cret"),
        Some("Bearer s3cret2"),
    ] {
        let h: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
        let r = host.request("PURGE", "/a", &h, b"");
        assert_eq!(r.status, 403, "{auth:?}: {}", r.text());
        assert!(cache.join("a").is_file(), "{auth:?} removed the page");
    }
    let r = host.request("PURGE", "/a", &[("Authorization", "Bearer s3cret")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), serde_json::json!({"purged": 1}));
    assert!(!cache.join("a").exists());
    // Again: nothing left to purge, and the app never saw a PURGE.
    let r = host.request("PURGE", "/a", &[("Authorization", "Bearer s3cret")], b"");
    assert_eq!(r.json(), serde_json::json!({"purged": 0}));
    let next = host.get("/b");
    assert_eq!(
        counter(&next),
        first + 1,
        "the app answered more than /a and /b"
    );
    drop(host);

    // From an address outside purge_allow: refused whatever the token.
    let dir = tempdir();
    let host = Host::start_in(
        dir.path(),
        &format!("{ECHO}purge_allow = 10.0.0.0/8 192.0.2.1\n"),
    );
    store(&host, "/a", &[]);
    let r = host.request("PURGE", "/a", &[], b"");
    assert_eq!(r.status, 403);
    assert!(r.text().contains("purge_allow"), "{}", r.text());
    assert!(dir.path().join("cache/a").is_file());
    assert!(
        host.wait_log("PURGE refused", Duration::from_secs(5)),
        "{}",
        host.log()
    );
}

#[test]
fn prefix_and_tag_purges_remove_exactly_their_pages() {
    let dir = tempdir();
    let host = Host::start_in(dir.path(), ECHO);
    let cache = dir.path().join("cache");
    let tagged = |tags: &'static str| [("X-Echo-Header", tags)];
    store(&host, "/blog/1", &tagged("Surrogate-Key: post-1 blog"));
    store(&host, "/blog/2", &tagged("Surrogate-Key: post-2 blog"));
    store(
        &host,
        "/blog/archive/2025",
        &tagged("Cache-Tag: blog, archive"),
    );
    store(&host, "/bloggers", &tagged("Cache-Tag: people"));
    let home = store(&host, "/", &tagged("Surrogate-Key: home post-1 post-2"));
    // The tag headers are the cache's business, not the client's.
    assert_eq!(home.header("surrogate-key"), None);
    assert_eq!(
        tree(&cache),
        set(&[
            "__index.html",
            "blog/1",
            "blog/2",
            "blog/archive/2025",
            "bloggers"
        ])
    );

    let r = host.request("PURGE", "/", &[("Surrogate-Key", "post-1")], b"");
    assert_eq!(r.json(), serde_json::json!({"purged": 2}), "{}", r.text());
    assert_eq!(
        tree(&cache),
        set(&["blog/2", "blog/archive/2025", "bloggers"])
    );

    let r = host.request("PURGE", "/blog", &[("X-Purge-Prefix", "1")], b"");
    assert_eq!(r.json(), serde_json::json!({"purged": 2}), "{}", r.text());
    assert_eq!(tree(&cache), set(&["bloggers"]));

    // The CLI by tag.
    let out = cache_purge(dir.path(), &["--tag", "people"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("purged 1 page"));
    assert!(tree(&cache).is_empty());
    // Purged pages are misses again.
    assert_eq!(host.get("/bloggers").header("x-cache"), Some("MISS"));
}

#[test]
fn expose_tags_keeps_the_headers() {
    let (host, dir) = Host::start(&format!("{ECHO}expose_tags = true\n"));
    let r = store(&host, "/t", &[("X-Echo-Header", "Surrogate-Key: a b")]);
    assert_eq!(r.header("surrogate-key"), Some("a b"));
    let r = host.request("PURGE", "/x", &[("Surrogate-Key", "b")], b"");
    assert_eq!(r.json(), serde_json::json!({"purged": 1}));
    assert!(!dir.path().join("cache/t").exists());
}

#[test]
fn tags_survive_a_restart_and_a_deleted_index() {
    let dir = tempdir();
    let host = Host::start_in(dir.path(), ECHO);
    let cache = dir.path().join("cache");
    store(&host, "/n/1", &[("X-Echo-Header", "Surrogate-Key: a42")]);
    store(&host, "/n/2", &[("X-Echo-Header", "Surrogate-Key: a7")]);
    store(&host, "/n/3", &[("X-Echo-Header", "Surrogate-Key: a42 a7")]);
    assert!(cache.join(".plughost-tags/journal").is_file());
    host.terminate();

    std::fs::remove_dir_all(cache.join(".plughost-tags")).unwrap();
    let host = Host::start_in(dir.path(), ECHO);
    let r = host.request("PURGE", "/", &[("Surrogate-Key", "a42")], b"");
    assert_eq!(r.json(), serde_json::json!({"purged": 2}), "{}", r.text());
    assert_eq!(tree(&cache), set(&["n/2"]));

    // A corrupt journal is rebuilt too.
    std::fs::write(cache.join(".plughost-tags/journal"), "garbage\n").unwrap();
    let out = cache_purge(dir.path(), &["--tag", "a7"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tree(&cache).is_empty());
    // The index is never a page.
    assert_eq!(
        host.get("/.plughost-tags/journal").header("x-cache"),
        Some("BYPASS")
    );
}

#[test]
fn a_store_in_flight_does_not_put_a_purged_page_back() {
    let dir = tempdir();
    let host = Host::start_in(dir.path(), ECHO);
    let cache = dir.path().join("cache");
    let port = host.port;
    // The slow miss asks the app first, the purge lands while it waits.
    let slow = std::thread::spawn(move || {
        request(port, "GET", "/slow", &[("X-Echo-Sleep-Ms", "600")], b"").unwrap()
    });
    std::thread::sleep(Duration::from_millis(200));
    let r = host.request("PURGE", "/slow", &[], b"");
    assert_eq!(r.status, 200);
    let answered = slow.join().unwrap();
    assert_eq!(answered.status, 200);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !cache.join("slow").exists(),
        "the answer from before the purge was stored"
    );
    // The next request stores it as usual.
    store(&host, "/slow", &[]);
}

/// GET `path` from `port` with a fresh connection; the body and X-Cache.
fn fetch(port: u16, path: &str) -> Reply {
    request(port, "GET", path, &[], b"").unwrap()
}

#[test]
fn a_soft_purge_calls_the_app_once_while_every_client_gets_a_hit() {
    let dir = tempdir();
    let host = Host::start_in(dir.path(), ECHO);
    let cache = dir.path().join("cache");
    let old = store(&host, "/hot", &[]);
    let c0 = counter(&old);
    let old_bytes = std::fs::read(cache.join("hot")).unwrap();

    let port = host.port;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) || seen.is_empty() {
                    let r = fetch(port, "/hot");
                    seen.push((
                        r.status,
                        r.header("x-cache").map(str::to_owned),
                        counter(&r),
                    ));
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let r = host.request("PURGE", "/hot", &[("X-Purge-Soft", "1")], b"");
    assert_eq!(r.json(), serde_json::json!({"purged": 1}), "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read(cache.join("hot")).unwrap() == old_bytes {
        assert!(Instant::now() < deadline, "the page was never refreshed");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let mut counters = BTreeSet::new();
    for c in clients {
        for (status, mark, n) in c.join().unwrap() {
            assert_eq!(status, 200);
            assert_eq!(mark.as_deref(), Some("HIT"), "a client waited for the app");
            counters.insert(n);
        }
    }
    assert!(
        counters.iter().all(|n| *n == c0 || *n == c0 + 1),
        "{counters:?}"
    );
    // Exactly one app call for the page: the next call is the one after it.
    assert_eq!(counter(&store(&host, "/probe", &[])), c0 + 2);
    assert_eq!(tree(&cache), set(&["hot", "probe"]));
}

#[test]
fn a_soft_purge_of_a_page_that_is_no_longer_storable_removes_it() {
    let dir = tempdir();
    // The refresh asks without the client's headers: X-Echo-Bytes made the
    // first answer a text/html page; the refresh gets JSON, which the cache
    // (content_type = text/html) does not store.
    let config = "[app:main]\nuse = egg:echo\nfilter-with = cache\n\n\
                  [filter:cache]\nuse = egg:plughost#cache\ncache_dir = cache\n";
    let host = Host::start_in(dir.path(), config);
    let r = host.request("GET", "/p", &[("X-Echo-Bytes", "100")], b"");
    assert_eq!(r.status, 200);
    wait_for_file(&dir.path().join("cache/p"));
    let r = host.request("PURGE", "/p", &[("X-Purge-Soft", "1")], b"");
    assert_eq!(r.json(), serde_json::json!({"purged": 1}));
    let deadline = Instant::now() + Duration::from_secs(10);
    while dir.path().join("cache/p").exists() {
        assert!(
            Instant::now() < deadline,
            "the unstorable refresh left the page"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn nginx_keeps_serving_the_old_page_during_a_soft_purge() {
    let Some(bin) = nginx::binary() else {
        return skip_unless_ci("nginx is not installed");
    };
    let dir = tempdir();
    let host = Host::start_in(dir.path(), ECHO);
    let cache = dir.path().join("cache");
    store(&host, "/front", &[]);
    let port = nginx::free_port();
    let conf = nginx::http_conf(&format!(
        "server {{\n listen 127.0.0.1:{port};\n root {root};\n default_type application/json;\n\
           location / {{ try_files $uri @app; }}\n\
           location @app {{ proxy_pass http://127.0.0.1:{app}; }}\n}}\n",
        root = cache.display(),
        app = host.port,
    ));
    let front = nginx::Nginx::start(&bin, dir.path(), &conf, port);
    let before = fetch(front.port, "/front");
    assert_eq!(before.status, 200);
    assert_eq!(
        before.header("x-cache"),
        None,
        "nginx did not serve the file"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        let p = front.port;
        std::thread::spawn(move || {
            let mut from_app = 0;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = fetch(p, "/front");
                assert_eq!(r.status, 200);
                if r.header("x-cache").is_some() {
                    from_app += 1;
                }
                n += 1;
            }
            (n, from_app)
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let old = std::fs::read(cache.join("front")).unwrap();
    let r = host.request("PURGE", "/front", &[("X-Purge-Soft", "1")], b"");
    assert_eq!(r.status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read(cache.join("front")).unwrap() == old {
        assert!(Instant::now() < deadline, "never refreshed");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let (n, from_app) = watcher.join().unwrap();
    assert!(n > 10, "only {n} requests through nginx");
    assert_eq!(
        from_app, 0,
        "nginx sent {from_app} of {n} requests to the app"
    );
    let after = fetch(front.port, "/front");
    assert_eq!(counter(&after), counter(&before) + 1);
}

#[test]
fn purges_are_counted_in_the_metrics_app() {
    let config = "[composite:main]\nuse = egg:Paste#urlmap\n/ = site\n/metrics = metrics\n\n\
                  [app:metrics]\nuse = egg:plughost#metrics\n\n\
                  [app:site]\nuse = egg:echo\nfilter-with = cache\n\n\
                  [filter:cache]\nuse = egg:plughost#cache\ncache_dir = cache\n\
                  content_type = application/json\npurge_allow = 127.0.0.1\n";
    let (host, _dir) = Host::start(config);
    store(&host, "/m", &[]);
    assert_eq!(host.request("PURGE", "/m", &[], b"").json()["purged"], 1);
    let text = host.get("/metrics").text();
    for (event, n) in [("purge.http", 1), ("purge.pages", 1), ("purge.refused", 0)] {
        let line = format!("section=\"filter:cache\",event=\"{event}\"}} {n}");
        assert!(text.contains(&line), "no `{line}` in:\n{text}");
    }
}

#[test]
fn the_cli_soft_purge_refreshes_pages_through_the_pipeline() {
    let dir = tempdir();
    let host = Host::start_in(dir.path(), ECHO);
    let cache = dir.path().join("cache");
    store(&host, "/s/1", &[("X-Echo-Header", "Surrogate-Key: s")]);
    store(&host, "/s/2", &[]);
    store(&host, "/t", &[("X-Echo-Header", "Surrogate-Key: s")]);
    let before = |p: &str| std::fs::read(cache.join(p)).unwrap();
    let (s1, s2, t) = (before("s/1"), before("s/2"), before("t"));
    let soft = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_plughost"))
            .args(["cache", "purge"])
            .arg(dir.path().join("deploy.ini"))
            .args(args)
            .arg("--soft")
            .env("PLUGHOST_PLUGIN_PATH", plugins())
            .output()
            .unwrap()
    };
    let out = soft(&["--prefix", "/s"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("refreshed: 2"), "{text}");
    assert_ne!(before("s/1"), s1);
    assert_ne!(before("s/2"), s2);
    assert_eq!(before("t"), t, "a page outside the prefix was refreshed");
    // The refreshed page is what the running server serves now (it reads the tree).
    let served = host.get("/s/2");
    assert_eq!(served.header("x-cache"), Some("HIT"));
    assert_eq!(served.body, before("s/2"));
    // By tag: /t still has its tag; /s/1 lost it (the refresh sent no X-Echo-Header).
    let out = soft(&["--tag", "s"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("refreshed: 1"), "{text}");
    assert_ne!(before("t"), t);
}

#[test]
fn purges_follow_host_trees_layouts_and_twins() {
    use support::page_tree::request_host;
    let dir = tempdir();
    let config = format!(
        "{ECHO}host_dirs = true\nhost_port = false\nlayout = dirs\ncompress = gzip\n\
         compress_types = application/json\ncompress_min_size = 1\npurge_on = DELETE\n"
    );
    let host = Host::start_in(dir.path(), &config);
    let cache = dir.path().join("cache");
    let get = |h: &str, path: &str| {
        let r = request_host(
            host.port,
            "GET",
            path,
            h,
            &[("X-Echo-Header", "Cache-Tag: t")],
        );
        assert_eq!(r.status, 200);
    };
    for h in ["a.example", "b.example"] {
        get(h, "/docs");
        get(h, "/docs/x");
    }
    for f in [
        "a.example/docs/__index.html.gz",
        "b.example/docs/x/__index.html.gz",
    ] {
        wait_for_file(&cache.join(f));
    }
    wait_for_file(&cache.join("a.example/docs/x/__index.html.gz"));
    wait_for_file(&cache.join("b.example/docs/__index.html.gz"));
    let all = tree(&cache);
    assert_eq!(all.len(), 8, "{all:?}");

    // A page purge names the request's host; its twin goes with it.
    let r = request_host(host.port, "PURGE", "/docs/x", "a.example", &[]);
    assert_eq!(r.json()["purged"], 1, "{}", r.text());
    assert!(!cache.join("a.example/docs/x/__index.html").exists());
    assert!(!cache.join("a.example/docs/x/__index.html.gz").exists());
    assert!(cache.join("b.example/docs/x/__index.html").exists());

    // purge_on under layout = dirs: DELETE /docs removes b's /docs page only.
    let r = request_host(host.port, "DELETE", "/docs", "b.example", &[]);
    assert_eq!(r.status, 200);
    assert!(!cache.join("b.example/docs/__index.html").exists());
    assert!(cache.join("b.example/docs/x/__index.html").exists());
    assert!(cache.join("a.example/docs/__index.html").exists());

    // A soft purge by tag refreshes each host's page with that Host.
    let before = std::fs::read(cache.join("a.example/docs/__index.html")).unwrap();
    let r = request_host(
        host.port,
        "PURGE",
        "/",
        "a.example",
        &[("Surrogate-Key", "t"), ("X-Purge-Soft", "1")],
    );
    assert_eq!(r.json()["purged"], 2, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read(cache.join("a.example/docs/__index.html")).unwrap() == before {
        assert!(Instant::now() < deadline, "not refreshed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let page: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("a.example/docs/__index.html")).unwrap())
            .unwrap();
    assert_eq!(page["headers"]["host"], "a.example");
    assert_eq!(page["path_info"], "/docs");
}
