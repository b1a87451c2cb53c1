//! Which responses may be stored. Header names and directives match
//! case-insensitively, across repeated header lines.

use http::{header, HeaderMap, StatusCode};

use super::stats::Event;

/// Why the response head rules out storing, if it does.
pub fn refuse(status: StatusCode, headers: &HeaderMap) -> Option<Event> {
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
    if any_token(headers, header::VARY, &[b"*", b"cookie"]) {
        return Some(Event::NoStoreVary);
    }
    if any_token(
        headers,
        header::CACHE_CONTROL,
        &[b"no-cache", b"no-store", b"private"],
    ) {
        return Some(Event::NoStoreCacheControl);
    }
    None
}

/// The declared body length, if the head has exactly one valid Content-Length.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut all = headers.get_all(header::CONTENT_LENGTH).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return None;
    }
    first.to_str().ok()?.trim().parse().ok()
}

/// Whether any comma-separated item of any `name` line, up to its `=`, is one of `names`.
fn any_token(headers: &HeaderMap, name: header::HeaderName, names: &[&[u8]]) -> bool {
    headers.get_all(name).iter().any(|v| {
        tokens(v.as_bytes()).any(|t| {
            let directive = t.split(|&b| b == b'=').next().unwrap_or(t).trim_ascii();
            names.iter().any(|n| directive.eq_ignore_ascii_case(n))
        })
    })
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
        for (n, v) in lines {
            h.append(
                header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        refuse(StatusCode::OK, &h)
    }

    #[test]
    fn header_rules() {
        assert_eq!(check(&[]), None);
        assert_eq!(
            refuse(StatusCode::NOT_FOUND, &HeaderMap::new()),
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
        assert_eq!(check(&[("vary", "Accept-Encoding")]), None);
        assert_eq!(
            check(&[("vary", "accept-encoding, COOKIE")]),
            Some(Event::NoStoreVary)
        );
        assert_eq!(
            check(&[("vary", "x"), ("vary", " * ")]),
            Some(Event::NoStoreVary)
        );
        assert_eq!(check(&[("cache-control", "max-age=60, public")]), None);
        for cc in [
            "No-Cache",
            "max-age=1, no-store",
            "private=\"x\"",
            "PRIVATE",
            "no-cache, must-revalidate",
        ] {
            assert_eq!(
                check(&[("cache-control", cc)]),
                Some(Event::NoStoreCacheControl),
                "{cc}"
            );
        }
        assert_eq!(
            check(&[("cache-control", "public"), ("Cache-Control", "no-store")]),
            Some(Event::NoStoreCacheControl)
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
