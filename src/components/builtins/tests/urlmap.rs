//! The urlmap composite (`egg:plughost#urlmap`), made by its `Make::Composite`
//! constructor from stub mounts, in the order the configuration model gives.

use std::sync::Arc;

use super::{call, make_composite, Got, Reply, Req, Stub};
use crate::core::builtin::Mounted;
use crate::core::config::urlmap::parse_key;
use crate::core::Handler;

/// A stub answering its own name, so a response says who answered.
fn named(name: &str) -> Arc<Stub> {
    Stub::new(Reply::ok("text/plain", name))
}

fn mounts(entries: &[(&str, &Arc<Stub>)]) -> Vec<Mounted> {
    entries
        .iter()
        .map(|(key, stub)| {
            let app: Arc<dyn Handler> = (*stub).clone();
            (parse_key(key).unwrap(), app)
        })
        .collect()
}

fn get(map: &Arc<dyn Handler>, req: Req) -> Got {
    call(&**map, req.build())
}

#[test]
fn the_longest_matching_prefix_wins_and_moves_to_script_name() {
    let (root, a, ab) = (named("root"), named("a"), named("ab"));
    // Written shortest first; the model orders them longest first.
    let map = make_composite(
        "urlmap",
        mounts(&[("/", &root), ("/a", &a), ("/a/b", &ab)]),
        None,
    );

    let r = get(&map, Req::get("/a/b/c?x=1"));
    assert_eq!((r.status, r.text()), (200, "ab"));
    let seen = ab.last();
    assert_eq!(
        (&seen.script_name[..], &seen.path_info[..]),
        (&b"/a/b"[..], &b"/c"[..])
    );
    // Everything else about the request is as sent.
    assert_eq!(
        (seen.raw_path.as_str(), seen.query_string.as_str()),
        ("/a/b/c", "x=1")
    );

    assert_eq!(get(&map, Req::get("/a/x")).text(), "a");
    assert_eq!(
        (&a.last().script_name[..], &a.last().path_info[..]),
        (&b"/a"[..], &b"/x"[..])
    );
    assert_eq!(get(&map, Req::get("/zzz")).text(), "root");
    assert_eq!(
        (&root.last().script_name[..], &root.last().path_info[..]),
        (&b""[..], &b"/zzz"[..])
    );
    assert_eq!((root.calls(), a.calls(), ab.calls()), (1, 1, 1));
}

#[test]
fn an_exact_match_leaves_an_empty_path_info() {
    let blog = named("blog");
    let map = make_composite("urlmap", mounts(&[("/blog", &blog)]), None);
    assert_eq!(get(&map, Req::get("/blog")).text(), "blog");
    assert_eq!(
        (&blog.last().script_name[..], &blog.last().path_info[..]),
        (&b"/blog"[..], &b""[..])
    );
    let r = get(&map, Req::get("/blog/"));
    assert_eq!(r.text(), "blog");
    assert_eq!(&blog.last().path_info[..], b"/");
}

