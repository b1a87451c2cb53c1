//! The cache filter (`egg:plughost#cache`), made by its `Make::Filter`
//! constructor around a stub app, with its cache_dir in a temporary directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    app_node, ini_in, make_filter, make_filter_in, read, refused, section, Got, Reply, Req, Rt,
    Stub,
};
use crate::components::builtins::cache::stats::{self, CacheStats, Event};
use crate::components::builtins::cache::MARKER;
use crate::core::builtin::DirClaims;
use crate::core::config::urlmap::parse_key;
use crate::core::config::{Component, Kind, Mount, Node};
use crate::core::{Handler, Head};

/// A cache filter over a stub, its directory and a runtime to call it on.
struct Fixture {
    tmp: tempfile::TempDir,
    rt: Rt,
    stub: Arc<Stub>,
    cache: Arc<dyn Handler>,
    section: String,
}

impl Fixture {
    /// `[filter:NAME]` with `cache_dir` in a fresh temporary directory,
    /// `status_header = X-Cache` and `extra`, over a stub answering `stub`.
    fn new(name: &str, extra: &[(&str, &str)], stub: Arc<Stub>) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        let dir = dir.to_str().unwrap().to_owned();
        let mut conf = vec![("cache_dir", dir.as_str()), ("status_header", "X-Cache")];
        conf.extend_from_slice(extra);
        let c = section(Kind::Filter, name, "cache", &ini_in(tmp.path()), &conf);
        let cache = make_filter(&c, stub.clone()).expect("the cache is made");
        Fixture {
            tmp,
            rt: Rt::new(),
            stub,
            cache,
            section: c.section,
        }
    }

    fn page(name: &str, body: &str) -> Fixture {
        Fixture::new(name, &[], Stub::new(Reply::html(body)))
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    fn get(&self, target: &str) -> Got {
        self.call(Req::get(target))
    }

    fn call(&self, req: Req) -> Got {
        self.rt.call(&*self.cache, req.build())
    }

    /// What the server would answer at once for `req` (see `Handler::answer_now`).
    fn ready(&self, req: Req) -> Option<Got> {
        let req = req.build();
        let query = (!req.query_string.is_empty()).then_some(req.query_string.as_str());
        let head = Head {
            method: &req.method,
            raw_path: &req.raw_path,
            query,
            headers: &req.headers,
        };
        let resp = self.cache.answer_now(&head)?;
        Some(self.rt.block_on(read(resp)))
    }

    /// This filter's counters (found by its section name, unique per test).
    fn stats(&self) -> Arc<CacheStats> {
        stats::all()
            .into_iter()
            .find(|s| s.section == self.section)
            .expect("the filter's counters are registered")
    }

    fn count(&self, event: Event) -> u64 {
        self.stats().get(event)
    }

    /// Wait until `n` pages have been stored.
    fn wait_stored(&self, n: u64) {
        self.rt
            .wait_until("the page to be stored", || self.count(Event::Store) >= n);
    }

    /// Every file under cache_dir but the ownership marker, relative, sorted.
    fn files(&self) -> Vec<String> {
        self.rt.settle();
        let mut out = Vec::new();
        walk(&self.dir(), &self.dir(), &mut out);
        out.sort();
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(root, &path, out);
        } else if path.file_name().unwrap() != MARKER {
            let rel = path.strip_prefix(root).unwrap();
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

fn x_cache(r: &Got) -> &str {
    r.header("x-cache").unwrap_or("<none>")
}

#[test]
fn a_miss_calls_the_app_once_and_stores_the_page_then_hits_skip_the_app() {
    let f = Fixture::page("filter:cache-miss-hit", "<p>hello</p>");
    let r = f.get("/docs/page");
    assert_eq!(
        (r.status, x_cache(&r), r.text()),
        (200, "MISS", "<p>hello</p>")
    );
    assert_eq!(f.stub.calls(), 1);
    f.wait_stored(1);
    assert_eq!(
        std::fs::read_to_string(f.dir().join("docs/page")).unwrap(),
        "<p>hello</p>"
    );

    // From the file, then from the copy in memory: the app is not called again.
    for _ in 0..2 {
        let r = f.get("/docs/page");
        assert_eq!(
            (r.status, x_cache(&r), r.text()),
            (200, "HIT", "<p>hello</p>")
        );
        assert_eq!(r.header("content-type"), Some("text/html"));
        assert_eq!(r.header("content-length"), Some("12"));
        assert!(r.header("etag").is_some() && r.header("last-modified").is_some());
    }
    assert_eq!(f.stub.calls(), 1);
    assert_eq!(
        (
            f.count(Event::Miss),
            f.count(Event::Store),
            f.count(Event::Hit)
        ),
        (1, 1, 2)
    );
    assert_eq!(f.files(), ["docs/page"]);
}

#[test]
fn the_app_sees_the_request_as_sent_on_a_miss() {
    let f = Fixture::page("filter:cache-passes-request", "x");
    f.call(Req::get("/a").header("accept-language", "fr"));
    let seen = f.stub.last();
    assert_eq!(
        (seen.method.as_str(), &seen.path_info[..]),
        ("GET", &b"/a"[..])
    );
    assert_eq!(seen.headers["accept-language"], "fr");
}

#[test]
fn a_directory_url_is_stored_as_the_directory_index() {
    let f = Fixture::page("filter:cache-index-default", "index");
    assert_eq!(x_cache(&f.get("/")), "MISS");
    assert_eq!(x_cache(&f.get("/docs/")), "MISS");
    f.wait_stored(2);
    assert_eq!(f.files(), ["__index.html", "docs/__index.html"]);
    assert_eq!(x_cache(&f.get("/docs/")), "HIT");

    let f = Fixture::new(
        "filter:cache-index-custom",
        &[("directory_index", "index.html")],
        Stub::new(Reply::html("index")),
    );
    f.get("/docs/");
    f.wait_stored(1);
    assert_eq!(f.files(), ["docs/index.html"]);
}

#[test]
fn pages_are_keyed_on_script_name_and_path_info() {
    let f = Fixture::page("filter:cache-script-name", "post");
    let r = f.call(Req::get("/post").script_name("/blog"));
    assert_eq!(x_cache(&r), "MISS");
    f.wait_stored(1);
    assert_eq!(f.files(), ["blog/post"]);
    // The same PATH_INFO under another mount is another page.
    assert_eq!(
        x_cache(&f.call(Req::get("/post").script_name("/news"))),
        "MISS"
    );
    assert_eq!(
        x_cache(&f.call(Req::get("/post").script_name("/blog"))),
        "HIT"
    );
    assert_eq!(f.stub.calls(), 2);
}

#[test]
fn without_status_header_no_header_is_added() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let c = section(
        Kind::Filter,
        "cache-no-mark",
        "cache",
        &ini_in(tmp.path()),
        &[("cache_dir", dir.to_str().unwrap())],
    );
    let stub = Stub::new(Reply::html("page"));
    let cache = make_filter(&c, stub.clone()).unwrap();
    let rt = Rt::new();
    for _ in 0..2 {
        let r = rt.call(&*cache, Req::get("/p").build());
        assert_eq!((r.status, r.text()), (200, "page"));
        assert!(r.header("x-cache").is_none(), "{:?}", r.headers);
    }
}

#[test]
fn requests_that_may_be_personal_bypass_the_cache() {
    let f = Fixture::page("filter:cache-bypass", "page");
    let cases: [(Req, Event); 5] = [
        (Req::new("POST", "/form").body("a=1"), Event::BypassMethod),
        (Req::new("DELETE", "/form"), Event::BypassMethod),
        (Req::get("/search?q=rust"), Event::BypassQuery),
        (
            Req::get("/me").header("cookie", "session=abc"),
            Event::BypassCookie,
        ),
        (
            Req::get("/me").header("authorization", "Basic dTpw"),
            Event::BypassAuthorization,
        ),
    ];
    for (i, (req, event)) in cases.into_iter().enumerate() {
        let before = f.count(event);
        let r = f.call(req);
        assert_eq!((r.status, x_cache(&r), r.text()), (200, "BYPASS", "page"));
        assert_eq!(f.stub.calls(), i + 1, "{event:?}: the app answers");
        assert_eq!(f.count(event), before + 1, "{event:?} counted");
    }
    // The POST body reached the app.
    assert_eq!(&f.stub.seen()[0].body[..], b"a=1");
    assert_eq!(f.stub.seen()[2].query_string, "q=rust");
    assert!(f.files().is_empty(), "{:?}", f.files());
    assert_eq!(f.count(Event::Miss), 0);
}

#[test]
fn cookies_listed_in_ignore_cookies_do_not_bypass() {
    let f = Fixture::new(
        "filter:cache-ignore-cookies",
        &[("ignore_cookies", "_ga*")],
        Stub::new(Reply::html("page")),
    );
    let r = f.call(Req::get("/p").header("cookie", "_ga=1; _ga_XY=2"));
    assert_eq!(x_cache(&r), "MISS");
    f.wait_stored(1);
    let r = f.call(Req::get("/p").header("cookie", "_ga=3"));
    assert_eq!(x_cache(&r), "HIT");
    // Any other cookie still makes the request personal.
    let r = f.call(Req::get("/p").header("cookie", "_ga=3; sid=4"));
    assert_eq!(x_cache(&r), "BYPASS");
    assert_eq!(f.stub.calls(), 2);
}

#[test]
fn responses_that_are_not_shareable_are_not_stored() {
    let cases: Vec<(&str, Reply, Event)> = vec![
        (
            "/set-cookie",
            Reply::html("x").header("set-cookie", "sid=1"),
            Event::NoStoreSetCookie,
        ),
        (
            "/no-store",
            Reply::html("x").header("cache-control", "no-store"),
            Event::NoStoreCacheControl,
        ),
        (
            "/private",
            Reply::html("x").header("cache-control", "private"),
            Event::NoStoreCacheControl,
        ),
        (
            "/not-found",
            Reply::html("x").status(404),
            Event::NoStoreStatus,
        ),
        (
            "/created",
            Reply::html("x").status(201),
            Event::NoStoreStatus,
        ),
        (
            "/json",
            Reply::ok("application/json", "{}"),
            Event::NoStoreTypeMismatch,
        ),
        (
            "/vary",
            Reply::html("x").header("vary", "Cookie"),
            Event::NoStoreVary,
        ),
        (
            "/gzip",
            Reply::html("x").header("content-encoding", "gzip"),
            Event::NoStoreContentEncoding,
        ),
        ("/empty", Reply::html(""), Event::NoStoreEmpty),
    ];
    let replies: Vec<(String, Reply)> = cases
        .iter()
        .map(|(p, r, _)| ((*p).to_owned(), r.clone()))
        .collect();
    let stub = Stub::answering(move |seen| {
        let path = String::from_utf8(seen.path_info.clone()).unwrap();
        replies.iter().find(|(p, _)| *p == path).unwrap().1.clone()
    });
    let f = Fixture::new("filter:cache-no-store", &[], stub);
    for (i, (path, reply, event)) in cases.iter().enumerate() {
        let before = f.count(*event);
        let r = f.get(path);
        assert_eq!(
            (r.status, x_cache(&r), &r.body[..]),
            (reply.status.as_u16(), "MISS", &reply.body[..]),
            "{path}"
        );
        // The app's own headers go out untouched.
        for (name, value) in &reply.headers {
            assert_eq!(r.headers.get(name), Some(value), "{path}: {name}");
        }
        f.rt.settle();
        assert_eq!(f.count(*event), before + 1, "{path}: {event:?}");
        // Not stored, so the next request asks the app again.
        assert_eq!(x_cache(&f.get(path)), "MISS", "{path}");
        assert_eq!(f.stub.calls(), 2 * (i + 1), "{path}");
    }
    assert_eq!(f.count(Event::Store), 0);
    assert!(f.files().is_empty(), "{:?}", f.files());
}

#[test]
fn a_page_over_max_entry_bytes_is_served_whole_and_not_stored() {
    let f = Fixture::new(
        "filter:cache-too-large",
        &[("max_entry_bytes", "8")],
        Stub::new(Reply::html("0123456789abcdef")),
    );
    let r = f.get("/big");
    assert_eq!((x_cache(&r), r.text()), ("MISS", "0123456789abcdef"));
    f.rt.wait_until("the refusal", || f.count(Event::NoStoreTooLarge) == 1);
    assert!(f.files().is_empty());
    assert_eq!(f.count(Event::Store), 0);
}

#[test]
fn unsafe_paths_reach_the_app_and_store_nothing() {
    let f = Fixture::page("filter:cache-unsafe-paths", "page");
    // (raw target, PATH_INFO as decoded by the server)
    let cases: [(&str, &[u8]); 7] = [
        ("/a/../b", b"/a/../b"),
        ("/%2e%2e/etc/passwd", b"/../etc/passwd"),
        ("/a%2Fb", b"/a/b"),
        ("/.hidden", b"/.hidden"),
        ("/a%5Cb", b"/a\\b"),
        ("/x%00y", b"/x\0y"),
        ("/__index.html", b"/__index.html"),
    ];
    for (i, (raw, decoded)) in cases.iter().enumerate() {
        let r = f.call(Req::get(raw).path_info(decoded));
        assert_eq!(
            (r.status, x_cache(&r), r.text()),
            (200, "BYPASS", "page"),
            "{raw}"
        );
        assert_eq!(f.stub.calls(), i + 1, "{raw}");
        assert_eq!(
            &f.stub.last().path_info[..],
            *decoded,
            "{raw} reaches the app untouched"
        );
    }
    assert_eq!(f.count(Event::BypassUnsafePath), cases.len() as u64);
    assert!(f.files().is_empty(), "{:?}", f.files());
    // Nothing was written outside cache_dir either.
    let mut names: Vec<_> = std::fs::read_dir(f.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["cache"]);
}

#[test]
fn cache_paths_limit_what_is_cached() {
    let f = Fixture::new(
        "filter:cache-scope",
        &[("cache_paths", "/docs, /blog/")],
        Stub::new(Reply::html("page")),
    );
    for inside in ["/docs/a", "/docs/b/", "/blog/a"] {
        assert_eq!(x_cache(&f.get(inside)), "MISS", "{inside}");
    }
    for outside in ["/docsx", "/blog", "/other"] {
        assert_eq!(x_cache(&f.get(outside)), "BYPASS", "{outside}");
    }
    assert_eq!(f.count(Event::BypassScope), 3);
    f.wait_stored(3);
    assert_eq!(f.files(), ["blog/a", "docs/a", "docs/b/__index.html"]);
}

#[test]
fn a_head_miss_is_not_stored_and_a_head_hit_has_no_body() {
    let f = Fixture::page("filter:cache-head", "head page");
    let r = f.call(Req::head("/h"));
    assert_eq!(x_cache(&r), "MISS");
    f.rt.settle();
    assert_eq!(f.count(Event::NoStoreHead), 1);
    assert!(f.files().is_empty());

    f.get("/h");
    f.wait_stored(1);
    let r = f.call(Req::head("/h"));
    assert_eq!((r.status, x_cache(&r)), (200, "HIT"));
    assert!(r.body.is_empty(), "HEAD has no body: {:?}", r.body);
    assert_eq!(r.header("content-length"), Some("9"));
    assert_eq!(f.stub.calls(), 2);
}

#[test]
fn a_hit_answers_conditional_requests_with_304() {
    let f = Fixture::page("filter:cache-conditional", "versioned");
    f.get("/v");
    f.wait_stored(1);
    let hit = f.get("/v");
    let etag = hit.header("etag").unwrap().to_owned();
    let modified = hit.header("last-modified").unwrap().to_owned();

    let r = f.call(Req::get("/v").header("if-none-match", &etag));
    assert_eq!((r.status, x_cache(&r)), (304, "HIT"));
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = f.call(Req::get("/v").header("if-modified-since", &modified));
    assert_eq!((r.status, x_cache(&r)), (304, "HIT"));
    // Another entity tag: the whole page.
    let r = f.call(Req::get("/v").header("if-none-match", "\"other\""));
    assert_eq!((r.status, r.text()), (200, "versioned"));
    assert_eq!(f.count(Event::NotModified), 2);
    assert_eq!(f.stub.calls(), 1);
}

#[test]
fn a_range_request_is_answered_from_the_file() {
    let f = Fixture::page("filter:cache-range", "0123456789");
    f.get("/r");
    f.wait_stored(1);
    let r = f.call(Req::get("/r").header("range", "bytes=2-4"));
    assert_eq!((r.status, x_cache(&r), r.text()), (206, "HIT", "234"));
    assert_eq!(r.header("content-range"), Some("bytes 2-4/10"));
    assert_eq!(f.stub.calls(), 1);
}

#[test]
fn deleting_the_file_is_the_purge() {
    let f = Fixture::page("filter:cache-purge", "page");
    f.get("/p");
    f.wait_stored(1);
    // Twice: the second hit is from the copy in memory.
    assert_eq!(x_cache(&f.get("/p")), "HIT");
    assert_eq!(x_cache(&f.get("/p")), "HIT");
    std::fs::remove_file(f.dir().join("p")).unwrap();
    assert_eq!(x_cache(&f.get("/p")), "MISS");
    assert_eq!(f.stub.calls(), 2);
    f.wait_stored(2);
    assert_eq!(std::fs::read_to_string(f.dir().join("p")).unwrap(), "page");
}

/// Make a cache section with `conf` (cache_dir under a temporary directory
/// unless `conf` names one) and return the constructor's refusal.
fn refusal(conf: &[(&str, &str)]) -> crate::core::builtin::SettingError {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let mut all: Vec<(&str, &str)> = Vec::new();
    if !conf.iter().any(|(k, _)| *k == "cache_dir") {
        all.push(("cache_dir", dir.to_str().unwrap()));
    }
    all.extend_from_slice(conf);
    let c = section(
        Kind::Filter,
        "cache-bad",
        "cache",
        &ini_in(tmp.path()),
        &all,
    );
    refused(make_filter(&c, Stub::new(Reply::html("x"))))
}

#[test]
fn an_unknown_key_is_refused_naming_it() {
    let e = refusal(&[("cache_dri", "x")]);
    assert_eq!(e.key.as_deref(), Some("cache_dri"));
    assert!(e.message.contains("unknown key `cache_dri`"), "{e}");
    assert!(
        e.message.contains("cache_dir"),
        "the known keys are listed: {e}"
    );
}

#[test]
fn bad_values_name_their_key() {
    for (key, value, says) in [
        ("status_header", "Bad Header", "not a valid header name"),
        ("lock_timeout", "soon", "expected seconds"),
        ("lock_timeout", "7200", "expected seconds"),
        ("max_entry_bytes", "lots", "expected a number of bytes"),
        ("directory_index", "a/b", "plain file name"),
        ("directory_index", ".index", "plain file name"),
        ("cache_paths", "docs", "must start with `/`"),
        ("fsync", "maybe", "expected true or false"),
        ("ignore_cookies", "a=b", "not a cookie name glob"),
        ("content_type", "", "not a valid header value"),
    ] {
        let e = refusal(&[(key, value)]);
        assert_eq!(e.key.as_deref(), Some(key), "{key} = {value}: {e}");
        assert!(e.message.contains(says), "{key} = {value}: {e}");
    }
}

#[test]
fn cache_dir_is_required_and_must_be_the_caches_own() {
    let tmp = tempfile::tempdir().unwrap();
    let c = section(Kind::Filter, "c", "cache", &ini_in(tmp.path()), &[]);
    let e = refused(make_filter(&c, Stub::new(Reply::html("x"))));
    assert_eq!(e.key.as_deref(), Some("cache_dir"), "{e}");
    assert!(e.message.contains("required"), "{e}");

    // The directory holding the configuration file is never a cache_dir.
    let e = refusal(&[("cache_dir", ".")]);
    assert_eq!(e.key.as_deref(), Some("cache_dir"), "{e}");
    assert!(e.message.contains("configuration file"), "{e}");
    let e = refusal(&[("cache_dir", "/etc")]);
    assert_eq!(e.key.as_deref(), Some("cache_dir"), "{e}");
    assert!(e.message.contains("system directory"), "{e}");
}

#[test]
fn a_non_empty_directory_without_the_marker_is_adopted_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("keep.txt"), "precious").unwrap();
    let ini = ini_in(tmp.path());
    let cache_dir = ("cache_dir", dir.to_str().unwrap());
    let c = section(Kind::Filter, "c", "cache", &ini, &[cache_dir]);
    let e = refused(make_filter(&c, Stub::new(Reply::html("x"))));
    assert_eq!(e.key.as_deref(), Some("cache_dir"), "{e}");
    assert!(e.message.contains("adopt = true"), "{e}");
    assert!(!dir.join(MARKER).exists());

    let c = section(
        Kind::Filter,
        "c",
        "cache",
        &ini,
        &[cache_dir, ("adopt", "true")],
    );
    make_filter(&c, Stub::new(Reply::html("x"))).expect("adopted");
    assert!(dir.join(MARKER).is_file());
    assert_eq!(
        std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
        "precious"
    );
}

