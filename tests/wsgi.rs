//! The WSGI bridge (plugins/wsgi) through the real binary: Python apps under
//! `egg:plughost#wsgi`, every test app wrapped in `wsgiref.validate`, raw HTTP.

mod support;

use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use support::python::{self, Venv};
use support::{connect, read_response_with, request, write_request, wsgi, Host};

/// A config mounting `app` (a `module:callable` of tests/wsgi_apps).
fn config(app: &str, extra: &str) -> String {
    format!(
        "[app:main]\nuse = egg:plughost#wsgi\napp = {app}\npython_path = {}\n{extra}",
        wsgi::apps_dir().display()
    )
}

/// The PEP 3333 test app with the Python the bridge was built against.
fn pep3333(dir: &Path) -> Host {
    let marks = dir.to_str().unwrap();
    wsgi::serve(
        dir,
        &config("pep3333:app", ""),
        None,
        &[("WSGI_TEST_MARKS", marks)],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn flask_venv() -> Option<Venv> {
    let venv = python::venv("wsgi-flask", &["flask"]);
    if venv.is_none() {
        support::skip_unless_ci(
            "python3 -m venv with pip (python3-venv) is needed for the Flask test",
        );
    }
    venv
}

#[test]
fn the_environ_is_complete_and_passes_wsgiref_validate() {
    let dir = support::tempdir();
    let host = pep3333(dir.path());
    let r = host.request(
        "GET",
        "/environ?a=1&b=%C3%A9",
        &[
            ("Cookie", "x=1"),
            ("Cookie", "y=2"),
            ("X-Custom", "caf\u{e9}"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), host.log());
    let env = r.json();
    for (key, want) in [
        ("REQUEST_METHOD", "GET"),
        ("SCRIPT_NAME", ""),
        ("PATH_INFO", "/environ"),
        ("QUERY_STRING", "a=1&b=%C3%A9"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("HTTP_COOKIE", "x=1; y=2"),
        // Native strings: the UTF-8 bytes as latin-1 code points.
        ("HTTP_X_CUSTOM", "caf\u{c3}\u{a9}"),
        ("wsgi.url_scheme", "http"),
    ] {
        assert_eq!(env[key], want, "{key}: {env}");
    }
    assert_eq!(env["SERVER_PORT"], host.port.to_string());
    assert_eq!(env["wsgi.version"], serde_json::json!([1, 0]));
    assert_eq!(env["wsgi.multithread"], true);
    assert_eq!(env["wsgi.multiprocess"], false);
    assert_eq!(env["wsgi.run_once"], false);
    assert_eq!(
        env["wsgi.input.methods"],
        serde_json::json!(["read", "readline", "readlines", "__iter__"])
    );
    assert!(
        env.get("CONTENT_LENGTH").is_none(),
        "no body, no CONTENT_LENGTH: {env}"
    );
    assert!(!host.log().contains("WSGIWarning"), "{}", host.log());
}

#[test]
fn wsgi_input_reads_lines_sizes_and_chunked_bodies() {
    let dir = support::tempdir();
    let host = pep3333(dir.path());
    let r = host.request("POST", "/lines", &[], b"first\nsecond\nthird\nlast");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!(["first\n", "sec", ["ond\n", "third\n", "last"]])
    );
    let r = host.request("POST", "/readlines", &[], b"a\nb\n");
    assert_eq!(r.json(), serde_json::json!(["a\n", "b\n"]));

    // A chunked upload: the app reads exactly the body, then EOF.
    let mut s = connect(host.port).unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .unwrap();
    let r = support::read_response(&mut BufReader::new(s), false).unwrap();
    assert_eq!(r.status, 200, "{}", host.log());
    assert_eq!(
        r.text(),
        "11 b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    );
}

#[test]
fn start_response_write_and_exc_info_follow_pep_3333() {
    let dir = support::tempdir();
    let host = pep3333(dir.path());
    let r = host.get("/write");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "written then returned")
    );

    // Before the head went out, exc_info replaces the status.
    let r = host.get("/exc_info");
    assert_eq!(
        (r.status, r.text().as_str()),
        (503, "sorry"),
        "{}",
        host.log()
    );

    // A second call without exc_info is the app's error: a 500.
    let r = host.get("/twice");
    assert_eq!(r.status, 500);
    // The log is read from the host's stderr by another thread.
    assert!(
        host.wait_log(
            "start_response called a second time",
            Duration::from_secs(10)
        ),
        "{}",
        host.log()
    );
}

#[test]
fn exceptions_are_500s_with_tracebacks_and_the_host_keeps_serving() {
    let dir = support::tempdir();
    let host = pep3333(dir.path());
    for path in ["/boom", "/exit", "/interrupt"] {
        let r = host.get(path);
        assert_eq!(r.status, 500, "{path}: {}", r.text());
        let ok = host.get("/environ");
        assert_eq!(ok.status, 200, "after {path}: {}", host.log());
    }
    let log = host.log();
    assert!(log.contains("Traceback (most recent call last)"), "{log}");
    assert!(
        log.contains("ValueError: kaboom from the test app"),
        "{log}"
    );
    assert!(log.contains("SystemExit: 3"), "{log}");
    assert!(log.contains("KeyboardInterrupt"), "{log}");

    // An error after the first chunk: a 500 while the host still holds the head
    // (it reads ahead), else a response cut short; never a complete 200.
    let late = request(host.port, "GET", "/late-error", &[], b"");
    assert!(
        late.as_ref().map_or(true, |r| r.status == 500),
        "a failed body must not look complete: {late:?}"
    );
    assert!(
        host.wait_log("failed mid-body", Duration::from_secs(5)),
        "{}",
        host.log()
    );
    assert_eq!(host.get("/environ").status, 200);
}

#[test]
fn wsgi_errors_go_to_the_host_log_and_file_wrapper_serves_files() {
    let dir = support::tempdir();
    let host = pep3333(dir.path());
    assert_eq!(host.get("/errors").text(), "logged");
    assert!(
        host.wait_log("a line for the host log", Duration::from_secs(5)),
        "{}",
        host.log()
    );

    let r = host.get("/file");
    assert_eq!(r.status, 200);
    let source = std::fs::read(wsgi::apps_dir().join("pep3333.py")).unwrap();
    assert_eq!(r.body, source);
}

#[test]
fn c_extension_modules_import() {
    let dir = support::tempdir();
    let host = pep3333(dir.path());
    let r = host.get("/imports");
    assert_eq!(r.status, 200, "{}", host.log());
    let v = r.json();
    assert_eq!(v["sqlite"], 2);
    assert_eq!(v["ssl"], "OpenSSL");
}

/// Wait for `close()`'s mark file.
fn wait_mark(path: &Path) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if std::fs::read_to_string(path).is_ok_and(|t| t == "closed") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn close_is_called_at_the_end_and_when_the_client_disconnects() {
    let dir = support::tempdir();
    let host = pep3333(dir.path());
    let r = host.request("GET", "/stream?3", &[("X-Mark", "done")], b"");
    assert_eq!((r.status, r.body.len()), (200, 3 << 20));
    assert!(wait_mark(&dir.path().join("stream-done")), "{}", host.log());

    // 1000 MiB asked for; the client reads a little and goes away.
    let mut s = connect(host.port).unwrap();
    write_request(
        &mut s,
        "GET",
        "/stream?1000",
        &[("X-Mark", "gone")],
        None,
        true,
    )
    .unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    s.read_exact(&mut buf).unwrap();
    drop(s);
    assert!(
        wait_mark(&dir.path().join("stream-gone")),
        "close() after a disconnect\n{}",
        host.log()
    );
    assert_eq!(host.get("/environ").status, 200);
}

#[test]
fn a_100_mib_response_and_upload_stream_with_bounded_memory() {
    const MIB: usize = 1 << 20;
    let dir = support::tempdir();
    let host = pep3333(dir.path());
    let before = host.memory_kib("VmRSS:");

    let mut s = connect(host.port).unwrap();
    write_request(&mut s, "GET", "/stream?100", &[], None, true).unwrap();
    let mut got = 0usize;
    let r = read_response_with(
        &mut BufReader::new(s),
        false,
        &mut |chunk: &[u8], _: &mut Vec<u8>| got += chunk.len(),
    )
    .unwrap();
    assert_eq!((r.status, got), (200, 100 * MIB));

    let body = vec![b'u'; 100 * MIB];
    let r = host.request("POST", "/upload", &[], &body);
    assert_eq!(r.status, 200, "{}", host.log());
    assert!(
        r.text().starts_with(&format!("{} ", 100 * MIB)),
        "{}",
        r.text()
    );

    let peak = host.memory_kib("VmHWM:");
    println!("wsgi 100 MiB: RSS before {before} KiB, peak {peak} KiB");
    // Python, the app and the host's buffers: far below the 100 MiB that went through.
    assert!(
        peak < before + 48 * 1024,
        "peak RSS {peak} KiB (was {before} KiB)"
    );
}

#[test]
fn two_hundred_concurrent_requests_all_succeed() {
    let dir = support::tempdir();
    let host = pep3333(dir.path());
    let port = host.port;
    let threads: Vec<_> = (0..200)
        .map(|_| std::thread::spawn(move || request(port, "GET", "/sleep?0.02", &[], b"")))
        .collect();
    let ok = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|r| {
            r.as_ref()
                .is_ok_and(|r| r.status == 200 && r.body == b"slept")
        })
        .count();
    assert_eq!(ok, 200, "{}", host.log());
}

#[test]
fn a_factory_with_parentheses_is_called() {
    let dir = support::tempdir();
    let host = wsgi::serve(dir.path(), &config("pep3333:factory()", ""), None, &[]).unwrap();
    assert_eq!(host.get("/write").text(), "written then returned");
}

#[test]
fn a_cache_hit_in_front_of_python_never_enters_python() {
    let dir = support::tempdir();
    let extra = "filter-with = cache\n\n[filter:cache]\nuse = egg:plughost#cache\ncache_dir = cache\nstatus_header = X-Cache\n";
    let host = wsgi::serve(dir.path(), &config("pep3333:app", extra), None, &[]).unwrap();
    let first = host.get("/page");
    assert_eq!(first.status, 200, "{}", host.log());
    let second = host.get("/page");
    assert_eq!(
        second.header("x-cache"),
        Some("HIT"),
        "{:?}",
        second.headers
    );
    // The page carries Python's call count: the same bytes, so Python did not run.
    assert_eq!(first.body, second.body);
    assert_eq!(host.get("/other").status, 404);
}

#[test]
fn start_up_errors_name_the_key_and_the_python_error() {
    let dir = support::tempdir();
    let err = wsgi::serve(dir.path(), &config("no_such_module:app", ""), None, &[])
        .err()
        .expect("a missing module stops start-up");
    assert!(err.contains("[app:main]") && err.contains("`app`"), "{err}");
    assert!(
        err.contains("ModuleNotFoundError: No module named 'no_such_module'"),
        "{err}"
    );

    let err = wsgi::serve(dir.path(), &config("pep3333:app", "ap = typo\n"), None, &[])
        .err()
        .expect("an unknown key stops start-up");
    assert!(err.contains("unknown key `ap`"), "{err}");
}

#[test]
fn a_venv_of_another_python_version_is_a_start_up_error_naming_both() {
    let dir = support::tempdir();
    // An "interpreter" answering what Python 2.7 would.
    let fake = dir.path().join("python2.7");
    std::fs::write(
        &fake,
        "#!/bin/sh\nprintf '2\\n7\\n/opt/old\\n/opt/old/lib\\n'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let err = wsgi::serve(
        dir.path(),
        &config("pep3333:app", ""),
        None,
        &[("PLUGHOST_PYTHON", fake.to_str().unwrap())],
    )
    .err()
    .expect("a version mismatch stops start-up");
    assert!(err.contains("Python 2.7"), "{err}");
    assert!(err.contains("embeds Python 3."), "{err}");

    // `--python` names it the same way.
    let err = wsgi::serve_args(
        dir.path(),
        &config("pep3333:app", ""),
        None,
        &[],
        &["--python", fake.to_str().unwrap()],
    )
    .err()
    .expect("a version mismatch stops start-up");
    assert!(
        err.contains("--python / $PLUGHOST_PYTHON names") && err.contains("Python 2.7"),
        "{err}"
    );
}

#[test]
fn a_flask_app_from_a_venv() {
    let Some(venv) = flask_venv() else { return };
    let dir = support::tempdir();
    let apps = wsgi::apps_dir();
    let apps = apps.display();
    let config = format!(
        "[composite:main]\nuse = egg:Paste#urlmap\n/ = raw\n/checked = checked\n\n\
         [app:checked]\nuse = egg:plughost#wsgi\napp = flask_app:app\npython_path = {apps}\n\n\
         [app:raw]\nuse = egg:plughost#wsgi\napp = flask_app:raw\npython_path = {apps}\n"
    );
    let host = wsgi::serve(dir.path(), &config, Some(&venv), &[]).unwrap_or_else(|e| panic!("{e}"));
    let r = host.get("/checked/hello/ada?q=1");
    assert_eq!(r.status, 200, "{}", host.log());
    assert_eq!(
        r.json(),
        serde_json::json!({"greeting": "hello ada", "query": "1"})
    );
    assert_eq!(
        host.get("/checked/stream").text(),
        "line 0\nline 1\nline 2\n"
    );
    assert_eq!(host.get("/checked/missing").status, 404);

    let r = host.request(
        "POST",
        "/form",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"a=1&b=two",
    );
    assert_eq!(r.status, 200, "{}", host.log());
    assert_eq!(
        r.json(),
        serde_json::json!({"fields": {"a": "1", "b": "two"}, "length": 9})
    );
}

/// A pipeline: native filter `tag`, the Python middleware, then `bottom`.
fn pipeline(bottom: &str) -> String {
    let apps = wsgi::apps_dir();
    format!(
        "[pipeline:main]\npipeline = tagger stamp bottom\n\n\
         [filter:tagger]\nuse = egg:tag\ntag = native\n\n\
         [filter:stamp]\nuse = egg:plughost#wsgi-filter\nfilter = middleware:checked\npython_path = {}\n\n\
         {bottom}",
        apps.display()
    )
}

#[test]
fn a_python_filter_wraps_a_native_app_inside_a_native_filter() {
    let dir = support::tempdir();
    let host = wsgi::serve(
        dir.path(),
        &pipeline("[app:bottom]\nuse = egg:echo\n"),
        None,
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let body = vec![b'b'; 300_000];
    let r = host.request(
        "POST",
        "/seen?x=1",
        &[("Content-Type", "text/plain")],
        &body,
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), host.log());
    let seen = r.json();
    // The native app got what the Python filter passed on, body included.
    assert_eq!(seen["headers"]["x-py-filter"], "py", "{seen}");
    assert_eq!(seen["headers"]["x-tag-chain"], "native", "{seen}");
    assert_eq!(seen["path_info"], "/seen");
    assert_eq!(seen["query_string"], "x=1");
    assert_eq!(seen["body_len"], 300_000);
    assert_eq!(r.header("x-py-filter-out"), Some("py"));
    assert_eq!(r.header("x-tag-chain-out"), Some("native"));

    // The Python filter may answer itself.
    let r = host.get("/py-only");
    assert_eq!((r.status, r.text().as_str()), (200, "answered in Python"));

    // A large native body streams up through Python.
    let r = host.request("GET", "/big", &[("X-Echo-Bytes", "5000000")], b"");
    assert_eq!((r.status, r.body.len()), (200, 5_000_000), "{}", host.log());
}

#[test]
fn a_native_filter_and_a_python_filter_wrap_a_python_app() {
    let dir = support::tempdir();
    let bottom = format!(
        "[app:bottom]\nuse = egg:plughost#wsgi\napp = pep3333:app\npython_path = {}\n",
        wsgi::apps_dir().display()
    );
    let host =
        wsgi::serve(dir.path(), &pipeline(&bottom), None, &[]).unwrap_or_else(|e| panic!("{e}"));
    let r = host.get("/environ");
    assert_eq!(r.status, 200, "{}", host.log());
    let env = r.json();
    assert_eq!(env["HTTP_X_TAG_CHAIN"], "native");
    assert_eq!(env["HTTP_X_PY_FILTER"], "py");
    assert_eq!(r.header("x-tag-chain-out"), Some("native"));
    assert_eq!(r.header("x-py-filter-out"), Some("py"));
    let r = host.request("POST", "/upload", &[], b"hello world");
    assert!(r.text().starts_with("11 b94d27b9"), "{}", r.text());
}

/// A venv with Pyramid and the tiny project tests/wsgi_apps/tinypyr installed
/// by pip (from a copy, so the build leaves nothing in the source tree).
fn pyramid_venv() -> Option<Venv> {
    let src = wsgi::apps_dir().join("tinypyr");
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for name in ["pyproject.toml", "tinypyr.py"] {
        for b in std::fs::read(src.join(name)).unwrap() {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    let copy = support::target_dir().join(format!("test-venvs/src-tinypyr-{hash:016x}"));
    std::fs::create_dir_all(&copy).unwrap();
    for name in ["pyproject.toml", "tinypyr.py"] {
        std::fs::copy(src.join(name), copy.join(name)).unwrap();
    }
    let venv = python::venv("wsgi-pyramid", &["pyramid", copy.to_str().unwrap()]);
    if venv.is_none() {
        support::skip_unless_ci(
            "python3 -m venv with pip (python3-venv) is needed for the Pyramid test",
        );
    }
    venv
}

#[test]
fn a_pyramid_development_ini_runs_unchanged_behind_the_cache() {
    let Some(venv) = pyramid_venv() else { return };
    let dir = support::tempdir();
    let ini = std::fs::read_to_string(wsgi::apps_dir().join("tinypyr/development.ini")).unwrap();
    // `use = egg:tinypyr`: no libtinypyr.so, so its paste.app_factory entry point.
    let host = wsgi::serve(dir.path(), &ini, Some(&venv), &[]).unwrap_or_else(|e| panic!("{e}"));
    let first = host.get("/page/ada");
    assert_eq!(first.status, 200, "{}\n{}", first.text(), host.log());
    let page = first.json();
    assert_eq!(page["greeting"], "hello from pyramid");
    assert_eq!(page["name"], "ada");
    let again = host.get("/page/ada");
    assert_eq!(again.header("x-cache"), Some("HIT"), "{:?}", again.headers);
    assert_eq!(again.body, first.body, "a hit never enters Python");
    assert_eq!(host.get("/nope").status, 404);
    // The log says where the app came from.
    let log = host.log();
    assert!(
        log.contains(
            "paste.app_factory entry point tinypyr:main of Python distribution tinypyr 0.1, from"
        ) && log.contains("tinypyr.py"),
        "{log}"
    );
}

#[test]
fn paste_entry_points_mount_python_filters_and_apps() {
    let Some(venv) = pyramid_venv() else { return };
    let dir = support::tempdir();
    let config = "[pipeline:main]\npipeline = byuse bykey wrapped app\n\n\
                  [filter:byuse]\nuse = egg:tinypyr#stamp\nlabel = by-use\n\n\
                  [filter:bykey]\nuse = egg:plughost#wsgi-filter\npaste = egg:tinypyr#stamp\nlabel = by-key\n\n\
                  [filter:wrapped]\nuse = egg:tinypyr#wrap\n\n\
                  [app:app]\nuse = egg:plughost#wsgi\npaste = egg:tinypyr\ngreeting = via paste\n";
    let host = wsgi::serve(dir.path(), config, Some(&venv), &[]).unwrap_or_else(|e| panic!("{e}"));
    let r = host.get("/page/x");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), host.log());
    assert_eq!(r.json()["greeting"], "via paste");
    assert_eq!(r.header_all("x-stamp"), ["wrap", "by-key", "by-use"]);

    // check names each entry point's distribution, version, object and file.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plughost"))
        .args(["check", "--json"])
        .arg(dir.path().join("deploy.ini"))
        .env("PLUGHOST_PLUGIN_PATH", wsgi::bridge())
        .env("VIRTUAL_ENV", &venv.dir)
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let byuse = &doc["app"];
    assert_eq!(byuse["section"], "filter:byuse", "{doc}");
    let py = &byuse["python"];
    assert_eq!(py["distribution"], "tinypyr", "{doc}");
    assert_eq!(py["version"], "0.1");
    assert_eq!(py["group"], "paste.filter_factory");
    assert_eq!(py["object"], "tinypyr:stamp_factory");
    assert!(
        py["file"]
            .as_str()
            .unwrap()
            .ends_with("site-packages/tinypyr.py"),
        "{py}"
    );
    assert!(
        byuse["plugin"]
            .as_str()
            .unwrap()
            .ends_with("libplughost_wsgi.so"),
        "{doc}"
    );
    let wrapped = &doc["app"]["next"]["next"];
    assert_eq!(
        wrapped["python"]["group"], "paste.filter_app_factory",
        "{doc}"
    );

    // Neither a native library nor a Python distribution: the native search error.
    let err = wsgi::serve(
        dir.path(),
        "[app:main]\nuse = egg:no_such_dist\n",
        Some(&venv),
        &[],
    )
    .err()
    .expect("nothing provides egg:no_such_dist");
    assert!(err.contains("libno_such_dist.so"), "{err}");
}

/// The original Python middleware this host's cache reproduces: wsgi_cache 0.2.3
/// from PyPI, unmodified, mounted through its own `paste.filter_app_factory` in
/// front of a native app (with `cPickle.py` in tests/wsgi_apps supplying the two
/// Python 2 names it uses).
#[test]
fn the_original_wsgi_cache_middleware_caches_a_native_app() {
    let Some(venv) = python::venv("wsgi-cache-orig", &["wsgi_cache==0.2.3"]) else {
        support::skip_unless_ci("python3 -m venv with pip is needed for wsgi_cache");
        return;
    };
    let dir = support::tempdir();
    let config = format!(
        "[app:main]\nuse = egg:echo\nfilter-with = pycache\n\n\
         [filter:pycache]\nuse = egg:plughost#wsgi-filter\npaste = egg:wsgi_cache#middleware\n\
         cache_dir = pycache\npython_path = {}\n",
        wsgi::apps_dir().display()
    );
    let host = wsgi::serve(dir.path(), &config, Some(&venv), &[]).unwrap_or_else(|e| panic!("{e}"));
    let first = host.get("/docs/page.html");
    assert_eq!(first.status, 200, "{}\n{}", first.text(), host.log());
    // The miss was stored by the Python middleware under its cache_dir (relative
    // to `here`), as the native app answered it.
    let stored = std::fs::read(dir.path().join("pycache/docs/page.html"))
        .unwrap_or_else(|e| panic!("wsgi_cache stored nothing: {e}\n{}", host.log()));
    let report: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(
        (report["path_info"].as_str(), report["counter"].as_u64()),
        (Some("/docs/page.html"), Some(1))
    );
    // The next request is a hit: the stored bytes, typed as wsgi_cache types every
    // hit, and the app is not called (its counter would say 2).
    let hit = host.get("/docs/page.html");
    assert_eq!(hit.status, 200);
    assert_eq!(hit.body, stored);
    assert_eq!(hit.header("content-type"), Some("text/html"));
    // A query string always goes to the app, never to the cache.
    let direct = host.get("/docs/page.html?x=1").json();
    assert_eq!(direct["counter"], 2, "{direct}");
}

/// `use = call:module:attr` and Paste's protocol keys (`paste.app_factory =
/// module:attr`, `paste.filter_factory`, `paste.filter_app_factory`) load
/// Python code through the bridge, with Paste's arguments; `check` names the
/// object.
#[test]
fn call_and_protocol_keys_load_python_factories() {
    let dir = support::tempdir();
    let apps = wsgi::apps_dir();
    let py = apps.display();
    let config = format!(
        "[pipeline:main]\npipeline = bycall byfa bykey app\n\n\
         [filter:bycall]\nuse = call:middleware:filter_factory\nlabel = by-call\npython_path = {py}\n\n\
         [filter:byfa]\npaste.filter_app_factory = middleware:filter_app_factory\nlabel = by-filter-app\npython_path = {py}\n\n\
         [filter:bykey]\npaste.filter_factory = middleware:filter_factory\nlabel = by-key\npython_path = {py}\n\n\
         [app:app]\npaste.app_factory = middleware:app_factory\ngreeting = via protocol key\ncolour = blue\npython_path = {py}\n"
    );
    let host = wsgi::serve(dir.path(), &config, None, &[]).unwrap_or_else(|e| panic!("{e}"));
    let r = host.get("/x");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), host.log());
    let seen = r.json();
    assert_eq!(seen["greeting"], "via protocol key");
    // The factory's local_conf is the section's keys, without the bridge's.
    assert_eq!(seen["local"], serde_json::json!({"colour": "blue"}));
    assert_eq!(seen["here"], dir.path().display().to_string());
    assert_eq!(
        r.header_all("x-py-filter-out"),
        ["by-key", "by-filter-app", "by-call"]
    );
    drop(host);

    // `use = call:` in an app section: the app_factory protocol.
    let config = format!(
        "[app:main]\nuse = call:middleware:app_factory\ngreeting = by call\npython_path = {py}\n"
    );
    let host = wsgi::serve(dir.path(), &config, None, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(host.get("/").json()["greeting"], "by call");
    drop(host);

    // check shows the Python object, not only the bridge library.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plughost"))
        .args(["check", "--json"])
        .arg(dir.path().join("deploy.ini"))
        .env("PLUGHOST_PLUGIN_PATH", wsgi::bridge())
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["app"]["entry"], "call:middleware:app_factory", "{doc}");
}

