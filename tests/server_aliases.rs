//! `[server:]` sections written for gunicorn and pyramid's wsgiref, served by
//! the built-in server: their keys mapped, gunicorn's others warned about.

mod support;

use std::process::Command;

use support::*;

/// `plughost check` on a config: (success, stdout + stderr).
fn check(dir: &std::path::Path, server: &str) -> (bool, String) {
    let ini = dir.join("deploy.ini");
    std::fs::write(
        &ini,
        format!("[app:main]\nuse = egg:echo\n\n[server:main]\n{server}"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_plughost"))
        .arg("check")
        .arg(&ini)
        .env("PLUGHOST_PLUGIN_PATH", plugins())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn gunicorn_sections_map_bind_workers_and_threads() {
    let dir = tempdir();
    let (ok, text) = check(
        dir.path(),
        "use = egg:gunicorn#main\nbind = 127.0.0.1:6543 unix:app.sock\nworkers = 3\nthreads = 4\n\
         worker_class = gthread\naccesslog = -\n",
    );
    assert!(ok, "{text}");
    let sock = std::fs::canonicalize(dir.path()).unwrap().join("app.sock");
    assert!(
        text.contains(&format!(
            "server: listen 127.0.0.1:6543 unix:{} threads 12",
            sock.display()
        )) || text.contains(&format!(
            "server: listen 127.0.0.1:6543 unix:{} threads 12",
            dir.path().join("app.sock").display()
        )),
        "{text}"
    );
    assert!(
        text.contains("key `worker_class` is a gunicorn setting with no effect"),
        "{text}"
    );
    assert!(
        text.contains("key `accesslog` is a gunicorn setting with no effect"),
        "{text}"
    );

    let (ok, text) = check(dir.path(), "use = egg:gunicorn#main\n");
    assert!(ok, "{text}");
    assert!(
        text.contains("server: listen 127.0.0.1:8000 threads 8"),
        "{text}"
    );

    let (ok, text) = check(dir.path(), "use = egg:gunicorn#main\nworkerz = 2\n");
    assert!(!ok, "a typo is still an error: {text}");
    assert!(text.contains("[server:main] workerz"), "{text}");
    let (ok, text) = check(dir.path(), "use = egg:gunicorn#main\nworkers = many\n");
    assert!(!ok && text.contains("[server:main] workers"), "{text}");
}

#[test]
fn pyramid_wsgiref_takes_host_and_port() {
    let dir = tempdir();
    let (ok, text) = check(
        dir.path(),
        "use = egg:pyramid#wsgiref\nhost = 0.0.0.0\nport = 6544\n",
    );
    assert!(ok, "{text}");
    assert!(text.contains("server: listen 0.0.0.0:6544"), "{text}");
}

#[test]
fn a_gunicorn_section_serves() {
    let (host, _dir) = Host::start(
        "[app:main]\nuse = egg:echo\n\n[server:main]\nuse = egg:gunicorn#main\nbind = 127.0.0.1:0\nworkers = 2\nthreads = 2\n",
    );
    assert_eq!(host.get("/hi").json()["path_info"], "/hi");
}
