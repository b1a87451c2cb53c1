//! The static app (`egg:plughost#static`), made by its `Make::App`
//! constructor over a document_root in a temporary directory.

use std::sync::Arc;

use super::{call, ini_in, make_app, refused, section, Got, Req};
use crate::core::builtin::SettingError;
use crate::core::config::Kind;
use crate::core::Handler;

/// A temporary directory with `root/` (the document_root) holding a few files,
/// and `secret.txt` beside it (outside the root).
struct Site {
    tmp: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::write(root.join("hello.txt"), "hello, world\n").unwrap();
        std::fs::write(root.join("style.css"), "p{}").unwrap();
        std::fs::write(root.join("logo.png"), b"\x89PNG").unwrap();
        std::fs::write(root.join("docs/index.html"), "<h1>docs</h1>").unwrap();
        std::fs::write(root.join("docs/home.html"), "<h1>home</h1>").unwrap();
        std::fs::write(root.join(".env"), "SECRET=1").unwrap();
        std::fs::write(tmp.path().join("secret.txt"), "outside").unwrap();
        Site { tmp }
    }

    fn root(&self) -> std::path::PathBuf {
        self.tmp.path().join("root")
    }

    fn make(&self, conf: &[(&str, &str)]) -> Result<Arc<dyn Handler>, SettingError> {
        let c = section(Kind::App, "files", "static", &ini_in(self.tmp.path()), conf);
        make_app(&c)
    }

    /// The app with `document_root = root` (relative to the config file) and `extra`.
    fn app(&self, extra: &[(&str, &str)]) -> Arc<dyn Handler> {
        let mut conf = vec![("document_root", "root")];
        conf.extend_from_slice(extra);
        self.make(&conf).expect("the static app is made")
    }
}

fn get(app: &Arc<dyn Handler>, target: &str) -> Got {
    call(&**app, Req::get(target).build())
}