fn cache_on(tmp: &Path, name: &str, dir: &Path, index: Option<&str>) -> Component {
    let mut conf = vec![("cache_dir", dir.to_str().unwrap())];
    if let Some(i) = index {
        conf.push(("directory_index", i));
    }
    section(Kind::Filter, name, "cache", &ini_in(tmp), &conf)
}

#[test]
fn two_caches_on_one_dir_must_map_urls_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shared");
    let inner = app_node(tmp.path());
    let stub = Stub::new(Reply::html("x"));
    let mut claims = DirClaims::default();

    let a = cache_on(tmp.path(), "a", &dir, None);
    make_filter_in(&a, &inner, stub.clone(), &mut claims).expect("the first claim");
    // Same mapping: fine.
    let b = cache_on(tmp.path(), "b", &dir, Some("__index.html"));
    make_filter_in(&b, &inner, stub.clone(), &mut claims).expect("an agreeing claim");
    // Another directory_index on the same directory: refused, naming the other.
    let c = cache_on(tmp.path(), "c", &dir, Some("index.html"));
    let e = refused(make_filter_in(&c, &inner, stub.clone(), &mut claims));
    assert_eq!(e.key.as_deref(), Some("cache_dir"), "{e}");
    assert!(e.message.contains("[filter:a]"), "{e}");
    assert!(
        e.message.contains("directory_index = __index.html there")
            && e.message.contains("directory_index = index.html here"),
        "{e}"
    );
    // The same path spelt another way is the same directory.
    let spelt = tmp.path().join("shared/../shared");
    let d = cache_on(tmp.path(), "d", &spelt, Some("index.html"));
    assert!(make_filter_in(&d, &inner, stub.clone(), &mut claims).is_err());
    // Another directory is free to map differently.
    let e2 = cache_on(
        tmp.path(),
        "e",
        &tmp.path().join("other"),
        Some("index.html"),
    );
    make_filter_in(&e2, &inner, stub, &mut claims).expect("another directory");
}

