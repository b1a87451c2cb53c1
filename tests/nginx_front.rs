//! nginx in front of plughost, with the shipped examples/nginx/nginx.conf: hits
//! come from the cache tree through nginx, misses and everything the cache
//! filter would not answer go to plughost. Skipped (with a message) when nginx
//! is not installed.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

/// The shipped examples/nginx/nginx.conf with its addresses, root and logs
/// pointed at this test's.
struct Nginx(nginx::Nginx);

impl Nginx {
    fn start(bin: &Path, dir: &Path, cache: &Path, upstream: u16) -> Nginx {
        Nginx::start_recipe("nginx.conf", bin, dir, cache, upstream)
    }

    /// `examples/nginx/RECIPE`, pointed at this test's addresses, root and logs.
    fn start_recipe(recipe: &str, bin: &Path, dir: &Path, cache: &Path, upstream: u16) -> Nginx {
        let port = nginx::free_port();
        let mut conf =
            std::fs::read_to_string(repo_dir().join("examples/nginx").join(recipe)).unwrap();
        for (from, to) in [
            (
                "listen 127.0.0.1:8081;",
                format!("listen 127.0.0.1:{port};"),
            ),
            (
                "server 127.0.0.1:8080;",
                format!("server 127.0.0.1:{upstream};"),
            ),
            (
                "root /srv/site/cache;",
                format!("root {};", cache.display()),
            ),
            ("/var/log/nginx/", "{logs}/".to_string()),
        ] {
            assert!(conf.contains(from), "the example no longer has {from:?}");
            conf = conf.replace(from, &to);
        }
        Nginx(nginx::Nginx::start(bin, dir, &conf, port))
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.0.port, method, path, headers, b"").unwrap_or_else(|e| {
            let log =
                std::fs::read_to_string(self.0.logs.join("plughost-error.log")).unwrap_or_default();
            panic!("{method} {path} through nginx: {e}\n{log}")
        })
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn nginx_serves_hits_from_the_tree_and_plughost_everything_else() {
    let Some(bin) = nginx::binary() else {
        skip_unless_ci("nginx not installed (looked on PATH and at /usr/sbin/nginx)");
        return;
    };
    let dir = tempdir();
    let host = Host::start_in(
        dir.path(),
        "[app:main]\nuse = egg:echo\nfilter-with = cache\n\n\
         [filter:cache]\nuse = egg:plughost#cache\ncache_dir = cache\nstatus_header = X-Cache\n",
    );
    let cache = std::fs::canonicalize(dir.path().join("cache")).unwrap();
    let nginx = Nginx::start(&bin, dir.path(), &cache, host.port);
    let via =
        |method: &str, path: &str, headers: &[(&str, &str)]| nginx.request(method, path, headers);
    // The app's counter, read through nginx with a request that must reach plughost.
    let probe = || {
        let r = via("GET", "/probe?counter", &[]);
        assert_eq!(r.header("x-cache"), Some("BYPASS"));
        r.json()["counter"].as_u64().unwrap()
    };

    // A miss goes through nginx to plughost, which stores the page.
    let miss = via("GET", "/docs/page", &[("X-Echo-Body", "stored page")]);
    assert_eq!(miss.status, 200);
    assert!(miss
        .header("server")
        .is_some_and(|s| s.starts_with("nginx")));
    assert_eq!(miss.header("x-cache"), Some("MISS"));
    assert_eq!(miss.text(), "stored page");
    wait_until("the page to be stored", || {
        std::fs::read(cache.join("docs/page")).is_ok_and(|b| b == b"stored page")
    });
    let index = via("GET", "/docs/", &[("X-Echo-Body", "index page")]);
    assert_eq!(index.header("x-cache"), Some("MISS"));
    wait_until("the index to be stored", || {
        cache.join("docs/__index.html").exists()
    });

    // Hits come from nginx itself: no X-Cache from plughost, and the app is not called.
    let before = probe();
    for _ in 0..3 {
        let hit = via("GET", "/docs/page", &[("X-Echo-Body", "other")]);
        assert_eq!((hit.status, hit.text().as_str()), (200, "stored page"));
        assert_eq!(hit.header("x-cache"), None, "served by nginx: {hit:?}");
        assert_eq!(hit.header("content-type"), Some("text/html"));
        assert!(hit.header("server").is_some_and(|s| s.starts_with("nginx")));
    }
    let head = via("HEAD", "/docs/page", &[]);
    assert_eq!((head.status, head.header("x-cache")), (200, None));
    assert_eq!(head.header("content-length"), Some("11"));
    let index = via("GET", "/docs/", &[]);
    assert_eq!(
        (index.text().as_str(), index.header("x-cache")),
        ("index page", None)
    );
    let bare = via("GET", "/docs/page?", &[]);
    assert_eq!(
        (bare.text().as_str(), bare.header("x-cache")),
        ("stored page", None)
    );
    assert_eq!(probe() - before - 1, 0, "the app was not called for hits");

    // Everything the filter would not answer from the tree reaches plughost.
    let before = probe();
    for (method, path, headers) in [
        ("GET", "/docs/page?x=1", &[][..]),
        ("GET", "/docs/page", &[("Authorization", "Basic dTpw")][..]),
        ("POST", "/docs/page", &[][..]),
        ("DELETE", "/docs/page", &[][..]),
    ] {
        let r = via(method, path, headers);
        assert_eq!(
            (r.status, r.header("x-cache")),
            (200, Some("BYPASS")),
            "{method} {path}"
        );
        assert_eq!(r.json()["method"], method);
    }
    assert_eq!(probe() - before - 1, 4);

    // The filter's temporary files, dotfiles and symlinks are never served from the tree.
    std::fs::write(cache.join(".plughost-tmp-1-1"), "CANARY-TEMP").unwrap();
    std::fs::write(cache.join("docs/.hidden"), "CANARY-HIDDEN").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "CANARY-SECRET").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), cache.join("link")).unwrap();
    std::fs::write(cache.join("__index.html"), "CANARY-ROOT-INDEX").unwrap();
    for path in [
        "/.plughost-tmp-1-1",
        "/%2eplughost-tmp-1-1",
        "/docs/.hidden",
        "/docs/x/../.hidden",
        "/docs//page",
        "/docs%2Fpage",
        "/link",
        "/__index.html",
        "/../secret.txt",
    ] {
        let r = via("GET", path, &[("X-Echo-Body", "FROM-APP")]);
        assert!(!r.text().contains("CANARY"), "{path}: {r:?}");
        if r.status == 200 {
            assert_eq!(r.text(), "FROM-APP", "{path}");
        }
    }
    assert_eq!(via("GET", "/", &[]).text(), "CANARY-ROOT-INDEX");
}