#[test]
fn serves_a_file_with_its_type_length_and_validators() {
    let site = Site::new();
    let app = site.app(&[]);
    let r = get(&app, "/hello.txt");
    assert_eq!((r.status, r.text()), (200, "hello, world\n"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("content-length"), Some("13"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert!(
        r.header("etag").unwrap().starts_with("\"d-"),
        "{:?}",
        r.headers
    );
    assert!(r.header("last-modified").is_some());
    assert!(r.header("cache-control").is_none());

    assert_eq!(
        get(&app, "/style.css").header("content-type"),
        Some("text/css; charset=utf-8")
    );
    let png = get(&app, "/logo.png");
    assert_eq!(
        (png.header("content-type"), &png.body[..]),
        (Some("image/png"), &b"\x89PNG"[..])
    );
    // Runs of slashes collapse.
    assert_eq!(get(&app, "//docs///home.html").text(), "<h1>home</h1>");
}

#[test]
fn a_missing_file_is_404() {
    let site = Site::new();
    let app = site.app(&[]);
    for missing in [
        "/nope.txt",
        "/docs/nope.html",
        "/hello.txt/more",
        "/hello.txt/",
    ] {
        assert_eq!(get(&app, missing).status, 404, "{missing}");
    }
}

#[test]
fn a_directory_redirects_to_its_slash_form_then_serves_its_index() {
    let site = Site::new();
    let app = site.app(&[]);
    let r = get(&app, "/docs");
    assert_eq!((r.status, r.header("location")), (301, Some("/docs/")));
    // The mount point and the query string are kept.
    let r = call(
        &*app,
        Req::get("/docs?lang=fr").script_name("/static").build(),
    );
    assert_eq!(r.header("location"), Some("/static/docs/?lang=fr"));

    let r = get(&app, "/docs/");
    assert_eq!((r.status, r.text()), (200, "<h1>docs</h1>"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    // No index: no listing either.
    assert_eq!(get(&app, "/empty/").status, 404);
    assert_eq!(get(&app, "/").status, 404);
}

#[test]
fn the_index_name_is_configurable_and_may_be_turned_off() {
    let site = Site::new();
    let app = site.app(&[("index", "home.html")]);
    assert_eq!(get(&app, "/docs/").text(), "<h1>home</h1>");
    let app = site.app(&[("index", "")]);
    assert_eq!(get(&app, "/docs/").status, 404);
    assert_eq!(get(&app, "/docs/index.html").status, 200);
}

#[test]
fn traversal_and_hidden_files_are_refused() {
    let site = Site::new();
    let app = site.app(&[]);
    // (raw target, PATH_INFO as decoded by the server)
    for (raw, decoded) in [
        ("/../secret.txt", &b"/../secret.txt"[..]),
        ("/docs/../../secret.txt", b"/docs/../../secret.txt"),
        ("/%2e%2e/secret.txt", b"/../secret.txt"),
        ("/..%2Fsecret.txt", b"/../secret.txt"),
        ("/docs%2Fhome.html", b"/docs/home.html"),
        ("/docs%5Chome.html", b"/docs\\home.html"),
        ("/.env", b"/.env"),
        ("/hello.txt%00", b"/hello.txt\0"),
    ] {
        let r = call(&*app, Req::get(raw).path_info(decoded).build());
        assert_eq!(r.status, 404, "{raw}");
        assert!(
            !r.text().contains("outside") && !r.text().contains("SECRET"),
            "{raw}"
        );
    }
}

#[test]
fn symlinks_may_point_inside_the_root_but_not_outside() {
    let site = Site::new();
    let root = site.root();
    std::os::unix::fs::symlink(site.tmp.path().join("secret.txt"), root.join("out.txt")).unwrap();
    std::os::unix::fs::symlink(site.tmp.path(), root.join("up")).unwrap();
    std::os::unix::fs::symlink(root.join("hello.txt"), root.join("alias.txt")).unwrap();
    let app = site.app(&[]);
    assert_eq!(get(&app, "/out.txt").status, 404);
    assert_eq!(get(&app, "/up/secret.txt").status, 404);
    let r = get(&app, "/alias.txt");
    assert_eq!((r.status, r.text()), (200, "hello, world\n"));
}

#[test]
fn head_has_the_headers_of_get_and_no_body() {
    let site = Site::new();
    let app = site.app(&[]);
    let r = call(&*app, Req::head("/hello.txt").build());
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty(), "{:?}", r.body);
    assert_eq!(r.header("content-length"), Some("13"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
}

#[test]
fn other_methods_are_405() {
    let site = Site::new();
    let app = site.app(&[]);
    for method in ["POST", "PUT", "DELETE"] {
        let r = call(&*app, Req::new(method, "/hello.txt").body("x").build());
        assert_eq!(
            (r.status, r.header("allow")),
            (405, Some("GET, HEAD")),
            "{method}"
        );
    }
}

#[test]
fn conditional_gets_answer_304_and_ranges_206() {
    let site = Site::new();
    let app = site.app(&[]);
    let full = get(&app, "/hello.txt");
    let etag = full.header("etag").unwrap();
    let modified = full.header("last-modified").unwrap();

    let r = call(
        &*app,
        Req::get("/hello.txt").header("if-none-match", etag).build(),
    );
    assert_eq!((r.status, r.body.len()), (304, 0));
    assert_eq!(r.header("etag"), Some(etag));
    let r = call(
        &*app,
        Req::get("/hello.txt")
            .header("if-modified-since", modified)
            .build(),
    );
    assert_eq!(r.status, 304);
    let r = call(
        &*app,
        Req::get("/hello.txt")
            .header("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT")
            .build(),
    );
    assert_eq!(r.status, 200);
    let r = call(
        &*app,
        Req::get("/hello.txt")
            .header("if-match", "\"nope\"")
            .build(),
    );
    assert_eq!(r.status, 412);

    let r = call(
        &*app,
        Req::get("/hello.txt").header("range", "bytes=0-4").build(),
    );
    assert_eq!((r.status, r.text()), (206, "hello"));
    assert_eq!(r.header("content-range"), Some("bytes 0-4/13"));
    let r = call(
        &*app,
        Req::get("/hello.txt").header("range", "bytes=100-").build(),
    );
    assert_eq!(
        (r.status, r.header("content-range")),
        (416, Some("bytes */13"))
    );
}

#[test]
fn cache_max_age_adds_cache_control_to_successes_only() {
    let site = Site::new();
    let app = site.app(&[("cache_max_age", "3600")]);
    assert_eq!(
        get(&app, "/hello.txt").header("cache-control"),
        Some("max-age=3600")
    );
    assert!(get(&app, "/nope").header("cache-control").is_none());
}

#[test]
fn document_root_is_relative_to_the_config_file() {
    let site = Site::new();
    let abs = site.root();
    let app = site
        .make(&[("document_root", abs.to_str().unwrap())])
        .unwrap();
    assert_eq!(get(&app, "/hello.txt").status, 200);
    // A section in another directory resolves `root` there, where it does not exist.
    let other = tempfile::tempdir().unwrap();
    let c = section(
        Kind::App,
        "files",
        "static",
        &ini_in(other.path()),
        &[("document_root", "root")],
    );
    let e = refused(make_app(&c));
    assert_eq!(e.key.as_deref(), Some("document_root"), "{e}");
    assert!(e.message.contains("no such directory"), "{e}");
}

#[test]
fn bad_settings_name_their_key() {
    let site = Site::new();
    let check = |conf: &[(&str, &str)], key: &str, says: &str| {
        let e = refused(site.make(conf));
        assert_eq!(e.key.as_deref(), Some(key), "{conf:?}: {e}");
        assert!(e.message.contains(says), "{conf:?}: {e}");
    };
    check(
        &[("document_root", "root"), ("docroot", "x")],
        "docroot",
        "unknown key",
    );
    check(&[], "document_root", "missing required key");
    check(&[("document_root", "")], "document_root", "empty");
    check(
        &[("document_root", "root/hello.txt")],
        "document_root",
        "not a directory",
    );
    check(
        &[("document_root", "root"), ("cache_max_age", "1h")],
        "cache_max_age",
        "whole number",
    );
    check(
        &[("document_root", "root"), ("index", "../x.html")],
        "index",
        "plain file name",
    );
    check(
        &[("document_root", "root"), ("index", ".hidden")],
        "index",
        "plain file name",
    );
}
