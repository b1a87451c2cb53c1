//! `plughost cache warm` end to end: the real binary building the pipeline
//! in-process (nothing listens) in front of the built-in static app, pages
//! checked in the real cache_dir, the summary and exit code as a user sees them.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use support::tempdir;

/// The site every test serves: `(URL path, file under document_root, body)`.
const PAGES: &[(&str, &str, &str)] = &[
    ("/a.html", "a.html", "<h1>a</h1>\n"),
    ("/b.html", "b.html", "<h1>b</h1>\n"),
    ("/c.html", "c.html", "<h1>c</h1>\n"),
    ("/post.html", "post.html", "<h1>posted</h1>\n"),
    ("/old.html", "old.html", "<h1>old</h1>\n"),
    ("/a&b.html", "a&b.html", "<h1>amp</h1>\n"),
    ("/docs/", "docs/index.html", "<h1>docs</h1>\n"),
];

/// The cache file of a URL path.
fn cached(path: &str) -> String {
    match path.strip_suffix('/') {
        Some(dir) => format!("{}/__index.html", dir.trim_start_matches('/')),
        None => path.trim_start_matches('/').to_owned(),
    }
}

/// A site under `dir/site` and a deploy.ini with a cache in front of the
/// static app; `extra` goes after the cache section's keys.
fn site(dir: &Path, extra: &str) {
    for (_, file, body) in PAGES {
        let path = dir.join("site").join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    std::fs::write(
        dir.join("deploy.ini"),
        format!(
            "[app:main]\nuse = egg:plughost#static\ndocument_root = %(here)s/site\nfilter-with = cache\n\n\
             [filter:cache]\nuse = egg:plughost#cache\ncache_dir = %(here)s/cache\n{extra}"
        ),
    )
    .unwrap();
}

fn warm(dir: &Path, args: &[&str]) -> Output {
    warm_config(&dir.join("deploy.ini"), args)
}

fn warm_config(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plughost"))
        .current_dir(config.parent().unwrap())
        .args(["cache", "warm"])
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Assert success and return stdout.
fn ok(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l.trim() == line)
}

fn assert_line(text: &str, line: &str) {
    assert!(has_line(text, line), "no line {line:?} in:\n{text}");
}

/// The page for `path` is in the cache, byte for byte what the site has.
fn assert_stored(dir: &Path, path: &str) {
    let body = PAGES.iter().find(|p| p.0 == path).unwrap().2;
    let file = dir.join("cache").join(cached(path));
    let got = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{path}: {} not stored: {e}", file.display()));
    assert_eq!(got, body, "{path}");
}

fn assert_absent(dir: &Path, path: &str) {
    let file = dir.join("cache").join(cached(path));
    assert!(!file.exists(), "{path}: {} was stored", file.display());
}

#[test]
fn warm_stores_the_paths_given_as_arguments() {
    let dir = tempdir();
    site(dir.path(), "");
    let out = ok(&warm(dir.path(), &["/a.html", "/docs/"]));
    assert_stored(dir.path(), "/a.html");
    assert_stored(dir.path(), "/docs/");
    assert_absent(dir.path(), "/b.html");
    assert_line(&out, "stored: 2");
    assert_line(&out, "already cached: 0");
    assert_line(&out, "skipped: 0");
    assert_line(&out, "failed: 0");
}

#[test]
fn a_second_warm_reports_the_pages_already_cached() {
    let dir = tempdir();
    site(dir.path(), "");
    ok(&warm(dir.path(), &["/a.html", "/b.html"]));
    let out = ok(&warm(dir.path(), &["/a.html", "/b.html", "/c.html"]));
    assert_line(&out, "stored: 1");
    assert_line(&out, "already cached: 2");
    assert_stored(dir.path(), "/c.html");
}

#[test]
fn warm_from_a_list_file_skips_comments_duplicates_and_queries() {
    let dir = tempdir();
    site(dir.path(), "");
    std::fs::write(
        dir.path().join("paths.txt"),
        "# pages to warm\n/a.html\n\n/b.html\n/a.html\nhttps://example.org/docs/\n/c.html?x=1\nnot-a-path\n",
    )
    .unwrap();
    let out = ok(&warm(dir.path(), &["--from", "paths.txt"]));
    for p in ["/a.html", "/b.html", "/docs/"] {
        assert_stored(dir.path(), p);
    }
    assert_absent(dir.path(), "/c.html");
    assert_line(&out, "stored: 3");
    assert_line(&out, "skipped: 2");
    assert_line(&out, "query-string: 1");
    assert_line(&out, "not-a-path: 1");
}

#[test]
fn warm_from_an_access_log_takes_successful_gets_most_requested_first() {
    let dir = tempdir();
    site(dir.path(), "");
    let line = |method: &str, path: &str, status: u16| {
        format!(
            "203.0.113.7 - - [03/Dec/2026:10:00:00 +0000] \"{method} {path} HTTP/1.1\" {status} 512 \"https://example.org/\" \"Mozilla/5.0 (X11; Linux x86_64)\"\n"
        )
    };
    let mut log = String::new();
    log += &line("GET", "/a.html", 200);
    log += &line("GET", "/c.html", 200);
    log += &line("GET", "/b.html", 304);
    log += &line("GET", "/c.html", 200);
    log += &line("POST", "/post.html", 200);
    log += &line("GET", "/b.html", 200);
    log += &line("GET", "/old.html", 404);
    log += &line("GET", "/c.html", 200);
    log += &line("HEAD", "/post.html", 200);
    log += "127.0.0.1 - - [03/Dec/2026:10:00:01 +0000] \"-\" 400 0 \"-\" \"-\"\n";
    // nginx's common format without referer and user agent.
    log += "127.0.0.1 - - [03/Dec/2026:10:00:02 +0000] \"GET /docs/ HTTP/1.0\" 200 12\n";
    std::fs::write(dir.path().join("access.log"), log).unwrap();
    let out = ok(&warm(
        dir.path(),
        &["--from", "access.log", "--concurrency", "1", "--verbose"],
    ));
    for p in ["/a.html", "/b.html", "/c.html", "/docs/"] {
        assert_stored(dir.path(), p);
    }
    // Not a GET, not a 2xx/3xx: not requested.
    assert_absent(dir.path(), "/post.html");
    assert_absent(dir.path(), "/old.html");
    let order: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("stored "))
        .collect();
    assert_eq!(order, ["/c.html", "/b.html", "/a.html", "/docs/"], "{out}");
    assert_line(&out, "stored: 4");
    assert_line(
        &out,
        "ignored: 4 (not-2xx-3xx 1, not-a-request 1, not-get 2)",
    );
}