/// examples/nginx/page-tree.conf before a section with `content_type = auto`,
/// `layout = dirs`, `host_dirs = true`, `host_port = false` and `hosts`: each
/// host's pages come from its own tree, `/a` and `/a/b` both from the tree,
/// everything else (other hosts, `/a/`) from plughost.
#[test]
fn nginx_serves_the_page_tree_recipe() {
    use support::page_tree::{request_host, wait_for_file};
    let Some(bin) = nginx::binary() else {
        skip_unless_ci("nginx not installed (looked on PATH and at /usr/sbin/nginx)");
        return;
    };
    let dir = tempdir();
    let host = Host::start_in(
        dir.path(),
        "[app:main]\nuse = egg:echo\nfilter-with = cache\n\n\
         [filter:cache]\nuse = egg:plughost#cache\ncache_dir = cache\nstatus_header = X-Cache\n\
         content_type = auto\nlayout = dirs\nhost_dirs = true\nhost_port = false\n\
         hosts = a.example b.example\ncompress = gzip\n",
    );
    let cache = std::fs::canonicalize(dir.path().join("cache")).unwrap();
    let nginx = Nginx::start_recipe("page-tree.conf", &bin, dir.path(), &cache, host.port);
    let via = |h: &str, path: &str, body: &str| {
        request_host(nginx.0.port, "GET", path, h, &[("X-Echo-Body", body)])
    };
    let from_nginx = |r: &Reply| r.header("x-cache").is_none();

    // Misses go to plughost and land in each host's tree, in the dirs layout.
    for (h, path, body) in [
        ("a.example", "/a", "A a"),
        ("a.example", "/a/b", "A a/b"),
        ("a.example", "/", "A home"),
        ("b.example", "/a", "B a"),
    ] {
        let r = via(h, path, body);
        assert_eq!(
            (r.header("x-cache"), r.text().as_str()),
            (Some("MISS"), body)
        );
    }
    for file in [
        "a.example/a/__index.html",
        "a.example/a/b/__index.html",
        "a.example/__index.html",
        "b.example/a/__index.html",
    ] {
        wait_for_file(&cache.join(file));
    }
    // Hits come from nginx, per host, with nginx's type for the file.
    for (h, path, body) in [
        ("a.example", "/a", "A a"),
        ("A.EXAMPLE:80", "/a/b", "A a/b"),
        ("a.example", "/", "A home"),
        ("b.example", "/a", "B a"),
    ] {
        let r = via(h, path, "app");
        assert!(from_nginx(&r), "{h}{path}: {r:?}");
        assert_eq!((r.status, r.text().as_str()), (200, body), "{h}{path}");
        assert_eq!(r.header("content-type"), Some("text/html"));
    }
    // A host the filter does not store, and `/a/`, reach plughost every time.
    for (h, path) in [("evil.example", "/a"), ("a.example", "/a/")] {
        for _ in 0..2 {
            let r = via(h, path, "from app");
            assert_eq!(
                (r.header("x-cache"), r.text().as_str()),
                (Some("BYPASS"), "from app"),
                "{h}{path}"
            );
        }
    }
    assert!(!cache.join("evil.example").exists());

    // compress = gzip: nginx's gzip_static answers with the filter's twin.
    let big = request_host(
        nginx.0.port,
        "GET",
        "/big",
        "a.example",
        &[("X-Echo-Bytes", "3000")],
    );
    assert_eq!(big.header("x-cache"), Some("MISS"));
    wait_for_file(&cache.join("a.example/big/__index.html.gz"));
    let page = std::fs::read(cache.join("a.example/big/__index.html")).unwrap();
    let r = request_host(
        nginx.0.port,
        "GET",
        "/big",
        "a.example",
        &[("Accept-Encoding", "gzip")],
    );
    assert!(from_nginx(&r), "{r:?}");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&r.body[..]), &mut decoded)
        .unwrap();
    assert_eq!(decoded, page);
    let r = request_host(nginx.0.port, "GET", "/big", "a.example", &[]);
    assert_eq!((r.header("content-encoding"), &r.body), (None, &page));
    // A twin's own name is never served as a page.
    let r = request_host(
        nginx.0.port,
        "GET",
        "/big/__index.html.gz",
        "a.example",
        &[("X-Echo-Body", "app")],
    );
    assert!(!from_nginx(&r));
}
