//! Request head → environ on arbitrary request targets and headers: never
//! panics; PATH_INFO is the percent-decoded path minus `url_prefix` (on a
//! segment boundary), SCRIPT_NAME the prefix, QUERY_STRING the raw query, and
//! SERVER_NAME is never empty.

#![no_main]

use std::net::SocketAddr;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;
use plughost::body;
use plughost::server::environ::{environ, Peer, ServerEnv};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    method: &'a [u8],
    target: &'a [u8],
    headers: Vec<(&'a [u8], &'a [u8])>,
    /// `url_prefix`, normalised as `[server:main]` does (skipped when invalid).
    url_prefix: &'a str,
}

fuzz_target!(|input: Input| {
    let mut builder = http::Request::builder()
        .method(input.method)
        .uri(input.target);
    for (name, value) in &input.headers {
        builder = builder.header(*name, *value);
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let prefix = input.url_prefix.trim_end_matches('/');
    if !prefix.is_empty() && !prefix.starts_with('/') {
        return;
    }
    let (parts, ()) = request.into_parts();
    let uri = parts.uri.clone();
    let env = ServerEnv {
        url_scheme: "http".into(),
        url_prefix: prefix.to_owned(),
        local: SocketAddr::from(([127, 0, 0, 1], 8080)),
    };
    let peer = Peer::new(SocketAddr::from(([192, 0, 2, 1], 40000)));
    let req = environ(parts, body::empty(), &peer, &env);

    assert_eq!(req.raw_path, uri.path());
    let decoded: Vec<u8> = percent_decode_str(uri.path()).collect();
    assert_eq!(req.script_name, prefix.as_bytes());
    let p = prefix.as_bytes();
    let under = !p.is_empty()
        && decoded.starts_with(p)
        && (decoded.len() == p.len() || decoded[p.len()] == b'/');
    if under {
        assert_eq!(req.path_info, &decoded[p.len()..]);
    } else {
        assert_eq!(req.path_info, decoded);
    }
    assert_eq!(req.query_string, uri.query().unwrap_or(""));
    assert!(!req.server_name.is_empty(), "{uri:?} {:?}", req.headers);
    assert_eq!(req.server_port, 8080);
    assert_eq!(&*req.remote_addr, "192.0.2.1");
});
