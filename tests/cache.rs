//! The disk cache filter end to end: the real binary, the real echo plugin, real
//! files under a temporary cache_dir, raw HTTP.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// Echo behind the cache, with the status header on; `extra` adds filter keys.
fn echo_cache(extra: &str) -> String {
    format!(
        "[app:main]\nuse = egg:echo\nfilter-with = cache\n\n\
         [filter:cache]\nuse = egg:plughost#cache\ncache_dir = cache\nstatus_header = X-Cache\n{extra}"
    )
}

fn get(host: &Host, path: &str, headers: &[(&str, &str)]) -> Reply {
    host.request("GET", path, headers, b"")
}

/// A page the app answers with `body` (so the test knows what must be stored).
fn page(host: &Host, path: &str, body: &str) -> Reply {
    get(host, path, &[("X-Echo-Body", body)])
}

fn x_cache(r: &Reply) -> &str {
    r.header("x-cache").unwrap_or("<none>")
}

/// The echo app's request counter, read with a request the cache never handles
/// (so every probe itself counts one call).
fn probe(host: &Host) -> u64 {
    let r = get(host, "/probe?counter", &[]);
    assert_eq!(x_cache(&r), "BYPASS");
    r.json()["counter"].as_u64().unwrap()
}

/// App calls between two probes.
fn calls_between(before: u64, after: u64) -> u64 {
    after - before - 1
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

/// Every entry under `dir` (not following symlinks): path → file bytes, `<dir>`
/// or `-> target`, so "nothing was created or changed" is one comparison.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if meta.is_dir() {
                stack.push(p.clone());
                "<dir>".into()
            } else {
                use std::os::unix::fs::MetadataExt;
                format!(
                    "{} mtime {}",
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap()),
                    meta.mtime_nsec()
                )
            };
            out.insert(p.strip_prefix(dir).unwrap().to_owned(), what);
        }
    }
    out
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    snapshot(dir)
        .into_keys()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".plughost-tmp-"))
        })
        .collect()
}

/// Wait for a store to land (it completes just after the body reached the client).
fn wait_stored(file: &Path, body: &[u8]) {
    wait_until(&format!("{} to be stored", file.display()), || {
        std::fs::read(file).is_ok_and(|b| b == body)
    });
}

