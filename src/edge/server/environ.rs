//! Turning an HTTP request into the pipeline's [`Request`] (WSGI's environ).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use percent_encoding::percent_decode_str;

use crate::core::hostport::split_host_port;

use crate::core::request::SpareBuffers;
use crate::core::{Body, Request};

/// Per-listener facts that go into every request.
#[derive(Debug, Clone)]
pub struct ServerEnv {
    pub url_scheme: Arc<str>,
    pub url_prefix: String,
    pub local: SocketAddr,
}

/// The client's side of one connection, formatted once for all its requests.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub ip: Arc<str>,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            ip: addr.ip().to_string().into(),
        }
    }

    /// A unix-socket client: REMOTE_ADDR `localhost`, as waitress has it (so
    /// `trusted_proxy = localhost` trusts a proxy on the socket).
    pub fn unix() -> Peer {
        Peer {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ip: "localhost".into(),
        }
    }
}

/// Build the environ from the request head; `body` is the (limited) request body.
///
/// The strings go into the buffers of the last request this thread recycled
/// (`Request::recycle`), so most requests allocate none.
pub fn environ(parts: http::request::Parts, body: Body, peer: &Peer, env: &ServerEnv) -> Request {
    let SpareBuffers {
        mut raw_path,
        path_info: mut decoded,
        mut server_name,
    } = SpareBuffers::take();
    raw_path.push_str(parts.uri.path());
    // Borrowed when there is nothing to decode (most paths): one copy.
    decoded.extend_from_slice(&Cow::from(percent_decode_str(&raw_path)));
    let (script_name, path_info) = split_prefix(&env.url_prefix, decoded);
    // An absolute-form or authority-form target's host wins over Host (RFC 9112
    // §3.2.2): `[::1]` loses its brackets as in Host, and an empty one
    // (`GET : HTTP/1.0`) is no name.
    let host = parts
        .uri
        .host()
        .and_then(host_without_port)
        .filter(|h| !h.is_empty())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(host_without_port)
                .filter(|h| !h.is_empty())
        });
    match host {
        Some(host) => server_name.push_str(host),
        None => {
            use std::fmt::Write;
            let _ = write!(server_name, "{}", env.local.ip());
        }
    }
    Request {
        method: parts.method,
        scheme: env.url_scheme.clone(),
        script_name,
        path_info,
        raw_path,
        query_string: parts.uri.query().unwrap_or("").to_owned(),
        version: parts.version,
        server_name,
        server_port: env.local.port(),
        remote_addr: peer.ip.clone(),
        remote_port: peer.addr.port(),
        headers: parts.headers,
        extras: Vec::new(),
        body,
        on_worker: false,
    }
}

/// waitress's `url_prefix`: SCRIPT_NAME is the prefix, and a path under it (on a
/// segment boundary) loses it from PATH_INFO.
fn split_prefix(prefix: &str, path: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        return (Vec::new(), path);
    }
    let p = prefix.as_bytes();
    if path.starts_with(p) && (path.len() == p.len() || path[p.len()] == b'/') {
        (p.to_vec(), path[p.len()..].to_vec())
    } else {
        (p.to_vec(), path)
    }
}

/// The host of a URI or Host header without its port or an IPv6 literal's
/// brackets; `None` if it does not split (head checks refuse such a Host).
fn host_without_port(host: &str) -> Option<&str> {
    split_host_port(host).ok().map(|hp| hp.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_on_segment_boundary() {
        assert_eq!(
            split_prefix("/app", b"/app/x".to_vec()),
            (b"/app".to_vec(), b"/x".to_vec())
        );
        assert_eq!(
            split_prefix("/app", b"/app".to_vec()),
            (b"/app".to_vec(), b"".to_vec())
        );
        assert_eq!(
            split_prefix("/app", b"/apple".to_vec()),
            (b"/app".to_vec(), b"/apple".to_vec())
        );
        assert_eq!(
            split_prefix("", b"/a".to_vec()),
            (b"".to_vec(), b"/a".to_vec())
        );
    }

    fn environ_of(target: &str, host: Option<&str>) -> Request {
        let mut builder = http::Request::builder().uri(target);
        if let Some(host) = host {
            builder = builder.header(http::header::HOST, host);
        }
        let (parts, ()) = builder.body(()).unwrap().into_parts();
        let env = ServerEnv {
            url_scheme: "http".into(),
            url_prefix: String::new(),
            local: SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let peer = Peer::new(SocketAddr::from(([127, 0, 0, 1], 40000)));
        environ(parts, crate::core::body::empty(), &peer, &env)
    }

    /// Found by the `environ` fuzz target: `GET : HTTP/1.0` (no Host header)
    /// is an authority-form target with an empty host, which became an empty
    /// SERVER_NAME; `http://:80/` did the same.
    #[test]
    fn fuzz_empty_uri_host_falls_back_to_local_address() {
        for target in [":", "http://:80/x"] {
            assert_eq!(
                environ_of(target, None).server_name,
                "127.0.0.1",
                "{target}"
            );
        }
        assert_eq!(
            environ_of(":", Some("example.com")).server_name,
            "example.com"
        );
    }

    /// Seen while reducing that crash: the URI's IPv6 host kept its brackets,
    /// which the same host in a Host header loses.
    #[test]
    fn fuzz_ipv6_uri_host_loses_brackets_like_host_header() {
        assert_eq!(environ_of("http://[::1]:8080/x", None).server_name, "::1");
        assert_eq!(environ_of("/x", Some("[::1]:8080")).server_name, "::1");
        assert_eq!(
            environ_of("http://example.com/x", None).server_name,
            "example.com"
        );
    }

    #[test]
    fn a_recycled_request_lends_its_buffers_to_the_next_environ() {
        let first = environ_of("/a/much/longer/path%20here?x=1", Some("first.example:81"));
        assert_eq!(first.path_info, b"/a/much/longer/path here");
        let ptrs = (first.raw_path.as_ptr(), first.server_name.as_ptr());
        first.recycle();
        let second = environ_of("/b", Some("b.example"));
        assert_eq!(
            (
                second.raw_path.as_str(),
                &second.path_info[..],
                second.server_name.as_str()
            ),
            ("/b", &b"/b"[..], "b.example"),
            "nothing of the longer request is left in the buffers"
        );
        assert_eq!(
            (second.raw_path.as_ptr(), second.server_name.as_ptr()),
            ptrs,
            "the same buffers"
        );
        // Without a recycled request the environ is built as before.
        let third = environ_of("/c", None);
        assert_eq!(
            (third.raw_path.as_str(), third.server_name.as_str()),
            ("/c", "127.0.0.1")
        );
    }

    #[test]
    fn absolute_form_target_wins_over_host() {
        assert_eq!(
            environ_of("http://target.example:81/x", Some("other.example")).server_name,
            "target.example"
        );
    }

    #[test]
    fn host_header_forms() {
        assert_eq!(host_without_port("example.com:8080"), Some("example.com"));
        assert_eq!(host_without_port("[::1]:80"), Some("::1"));
        assert_eq!(host_without_port("example.com"), Some("example.com"));
    }
}