#[test]
fn a_cache_above_a_per_host_urlmap_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let map = section(Kind::App, "map", "urlmap", &ini_in(tmp.path()), &[]);
    let mount = |key: &str, line| Mount {
        key: parse_key(key).unwrap(),
        line,
        app: app_node(tmp.path()),
    };
    let per_host = Node::UrlMap {
        map: map.clone(),
        mounts: vec![mount("/", 3), mount("domain example.com /", 4)],
        not_found: None,
    };
    let c = cache_on(tmp.path(), "cache", &tmp.path().join("cache"), None);
    let stub = Stub::new(Reply::html("x"));
    let e = refused(make_filter_in(
        &c,
        &per_host,
        stub.clone(),
        &mut DirClaims::default(),
    ));
    assert!(e.message.contains("domain example.com"), "{e}");
    assert!(e.message.contains("line 4"), "{e}");

    // Path-only mounts are fine.
    let by_path = Node::UrlMap {
        map,
        mounts: vec![mount("/", 3), mount("/blog", 4)],
        not_found: None,
    };
    make_filter_in(&c, &by_path, stub, &mut DirClaims::default()).expect("no domain entries");
}

/// An app that answers only when the test opens its gate, so requests can
/// be made to overlap; `reply(n)` answers its `n`th call (from 1).
struct Gated {
    gate: tokio::sync::Semaphore,
    calls: std::sync::atomic::AtomicUsize,
    reply: fn(usize) -> Reply,
}