#[test]
fn warm_from_a_sitemap_takes_every_loc_path() {
    let dir = tempdir();
    site(dir.path(), "");
    std::fs::write(
        dir.path().join("sitemap.xml"),
        r#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>https://example.org/a.html</loc><lastmod>2026-12-01</lastmod></url>
  <url>
    <loc>
      https://example.org/a&amp;b.html
    </loc>
  </url>
  <url><loc><![CDATA[https://example.org/docs/]]></loc></url>
  <url><loc>https://example.org/b.html?page=2</loc></url>
</urlset>
"#,
    )
    .unwrap();
    let out = ok(&warm(dir.path(), &["--sitemap", "sitemap.xml"]));
    for p in ["/a.html", "/a&b.html", "/docs/"] {
        assert_stored(dir.path(), p);
    }
    assert_absent(dir.path(), "/b.html");
    assert_line(&out, "stored: 3");
    assert_line(&out, "query-string: 1");
}

#[test]
fn a_sitemap_index_reads_the_sitemaps_beside_it() {
    let dir = tempdir();
    site(dir.path(), "");
    std::fs::write(
        dir.path().join("index.xml"),
        "<sitemapindex><sitemap><loc>https://example.org/maps/pages.xml</loc></sitemap></sitemapindex>",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("pages.xml"),
        "<urlset><url><loc>https://example.org/c.html</loc></url></urlset>",
    )
    .unwrap();
    let out = ok(&warm(dir.path(), &["--sitemap", "index.xml"]));
    assert_stored(dir.path(), "/c.html");
    assert_line(&out, "stored: 1");
}

#[test]
fn a_path_the_app_answers_404_is_skipped_with_the_caches_reason() {
    let dir = tempdir();
    site(dir.path(), "");
    let out = ok(&warm(dir.path(), &["/missing.html", "/a.html"]));
    assert_line(&out, "stored: 1");
    assert_line(&out, "skipped: 1");
    // The cache's own counter name.
    assert_line(&out, "NotStored(no_store.status): 1");
    assert!(!dir.path().join("cache/missing.html").exists());
}

#[test]
fn a_path_the_cache_stays_out_of_is_skipped_as_a_bypass() {
    let dir = tempdir();
    site(dir.path(), "cache_paths = /docs\n");
    let out = ok(&warm(dir.path(), &["/a.html", "/docs/", "--verbose"]));
    assert_line(&out, "stored: 1");
    assert_line(&out, "Bypass(bypass.scope): 1");
    assert_line(&out, "skipped /a.html Bypass(bypass.scope)");
    assert_stored(dir.path(), "/docs/");
    assert_absent(dir.path(), "/a.html");
}

/// A port nothing listens on.
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_failing_app_is_reported_by_path_and_exits_1() {
    let dir = tempdir();
    site(dir.path(), "");
    // The static site at /, a proxy to a dead backend (a 502) at /down.
    std::fs::write(
        dir.path().join("deploy.ini"),
        format!(
            "[composite:main]\nuse = egg:Paste#urlmap\n/ = site\n/down = down\nfilter-with = cache\n\n\
             [app:site]\nuse = egg:plughost#static\ndocument_root = %(here)s/site\n\n\
             [app:down]\nuse = egg:plughost#proxy\naddress = http://127.0.0.1:{}\n\n\
             [filter:cache]\nuse = egg:plughost#cache\ncache_dir = %(here)s/cache\ncompress = gzip\n",
            dead_port()
        ),
    )
    .unwrap();
    let big = "<p>warm</p>\n".repeat(200_000);
    std::fs::write(dir.path().join("site/big.html"), &big).unwrap();
    let out = warm(dir.path(), &["/a.html", "/down/page", "/big.html"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
    assert_line(&text, "failed: 1");
    assert_line(&text, "/down/page: the app answered 502 Bad Gateway");
    assert_line(&text, "stored: 2");
    assert_stored(dir.path(), "/a.html");
    assert!(!dir.path().join("cache/down").exists());
    // The twin the cache writes after storing a page is there when warm has
    // exited, even with exit code 1.
    let twin = std::fs::read(dir.path().join("cache/big.html.gz")).expect("big.html.gz");
    let mut unzipped = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&twin[..]), &mut unzipped)
        .unwrap();
    assert_eq!(unzipped, big);
}

#[test]
fn the_host_header_is_the_servers_address_or_host() {
    let dir = tempdir();
    site(dir.path(), "host_dirs = true\nhost_port = false\n");
    let config = dir.path().join("deploy.ini");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text += "\n[server:main]\nuse = egg:plughost#http\nhost = 127.0.0.1\nport = 8123\n";
    std::fs::write(&config, text).unwrap();
    ok(&warm(dir.path(), &["/a.html"]));
    assert!(dir.path().join("cache/127.0.0.1/a.html").is_file());
    ok(&warm(dir.path(), &["--host", "www.example.org", "/b.html"]));
    assert!(dir.path().join("cache/www.example.org/b.html").is_file());
    assert!(!dir.path().join("cache/127.0.0.1/b.html").exists());
}

#[test]
fn errors_are_one_line_and_usage_errors_exit_2() {
    let dir = tempdir();
    site(dir.path(), "");
    let one_error = |out: &Output, code: i32, needle: &str| {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(code), "{err}");
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("plughost: error: "))
            .collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains(needle), "{err}");
        assert!(stdout(out).is_empty(), "{}", stdout(out));
    };
    one_error(&warm(dir.path(), &["--from", "nope.txt"]), 1, "nope.txt");
    one_error(&warm(dir.path(), &["about"]), 2, "\"about\"");
    one_error(&warm(dir.path(), &["/a?x=1"]), 2, "query");
    one_error(&warm(dir.path(), &["--host", "a b", "/a.html"]), 2, "Host");
    std::fs::write(dir.path().join("bad.xml"), "<html></html>").unwrap();
    one_error(
        &warm(dir.path(), &["--sitemap", "bad.xml"]),
        1,
        "not a sitemap",
    );
    // Nothing to warm at all: clap's usage error.
    assert_eq!(warm(dir.path(), &[]).status.code(), Some(2));
    // No cache filter.
    let plain = dir.path().join("plain.ini");
    std::fs::write(
        &plain,
        "[app:main]\nuse = egg:plughost#static\ndocument_root = %(here)s/site\n",
    )
    .unwrap();
    one_error(&warm_config(&plain, &["/a.html"]), 1, "has no cache filter");
}

