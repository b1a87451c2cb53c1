//! Operator safety (issue 11): mistakes an operator can make with a running
//! host (a system cache_dir, a purge of `/`, `rm -rf cache`, a library copied
//! over in place) and what crashes leave behind. Real binary, real HTTP, real CLI.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

/// The marker a cache writes in the directory it owns.
const MARKER: &str = ".plughost-cache";

/// For tests whose pages are echo's JSON reports (the cache stores only its own type).
const JSON_PAGES: &str = "content_type = application/json\n";

fn echo_cache(cache_dir: &str, extra: &str) -> String {
    format!(
        "[app:main]\nuse = egg:echo\nfilter-with = cache\n\n\
         [filter:cache]\nuse = egg:plughost#cache\ncache_dir = {cache_dir}\nstatus_header = X-Cache\n{extra}"
    )
}

fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn plughost(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plughost"))
        .args(args)
        .env("PLUGHOST_PLUGIN_PATH", plugins())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Under CI=true a test whose real component is missing fails instead of skipping.
fn missing(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and {what}");
    }
    eprintln!("skipped: {what}");
}

/// A tmpfs mounted for a test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs(at.to_owned()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

// ---------------------------------------------------------------------------
// 1. Ownership of cache_dir.

#[test]
fn cache_dir_etc_is_refused_and_never_serves_shadow() {
    let dir = tempdir();
    for (system, extra) in ["/etc", "/", "/usr", "/var", "/tmp", "/proc"]
        .into_iter()
        .flat_map(|s| [(s, ""), (s, "adopt = true\n")])
    {
        let config = echo_cache(system, extra);
        match Host::try_start_in(dir.path(), &config, &[]) {
            Ok(host) => {
                let r = host.get("/shadow");
                panic!(
                    "cache_dir = {system} ({extra}) was accepted; GET /shadow: {} {:?} {} bytes",
                    r.status,
                    r.header("x-cache"),
                    r.body.len()
                );
            }
            Err(e) => {
                assert!(e.contains("deploy.ini:"), "{system}: names the file: {e}");
                assert!(
                    e.contains("[filter:cache]"),
                    "{system}: names the section: {e}"
                );
                assert!(e.contains("cache_dir"), "{system}: names the key: {e}");
                assert!(e.contains("system directory"), "{system}: says why: {e}");
            }
        }
        let out = plughost(&["check", &dir.path().join("deploy.ini").to_string_lossy()]);
        assert!(!out.status.success(), "check accepted cache_dir = {system}");
    }
    assert!(!Path::new("/etc").join(MARKER).exists());

    // The config file's own directory and its ancestors, even with adopt.
    for up in [".", "./", "..", "%(here)s"] {
        let err = Host::try_start_in(dir.path(), &echo_cache(up, "adopt = true\n"), &[])
            .err()
            .unwrap_or_else(|| panic!("cache_dir = {up} accepted"));
        assert!(
            err.contains("contains the configuration file") || err.contains("system directory"),
            "{up}: {err}"
        );
    }

    // A non-empty directory the cache never marked: refused, with the fix named.
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("index.html"), "not the cache's").unwrap();
    let err = Host::try_start_in(dir.path(), &echo_cache("site", ""), &[])
        .err()
        .expect("a foreign non-empty cache_dir is refused");
    assert!(err.contains("adopt = true"), "{err}");
    assert!(err.contains(MARKER), "{err}");
    let out = plughost(&["check", &dir.path().join("deploy.ini").to_string_lossy()]);
    assert!(!out.status.success(), "check accepted it: {}", stderr(&out));
    assert!(!site.join(MARKER).exists());
    // adopt = true takes it over (and marks it, so the next start needs no adopt).
    let host = Host::start_in(dir.path(), &echo_cache("site", "adopt = true\n"));
    assert!(site.join(MARKER).is_file());
    assert_eq!(host.get("/index.html").header("x-cache"), Some("HIT"));
    drop(host);
    let host = Host::start_in(dir.path(), &echo_cache("site", ""));
    assert_eq!(host.get("/index.html").text(), "not the cache's");
    drop(host);

    // The seed config: a fresh ./cache beside deploy.ini is created and marked.
    let host = Host::start_in(dir.path(), &echo_cache("./cache", ""));
    assert!(dir.path().join("cache").join(MARKER).is_file());
    // The marker is never served.
    let r = host.get("/.plughost-cache");
    assert_eq!(r.header("x-cache"), Some("BYPASS"));
}

