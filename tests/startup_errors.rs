//! Every start-up error stops the host with one line naming the file, the
//! section and the key, and nothing is served.

mod support;

use std::path::Path;

use support::*;

/// Start and expect failure; return the error line.
fn fails(dir: &Path, config: &str) -> String {
    let err = match Host::try_start_in(dir, config, &[]) {
        Ok(_) => panic!("the host started with a bad config:\n{config}"),
        Err(e) => e,
    };
    let line = err
        .lines()
        .find(|l| l.starts_with("plughost: error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{err}"))
        .to_owned();
    let file = dir.join("deploy.ini");
    assert!(
        line.contains(&file.display().to_string()),
        "error does not name the file: {line}"
    );
    line
}

#[test]
fn missing_library_lists_every_place_searched() {
    let dir = tempdir();
    let line = fails(
        dir.path(),
        "[DEFAULT]\nplugin_path = extra\n\n[app:main]\nuse = egg:no-such-plugin\n",
    );
    assert!(line.contains("deploy.ini:4: [app:main] use:"), "{line}");
    assert!(line.contains("plugin `no-such-plugin` not found"), "{line}");
    // The environment's directory, the config's plugin_path, then target/{release,debug}.
    let env_dir = plugins().join("libno_such_plugin.so");
    let extra = dir.path().join("extra/libno_such_plugin.so");
    let release = dir.path().join("target/release/libno_such_plugin.so");
    let debug = dir.path().join("target/debug/libno_such_plugin.so");
    let positions: Vec<usize> = [env_dir, extra, release, debug]
        .iter()
        .map(|p| {
            line.find(&p.display().to_string())
                .unwrap_or_else(|| panic!("{} not listed: {line}", p.display()))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "search order wrong: {line}"
    );
}

#[test]
fn missing_library_file() {
    let dir = tempdir();
    let line = fails(dir.path(), "[app:main]\nuse = lib:nowhere/libx.so\n");
    assert!(
        line.contains("[app:main] use:")
            && line.contains("nowhere/libx.so")
            && line.contains("no such file"),
        "{line}"
    );
}

#[test]
fn missing_entry_lists_the_entries() {
    let dir = tempdir();
    let line = fails(dir.path(), "[app:main]\nuse = egg:hello#nope\n");
    assert!(line.contains("[app:main] use:"), "{line}");
    assert!(
        line.contains("has no entry `nope`; it exports: main (app)"),
        "{line}"
    );
}

#[test]
fn app_entry_used_as_filter_is_refused() {
    let dir = tempdir();
    let line = fails(
        dir.path(),
        "[app:main]\nuse = egg:echo\nfilter-with = f\n[filter:f]\nuse = egg:hello\n",
    );
    assert!(
        line.contains("[filter:f] use:")
            && line.contains("is an app entry, but this section needs a filter"),
        "{line}"
    );
}

#[test]
fn factory_error_and_missing_required_key() {
    let dir = tempdir();
    let line = fails(
        dir.path(),
        "[app:main]\nuse = egg:echo\nfilter-with = t\n\n[filter:t]\nuse = egg:tag\n",
    );
    assert!(line.contains("deploy.ini:5: [filter:t] use:"), "{line}");
    assert!(line.contains("missing required key `tag`"), "{line}");
}

#[test]
fn unknown_server_key_and_bad_values() {
    let dir = tempdir();
    let line = fails(
        dir.path(),
        "[app:main]\nuse = egg:echo\n[server:main]\nprot = 80\n",
    );
    assert!(
        line.contains("deploy.ini:4: [server:main] prot: unknown server key"),
        "{line}"
    );
    let line = fails(
        dir.path(),
        "[app:main]\nuse = egg:echo\n[server:main]\nthreads = many\n",
    );
    assert!(
        line.contains("deploy.ini:4: [server:main] threads: expected a positive number"),
        "{line}"
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let dir = tempdir();
    let line = fails(dir.path(), "[app:main]\nuse = egg:echo\nuse = egg:hello\n");
    assert!(
        line.contains("deploy.ini:3: duplicate key `use` in [app:main] (first set at line 2)"),
        "{line}"
    );
}

const BAD_ABI_C: &str = r#"
#include "plughost.h"
PH_EXPORT const ph_handshake plughost_abi = {PH_MAGIC, 99, 3};
PH_EXPORT const ph_plugin_desc *plughost_plugin_v1(void) { return 0; }
"#;

const NO_HANDSHAKE_C: &str = r#"
int not_a_plugin(void) { return 1; }
"#;

#[test]
fn abi_mismatch_names_the_file_and_both_versions() {
    let dir = tempdir();
    let src = dir.path().join("bad.c");
    std::fs::write(&src, BAD_ABI_C).unwrap();
    let lib = compile_c(&src, "bad", dir.path(), &[]);
    let line = fails(dir.path(), "[app:main]\nuse = lib:libbad.so\n");
    assert!(line.contains(&lib.display().to_string()), "{line}");
    assert!(
        line.contains("built for plugin ABI 99.3, but this host speaks ABI 1.1"),
        "{line}"
    );
}

#[test]
fn a_library_without_handshake_is_refused() {
    let dir = tempdir();
    let src = dir.path().join("plain.c");
    std::fs::write(&src, NO_HANDSHAKE_C).unwrap();
    compile_c(&src, "plain", dir.path(), &[]);
    let line = fails(dir.path(), "[app:main]\nuse = lib:libplain.so\n");
    assert!(
        line.contains("is not a plughost plugin: it has no `plughost_abi` handshake symbol"),
        "{line}"
    );
}

#[test]
fn check_reports_ok_and_errors() {
    let dir = tempdir();
    let path = dir.path().join("deploy.ini");
    std::fs::write(&path, "[app:main]\nuse = egg:echo\n").unwrap();
    let run = |p: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_plughost"))
            .arg("check")
            .arg(p)
            .env("PLUGHOST_PLUGIN_PATH", plugins())
            .output()
            .unwrap()
    };
    let ok = run(&path);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    std::fs::write(&path, "[app:main]\nuse = egg:missing\n").unwrap();
    let bad = run(&path);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("plugin `missing` not found"));
}
