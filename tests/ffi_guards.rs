//! The host's side of the C ABI against a plugin that hands it NULL pointers
//! (`tests/ffi/null_fns.c`): a NULL function pointer in a descriptor is a
//! start-up error naming the entry, a NULL arriving per call is a plugin fault
//! (500 and a log line), and NULL arguments to the host's callbacks are refused
//! with the documented answer. Never a crash. Plus the source rules that keep
//! `unsafe` in the plugin loader.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::*;

fn fixture() -> PathBuf {
    repo_dir().join("tests/ffi/null_fns.c")
}

/// Run the real binary with `args`, killing it after `timeout`; its exit status
/// (None if it had to be killed) and stderr.
fn run(args: &[&str], dir: &Path, timeout: Duration) -> (Option<ExitStatus>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plughost"))
        .args(args)
        .current_dir(dir)
        .env("PLUGHOST_PLUGIN_PATH", dir)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut err);
    }
    (status, err)
}

#[test]
fn a_null_function_pointer_in_the_descriptor_is_a_start_up_error_naming_the_entry() {
    for (define, field) in [
        ("-DNULL_CREATE", "create"),
        ("-DNULL_VTBL", "vtbl"),
        ("-DNULL_CALL", "vtbl->call"),
        ("-DNULL_DESTROY", "vtbl->destroy"),
    ] {
        let dir = tempdir();
        let lib = compile_c(&fixture(), "null_fns", dir.path(), &[define]);
        let config = dir.path().join("deploy.ini");
        // The section uses a sound entry: the whole library is refused at load.
        std::fs::write(&config, "[app:main]\nuse = lib:libnull_fns.so#good\n").unwrap();
        let config = config.to_str().unwrap();
        let expected = format!("entry `broken` has a NULL `{field}` pointer");
        for args in [vec!["check", config], vec!["serve", config, "--port", "0"]] {
            let (status, stderr) = run(&args, dir.path(), Duration::from_secs(20));
            let status = status.unwrap_or_else(|| {
                panic!("`plughost {}` ({define}) kept running:\n{stderr}", args[0])
            });
            assert_eq!(
                status.code(),
                Some(1),
                "`plughost {}` ({define}) should exit 1, not {status}:\n{stderr}",
                args[0]
            );
            assert!(
                stderr.contains(&expected),
                "`plughost {}` ({define}): no `{expected}` in:\n{stderr}",
                args[0]
            );
            assert!(
                stderr.contains(&lib.display().to_string()),
                "`plughost {}` ({define}) does not name {}:\n{stderr}",
                args[0],
                lib.display()
            );
        }
    }
}

#[test]
fn two_entries_of_one_kind_and_name_are_refused_at_load() {
    let dir = tempdir();
    let lib = compile_c(&fixture(), "null_fns", dir.path(), &["-DDUPLICATE_ENTRY"]);
    let config = dir.path().join("deploy.ini");
    std::fs::write(&config, "[app:main]\nuse = lib:libnull_fns.so#good\n").unwrap();
    let (status, stderr) = run(
        &["check", config.to_str().unwrap()],
        dir.path(),
        Duration::from_secs(20),
    );
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{stderr}");
    let expected = format!(
        "{} is not a valid plugin: it exports two app entries named `good`",
        lib.display()
    );
    assert!(stderr.contains(&expected), "no `{expected}` in:\n{stderr}");
}

#[test]
fn the_sound_library_loads_and_answers() {
    let dir = tempdir();
    compile_c(&fixture(), "null_fns", dir.path(), &[]);
    let host = Host::start_in(dir.path(), "[app:main]\nuse = lib:libnull_fns.so#good\n");
    let reply = host.get("/");
    assert_eq!(reply.status, 200, "{}", host.log());
    assert_eq!(reply.text(), "good released=0");
}

#[test]
fn a_response_body_table_with_a_null_function_is_a_plugin_fault_not_a_call() {
    let dir = tempdir();
    compile_c(&fixture(), "null_fns", dir.path(), &[]);
    let host = Host::start_in(
        dir.path(),
        "[composite:main]\nuse = egg:plughost#urlmap\n/bad = bad\n/good = good\n\n\
         [app:bad]\nuse = lib:libnull_fns.so#badbody\n\n\
         [app:good]\nuse = lib:libnull_fns.so#good\n",
    );
    for _ in 0..2 {
        let reply = host.get("/bad");
        assert_eq!(reply.status, 500, "{}", host.log());
    }
    assert!(
        host.wait_log(
            "plugin returned an invalid response: body has a NULL `next` function in its table",
            Duration::from_secs(5)
        ),
        "{}",
        host.log()
    );
    // Both refused bodies were released (their `release` is set), and the host
    // still serves.
    assert_eq!(
        host.get("/good").text(),
        "good released=2",
        "{}",
        host.log()
    );
}

#[test]
fn null_arguments_to_host_callbacks_are_refused_with_the_documented_answer() {
    let dir = tempdir();
    compile_c(&fixture(), "null_fns", dir.path(), &[]);
    let host = Host::start_in(
        dir.path(),
        "[pipeline:main]\npipeline = nullargs good\n\n\
         [filter:nullargs]\nuse = lib:libnull_fns.so#nullargs\n\n\
         [app:good]\nuse = lib:libnull_fns.so#good\n",
    );
    // With a request body, so the filter gets a host body to misuse.
    let reply = host.request("POST", "/", &[("Content-Type", "text/plain")], b"hello");
    assert_eq!(reply.status, 200, "{}", host.log());
    // size_hint(NULL) is -1, next(.., NULL) and next->call(.., NULL, .., NULL) PH_ERR.
    assert_eq!(
        reply.text(),
        "size_hint=-1 next=-1 call=-1",
        "{}",
        host.log()
    );
    for needle in [
        "host callback `host_body_size_hint` with a NULL `this`",
        "host callback `host_body_next` with a NULL `chunk`",
        "host callback `host_body_release` with a NULL `this`",
        "host callback `sink_set` with a NULL `this`",
        "host callback `next_call` with a NULL `req`",
        "nullargs filter called",
    ] {
        assert!(
            host.wait_log(needle, Duration::from_secs(5)),
            "no `{needle}` in:\n{}",
            host.log()
        );
    }
    // And again without a body: the host is unharmed.
    let reply = host.get("/");
    assert_eq!(reply.text(), "size_hint=0 next=0 call=-1", "{}", host.log());
}