// ---------------------------------------------------------------------------
// 2. Purge.

fn purge(dir: &Path, args: &[&str]) -> Output {
    let config = dir.join("deploy.ini");
    let mut all = vec!["cache", "purge", config.to_str().unwrap()];
    all.extend_from_slice(args);
    plughost(&all)
}

#[test]
fn purge_prefix_root_keeps_dotfiles() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let host = Host::start_in(dir.path(), &echo_cache("cache", JSON_PAGES));
    for p in ["/a", "/sub/b"] {
        assert_eq!(host.get(p).header("x-cache"), Some("MISS"));
    }
    wait_until("pages stored", Duration::from_secs(10), || {
        cache.join("a").exists() && cache.join("sub/b").exists()
    });
    drop(host);
    std::fs::write(cache.join(".htaccess"), "Deny from all").unwrap();
    std::fs::create_dir_all(cache.join(".git/objects")).unwrap();
    std::fs::write(cache.join(".git/config"), "[core]").unwrap();
    std::fs::write(cache.join("sub/.keep"), "").unwrap();

    let out = purge(dir.path(), &["--prefix", "/"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!cache.join("a").exists() && !cache.join("sub/b").exists());
    for kept in [
        ".htaccess",
        ".git/config",
        ".git/objects",
        "sub/.keep",
        MARKER,
    ] {
        assert!(cache.join(kept).exists(), "purge --prefix / deleted {kept}");
    }

    for bad in [
        &["--prefix", ""][..],
        &["/a?b=1"],
        &["--prefix", "/a?b=1"],
        &[""],
    ] {
        let out = purge(dir.path(), bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert!(cache.join(".htaccess").exists());
    }
    // clap usage errors exit 2 too.
    assert_eq!(
        purge(dir.path(), &["--no-such-flag", "/a"]).status.code(),
        Some(2)
    );
}

// ---------------------------------------------------------------------------
// 3. A failed store removes the directories it created.

#[test]
fn failed_store_leaves_no_empty_dirs() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let _fs = match Tmpfs::mount(&cache, "64k") {
        Ok(m) => m,
        Err(e) => return missing(&format!("cannot mount a tmpfs ({e})")),
    };
    let host = Host::start_in(dir.path(), &echo_cache("cache", ""));
    // An existing directory a failed store must keep.
    std::fs::create_dir(cache.join("kept")).unwrap();
    // Fill the file system.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(cache.join("fill")).unwrap();
        let block = vec![b'f'; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    for path in ["/a/b/c/page", "/kept/x/y"] {
        let r = host.request("GET", path, &[("X-Echo-Bytes", "200000")], b"");
        assert_eq!(
            (r.status, r.header("x-cache")),
            (200, Some("MISS")),
            "{path}"
        );
        assert_eq!(r.body.len(), 200_000);
    }
    assert!(
        host.wait_log("store_error.disk_full", Duration::from_secs(10)),
        "{}",
        host.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !cache.join("a").exists(),
        "a failed store left a/b/c behind"
    );
    assert!(
        cache.join("kept").is_dir(),
        "a directory the store did not create was removed"
    );
    assert!(
        !cache.join("kept/x").exists(),
        "a failed store left kept/x behind"
    );
}

// ---------------------------------------------------------------------------
// 4. rm -rf cache && mkdir cache while serving.

#[test]
fn replaced_cache_dir_keeps_caching() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let host = Host::start_in(dir.path(), &echo_cache("cache", JSON_PAGES));
    let stored = |p: &str| {
        let file = cache.join(&p[1..]);
        wait_until(&format!("{p} stored"), Duration::from_secs(10), || {
            file.exists()
        });
    };
    host.get("/before");
    stored("/before");
    std::fs::remove_dir_all(&cache).unwrap();
    std::fs::create_dir(&cache).unwrap();
    // Within a few seconds of misses, the new directory is used.
    let start = Instant::now();
    let mut n = 0;
    loop {
        let p = format!("/after-{n}");
        assert_eq!(host.get(&p).status, 200);
        std::thread::sleep(Duration::from_millis(100));
        if cache.join(&p[1..]).exists() {
            assert_eq!(host.get(&p).header("x-cache"), Some("HIT"), "{p}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "nothing stored in the new cache_dir after {n} misses\n{}",
            host.log()
        );
        n += 1;
    }
    assert!(cache.join(MARKER).is_file(), "the new cache_dir is marked");
    // A replacement the cache does not own is not taken over.
    std::fs::remove_dir_all(&cache).unwrap();
    std::fs::create_dir(&cache).unwrap();
    std::fs::write(cache.join("foreign"), "someone else's").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    for i in 0..3 {
        assert_eq!(host.get(&format!("/foreign-{i}")).status, 200);
        std::thread::sleep(Duration::from_millis(400));
    }
    assert!(!cache.join(MARKER).exists());
    assert!(!cache.join("foreign-0").exists());
}

// ---------------------------------------------------------------------------
// 5. Live writers are told from dead ones by a lock, not a PID.

/// This host's name as the cache puts it in temporary file names.
fn host_tag() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let tag: String = raw
        .trim()
        .chars()
        .take(63)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if tag.is_empty() {
        "localhost".into()
    } else {
        tag
    }
}

