//! What changes on the way through: the backend path (PATH_INFO joined onto the
//! address path as Paste's proxy does, with `urljoin`), hop-by-hop headers
//! (RFC 9110 7.6.1: the fixed list and whatever `Connection` names) removed in
//! both directions, and `X-Forwarded-For`/`-Proto`/`-Host` added.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::core::Request;

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
    let quoted = percent_encode(path_info, QUOTE).to_string();
    let mut out = if base.is_empty() {
        if quoted.starts_with('/') {
            quoted
        } else {
            format!("/{quoted}")
        }
    } else {
        let rel = quoted.strip_prefix('/').unwrap_or(&quoted);
        let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
        let dir = if dir.is_empty() { "/" } else { dir };
        if rel.is_empty() {
            base.to_owned()
        } else {
            format!("{dir}{rel}")
        }
    };
    if !query.is_empty() {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Headers that describe one connection, never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Remove hop-by-hop headers, including those the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// The headers sent to the backend: the client's, less hop-by-hop and
/// suppressed ones, with `Host` the backend's and the `X-Forwarded-*` trio.
/// `X-Forwarded-For` appends REMOTE_ADDR to the chain that reached the
/// pipeline (the server's `trusted_proxy` keys decide what chain that is).
pub(crate) fn request_headers(
    req: &mut Request,
    host: &HeaderValue,
    suppress: &[String],
) -> HeaderMap {
    let mut headers = std::mem::take(&mut req.headers);
    strip_hop_by_hop(&mut headers);
    for name in suppress {
        headers.remove(name.as_str());
    }
    // The server has read the whole body already: nothing to continue.
    headers.remove(header::EXPECT);
    let original_host = headers.remove(header::HOST);
    headers.insert(header::HOST, host.clone());
    let chain: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let mut xff = chain.join(&b", "[..]);
    if !xff.is_empty() {
        xff.extend_from_slice(b", ");
    }
    xff.extend_from_slice(req.remote_addr.as_bytes());
    if let Ok(v) = HeaderValue::from_bytes(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    if let Ok(v) = HeaderValue::from_str(&req.scheme) {
        headers.insert("x-forwarded-proto", v);
    }
    let fwd_host = original_host.or_else(|| {
        let default = if &*req.scheme == "https" { 443 } else { 80 };
        let text = if req.server_port == default {
            req.server_name.clone()
        } else {
            format!("{}:{}", req.server_name, req.server_port)
        };
        HeaderValue::from_str(&text).ok()
    });
    if let Some(v) = fwd_host {
        headers.insert("x-forwarded-host", v);
    }
    headers
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
