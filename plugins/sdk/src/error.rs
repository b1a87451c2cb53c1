use std::fmt;

use crate::response::reason_phrase;
use crate::Response;

/// An error a plugin returns from `new` or `call`.
///
/// There are two kinds:
/// - A **plain** error ([`Error::new`], or `?` on an I/O or other error): a message
///   for the host's log (or, from a factory, for the start-up error). The request
///   that caused it gets the host's own 500 page; the client never sees the message.
/// - A **status** error ([`Error::status`], [`Error::not_found`], ...): an answer
///   to the client. When an app's or a filter's `call` returns one, the SDK answers
///   that status itself with a short `text/plain; charset=utf-8` body such as
///   `404 Not Found: no such item` and the host logs nothing. The message is sent to
///   the client, so keep secrets out of it. (From a factory's `new`, a status error
///   is just a start-up error with its message.)
///
/// ```
/// use plughost_sdk::{Error, Request, Response};
///
/// fn item(req: &Request) -> Result<Response, Error> {
///     let id = req.path_info.strip_prefix("/item/").ok_or_else(|| Error::bad_request("no item id"))?;
///     if id != "1" {
///         return Err(Error::not_found(format!("no item {id}")));
///     }
///     Ok(Response::text(200, "item 1\n"))
/// }
///
/// let err = item(&Request::builder().path("/item/7").build()).unwrap_err();
/// assert_eq!(err.status_code(), 404);
/// let resp = err.to_response().unwrap(); // what the SDK answers for it
/// assert_eq!(resp.header_value("content-type"), Some("text/plain; charset=utf-8"));
/// assert_eq!(resp.body.into_bytes().unwrap(), b"404 Not Found: no item 7\n");
///
/// // A plain error has no response of its own: the host answers 500 and logs it.
/// let plain = Error::new("database down");
/// assert_eq!((plain.status_code(), plain.to_response().is_none()), (500, true));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
    /// `Some` for a status error: the SDK answers it itself.
    status: Option<u16>,
    /// Headers for the SDK's answer to a status error.
    headers: Vec<(String, String)>,
}