#[test]
fn live_writer_temp_file_survives_sweep_with_same_pid() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(cache.join("d")).unwrap();
    std::fs::write(cache.join(MARKER), "").unwrap();
    let tag = host_tag();
    // Both name PID 1, which is always running (as in a container, where every
    // start of the host gets PID 1 again).
    let dead = cache.join(format!("d/.plughost-tmp-@{tag}@1.abc-1"));
    let live = cache.join(format!(".plughost-tmp-@{tag}@1.abc-2"));
    std::fs::write(&dead, "partial page of a crashed writer").unwrap();
    std::fs::write(&live, "page being written").unwrap();
    // The live writer holds its lock, as a writer does for its file's life.
    let mut writer = Command::new("flock")
        // -o: the lock stays with flock itself, so killing it releases it.
        .args(["-n", "-o"])
        .arg(&live)
        .args(["sleep", "20"])
        .stdout(Stdio::null())
        .spawn()
        .expect("flock(1) runs");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        writer.try_wait().unwrap().is_none(),
        "flock could not take the lock"
    );

    let host = Host::start_in(dir.path(), &echo_cache("cache", ""));
    let _ = writer.kill();
    let _ = writer.wait();
    assert!(live.exists(), "a live writer's temporary file was swept");
    assert!(
        !dead.exists(),
        "a dead writer's leftover was kept because PID 1 runs"
    );
    assert!(
        host.wait_log("removed 1 temporary files", Duration::from_secs(5)),
        "{}",
        host.log()
    );
    drop(host);
    // Once its writer is gone, the next start removes it.
    let _host = Host::start_in(dir.path(), &echo_cache("cache", ""));
    assert!(!live.exists());
}

// ---------------------------------------------------------------------------
// 6. A plugin library overwritten in place.

fn build_c(dir: &Path, text: &str) -> PathBuf {
    let define = format!("-DC_HELLO_DEFAULT=\"{text}\"");
    compile_c(
        &repo_dir().join("plugins/c-hello/hello.c"),
        "c-hello",
        dir,
        &[&define],
    )
}

#[test]
fn plugin_overwritten_in_place_does_not_crash_host() {
    let dir = tempdir();
    let lib = build_c(dir.path(), "build one");
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let new = build_c(&other, "build two, a longer text than the first");
    let mut host = Host::try_start_in(
        dir.path(),
        "[app:main]\nuse = lib:libc_hello.so\n",
        &["--reload"],
    )
    .unwrap();
    assert_eq!(host.get("/").text(), "build one");

    let port = host.port;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (stop, ok) = (stop.clone(), ok.clone());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                while !stop.load(SeqCst) {
                    match request(port, "GET", "/", &[], b"") {
                        Ok(r) if r.status == 200 => {
                            ok.fetch_add(1, SeqCst);
                        }
                        other => failures.push(format!("{other:?}")),
                    }
                }
                failures
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // What `cp new lib` does: open the existing file with O_TRUNC and write.
    {
        use std::io::Write;
        let bytes = std::fs::read(&new).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&lib)
            .unwrap();
        for piece in bytes.chunks(4096) {
            f.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Some(status) = host.child.try_wait().unwrap() {
            panic!(
                "the host died ({status}) after its library was overwritten\n{}",
                host.log()
            );
        }
        if request(port, "GET", "/", &[], b"").is_ok_and(|r| r.text().starts_with("build two")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, SeqCst);
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(
        host.child.try_wait().unwrap().is_none(),
        "the host died\n{}",
        host.log()
    );
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(ok.load(SeqCst) > 0);
    assert_eq!(
        host.get("/").text(),
        "build two, a longer text than the first",
        "the reload did not pick up the new library\n{}",
        host.log()
    );
}