#[test]
fn seed_config_works_unchanged_under_both_names() {
    for name in ["egg:wsgi_cache#middleware", "egg:plughost#cache"] {
        let config = format!(
            "[app:main]\nuse = egg:hello\nfilter-with = cache\n\n\
             [filter:cache]\nuse = {name}\ncache_dir = ./cache\n"
        );
        let (host, dir) = Host::start(&config);
        let index = dir.path().join("cache/__index.html");
        let first = host.get("/");
        assert_eq!(
            (first.status, first.text().as_str()),
            (200, "Hello, world!")
        );
        assert_eq!(
            first.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(
            first.header("x-cache"),
            None,
            "no status header unless asked"
        );
        wait_stored(&index, b"Hello, world!");
        let hit = host.get("/");
        assert_eq!((hit.status, hit.text().as_str()), (200, "Hello, world!"));
        // Hits carry the configured content type (text/html by default), not the app's.
        assert_eq!(hit.header("content-type"), Some("text/html"), "{name}");
        assert_eq!(hit.header("content-length"), Some("13"));
        assert!(hit.header("last-modified").is_some());

        let page = host.get("/about/");
        assert_eq!(page.status, 200);
        wait_stored(
            &dir.path().join("cache/about/__index.html"),
            b"Hello, world!",
        );
    }
}

#[test]
fn miss_stores_exactly_the_body_then_hits_answer_with_validators_and_304() {
    let (host, dir) = Host::start(&echo_cache(""));
    let file = dir.path().join("cache/docs/page");
    let before = probe(&host);
    let miss = page(&host, "/docs/page", "<p>hello</p>");
    assert_eq!(miss.status, 200);
    assert_eq!(x_cache(&miss), "MISS");
    assert_eq!(miss.text(), "<p>hello</p>");
    // The miss carries the app's own headers.
    assert_eq!(miss.header("content-type"), Some("text/html"));
    wait_stored(&file, b"<p>hello</p>");

    // The hit is served from the file: the app is not called, whatever the request asks for.
    let hit = page(&host, "/docs/page", "something else");
    assert_eq!(hit.status, 200);
    assert_eq!(x_cache(&hit), "HIT");
    assert_eq!(hit.text(), "<p>hello</p>");
    assert_eq!(hit.header("content-type"), Some("text/html"));
    assert_eq!(hit.header("content-length"), Some("12"));
    let last_modified = hit
        .header("last-modified")
        .expect("Last-Modified")
        .to_owned();
    let etag = hit.header("etag").expect("ETag").to_owned();
    assert_eq!(calls_between(before, probe(&host)), 1);

    let r = get(
        &host,
        "/docs/page",
        &[("If-Modified-Since", &last_modified)],
    );
    assert_eq!((r.status, x_cache(&r)), (304, "HIT"));
    assert!(r.body.is_empty());
    let r = get(&host, "/docs/page", &[("If-None-Match", &etag)]);
    assert_eq!((r.status, x_cache(&r)), (304, "HIT"));
    let r = get(
        &host,
        "/docs/page",
        &[("If-Modified-Since", "Thu, 01 Jan 1998 00:00:00 GMT")],
    );
    assert_eq!((r.status, r.text().as_str()), (200, "<p>hello</p>"));

    // A custom content_type for hits.
    drop(host);
    let host = Host::start_in(
        dir.path(),
        &echo_cache("content_type = text/html; charset=utf-8\n"),
    );
    let hit = page(&host, "/docs/page", "x");
    assert_eq!(x_cache(&hit), "HIT");
    assert_eq!(hit.header("content-type"), Some("text/html; charset=utf-8"));
}

#[test]
fn deleting_the_file_is_the_purge_and_an_empty_file_is_a_miss() {
    let (host, dir) = Host::start(&echo_cache(""));
    let file = dir.path().join("cache/p");
    page(&host, "/p", "v1");
    wait_stored(&file, b"v1");
    assert_eq!(x_cache(&page(&host, "/p", "v2")), "HIT");

    std::fs::remove_file(&file).unwrap();
    let before = probe(&host);
    let r = page(&host, "/p", "v2");
    assert_eq!((x_cache(&r), r.text().as_str()), ("MISS", "v2"));
    assert_eq!(calls_between(before, probe(&host)), 1);
    wait_stored(&file, b"v2");
    assert_eq!(page(&host, "/p", "v3").text(), "v2");

    // A zero-size file counts as a miss, and is replaced.
    std::fs::write(&file, "").unwrap();
    let r = page(&host, "/p", "v4");
    assert_eq!((x_cache(&r), r.text().as_str()), ("MISS", "v4"));
    wait_stored(&file, b"v4");
}

#[test]
fn a_replaced_or_rewritten_file_is_served_at_once_with_or_without_the_memory_copy() {
    for extra in ["", "memory_cache_bytes = 0\n"] {
        let (host, dir) = Host::start(&echo_cache(extra));
        let file = dir.path().join("cache/r");
        page(&host, "/r", "version one");
        wait_stored(&file, b"version one");
        for _ in 0..3 {
            let r = page(&host, "/r", "x");
            assert_eq!((x_cache(&r), r.text().as_str()), ("HIT", "version one"));
        }
        // Replaced by a rename (a new inode), as a deploy script would.
        std::fs::write(dir.path().join("new"), "version two").unwrap();
        std::fs::rename(dir.path().join("new"), &file).unwrap();
        assert_eq!(page(&host, "/r", "x").text(), "version two", "{extra}");
        // Rewritten in place with the same length (after a pause longer than a
        // coarse file-system clock tick, so the modification time differs).
        std::thread::sleep(Duration::from_millis(100));
        std::fs::write(&file, "version 3!!").unwrap();
        assert_eq!(page(&host, "/r", "x").text(), "version 3!!", "{extra}");
        // Deleted: the app answers.
        std::fs::remove_file(&file).unwrap();
        let r = page(&host, "/r", "from the app");
        assert_eq!((x_cache(&r), r.text().as_str()), ("MISS", "from the app"));
    }
}

#[test]
fn hits_are_served_while_every_plugin_worker_is_busy() {
    let (host, dir) = Host::start(&format!("{}[server:main]\nthreads = 1\n", echo_cache("")));
    page(&host, "/fast", "from the tree");
    wait_stored(&dir.path().join("cache/fast"), b"from the tree");
    // Hold the only plugin worker.
    let port = host.port;
    let slow = std::thread::spawn(move || {
        request(port, "GET", "/slow?q", &[("X-Echo-Sleep-Ms", "10000")], b"")
    });
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        let r = page(&host, "/fast", "x");
        assert_eq!((x_cache(&r), r.text().as_str()), ("HIT", "from the tree"));
    }
    assert!(
        !slow.is_finished(),
        "the hits had to wait for the plugin worker"
    );
}