impl Gated {
    fn new(reply: fn(usize) -> Reply) -> Arc<Gated> {
        Arc::new(Gated {
            gate: tokio::sync::Semaphore::new(0),
            calls: Default::default(),
            reply,
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Handler for Gated {
    fn call(&self, _req: crate::core::Request) -> crate::core::ResponseFuture<'_> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            self.gate
                .acquire()
                .await
                .expect("the gate is open")
                .forget();
            (self.reply)(n).response()
        })
    }
}

/// Two overlapping GETs of `path` through a cache over `app`; the gate opens
/// once the first has reached the app and the second has had its turn.
fn overlapping(name: &str, app: &Arc<Gated>) -> (Fixture, Got, Got) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let c = section(
        Kind::Filter,
        name,
        "cache",
        &ini_in(tmp.path()),
        &[
            ("cache_dir", dir.to_str().unwrap()),
            ("status_header", "X-Cache"),
        ],
    );
    let cache = make_filter(&c, app.clone()).unwrap();
    let rt = Rt::new();
    let (first, second) = rt.block_on(async {
        let open = async {
            while app.calls() < 1 {
                tokio::task::yield_now().await;
            }
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            app.gate.add_permits(2);
        };
        let (first, second, ()) = tokio::join!(
            async { super::read(cache.call(Req::get("/hot").build()).await).await },
            async { super::read(cache.call(Req::get("/hot").build()).await).await },
            open
        );
        (first, second)
    });
    let f = Fixture {
        tmp,
        rt,
        stub: Stub::new(Reply::html("unused")),
        cache,
        section: c.section,
    };
    (f, first, second)
}

