//! The built-in static file app (`egg:plughost#static` = `egg:Paste#static`)
//! end to end: the real binary serving a real directory over raw HTTP.

mod support;

use std::fs;
use std::io::BufReader;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use support::*;

/// Lives beside the document root; its content must never appear in a response.
const CANARY: &str = "CANARY-5f0c1e-never-serve-me";
/// A dotfile inside the root; also never served.
const HIDDEN: &str = "HIDDEN-9a7b2d-dotfile";
const HELLO: &str = "Hello, static world!\n";
/// hello.txt's modification time: 2001-09-09T01:46:40Z.
const MTIME: u64 = 1_000_000_000;
const MTIME_HTTP: &str = "Sun, 09 Sep 2001 01:46:40 GMT";

const CONFIG: &str = "[app:main]\nuse = egg:plughost#static\ndocument_root = %(here)s/site\n";

fn set_mtime(path: &Path, secs: u64) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// Deterministic, non-repeating-looking bytes.
fn pattern(n: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// `dir/canary.txt` and `dir/site/...` with files, directories, a dotfile and
/// symlinks in and out. Returns the document root.
fn make_site(dir: &Path) -> PathBuf {
    fs::write(dir.join("canary.txt"), CANARY).unwrap();
    let site = dir.join("site");
    for d in ["sub", "empty", ".git", "sub/deeper"] {
        fs::create_dir_all(site.join(d)).unwrap();
    }
    let files: &[(&str, &[u8])] = &[
        ("index.html", b"<h1>home</h1>\n"),
        ("hello.txt", HELLO.as_bytes()),
        ("style.css", b"body { color: red }\n"),
        ("app.js", b"console.log(1);\n"),
        ("data.json", b"{\"a\": 1}\n"),
        ("logo.png", b"\x89PNG\r\n\x1a\n0000"),
        ("README", b"no extension\n"),
        ("page two.html", b"<p>spaced</p>\n"),
        ("caf\u{e9}.txt", b"accented\n"),
        ("sub/index.html", b"<p>sub index</p>\n"),
        ("sub/deeper/x.txt", b"deep\n"),
        (".hidden", HIDDEN.as_bytes()),
        (".git/config", HIDDEN.as_bytes()),
    ];
    for (name, content) in files {
        fs::write(site.join(name), content).unwrap();
    }
    set_mtime(&site.join("hello.txt"), MTIME);
    symlink("hello.txt", site.join("link-in")).unwrap();
    symlink("sub", site.join("sub-link")).unwrap();
    symlink("../canary.txt", site.join("link-out")).unwrap();
    symlink(dir.join("canary.txt"), site.join("abs-out")).unwrap();
    symlink("..", site.join("dir-out")).unwrap();
    symlink("/etc", site.join("etc")).unwrap();
    site
}

fn start_site() -> (Host, tempfile::TempDir) {
    let dir = tempdir();
    make_site(dir.path());
    (Host::start_in(dir.path(), CONFIG), dir)
}

/// Nothing secret in a reply, head or body.
fn assert_no_secret(r: &Reply, what: &str) {
    let all = format!("{:?}{}", r.headers, r.text());
    assert!(
        !all.contains(CANARY) && !all.contains(HIDDEN),
        "{what} leaked a secret: {} {all}",
        r.status
    );
}

#[test]
fn serves_files_with_types_lengths_and_validators() {
    let (host, _d) = start_site();
    let r = host.get("/hello.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), HELLO);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(
        r.header("content-length"),
        Some(HELLO.len().to_string().as_str())
    );
    assert_eq!(r.header("last-modified"), Some(MTIME_HTTP));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.header("cache-control"), None);
    let etag = r.header("etag").unwrap();
    assert!(
        etag.starts_with(&format!("\"{:x}-", HELLO.len())) && etag.ends_with('"'),
        "{etag}"
    );
    // Stable across requests, different for another file.
    assert_eq!(host.get("/hello.txt").header("etag"), Some(etag));
    assert_ne!(host.get("/README").header("etag"), Some(etag));

    for (path, ty) in [
        ("/index.html", "text/html; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/data.json", "application/json; charset=utf-8"),
        ("/logo.png", "image/png"),
        ("/README", "application/octet-stream"),
        ("/page%20two.html", "text/html; charset=utf-8"),
        ("/caf%C3%A9.txt", "text/plain; charset=utf-8"),
        ("/link-in", "application/octet-stream"),
    ] {
        let r = host.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(ty), "{path}");
    }
    assert_eq!(host.get("/logo.png").body, b"\x89PNG\r\n\x1a\n0000");
    assert_eq!(host.get("/page%20two.html").text(), "<p>spaced</p>\n");
    assert_eq!(host.get("/caf%C3%A9.txt").text(), "accented\n");
    // A symlink inside the root is followed; empty segments collapse; the query is ignored.
    assert_eq!(host.get("/link-in").text(), HELLO);
    assert_eq!(host.get("/sub-link/deeper/x.txt").text(), "deep\n");
    assert_eq!(host.get("//sub///deeper/x.txt?v=3").text(), "deep\n");
    assert_eq!(host.get("/nope.txt").status, 404);
    assert_eq!(host.get("/sub/nope/x.txt").status, 404);
    assert_eq!(host.get("/hello.txt/x").status, 404);
}

