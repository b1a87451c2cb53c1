//! Operating plughost: access logs, metrics, logging configured from the INI
//! file, and graceful shutdown under load.

mod support;

use std::time::Duration;

use support::*;

/// Apache combined format: host ident user [time] "request" status bytes "referer" "agent".
fn is_combined(line: &str) -> bool {
    let Some(rest) = line.split_once(" - ").map(|(_, r)| r) else {
        return false;
    };
    let Some((_user, rest)) = rest.split_once(" [") else {
        return false;
    };
    let Some((time, rest)) = rest.split_once("] \"") else {
        return false;
    };
    time.len() == 26 && time.ends_with(" +0000") && rest.matches('"').count() >= 5
}

#[test]
fn translogger_writes_combined_log_lines_with_bytes_sent() {
    let (host, _d) = Host::start(
        "[app:main]\nuse = egg:echo\nfilter-with = log\n\n[filter:log]\nuse = egg:Paste#translogger\nlogger_name = access\n",
    );
    host.request(
        "GET",
        "/page?x=1",
        &[
            ("Referer", "http://ref.example/"),
            ("User-Agent", "tester/1.0"),
            ("X-Echo-Body", "12345"),
        ],
        b"",
    );
    host.request("GET", "/big", &[("X-Echo-Bytes", "100000")], b"");
    host.request(
        "POST",
        "/missing",
        &[("X-Echo-Status", "404"), ("X-Echo-Body", "")],
        b"data",
    );
    assert!(
        host.wait_log("\"POST /missing HTTP/1.1\" 404", Duration::from_secs(5)),
        "{}",
        host.log()
    );
    let log = host.log();
    let line = log.lines().find(|l| l.contains("GET /page?x=1")).unwrap();
    let entry = &line[line.find("127.0.0.1 - - [").expect("remote address first")..];
    assert!(is_combined(entry), "not combined format: {entry}");
    assert!(
        entry.contains("\"GET /page?x=1 HTTP/1.1\" 200 5 \"http://ref.example/\" \"tester/1.0\""),
        "{entry}"
    );
    assert!(
        line.contains("access"),
        "the logger name is the target: {line}"
    );
    assert!(
        log.contains("\"GET /big HTTP/1.1\" 200 100000 \"-\" \"-\""),
        "{log}"
    );
    assert!(
        log.contains("\"POST /missing HTTP/1.1\" 404 - \"-\" \"-\""),
        "{log}"
    );
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_endpoint_counts_requests_latency_pool_and_reloads() {
    let dir = tempdir();
    let config = "[composite:main]\nuse = egg:plughost#urlmap\n/ = echo\n/_metrics = metrics\n\n\
                  [app:echo]\nuse = egg:echo\n\n[app:metrics]\nuse = egg:plughost#metrics\n\n[server:main]\nthreads = 3\n";
    let host = Host::start_in(dir.path(), config);
    let before = host.get("/_metrics");
    assert_eq!(before.status, 200);
    assert!(before
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let b = before.text();
    for _ in 0..5 {
        host.get("/x");
    }
    host.request("GET", "/x", &[("X-Echo-Status", "503")], b"");
    let after = host.get("/_metrics").text();
    let ok_before = metric(&b, "plughost_requests_total{status=\"200\"}");
    let ok_after = metric(&after, "plughost_requests_total{status=\"200\"}");
    assert_eq!(
        ok_after - ok_before,
        6.0,
        "5 echo requests and the first scrape\n{after}"
    );
    assert_eq!(
        metric(&after, "plughost_requests_total{status=\"503\"}"),
        1.0
    );
    let count = metric(&after, "plughost_request_duration_seconds_count");
    assert_eq!(
        count,
        metric(
            &after,
            "plughost_request_duration_seconds_bucket{le=\"+Inf\"}"
        )
    );
    assert!(count >= 7.0);
    assert_eq!(
        metric(&after, "plughost_requests_in_flight"),
        1.0,
        "the scrape itself is in flight"
    );
    assert_eq!(metric(&after, "plughost_worker_pool_size"), 3.0);
    assert_eq!(metric(&after, "plughost_worker_pool_queue"), 0.0);

    signal(host.pid(), "HUP");
    assert!(host.wait_log("reloaded", Duration::from_secs(5)));
    let after_reload = host.get("/_metrics").text();
    assert_eq!(
        metric(&after_reload, "plughost_reloads_total{result=\"success\"}"),
        1.0
    );
    std::fs::write(
        dir.path().join("deploy.ini"),
        "[app:main]\nuse = egg:nope\n",
    )
    .unwrap();
    signal(host.pid(), "HUP");
    assert!(host.wait_log("reload failed", Duration::from_secs(5)));
    let after_failure = host.get("/_metrics").text();
    assert_eq!(
        metric(&after_failure, "plughost_reloads_total{result=\"failure\"}"),
        1.0
    );
}

#[test]
fn logging_is_configured_from_the_ini_file() {
    let dir = tempdir();
    let config = "\
[app:main]
use = egg:echo
filter-with = log

[filter:log]
use = egg:plughost#translogger
logger_name = wsgi.access

[loggers]
keys = root, access

[handlers]
keys = console, accessfile

[formatters]
keys = generic, bare

[logger_root]
level = WARN
handlers = console

[logger_access]
level = INFO
handlers = accessfile
qualname = wsgi.access
propagate = 0

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[handler_accessfile]
class = FileHandler
args = ('%(here)s/access.log', 'a')
level = INFO
formatter = bare

[formatter_generic]
format = %(asctime)s %(levelname)-5.5s [%(name)s] %(message)s

[formatter_bare]
format = %(name)s: %(message)s
";
    let path = dir.path().join("deploy.ini");
    std::fs::write(&path, config).unwrap();
    // RUST_LOG would win over the file: start this host without it.
    let host = Host::serve_path_logging(&path, &[], None).unwrap();
    host.request("GET", "/logged", &[("X-Echo-Body", "hi")], b"");
    let log_file = dir.path().join("access.log");
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&log_file).unwrap_or_default();
        if text.contains("/logged") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let line = text
        .lines()
        .find(|l| l.contains("GET /logged"))
        .unwrap_or_else(|| panic!("no access line in {text:?}"));
    assert!(line.starts_with("wsgi.access: 127.0.0.1 - - ["), "{line}");
    // INFO lines of other targets are below the root's WARN; the access logger does not propagate.
    let console = host.log();
    assert!(
        !console.contains("serving"),
        "root level WARN must hide INFO lines: {console}"
    );
    assert!(
        !console.contains("GET /logged"),
        "propagate = 0 keeps access lines off the console: {console}"
    );
    // WARN lines reach the console in the generic format.
    std::fs::write(&path, config.replace("use = egg:echo", "use = egg:nope")).unwrap();
    signal(host.pid(), "HUP");
    assert!(
        host.wait_log(
            "ERROR [plughost.reload] reload failed",
            Duration::from_secs(5)
        ),
        "{}",
        host.log()
    );
}

#[test]
fn shutdown_under_load_finishes_every_request_in_flight() {
    let (host, _d) = Host::start("[app:main]\nuse = egg:echo\n[server:main]\nthreads = 16\n");
    let port = host.port;
    let clients: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                request(
                    port,
                    "GET",
                    &format!("/slow/{i}"),
                    &[("X-Echo-Sleep-Ms", "700")],
                    b"",
                )
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let status = host.terminate();
    for c in clients {
        let reply = c.join().unwrap().expect("a request in flight completes");
        assert_eq!(reply.status, 200);
    }
    assert!(status.success(), "exit status {status}");
    assert!(
        request(port, "GET", "/", &[], b"").is_err(),
        "nothing listens after shutdown"
    );
}

fn wait_for_file(path: &std::path::Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !path.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(path.exists(), "{} was not stored", path.display());
}

#[test]
fn cache_purge_deletes_pages_by_url_and_prefix_without_following_symlinks() {
    let dir = tempdir();
    let host = Host::start_in(
        dir.path(),
        "[app:main]\nuse = egg:echo\nfilter-with = cache\n\n[filter:cache]\nuse = egg:wsgi_cache#middleware\ncache_dir = %(here)s/pages\nstatus_header = X-Cache\n# The pages are echo's JSON reports.\ncontent_type = application/json\n",
    );
    let cache = dir.path().join("pages");
    for path in ["/a", "/blog/1", "/blog/2", "/blog/", "/blogger"] {
        assert_eq!(host.get(path).header("x-cache"), Some("MISS"));
    }
    for file in ["a", "blog/1", "blog/2", "blog/__index.html", "blogger"] {
        wait_for_file(&cache.join(file));
    }
    // A symlink planted in the tree, pointing at a directory outside it.
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("canary"), "keep me").unwrap();
    std::os::unix::fs::symlink(&outside, cache.join("link")).unwrap();

    let out = cache_purge(dir.path(), &["/a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("/a: purged 1 page(s)"));
    assert!(!cache.join("a").exists());
    assert_eq!(
        host.get("/a").header("x-cache"),
        Some("MISS"),
        "the next request reaches the app"
    );

    let out = cache_purge(dir.path(), &["--prefix", "/blog"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/blog: purged 3 page(s)"),
        "{out:?}"
    );
    assert!(!cache.join("blog").exists());
    assert!(
        cache.join("blogger").exists(),
        "prefixes match on segment boundaries"
    );

    let out = cache_purge(dir.path(), &["--prefix", "/link"]);
    assert!(out.status.success());
    assert!(!cache.join("link").exists(), "the link itself is removed");
    assert_eq!(
        std::fs::read_to_string(outside.join("canary")).unwrap(),
        "keep me",
        "its target is untouched"
    );

    let out = cache_purge(dir.path(), &["/../outside/canary"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("never cached"));
    assert!(outside.join("canary").exists());

    let out = cache_purge(dir.path(), &["--prefix", "/"]);
    assert!(out.status.success());
    let left: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        [".plughost-cache"],
        "every page under cache_dir is gone"
    );
}