#[test]
fn concurrent_misses_call_the_app_once_and_share_the_stored_page() {
    let app = Gated::new(|n| Reply::html(&format!("page {n}")));
    let (f, first, second) = overlapping("filter:cache-coalesce", &app);
    assert_eq!(app.calls(), 1);
    assert_eq!((x_cache(&first), first.text()), ("MISS", "page 1"));
    assert_eq!((x_cache(&second), second.text()), ("HIT", "page 1"));
    assert_eq!(f.count(Event::Coalesced), 1);
    assert_eq!(f.files(), ["hot"]);
}

#[test]
fn a_waiter_never_gets_a_personal_response_of_the_leader() {
    let app =
        Gated::new(|n| Reply::html(&format!("for {n}")).header("set-cookie", &format!("sid={n}")));
    let (f, first, second) = overlapping("filter:cache-coalesce-personal", &app);
    assert_eq!(app.calls(), 2, "the waiter calls the app itself");
    assert_eq!(
        (first.text(), first.header("set-cookie")),
        ("for 1", Some("sid=1"))
    );
    assert_eq!(
        (second.text(), second.header("set-cookie")),
        ("for 2", Some("sid=2"))
    );
    assert_eq!(x_cache(&second), "MISS");
    assert_eq!(f.count(Event::CoalesceFallback), 1);
    assert!(f.files().is_empty());
}

