//! Request helpers: query strings, forms, cookies and bounded body reads, with
//! no dependencies.
//!
//! # Decoding (`application/x-www-form-urlencoded`, as in the WHATWG URL standard)
//! - Pairs are separated by `&`; empty pieces (`a=1&&b=2`) are skipped. A piece
//!   without `=` is a name with an empty value.
//! - `+` is a space; `%XX` (two hex digits) is that byte.
//! - Bad percent-encoding never fails: a `%` not followed by two hex digits is kept
//!   literally (`%zz` stays `%zz`, a trailing `%` stays `%`), and the decoded bytes
//!   are read as UTF-8 lossily (`%FF` becomes U+FFFD).

use std::io::Read;

use crate::{Error, Request};

/// Cap on what is reserved up front from a declared `Content-Length` (the body may
/// still grow to the caller's limit as it is read).
const PREALLOCATE_MAX: usize = 1 << 20;

impl Request<'_> {
    /// The first value of query parameter `name`, decoded (see the module notes:
    /// `+` is a space, bad `%` escapes are kept literally). `None` if absent;
    /// `Some("")` for `?name` or `?name=`.
    ///
    /// ```
    /// use plughost_sdk::Request;
    ///
    /// let req = Request::builder().path("/search?q=caf%C3%A9+au+lait&page=2&q=tea&flag").build();
    /// assert_eq!(req.query_param("q").as_deref(), Some("café au lait"));
    /// assert_eq!(req.query_param("flag").as_deref(), Some(""));
    /// assert_eq!(req.query_param("missing"), None);
    /// ```
    pub fn query_param(&self, name: &str) -> Option<String> {
        pieces(self.query_string.as_bytes())
            .find(|(n, _)| decode(n) == name)
            .map(|(_, v)| decode(v))
    }

    /// Every query parameter, decoded, in order; repeated names are kept.
    ///
    /// ```
    /// use plughost_sdk::Request;
    ///
    /// let req = Request::builder().query("tag=a&tag=b&x=1%2B1").build();
    /// let pairs = req.query_pairs();
    /// assert_eq!(pairs, [("tag".into(), "a".into()), ("tag".into(), "b".into()), ("x".into(), "1+1".into())]);
    /// ```
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        parse_urlencoded(self.query_string.as_bytes())
    }

    /// Read an `application/x-www-form-urlencoded` body (an HTML form's POST) into
    /// decoded pairs, in order, repeated names kept. Consumes the body.
    ///
    /// Errors: a missing or other `Content-Type` is a 415 (the body is not read);
    /// a body over `limit` bytes is a 413 (see [`Request::read_body_limited`]).
    ///
    /// ```
    /// use plughost_sdk::Request;
    ///
    /// let mut req = Request::builder()
    ///     .method("POST")
    ///     .header("Content-Type", "application/x-www-form-urlencoded")
    ///     .body("name=Ada+Lovelace&lang=en&lang=fr")
    ///     .build();
    /// let form = req.form(16 * 1024).unwrap();
    /// assert_eq!(form[0], ("name".into(), "Ada Lovelace".into()));
    /// assert_eq!(form.len(), 3);
    ///
    /// let mut json = Request::builder().header("Content-Type", "application/json").body("{}").build();
    /// assert_eq!(json.form(16 * 1024).unwrap_err().status_code(), 415);
    /// ```
    pub fn form(&mut self, limit: usize) -> Result<Vec<(String, String)>, Error> {
        if !self.content_type_is(|essence| essence == "application/x-www-form-urlencoded") {
            return Err(Error::unsupported_media_type(
                "expected Content-Type application/x-www-form-urlencoded",
            ));
        }
        let body = self.read_body_limited(limit)?;
        Ok(parse_urlencoded(&body))
    }

    /// The cookies of the `Cookie` header (all of them, if the request has several),
    /// as name and value, in order. Pieces are separated by `;`; whitespace around
    /// names and values and one pair of double quotes around a value are removed.
    /// Values are not percent-decoded (cookies have no encoding of their own);
    /// pieces without `=` are skipped.
    ///
    /// ```
    /// use plughost_sdk::Request;
    ///
    /// let req = Request::builder().header("Cookie", "session=abc123; theme=\"dark\"").build();
    /// assert_eq!(req.cookies(), [("session".into(), "abc123".into()), ("theme".into(), "dark".into())]);
    /// ```
    pub fn cookies(&self) -> Vec<(String, String)> {
        self.header_all("cookie")
            .flat_map(|header| header.split(';'))
            .filter_map(|piece| {
                let (name, value) = piece.split_once('=')?;
                let name = name.trim();
                if name.is_empty() {
                    return None;
                }
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                Some((name.to_owned(), value.to_owned()))
            })
            .collect()
    }

    /// Read the whole body into memory, refusing more than `limit` bytes with a
    /// 413 ([`Error::payload_too_large`]). A declared `Content-Length` over the
    /// limit is refused before anything is read; a body that turns out longer than
    /// declared (or has no declared length) is cut off one byte past the limit.
    /// A failure to read is a plain error (the host answers 500). Consumes the body.
    ///
    /// ```
    /// use plughost_sdk::Request;
    ///
    /// let mut req = Request::builder().method("PUT").body("0123456789").build();
    /// assert_eq!(req.read_body_limited(10).unwrap(), b"0123456789");
    ///
    /// let mut big = Request::builder().method("PUT").body(vec![b'x'; 11]).build();
    /// assert_eq!(big.read_body_limited(10).unwrap_err().status_code(), 413);
    /// ```
    pub fn read_body_limited(&mut self, limit: usize) -> Result<Vec<u8>, Error> {
        let too_large =
            || Error::payload_too_large(format!("request body larger than {limit} bytes"));
        let mut capacity = 0;
        if let Some(declared) = self.content_length {
            if declared > limit as u64 {
                return Err(too_large());
            }
            capacity = (declared as usize).min(PREALLOCATE_MAX);
        }
        let mut body = Vec::with_capacity(capacity);
        (&mut self.body)
            .take((limit as u64).saturating_add(1))
            .read_to_end(&mut body)?;
        if body.len() > limit {
            return Err(too_large());
        }
        Ok(body)
    }

    /// Whether the `Content-Type` header's media type (before any `;` parameters,
    /// trimmed, lower-cased) satisfies `accept`. `false` without the header.
    pub(crate) fn content_type_is(&self, accept: impl Fn(&str) -> bool) -> bool {
        self.header("content-type").is_some_and(|value| {
            let essence = value.split(';').next().unwrap_or("").trim();
            accept(&essence.to_ascii_lowercase())
        })
    }
}