#[test]
fn head_gets_the_headers_of_get_without_a_body() {
    let (host, _d) = start_site();
    let mut s = connect(host.port).unwrap();
    write_request(&mut s, "HEAD", "/hello.txt", &[], None, false).unwrap();
    write_request(
        &mut s,
        "HEAD",
        "/hello.txt",
        &[("Range", "bytes=0-1")],
        None,
        false,
    )
    .unwrap();
    write_request(&mut s, "GET", "/index.html", &[], None, true).unwrap();
    let mut r = BufReader::new(s);
    let head = read_response(&mut r, true).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(HELLO.len().to_string().as_str())
    );
    assert_eq!(
        head.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(head.header("last-modified"), Some(MTIME_HTTP));
    assert!(head.header("etag").is_some());
    // Range applies to GET only.
    let ranged = read_response(&mut r, true).unwrap();
    assert_eq!(ranged.status, 200);
    // The next response starts right after the heads: no body bytes were sent.
    let get = read_response(&mut r, false).unwrap();
    assert_eq!((get.status, get.text().as_str()), (200, "<h1>home</h1>\n"));
}

#[test]
fn methods_other_than_get_and_head_get_405() {
    let (host, _d) = start_site();
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        for path in ["/hello.txt", "/missing", "/sub/"] {
            let r = host.request(method, path, &[], b"x");
            assert_eq!(r.status, 405, "{method} {path}");
            assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method} {path}");
        }
    }
}