#[test]
fn head_is_answered_from_a_hit_and_passes_through_on_a_miss() {
    let (host, dir) = Host::start(&echo_cache(""));
    let before = probe(&host);
    let r = host.request("HEAD", "/h", &[("X-Echo-Body", "head page")], b"");
    assert_eq!((r.status, x_cache(&r)), (200, "MISS"));
    assert_eq!(calls_between(before, probe(&host)), 1);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !dir.path().join("cache/h").exists(),
        "a HEAD miss is not stored"
    );

    page(&host, "/h", "head page");
    wait_stored(&dir.path().join("cache/h"), b"head page");
    let before = probe(&host);
    let r = host.request("HEAD", "/h", &[], b"");
    assert_eq!((r.status, x_cache(&r)), (200, "HIT"));
    assert_eq!(r.header("content-length"), Some("9"));
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert!(r.body.is_empty());
    assert_eq!(calls_between(before, probe(&host)), 0);
    // HEAD (answered from the file) and GET (from the copy in memory after the
    // first hit) carry the same headers.
    let without_date = |r: &Reply| {
        let mut h: Vec<_> = r
            .headers
            .iter()
            .filter(|(n, _)| n != "date")
            .cloned()
            .collect();
        h.sort();
        h
    };
    for _ in 0..2 {
        let get = host.request("GET", "/h", &[], b"");
        assert_eq!(get.text(), "head page");
        assert_eq!(without_date(&get), without_date(&r));
    }
}

#[test]
fn other_methods_query_strings_and_authorization_bypass_the_cache() {
    let (host, dir) = Host::start(&echo_cache(""));
    let cache = dir.path().join("cache");
    page(&host, "/c", "cached");
    wait_stored(&cache.join("c"), b"cached");

    // Never answered from the cache: the app sees them all.
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = host.request(method, "/c", &[], b"data");
        assert_eq!((r.status, x_cache(&r)), (200, "BYPASS"), "{method}");
        assert_eq!(r.json()["method"], method);
    }
    let r = get(&host, "/c?x=1", &[]);
    assert_eq!(x_cache(&r), "BYPASS");
    assert_eq!(r.json()["query_string"], "x=1");
    let r = get(&host, "/c", &[("Authorization", "Basic dTpw")]);
    assert_eq!(x_cache(&r), "BYPASS");
    assert_eq!(r.json()["headers"]["authorization"], "Basic dTpw");
    // An empty query string counts as none, as in the original.
    let r = get(&host, "/c?", &[]);
    assert_eq!((x_cache(&r), r.text().as_str()), ("HIT", "cached"));

    // And never stored.
    let before = snapshot(&cache);
    host.request("POST", "/post", &[("X-Echo-Body", "p")], b"");
    host.request("PUT", "/put/", &[("X-Echo-Body", "p")], b"");
    page(&host, "/query?a=b", "q");
    get(
        &host,
        "/auth",
        &[("X-Echo-Body", "secret"), ("Authorization", "Bearer t")],
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(snapshot(&cache), before);
}

