//! The page tree's opt-in keys over real HTTP against the real binary:
//! `content_type = auto` (xattr, and the extension fallback), `layout = dirs`,
//! `host_dirs` / `host_port` / `hosts`, and `plughost cache purge` following them.

mod support;

use support::page_tree::{mime_xattr, request_host, start_with_env, wait_for_file};
use support::*;

const ECHO: &str = "[app:main]\nuse = egg:echo\nfilter-with = cache\n\n\
                    [filter:cache]\nuse = egg:plughost#cache\ncache_dir = cache\nstatus_header = X-Cache\n";

/// A page body of a chosen type from the echo app.
fn typed<'a>(body: &'a str, ct: &'a str) -> [(&'a str, &'a str); 2] {
    [("X-Echo-Body", body), ("X-Echo-Header", ct)]
}

#[test]
fn auto_content_type_is_kept_per_page_and_after_a_restart() {
    let dir = tempdir();
    let config = format!("{ECHO}content_type = auto\n");
    let host = Host::start_in(dir.path(), &config);
    let cache = dir.path().join("cache");
    let pages = [
        ("/api/items", "[1,2]", "application/json"),
        ("/style.css", "p{}", "text/css"),
        ("/page", "<p>hi</p>", "text/html; charset=utf-8"),
    ];
    for (path, body, ct) in pages {
        let header = format!("Content-Type: {ct}");
        let r = host.request("GET", path, &typed(body, &header), b"");
        assert_eq!((r.status, r.header("x-cache")), (200, Some("MISS")));
        let file = cache.join(&path[1..]);
        wait_for_file(&file);
        assert_eq!(mime_xattr(&file).as_deref(), Some(ct), "{path}");
    }
    let check = |host: &Host| {
        for (path, body, ct) in pages {
            // The app would answer something else now: a hit must come from the tree.
            let r = host.request("GET", path, &typed("app", "Content-Type: text/plain"), b"");
            assert_eq!(r.header("x-cache"), Some("HIT"), "{path}");
            assert_eq!(
                (r.text().as_str(), r.header("content-type")),
                (body, Some(ct))
            );
            let head = host.request("HEAD", path, &[], b"");
            assert_eq!(head.header("content-type"), Some(ct), "HEAD {path}");
        }
    };
    check(&host);
    check(&host); // from memory this time
    host.terminate();
    let host = Host::start_in(dir.path(), &config);
    check(&host);

    // A page written without the attribute (by hand, or before `auto`) is
    // typed by its extension.
    std::fs::write(cache.join("hand.json"), "{}").unwrap();
    let r = host.get("/hand.json");
    assert_eq!(
        (r.header("x-cache"), r.header("content-type")),
        (Some("HIT"), Some("application/json"))
    );
}

#[test]
fn auto_content_type_falls_back_to_extensions_without_xattrs() {
    let dir = tempdir();
    let config = format!("{ECHO}content_type = auto\n");
    let host = start_with_env(dir.path(), &config, &[("PLUGHOST_CACHE_NO_XATTR", "1")]);
    assert!(
        host.wait_log(
            "types each page by its file name's extension",
            std::time::Duration::from_secs(5)
        ),
        "{}",
        host.log()
    );
    let cache = dir.path().join("cache");
    // Its extension says its type: stored, no attribute, served as the extension says.
    let r = host.request(
        "GET",
        "/style.css",
        &typed("p{}", "Content-Type: text/css"),
        b"",
    );
    assert_eq!(r.header("x-cache"), Some("MISS"));
    wait_for_file(&cache.join("style.css"));
    assert_eq!(mime_xattr(&cache.join("style.css")), None);
    let r = host.get("/style.css");
    assert_eq!(
        (r.header("x-cache"), r.header("content-type")),
        (Some("HIT"), Some("text/css"))
    );
    // JSON at a path without an extension would come back as text/html: never stored.
    for _ in 0..2 {
        let r = host.request(
            "GET",
            "/api/items",
            &typed("[1]", "Content-Type: application/json"),
            b"",
        );
        assert_eq!(r.header("x-cache"), Some("MISS"));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!cache.join("api").exists());
}

