//! The out-of-tree example plugin `examples/items-api` (the SDK's router, JSON
//! helpers, query parameters and status errors), built as a user would build
//! it and served by the real binary.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use support::*;

/// Build the example crate once (its own workspace and target dir) and run
/// its unit tests (a filter tested with `Next::from_fn`); the library's path.
fn items_api() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let manifest = repo_dir().join("examples/items-api/Cargo.toml");
            let target = target_dir().join("items-api");
            for action in ["test", "build"] {
                let status = Command::new(&cargo)
                    .args([action, "--quiet", "--locked", "--manifest-path"])
                    .arg(&manifest)
                    .arg("--target-dir")
                    .arg(&target)
                    .status()
                    .expect("cargo runs");
                assert!(
                    status.success(),
                    "`cargo {action}` of examples/items-api failed"
                );
            }
            target.join("debug").join("libitems_api.so")
        })
        .clone()
}

fn serve() -> (Host, tempfile::TempDir) {
    let lib = items_api();
    Host::start(&format!(
        "[pipeline:main]\npipeline = key api\n\n\
         [filter:key]\nuse = lib:{lib}#api_key\nkey = s3cret\n\n\
         [app:api]\nuse = lib:{lib}\n",
        lib = lib.display()
    ))
}

fn post(host: &Host, path: &str, content_type: &str, body: &str, key: bool) -> Reply {
    let mut headers = vec![("Content-Type", content_type)];
    if key {
        headers.push(("X-Api-Key", "s3cret"));
    }
    host.request("POST", path, &headers, body.as_bytes())
}

#[test]
fn the_items_api_creates_lists_shows_and_deletes() {
    let (host, _dir) = serve();
    let made = post(
        &host,
        "/items",
        "application/json",
        r#"{"name": "first"}"#,
        true,
    );
    assert_eq!(made.status, 201, "{}", made.text());
    assert_eq!(made.header("location"), Some("/items/1"));
    assert_eq!(made.json()["name"], "first");
    post(
        &host,
        "/items",
        "application/json",
        r#"{"name": "second one"}"#,
        true,
    );
    post(
        &host,
        "/items",
        "application/json",
        r#"{"name": "third one"}"#,
        true,
    );

    let all = host.get("/items").json();
    assert_eq!(all.as_array().unwrap().len(), 3, "{all}");
    let found = host.get("/items?q=one&limit=1").json();
    assert_eq!(found, serde_json::json!([{"id": 2, "name": "second one"}]));
    let spaced = host.get("/items?q=second+one").json();
    assert_eq!(spaced.as_array().unwrap().len(), 1, "{spaced}");

    let one = host.get("/items/3");
    assert_eq!(one.status, 200);
    assert_eq!(one.header("content-type"), Some("application/json"));
    assert_eq!(one.json()["name"], "third one");

    let gone = host.request("DELETE", "/items/3", &[("X-Api-Key", "s3cret")], b"");
    assert_eq!(gone.status, 204);
    assert_eq!(host.get("/items/3").status, 404);
}

#[test]
fn errors_have_their_status() {
    let (host, _dir) = serve();
    // Status errors from the app and the filter.
    let missing = host.get("/items/99");
    assert_eq!(missing.status, 404);
    assert!(
        missing.text().contains("no such item"),
        "{}",
        missing.text()
    );
    assert_eq!(host.get("/items/abc").status, 404);
    assert_eq!(host.get("/items?limit=many").status, 400);
    assert_eq!(
        post(&host, "/items", "application/json", "{}", false).status,
        403
    );
    // The SDK's JSON helper: malformed, wrong type, missing field.
    assert_eq!(
        post(&host, "/items", "application/json", r#"{"name": "#, true).status,
        400
    );
    assert_eq!(
        post(&host, "/items", "text/plain", "name=x", true).status,
        415
    );
    assert_eq!(
        post(&host, "/items", "application/json", r#"{"nom": "x"}"#, true).status,
        422
    );
    // The router: unknown path 404, known path with another method 405 + Allow.
    assert_eq!(host.get("/nothing").status, 404);
    let wrong = host.request("PUT", "/items/1", &[("X-Api-Key", "s3cret")], b"");
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("DELETE, GET, HEAD"));
    // Plain 500s stay 500s elsewhere; the host keeps serving.
    assert_eq!(host.get("/items").status, 200);
}
