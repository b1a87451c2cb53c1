//! Request head checks hyper does not make, and how malformed requests are
//! reported.
//!
//! Host (RFC 9112 §3.2): an HTTP/1.1 request without one, any request with two,
//! or one whose value is not `host[:port]` is answered 400. An absolute-form
//! target's authority wins over Host (§3.2.2), so the pipeline's Host header is
//! replaced by it.
//!
//! Malformed requests are the client's fault and cost it nothing to send, so
//! each is one debug line and one count in `plughost_malformed_requests_total`,
//! never a line at the default level (a client could flood the log).

use std::fmt::Display;
use std::net::Ipv6Addr;

use http::header::HOST;
use http::{HeaderValue, Version};

use crate::core::hostport::split_host_port;
use crate::core::metrics::METRICS;

/// Why a request's Host is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostError {
    #[error("HTTP/1.1 request without a Host header")]
    Missing,
    #[error("request with more than one Host header")]
    Duplicate,
    #[error("invalid Host header {0:?}")]
    Invalid(String),
}

/// Check the request's Host and put an absolute-form target's authority in it.
pub(crate) fn check<B>(req: &mut http::Request<B>) -> Result<(), HostError> {
    let mut values = req.headers().get_all(HOST).iter();
    match (values.next(), values.next()) {
        (_, Some(_)) => return Err(HostError::Duplicate),
        (None, None) if req.version() == Version::HTTP_11 => return Err(HostError::Missing),
        (None, None) => {}
        (Some(host), None) => {
            if !valid_host(host.as_bytes()) {
                return Err(HostError::Invalid(
                    String::from_utf8_lossy(host.as_bytes()).into_owned(),
                ));
            }
        }
    }
    if let Some(authority) = req.uri().authority() {
        // Userinfo is no part of a host (and deprecated in http URIs).
        let target = authority.as_str().rsplit('@').next().unwrap_or("");
        if let Ok(value) = HeaderValue::from_str(target) {
            req.headers_mut().insert(HOST, value);
        }
    }
    Ok(())
}

/// The bytes of a `reg-name` (RFC 3986: unreserved, sub-delims, `%`), as a table:
/// checked for every request, where a search of the punctuation list per byte
/// cost hundreds of instructions.
static REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let punct = b"-._~!$&'()*+,;=%";
    let mut i = 0;
    while i < punct.len() {
        table[punct[i] as usize] = true;
        i += 1;
    }
    table
};

/// RFC 9110 §7.2 `Host = uri-host [ ":" port ]`; empty is allowed (a target
/// without an authority).
fn valid_host(value: &[u8]) -> bool {
    common_host(value).unwrap_or_else(|| any_host(value))
}

/// [`valid_host`] for the forms nearly every request has, a name or address
/// with at most one `:` and no brackets, in one pass over the bytes (`None`:
/// another form, for [`any_host`]).
fn common_host(value: &[u8]) -> Option<bool> {
    if value.first() == Some(&b'[') {
        return None;
    }
    let mut colon = None;
    for (i, &b) in value.iter().enumerate() {
        if b == b':' {
            if colon.is_some() {
                return None;
            }
            colon = Some(i);
        }
    }
    let (host, port) = match colon {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, &b""[..]),
    };
    Some(host.iter().all(|&b| REG_NAME[b as usize]) && port.iter().all(u8::is_ascii_digit))
}

/// [`valid_host`] for every form: IPv6 literals, and what is refused.
fn any_host(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let Ok(hp) = split_host_port(value) else {
        return false;
    };
    let host_ok = if hp.bracketed() {
        hp.name().parse::<Ipv6Addr>().is_ok()
    } else {
        hp.host.bytes().all(|b| REG_NAME[b as usize])
    };
    // `port = *DIGIT`: any run of digits, even none.
    host_ok
        && hp
            .port
            .is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// Count a malformed request and log it at debug.
pub(super) fn malformed(peer: &std::net::SocketAddr, why: &dyn Display) {
    METRICS.malformed_request();
    tracing::debug!(%peer, "malformed request: {why}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, target: &str, hosts: &[&str]) -> http::Request<()> {
        let mut builder = http::Request::builder().version(version).uri(target);
        for h in hosts {
            builder = builder.header(HOST, *h);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn host_rules() {
        let ok = |v, t, h: &[&str]| check(&mut request(v, t, h)).is_ok();
        assert!(ok(Version::HTTP_11, "/", &["example.com"]));
        assert!(ok(Version::HTTP_11, "/", &["example.com:8080"]));
        assert!(ok(Version::HTTP_11, "/", &["[::1]:80"]));
        assert!(ok(Version::HTTP_11, "/", &[""]));
        assert!(ok(Version::HTTP_10, "/", &[]));
        assert!(!ok(Version::HTTP_11, "/", &[]));
        assert!(!ok(Version::HTTP_11, "/", &["a", "a"]));
        for bad in ["a@b", "a/b", "a:b", "[::1", "[zz]", "[::1]x", "a b"] {
            assert!(!ok(Version::HTTP_11, "/", &[bad]), "{bad}");
        }
        // Every reg-name byte (RFC 3986) is allowed, and nothing else.
        for b in 0x21..=0x7e_u8 {
            let host = format!("a{}b", b as char);
            let reg_name = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b);
            if b != b':' && b != b'[' {
                assert_eq!(valid_host(host.as_bytes()), reg_name, "{host}");
            }
        }
    }

    /// The one-pass check agrees with the general one wherever it answers.
    #[test]
    fn the_common_host_check_agrees_with_the_general_one() {
        let mut answered = 0;
        for v in [
            "",
            "example.com",
            "example.com:8080",
            "127.0.0.1:18431",
            "a:",
            ":80",
            ":",
            "a:b",
            "a:8x",
            "a:b:c",
            "a b",
            "a@b",
            "a/b",
            "ä",
            "[::1]",
            "x[::1]",
            "%41",
            "a::1",
        ] {
            if let Some(ok) = common_host(v.as_bytes()) {
                answered += 1;
                assert_eq!(ok, any_host(v.as_bytes()), "{v:?}");
            }
        }
        for b in 0..=255_u8 {
            let v = [b'a', b, b'b'];
            if let Some(ok) = common_host(&v) {
                answered += 1;
                assert_eq!(ok, any_host(&v), "{v:?}");
            }
        }
        assert!(answered > 250);
    }

    #[test]
    fn absolute_form_authority_replaces_host() {
        let mut req = request(Version::HTTP_11, "http://u@target:81/x", &["other"]);
        check(&mut req).unwrap();
        assert_eq!(req.headers()[HOST], "target:81");
    }
}