#[test]
fn python_protocol_keys_follow_pastes_rules() {
    let dir = support::tempdir();
    for (config, needle) in [
        (
            "[app:main]\npaste.app_factory = m:a\npaste.composite_factory = m:c\n",
            "deploy.ini:3: [app:main] paste.composite_factory: Python composite factories are not supported",
        ),
        (
            "[app:main]\npaste.app_factory = m:a\npaste.app_factory2 = m:b\npaste.filter_factory = m:f\n",
            "paste.filter_factory: is not a protocol of this section's kind",
        ),
        (
            "[app:main]\nuse = egg:echo\npaste.app_factory = m:a\n",
            "deploy.ini:3: [app:main] paste.app_factory: names the code a second time",
        ),
        ("[app:main]\npaste.app_factory = nocolon\n", "`nocolon`: expected module:function"),
        ("[app:main]\nuse = call:nocolon\n", "expected call:module:function"),
    ] {
        std::fs::write(dir.path().join("deploy.ini"), config).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_plughost"))
            .arg("check")
            .arg(dir.path().join("deploy.ini"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{config}");
        assert!(err.contains(needle), "{config}\n{err}");
    }
}

/// `--reload` with a Python app: a changed `.py` file restarts the process in
/// place (a new interpreter imports the new code; the old process drains),
/// and no client request fails meanwhile.
#[test]
fn a_python_change_restarts_in_place_under_load_with_no_failed_request() {
    let dir = support::tempdir();
    let module = |version: &str| {
        format!(
            "def app(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'{version}']\n"
        )
    };
    std::fs::write(dir.path().join("hotapp.py"), module("one")).unwrap();
    let config = "[app:main]\nuse = egg:plughost#wsgi\napp = hotapp:app\npython_path = .\n";
    let host = wsgi::serve_args(dir.path(), config, None, &[], &["--reload"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(host.get("/").text(), "one");
    let load = support::load::Load::start(host.port, "/", 4);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(dir.path().join("hotapp.py"), module("two")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let new = loop {
        if let Some(pid) = support::load::handed_to(&host.log()) {
            break support::load::Adopted(pid);
        }
        assert!(Instant::now() < deadline, "no restart:\n{}", host.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    while host.get("/").text() != "two" {
        assert!(Instant::now() < deadline, "the new code is not served");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failures) = load.stop();
    drop(new);
    assert!(ok > 20, "only {ok} requests answered");
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}