/// A body of several chunks (each ready at once), which the cache spools
/// instead of taking whole; an `Err` item fails the body there.
struct Chunks(std::collections::VecDeque<Result<bytes::Bytes, crate::core::BodyError>>);

impl http_body::Body for Chunks {
    type Data = bytes::Bytes;
    type Error = crate::core::BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|r| r.map(http_body::Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

/// An app answering a `text/html` page streamed in `chunks` (`None`: the
/// body fails there), with `Content-Length: declared` if given.
struct Streaming {
    chunks: &'static [Option<&'static str>],
    declared: Option<u64>,
    calls: std::sync::atomic::AtomicUsize,
}

impl Handler for Streaming {
    fn call(&self, _req: crate::core::Request) -> crate::core::ResponseFuture<'_> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let items = self
            .chunks
            .iter()
            .map(|c| match c {
                Some(s) => Ok(bytes::Bytes::from_static(s.as_bytes())),
                None => Err("the app's body failed".into()),
            })
            .collect();
        let body = crate::core::Body::new(Chunks(items));
        let mut resp = http::Response::new(body);
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, "text/html".parse().unwrap());
        if let Some(n) = self.declared {
            resp.headers_mut()
                .insert(http::header::CONTENT_LENGTH, n.into());
        }
        Box::pin(std::future::ready(resp))
    }
}