#[test]
fn dirs_layout_keeps_a_page_beside_its_children() {
    let dir = tempdir();
    let config = format!("{ECHO}layout = dirs\ndirectory_index = index.html\n");
    let host = Host::start_in(dir.path(), &config);
    let cache = dir.path().join("cache");
    for (path, body) in [("/a", "page a"), ("/a/b", "page b"), ("/", "home")] {
        let r = host.request("GET", path, &[("X-Echo-Body", body)], b"");
        assert_eq!(r.header("x-cache"), Some("MISS"), "{path}");
    }
    for file in ["a/index.html", "a/b/index.html", "index.html"] {
        wait_for_file(&cache.join(file));
    }
    for (path, body) in [("/a", "page a"), ("/a/b", "page b"), ("/", "home")] {
        let r = host.request("GET", path, &[("X-Echo-Body", "app")], b"");
        assert_eq!(
            (r.header("x-cache"), r.text().as_str()),
            (Some("HIT"), body),
            "{path}"
        );
    }
    // `/a/` would be the same file as `/a`: it reaches the app, unstored.
    let r = host.request("GET", "/a/", &[("X-Echo-Body", "slash")], b"");
    assert_eq!(
        (r.header("x-cache"), r.text().as_str()),
        (Some("BYPASS"), "slash")
    );
    assert_eq!(
        std::fs::read_to_string(cache.join("a/index.html")).unwrap(),
        "page a"
    );

    // Purge follows the layout: the page goes, its children stay.
    let out = cache_purge(dir.path(), &["/a"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!cache.join("a/index.html").exists());
    assert!(cache.join("a/b/index.html").exists());
    assert_eq!(
        host.request("GET", "/a", &[("X-Echo-Body", "x")], b"")
            .header("x-cache"),
        Some("MISS")
    );
    wait_for_file(&cache.join("a/index.html"));
    let out = cache_purge(dir.path(), &["--prefix", "/a"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("purged 2 page(s)"),
        "{out:?}"
    );
    assert!(!cache.join("a").exists());
    assert!(cache.join("index.html").exists());
}

#[test]
fn host_dirs_keep_hosts_apart_and_store_only_listed_hosts() {
    let dir = tempdir();
    let config = format!("{ECHO}host_dirs = true\nhosts = a.example b.example\n");
    let host = Host::start_in(dir.path(), &config);
    let cache = dir.path().join("cache");
    let get =
        |h: &str, body: &str| request_host(host.port, "GET", "/p", h, &[("X-Echo-Body", body)]);
    assert_eq!(get("a.example", "A").header("x-cache"), Some("MISS"));
    assert_eq!(get("B.Example:8080", "B").header("x-cache"), Some("MISS"));
    wait_for_file(&cache.join("a.example/p"));
    wait_for_file(&cache.join("b.example:8080/p"));
    for (h, want) in [
        ("a.example", "A"),
        ("b.example:8080", "B"),
        ("B.EXAMPLE:8080", "B"),
    ] {
        let r = get(h, "app");
        assert_eq!(
            (r.header("x-cache"), r.text().as_str()),
            (Some("HIT"), want),
            "{h}"
        );
    }
    // Another port is another tree.
    assert_eq!(get("b.example", "B0").header("x-cache"), Some("MISS"));
    // An invented host reaches the app, and nothing is stored for it.
    for h in ["evil.example", "127.0.0.1"] {
        for _ in 0..2 {
            let r = get(h, "invented");
            assert_eq!(
                (r.header("x-cache"), r.text().as_str()),
                (Some("BYPASS"), "invented")
            );
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut trees: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    trees.sort();
    assert_eq!(trees, ["a.example", "b.example", "b.example:8080"]);

    // Purge one host's page by URL, then the path under every host.
    let out = cache_purge(dir.path(), &["http://a.example/p"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("purged 1 page(s)"),
        "{out:?}"
    );
    assert!(!cache.join("a.example/p").exists());
    assert!(cache.join("b.example/p").exists());
    let out = cache_purge(dir.path(), &["/p"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("purged 2 page(s)"),
        "{out:?}"
    );
    assert!(!cache.join("b.example:8080/p").exists());
}

#[test]
fn host_port_false_keeps_one_tree_per_name() {
    let dir = tempdir();
    let config = format!("{ECHO}host_dirs = true\nhost_port = false\n");
    let host = Host::start_in(dir.path(), &config);
    let cache = dir.path().join("cache");
    let r = request_host(
        host.port,
        "GET",
        "/p",
        "A.Example:8080",
        &[("X-Echo-Body", "A")],
    );
    assert_eq!(r.header("x-cache"), Some("MISS"));
    wait_for_file(&cache.join("a.example/p"));
    let r = request_host(
        host.port,
        "GET",
        "/p",
        "a.example:9",
        &[("X-Echo-Body", "x")],
    );
    assert_eq!((r.header("x-cache"), r.text().as_str()), (Some("HIT"), "A"));
    // Not a DNS name or IP literal: never a directory.
    let r = request_host(
        host.port,
        "GET",
        "/p",
        "a_b.example",
        &[("X-Echo-Body", "x")],
    );
    assert_eq!(r.header("x-cache"), Some("BYPASS"));
}

#[test]
fn bad_page_tree_keys_name_file_line_section_and_key() {
    page_tree::refused_at(
        ECHO,
        "deploy.ini:9: [filter:cache]",
        &[
            (
                "layout = tree",
                "layout: expected `paths` or `dirs`, found `tree`",
            ),
            ("host_dirs = maybe", "host_dirs: expected true or false"),
            (
                "host_port = false",
                "host_port: only means something with `host_dirs = true`",
            ),
            (
                "hosts = a.example:80",
                "hosts: `a.example:80`: list hosts without a port",
            ),
            (
                "hosts = a/b",
                "hosts: `a/b` is not a DNS name or IP literal",
            ),
        ],
    );
}

#[test]
fn check_says_when_types_come_from_extensions() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("deploy.ini"),
        format!("{ECHO}content_type = auto\n"),
    )
    .unwrap();
    let check = |env: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_plughost"))
            .arg("check")
            .arg(dir.path().join("deploy.ini"))
            .env("PLUGHOST_PLUGIN_PATH", plugins())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let fallback = "has no user extended attributes: content_type = auto types each page by its file name's extension";
    assert!(check(&[("PLUGHOST_CACHE_NO_XATTR", "1")]).contains(fallback));
    // This file system keeps xattrs (the test above reads them back): silent.
    assert!(!check(&[]).contains(fallback));
}
