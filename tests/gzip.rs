//! `egg:plughost#gzip` over real HTTP in front of the echo plugin: every
//! negotiation case, and compressed bodies decoded (flate2, brotli) back to
//! exactly the bytes the app sent.

mod support;

use std::io::Read;

use support::*;

const CONFIG: &str =
    "[composite:main]\nuse = egg:Paste#urlmap\n/both = both\n/default = default\n\n\
    [app:both]\nuse = egg:echo\nfilter-with = gz-both\n\n\
    [filter:gz-both]\nuse = egg:Paste#gzip\ncompress_level = 6\nencodings = gzip br\n\n\
    [app:default]\nuse = egg:echo\nfilter-with = gz\n\n\
    [filter:gz]\nuse = egg:plughost#gzip\n";

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn unbrotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(data, 4096)
        .read_to_end(&mut out)
        .expect("valid brotli");
    out
}

#[test]
fn negotiated_codings_decode_to_the_apps_bytes() {
    let (host, _dir) = Host::start(CONFIG);
    for (path, n) in [("/both/a", 40_000usize), ("/default/a", 3 * 1024 * 1024)] {
        let size = n.to_string();
        let app = host.request("GET", path, &[("X-Echo-Bytes", &size)], b"");
        assert_eq!(app.status, 200);
        assert_eq!(app.body.len(), n);
        assert_eq!(app.header("content-encoding"), None);
        assert_eq!(app.header("vary"), Some("Accept-Encoding"));

        let gz = host.request(
            "GET",
            path,
            &[
                ("X-Echo-Bytes", &size),
                ("Accept-Encoding", "gzip, deflate"),
            ],
            b"",
        );
        assert_eq!(gz.status, 200);
        assert_eq!(gz.header("content-encoding"), Some("gzip"));
        assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
        assert!(
            gz.body.len() < n / 4,
            "{} bytes compressed to {}",
            n,
            gz.body.len()
        );
        assert!(
            gunzip(&gz.body) == app.body,
            "gzip of {path} decodes differently"
        );
    }

    // br preferred by q-value where it is offered; not where it is not.
    let ae = [
        ("X-Echo-Bytes", "50000"),
        ("Accept-Encoding", "gzip;q=0.5, br"),
    ];
    let br = host.request("GET", "/both/b", &ae, b"");
    assert_eq!(br.header("content-encoding"), Some("br"));
    let plain = host.request("GET", "/both/b", &ae[..1], b"");
    assert!(unbrotli(&br.body) == plain.body);
    let only_br = [("X-Echo-Bytes", "50000"), ("Accept-Encoding", "br")];
    let r = host.request("GET", "/default/b", &only_br, b"");
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, plain.body);
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));

    // Ties go to the configured order; q=0 refuses; `*` covers the rest.
    for (ae, want) in [
        ("br, gzip", Some("gzip")),
        ("gzip;q=0, br;q=0", None),
        ("identity", None),
        ("*", Some("gzip")),
        ("*;q=0.3, gzip;q=0", Some("br")),
    ] {
        let r = host.request(
            "GET",
            "/both/c",
            &[("X-Echo-Bytes", "50000"), ("Accept-Encoding", ae)],
            b"",
        );
        assert_eq!(r.header("content-encoding"), want, "Accept-Encoding: {ae}");
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    }
}

#[test]
fn compressing_drops_content_length_and_weakens_strong_etags() {
    let (host, _dir) = Host::start(CONFIG);
    let body = "x".repeat(5000);
    let headers = [
        ("X-Echo-Body", body.as_str()),
        ("X-Echo-Header", "ETag: \"v1\""),
        ("Accept-Encoding", "gzip"),
    ];
    let r = host.request("GET", "/default/e", &headers, b"");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("etag"), Some("W/\"v1\""));
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(gunzip(&r.body), body.as_bytes());
    let plain = host.request("GET", "/default/e", &headers[..2], b"");
    assert_eq!(plain.header("etag"), Some("\"v1\""));
    assert_eq!(plain.header("content-length"), Some("5000"));
}

/// Request headers of one case.
type Headers<'a> = Vec<(&'a str, &'a str)>;

#[test]
fn what_must_not_be_compressed_passes_untouched() {
    let (host, _dir) = Host::start(CONFIG);
    let big = "y".repeat(4000);
    let gz = ("Accept-Encoding", "gzip, br");
    let cases: Vec<(&str, &str, Headers)> = vec![
        (
            "already encoded",
            "GET",
            vec![
                ("X-Echo-Body", &big),
                ("X-Echo-Header", "Content-Encoding: br"),
            ],
        ),
        (
            "a range request",
            "GET",
            vec![("X-Echo-Body", &big), ("Range", "bytes=0-9")],
        ),
        ("HEAD", "HEAD", vec![("X-Echo-Body", &big)]),
        ("204", "GET", vec![("X-Echo-Status", "204")]),
        (
            "304",
            "GET",
            vec![("X-Echo-Status", "304"), ("X-Echo-Body", &big)],
        ),
        ("under min_size", "GET", vec![("X-Echo-Body", "tiny body")]),
        (
            "an image",
            "GET",
            vec![
                ("X-Echo-Body", &big),
                ("X-Echo-Header", "Content-Type: image/png"),
            ],
        ),
        (
            "no-transform",
            "GET",
            vec![
                ("X-Echo-Body", &big),
                ("X-Echo-Header", "Cache-Control: no-transform"),
            ],
        ),
    ];
    for (what, method, mut headers) in cases {
        headers.push(gz);
        let r = host.request(method, "/both/u", &headers, b"");
        assert_ne!(r.header("content-encoding"), Some("gzip"), "{what}");
        assert_eq!(r.header("vary"), None, "{what}: Vary added");
        if what == "already encoded" {
            assert_eq!(r.header("content-encoding"), Some("br"));
            assert_eq!(r.body, big.as_bytes());
        }
    }
    // JSON is compressible by default.
    let r = host.request(
        "GET",
        "/both/j",
        &[
            ("X-Echo-Body", &big),
            (
                "X-Echo-Header",
                "Content-Type: application/json; charset=utf-8",
            ),
            gz,
        ],
        b"",
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
}

#[test]
fn a_bad_setting_names_its_key() {
    let dir = tempdir();
    let err = Host::try_start_in(
        dir.path(),
        "[app:main]\nuse = egg:echo\nfilter-with = gz\n\n[filter:gz]\nuse = egg:plughost#gzip\nencodings = gzip zstd\n",
        &[],
    )
    .err()
    .expect("refused");
    assert!(err.contains("[filter:gz] encodings"), "{err}");
    assert!(err.contains("unknown encoding \"zstd\""), "{err}");
}
