//! Every config in examples/ starts and answers as its comments say.

mod support;

use support::*;

/// Start an example exactly as its comment says (`./target/release/plughost
/// serve examples/NAME`, from the repository root), with the binary cargo
/// built for the tests in place of `./target/release/plughost`.
fn serve(name: &str) -> Host {
    let text = std::fs::read_to_string(repo_dir().join("examples").join(name)).unwrap();
    let documented = format!("./target/release/plughost serve examples/{name}");
    let line = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .find(|l| l.trim_start_matches('#').trim() == documented)
        .unwrap_or_else(|| panic!("examples/{name}: no comment line `#   {documented}`"));
    let args: Vec<&str> = line
        .trim_start_matches('#')
        .split_whitespace()
        .skip(1)
        .collect();
    Host::serve_as_documented(&args)
        .unwrap_or_else(|e| panic!("examples/{name} as documented: {e}"))
}

#[test]
fn filter_chain_example() {
    let host = serve("filter-chain.ini");
    let r = host.get("/hello");
    assert_eq!(r.json()["headers"]["x-tag-chain"], "outer,inner");
    assert_eq!(r.header("x-tag-chain-out"), Some("inner,outer"));
    assert_eq!(host.get("/admin/x").status, 403);
}

#[test]
fn pipeline_example() {
    let host = serve("pipeline.ini");
    let r = host.get("/");
    let j = r.json();
    assert_eq!(j["headers"]["x-tag-chain"], "auth,audit");
    assert_eq!(j["global_conf"]["environment"], "example");
    assert_eq!(r.header("x-tag-chain-out"), Some("audit,auth"));
    assert_eq!(host.get("/private/x").status, 403);
}

#[test]
fn filter_app_example() {
    let host = serve("filter-app.ini");
    let r = host.get("/");
    assert_eq!(r.text(), "Hello from a filter-app");
    assert_eq!(r.header("x-tag-chain-out"), Some("wrapper"));
}

#[test]
fn urlmap_example() {
    let host = serve("urlmap.ini");
    assert_eq!(host.get("/").text(), "Welcome home");
    let j = host.get("/api/items").json();
    assert_eq!(
        (j["script_name"].as_str(), j["path_info"].as_str()),
        (Some("/api"), Some("/items"))
    );
    let index = host.get("/static/");
    assert_eq!(index.status, 200);
    assert!(index.text().contains("Static files from examples/static"));
    let css = host.get("/static/style.css");
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
}

#[test]
fn include_example() {
    let host = serve("include.ini");
    let j = host.get("/").json();
    assert_eq!(
        j["local_conf"],
        serde_json::json!({"colour": "green", "size": "large"})
    );
    assert_eq!(j["global_conf"]["site"], "example");
}

#[test]
fn root_deploy_ini_is_the_cache_workflow() {
    // Served from a copy, so the test's cache directory is a temporary one.
    let dir = tempdir();
    let copy = dir.path().join("deploy.ini");
    std::fs::copy(repo_dir().join("deploy.ini"), &copy).unwrap();
    let host = Host::serve_path(&copy, &[]).unwrap();
    let first = host.get("/hello");
    assert_eq!((first.status, first.header("x-cache")), (200, Some("MISS")));
    assert_eq!(first.text(), "Hello, world!");
    let stored = dir.path().join("cache/hello");
    // The file is renamed into place once the body has gone out.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !stored.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(std::fs::read(&stored).unwrap(), b"Hello, world!");
    let second = host.get("/hello");
    assert_eq!(
        (second.header("x-cache"), second.text().as_str()),
        (Some("HIT"), "Hello, world!")
    );
    std::fs::remove_file(&stored).unwrap();
    assert_eq!(
        host.get("/hello").header("x-cache"),
        Some("MISS"),
        "deleting the file is the purge"
    );
}
