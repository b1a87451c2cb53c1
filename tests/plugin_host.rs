//! The plugin host end to end: the real binary, real plugin libraries, real HTTP.

mod support;

use std::io::BufReader;
use std::time::Duration;

use support::*;

const ECHO: &str = "[app:main]\nuse = egg:echo\n";

#[test]
fn hello_answers_default_and_configured_greeting() {
    let (host, _d) = Host::start("[app:main]\nuse = egg:hello\n");
    let r = host.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello, world!");
    assert_eq!(r.header("content-length"), Some("13"));

    let (host, _d) = Host::start("[app:main]\nuse = egg:hello\ngreeting = Good morning\n");
    assert_eq!(host.get("/anything").text(), "Good morning");
}

#[test]
fn echo_reports_the_environ() {
    let (host, dir) =
        Host::start("[DEFAULT]\nshared = yes\n\n[app:main]\nuse = egg:echo\ncolour = blue\n");
    let r = host.request(
        "POST",
        "/a%20b/c%2Fd?x=1&y=%20",
        &[("X-Custom", "v1"), ("X-Custom", "v2")],
        b"hello body",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = r.json();
    assert_eq!(j["method"], "POST");
    assert_eq!(j["script_name"], "");
    assert_eq!(j["path_info"], "/a b/c/d");
    assert_eq!(j["raw_path"], "/a%20b/c%2Fd");
    assert_eq!(j["query_string"], "x=1&y=%20");
    assert_eq!(j["scheme"], "http");
    assert_eq!(j["protocol"], "HTTP/1.1");
    assert_eq!(j["server_name"], "localhost");
    assert_eq!(j["server_port"], host.port);
    assert_eq!(j["remote_addr"], "127.0.0.1");
    assert!(j["remote_port"].as_u64().unwrap() > 0);
    assert_eq!(j["headers"]["x-custom"], "v1, v2");
    assert_eq!(j["headers"]["content-length"], "10");
    assert_eq!(j["content_length"], 10);
    assert_eq!(j["body_len"], 10);
    assert_eq!(j["extras"], serde_json::json!({}));
    assert_eq!(j["entry"], "main");
    assert_eq!(j["counter"], 1);
    assert_eq!(j["local_conf"], serde_json::json!({"colour": "blue"}));
    let here = std::fs::canonicalize(dir.path()).unwrap();
    let g = &j["global_conf"];
    assert_eq!(g["shared"], "yes");
    assert_eq!(
        std::fs::canonicalize(g["here"].as_str().unwrap()).unwrap(),
        here
    );
    assert_eq!(
        std::fs::canonicalize(g["__file__"].as_str().unwrap()).unwrap(),
        here.join("deploy.ini")
    );
    // The instance keeps state across requests.
    assert_eq!(host.get("/").json()["counter"], 2);
}

#[test]
fn echo_status_headers_and_body_are_driven_by_request_headers() {
    let (host, _d) = Host::start(ECHO);
    let r = host.request(
        "GET",
        "/",
        &[
            ("X-Echo-Status", "404 Not Here"),
            ("X-Echo-Header", "X-One: 1"),
            ("X-Echo-Header", "Content-Type: text/plain"),
            ("X-Echo-Body", "custom body"),
        ],
        b"",
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.reason, "Not Here");
    assert_eq!(r.header("x-one"), Some("1"));
    assert_eq!(r.header_all("content-type"), vec!["text/plain"]);
    assert_eq!(r.text(), "custom body");

    let r = host.request("GET", "/", &[("X-Echo-Status", "201")], b"");
    assert_eq!((r.status, r.reason.as_str()), (201, "Created"));

    let r = host.request("GET", "/", &[("X-Echo-Bytes", "200000")], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 200_000);
    assert!(r
        .body
        .starts_with(b"abcdefghijklmnopqrstuvwxyz0123456789\nabc"));
}

#[test]
fn head_requests_get_headers_only() {
    let (host, _d) = Host::start("[app:main]\nuse = egg:hello\n");
    let mut s = connect(host.port).unwrap();
    write_request(&mut s, "HEAD", "/", &[], None, false).unwrap();
    write_request(&mut s, "GET", "/", &[], None, true).unwrap();
    let mut r = BufReader::new(s);
    let head = read_response(&mut r, true).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("13"));
    // The next response on the same connection starts right after the head.
    let get = read_response(&mut r, false).unwrap();
    assert_eq!(get.text(), "Hello, world!");
}