#[test]
fn no_progress_line_when_stderr_is_not_a_terminal() {
    let dir = tempdir();
    site(dir.path(), "");
    let out = warm(dir.path(), &["/a.html", "/b.html"]);
    ok(&out);
    let err = stderr(&out);
    assert!(!err.contains('\r') && !err.contains("\x1b["), "{err:?}");
}

#[test]
fn sigint_stops_the_warm_and_prints_what_was_done() {
    let dir = tempdir();
    site(dir.path(), "");
    // A backend that accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    std::fs::write(
        dir.path().join("deploy.ini"),
        format!(
            "[composite:main]\nuse = egg:Paste#urlmap\n/ = site\n/hang = hang\nfilter-with = cache\n\n\
             [app:site]\nuse = egg:plughost#static\ndocument_root = %(here)s/site\n\n\
             [app:hang]\nuse = egg:plughost#proxy\naddress = http://{}\ntimeout = 60\n\n\
             [filter:cache]\nuse = egg:plughost#cache\ncache_dir = %(here)s/cache\n",
            silent.local_addr().unwrap()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_plughost"))
        .current_dir(dir.path())
        .args(["cache", "warm", "deploy.ini", "--concurrency", "1"])
        .args(["/a.html", "/hang/x", "/b.html"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stored = dir.path().join("cache/a.html");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !stored.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(stored.exists(), "/a.html was not stored");
    // Now /hang/x is in flight (concurrency 1), waiting on the silent backend.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    support::signal(child.id(), "INT");
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(130), "{text}\n{}", stderr(&out));
    assert_line(&text, "stored: 1");
    assert_line(&text, "interrupted: 2 paths not done");
    assert_absent(dir.path(), "/b.html");
    drop(silent);
}

#[test]
fn requests_get_the_environ_the_server_would_build() {
    let dir = tempdir();
    site(dir.path(), "");
    let config = dir.path().join("deploy.ini");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text += "\n[server:main]\nuse = egg:plughost#http\nurl_prefix = /site\n";
    std::fs::write(&config, text).unwrap();
    // SCRIPT_NAME /site, PATH_INFO /a.html: the static app finds a.html
    // (without the prefix it would look for site/a.html and answer 404), and
    // the cache keys the page on SCRIPT_NAME + PATH_INFO.
    let out = ok(&warm(dir.path(), &["/site/a.html"]));
    assert_line(&out, "stored: 1");
    let page = std::fs::read_to_string(dir.path().join("cache/site/a.html")).unwrap();
    assert_eq!(page, "<h1>a</h1>\n");
}

#[test]
fn warm_from_stdin_reads_the_list_piped_in() {
    let dir = tempdir();
    site(dir.path(), "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_plughost"))
        .current_dir(dir.path())
        .args(["cache", "warm", "deploy.ini", "--from", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"/b.html\n/c.html\n").unwrap();
    drop(child.stdin.take());
    let out = ok(&child.wait_with_output().unwrap());
    assert_line(&out, "stored: 2");
    assert_stored(dir.path(), "/b.html");
    assert_stored(dir.path(), "/c.html");
}