#[test]
fn cache_paths_match_the_apps_paths_and_pages_are_keyed_on_the_whole_path() {
    let (host, dir) = Host::start(&format!(
        "{}cache_paths = /licenses, /docs/\n[server:main]\nurl_prefix = /site\n",
        echo_cache("")
    ));
    let cache = dir.path().join("cache");
    // `cache_paths` are the app's paths (PATH_INFO, below SCRIPT_NAME = /site);
    // the file is at the whole path, as a front end serving the tree sees it.
    page(&host, "/site/licenses/by/4.0", "l4");
    page(&host, "/site/docs/", "d");
    page(&host, "/site/licenses/", "li");
    wait_stored(&cache.join("site/licenses/by/4.0"), b"l4");
    wait_stored(&cache.join("site/docs/__index.html"), b"d");
    wait_stored(&cache.join("site/licenses/__index.html"), b"li");
    // `/licenses` is in scope too, but a directory is in the way: served, not stored.
    let r = page(&host, "/site/licenses", "l");
    assert_eq!(
        (r.status, x_cache(&r), r.text().as_str()),
        (200, "MISS", "l")
    );

    let before = snapshot(&cache);
    for path in ["/site/licenses-old", "/site/other", "/site/docs", "/site/"] {
        let r = page(&host, path, "x");
        assert_eq!((r.status, x_cache(&r)), (200, "BYPASS"), "{path}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(snapshot(&cache), before);
    assert_eq!(x_cache(&page(&host, "/site/licenses/by/4.0", "x")), "HIT");
}

#[test]
fn responses_that_are_not_shareable_are_not_stored() {
    let (host, dir) = Host::start(&echo_cache(""));
    let cache = dir.path().join("cache");
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("/s404", &[("X-Echo-Status", "404")]),
        ("/s201", &[("X-Echo-Status", "201")]),
        ("/s500", &[("X-Echo-Status", "500")]),
        ("/cookie", &[("X-Echo-Header", "Set-Cookie: session=1")]),
        ("/cookie-lc", &[("X-Echo-Header", "set-cookie: a=b")]),
        ("/gzip", &[("X-Echo-Header", "Content-Encoding: gzip")]),
        ("/vary-star", &[("X-Echo-Header", "Vary: *")]),
        (
            "/vary-cookie",
            &[
                ("X-Echo-Header", "Vary: Accept-Encoding"),
                ("X-Echo-Header", "vary: accept-language, COOKIE"),
            ],
        ),
        ("/no-cache", &[("X-Echo-Header", "Cache-Control: no-cache")]),
        (
            "/no-cache-mr",
            &[("X-Echo-Header", "Cache-Control: No-Cache, must-revalidate")],
        ),
        (
            "/no-store",
            &[("X-Echo-Header", "cache-control: max-age=60, NO-STORE")],
        ),
        (
            "/private",
            &[("X-Echo-Header", "Cache-Control: private=\"x\"")],
        ),
        (
            "/private-2nd-line",
            &[
                ("X-Echo-Header", "Cache-Control: public"),
                ("X-Echo-Header", "Cache-Control: Private"),
            ],
        ),
        (
            "/failing",
            &[("X-Echo-Bytes", "100000"), ("X-Echo-Fail-After", "5")],
        ),
    ];
    for (path, headers) in cases {
        let r = host.request("GET", path, headers, b"");
        assert_eq!(x_cache(&r), "MISS", "{path}");
    }
    // An empty body is not stored either (and neither is a body cut short).
    let r = get(&host, "/empty", &[("X-Echo-Body", "")]);
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert!(request(
        host.port,
        "GET",
        "/cut",
        &[("X-Echo-Bytes", "1000000"), ("X-Echo-Fail-After", "300000")],
        b""
    )
    .is_err());
    // A storable control, so the wait below is not vacuous.
    page(&host, "/ok", "ok");
    wait_stored(&cache.join("ok"), b"ok");
    wait_until("temporary files to go", || temp_files(&cache).is_empty());
    let names: Vec<_> = snapshot(&cache).into_keys().collect();
    assert_eq!(
        names,
        vec![PathBuf::from(".plughost-cache"), PathBuf::from("ok")]
    );
    for (path, headers) in cases {
        let r = host.request("GET", path, headers, b"");
        assert_eq!(x_cache(&r), "MISS", "{path} again");
    }
}

#[test]
fn unsafe_paths_reach_the_app_and_touch_nothing() {
    let dir = tempdir();
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(dir.path().join("canary.txt"), "CANARY-OUTSIDE").unwrap();
    std::fs::write(site.join("canary.txt"), "CANARY-SITE").unwrap();
    let cache = site.join("cache");
    std::fs::create_dir(&cache).unwrap();
    // The cache's own tree (its marker), with files planted in it.
    std::fs::write(cache.join(".plughost-cache"), "").unwrap();
    // Files a naive mapping would serve.
    std::fs::write(cache.join(".hidden"), "CANARY-HIDDEN").unwrap();
    std::fs::write(cache.join("__index.html"), "CANARY-INDEX").unwrap();
    std::fs::create_dir(cache.join("d")).unwrap();
    std::fs::write(cache.join("d/__index.html"), "CANARY-DINDEX").unwrap();
    std::fs::write(cache.join("a b"), "plain").unwrap();
    let host = Host::start_in(&site, &echo_cache(""));
    let before = snapshot(dir.path());

    let long = format!("/{}", "s".repeat(256));
    let deep = "/d".repeat(33);
    let too_long = format!("/{}", "abcdefgh/".repeat(114));
    let paths = [
        "/../canary.txt",
        "/../../canary.txt",
        "/x/../../canary.txt",
        "/%2e%2e/canary.txt",
        "/%2E%2E/%2e%2e/canary.txt",
        "/%2e%2e%2fcanary.txt",
        "/x%2F..%2F..%2Fcanary.txt",
        "/a%2Fb",
        "/./canary.txt",
        "/%2e/canary.txt",
        "/x/.",
        "/a%5Cb",
        "/..%5Ccanary.txt",
        "/a%00b",
        "/%00",
        "/a%01b",
        "/a%0d%0ab",
        "/a%7fb",
        "/.hidden",
        "/%2ehidden",
        "/x/.plughost-tmp-1-1",
        "//canary.txt",
        "//",
        "/a//b",
        "/x//",
        long.as_str(),
        deep.as_str(),
        too_long.as_str(),
        "/a%ffb",
        "/%c3%28",
        "/__index.html",
        "/d/__index.html",
        "/__index.html/x",
    ];
    for path in paths {
        let r = get(&host, path, &[("X-Echo-Body", "FROM-APP")]);
        assert_eq!(
            (r.status, x_cache(&r), r.text().as_str()),
            (200, "BYPASS", "FROM-APP"),
            "{path}"
        );
    }
    // A raw backslash: refused by the HTTP parser or passed to the app, never mapped.
    let r = get(&host, "/..\\canary.txt", &[("X-Echo-Body", "FROM-APP")]);
    assert!(!r.text().contains("CANARY"), "{r:?}");
    assert_ne!(x_cache(&r), "HIT");
    // Nothing was created, changed or removed anywhere.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(snapshot(dir.path()), before);
    // The cache itself still works beside them.
    page(&host, "/a%20b", "x");
    assert_eq!(x_cache(&page(&host, "/a%20b", "x")), "HIT");
    assert_eq!(page(&host, "/d/", "x").text(), "CANARY-DINDEX");
}

#[test]
fn symlinks_inside_cache_dir_are_never_followed() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::write(cache.join(".plughost-cache"), "").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "CANARY-SECRET").unwrap();
    std::fs::create_dir(dir.path().join("outdir")).unwrap();
    std::fs::write(dir.path().join("outdir/page"), "CANARY-OUTDIR").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), cache.join("link")).unwrap();
    std::os::unix::fs::symlink("../outdir", cache.join("ldir")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", cache.join("__index.html")).unwrap();
    let host = Host::start_in(dir.path(), &echo_cache(""));
    let before = snapshot(dir.path());

    for path in ["/link", "/ldir/page", "/ldir/new", "/ldir/", "/"] {
        for _ in 0..2 {
            let r = page(&host, path, "FROM-APP");
            assert_eq!((r.status, r.text().as_str()), (200, "FROM-APP"), "{path}");
            assert_eq!(x_cache(&r), "MISS", "{path}");
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    // The links are still links, and nothing appeared behind them.
    assert_eq!(snapshot(dir.path()), before);
    assert!(
        host.wait_log("store_error.symlink", Duration::from_secs(5)),
        "{}",
        host.log()
    );
}

#[test]
fn file_directory_collisions_serve_from_the_app_and_warn_once() {
    let (host, dir) = Host::start(&echo_cache(""));
    let cache = dir.path().join("cache");
    page(&host, "/a", "file a");
    wait_stored(&cache.join("a"), b"file a");
    page(&host, "/c/d", "file c/d");
    wait_stored(&cache.join("c/d"), b"file c/d");

    let before = probe(&host);
    for _ in 0..3 {
        for path in ["/a/b", "/a/", "/c", "/c/d/e"] {
            let r = page(&host, path, "FROM-APP");
            assert_eq!((r.status, r.text().as_str()), (200, "FROM-APP"), "{path}");
            assert_eq!(x_cache(&r), "MISS", "{path}");
        }
    }
    assert_eq!(calls_between(before, probe(&host)), 12);
    std::thread::sleep(Duration::from_millis(300));
    let names: Vec<_> = snapshot(&cache).into_keys().collect();
    let expected: Vec<PathBuf> = [".plughost-cache", "a", "c", "c/d"]
        .iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(names, expected);
    assert!(
        host.wait_log("store_error.collision", Duration::from_secs(10)),
        "{}",
        host.log()
    );
    let warnings = host
        .log()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("store_error.collision"))
        .count();
    assert_eq!(warnings, 1, "one warning per reason:\n{}", host.log());
}

/// 64-bit FNV-1a.
fn fnv1a(hash: &mut u64, data: &[u8]) {
    for &b in data {
        *hash ^= u64::from(b);
        *hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
}

const PATTERN: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789\n";

/// FNV-1a of the first `len` bytes of the echo pattern.
fn pattern_hash(len: u64) -> u64 {
    let block: Vec<u8> = PATTERN
        .iter()
        .cycle()
        .take(PATTERN.len() * 1771)
        .copied()
        .collect();
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut left = len as usize;
    while left > 0 {
        let n = left.min(block.len());
        fnv1a(&mut hash, &block[..n]);
        left -= n;
    }
    hash
}

/// GET `path` and hash the body as it arrives (without keeping it).
fn hashed_get(port: u16, path: &str, headers: &[(&str, &str)]) -> (Reply, u64, u64) {
    let mut s = connect(port).unwrap();
    write_request(&mut s, "GET", path, headers, None, true).unwrap();
    let mut received = 0u64;
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let reply = read_response_with(&mut BufReader::new(s), false, &mut |piece: &[u8], _| {
        fnv1a(&mut hash, piece);
        received += piece.len() as u64;
    })
    .unwrap();
    (reply, received, hash)
}

#[test]
fn a_hundred_mebibyte_miss_streams_whole_and_is_stored_with_bounded_memory() {
    const SIZE: u64 = 100 * 1024 * 1024;
    const MAX_GROWTH_KIB: u64 = 32 * 1024;
    let (host, dir) = Host::start(&echo_cache("max_entry_bytes = 128MiB\n"));
    let file = dir.path().join("cache/big");
    page(&host, "/warm", "w");
    let baseline = host.memory_kib("VmRSS");

    let (reply, received, hash) =
        hashed_get(host.port, "/big", &[("X-Echo-Bytes", &SIZE.to_string())]);
    assert_eq!((reply.status, x_cache(&reply)), (200, "MISS"));
    assert_eq!(received, SIZE);
    let expected = pattern_hash(SIZE);
    assert_eq!(hash, expected, "the client got the app's bytes");

    wait_until("the 100 MiB entry", || {
        std::fs::metadata(&file).is_ok_and(|m| m.len() == SIZE)
    });
    let mut stored = 0xcbf2_9ce4_8422_2325u64;
    let mut f = std::fs::File::open(&file).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        fnv1a(&mut stored, &buf[..n]);
    }
    assert_eq!(stored, expected, "the stored file is byte-identical");
    assert!(temp_files(&dir.path().join("cache")).is_empty());
    let after_miss = host.memory_kib("VmHWM");
    assert!(
        after_miss < baseline + MAX_GROWTH_KIB,
        "host memory grew from {baseline} KiB to a peak of {after_miss} KiB during the miss"
    );

    // The hit streams from the file, too.
    let (reply, received, hash) = hashed_get(host.port, "/big", &[]);
    assert_eq!((reply.status, x_cache(&reply)), (200, "HIT"));
    assert_eq!(
        reply.header("content-length"),
        Some(SIZE.to_string().as_str())
    );
    assert_eq!((received, hash), (SIZE, expected));

    let peak = host.memory_kib("VmHWM");
    eprintln!("host RSS: baseline {baseline} KiB, peak {peak} KiB after a 100 MiB miss and hit");
    assert!(
        peak < baseline + MAX_GROWTH_KIB,
        "host memory grew from {baseline} KiB to a peak of {peak} KiB during the hit"
    );
}

#[test]
fn over_max_entry_bytes_is_served_whole_and_not_stored() {
    let (host, dir) = Host::start(&echo_cache("max_entry_bytes = 100000\n"));
    let cache = dir.path().join("cache");
    let (reply, received, hash) = hashed_get(host.port, "/large", &[("X-Echo-Bytes", "1000000")]);
    assert_eq!(
        (reply.status, received, hash),
        (200, 1_000_000, pattern_hash(1_000_000))
    );
    // At the limit it is stored.
    let r = get(&host, "/fits", &[("X-Echo-Bytes", "100000")]);
    assert_eq!(r.body.len(), 100_000);
    wait_until("/fits", || cache.join("fits").exists());
    wait_until("temporary files to go", || temp_files(&cache).is_empty());
    assert!(!cache.join("large").exists());
}

#[test]
fn a_client_hanging_up_halfway_does_not_stop_the_store() {
    let (host, dir) = Host::start(&echo_cache(""));
    let cache = dir.path().join("cache");
    let mut s = connect(host.port).unwrap();
    write_request(
        &mut s,
        "GET",
        "/half",
        &[("X-Echo-Bytes", "40000000")],
        None,
        true,
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
    }
    let mut got = vec![0u8; 1 << 20];
    r.read_exact(&mut got).unwrap();
    // The store is under way...
    wait_until("the temporary file", || !temp_files(&cache).is_empty());
    // ...and the client leaves: the store goes on at the app's pace and the
    // whole page is put in place, with no temporary file left.
    drop(r);
    wait_until("/half to be stored whole", || {
        std::fs::metadata(cache.join("half")).is_ok_and(|m| m.len() == 40_000_000)
    });
    wait_until("the temporary file to be gone", || {
        temp_files(&cache).is_empty()
    });
    let (reply, received, hash) = hashed_get(host.port, "/half", &[]);
    assert_eq!((reply.status, received), (200, 40_000_000));
    assert_eq!(reply.header("x-cache"), Some("HIT"));
    assert_eq!(hash, pattern_hash(40_000_000));
}

#[test]
fn concurrent_cold_misses_call_the_app_once() {
    let (host, dir) = Host::start(&echo_cache("lock_timeout = 120\n"));
    let port = host.port;
    let before = probe(&host);
    let handles: Vec<_> = (0..200)
        .map(|_| {
            std::thread::spawn(move || {
                // The report (different for every call) sent as a page.
                let headers = [
                    ("X-Echo-Sleep-Ms", "1500"),
                    ("X-Echo-Header", "Content-Type: text/html"),
                ];
                request(port, "GET", "/hot", &headers, b"").unwrap()
            })
        })
        .collect();
    let replies: Vec<Reply> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        calls_between(before, probe(&host)),
        1,
        "the app was called once"
    );
    let first = &replies[0].body;
    for r in &replies {
        assert_eq!(r.status, 200);
        assert_eq!(&r.body, first, "everyone got the one stored page");
    }
    let misses = replies.iter().filter(|r| x_cache(r) == "MISS").count();
    assert_eq!(misses, 1);
    assert_eq!(std::fs::read(dir.path().join("cache/hot")).unwrap(), *first);
}