#[test]
fn filters_chain_in_order_and_may_answer_themselves() {
    let config = "\
[app:main]
use = egg:echo
filter-with = b

[filter:b]
use = egg:tag
tag = b
filter-with = a

[filter:a]
use = egg:tag
tag = a
deny_prefix = /private
";
    let (host, _d) = Host::start(config);
    let r = host.get("/x");
    assert_eq!(r.status, 200);
    // a(b(app)): a sees the request first and the response last.
    assert_eq!(r.json()["headers"]["x-tag-chain"], "a,b");
    assert_eq!(r.header("x-tag-chain-out"), Some("b,a"));

    let denied = host.get("/private/file");
    assert_eq!(denied.status, 403);
    assert_eq!(denied.header("x-tag-denied-by"), Some("a"));
    // The app was not called for the denied request: its counter moved by one only.
    assert_eq!(host.get("/y").json()["counter"], 2);
}

#[test]
fn filter_passes_request_bodies_and_streamed_responses_through() {
    let config =
        "[app:main]\nuse = egg:echo\nfilter-with = t\n[filter:t]\nuse = egg:tag\ntag = t\n";
    let (host, _d) = Host::start(config);
    let body = vec![b'z'; 300_000];
    let j = host.request("PUT", "/up", &[], &body).json();
    assert_eq!(j["body_len"], 300_000);
    let r = host.request("GET", "/", &[("X-Echo-Bytes", "500000")], b"");
    assert_eq!(r.body.len(), 500_000);
    assert_eq!(r.header("x-tag-chain-out"), Some("t"));
}

