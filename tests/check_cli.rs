//! What a new user and a script see from `plughost check`: one JSON document
//! from `--json` whatever happens, warnings for the near-misses Paste Deploy
//! accepts silently, malformed lines reported at their own line, and a closed
//! stdout ending the command quietly.

mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::*;

fn check(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plughost"))
        .current_dir(dir)
        .arg("check")
        .args(args)
        .env("PLUGHOST_PLUGIN_PATH", plugins())
        .output()
        .unwrap()
}

/// `check --json` of `text` as deploy.ini: the parsed document and the exit code.
fn check_json(text: &str, extra: &[&str]) -> (Value, Option<i32>, tempfile::TempDir) {
    let dir = tempdir();
    std::fs::write(dir.path().join("deploy.ini"), text).unwrap();
    let mut args = vec!["--json", "deploy.ini"];
    args.extend_from_slice(extra);
    let out = check(dir.path(), &args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let doc: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (doc, out.status.code(), dir)
}

/// The one error of a failed `check --json`, as (line, section, key, message).
fn only_error(doc: &Value) -> (Value, Value, Value, String) {
    assert_eq!(doc["ok"], false, "{doc:#}");
    let errors = doc["errors"].as_array().expect("errors is an array");
    assert_eq!(errors.len(), 1, "{doc:#}");
    let e = &errors[0];
    assert!(e["file"].as_str().unwrap().ends_with("deploy.ini"), "{e:#}");
    (
        e["line"].clone(),
        e["section"].clone(),
        e["key"].clone(),
        e["message"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn success_is_ok_true_with_the_tree_and_every_warning() {
    let (doc, code, _dir) = check_json(
        "[app:main]\nuse = egg:echo\nfilter_with = cache\n\n[filter:cache]\nuse = egg:plughost#cache\ncache_dir = ./cache\n",
        &[],
    );
    assert_eq!(code, Some(0));
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["app"]["section"], "app:main");
    let warnings = doc["warnings"].as_array().unwrap();
    let near_miss = warnings
        .iter()
        .find(|w| w["key"] == "filter_with")
        .unwrap_or_else(|| panic!("no near-miss warning: {doc:#}"));
    assert_eq!(near_miss["line"], 3);
    assert_eq!(near_miss["section"], "app:main");
    assert!(near_miss["message"]
        .as_str()
        .unwrap()
        .contains("misspelling of `filter-with`"));
    let unused = warnings
        .iter()
        .find(|w| w["section"] == "filter:cache")
        .unwrap_or_else(|| panic!("no unused-section warning: {doc:#}"));
    assert_eq!(unused["line"], 5);
}

#[test]
fn a_syntax_error_is_json_with_its_line() {
    let (doc, code, _dir) = check_json("[app:main]\nuse = egg:echo\n[filter:auth\nx = 1\n", &[]);
    assert_eq!(code, Some(1));
    let (line, section, key, message) = only_error(&doc);
    assert_eq!(line, 3);
    assert_eq!((section, key), (Value::Null, Value::Null));
    assert!(message.contains("missing the closing `]`"), "{message}");
    assert_eq!(doc["warnings"], Value::Array(Vec::new()));
}

#[test]
fn a_resolution_error_is_json_with_section_and_key() {
    let (doc, code, _dir) = check_json("[app:main]\nuse = egg:plughost#nope\n", &[]);
    assert_eq!(code, Some(1));
    let (line, section, key, message) = only_error(&doc);
    assert_eq!(
        (line, section, key),
        (2.into(), "app:main".into(), "use".into())
    );
    assert!(message.contains("no built-in `nope`"), "{message}");
}

#[test]
fn a_build_error_is_json_with_the_key_line() {
    let (doc, code, _dir) = check_json(
        "[app:main]\nuse = egg:echo\nfilter-with = c\n\n[filter:c]\nuse = egg:plughost#cache\ncache_dir = ./cache\nbogus = 1\n",
        &[],
    );
    assert_eq!(code, Some(1));
    let (line, section, key, message) = only_error(&doc);
    assert_eq!(
        (line, section, key),
        (8.into(), "filter:c".into(), "bogus".into())
    );
    assert!(message.contains("unknown key `bogus`"), "{message}");
}

#[test]
fn a_missing_plugin_and_a_bad_variable_are_json_too() {
    let (doc, code, _dir) = check_json("[app:main]\nuse = egg:nope\n", &[]);
    assert_eq!(code, Some(1));
    let (_, section, key, message) = only_error(&doc);
    assert_eq!((section, key), ("app:main".into(), "use".into()));
    assert!(message.contains("plugin `nope` not found"), "{message}");

    let (doc, code, _dir) = check_json("[app:main]\nuse = egg:echo\n", &["novalue"]);
    assert_eq!(code, Some(1));
    let (_, _, _, message) = only_error(&doc);
    assert!(message.contains("name=value"), "{message}");
}

#[test]
fn a_missing_file_is_json() {
    let dir = tempdir();
    let out = check(dir.path(), &["--json", "absent.ini"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let (_, _, _, message) = only_error_named(&doc, "absent.ini");
    assert!(message.contains("cannot read"), "{message}");
}

fn only_error_named(doc: &Value, file: &str) -> (Value, Value, Value, String) {
    let e = &doc["errors"][0];
    assert!(e["file"].as_str().unwrap().ends_with(file), "{doc:#}");
    (
        e["line"].clone(),
        e["section"].clone(),
        e["key"].clone(),
        e["message"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn text_check_warns_about_inline_comments_and_near_misses_with_lines() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("deploy.ini"),
        "[app:main]\nuse = egg:echo\nfilter-with = c\n\n[filter:c]\nuse = egg:plughost#cache\ncache_dir = ./cache ; pages\n\n[app:other]\nuse = egg:echo\nUSE = egg:echo\n",
    )
    .unwrap();
    let out = check(dir.path(), &["deploy.ini"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "deploy.ini:7: [filter:c] key `cache_dir` has `;` in its value",
        "deploy.ini:11: [app:other] key `USE` looks like a misspelling of `use`",
        "deploy.ini:9: [app:other]: is not used by the served app (if it is another entry point, serve it as deploy.ini#other)",
    ] {
        assert!(stdout.contains(expected), "no `{expected}` in:\n{stdout}");
    }
}

/// `check --json | head -c 10`: the reader goes away after ten bytes.
#[test]
fn a_closed_stdout_ends_check_quietly() {
    let dir = tempdir();
    let mut text = String::from("[app:main]\nuse = egg:echo\n");
    // A large tree, so the output does not fit in the pipe before it closes.
    for i in 0..2000 {
        text.push_str(&format!("key{i} = {}\n", "v".repeat(40)));
    }
    std::fs::write(dir.path().join("deploy.ini"), text).unwrap();
    for json in [true, false] {
        let mut args = vec!["check", "deploy.ini"];
        if json {
            args.push("--json");
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_plughost"))
            .current_dir(dir.path())
            .args(&args)
            .env("PLUGHOST_PLUGIN_PATH", plugins())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 10];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut first)
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked")
                && !stderr.contains("Broken pipe")
                && !stderr.contains("error"),
            "json={json}: {stderr}"
        );
        assert_eq!(out.status.code(), Some(0), "json={json}: {stderr}");
    }
}

#[test]
fn a_broken_logging_section_is_json_too() {
    let (doc, code, _dir) = check_json(
        "[app:main]\nuse = egg:echo\n\n[loggers]\nkeys = root\n\n[handlers]\nkeys = console\n\n[formatters]\nkeys =\n\n[logger_root]\nlevel = LOUD\nhandlers = console\n\n[handler_console]\nclass = StreamHandler\nargs = (sys.stderr,)\nlevel = NOTSET\n",
        &[],
    );
    assert_eq!(code, Some(1));
    let (line, section, _, message) = only_error(&doc);
    assert_eq!((line, section), (13.into(), "logger_root".into()));
    assert!(message.contains("LOUD"), "{message}");
}