#[test]
fn concurrent_misses_for_a_personal_response_each_call_the_app() {
    let (host, dir) = Host::start(&echo_cache("lock_timeout = 120\n"));
    let port = host.port;
    let before = probe(&host);
    let handles: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || {
                request(
                    port,
                    "GET",
                    "/me",
                    &[
                        ("X-Echo-Sleep-Ms", "300"),
                        ("X-Echo-Header", "Set-Cookie: session=personal"),
                    ],
                    b"",
                )
                .unwrap()
            })
        })
        .collect();
    let mut counters: Vec<u64> = handles
        .into_iter()
        .map(|h| {
            let r = h.join().unwrap();
            assert_eq!((r.status, x_cache(&r)), (200, "MISS"));
            r.json()["counter"].as_u64().unwrap()
        })
        .collect();
    counters.sort();
    counters.dedup();
    assert_eq!(counters.len(), 20, "each client got its own response");
    assert_eq!(calls_between(before, probe(&host)), 20);
    assert!(!dir.path().join("cache/me").exists());
}

/// A tmpfs mounted for the test, unmounted on drop (even when the test fails).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_still_serves_every_request() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&cache)
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            skip_unless_ci(&format!(
                "cannot mount a 64 KiB tmpfs to fill ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return;
        }
        Err(e) => {
            skip_unless_ci(&format!("cannot run mount ({e})"));
            return;
        }
    }
    let _mount = Mount(cache.clone());
    let host = Host::start_in(dir.path(), &echo_cache(""));
    for i in 0..3 {
        let (reply, received, hash) = hashed_get(host.port, "/big", &[("X-Echo-Bytes", "1000000")]);
        assert_eq!((reply.status, x_cache(&reply)), (200, "MISS"), "round {i}");
        assert_eq!((received, hash), (1_000_000, pattern_hash(1_000_000)));
        wait_until("the temporary file to be removed", || {
            temp_files(&cache).is_empty()
        });
    }
    assert!(!cache.join("big").exists());
    // Still a working cache for what fits.
    page(&host, "/small", "fits");
    wait_stored(&cache.join("small"), b"fits");
    assert_eq!(x_cache(&page(&host, "/small", "x")), "HIT");
    assert!(
        host.wait_log("store_error.disk_full", Duration::from_secs(10)),
        "{}",
        host.log()
    );
    let warnings = host
        .log()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("store_error.disk_full"))
        .count();
    assert_eq!(warnings, 1, "{}", host.log());
    drop(host);
}