#[test]
fn c_plugin_serves_through_the_same_abi() {
    let dir = tempdir();
    compile_c(
        &repo_dir().join("plugins/c-hello/hello.c"),
        "c-hello",
        dir.path(),
        &[],
    );
    let host = Host::start_in(dir.path(), "[app:main]\nuse = lib:libc_hello.so\n");
    let r = host.get("/");
    assert_eq!((r.status, r.text().as_str()), (200, "Hello, world!"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    drop(host);

    // Found on the plugin path by name, with its config.
    let host = Host::try_start_in(
        dir.path(),
        &format!(
            "[DEFAULT]\nplugin_path = {}\n[app:main]\nuse = egg:c-hello\ngreeting = Bonjour\n",
            dir.path().display()
        ),
        &[],
    )
    .unwrap();
    assert_eq!(host.get("/").text(), "Bonjour");
}

#[test]
fn a_panicking_plugin_gets_a_500_and_the_host_keeps_serving() {
    let (host, _d) = Host::start(ECHO);
    for _ in 0..3 {
        let r = host.request("GET", "/", &[("X-Echo-Panic", "1")], b"");
        assert_eq!(r.status, 500);
        assert_eq!(host.get("/").status, 200);
    }
    assert!(
        host.wait_log("X-Echo-Panic requested a panic", Duration::from_secs(5)),
        "{}",
        host.log()
    );
}

#[test]
fn invalid_status_or_header_from_a_plugin_is_a_500_with_a_log_line() {
    let (host, _d) = Host::start(ECHO);
    let r = host.request("GET", "/", &[("X-Echo-Status", "42")], b"");
    assert_eq!(r.status, 500);
    assert!(
        host.wait_log("invalid status code 42", Duration::from_secs(5)),
        "{}",
        host.log()
    );
    let r = host.request("GET", "/", &[("X-Echo-Header", "Bad Name: x")], b"");
    assert_eq!(r.status, 500);
    assert!(
        host.wait_log("invalid header name", Duration::from_secs(5)),
        "{}",
        host.log()
    );
    assert_eq!(host.get("/").status, 200);
}

#[test]
fn a_body_that_fails_midway_cuts_the_connection_and_early_failure_is_a_500() {
    let (host, _d) = Host::start(ECHO);
    // Fails after the headers went out: the response must not look complete.
    let cut = request(
        host.port,
        "GET",
        "/",
        &[("X-Echo-Bytes", "1000000"), ("X-Echo-Fail-After", "300000")],
        b"",
    );
    assert!(
        cut.is_err(),
        "a truncated body must not arrive as a complete response: {cut:?}"
    );
    // Fails before anything was sent: a clean 500.
    let r = host.request(
        "GET",
        "/",
        &[("X-Echo-Bytes", "1000000"), ("X-Echo-Fail-After", "10")],
        b"",
    );
    assert_eq!(r.status, 500);
    assert_eq!(host.get("/").status, 200);
}

#[test]
fn two_hundred_concurrent_requests_all_succeed() {
    let (host, _d) = Host::start("[app:main]\nuse = egg:echo\n[server:main]\nthreads = 8\n");
    let port = host.port;
    let handles: Vec<_> = (0..200)
        .map(|i| {
            std::thread::spawn(move || {
                let path = format!("/c/{i}");
                let r = request(port, "GET", &path, &[("X-Echo-Sleep-Ms", "20")], b"").unwrap();
                assert_eq!(r.status, 200);
                let j = r.json();
                assert_eq!(j["path_info"], path);
                j["counter"].as_u64().unwrap()
            })
        })
        .collect();
    let mut counters: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    counters.sort();
    assert_eq!(counters, (1..=200).collect::<Vec<_>>());
}

#[test]
fn url_prefix_moves_the_mount_point_into_script_name() {
    let (host, _d) =
        Host::start("[app:main]\nuse = egg:echo\n[server:main]\nurl_prefix = /site/\n");
    let j = host.get("/site/page").json();
    assert_eq!(
        (j["script_name"].as_str(), j["path_info"].as_str()),
        (Some("/site"), Some("/page"))
    );
}

#[test]
fn sigterm_lets_requests_in_flight_finish_then_exits_zero() {
    let (host, _d) = Host::start(ECHO);
    let port = host.port;
    let slow = std::thread::spawn(move || {
        request(port, "GET", "/slow", &[("X-Echo-Sleep-Ms", "800")], b"")
    });
    std::thread::sleep(Duration::from_millis(200));
    let status = host.terminate();
    let reply = slow
        .join()
        .unwrap()
        .expect("the request in flight completes");
    assert_eq!(reply.status, 200);
    assert!(status.success(), "exit status {status}");
}

#[test]
fn request_limits_answer_413_and_431() {
    let (host, _d) = Host::start("[app:main]\nuse = egg:echo\n[server:main]\nmax_body_bytes = 1000\nmax_header_bytes = 8192\n");
    let r = host.request("POST", "/", &[], &[b'x'; 2000]);
    assert_eq!(r.status, 413);
    // Without a declared length the limit applies as the body streams.
    let mut s = connect(host.port).unwrap();
    use std::io::Write;
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n7d0\r\n").unwrap();
    s.write_all(&[b'y'; 2000]).unwrap();
    s.write_all(b"\r\n0\r\n\r\n").unwrap();
    let r = read_response(&mut BufReader::new(s), false).unwrap();
    assert_eq!(r.status, 413);
    let big = "v".repeat(20_000);
    let r = host.request("GET", "/", &[("X-Big", &big)], b"");
    assert_eq!(r.status, 431);
    assert_eq!(host.get("/").status, 200);
}

#[test]
fn a_known_length_body_over_the_preread_keeps_its_content_length() {
    // Regression: the host once added the pre-read bytes to the plugin's size
    // hint twice, announcing 2 MiB for a 1 MiB body and cutting the connection.
    let greeting = "g".repeat(1024 * 1024);
    let (host, _d) = Host::start(&format!(
        "[app:main]\nuse = egg:hello\ngreeting = {greeting}\n"
    ));
    let r = host.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1048576"));
    assert_eq!(r.body.len(), 1024 * 1024);
}

/// Where a call ran: the runtime's threads are named `plughost`, the pool's
/// `plughost-worker-N` (which the kernel cuts to 15 bytes).
fn on_pool(thread: &str) -> bool {
    thread.starts_with("plughost-worke")
}

#[test]
fn non_blocking_apps_answer_body_less_requests_on_the_event_loop() {
    let (host, _d) = Host::start(
        "[composite:main]\nuse = egg:plughost#urlmap\n/inline = inline\n/pool = pool\n\n\
         [app:inline]\nuse = egg:echo#inline\n\n[app:pool]\nuse = egg:echo\n",
    );
    let thread = |r: &Reply| r.json()["thread"].as_str().unwrap().to_owned();
    let inline = thread(&host.get("/inline/x"));
    assert_eq!(
        inline, "plughost",
        "a non-blocking app's GET runs on the event loop"
    );
    // A body to read could block: the pool takes it, and the body arrives whole.
    let r = host.request("POST", "/inline/x", &[], &[b'z'; 100_000]);
    assert!(on_pool(&thread(&r)), "{}", thread(&r));
    assert_eq!(r.json()["body_len"], 100_000);
    // An app that made no promise always runs on the pool.
    assert!(on_pool(&thread(&host.get("/pool/x"))));
}

#[test]
fn a_non_blocking_app_that_blocks_is_moved_to_the_worker_pool() {
    let (host, _d) = Host::start("[app:main]\nuse = egg:echo#inline\n");
    // The first call pays one-time costs and is not judged, however long it takes.
    let slow = [("X-Echo-Sleep-Ms", "60")];
    assert_eq!(
        host.request("GET", "/", &slow, b"").json()["thread"],
        "plughost"
    );
    assert_eq!(host.get("/").json()["thread"], "plughost");
    assert!(!host.log().contains("declares itself non-blocking"));
    // The promise is broken once: the call still answers...
    let r = host.request("GET", "/", &slow, b"");
    assert_eq!(r.status, 200);
    // ...and from then on the pool, with its request_timeout, takes the calls.
    assert!(
        host.wait_log("declares itself non-blocking", Duration::from_secs(5)),
        "{}",
        host.log()
    );
    for _ in 0..3 {
        assert!(on_pool(host.get("/").json()["thread"].as_str().unwrap()));
    }
}

#[test]
fn abi_1_0_plugins_load_and_their_tables_are_read_to_their_own_size() {
    let dir = tempdir();
    let src = repo_dir().join("plugins/c-hello/hello.c");
    compile_c(&src, "c-new", dir.path(), &["-DC_HELLO_THREAD"]);
    compile_c(
        &src,
        "c-old",
        dir.path(),
        &["-DC_HELLO_THREAD", "-DC_HELLO_ABI_1_0"],
    );
    let host = Host::start_in(
        dir.path(),
        "[composite:main]\nuse = egg:plughost#urlmap\n/new = new\n/old = old\n\n\
         [app:new]\nuse = lib:libc_new.so\n\n[app:old]\nuse = lib:libc_old.so\n",
    );
    // A 1.1 table with the flag set: the event loop.
    assert_eq!(host.get("/new").text(), "plughost");
    // A 1.0 table ends before `flags`; the word after it is not read as flags.
    let old = host.get("/old");
    assert_eq!(old.status, 200);
    assert!(on_pool(&old.text()), "{}", old.text());
}

/// `tag` exports an app and a filter both named `main` (as Paste distributions
/// do): each section gets the entry of its own kind, both in one pipeline.
#[test]
fn an_app_and_a_filter_sharing_a_name_are_each_found_by_kind() {
    let (host, _dir) = Host::start(
        "[pipeline:main]\npipeline = outer tagapp\n\n\
         [filter:outer]\nuse = egg:tag\ntag = outer\n\n\
         [app:tagapp]\nuse = egg:tag\ntag = inner-app\n",
    );
    let r = host.get("/");
    assert_eq!(r.status, 200, "{}", host.log());
    assert_eq!(r.text(), "tag-chain: outer\n");
    assert_eq!(r.header("x-tag-app"), Some("inner-app"));
    assert_eq!(r.header("x-tag-chain-out"), Some("outer"));
}

/// `Config::expect_keys`: a misspelt plugin key is a start-up error at that
/// key's own line, as the built-ins' are.
#[test]
fn a_misspelt_plugin_key_is_a_start_up_error_at_its_line() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("deploy.ini"),
        "[app:main]\nuse = egg:hello\n\ngreetng = Hi\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plughost"))
        .current_dir(dir.path())
        .args(["check", "deploy.ini"])
        .env("PLUGHOST_PLUGIN_PATH", plugins())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("deploy.ini:4: [app:main] greetng: ")
            && stderr.contains("unknown key `greetng`; this plugin's keys are: greeting"),
        "{stderr}"
    );
}

/// `Config::setting`: a key that [DEFAULT] also defines is dropped from the
/// section's local config (as Paste does) but still reaches the plugin.
#[test]
fn a_setting_from_default_reaches_the_plugin() {
    let (host, _dir) =
        Host::start("[DEFAULT]\ngreeting = From the defaults\n\n[app:main]\nuse = egg:hello\n");
    assert_eq!(host.get("/").text(), "From the defaults");
}

/// `log::info!` in a plugin (hello logs once per instance) is a line of the
/// host's log, under the plugin's name.
#[test]
fn a_plugin_logs_through_the_log_crate_into_the_host_log() {
    let (host, _dir) = Host::start("[app:main]\nuse = egg:hello\ngreeting = Hi\n");
    assert!(
        host.wait_log(
            "ready to greet with \"Hi\"",
            std::time::Duration::from_secs(5)
        ),
        "{}",
        host.log()
    );
    assert!(
        host.log().contains("plugin=\"hello\"") || host.log().contains("plugin=hello"),
        "{}",
        host.log()
    );
}
