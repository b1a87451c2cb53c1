//! Answering a request from an open regular file: shared by the static app and
//! the cache filter's hits, so both get the same headers, conditional GET, ranges
//! and streaming behaviour.
//!
//! [`serve_file`] evaluates, in RFC 9110 §13.2.2 order:
//!
//! 1. `If-Match` (strong comparison), else `If-Unmodified-Since` → 412;
//! 2. `If-None-Match` (weak comparison, `*`), else `If-Modified-Since` → 304 with
//!    `ETag` and `Last-Modified` and no body;
//! 3. `Range` (GET only, when [`FileOptions::ranges`]), guarded by `If-Range`:
//!    one range → 206 with `Content-Range`; unsatisfiable → 416 with
//!    `Content-Range: bytes */LEN`; several ranges or a malformed header → the
//!    whole file (RFC 9110 lets a server ignore `Range`; refusing multipart
//!    answers also rules out the overlapping-ranges amplification attack).
//!
//! Bodies up to [`SMALL_FILE`] bytes are read with one positioned read before the
//! head is sent (so a failed read is a clean 500). Larger bodies are streamed in
//! [`CHUNK`]-byte positioned reads, each on a tokio blocking thread, one chunk
//! read ahead: memory stays at two chunks per response, and a slow client never
//! holds a thread while it is not reading.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use tokio::runtime::Handle;

use crate::core::body;
use crate::core::read_ahead::{shrank, FileRange, ReadAhead};
use crate::core::{error_response, Body, Response};

/// Bodies up to this size are read in one go; larger ones are streamed.
pub(crate) const SMALL_FILE: u64 = 256 * 1024;
/// Chunk size for streamed bodies.
pub(crate) const CHUNK: usize = 128 * 1024;

/// What the caller knows about the request.
pub(crate) struct FileRequest<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
}

/// How to answer.
pub(crate) struct FileOptions<'a> {
    pub content_type: &'a str,
    /// Honour `Range` (the static app does; the cache may too).
    pub ranges: bool,
}

/// Answer `req` from `file`, whose metadata is `meta`. HEAD gets the headers
/// only; a method other than GET and HEAD gets 405 with `Allow: GET, HEAD`.
pub(crate) fn serve_file(
    file: File,
    meta: &Metadata,
    req: &FileRequest<'_>,
    opts: &FileOptions<'_>,
) -> Response {
    let head = *req.method == Method::HEAD;
    if !head && *req.method != Method::GET {
        return method_not_allowed();
    }
    let len = meta.len();
    let modified = meta.modified().ok();
    let mtime = modified.and_then(unix_secs);
    let etag = etag(len, modified);
    let headers = req.headers;

    match preconditions(headers, &etag, mtime) {
        Precondition::Failed => return error_response(StatusCode::PRECONDITION_FAILED),
        Precondition::NotModified => {
            let mut resp = http::Response::new(body::empty());
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            validator_headers(resp.headers_mut(), etag, modified);
            return resp;
        }
        Precondition::Proceed => {}
    }

    let mut start = 0;
    let mut count = len;
    let mut status = StatusCode::OK;
    if opts.ranges && !head {
        if let Some(range) = single_header(headers, &header::RANGE) {
            if if_range_holds(headers, &etag, mtime) {
                match parse_range(range.as_bytes(), len) {
                    RangeSpec::Ignore => {}
                    RangeSpec::Unsatisfiable => return range_not_satisfiable(len),
                    RangeSpec::Bytes { first, last } => {
                        start = first;
                        count = last - first + 1;
                        status = StatusCode::PARTIAL_CONTENT;
                    }
                }
            }
        }
    }

    let body = if head {
        body::empty()
    } else {
        match file_body_at(file, start, count) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("reading a file to answer a request failed: {e}");
                return error_response(StatusCode::INTERNAL_SERVER_ERROR);
            }
        }
    };
    let mut resp = http::Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(opts.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    // Set for HEAD too: the length the GET would have.
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT {
        let range = format!("bytes {}-{}/{}", start, start + count - 1, len);
        h.insert(header::CONTENT_RANGE, header_value(range));
    }
    if opts.ranges {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    validator_headers(h, etag, modified);
    resp
}

/// 405 with `Allow: GET, HEAD`.
pub(crate) fn method_not_allowed() -> Response {
    let mut resp = error_response(StatusCode::METHOD_NOT_ALLOWED);
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    resp
}

/// The strong entity tag of a file version: `"<len hex>-<mtime ns hex>"`
/// (nanoseconds since the epoch, 0 when unknown), quotes included.
pub(crate) fn etag(len: u64, modified: Option<SystemTime>) -> String {
    let nanos = modified
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("\"{len:x}-{nanos:x}\"")
}

fn unix_secs(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

fn header_value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).expect("generated header values are visible ASCII")
}

