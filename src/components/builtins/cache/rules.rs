//! Which responses may be stored. Header names and directives match
//! case-insensitively, across repeated header lines.
//!
//! A page is shared with every later visitor and kept until it is deleted, so
//! anything that says "not for reuse" rules storing out: `no-store`, `private`,
//! `no-cache` in any form, a zero `max-age`/`s-maxage` (the shared one wins when
//! both are given), an `Expires` in the past or unparseable (when no positive
//! max-age overrides it), `Pragma: no-cache`, `Surrogate-Control: no-store` or
//! `max-age=0`, `X-Accel-Expires: 0`, and any `Vary` other than
//! `Accept-Encoding` (the tree has one page per path).

use std::time::SystemTime;

use http::{header, HeaderMap, HeaderName, StatusCode};

use super::stats::Event;

const SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");
const X_ACCEL_EXPIRES: HeaderName = HeaderName::from_static("x-accel-expires");

/// Why the response head rules out storing, if it does. `media_type` is the
/// cache's `content_type` without parameters: every hit is served as it, so a
/// response of any other type is never stored. `None` (`content_type =
/// auto`): any type, as long as there is exactly one valid Content-Type.
pub(super) fn refuse(
    status: StatusCode,
    headers: &HeaderMap,
    media_type: Option<&str>,
) -> Option<Event> {
    if status != StatusCode::OK {
        return Some(Event::NoStoreStatus);
    }
    if headers.contains_key(header::SET_COOKIE) {
        return Some(Event::NoStoreSetCookie);
    }
    if headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !tokens(v.as_bytes()).all(|t| t.eq_ignore_ascii_case(b"identity")))
    {
        return Some(Event::NoStoreContentEncoding);
    }
    let typed = match media_type {
        Some(want) => same_media_type(headers, want),
        None => single_content_type(headers).is_some(),
    };
    if !typed {
        return Some(Event::NoStoreTypeMismatch);
    }
    if headers
        .get_all(header::VARY)
        .iter()
        .any(|v| tokens(v.as_bytes()).any(|t| !t.eq_ignore_ascii_case(b"accept-encoding")))
    {
        return Some(Event::NoStoreVary);
    }
    if forbids_reuse(headers, SystemTime::now()) {
        return Some(Event::NoStoreCacheControl);
    }
    None
}

/// The media type of a Content-Type value: before any `;`, trimmed.
pub(super) fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// The response's Content-Type, when it has exactly one, visible ASCII with a media type.
pub(super) fn single_content_type(headers: &HeaderMap) -> Option<&str> {
    let mut all = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(v), None) = (all.next(), all.next()) else {
        return None;
    };
    v.to_str().ok().filter(|v| media_type(v).contains('/'))
}

/// Whether the response has exactly one Content-Type whose media type is `want`
/// (case-insensitive, parameters ignored). A response without one is not
/// known to be `want`, so it does not match.
fn same_media_type(headers: &HeaderMap, want: &str) -> bool {
    let mut all = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(v), None) = (all.next(), all.next()) else {
        return false;
    };
    v.to_str()
        .is_ok_and(|v| media_type(v).eq_ignore_ascii_case(want))
}

/// Whether the response's freshness headers forbid reusing it.
fn forbids_reuse(headers: &HeaderMap, now: SystemTime) -> bool {
    let mut max_age = None;
    let mut s_maxage = None;
    for (name, value) in directives(headers, header::CACHE_CONTROL) {
        if eq(name, b"no-store") || eq(name, b"no-cache") || eq(name, b"private") {
            return true;
        }
        if eq(name, b"max-age") {
            max_age = Some(seconds(value));
        } else if eq(name, b"s-maxage") {
            s_maxage = Some(seconds(value));
        }
    }
    // The shared cache's own limit wins over max-age (RFC 9111 §5.2.2.10); an
    // unparseable value counts as zero (stale), as §1.2.2 advises.
    let lifetime = s_maxage.or(max_age);
    if lifetime == Some(0) {
        return true;
    }
    for (name, value) in directives(headers, SURROGATE_CONTROL) {
        if eq(name, b"no-store") || (eq(name, b"max-age") && seconds(value) == 0) {
            return true;
        }
    }
    if directives(headers, header::PRAGMA).any(|(name, _)| eq(name, b"no-cache")) {
        return true;
    }
    if headers
        .get_all(X_ACCEL_EXPIRES)
        .iter()
        .any(|v| v.as_bytes().trim_ascii() == b"0")
    {
        return true;
    }
    // max-age overrides Expires (RFC 9111 §5.3); without it, an Expires that
    // is not in the future (an invalid date such as `0` included) means stale.
    if lifetime.is_none() {
        if let Some(expires) = headers.get(header::EXPIRES) {
            let at = expires
                .to_str()
                .ok()
                .and_then(|v| httpdate::parse_http_date(v.trim()).ok());
            if at.is_none_or(|at| at <= now) {
                return true;
            }
        }
    }
    false
}

/// Seconds of a delta-seconds directive value; anything unparseable is 0.
fn seconds(value: Option<&[u8]>) -> u64 {
    value
        .map(|v| {
            let v = v.trim_ascii();
            v.strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v)
        })
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0)
}

fn eq(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// `(name, value)` of every comma-separated directive of every `name` line.
fn directives(
    headers: &HeaderMap,
    name: HeaderName,
) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
    headers.get_all(name).into_iter().flat_map(|v| {
        tokens(v.as_bytes()).map(|t| match t.iter().position(|&b| b == b'=') {
            Some(i) => (t[..i].trim_ascii(), Some(&t[i + 1..])),
            None => (t, None),
        })
    })
}

