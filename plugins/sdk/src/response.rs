use std::cell::Cell;

use crate::Body;

thread_local! {
    /// The headers array of the last response the host released on this thread,
    /// emptied: the next [`Response::new`] starts from it, so building the usual
    /// response allocates no array of its own.
    static SPARE_HEADERS: Cell<Vec<(String, String)>> = const { Cell::new(Vec::new()) };
}

/// A spare headers array keeps its storage only up to this many headers.
const SPARE_CAPACITY: usize = 32;

/// Give a released response's headers array back for the next [`Response::new`]
/// on this thread (its strings are freed here).
pub(crate) fn recycle_headers(mut headers: Vec<(String, String)>) {
    headers.clear();
    if headers.capacity() <= SPARE_CAPACITY {
        let _ = SPARE_HEADERS.try_with(|spare| spare.set(headers));
    }
}

/// A response: status, optional reason phrase, headers in order, and a body.
#[derive(Debug)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// A custom reason phrase; `None` uses the standard one.
    pub reason: Option<String>,
    /// Header names and values, sent in this order (names as given).
    pub headers: Vec<(String, String)>,
    /// The body; streamed to the client as the host pulls it.
    pub body: Body,
}

impl Response {
    /// An empty response with this status.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            reason: None,
            headers: SPARE_HEADERS.try_with(Cell::take).unwrap_or_default(),
            body: Body::empty(),
        }
    }

    /// A `text/plain; charset=utf-8` response with this status and text.
    ///
    /// ```
    /// use plughost_sdk::Response;
    ///
    /// let resp = Response::text(200, "hello\n");
    /// assert_eq!(resp.header_value("content-type"), Some("text/plain; charset=utf-8"));
    /// assert_eq!(resp.body.into_bytes().unwrap(), b"hello\n");
    /// ```
    pub fn text(status: u16, text: impl Into<String>) -> Response {
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(text.into())
    }

    /// An `application/json` response with this status and `value` serialized
    /// (needs the `json` feature). A value serde_json cannot serialize (such as a
    /// map with non-string keys) is a plain error: the host answers 500.
    ///
    /// ```
    /// use plughost_sdk::Response;
    ///
    /// let resp = Response::json(201, &serde_json::json!({"id": 7})).unwrap();
    /// assert_eq!((resp.status, resp.header_value("content-type")), (201, Some("application/json")));
    /// assert_eq!(resp.body.into_bytes().unwrap(), br#"{"id":7}"#);
    /// ```
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(
        status: u16,
        value: &T,
    ) -> Result<Response, crate::Error> {
        let body = serde_json::to_vec(value)
            .map_err(|e| crate::Error::new(format!("serializing a JSON response: {e}")))?;
        Ok(Response::new(status)
            .header("Content-Type", "application/json")
            .body(body))
    }

    /// Add a header (builder style).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Set the body (builder style).
    pub fn body(mut self, body: impl Into<Body>) -> Response {
        self.body = body.into();
        self
    }

    /// The first value of a header (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Replace every value of a header with one value.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.remove_header(name);
        self.headers.push((name.to_owned(), value.into()));
    }

    /// Remove every value of a header.
    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
}

/// The standard reason phrase of a status code (as the host sends it), for the
/// codes a plugin is likely to answer with.
pub(crate) fn reason_phrase(status: u16) -> Option<&'static str> {
    Some(match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        423 => "Locked",
        424 => "Failed Dependency",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        511 => "Network Authentication Required",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_sets_status_type_and_body() {
        let resp = Response::text(404, String::from("gone"));
        assert_eq!(resp.status, 404);
        assert_eq!(
            resp.headers,
            [(
                "Content-Type".to_owned(),
                "text/plain; charset=utf-8".to_owned()
            )]
        );
        assert_eq!(resp.body.size_hint(), Some(4));
        assert_eq!(resp.body.into_bytes().unwrap(), b"gone");
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_serializes_or_is_a_plain_error() {
        let resp = Response::json(200, &[1, 2, 3]).unwrap();
        assert_eq!(resp.header_value("content-type"), Some("application/json"));
        assert_eq!(resp.body.into_bytes().unwrap(), b"[1,2,3]");
        let resp = Response::json(200, "text").unwrap();
        assert_eq!(resp.body.into_bytes().unwrap(), br#""text""#);

        let unserializable: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let err = Response::json(200, &unserializable).unwrap_err();
        assert_eq!(
            (err.status_code(), err.to_response().is_none()),
            (500, true)
        );
    }

    #[test]
    fn reasons_are_the_standard_ones() {
        assert_eq!(reason_phrase(404), Some("Not Found"));
        assert_eq!(reason_phrase(413), Some("Payload Too Large"));
        assert_eq!(reason_phrase(599), None);
    }
}