impl Error {
    /// A plain error with this message: logged by the host, which answers 500.
    pub fn new(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
            status: None,
            headers: Vec::new(),
        }
    }

    /// A status error: the SDK answers `code` with `message` in a short text body
    /// (see [`Error`]). `code` should be a 4xx or 5xx status; anything outside
    /// `400..=599` is answered as 500 (an error must not look like a success).
    ///
    /// ```
    /// use plughost_sdk::Error;
    ///
    /// assert_eq!(Error::status(409, "version conflict").status_code(), 409);
    /// assert_eq!(Error::status(200, "not an error code").status_code(), 500);
    /// ```
    pub fn status(code: u16, message: impl Into<String>) -> Error {
        let code = if (400..=599).contains(&code) {
            code
        } else {
            500
        };
        Error {
            message: message.into(),
            status: Some(code),
            headers: Vec::new(),
        }
    }

    /// 400 Bad Request: the request is malformed (a missing or invalid parameter).
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::status(400, message)
    }

    /// 401 Unauthorized: credentials are missing or wrong. Add a
    /// `WWW-Authenticate` header with [`Error::with_header`].
    pub fn unauthorized(message: impl Into<String>) -> Error {
        Error::status(401, message)
    }

    /// 403 Forbidden: the client may not do this.
    pub fn forbidden(message: impl Into<String>) -> Error {
        Error::status(403, message)
    }

    /// 404 Not Found: no such resource.
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::status(404, message)
    }

    /// 405 Method Not Allowed. HTTP requires an `Allow` header listing the
    /// methods that are: add it with [`Error::with_header`].
    ///
    /// ```
    /// use plughost_sdk::Error;
    ///
    /// let err = Error::method_not_allowed("use GET").with_header("Allow", "GET, HEAD");
    /// let resp = err.to_response().unwrap();
    /// assert_eq!((resp.status, resp.header_value("allow")), (405, Some("GET, HEAD")));
    /// ```
    pub fn method_not_allowed(message: impl Into<String>) -> Error {
        Error::status(405, message)
    }

    /// 409 Conflict: the request conflicts with the resource's current state.
    pub fn conflict(message: impl Into<String>) -> Error {
        Error::status(409, message)
    }

    /// 413 Payload Too Large: the request body is over the limit.
    pub fn payload_too_large(message: impl Into<String>) -> Error {
        Error::status(413, message)
    }

    /// 415 Unsupported Media Type: the body's `Content-Type` is not one accepted.
    pub fn unsupported_media_type(message: impl Into<String>) -> Error {
        Error::status(415, message)
    }

    /// 422 Unprocessable Entity: the body is well-formed but its content is not
    /// acceptable (a field missing or of the wrong type).
    pub fn unprocessable(message: impl Into<String>) -> Error {
        Error::status(422, message)
    }

    /// 429 Too Many Requests. A `Retry-After` header ([`Error::with_header`])
    /// tells the client when to try again.
    pub fn too_many_requests(message: impl Into<String>) -> Error {
        Error::status(429, message)
    }

    /// 503 Service Unavailable: a temporary condition (overload, maintenance),
    /// answered by the SDK rather than logged as a failure.
    pub fn service_unavailable(message: impl Into<String>) -> Error {
        Error::status(503, message)
    }

    /// Add a header to the SDK's answer to a status error (builder style), such as
    /// `Allow` for a 405 or `Retry-After` for a 503. A `Content-Type` given here
    /// replaces the SDK's `text/plain`. Plain errors ignore headers.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Error {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// The message: sent to the client for a status error, logged for a plain one.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The status this error is answered with: its own for a status error, 500
    /// for a plain error.
    pub fn status_code(&self) -> u16 {
        self.status.unwrap_or(500)
    }

    /// The response the SDK answers a status error with (`None` for a plain error,
    /// which the host answers and logs). Plugin tests can check it without a host.
    ///
    /// The body is `"{code} {reason}: {message}\n"`, or `"{code} {reason}\n"` for
    /// an empty message (just `"{code}: ..."` for a code without a standard reason).
    pub fn to_response(&self) -> Option<Response> {
        let code = self.status?;
        let mut line = code.to_string();
        if let Some(reason) = reason_phrase(code) {
            line.push(' ');
            line.push_str(reason);
        }
        if !self.message.is_empty() {
            line.push_str(": ");
            line.push_str(&self.message);
        }
        line.push('\n');
        let mut resp = Response::text(code, line);
        for (name, value) in &self.headers {
            if name.eq_ignore_ascii_case("content-type") {
                resp.set_header(name, value.clone());
            } else {
                resp.headers.push((name.clone(), value.clone()));
            }
        }
        Some(resp)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Error {
        Error::new(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Error {
        Error::new(message)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::new(format!("I/O error: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(err: &Error) -> (u16, Option<String>, String) {
        let resp = err.to_response().expect("a status error");
        let ct = resp.header_value("content-type").map(str::to_owned);
        let body = String::from_utf8(resp.body.into_bytes().unwrap()).unwrap();
        (resp.status, ct, body)
    }

    #[test]
    fn plain_errors_are_500_without_a_response() {
        for err in [
            Error::new("x"),
            Error::from("x"),
            Error::from(String::from("x")),
            Error::from(std::io::Error::other("x")),
            Error::new("x").with_header("Allow", "GET"),
        ] {
            assert_eq!(err.status_code(), 500);
            assert!(err.to_response().is_none());
        }
    }

    #[test]
    fn status_errors_answer_with_a_short_text_body() {
        let text = Some("text/plain; charset=utf-8".to_owned());
        assert_eq!(
            answer(&Error::status(404, "no such item")),
            (404, text.clone(), "404 Not Found: no such item\n".into())
        );
        assert_eq!(
            answer(&Error::bad_request("")),
            (400, text.clone(), "400 Bad Request\n".into())
        );
        assert_eq!(
            answer(&Error::status(499, "closed")),
            (499, text, "499: closed\n".into())
        );
    }

    #[test]
    fn constructors_have_their_codes() {
        let cases = [
            (Error::bad_request("m"), 400),
            (Error::unauthorized("m"), 401),
            (Error::forbidden("m"), 403),
            (Error::not_found("m"), 404),
            (Error::method_not_allowed("m"), 405),
            (Error::conflict("m"), 409),
            (Error::payload_too_large("m"), 413),
            (Error::unsupported_media_type("m"), 415),
            (Error::unprocessable("m"), 422),
            (Error::too_many_requests("m"), 429),
            (Error::service_unavailable("m"), 503),
        ];
        for (err, code) in cases {
            assert_eq!((err.status_code(), err.message()), (code, "m"));
            let resp = err.to_response().unwrap();
            assert_eq!(resp.status, code);
            let body = String::from_utf8(resp.body.into_bytes().unwrap()).unwrap();
            assert!(body.starts_with(&format!("{code} ")), "{body}");
            assert!(body.ends_with(": m\n"), "{body}");
        }
    }

    #[test]
    fn codes_outside_the_error_range_become_500() {
        for code in [0, 99, 200, 302, 399, 600, u16::MAX] {
            assert_eq!(Error::status(code, "m").status_code(), 500, "{code}");
        }
        assert_eq!(Error::status(599, "m").status_code(), 599);
    }

    #[test]
    fn headers_go_on_the_answer_and_content_type_replaces_the_sdks() {
        let err = Error::too_many_requests("slow down")
            .with_header("Retry-After", "5")
            .with_header("Content-Type", "text/plain; charset=us-ascii");
        let resp = err.to_response().unwrap();
        assert_eq!(resp.header_value("retry-after"), Some("5"));
        let types: Vec<_> = resp
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .collect();
        assert_eq!(types.len(), 1);
        assert_eq!(types[0].1, "text/plain; charset=us-ascii");
    }
}