/// JSON bodies (the `json` feature).
#[cfg(feature = "json")]
impl Request<'_> {
    /// Read a JSON body into a `T` (needs the `json` feature). Consumes the body.
    ///
    /// Errors, all status errors with a short reason: a missing or non-JSON
    /// `Content-Type` is a 415 (the body is not read; `application/json` and
    /// `application/*+json` are accepted); a body over `limit` bytes is a 413
    /// (see [`Request::read_body_limited`]); malformed JSON (including an empty
    /// body) is a 400; well-formed JSON that does not fit `T` (a missing field, a
    /// wrong type) is a 422.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use plughost_sdk::Request;
    ///
    /// let json = |body: &str| {
    ///     Request::builder()
    ///         .method("POST")
    ///         .header("Content-Type", "application/json")
    ///         .body(body)
    ///         .build()
    /// };
    /// let scores: BTreeMap<String, u32> = json(r#"{"ada": 3, "alan": 2}"#).json(4096).unwrap();
    /// assert_eq!(scores["ada"], 3);
    ///
    /// let err = json(r#"{"ada": 3,"#).json::<BTreeMap<String, u32>>(4096).unwrap_err();
    /// assert_eq!(err.status_code(), 400);
    /// let err = json(r#"{"ada": "three"}"#).json::<BTreeMap<String, u32>>(4096).unwrap_err();
    /// assert_eq!(err.status_code(), 422);
    /// ```
    pub fn json<T: serde::de::DeserializeOwned>(&mut self, limit: usize) -> Result<T, Error> {
        if !self.content_type_is(is_json) {
            return Err(Error::unsupported_media_type(
                "expected Content-Type application/json",
            ));
        }
        let body = self.read_body_limited(limit)?;
        serde_json::from_slice(&body).map_err(json_error)
    }
}