fn validator_headers(h: &mut HeaderMap, etag: String, modified: Option<SystemTime>) {
    h.insert(header::ETAG, header_value(etag));
    if let Some(m) = modified {
        h.insert(
            header::LAST_MODIFIED,
            header_value(httpdate::fmt_http_date(m)),
        );
    }
}

fn range_not_satisfiable(len: u64) -> Response {
    let mut resp = error_response(StatusCode::RANGE_NOT_SATISFIABLE);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_RANGE,
        header_value(format!("bytes */{len}")),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    resp
}

/// The value of a header that must appear once (None if absent, repeated or not text).
fn single_header<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// An HTTP date header as Unix seconds (None if absent, repeated or invalid).
fn date_header(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    let v = single_header(headers, name)?;
    httpdate::parse_http_date(v.trim()).ok().and_then(unix_secs)
}

/// The outcome of the conditional request headers.
#[derive(Debug, PartialEq, Eq)]
enum Precondition {
    Proceed,
    NotModified,
    Failed,
}

/// RFC 9110 §13.2.2 steps 1–4 for a GET or HEAD of an existing file.
fn preconditions(headers: &HeaderMap, etag: &str, mtime: Option<u64>) -> Precondition {
    if headers.contains_key(header::IF_MATCH) {
        if !any_tag_matches(headers, &header::IF_MATCH, etag, false) {
            return Precondition::Failed;
        }
    } else if let (Some(since), Some(m)) =
        (date_header(headers, &header::IF_UNMODIFIED_SINCE), mtime)
    {
        if m > since {
            return Precondition::Failed;
        }
    }
    if headers.contains_key(header::IF_NONE_MATCH) {
        if any_tag_matches(headers, &header::IF_NONE_MATCH, etag, true) {
            return Precondition::NotModified;
        }
    } else if let (Some(since), Some(m)) = (date_header(headers, &header::IF_MODIFIED_SINCE), mtime)
    {
        if m <= since {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// Whether any `name` header's entity-tag list matches `etag`.
fn any_tag_matches(headers: &HeaderMap, name: &HeaderName, etag: &str, weak: bool) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|v| tag_list_matches(v.as_bytes(), etag.as_bytes(), weak))
}

/// Whether an `If-Match`/`If-None-Match` value (`*` or a list of entity tags)
/// matches `etag` (quoted). Weak comparison ignores `W/`; strong comparison never
/// matches a weak tag. Parsing stops at the first malformed member.
fn tag_list_matches(mut s: &[u8], etag: &[u8], weak: bool) -> bool {
    loop {
        while let [b' ' | b'\t' | b',', rest @ ..] = s {
            s = rest;
        }
        match s {
            [] => return false,
            [b'*', ..] => return true,
            _ => {}
        }
        let is_weak = s.starts_with(b"W/");
        if is_weak {
            s = &s[2..];
        }
        if s.first() != Some(&b'"') {
            return false;
        }
        let Some(close) = s[1..].iter().position(|&b| b == b'"') else {
            return false;
        };
        let tag = &s[..close + 2];
        if tag == etag && (weak || !is_weak) {
            return true;
        }
        s = &s[close + 2..];
    }
}

/// Whether `If-Range` (if any) lets the `Range` apply: a strong tag equal to
/// ours, or a date equal to the last-modified time.
fn if_range_holds(headers: &HeaderMap, etag: &str, mtime: Option<u64>) -> bool {
    if !headers.contains_key(header::IF_RANGE) {
        return true;
    }
    let Some(v) = single_header(headers, &header::IF_RANGE) else {
        return false;
    };
    let v = v.trim();
    if v.starts_with('"') {
        return v == etag;
    }
    if v.starts_with("W/") {
        return false;
    }
    match (httpdate::parse_http_date(v).ok().and_then(unix_secs), mtime) {
        (Some(date), Some(m)) => date == m,
        _ => false,
    }
}

/// What a `Range` header asks of a representation of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeSpec {
    /// Send the whole representation: malformed, not `bytes`, several ranges, or
    /// a suffix range of an empty file.
    Ignore,
    /// One satisfiable range, `first..=last`, clamped to the length.
    Bytes { first: u64, last: u64 },
    /// A single well-formed range that selects nothing: 416.
    Unsatisfiable,
}