#[test]
fn directories_redirect_to_the_slash_form_then_serve_their_index() {
    let (host, _d) = start_site();
    let r = host.get("/sub");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/sub/"));
    let r = host.get("/sub?x=1&y=a%20b");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/sub/?x=1&y=a%20b"));
    assert_eq!(
        host.get("/sub/deeper").header("location"),
        Some("/sub/deeper/")
    );
    assert_eq!(host.get("//sub").header("location"), Some("/sub/"));

    let r = host.get("/sub/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "<p>sub index</p>\n");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(host.get("/").text(), "<h1>home</h1>\n");
    // No index, no listing.
    assert_eq!(host.get("/empty").status, 301);
    assert_eq!(host.get("/empty/").status, 404);
    assert_eq!(host.get("/sub/deeper/").status, 404);
    // A file with a trailing slash is not a directory.
    assert_eq!(host.get("/hello.txt/").status, 404);
}

#[test]
fn redirects_keep_script_name() {
    let dir = tempdir();
    make_site(dir.path());
    let config =
        format!("{CONFIG}\n[server:main]\nuse = egg:plughost#http\nurl_prefix = /static\n");
    let host = Host::start_in(dir.path(), &config);
    let r = host.get("/static/sub?q=1");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/static/sub/?q=1"));
    assert_eq!(host.get("/static").header("location"), Some("/static/"));
    assert_eq!(host.get("/static/").text(), "<h1>home</h1>\n");
    assert_eq!(host.get("/static/hello.txt").text(), HELLO);
}

#[test]
fn if_none_match_gives_304() {
    let (host, _d) = start_site();
    let etag = host.get("/hello.txt").header("etag").unwrap().to_owned();
    let weak = format!("W/{etag}");
    let list = format!("\"other\", {etag}");
    for inm in [etag.as_str(), weak.as_str(), list.as_str(), "*"] {
        for method in ["GET", "HEAD"] {
            let r = host.request(method, "/hello.txt", &[("If-None-Match", inm)], b"");
            assert_eq!(r.status, 304, "{method} If-None-Match: {inm}");
            assert_eq!(r.header("etag"), Some(etag.as_str()));
            assert_eq!(r.header("last-modified"), Some(MTIME_HTTP));
            assert!(r.body.is_empty());
        }
    }
    let r = host.request("GET", "/hello.txt", &[("If-None-Match", "\"other\"")], b"");
    assert_eq!((r.status, r.text().as_str()), (200, HELLO));
    // 304 really sends no body: the next response on the connection follows at once.
    let mut s = connect(host.port).unwrap();
    write_request(
        &mut s,
        "GET",
        "/hello.txt",
        &[("If-None-Match", &etag)],
        None,
        false,
    )
    .unwrap();
    write_request(&mut s, "GET", "/README", &[], None, true).unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(read_response(&mut r, false).unwrap().status, 304);
    assert_eq!(
        read_response(&mut r, false).unwrap().text(),
        "no extension\n"
    );
}

#[test]
fn if_modified_since_gives_304_unless_if_none_match_is_present() {
    let (host, _d) = start_site();
    let ims = |date: &str, extra: &[(&str, &str)]| {
        let mut h = vec![("If-Modified-Since", date)];
        h.extend_from_slice(extra);
        host.request("GET", "/hello.txt", &h, b"")
    };
    let r = ims(MTIME_HTTP, &[]);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("last-modified"), Some(MTIME_HTTP));
    assert!(r.header("etag").is_some());
    assert_eq!(ims("Mon, 01 Jan 2024 00:00:00 GMT", &[]).status, 304);
    let r = ims("Sun, 09 Sep 2001 01:46:39 GMT", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, HELLO));
    assert_eq!(ims("not a date", &[]).status, 200);
    // If-None-Match takes precedence over If-Modified-Since.
    assert_eq!(
        ims(MTIME_HTTP, &[("If-None-Match", "\"other\"")]).status,
        200
    );
}

#[test]
fn failed_preconditions_give_412() {
    let (host, _d) = start_site();
    let etag = host.get("/hello.txt").header("etag").unwrap().to_owned();
    let get = |h: &[(&str, &str)]| host.request("GET", "/hello.txt", h, b"").status;
    assert_eq!(get(&[("If-Match", "\"other\"")]), 412);
    assert_eq!(get(&[("If-Match", &etag)]), 200);
    assert_eq!(get(&[("If-Match", "*")]), 200);
    assert_eq!(
        get(&[("If-Unmodified-Since", "Sun, 09 Sep 2001 01:46:39 GMT")]),
        412
    );
    assert_eq!(get(&[("If-Unmodified-Since", MTIME_HTTP)]), 200);
}

#[test]
fn byte_ranges() {
    let (host, _d) = start_site();
    let len = HELLO.len();
    let range = |r: &str, extra: &[(&str, &str)]| {
        let mut h = vec![("Range", r)];
        h.extend_from_slice(extra);
        host.request("GET", "/hello.txt", &h, b"")
    };
    let r = range("bytes=0-4", &[]);
    assert_eq!(r.status, 206);
    assert_eq!(r.text(), "Hello");
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-4/{len}").as_str())
    );
    assert_eq!(r.header("content-length"), Some("5"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(r.header("etag").is_some());
    // Suffix and open-ended.
    let r = range("bytes=-7", &[]);
    assert_eq!((r.status, r.text().as_str()), (206, "world!\n"));
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {}-{}/{len}", len - 7, len - 1).as_str())
    );
    let r = range("bytes=7-", &[]);
    assert_eq!((r.status, r.text().as_str()), (206, &HELLO[7..]));
    // The end is clamped; a suffix longer than the file is the whole file.
    assert_eq!(range("bytes=14-1000", &[]).text(), &HELLO[14..]);
    assert_eq!(range("bytes=-1000", &[]).text(), HELLO);
    // Unsatisfiable.
    for unsat in [
        format!("bytes={len}-"),
        format!("bytes={}-{}", len + 5, len + 9),
        "bytes=-0".into(),
    ] {
        let r = range(&unsat, &[]);
        assert_eq!(r.status, 416, "{unsat}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{len}").as_str())
        );
    }
    // Several ranges, malformed headers and other units: the whole file.
    for whole in [
        "bytes=0-1,3-4",
        "bytes=5-2",
        "bytes=abc",
        "lines=1-2",
        "bytes 0-3",
    ] {
        let r = range(whole, &[]);
        assert_eq!((r.status, r.text().as_str()), (200, HELLO), "{whole}");
    }
    // If-Range: a matching strong tag or the exact date applies the range.
    let etag = host.get("/hello.txt").header("etag").unwrap().to_owned();
    assert_eq!(range("bytes=0-4", &[("If-Range", &etag)]).status, 206);
    assert_eq!(range("bytes=0-4", &[("If-Range", MTIME_HTTP)]).status, 206);
    for stale in [
        "\"other\"",
        &format!("W/{etag}"),
        "Mon, 01 Jan 2024 00:00:00 GMT",
    ] {
        let r = range("bytes=0-4", &[("If-Range", stale)]);
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, HELLO),
            "If-Range: {stale}"
        );
    }
    // A conditional GET that matches wins over Range.
    assert_eq!(range("bytes=0-4", &[("If-None-Match", &etag)]).status, 304);
}