/// One response: its X-Cache value and its body, or the body's error.
type Streamed = (String, Result<String, Failed>);

/// A body's error, by its message (comparable in assertions).
#[derive(Debug, PartialEq)]
struct Failed(String);

/// A cache over `app`, and two GETs of `/s` through it.
fn streamed(name: &str, app: Arc<Streaming>) -> (Fixture, Vec<Streamed>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let c = section(
        Kind::Filter,
        name,
        "cache",
        &ini_in(tmp.path()),
        &[
            ("cache_dir", dir.to_str().unwrap()),
            ("status_header", "X-Cache"),
        ],
    );
    let cache = make_filter(&c, app).unwrap();
    let f = Fixture {
        tmp,
        rt: Rt::new(),
        stub: Stub::new(Reply::html("unused")),
        cache,
        section: c.section,
    };
    let mut got = Vec::new();
    for _ in 0..2 {
        let one = f.rt.block_on(async {
            let resp = f.cache.call(Req::get("/s").build()).await;
            let mark = resp
                .headers()
                .get("x-cache")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .map(|b| String::from_utf8(b.to_bytes().to_vec()).unwrap())
                .map_err(|e| Failed(e.to_string()));
            (mark, body)
        });
        got.push(one);
        f.rt.settle();
    }
    (f, got)
}