#[test]
fn temporary_files_left_by_a_crash_are_swept_at_start() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(cache.join("a/b")).unwrap();
    std::fs::write(cache.join(".plughost-cache"), "").unwrap();
    std::fs::write(cache.join(".plughost-tmp-123-4"), "partial").unwrap();
    std::fs::write(cache.join("a/b/.plughost-tmp-9-9"), "partial").unwrap();
    std::fs::write(cache.join("a/keep"), "page").unwrap();
    std::fs::write(cache.join(".other-dotfile"), "kept").unwrap();
    let host = Host::start_in(dir.path(), &echo_cache(""));
    let names: Vec<_> = snapshot(&cache).into_keys().collect();
    let expected: Vec<PathBuf> = [".other-dotfile", ".plughost-cache", "a", "a/b", "a/keep"]
        .iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(names, expected);
    assert!(
        host.wait_log("removed 2 temporary files", Duration::from_secs(5)),
        "{}",
        host.log()
    );
    assert_eq!(page(&host, "/a/keep", "x").text(), "page");
}

#[test]
fn configuration_errors_name_the_key() {
    let dir = tempdir();
    let cases = [
        (
            "cache_paths = /ok, foo\n",
            "cache_paths: `foo` must start with `/`",
        ),
        ("directory_index = ../x\n", "directory_index:"),
        ("max_entry_bytes = lots\n", "max_entry_bytes:"),
        ("lock_timeout = -1\n", "lock_timeout:"),
        ("fsync = maybe\n", "fsync:"),
        ("memory_cache_bytes = -1\n", "memory_cache_bytes:"),
        ("cache_dirr = x\n", "unknown key `cache_dirr`"),
    ];
    for (extra, expected) in cases {
        let err = Host::try_start_in(dir.path(), &echo_cache(extra), &[])
            .err()
            .unwrap_or_else(|| panic!("{extra} started"));
        assert!(err.contains(expected), "{extra}: {err}");
        assert!(err.contains("[filter:cache]"), "{err}");
    }
    let err = Host::try_start_in(
        dir.path(),
        "[app:main]\nuse = egg:echo\nfilter-with = c\n[filter:c]\nuse = egg:plughost#cache\n\
         cache_dir = c\nstatus_header = Bad Header\n",
        &[],
    )
    .err()
    .expect("a bad header name is refused");
    assert!(err.contains("status_header: `Bad Header`"), "{err}");
    let err = Host::try_start_in(
        dir.path(),
        "[app:main]\nuse = egg:echo\nfilter-with = c\n[filter:c]\nuse = egg:wsgi_cache#middleware\n",
        &[],
    )
    .err()
    .expect("cache_dir is required");
    assert!(err.contains("cache_dir: required"), "{err}");
    // A cache_dir holding the configuration would let requests read it.
    let err = Host::try_start_in(
        dir.path(),
        "[app:main]\nuse = egg:echo\nfilter-with = c\n[filter:c]\nuse = egg:wsgi_cache#middleware\ncache_dir = .\n",
        &[],
    )
    .err()
    .expect("cache_dir = . is refused");
    assert!(err.contains("contains the configuration file"), "{err}");
}