#[test]
fn prefixes_match_whole_segments_only() {
    let a = named("a");
    let map = make_composite("urlmap", mounts(&[("/a", &a)]), None);
    let r = get(&map, Req::get("/ab"));
    assert_eq!((r.status, r.text()), (404, "404 Not Found\n"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(a.calls(), 0);
}

#[test]
fn runs_of_slashes_collapse_before_matching() {
    let a = named("a");
    let map = make_composite("urlmap", mounts(&[("/a", &a)]), None);
    assert_eq!(get(&map, Req::get("//a//b")).text(), "a");
    assert_eq!(
        (&a.last().script_name[..], &a.last().path_info[..]),
        (&b"/a"[..], &b"/b"[..])
    );
}

#[test]
fn the_mount_extends_an_existing_script_name() {
    let docs = named("docs");
    let map = make_composite("urlmap", mounts(&[("/docs", &docs)]), None);
    get(&map, Req::get("/docs/x").script_name("/site"));
    assert_eq!(
        (&docs.last().script_name[..], &docs.last().path_info[..]),
        (&b"/site/docs"[..], &b"/x"[..])
    );
}

#[test]
fn domain_entries_match_the_host_header_and_win_over_paths() {
    let (any, example, shop, api) = (
        named("any"),
        named("example"),
        named("shop:8080"),
        named("api"),
    );
    let map = make_composite(
        "urlmap",
        mounts(&[
            ("/", &any),
            ("domain example.com /", &example),
            ("domain shop.example port 8080 /", &shop),
            ("domain api.example.com /v1", &api),
        ]),
        None,
    );
    let host = |h: &str, path: &str| {
        get(&map, Req::get(path).header("host", h))
            .text()
            .to_owned()
    };
    assert_eq!(host("example.com", "/x"), "example");
    assert_eq!(
        host("EXAMPLE.com", "/x"),
        "example",
        "host names match case-insensitively"
    );
    assert_eq!(host("example.com:80", "/x"), "example");
    // A port in the key matches that port only (the default port is the scheme's).
    assert_eq!(host("shop.example:8080", "/x"), "shop:8080");
    assert_eq!(host("shop.example", "/x"), "any");
    assert_eq!(host("shop.example:8081", "/x"), "any");
    assert_eq!(host("other.org", "/x"), "any");
    assert_eq!(host("api.example.com", "/v1/users"), "api");
    assert_eq!(
        (&api.last().script_name[..], &api.last().path_info[..]),
        (&b"/v1"[..], &b"/users"[..])
    );
    // The domain matches but not the path: the path-only entries are next.
    assert_eq!(host("api.example.com", "/v2"), "any");
    // Without a Host header, SERVER_NAME is the host.
    let r = get(&map, Req::get("/x"));
    assert_eq!(r.text(), "any");
}

#[test]
fn unmatched_requests_go_to_not_found_unchanged_or_get_404() {
    let (a, lost) = (named("a"), named("lost"));
    let app: Arc<dyn Handler> = lost.clone();
    let map = make_composite("urlmap", mounts(&[("/a", &a)]), Some(app));
    let r = get(&map, Req::get("/elsewhere").script_name("/m"));
    assert_eq!((r.status, r.text()), (200, "lost"));
    assert_eq!(
        (&lost.last().script_name[..], &lost.last().path_info[..]),
        (&b"/m"[..], &b"/elsewhere"[..])
    );

    let map = make_composite("urlmap", mounts(&[("/a", &a)]), None);
    assert_eq!(get(&map, Req::get("/elsewhere")).status, 404);
    let empty = make_composite("urlmap", Vec::new(), None);
    assert_eq!(get(&empty, Req::get("/")).status, 404);
    assert_eq!(a.calls(), 0);
}

#[test]
fn the_paste_name_is_the_same_composite() {
    let a = named("a");
    let map = make_composite("urlmap", mounts(&[("/a", &a)]), None);
    assert!(crate::components::builtins::catalog()
        .lookup("Paste", "urlmap")
        .is_some_and(|b| b.name == "urlmap"));
    assert_eq!(get(&map, Req::get("/a")).text(), "a");
}

#[test]
fn a_port_entry_matches_a_host_without_port_on_the_default_port() {
    let (any, named_host) = (named("any"), named("named"));
    let map = make_composite(
        "urlmap",
        mounts(&[("/", &any), ("domain example.com port 80 /", &named_host)]),
        None,
    );
    let host = |h: &str| get(&map, Req::get("/").header("host", h)).text().to_owned();
    assert_eq!(host("example.com"), "named");
    assert_eq!(host("example.com:80"), "named");
    assert_eq!(host("example.com:8080"), "any");
}

/// A bracketed IPv6 Host without a port (`[::1]`) is on the default port, as
/// `example.com` is (urlmap once split it at its last `:`, inside the literal).
#[test]
fn a_port_entry_matches_a_bare_ipv6_host_on_the_default_port() {
    let (any, v6) = (named("any"), named("v6"));
    let map = make_composite(
        "urlmap",
        mounts(&[("/", &any), ("domain [::1] port 80 /", &v6)]),
        None,
    );
    let host = |h: &str| get(&map, Req::get("/").header("host", h)).text().to_owned();
    assert_eq!(host("[::1]:80"), "v6");
    assert_eq!(host("[::1]"), "v6");
}
