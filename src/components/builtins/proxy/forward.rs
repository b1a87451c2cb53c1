//! What changes on the way through: the backend path (PATH_INFO joined onto the
//! address path as Paste's proxy does, with `urljoin`), hop-by-hop headers
//! (RFC 9110 7.6.1: the fixed list and whatever `Connection` names) removed in
//! both directions, and `X-Forwarded-For`/`-Proto`/`-Host` added.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Method;
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::core::{Body, Request};

/// Python's `urllib.quote` with its default `safe='/'`.
const QUOTE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// The backend request target: `urljoin(base, quote(PATH_INFO).lstrip('/'))`
/// plus the query. A base without a trailing slash has its last segment
/// replaced, as in Paste (`/app` + `/x` is `/x`; `/app/` + `/x` is `/app/x`).
pub(crate) fn target(base: &str, path_info: &[u8], query: &str) -> String {
    // Built in one string. `/` is never quoted, so the quoted PATH_INFO starts
    // with one exactly when PATH_INFO does, and stripping it before quoting is
    // the same as after.
    let mut out = String::with_capacity(base.len() + path_info.len() + query.len() + 8);
    let push_quoted = |out: &mut String, raw: &[u8]| {
        for piece in percent_encode(raw, QUOTE) {
            out.push_str(piece);
        }
    };
    if base.is_empty() {
        if !path_info.starts_with(b"/") {
            out.push('/');
        }
        push_quoted(&mut out, path_info);
    } else {
        let rel = path_info.strip_prefix(b"/").unwrap_or(path_info);
        if rel.is_empty() {
            out.push_str(base);
        } else {
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            out.push_str(if dir.is_empty() { "/" } else { dir });
            push_quoted(&mut out, rel);
        }
    }
    if !query.is_empty() {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1,
/// plus the old `Keep-Alive` and `Proxy-Connection`).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Whether `name` is one of [`HOP_BY_HOP`]: one string match (by length,
/// then bytes), where comparing with each name in turn costs more.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// The header names a `Connection` header lists (each one hop-by-hop too).
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

/// Remove hop-by-hop headers, including those the `Connection` header names.
/// One pass over the names first: most messages have none, and a removal is
/// a hash lookup each.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    for name in connection_named(headers) {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The client's request without its body, as it came: what the backend request
/// is made from, kept so that a retry can make the same request again.
pub(crate) struct Origin {
    pub method: Method,
    pub headers: HeaderMap,
    pub remote_addr: Arc<str>,
    pub scheme: Arc<str>,
    /// Empty when the request has a Host header (only used without one).
    pub server_name: String,
    pub server_port: u16,
}

impl Origin {
    /// Split `req` into its origin and its body. What the proxy does not keep
    /// (the path buffers, and the server name unless X-Forwarded-Host needs
    /// it) is recycled for the next request's environ on this thread.
    pub(crate) fn split(mut req: Request) -> (Origin, Body) {
        let headers = std::mem::take(&mut req.headers);
        // A scan of the few names, cheaper than hashing one for a lookup.
        let server_name = if headers.keys().any(|k| k == header::HOST) {
            String::new()
        } else {
            std::mem::take(&mut req.server_name)
        };
        let origin = Origin {
            method: std::mem::replace(&mut req.method, Method::GET),
            headers,
            remote_addr: req.remote_addr.clone(),
            scheme: req.scheme.clone(),
            server_name,
            server_port: req.server_port,
        };
        let body = std::mem::replace(&mut req.body, crate::core::body::empty());
        req.recycle();
        (origin, body)
    }
}

/// The headers sent to the backend, each handed to `emit` as name and value
/// bytes (the head writer puts them straight into the request head; no map is
/// built): the client's, less hop-by-hop, suppressed and framing ones
/// (`Content-Length`: the writer frames the body itself), then `Host` the
/// backend's and the `X-Forwarded-*` trio. `X-Forwarded-For` appends
/// REMOTE_ADDR to the chain that reached the pipeline (the server's
/// `trusted_proxy` keys decide what chain that is). Every value is a valid
/// header value (no CR, LF or other control bytes).
///
/// The client's request is left as it was: a retry emits the same headers
/// again instead of every request keeping a copy.
pub(crate) fn each_request_header(
    req: &Origin,
    host: &HeaderValue,
    suppress: &[String],
    mut emit: impl FnMut(&[u8], &[u8]),
) {
    let incoming = &req.headers;
    let suppressed = |name: &HeaderName| suppress.iter().any(|s| s.as_str() == name.as_str());
    // A scan of the few names, cheaper than hashing one for a lookup.
    let named = if incoming.keys().any(|k| k == header::CONNECTION) {
        connection_named(incoming)
    } else {
        Vec::new()
    };
    // One pass, no further lookups into the client's map: what is set below
    // from the client's values (Host, the X-Forwarded-For chain) is taken on
    // the way.
    let mut original_host = None;
    let mut xff = Vec::new();
    for (name, value) in incoming {
        if suppressed(name) || named.contains(name) {
            continue;
        }
        if name == header::HOST {
            original_host.get_or_insert(value);
        } else if name == X_FORWARDED_FOR {
            xff.extend_from_slice(value.as_bytes());
            xff.extend_from_slice(b", ");
        } else if !(is_hop_by_hop(name)
            // The server has read the whole body already: nothing to continue.
            || name == header::EXPECT
            || name == header::CONTENT_LENGTH
            || name == X_FORWARDED_PROTO
            || name == X_FORWARDED_HOST)
        {
            emit(name.as_str().as_bytes(), value.as_bytes());
        }
    }
    emit(b"host", host.as_bytes());
    let remote = req.remote_addr.as_bytes();
    if valid_value(remote) {
        if xff.is_empty() {
            emit(b"x-forwarded-for", remote);
        } else {
            xff.extend_from_slice(remote);
            emit(b"x-forwarded-for", &xff);
        }
    }
    if valid_value(req.scheme.as_bytes()) {
        emit(b"x-forwarded-proto", req.scheme.as_bytes());
    }
    let name = b"x-forwarded-host";
    match original_host {
        Some(h) => emit(name, h.as_bytes()),
        None => {
            let default = if &*req.scheme == "https" { 443 } else { 80 };
            if req.server_port == default {
                if valid_value(req.server_name.as_bytes()) {
                    emit(name, req.server_name.as_bytes());
                }
            } else {
                let text = format!("{}:{}", req.server_name, req.server_port);
                if valid_value(text.as_bytes()) {
                    emit(name, text.as_bytes());
                }
            }
        }
    }
}

/// What `HeaderValue::from_bytes` accepts: visible ASCII, obs-text, space
/// and tab (so nothing can end the header line early).
fn valid_value(v: &[u8]) -> bool {
    v.iter().all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

/// The backend headers as a map (for tests: the proxy writes them straight
/// into the request head).
#[cfg(test)]
pub(crate) fn request_headers(req: &Origin, host: &HeaderValue, suppress: &[String]) -> HeaderMap {
    let mut out = HeaderMap::new();
    each_request_header(req, host, suppress, |name, value| {
        out.append(
            HeaderName::from_bytes(name).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_as_urljoin_does() {
        assert_eq!(target("", b"/a b", ""), "/a%20b");
        assert_eq!(target("", b"", "q=1"), "/?q=1");
        assert_eq!(target("/base/", b"/x/y", "q=1"), "/base/x/y?q=1");
        assert_eq!(target("/base", b"/x", ""), "/x");
        assert_eq!(target("/base/", b"/", ""), "/base/");
        assert_eq!(target("/base/", b"", ""), "/base/");
        assert_eq!(target("", b"/caf\xc3\xa9", ""), "/caf%C3%A9");
        assert_eq!(target("", b"x y", ""), "/x%20y");
        assert_eq!(target("app", b"/x", ""), "/x");
        assert_eq!(target("/base/", b"//x", ""), "/base//x");
    }

    fn origin(headers: &[(&'static str, &'static str)]) -> Origin {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(*k, HeaderValue::from_static(v));
        }
        Origin {
            method: Method::GET,
            headers: map,
            remote_addr: "192.0.2.7".into(),
            scheme: "http".into(),
            server_name: "example.org".into(),
            server_port: 8080,
        }
    }

    #[test]
    fn the_backend_headers_forward_the_client_and_drop_hop_by_hop_ones() {
        let host = HeaderValue::from_static("backend:9000");
        let req = origin(&[
            ("host", "site.example"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("te", "trailers"),
            ("expect", "100-continue"),
            ("x-forwarded-for", "203.0.113.1"),
            ("x-forwarded-for", "198.51.100.2"),
            ("x-forwarded-proto", "https"),
            ("cookie", "a=b"),
            ("accept", "text/html"),
            ("accept", "*/*"),
            ("content-length", "0"),
        ]);
        let h = request_headers(&req, &host, &["cookie".into()]);
        assert_eq!(h["host"], "backend:9000");
        assert_eq!(h["x-forwarded-for"], "203.0.113.1, 198.51.100.2, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "site.example");
        let accept: Vec<_> = h.get_all("accept").iter().collect();
        assert_eq!(accept, ["text/html", "*/*"]);
        for gone in [
            "connection",
            "x-private",
            "te",
            "expect",
            "cookie",
            "content-length",
        ] {
            assert!(!h.contains_key(gone), "{gone} was forwarded");
        }
        assert_eq!(h.len(), 6, "{h:?}");
        // The request is left as it came, for a retry to build the same again.
        assert_eq!(req.headers.len(), 12);
        assert_eq!(request_headers(&req, &host, &["cookie".into()]), h);
    }

    #[test]
    fn without_a_host_the_forwarded_host_is_the_server_name_and_port() {
        let h = request_headers(&origin(&[]), &HeaderValue::from_static("b"), &[]);
        assert_eq!(h["x-forwarded-host"], "example.org:8080");
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
    }

    #[test]
    fn the_hop_by_hop_match_is_the_list() {
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in ["x-kept", "host", "connectio", "tee", "content-length"] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }
}