/// The declared body length, if the head has exactly one valid Content-Length
/// (the cache trusts no repeated one, even when the copies agree).
pub(super) fn content_length(headers: &HeaderMap) -> Option<u64> {
    if headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .nth(1)
        .is_some()
    {
        return None;
    }
    crate::core::headers::content_length(headers).ok().flatten()
}

/// The trimmed, non-empty comma-separated items of a header value.
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(lines: &[(&str, &str)]) -> Option<Event> {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "text/html".parse().unwrap());
        for (n, v) in lines {
            h.append(
                header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        refuse(StatusCode::OK, &h, Some("text/html"))
    }

    #[test]
    fn header_rules() {
        assert_eq!(check(&[]), None);
        assert_eq!(
            refuse(StatusCode::NOT_FOUND, &HeaderMap::new(), Some("text/html")),
            Some(Event::NoStoreStatus)
        );
        assert_eq!(
            check(&[("set-cookie", "a=b")]),
            Some(Event::NoStoreSetCookie)
        );
        assert_eq!(
            check(&[("Content-Encoding", "gzip")]),
            Some(Event::NoStoreContentEncoding)
        );
        assert_eq!(check(&[("content-encoding", "identity")]), None);
    }

    #[test]
    fn only_accept_encoding_may_vary() {
        assert_eq!(check(&[("vary", "Accept-Encoding")]), None);
        assert_eq!(check(&[("vary", "accept-encoding, ACCEPT-ENCODING")]), None);
        for vary in [
            "accept-encoding, COOKIE",
            " * ",
            "Accept-Language",
            "User-Agent",
        ] {
            assert_eq!(check(&[("vary", vary)]), Some(Event::NoStoreVary), "{vary}");
        }
        assert_eq!(
            check(&[("vary", "accept-encoding"), ("vary", "origin")]),
            Some(Event::NoStoreVary)
        );
    }

    #[test]
    fn media_type_must_be_the_cache_type() {
        let with = |ct: &str, want: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            refuse(StatusCode::OK, &h, Some(want))
        };
        assert_eq!(with("text/html; charset=utf-8", "text/html"), None);
        assert_eq!(with("TEXT/HTML", "text/html"), None);
        assert_eq!(with(" application/json ", "application/json"), None);
        assert_eq!(
            with("application/json", "text/html"),
            Some(Event::NoStoreTypeMismatch)
        );
        assert_eq!(
            with("text/html2", "text/html"),
            Some(Event::NoStoreTypeMismatch)
        );
        assert_eq!(
            refuse(StatusCode::OK, &HeaderMap::new(), Some("text/html")),
            Some(Event::NoStoreTypeMismatch)
        );
        assert_eq!(media_type("text/html; charset=utf-8"), "text/html");
    }

    #[test]
    fn auto_type_needs_exactly_one_content_type() {
        let mut h = HeaderMap::new();
        assert_eq!(
            refuse(StatusCode::OK, &h, None),
            Some(Event::NoStoreTypeMismatch)
        );
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert_eq!(refuse(StatusCode::OK, &h, None), None);
        h.append(header::CONTENT_TYPE, "text/html".parse().unwrap());
        assert_eq!(
            refuse(StatusCode::OK, &h, None),
            Some(Event::NoStoreTypeMismatch)
        );
        h.remove(header::CONTENT_TYPE);
        h.insert(header::CONTENT_TYPE, "nonsense".parse().unwrap());
        assert_eq!(
            refuse(StatusCode::OK, &h, None),
            Some(Event::NoStoreTypeMismatch)
        );
    }

    #[test]
    fn anything_forbidding_reuse_is_not_stored() {
        let forbid = Some(Event::NoStoreCacheControl);
        for (name, value) in [
            ("cache-control", "No-Cache"),
            ("cache-control", "no-cache=\"Set-Cookie\""),
            ("cache-control", "max-age=1, no-store"),
            ("cache-control", "private=\"x\""),
            ("cache-control", "PRIVATE"),
            ("cache-control", "no-cache, must-revalidate"),
            ("cache-control", "max-age=0"),
            ("cache-control", "max-age=\"0\""),
            ("cache-control", "max-age=soon"),
            ("cache-control", "public, s-maxage=0"),
            ("cache-control", "max-age=600, s-maxage=0"),
            ("pragma", "no-cache"),
            ("surrogate-control", "no-store"),
            ("surrogate-control", "max-age=0"),
            ("x-accel-expires", "0"),
            ("expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
            ("expires", "0"),
            ("expires", "-1"),
        ] {
            assert_eq!(check(&[(name, value)]), forbid, "{name}: {value}");
        }
        assert_eq!(
            check(&[("cache-control", "public"), ("Cache-Control", "no-store")]),
            forbid
        );
        for (name, value) in [
            ("cache-control", "max-age=60, public"),
            ("cache-control", "max-age=0, s-maxage=60"),
            ("surrogate-control", "max-age=60"),
            ("x-accel-expires", "60"),
            ("pragma", "x-debug"),
            ("expires", "Fri, 01 Jan 2100 00:00:00 GMT"),
        ] {
            assert_eq!(check(&[(name, value)]), None, "{name}: {value}");
        }
        // A positive max-age overrides an Expires in the past.
        assert_eq!(
            check(&[
                ("cache-control", "max-age=60"),
                ("expires", "Thu, 01 Jan 1970 00:00:00 GMT")
            ]),
            None
        );
    }

    #[test]
    fn declared_length() {
        let mut h = HeaderMap::new();
        assert_eq!(content_length(&h), None);
        h.insert(header::CONTENT_LENGTH, "12".parse().unwrap());
        assert_eq!(content_length(&h), Some(12));
        h.append(header::CONTENT_LENGTH, "12".parse().unwrap());
        assert_eq!(content_length(&h), None);
    }
}
