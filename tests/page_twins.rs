//! Compressed twins (`compress = gzip br`) against the real binary: twins
//! decoded byte-identical to their page, Accept-Encoding negotiation
//! (q-values, `identity;q=0`), never a twin without its page or for another
//! version of it, and purge and eviction taking page and twins together.

mod support;

use std::io::Read;
use std::time::Duration;

use support::page_tree::wait_for_file;
use support::*;

const ECHO: &str = "[app:main]\nuse = egg:echo\nfilter-with = cache\n\n\
                    [filter:cache]\nuse = egg:plughost#cache\ncache_dir = cache\nstatus_header = X-Cache\n";

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn unbrotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(b, 4096)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn get(host: &Host, path: &str, ae: Option<&str>) -> Reply {
    let mut h = vec![("X-Echo-Bytes", "5000")];
    if let Some(ae) = ae {
        h.push(("Accept-Encoding", ae));
    }
    host.request("GET", path, &h, b"")
}

#[test]
fn twins_decode_to_their_page_and_hits_negotiate_accept_encoding() {
    let dir = tempdir();
    let host = Host::start_in(dir.path(), &format!("{ECHO}compress = gzip br\n"));
    let cache = dir.path().join("cache");
    let miss = get(&host, "/page", Some("gzip"));
    assert_eq!(miss.header("x-cache"), Some("MISS"));
    assert_eq!(
        miss.header("content-encoding"),
        None,
        "a miss is the app's response"
    );
    assert_eq!(miss.header("vary"), Some("Accept-Encoding"));
    wait_for_file(&cache.join("page.gz"));
    wait_for_file(&cache.join("page.br"));
    let page = std::fs::read(cache.join("page")).unwrap();
    assert_eq!(page, miss.body);
    assert_eq!(gunzip(&std::fs::read(cache.join("page.gz")).unwrap()), page);
    assert_eq!(
        unbrotli(&std::fs::read(cache.join("page.br")).unwrap()),
        page
    );

    for round in 0..2 {
        // From the files, then from memory.
        for (ae, enc) in [
            (Some("gzip"), Some("gzip")),
            (Some("gzip, br"), Some("br")),
            (Some("br;q=0.5, gzip"), Some("gzip")),
            (Some("gzip;q=0, br;q=0"), None),
            (Some("deflate"), None),
            (None, None),
            (Some("identity;q=0, gzip"), Some("gzip")),
        ] {
            let r = get(&host, "/page", ae);
            let at = format!("round {round}, {ae:?}");
            assert_eq!((r.status, r.header("x-cache")), (200, Some("HIT")), "{at}");
            assert_eq!(r.header("content-encoding"), enc, "{at}");
            assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{at}");
            assert_eq!(r.header("content-type"), Some("text/html"), "{at}");
            let body = match enc {
                Some("gzip") => gunzip(&r.body),
                Some("br") => unbrotli(&r.body),
                _ => r.body.clone(),
            };
            assert_eq!(body, page, "{at}");
        }
        let refused = get(&host, "/page", Some("identity;q=0"));
        assert_eq!(
            refused.status, 406,
            "identity;q=0 and nothing else acceptable"
        );
        assert_eq!(refused.header("vary"), Some("Accept-Encoding"));
    }
    let head = host.request("HEAD", "/page", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(head.header("content-encoding"), Some("gzip"));
    let gz_len = std::fs::metadata(cache.join("page.gz"))
        .unwrap()
        .len()
        .to_string();
    assert_eq!(head.header("content-length"), Some(gz_len.as_str()));
    // A twin's name is never a page of its own.
    assert_eq!(
        get(&host, "/page.gz", None).header("x-cache"),
        Some("BYPASS")
    );

    // A twin is never served without its page...
    std::fs::remove_file(cache.join("page")).unwrap();
    let r = host.request(
        "GET",
        "/page",
        &[("Accept-Encoding", "gzip"), ("X-Echo-Body", "new page")],
        b"",
    );
    assert_eq!(
        (r.header("x-cache"), r.text().as_str()),
        (Some("MISS"), "new page")
    );
    // ...nor for another version of it (this one is too small for twins, and
    // the old twins went when it was stored).
    wait_for_file(&cache.join("page"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(!cache.join("page.gz").exists());
    let r = get(&host, "/page", Some("gzip"));
    assert_eq!(
        (r.header("content-encoding"), r.text().as_str()),
        (None, "new page")
    );
}

#[test]
fn purge_and_eviction_take_page_and_twins_together() {
    let dir = tempdir();
    let host = Host::start_in(
        dir.path(),
        &format!("{ECHO}compress = gzip\nmax_files = 2\n"),
    );
    let cache = dir.path().join("cache");
    for p in ["/a", "/b"] {
        get(&host, p, None);
        wait_for_file(&cache.join(format!("{}.gz", &p[1..])));
    }
    let out = cache_purge(dir.path(), &["/a"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!cache.join("a").exists() && !cache.join("a.gz").exists());
    assert!(cache.join("b.gz").exists());
    // Two more pages: /b is the least recently used, and goes with its twin.
    for p in ["/c", "/d"] {
        get(&host, p, None);
        wait_for_file(&cache.join(format!("{}.gz", &p[1..])));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(!cache.join("b").exists(), "evicted");
    assert!(!cache.join("b.gz").exists(), "its twin too");
    assert!(cache.join("d.gz").exists());
}

#[test]
fn compress_types_and_min_size_choose_which_pages_get_twins() {
    let dir = tempdir();
    let host = Host::start_in(
        dir.path(),
        &format!(
            "{ECHO}content_type = auto\ncompress = gzip\ncompress_types = text/css\ncompress_min_size = 1K\n"
        ),
    );
    let cache = dir.path().join("cache");
    let big = "x".repeat(2000);
    for (path, ct, body) in [
        ("/s.css", "text/css", big.as_str()),
        ("/t.css", "text/css", "small"),
        ("/h", "text/html", big.as_str()),
    ] {
        let header = format!("Content-Type: {ct}");
        host.request(
            "GET",
            path,
            &[("X-Echo-Body", body), ("X-Echo-Header", &header)],
            b"",
        );
        wait_for_file(&cache.join(&path[1..]));
    }
    wait_for_file(&cache.join("s.css.gz"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(!cache.join("t.css.gz").exists(), "under compress_min_size");
    assert!(!cache.join("h.gz").exists(), "not in compress_types");
    let r = host.request("GET", "/s.css", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("content-type"), Some("text/css"));
    assert_eq!(gunzip(&r.body), big.as_bytes());
}

#[test]
fn bad_compress_keys_name_their_line() {
    page_tree::refused_at(
        ECHO,
        "deploy.ini:9: [filter:cache]",
        &[
            (
                "compress = zstd",
                "compress: `zstd`: expected `gzip`, `br` or both",
            ),
            (
                "compress_types = text/css",
                "compress_types: only means something with `compress`",
            ),
        ],
    );
}

#[test]
fn a_twin_of_another_page_version_is_never_served() {
    let dir = tempdir();
    let host = Host::start_in(dir.path(), &format!("{ECHO}compress = gzip\n"));
    let cache = dir.path().join("cache");
    get(&host, "/p", None);
    wait_for_file(&cache.join("p.gz"));
    let page = std::fs::read(cache.join("p")).unwrap();
    // A twin whose mtime is not the page's (left by another version, or
    // written by hand): the page is served instead, from disk and from memory.
    let mut stale = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut stale, b"STALE").unwrap();
    let tmp = cache.join("p.gz.new");
    std::fs::write(&tmp, stale.finish().unwrap()).unwrap();
    std::fs::rename(&tmp, cache.join("p.gz")).unwrap();
    for _ in 0..2 {
        let r = get(&host, "/p", Some("gzip"));
        assert_eq!(r.header("x-cache"), Some("HIT"));
        assert_eq!((r.header("content-encoding"), &r.body), (None, &page));
    }
}