#[test]
fn multi_mebibyte_files_stream_intact_and_ranges_of_them_too() {
    let dir = tempdir();
    let site = make_site(dir.path());
    let data = pattern(5 * 1024 * 1024 + 12345);
    fs::write(site.join("big.bin"), &data).unwrap();
    let host = Host::start_in(dir.path(), CONFIG);
    let r = host.get("/big.bin");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(data.len().to_string().as_str())
    );
    assert!(r.body == data, "the streamed body differs from the file");
    // A large range in the middle, and a small one.
    let (a, b) = (1_000_001usize, 3_500_000usize);
    let r = host.request(
        "GET",
        "/big.bin",
        &[("Range", &format!("bytes={a}-{b}"))],
        b"",
    );
    assert_eq!(r.status, 206);
    assert!(
        r.body == data[a..=b],
        "the streamed range differs from the file"
    );
    let r = host.request("GET", "/big.bin", &[("Range", "bytes=-100")], b"");
    assert_eq!(r.body, &data[data.len() - 100..]);
}

#[test]
fn large_files_are_not_read_whole_into_memory() {
    const SIZE: usize = 64 * 1024 * 1024;
    const MAX_GROWTH_KIB: u64 = 24 * 1024;
    let dir = tempdir();
    let site = make_site(dir.path());
    let chunk = pattern(1024 * 1024);
    {
        use std::io::Write;
        let mut f = fs::File::create(site.join("huge.bin")).unwrap();
        for _ in 0..SIZE / chunk.len() {
            f.write_all(&chunk).unwrap();
        }
    }
    let host = Host::start_in(dir.path(), CONFIG);
    assert_eq!(host.get("/hello.txt").status, 200);
    let baseline = host.memory_kib("VmRSS");
    let mut s = connect(host.port).unwrap();
    write_request(&mut s, "GET", "/huge.bin", &[], None, true).unwrap();
    let mut r = BufReader::new(s);
    let mut received = 0usize;
    let mut intact = true;
    let reply = read_response_with(&mut r, false, &mut |piece: &[u8], _body: &mut Vec<u8>| {
        for (i, &byte) in piece.iter().enumerate() {
            intact &= byte == chunk[(received + i) % chunk.len()];
        }
        received += piece.len();
    })
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(received, SIZE);
    assert!(intact, "the streamed body differs from the file");
    let peak = host.memory_kib("VmHWM");
    eprintln!("host RSS: baseline {baseline} KiB, peak {peak} KiB after {SIZE} bytes");
    assert!(
        peak < baseline + MAX_GROWTH_KIB,
        "host memory grew from {baseline} KiB to a peak of {peak} KiB serving {SIZE} bytes"
    );
}