/// Parse a `Range` header value for a representation of `len` bytes
/// (RFC 9110 §14.1.2: `bytes=a-b`, `bytes=a-`, `bytes=-n`; unit
/// case-insensitive, whitespace around list members, numbers of any size).
pub(crate) fn parse_range(value: &[u8], len: u64) -> RangeSpec {
    let Some(eq) = value.iter().position(|&b| b == b'=') else {
        return RangeSpec::Ignore;
    };
    if !value[..eq].eq_ignore_ascii_case(b"bytes") {
        return RangeSpec::Ignore;
    }
    let mut found = None;
    for member in value[eq + 1..].split(|&b| b == b',') {
        let member = member.trim_ascii();
        if member.is_empty() {
            continue;
        }
        let Some(spec) = parse_range_spec(member) else {
            return RangeSpec::Ignore;
        };
        if found.replace(spec).is_some() {
            // Several ranges: allowed to ignore, and we do.
            return RangeSpec::Ignore;
        }
    }
    match found {
        None => RangeSpec::Ignore,
        Some((Some(first), last)) => {
            if first >= len {
                RangeSpec::Unsatisfiable
            } else {
                let last = last.map_or(len - 1, |l| l.min(len - 1));
                RangeSpec::Bytes { first, last }
            }
        }
        Some((None, suffix)) => {
            let suffix = suffix.unwrap_or(0);
            if len == 0 {
                RangeSpec::Ignore
            } else if suffix == 0 {
                RangeSpec::Unsatisfiable
            } else {
                RangeSpec::Bytes {
                    first: len - suffix.min(len),
                    last: len - 1,
                }
            }
        }
    }
}

/// One `first-last`, `first-` or `-suffix`: (first, last) or (None, suffix).
fn parse_range_spec(s: &[u8]) -> Option<(Option<u64>, Option<u64>)> {
    let dash = s.iter().position(|&b| b == b'-')?;
    let (a, b) = (&s[..dash], &s[dash + 1..]);
    match (digits(a), digits(b)) {
        (Some(first), Some(last)) if first <= last => Some((Some(first), Some(last))),
        (Some(first), None) if b.is_empty() => Some((Some(first), None)),
        (None, Some(suffix)) if a.is_empty() => Some((None, Some(suffix))),
        _ => None,
    }
}

