//! Hot reload under load: the configuration and a plugin library change 20
//! times while clients keep sending requests; none may fail.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

/// Within this time a change must be visible (the bound).
const VISIBLE_WITHIN: Duration = Duration::from_secs(2);

fn config(greeting: &str, tagged: bool) -> String {
    let filter = if tagged { "filter-with = t\n" } else { "" };
    format!(
        "[composite:main]\nuse = egg:plughost#urlmap\n/ = hello\n/c = c\n\n\
         [app:hello]\nuse = egg:hello\ngreeting = {greeting}\n{filter}\n\
         [app:c]\nuse = lib:libc_hello.so\n\n\
         [filter:t]\nuse = egg:tag\ntag = t\n\n\
         [server:main]\nthreads = 4\n"
    )
}

fn build_c(dir: &Path, text: &str) {
    let define = format!("-DC_HELLO_DEFAULT=\"{text}\"");
    compile_c(
        &repo_dir().join("plugins/c-hello/hello.c"),
        "c-hello",
        dir,
        &[&define],
    );
}

/// Poll until `check` holds, and say how long it took.
fn wait_for(host: &Host, what: &str, check: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < VISIBLE_WITHIN * 3 {
        if check() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{what} not visible after {:?}\nlog:\n{}",
        start.elapsed(),
        host.log()
    );
}

#[test]
fn twenty_reloads_under_load_with_no_failed_request() {
    let dir = tempdir();
    build_c(dir.path(), "build 0");
    let host = Host::try_start_in(dir.path(), &config("greeting 0", false), &["--reload"]).unwrap();
    let port = host.port;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            std::thread::spawn(move || {
                let path = if i % 2 == 0 { "/" } else { "/c" };
                while !stop.load(Ordering::Relaxed) {
                    match request(port, "GET", path, &[], b"") {
                        Ok(r) if r.status == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => failures
                            .lock()
                            .unwrap()
                            .push(format!("{path}: status {}", r.status)),
                        Err(e) => failures.lock().unwrap().push(format!("{path}: {e}")),
                    }
                }
            })
        })
        .collect();

    let mut slowest = Duration::ZERO;
    for i in 1..=20 {
        match i % 5 {
            // A new greeting.
            1 | 3 => {
                let greeting = format!("greeting {i}");
                std::fs::write(dir.path().join("deploy.ini"), config(&greeting, i % 2 == 1))
                    .unwrap();
                slowest = slowest.max(wait_for(&host, &greeting, || {
                    host.get("/").text() == greeting
                }));
            }
            // Add or remove the tag filter.
            2 => {
                std::fs::write(
                    dir.path().join("deploy.ini"),
                    config(&format!("greeting {i}"), true),
                )
                .unwrap();
                slowest = slowest.max(wait_for(&host, "tag filter added", || {
                    host.get("/").header("x-tag-chain-out") == Some("t")
                }));
            }
            // Rebuild the C plugin in place at the same path.
            4 => {
                let text = format!("build {i}");
                build_c(dir.path(), &text);
                slowest = slowest.max(wait_for(&host, &text, || host.get("/c").text() == text));
            }
            // Remove the filter again, after one broken edit that must change nothing.
            _ => {
                let before = host.get("/").text();
                std::fs::write(
                    dir.path().join("deploy.ini"),
                    "[composite:main]\nuse = egg:plughost#urlmap\n/ = missing-section\n",
                )
                .unwrap();
                wait_for(&host, "the broken edit's error", || {
                    host.log().contains("reload failed")
                });
                assert_eq!(
                    host.get("/").text(),
                    before,
                    "a failed reload changed the pipeline"
                );
                std::fs::write(
                    dir.path().join("deploy.ini"),
                    config(&format!("greeting {i}"), false),
                )
                .unwrap();
                slowest = slowest.max(wait_for(&host, "tag filter removed", || {
                    let r = host.get("/");
                    r.header("x-tag-chain-out").is_none() && r.text() == format!("greeting {i}")
                }));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    eprintln!(
        "{} requests succeeded during 20 reloads; slowest change became visible after {slowest:?}",
        ok.load(Ordering::Relaxed)
    );
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok.load(Ordering::Relaxed) > 100, "the clients barely ran");
    assert!(
        slowest < VISIBLE_WITHIN,
        "a change took {slowest:?} to become visible"
    );
    assert!(
        host.log().contains("missing-section"),
        "the broken edit's error names the problem"
    );
}

#[test]
fn sighup_reloads_without_watching() {
    let dir = tempdir();
    let host = Host::start_in(dir.path(), "[app:main]\nuse = egg:hello\ngreeting = one\n");
    assert_eq!(host.get("/").text(), "one");
    std::fs::write(
        dir.path().join("deploy.ini"),
        "[app:main]\nuse = egg:hello\ngreeting = two\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        host.get("/").text(),
        "one",
        "without --reload nothing changes until SIGHUP"
    );
    signal(host.pid(), "HUP");
    wait_for(&host, "the SIGHUP reload", || host.get("/").text() == "two");
}