#[test]
fn traversal_in_every_encoding_never_reads_outside_the_root() {
    let (host, dir) = start_site();
    // The canary is readable when it is inside the root: the check below can fail.
    let control = Host::start_in(
        dir.path(),
        "[app:main]\nuse = egg:plughost#static\ndocument_root = .\n",
    );
    let r = control.get("/canary.txt");
    assert_eq!((r.status, r.text().as_str()), (200, CANARY));
    drop(control);

    let attempts = [
        "/../canary.txt",
        "/sub/../../canary.txt",
        "/%2e%2e/canary.txt",
        "/%2E%2E/canary.txt",
        "/.%2e/canary.txt",
        "/sub/%2e%2e/%2e%2e/canary.txt",
        "/..%2Fcanary.txt",
        "/..%2fcanary.txt",
        "/a%2F..%2F..%2Fcanary.txt",
        "/sub%2F..%2F..%2Fcanary.txt",
        "/..%5Ccanary.txt",
        "/..%5ccanary.txt",
        "/sub%5C..%5C..%5Ccanary.txt",
        "/..\\canary.txt",
        "/%2e%2e%5ccanary.txt",
        "/canary.txt%00",
        "/hello.txt%00../../canary.txt",
        "/%00/../canary.txt",
        "/%ff/../canary.txt",
        "/%ff",
        "/%c0%ae%c0%ae/canary.txt",
        "/..",
        "/../",
        "/%2e%2e",
        "/%2e%2e%2f",
        "/./hello.txt",
        "/.hidden",
        "/%2ehidden",
        "/.git/config",
        "/sub/../.hidden",
        "/link-out",
        "/abs-out",
        "/dir-out/canary.txt",
        "/dir-out",
        "/dir-out/",
        "/etc/passwd",
        "/etc/",
        "/sub/%0a../canary.txt",
    ];
    for path in attempts {
        let r = host.request("GET", path, &[], b"");
        assert!(
            r.status == 404 || r.status == 400,
            "GET {path} gave {} {:?}",
            r.status,
            r.headers
        );
        assert_no_secret(&r, path);
    }
    // The same through an absolute-form request target and with HEAD and Range.
    let r = request(host.port, "GET", "http://localhost/../canary.txt", &[], b"").unwrap();
    assert_ne!(r.status, 200);
    assert_no_secret(&r, "absolute-form");
    let r = host.request("GET", "/link-out", &[("Range", "bytes=0-3")], b"");
    assert_eq!(r.status, 404);
    assert_no_secret(&r, "ranged symlink");
    // Still serving normally afterwards.
    assert_eq!(host.get("/hello.txt").text(), HELLO);
}

#[test]
fn a_fifo_in_the_root_is_refused_without_blocking() {
    let dir = tempdir();
    let site = make_site(dir.path());
    let ok = std::process::Command::new("mkfifo")
        .arg(site.join("pipe"))
        .status()
        .expect("mkfifo runs");
    assert!(ok.success());
    let host = Host::start_in(dir.path(), CONFIG);
    assert_eq!(host.get("/pipe").status, 404);
    assert_eq!(host.get("/hello.txt").text(), HELLO);
}

#[test]
fn paste_name_relative_root_and_options() {
    let dir = tempdir();
    make_site(dir.path());
    fs::write(dir.path().join("site/sub/home.htm"), "<p>home.htm</p>").unwrap();
    let host = Host::start_in(
        dir.path(),
        "[app:main]\nuse = egg:Paste#static\ndocument_root = site\ncache_max_age = 3600\n",
    );
    let r = host.get("/hello.txt");
    assert_eq!((r.status, r.text().as_str()), (200, HELLO));
    assert_eq!(r.header("cache-control"), Some("max-age=3600"));
    let etag = r.header("etag").unwrap().to_owned();
    let r = host.request("GET", "/hello.txt", &[("If-None-Match", &etag)], b"");
    assert_eq!(r.status, 304);
    assert_eq!(r.header("cache-control"), Some("max-age=3600"));
    let r = host.request("GET", "/hello.txt", &[("Range", "bytes=0-1")], b"");
    assert_eq!(r.header("cache-control"), Some("max-age=3600"));
    assert_eq!(host.get("/missing").header("cache-control"), None);
    drop(host);

    let host = Host::start_in(
        dir.path(),
        "[app:main]\nuse = egg:plughost#static\ndocument_root = site/\nindex = home.htm\n",
    );
    assert_eq!(host.get("/sub/").text(), "<p>home.htm</p>");
    assert_eq!(host.get("/").status, 404);
    drop(host);

    let host = Host::start_in(
        dir.path(),
        "[app:main]\nuse = egg:plughost#static\ndocument_root = site\nindex =\n",
    );
    assert_eq!(host.get("/sub/").status, 404);
    assert_eq!(host.get("/sub/index.html").status, 200);
}