/// A non-empty run of ASCII digits, saturating at `u64::MAX`.
fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// A body of `len` bytes of `file` from `offset`: read now with one positioned
/// read when small (so errors surface before the head is sent), else streamed
/// from blocking threads. Must be called within the tokio runtime.
pub(crate) fn file_body_at(file: File, offset: u64, len: u64) -> io::Result<Body> {
    if len == 0 {
        return Ok(body::empty());
    }
    if len <= SMALL_FILE {
        let mut buf = BytesMut::zeroed(len as usize);
        file.read_exact_at(&mut buf, offset).map_err(shrank)?;
        return Ok(body::full(buf.freeze()));
    }
    let range = FileRange::new(Arc::new(file), offset, len, CHUNK);
    // Start reading the first chunk while the head goes out.
    let stream = ReadAhead::new([], Some(range), Some(len), Handle::current()).started();
    Ok(Body::new(stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn range_forms() {
        use RangeSpec::*;
        let p = |v: &str, len| parse_range(v.as_bytes(), len);
        assert_eq!(p("bytes=0-0", 10), Bytes { first: 0, last: 0 });
        assert_eq!(p("bytes=2-5", 10), Bytes { first: 2, last: 5 });
        assert_eq!(p("bytes=2-50", 10), Bytes { first: 2, last: 9 });
        assert_eq!(p("bytes=7-", 10), Bytes { first: 7, last: 9 });
        assert_eq!(p("bytes=-3", 10), Bytes { first: 7, last: 9 });
        assert_eq!(p("bytes=-30", 10), Bytes { first: 0, last: 9 });
        assert_eq!(
            p("BYTES = 1-2 ,", 10),
            Ignore,
            "space before = is not allowed"
        );
        assert_eq!(p("Bytes= 1-2 , ", 10), Bytes { first: 1, last: 2 });
        assert_eq!(
            p("bytes=0-99999999999999999999999", 10),
            Bytes { first: 0, last: 9 }
        );
    }

    #[test]
    fn unsatisfiable_ranges() {
        use RangeSpec::*;
        let p = |v: &str, len| parse_range(v.as_bytes(), len);
        assert_eq!(p("bytes=10-", 10), Unsatisfiable);
        assert_eq!(p("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(p("bytes=99999999999999999999999-", 10), Unsatisfiable);
        assert_eq!(p("bytes=-0", 10), Unsatisfiable);
        assert_eq!(p("bytes=0-", 0), Unsatisfiable);
        assert_eq!(p("bytes=-5", 0), Ignore);
    }

    #[test]
    fn ignored_ranges() {
        use RangeSpec::*;
        for v in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=1-2-3",
            "bytes=-",
            "bytes=+1-2",
            "bytes=1 -2",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=0-1,x",
        ] {
            assert_eq!(parse_range(v.as_bytes(), 10), Ignore, "{v:?}");
        }
    }

    #[test]
    fn entity_tag_lists() {
        let ours = b"\"a-1\"";
        assert!(tag_list_matches(b"\"a-1\"", ours, false));
        assert!(tag_list_matches(b"\"x\", \"a-1\"", ours, false));
        assert!(tag_list_matches(b"*", ours, false));
        assert!(tag_list_matches(b"W/\"a-1\"", ours, true));
        assert!(!tag_list_matches(b"W/\"a-1\"", ours, false));
        assert!(tag_list_matches(b"\"a,b\",\"a-1\"", ours, true));
        assert!(!tag_list_matches(b"\"a-2\"", ours, true));
        assert!(!tag_list_matches(b"a-1", ours, true));
        assert!(!tag_list_matches(b"\"a-1", ours, true));
        assert!(!tag_list_matches(b"", ours, true));
    }

    fn hdrs(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn precondition_order() {
        use Precondition::*;
        let tag = "\"a-1\"";
        let m = Some(1_000_000_000); // 2001-09-09T01:46:40Z
        let at = "Sun, 09 Sep 2001 01:46:40 GMT";
        let before = "Sun, 09 Sep 2001 01:46:39 GMT";
        let check = |pairs: &[(&'static str, &str)]| preconditions(&hdrs(pairs), tag, m);
        assert_eq!(check(&[]), Proceed);
        assert_eq!(check(&[("if-none-match", tag)]), NotModified);
        assert_eq!(check(&[("if-none-match", "\"zz\"")]), Proceed);
        assert_eq!(check(&[("if-modified-since", at)]), NotModified);
        assert_eq!(check(&[("if-modified-since", before)]), Proceed);
        assert_eq!(check(&[("if-modified-since", "yesterday")]), Proceed);
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(
            check(&[("if-none-match", "\"zz\""), ("if-modified-since", at)]),
            Proceed
        );
        assert_eq!(check(&[("if-match", "\"zz\"")]), Failed);
        assert_eq!(check(&[("if-match", "W/\"a-1\"")]), Failed);
        assert_eq!(check(&[("if-match", tag)]), Proceed);
        assert_eq!(check(&[("if-unmodified-since", before)]), Failed);
        assert_eq!(check(&[("if-unmodified-since", at)]), Proceed);
        // If-Match is evaluated before If-None-Match.
        assert_eq!(
            check(&[("if-match", "\"zz\""), ("if-none-match", tag)]),
            Failed
        );
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        let tag = "\"a-1\"";
        let m = Some(1_000_000_000);
        let holds = |pairs: &[(&'static str, &str)]| if_range_holds(&hdrs(pairs), tag, m);
        assert!(holds(&[]));
        assert!(holds(&[("if-range", tag)]));
        assert!(!holds(&[("if-range", "\"a-2\"")]));
        assert!(!holds(&[("if-range", "W/\"a-1\"")]));
        assert!(holds(&[("if-range", "Sun, 09 Sep 2001 01:46:40 GMT")]));
        assert!(!holds(&[("if-range", "Sun, 09 Sep 2001 01:46:41 GMT")]));
        assert!(!holds(&[("if-range", "garbage")]));
    }

    #[test]
    fn etag_changes_with_length_and_time() {
        let t = UNIX_EPOCH + std::time::Duration::new(1_000_000_000, 5);
        assert_eq!(etag(255, Some(t)), "\"ff-de0b6b3a7640005\"");
        assert_ne!(etag(255, Some(t)), etag(254, Some(t)));
        assert_eq!(etag(1, None), "\"1-0\"");
    }

    async fn collect(b: Body) -> Vec<u8> {
        use http_body_util::BodyExt;
        b.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn streamed_ranges_read_exactly_their_bytes() {
        let mut tmp = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..(3 * CHUNK + 1234)).map(|i| (i % 251) as u8).collect();
        tmp.write_all(&data).unwrap();
        let len = data.len() as u64;
        for (off, n) in [(0, len), (1, len - 1), (1000, SMALL_FILE + 1), (5, 10)] {
            let f = tmp.try_clone().unwrap();
            let got = collect(file_body_at(f, off, n).unwrap()).await;
            assert_eq!(got, &data[off as usize..(off + n) as usize]);
        }
        // Asking for more than the file holds fails rather than pads.
        let f = tmp.try_clone().unwrap();
        let b = file_body_at(f, 0, len + 1).unwrap();
        use http_body_util::BodyExt;
        assert!(b.collect().await.is_err());
        assert!(file_body_at(tmp.try_clone().unwrap(), len - 5, 10).is_err());
    }
}