/// `plughost_sendfile_bytes_total` from the metrics app.
fn sendfile_bytes(host: &Host) -> u64 {
    let text = host.get("/_metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix("plughost_sendfile_bytes_total "))
        .expect("the sendfile counter is exported")
        .parse()
        .unwrap()
}

#[test]
fn large_hits_from_memory_go_out_with_sendfile_byte_for_byte() {
    let (host, dir) = Host::start(
        "[composite:main]\nuse = egg:plughost#urlmap\n/ = site\n/_metrics = metrics\n\n\
         [app:site]\nuse = egg:echo\nfilter-with = cache\n\n[app:metrics]\nuse = egg:plughost#metrics\n\n\
         [filter:cache]\nuse = egg:plughost#cache\ncache_dir = cache\nstatus_header = X-Cache\n",
    );
    let file = dir.path().join("cache/big");
    let miss = get(&host, "/big", &[("X-Echo-Bytes", "300000")]);
    assert_eq!((x_cache(&miss), miss.body.len()), ("MISS", 300_000));
    wait_stored(&file, &miss.body);
    // The first hit reads the file into memory; later ones are sent from it.
    assert_eq!(x_cache(&get(&host, "/big", &[])), "HIT");
    let before = sendfile_bytes(&host);
    for _ in 0..3 {
        let r = get(&host, "/big", &[]);
        assert_eq!(x_cache(&r), "HIT");
        assert!(
            r.body == miss.body,
            "a sendfile hit differs from the stored page"
        );
    }
    assert_eq!(sendfile_bytes(&host) - before, 3 * 300_000);

    // Rewritten in place, same length: the new bytes, never a mix.
    std::thread::sleep(Duration::from_millis(100));
    let edited: Vec<u8> = miss.body.iter().map(|b| b.to_ascii_uppercase()).collect();
    std::fs::write(&file, &edited).unwrap();
    for _ in 0..2 {
        assert!(get(&host, "/big", &[]).body == edited);
    }
    // HEAD and ranges never offer a body.
    let before = sendfile_bytes(&host);
    assert_eq!(host.request("HEAD", "/big", &[], b"").status, 200);
    let r = get(&host, "/big", &[("Range", "bytes=0-99999")]);
    assert_eq!((r.status, r.body.len()), (206, 100_000));
    assert_eq!(sendfile_bytes(&host), before);
}