#[test]
fn a_symlinked_root_can_be_switched_while_serving() {
    let dir = tempdir();
    for (release, text) in [("r1", "one"), ("r2", "two")] {
        fs::create_dir(dir.path().join(release)).unwrap();
        fs::write(dir.path().join(release).join("v.txt"), text).unwrap();
    }
    fs::write(dir.path().join("canary.txt"), CANARY).unwrap();
    symlink("r1", dir.path().join("current")).unwrap();
    let host = Host::start_in(
        dir.path(),
        "[app:main]\nuse = egg:plughost#static\ndocument_root = current\n",
    );
    assert_eq!(host.get("/v.txt").text(), "one");
    // Atomic switch, as deploy tools do it.
    symlink("r2", dir.path().join("next")).unwrap();
    fs::rename(dir.path().join("next"), dir.path().join("current")).unwrap();
    assert_eq!(host.get("/v.txt").text(), "two");
    // Siblings of the new target are still outside.
    let r = host.get("/../canary.txt");
    assert_eq!(r.status, 404);
    assert_no_secret(&r, "after the switch");
}

/// Start and expect failure; return the `plughost: error:` line.
fn fails(dir: &Path, config: &str) -> String {
    let err = match Host::try_start_in(dir, config, &[]) {
        Ok(_) => panic!("the host started with a bad config:\n{config}"),
        Err(e) => e,
    };
    err.lines()
        .find(|l| l.starts_with("plughost: error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{err}"))
        .to_owned()
}

#[test]
fn startup_errors_name_the_key() {
    let dir = tempdir();
    make_site(dir.path());
    let ini = dir.path().join("deploy.ini").display().to_string();

    let line = fails(dir.path(), "[app:main]\nuse = egg:plughost#static\n");
    assert!(line.contains(&ini) && line.contains("[app:main]"), "{line}");
    assert!(
        line.contains("document_root") && line.contains("missing"),
        "{line}"
    );

    let line = fails(
        dir.path(),
        "[app:main]\nuse = egg:plughost#static\ndocument_root = nowhere\n",
    );
    assert!(line.contains("document_root"), "{line}");
    assert!(
        line.contains(&dir.path().join("nowhere").display().to_string()),
        "{line}"
    );
    assert!(line.contains("no such directory"), "{line}");

    let line = fails(
        dir.path(),
        "[app:main]\nuse = egg:Paste#static\ndocument_root = canary.txt\n",
    );
    assert!(
        line.contains("document_root") && line.contains("not a directory"),
        "{line}"
    );

    let line = fails(
        dir.path(),
        "[app:main]\nuse = egg:plughost#static\ndocument_root = site\ncache_max_age = soon\n",
    );
    assert!(line.contains("cache_max_age"), "{line}");

    let line = fails(
        dir.path(),
        "[app:main]\nuse = egg:plughost#static\ndocument_root = site\ndocument-root = x\n",
    );
    assert!(
        line.contains("document-root") && line.contains("unknown key"),
        "{line}"
    );

    let line = fails(
        dir.path(),
        "[app:main]\nuse = egg:plughost#static\ndocument_root = site\nindex = ../x.html\n",
    );
    assert!(line.contains("index"), "{line}");
}

#[test]
fn modified_files_get_new_validators() {
    let (host, dir) = start_site();
    let first = host.get("/hello.txt");
    let etag = first.header("etag").unwrap().to_owned();
    let path = dir.path().join("site/hello.txt");
    fs::write(&path, "Changed!\n").unwrap();
    set_mtime(&path, MTIME + 60);
    let r = host.request("GET", "/hello.txt", &[("If-None-Match", &etag)], b"");
    assert_eq!((r.status, r.text().as_str()), (200, "Changed!\n"));
    assert_ne!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(
        r.header("last-modified"),
        Some("Sun, 09 Sep 2001 01:47:40 GMT")
    );
    // If-Range with the old tag: the whole new file, not a range of it.
    let r = host.request(
        "GET",
        "/hello.txt",
        &[("Range", "bytes=0-1"), ("If-Range", &etag)],
        b"",
    );
    assert_eq!((r.status, r.text().as_str()), (200, "Changed!\n"));
}