/// Whether a media type (lower-cased, without parameters) is JSON.
#[cfg(feature = "json")]
fn is_json(essence: &str) -> bool {
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The status error for a body serde_json refused.
#[cfg(feature = "json")]
fn json_error(e: serde_json::Error) -> Error {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => Error::bad_request(format!("malformed JSON: {e}")),
        Category::Data => Error::unprocessable(format!("unexpected JSON: {e}")),
        // `from_slice` does no I/O; kept plain should that ever change.
        Category::Io => Error::new(format!("reading JSON: {e}")),
    }
}

/// The raw `(name, value)` pieces of an urlencoded string, not yet decoded.
fn pieces(input: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    input
        .split(|&b| b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| match piece.iter().position(|&b| b == b'=') {
            Some(eq) => (&piece[..eq], &piece[eq + 1..]),
            None => (piece, &b""[..]),
        })
}

/// Decode urlencoded pairs (see the module notes).
pub(crate) fn parse_urlencoded(input: &[u8]) -> Vec<(String, String)> {
    pieces(input).map(|(n, v)| (decode(n), decode(v))).collect()
}

/// Decode one urlencoded name or value: `+` is a space, `%XX` a byte, any other
/// `%` literal; the bytes are then read as UTF-8, lossily.
fn decode(input: &[u8]) -> String {
    if !input.iter().any(|&b| b == b'%' || b == b'+') {
        return String::from_utf8_lossy(input).into_owned();
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = input
                    .get(i + 1..i + 3)
                    .and_then(|h| Some((hex_digit(h[0])? << 4) | hex_digit(h[1])?));
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RequestBody;
    use std::io;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn query(q: &str) -> Request<'static> {
        Request::builder().query(q).build()
    }

    #[test]
    fn plus_is_a_space_and_percent_escapes_are_bytes() {
        let req = query("q=a+b%20c%2Bd&%C3%A9t%C3%A9=%E2%9C%93");
        assert_eq!(req.query_param("q").as_deref(), Some("a b c+d"));
        assert_eq!(req.query_param("été").as_deref(), Some("✓"));
        assert_eq!(
            req.query_param("%C3%A9t%C3%A9"),
            None,
            "names match decoded"
        );
    }

    #[test]
    fn bad_percent_encoding_is_kept_literally_and_invalid_utf8_is_lossy() {
        assert_eq!(decode(b"%"), "%");
        assert_eq!(decode(b"100%"), "100%");
        assert_eq!(decode(b"%4"), "%4");
        assert_eq!(decode(b"%zz"), "%zz");
        assert_eq!(decode(b"%g1%41"), "%g1A");
        assert_eq!(decode(b"%%41"), "%A");
        assert_eq!(decode(b"%ff"), "\u{fffd}");
        assert_eq!(decode(b"a%C3"), "a\u{fffd}", "a truncated sequence");
        assert_eq!(decode(b"\xff+"), "\u{fffd} ", "raw invalid bytes too");
        assert_eq!(decode("é".as_bytes()), "é");
        let req = query("a=%&b=%2&c=%ZZ");
        assert_eq!(
            req.query_pairs(),
            pairs(&[("a", "%"), ("b", "%2"), ("c", "%ZZ")])
        );
    }

    #[test]
    fn repeated_keys_are_kept_in_order_and_the_first_wins() {
        let req = query("k=1&other=x&k=2&k=3");
        assert_eq!(req.query_param("k").as_deref(), Some("1"));
        assert_eq!(
            req.query_pairs(),
            pairs(&[("k", "1"), ("other", "x"), ("k", "2"), ("k", "3")])
        );
    }

    #[test]
    fn empty_values_names_and_pieces() {
        let req = query("a=&b&&=v&c==x&");
        assert_eq!(
            req.query_pairs(),
            pairs(&[("a", ""), ("b", ""), ("", "v"), ("c", "=x")])
        );
        assert_eq!(req.query_param("a").as_deref(), Some(""));
        assert_eq!(req.query_param("b").as_deref(), Some(""));
        assert_eq!(req.query_param("c").as_deref(), Some("=x"));
        assert_eq!(query("").query_pairs(), []);
        assert_eq!(query("").query_param(""), None);
        assert_eq!(query("&&").query_pairs(), []);
    }

    fn form_request(content_type: Option<&str>, body: &str) -> Request<'static> {
        let mut b = Request::builder().method("POST");
        if let Some(ct) = content_type {
            b = b.header("Content-Type", ct);
        }
        b.body(body).build()
    }

    #[test]
    fn forms_decode_like_queries() {
        let mut req = form_request(
            Some("Application/X-WWW-Form-URLEncoded; charset=UTF-8"),
            "a=1+2&a=%33&b=&%zz",
        );
        assert_eq!(
            req.form(1024).unwrap(),
            pairs(&[("a", "1 2"), ("a", "3"), ("b", ""), ("%zz", "")])
        );
    }

    #[test]
    fn forms_need_their_content_type() {
        for ct in [
            None,
            Some("text/plain"),
            Some("multipart/form-data; boundary=x"),
        ] {
            let err = form_request(ct, "a=1").form(1024).unwrap_err();
            assert_eq!(err.status_code(), 415, "{ct:?}");
        }
    }

    #[test]
    fn oversized_forms_are_413() {
        let ct = Some("application/x-www-form-urlencoded");
        assert_eq!(form_request(ct, "a=12345").form(7).unwrap().len(), 1);
        let err = form_request(ct, "a=123456").form(7).unwrap_err();
        assert_eq!(err.status_code(), 413);
    }

    #[test]
    fn cookies_from_every_cookie_header() {
        let req = Request::builder()
            .header("Cookie", " a=1 ;b = 2; c=\"q v\";; flag; =x; d=")
            .header("Cookie", "a=again; e=x=y")
            .build();
        assert_eq!(
            req.cookies(),
            pairs(&[
                ("a", "1"),
                ("b", "2"),
                ("c", "q v"),
                ("d", ""),
                ("a", "again"),
                ("e", "x=y")
            ])
        );
        assert_eq!(Request::builder().build().cookies(), []);
        let encoded = Request::builder().header("cookie", "v=a%20b").build();
        assert_eq!(encoded.cookies(), pairs(&[("v", "a%20b")]), "not decoded");
    }

    /// A body that records whether it was read at all.
    struct Watched(Arc<AtomicBool>, io::Cursor<Vec<u8>>);

    impl Read for Watched {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.store(true, Ordering::SeqCst);
            self.1.read(buf)
        }
    }

    fn watched(declared: Option<u64>, bytes: &[u8]) -> (Request<'static>, Arc<AtomicBool>) {
        let read = Arc::new(AtomicBool::new(false));
        let mut req = Request::new("POST", "/");
        req.content_length = declared;
        req.body = RequestBody::from_reader(Watched(read.clone(), io::Cursor::new(bytes.into())));
        (req, read)
    }

    #[test]
    fn a_body_within_the_limit_is_read_whole() {
        let (mut req, _) = watched(Some(5), b"12345");
        assert_eq!(req.read_body_limited(5).unwrap(), b"12345");
        let (mut req, _) = watched(None, b"12345");
        assert_eq!(req.read_body_limited(5).unwrap(), b"12345");
        let (mut req, _) = watched(Some(0), b"");
        assert_eq!(req.read_body_limited(0).unwrap(), b"");
        let mut empty = Request::new("GET", "/");
        assert_eq!(empty.read_body_limited(0).unwrap(), b"");
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let (mut req, read) = watched(Some(1_000_000), b"small really");
        let err = req.read_body_limited(100).unwrap_err();
        assert_eq!(err.status_code(), 413);
        assert!(!read.load(Ordering::SeqCst), "nothing was read");
        assert_eq!(err.message(), "request body larger than 100 bytes");
    }

    #[test]
    fn an_oversized_body_without_or_beyond_its_declared_length_is_413() {
        let (mut req, _) = watched(None, b"123456");
        assert_eq!(req.read_body_limited(5).unwrap_err().status_code(), 413);
        let (mut req, _) = watched(Some(3), b"123456");
        assert_eq!(req.read_body_limited(5).unwrap_err().status_code(), 413);
        let (mut req, _) = watched(None, &[0; 100_000]);
        assert_eq!(req.read_body_limited(0).unwrap_err().status_code(), 413);
    }

    #[test]
    fn huge_limits_do_not_overflow_or_preallocate_the_declared_length() {
        let (mut req, _) = watched(Some(u64::MAX / 2), b"abc");
        assert_eq!(req.read_body_limited(usize::MAX).unwrap(), b"abc");
    }

    #[cfg(feature = "json")]
    mod json {
        use super::*;
        use std::collections::BTreeMap;

        type Map = BTreeMap<String, i64>;

        fn json_request(content_type: Option<&str>, body: &str) -> Request<'static> {
            let mut b = Request::builder().method("POST");
            if let Some(ct) = content_type {
                b = b.header("Content-Type", ct);
            }
            b.body(body).build()
        }

        fn status(content_type: Option<&str>, body: &str, limit: usize) -> u16 {
            match json_request(content_type, body).json::<Map>(limit) {
                Ok(_) => 200,
                Err(e) => e.status_code(),
            }
        }

        #[test]
        fn json_bodies_are_parsed() {
            let mut req = json_request(Some("application/json; charset=utf-8"), r#"{"a": 1}"#);
            let map: Map = req.json(100).unwrap();
            assert_eq!(map["a"], 1);
            for ct in ["Application/JSON", "application/problem+json"] {
                assert_eq!(status(Some(ct), "{}", 100), 200, "{ct}");
            }
        }

        #[test]
        fn malformed_json_is_400_with_a_short_reason() {
            for body in [r#"{"a": 1"#, "{a: 1}", "", "nul", r#"{"a": 1} trailing"#] {
                let err = json_request(Some("application/json"), body)
                    .json::<Map>(100)
                    .unwrap_err();
                assert_eq!(err.status_code(), 400, "{body:?}");
                assert!(err.message().starts_with("malformed JSON: "), "{err}");
                assert!(err.message().len() < 100, "{err}");
            }
        }

        #[test]
        fn json_of_the_wrong_shape_is_422() {
            assert_eq!(status(Some("application/json"), r#"{"a": "x"}"#, 100), 422);
            assert_eq!(status(Some("application/json"), "[1, 2]", 100), 422);
        }

        #[test]
        fn wrong_or_missing_content_type_is_415() {
            for ct in [
                None,
                Some("text/plain"),
                Some("application/jsonx"),
                Some("text/json+x"),
            ] {
                assert_eq!(status(ct, "{}", 100), 415, "{ct:?}");
            }
        }

        #[test]
        fn oversized_json_is_413() {
            assert_eq!(status(Some("application/json"), r#"{"a": 1}"#, 8), 200);
            assert_eq!(status(Some("application/json"), r#"{"a": 12}"#, 8), 413);
        }
    }

    #[test]
    fn a_read_failure_is_a_plain_error() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("reset"))
            }
        }
        let mut req = Request::new("POST", "/");
        req.body = RequestBody::from_reader(Broken);
        let err = req.read_body_limited(10).unwrap_err();
        assert_eq!(
            (err.status_code(), err.to_response().is_none()),
            (500, true)
        );
    }
}
