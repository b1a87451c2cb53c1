//! Regression tests for configurations that resolved forever or read without
//! end, found while writing the `config_resolver` fuzz target: each is now an
//! error naming the file, quickly. They call `config::load` directly.

use std::path::Path;
use std::time::{Duration, Instant};

use plughost::config::ConfigError;
use plughost::load;

fn load_text(text: &str) -> (Result<plughost::config::Deployment, ConfigError>, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deploy.ini");
    std::fs::write(&path, text).unwrap();
    let started = Instant::now();
    let result = load(&path, None, None, &[]);
    (result, started.elapsed())
}

fn error_of(text: &str) -> String {
    let (result, took) = load_text(text);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let message = result.expect_err("an error").to_string();
    // Every error starts with the file (here the temp dir's deploy.ini).
    assert!(
        Path::new(message.split(':').next().unwrap()).ends_with("deploy.ini"),
        "{message}"
    );
    message
}

/// 24 urlmaps, each mounting the next one twice: no cycle, but 2^24 nodes.
#[test]
fn fuzz_urlmap_fanout_is_an_error_not_a_hang() {
    let mut text = String::new();
    for i in 0..24 {
        let name = if i == 0 {
            "main".to_owned()
        } else {
            format!("c{i}")
        };
        text += &format!(
            "[composite:{name}]\nuse = egg:Paste#urlmap\n/a = c{next}\n/b = c{next}\n\n",
            next = i + 1
        );
    }
    text += "[app:c24]\nuse = egg:hello\n";
    let message = error_of(&text);
    assert!(message.contains("larger than 10000 sections"), "{message}");

    // The same shape a few levels deep resolves (2^6 leaves).
    let mut small = String::new();
    for i in 0..6 {
        let name = if i == 0 {
            "main".to_owned()
        } else {
            format!("c{i}")
        };
        small += &format!(
            "[composite:{name}]\nuse = egg:Paste#urlmap\n/a = c{next}\n/b = c{next}\n\n",
            next = i + 1
        );
    }
    small += "[app:c6]\nuse = egg:hello\n";
    let deployment = load_text(&small).0.unwrap();
    let leaves = deployment
        .app
        .components()
        .iter()
        .filter(|c| c.section == "app:c6")
        .count();
    assert_eq!(leaves, 64);
}

/// [DEFAULT] keys that each name the next eight times: 8^9 copies of the last.
#[test]
fn fuzz_default_keys_expanding_exponentially_are_an_error() {
    let keys = "abcdefghij";
    let mut text = String::from("[DEFAULT]\n");
    for (k, next) in keys.chars().zip(keys.chars().skip(1)) {
        text += &format!("{k} = {}\n", format!("%({next})s").repeat(8));
    }
    text += "j = xxxxxxxxxxxxxxxx\n\n[app:main]\nuse = egg:hello\n";
    let message = error_of(&text);
    assert!(
        message.contains(":2: [DEFAULT] a: interpolating"),
        "{message}"
    );
    assert!(message.contains("goes over the limit"), "{message}");
}

/// Both limits at once: DEFAULT keys costing ~250 substitutions each, in a
/// file that includes itself from urlmaps mounting the next one twice, so that
/// every one of 10000 resolutions re-opened it and spent ~7000 substitutions
/// (100 s in a debug build) before the resolution limit was reached. One
/// interpolation budget per load stops it much sooner.
#[test]
fn fuzz_sections_resolved_many_times_share_one_interpolation_budget() {
    let keys = "abcdefghi";
    let mut text = String::from("[DEFAULT]\n");
    for (k, next) in keys.chars().zip(keys.chars().skip(1)) {
        text += &format!("{k} = %({next})s%({next})s\n");
    }
    text += "i = x\n";
    for n in 0..20 {
        text += &format!("z{n} = %(b)s\n");
    }
    for i in 0..16 {
        let name = if i == 0 {
            "main".to_owned()
        } else {
            format!("c{i}")
        };
        text += &format!(
            "\n[composite:{name}]\nuse = egg:Paste#urlmap\n\
             /a = config:deploy.ini#c{next}\n/b = config:deploy.ini#c{next}\n",
            next = i + 1
        );
    }
    text += "\n[app:c16]\nuse = egg:hello\n";
    let message = error_of(&text);
    assert!(message.contains("goes over the limit"), "{message}");
}

/// `config:/dev/zero` read until memory ran out.
#[test]
fn fuzz_include_of_an_endless_file_is_refused() {
    if !Path::new("/dev/zero").exists() {
        return;
    }
    let message = error_of("[app:main]\nuse = config:/dev/zero\n");
    assert!(
        message.contains(":2: [app:main] use: cannot read: larger than 4194304 bytes"),
        "{message}"
    );
}
