//! Regression tests for the cache poisoning and leak defects found by outside
//! testing (issue 11): each test is named after what it prevents, and each
//! failed on the code before the fix.

mod support;

use std::io::{BufReader, Read};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// Echo behind the cache with the status header; `extra` adds filter keys.
fn echo_cache(extra: &str) -> String {
    format!(
        "[app:main]\nuse = egg:echo\nfilter-with = cache\n\n\
         [filter:cache]\nuse = egg:plughost#cache\ncache_dir = cache\nstatus_header = X-Cache\n{extra}"
    )
}

fn x_cache(r: &Reply) -> &str {
    r.header("x-cache").unwrap_or("")
}

/// The app's call counter (echo's `counter`, read without the cache).
fn probe(host: &Host) -> u64 {
    host.request("GET", "/__probe?x=1", &[], b"").json()["counter"]
        .as_u64()
        .unwrap()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every page under `dir` (relative paths, dot-named entries aside), sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            // The cache's own marker is not a page.
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The cache's counter for `event` from the metrics app at `/metrics`.
fn cache_counter(host: &Host, event: &str) -> u64 {
    let text = host.get("/metrics").text();
    let needle = format!("event=\"{event}\"}} ");
    text.lines()
        .find_map(|l| {
            l.split_once(&needle)
                .map(|(_, n)| n.trim().parse().unwrap())
        })
        .unwrap_or(0)
}

fn run_check(dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_plughost"))
        .current_dir(dir)
        .args(["check", "deploy.ini"])
        .env("PLUGHOST_PLUGIN_PATH", plugins())
        .output()
        .unwrap()
}

/// Two hello apps, mounted by an urlmap, each behind the same cache section,
/// answer `/about` differently.
const ONE_CACHE_BELOW_URLMAP: &str = "\
[composite:main]
use = egg:Paste#urlmap
/blog = blog
/wiki = wiki

[filter:cache]
use = egg:plughost#cache
cache_dir = cache
status_header = X-Cache

[app:blog]
use = egg:hello
greeting = the blog's page
filter-with = cache

[app:wiki]
use = egg:hello
greeting = the wiki's page
filter-with = cache
";

#[test]
fn urlmap_mounts_below_one_cache_never_share_pages() {
    let (host, dir) = Host::start(ONE_CACHE_BELOW_URLMAP);
    let blog = host.get("/blog/about");
    assert_eq!(
        (blog.status, blog.text().as_str()),
        (200, "the blog's page")
    );
    let cache = dir.path().join("cache");
    wait_until("the blog's page", || cache.join("blog/about").exists());
    // Keyed on PATH_INFO alone (`/about` in both mounts), this was the blog's
    // page from the file `about`.
    let wiki = host.get("/wiki/about");
    assert_eq!(
        (wiki.status, wiki.text().as_str(), x_cache(&wiki)),
        (200, "the wiki's page", "MISS")
    );
    wait_until("the wiki's page", || cache.join("wiki/about").exists());
    assert_eq!(files(&cache), ["blog/about", "wiki/about"]);
    let again = host.get("/wiki/about");
    assert_eq!(
        (again.text().as_str(), x_cache(&again)),
        ("the wiki's page", "HIT")
    );
    assert_eq!(host.get("/blog/about").text(), "the blog's page");
}

#[test]
fn a_domain_urlmap_below_a_host_blind_cache_is_refused() {
    let config = "\
[pipeline:main]
pipeline = cache sites

[filter:cache]
use = egg:plughost#cache
cache_dir = cache

[composite:sites]
use = egg:Paste#urlmap
domain a.example / = a
domain b.example / = b

[app:a]
use = egg:hello
greeting = site A

[app:b]
use = egg:hello
greeting = site B
";
    let dir = tempdir();
    std::fs::write(dir.path().join("deploy.ini"), config).unwrap();
    let out = run_check(dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "check accepted it: {err}");
    for part in [
        "[filter:cache]",
        "domain a.example",
        "[composite:sites]",
        "per host",
    ] {
        assert!(err.contains(part), "{part} missing from: {err}");
    }
    let served = Host::try_start_in(dir.path(), config, &[]);
    let log = served.err().expect("serve refuses it too");
    assert!(log.contains("per host"), "{log}");

    // Inside each domain's app, a cache is fine.
    let fixed = config
        .replace("pipeline = cache sites", "pipeline = sites")
        .replace(
            "greeting = site A",
            "greeting = site A\nfilter-with = cache",
        );
    std::fs::write(dir.path().join("deploy.ini"), &fixed).unwrap();
    let out = run_check(dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn two_caches_sharing_a_dir_must_map_the_same_way() {
    let config = |index_b: &str| {
        format!(
            "[composite:main]\nuse = egg:Paste#urlmap\n/a = a\n/b = b\n\n\
             [app:a]\nuse = egg:hello\nfilter-with = cache-a\n\n\
             [app:b]\nuse = egg:hello\nfilter-with = cache-b\n\n\
             [filter:cache-a]\nuse = egg:plughost#cache\ncache_dir = pages\n\n\
             [filter:cache-b]\nuse = egg:plughost#cache\ncache_dir = ./pages/\ndirectory_index = {index_b}\n"
        )
    };
    let dir = tempdir();
    std::fs::write(dir.path().join("deploy.ini"), config("index.html")).unwrap();
    let out = run_check(dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted: {err}");
    assert!(
        err.contains("[filter:cache-a]") && err.contains("[filter:cache-b]"),
        "{err}"
    );
    assert!(err.contains("directory_index"), "{err}");

    // The same mapping may share: both trees are keyed on the whole path.
    let (host, dir) = Host::start(&config("__index.html"));
    assert_eq!(host.get("/a/x").status, 200);
    assert_eq!(host.get("/b/x").status, 200);
    let pages = dir.path().join("pages");
    wait_until("both pages", || {
        pages.join("a/x").exists() && pages.join("b/x").exists()
    });
}

#[test]
fn a_json_response_is_never_stored_and_served_as_html() {
    let (host, dir) = Host::start(&format!(
        "{}\n[composite:main]\nuse = egg:Paste#urlmap\n/ = site\n/metrics = metrics\n\n\
         [app:site]\nuse = egg:echo\nfilter-with = cache\n\n[app:metrics]\nuse = egg:plughost#metrics\n",
        echo_cache("").replace("[app:main]\nuse = egg:echo\nfilter-with = cache\n", "")
    ));
    // The report reflects the request (here, a header) and is JSON.
    let hdr = [("X-Reflected", "<script>alert(1)</script>")];
    let first = host.request("GET", "/api/me", &hdr, b"");
    assert_eq!(first.header("content-type"), Some("application/json"));
    let second = host.request("GET", "/api/me", &[], b"");
    assert_eq!(
        (second.header("content-type"), x_cache(&second)),
        (Some("application/json"), "MISS")
    );
    assert!(!second.text().contains("<script>"));
    assert_eq!(files(&dir.path().join("cache")), Vec::<String>::new());
    assert_eq!(cache_counter(&host, "no_store.type_mismatch"), 2);
    // A page of the cache's own type is stored as before.
    host.request("GET", "/page", &[("X-Echo-Body", "<p>hi</p>")], b"");
    wait_until("the page", || dir.path().join("cache/page").exists());
}

#[test]
fn a_response_to_a_request_with_cookies_is_never_shared() {
    let (host, _dir) = Host::start(&echo_cache(""));
    let before = probe(&host);
    let personal = [
        ("X-Echo-Header", "Content-Type: text/html"),
        ("Cookie", "_ga=GA1.1; session=alice"),
    ];
    let r = host.request("GET", "/account", &personal, b"");
    assert_eq!((r.status, x_cache(&r)), (200, "BYPASS"));
    assert!(r.text().contains("alice"));
    // Bob, without a cookie, gets his own answer from the app, never Alice's.
    let bob = host.request(
        "GET",
        "/account",
        &[("X-Echo-Header", "Content-Type: text/html")],
        b"",
    );
    assert!(!bob.text().contains("alice"), "{}", bob.text());
    assert_eq!(x_cache(&bob), "MISS");
    assert_eq!(probe(&host) - before, 3, "Alice, Bob and the probe");
}

#[test]
fn cookies_that_ignore_cookies_lists_do_not_make_a_request_personal() {
    let (host, dir) = Host::start(&echo_cache("ignore_cookies = _ga* _gid\n"));
    let cache = dir.path().join("cache");
    let analytics = [
        ("X-Echo-Body", "<p>public</p>"),
        ("Cookie", "_ga=GA1.2; _gid=GA1.3; _ga_XYZ=4"),
    ];
    let r = host.request("GET", "/public", &analytics, b"");
    assert_eq!(x_cache(&r), "MISS");
    wait_until("/public", || cache.join("public").exists());
    assert_eq!(
        x_cache(&host.request("GET", "/public", &analytics, b"")),
        "HIT"
    );
}

#[test]
fn a_response_varying_on_request_fields_is_never_stored() {
    let (host, dir) = Host::start(&echo_cache(""));
    for (i, vary) in [
        "Accept-Language",
        "User-Agent",
        "Origin, Accept-Encoding",
        "Cookie",
    ]
    .iter()
    .enumerate()
    {
        let header = format!("Vary: {vary}");
        let path = format!("/v{i}");
        host.request(
            "GET",
            &path,
            &[("X-Echo-Body", "<p>x</p>"), ("X-Echo-Header", &header)],
            b"",
        );
    }
    host.request(
        "GET",
        "/gz",
        &[
            ("X-Echo-Body", "<p>x</p>"),
            ("X-Echo-Header", "Vary: Accept-Encoding"),
        ],
        b"",
    );
    let cache = dir.path().join("cache");
    wait_until("/gz", || cache.join("gz").exists());
    assert_eq!(files(&cache), ["gz"]);
}

#[test]
fn responses_that_forbid_reuse_are_never_stored() {
    let (host, dir) = Host::start(&echo_cache(""));
    let forbidding = [
        "Cache-Control: max-age=0",
        "Cache-Control: public, s-maxage=0",
        "Cache-Control: no-cache=\"Set-Cookie\"",
        "Cache-Control: No-Cache",
        "Expires: Thu, 01 Jan 1970 00:00:00 GMT",
        "Expires: 0",
        "Pragma: no-cache",
        "Surrogate-Control: no-store",
        "X-Accel-Expires: 0",
    ];
    for (i, header) in forbidding.iter().enumerate() {
        let r = host.request(
            "GET",
            &format!("/f{i}"),
            &[("X-Echo-Body", "<p>x</p>"), ("X-Echo-Header", header)],
            b"",
        );
        assert_eq!(r.status, 200, "{header}");
    }
    host.request(
        "GET",
        "/fresh",
        &[
            ("X-Echo-Body", "<p>x</p>"),
            ("X-Echo-Header", "Cache-Control: public, max-age=600"),
        ],
        b"",
    );
    let cache = dir.path().join("cache");
    wait_until("/fresh", || cache.join("fresh").exists());
    assert_eq!(files(&cache), ["fresh"]);
}

#[test]
fn a_double_encoded_dot_segment_is_never_stored_as_a_directory() {
    let (host, dir) = Host::start(&echo_cache(""));
    for target in ["/%252e%252e/x", "/a/%252E/x", "/a%252fb", "/a%255cb"] {
        let r = host.request("GET", target, &[("X-Echo-Body", "<p>x</p>")], b"");
        assert_eq!((r.status, x_cache(&r)), (200, "BYPASS"), "{target}");
    }
    host.request("GET", "/ok", &[("X-Echo-Body", "<p>x</p>")], b"");
    let cache = dir.path().join("cache");
    wait_until("/ok", || cache.join("ok").exists());
    assert_eq!(files(&cache), ["ok"]);
}

#[test]
fn a_streamed_response_over_64k_with_its_length_is_stored() {
    let (host, dir) = Host::start(&echo_cache(""));
    for len in [65_537u64, 200_000, 3_000_000] {
        let path = format!("/s{len}");
        let n = len.to_string();
        let length = format!("Content-Length: {len}");
        let r = host.request(
            "GET",
            &path,
            &[("X-Echo-Bytes", &n), ("X-Echo-Header", &length)],
            b"",
        );
        assert_eq!((r.status, r.body.len() as u64), (200, len));
        let file = dir.path().join("cache").join(&path[1..]);
        wait_until(&path, || {
            std::fs::metadata(&file).is_ok_and(|m| m.len() == len)
        });
        let hit = host.get(&path);
        assert_eq!(x_cache(&hit), "HIT");
        assert!(hit.body == r.body, "the hit is the page");
    }
}

#[test]
fn a_client_that_never_reads_does_not_hold_the_store_or_its_waiters() {
    let (host, dir) = Host::start(&echo_cache("lock_timeout = 120\n"));
    let before = probe(&host);
    const LEN: u64 = 32 * 1024 * 1024;
    // The first client asks for a big page and then reads nothing.
    let mut stalled = connect(host.port).unwrap();
    write_request(
        &mut stalled,
        "GET",
        "/big",
        &[("X-Echo-Bytes", &LEN.to_string())],
        None,
        true,
    )
    .unwrap();
    // The store goes on at the app's pace: the whole page is put in place...
    let file = dir.path().join("cache/big");
    wait_until(
        "the page to be stored while its client reads nothing",
        || std::fs::metadata(&file).is_ok_and(|m| m.len() == LEN),
    );
    // ...and a second client is served from it, without calling the app again.
    let mut s = connect(host.port).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write_request(&mut s, "GET", "/big", &[], None, true).unwrap();
    let mut r = BufReader::new(s);
    let reply = read_response(&mut r, false).unwrap();
    assert_eq!((reply.status, reply.body.len() as u64), (200, LEN));
    assert_eq!(x_cache(&reply), "HIT");
    assert_eq!(
        probe(&host) - before,
        2,
        "one call for /big, one for the probe"
    );
    // The stalled client still gets every byte once it reads.
    let mut head_and_body = Vec::new();
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    while (head_and_body.len() as u64) < LEN {
        let n = stalled.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {} bytes", head_and_body.len());
        head_and_body.extend_from_slice(&buf[..n]);
    }
}