fn streaming(chunks: &'static [Option<&'static str>], declared: Option<u64>) -> Arc<Streaming> {
    Arc::new(Streaming {
        chunks,
        declared,
        calls: Default::default(),
    })
}

#[test]
fn a_streamed_page_is_spooled_to_its_file_and_served_whole() {
    let app = streaming(&[Some("<p>"), Some("streamed"), Some("</p>")], Some(15));
    let (f, got) = streamed("filter:cache-spool", app.clone());
    assert_eq!(got[0], ("MISS".into(), Ok("<p>streamed</p>".into())));
    assert_eq!(got[1], ("HIT".into(), Ok("<p>streamed</p>".into())));
    assert_eq!(app.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        std::fs::read_to_string(f.dir().join("s")).unwrap(),
        "<p>streamed</p>"
    );
}

#[test]
fn a_body_failing_midway_fails_the_client_and_is_not_stored() {
    let app = streaming(&[Some("<p>half"), None], None);
    let (f, got) = streamed("filter:cache-spool-fails", app.clone());
    for (mark, body) in &got {
        assert_eq!(mark, "MISS");
        assert!(body.is_err(), "a cut body must not look complete: {body:?}");
    }
    assert_eq!(app.calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(f.count(Event::NoStoreIncomplete), 2);
    assert!(f.files().is_empty(), "{:?}", f.files());
}

#[test]
fn a_body_shorter_than_its_content_length_is_not_stored() {
    let app = streaming(&[Some("abc"), Some("de")], Some(10));
    let (f, got) = streamed("filter:cache-spool-short", app);
    for (mark, body) in &got {
        assert_eq!(mark, "MISS");
        assert!(body.is_err(), "{body:?}");
    }
    assert_eq!(f.count(Event::NoStoreIncomplete), 2);
    assert!(f.files().is_empty(), "{:?}", f.files());
}

/// The server's ready answers (`answer_now`, no environ) are exactly the
/// memory hits `call` gives, headers and all, and nothing else: every request
/// `call` would bypass the cache for, or answer from the file or the app, is
/// left to `call`.
#[test]
fn ready_answers_are_exactly_the_memory_hits() {
    let f = Fixture::new(
        "filter:cache-ready",
        &[("ignore_cookies", "_ga*")],
        Stub::new(Reply::html("<p>ready</p>")),
    );
    assert!(f.ready(Req::get("/r")).is_none(), "nothing stored yet");
    assert_eq!(x_cache(&f.get("/r")), "MISS");
    f.wait_stored(1);
    // The first hit reads the file into memory; from then on it is ready.
    assert!(f.ready(Req::get("/r")).is_none(), "not yet in memory");
    assert_eq!(x_cache(&f.get("/r")), "HIT");
    for req in [
        || Req::get("/r"),
        || Req::head("/r"),
        || Req::get("/r?"),
        || Req::get("/%72"),
        || Req::get("/r").header("cookie", "_ga=1; _gat=2"),
    ] {
        let ready = f.ready(req()).expect("a memory hit is ready");
        let slow = f.call(req());
        assert_eq!(
            (ready.status, &ready.headers, &ready.body),
            (slow.status, &slow.headers, &slow.body)
        );
        assert_eq!(x_cache(&ready), "HIT");
    }
    assert!(f.ready(Req::head("/r")).unwrap().body.is_empty());
    let hits = f.count(Event::Hit);
    for (what, req) in [
        ("a query", Req::get("/r?x=1")),
        (
            "credentials",
            Req::get("/r").header("authorization", "Bearer t"),
        ),
        (
            "a personal cookie",
            Req::get("/r").header("cookie", "_ga=1; sid=2"),
        ),
        (
            "a validator",
            Req::get("/r").header("if-none-match", "\"x\""),
        ),
        ("a range", Req::get("/r").header("range", "bytes=0-1")),
        ("a write", Req::new("POST", "/r")),
        ("a purge", Req::new("PURGE", "/r")),
        ("another page", Req::get("/other")),
    ] {
        assert!(f.ready(req).is_none(), "{what} is not answered at once");
    }
    assert_eq!(f.count(Event::Hit), hits, "declining counts nothing");
    // Deleted: not ready, and `call` goes to the app.
    std::fs::remove_file(f.dir().join("r")).unwrap();
    assert!(f.ready(Req::get("/r")).is_none());
    assert_eq!(x_cache(&f.get("/r")), "MISS");
}
