use std::borrow::Cow;

use crate::abi::PhNext;
use crate::{Error, RequestBody, Response};

/// The request, as WSGI's environ.
///
/// A borrowed view: the strings point into the host's memory for the duration of
/// the call (`Cow::Borrowed`), so receiving a request copies nothing. Changing a
/// field replaces just that field with an owned value; [`Request::to_owned`] makes
/// a copy that outlives the call. Strings that came in as invalid UTF-8 are shown
/// lossily (owned); the exact bytes are passed on to `next` if left unchanged.
#[derive(Debug)]
pub struct Request<'a> {
    /// The request method (`GET`, `POST`, ...), as received.
    pub method: Cow<'a, str>,
    /// `http` or `https`.
    pub scheme: Cow<'a, str>,
    /// SCRIPT_NAME: the mount point, percent-decoded.
    pub script_name: Cow<'a, str>,
    /// PATH_INFO: the rest of the path, percent-decoded.
    pub path_info: Cow<'a, str>,
    /// The path exactly as the client sent it.
    pub raw_path: Cow<'a, str>,
    /// QUERY_STRING, raw, without `?`.
    pub query_string: Cow<'a, str>,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub protocol: Cow<'a, str>,
    /// SERVER_NAME: the host name the server answers as.
    pub server_name: Cow<'a, str>,
    /// SERVER_PORT: the port the request came in on.
    pub server_port: u16,
    /// REMOTE_ADDR: the client's address (or the proxy's, behind one).
    pub remote_addr: Cow<'a, str>,
    /// The client's port.
    pub remote_port: u16,
    /// Lower-case names, in the order received; repeated headers stay separate.
    pub headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Extra environ keys set by filters upstream (and passed on downstream).
    pub extras: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// The declared body length, if any.
    pub content_length: Option<u64>,
    /// The request body, streamed from the client as it is read.
    pub body: RequestBody,
    /// Exact bytes of script_name and path_info as received, kept only when they
    /// were not valid UTF-8 (the strings above then differ from them).
    pub(crate) raw_script_name: Option<Cow<'a, [u8]>>,
    pub(crate) raw_path_info: Option<Cow<'a, [u8]>>,
}

/// An owned copy of a borrowed string.
fn own(s: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(s.into_owned())
}

impl Request<'static> {
    /// A request built by hand (for tests of plugin code).
    pub fn new(method: &str, path_info: &str) -> Request<'static> {
        Request {
            method: method.to_owned().into(),
            scheme: "http".into(),
            script_name: "".into(),
            path_info: path_info.to_owned().into(),
            raw_path: path_info.to_owned().into(),
            query_string: "".into(),
            protocol: "HTTP/1.1".into(),
            server_name: "localhost".into(),
            server_port: 80,
            remote_addr: "127.0.0.1".into(),
            remote_port: 0,
            headers: Vec::new(),
            extras: Vec::new(),
            content_length: None,
            body: RequestBody::empty(),
            raw_script_name: None,
            raw_path_info: None,
        }
    }

    /// A builder for a request made by hand (for tests of plugin code).
    pub fn builder() -> RequestBuilder {
        RequestBuilder {
            req: Request::new("GET", "/"),
        }
    }
}

impl<'a> Request<'a> {
    /// A copy that owns all its strings, so it can outlive the call (kept in a
    /// queue, moved to another thread). The body moves into the copy.
    #[allow(clippy::wrong_self_convention)] // `to_owned` is the SDK's documented name
    pub fn to_owned(self) -> Request<'static> {
        let pairs = |v: Vec<(Cow<'_, str>, Cow<'_, str>)>| {
            v.into_iter().map(|(n, v)| (own(n), own(v))).collect()
        };
        Request {
            method: own(self.method),
            scheme: own(self.scheme),
            script_name: own(self.script_name),
            path_info: own(self.path_info),
            raw_path: own(self.raw_path),
            query_string: own(self.query_string),
            protocol: own(self.protocol),
            server_name: own(self.server_name),
            server_port: self.server_port,
            remote_addr: own(self.remote_addr),
            remote_port: self.remote_port,
            headers: pairs(self.headers),
            extras: pairs(self.extras),
            content_length: self.content_length,
            body: self.body,
            raw_script_name: self.raw_script_name.map(|b| Cow::Owned(b.into_owned())),
            raw_path_info: self.raw_path_info.map(|b| Cow::Owned(b.into_owned())),
        }
    }

    /// The first value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &**v)
    }

    /// Every value of a header, in order.
    pub fn header_all<'r>(&'r self, name: &'r str) -> impl Iterator<Item = &'r str> + 'r {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &**v)
    }

    /// Replace every value of a header with one value.
    pub fn set_header(&mut self, name: &str, value: impl Into<Cow<'a, str>>) {
        self.remove_header(name);
        self.headers
            .push((name.to_ascii_lowercase().into(), value.into()));
    }

    /// Remove every value of a header.
    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// An extra environ key set by a filter upstream.
    pub fn extra(&self, key: &str) -> Option<&str> {
        self.extras
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| &**v)
    }

    /// Set an extra environ key for handlers downstream.
    pub fn set_extra(&mut self, key: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, str>>) {
        let key = key.into();
        self.extras.retain(|(k, _)| *k != key);
        self.extras.push((key, value.into()));
    }
}

/// Builds a [`Request`] by hand, for unit tests of plugin code (no host needed).
///
/// Starts from [`Request::new`]`("GET", "/")`; every setter replaces or adds one
/// part. Header names are lower-cased, as the host delivers them.
///
/// ```
/// use plughost_sdk::Request;
///
/// let mut req = Request::builder()
///     .method("POST")
///     .path("/items?page=2")
///     .header("Content-Type", "text/plain")
///     .body("hello")
///     .build();
/// assert_eq!((&*req.method, &*req.path_info), ("POST", "/items"));
/// assert_eq!(req.query_string, "page=2");
/// assert_eq!(req.header("content-type"), Some("text/plain"));
/// assert_eq!(req.content_length, Some(5));
/// assert_eq!(req.body.read_all().unwrap(), b"hello");
/// ```
#[derive(Debug)]
pub struct RequestBuilder {
    req: Request<'static>,
}

impl RequestBuilder {
    /// The request method (`GET` by default).
    pub fn method(mut self, method: &str) -> RequestBuilder {
        self.req.method = method.to_owned().into();
        self
    }

    /// PATH_INFO, with an optional `?query` (which sets the query string).
    pub fn path(mut self, path: &str) -> RequestBuilder {
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path, None),
        };
        self.req.path_info = path.to_owned().into();
        if let Some(query) = query {
            self.req.query_string = query.to_owned().into();
        }
        self
    }

    /// SCRIPT_NAME: the mount point the request came through (empty by default).
    pub fn script_name(mut self, script_name: &str) -> RequestBuilder {
        self.req.script_name = script_name.to_owned().into();
        self
    }

    /// QUERY_STRING, raw, without `?`.
    pub fn query(mut self, query: &str) -> RequestBuilder {
        self.req.query_string = query.to_owned().into();
        self
    }

    /// Add a header (repeat to add several values).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> RequestBuilder {
        self.req
            .headers
            .push((name.to_ascii_lowercase().into(), value.into().into()));
        self
    }

    /// Set an extra environ key, as a filter upstream would.
    pub fn extra(mut self, key: impl Into<String>, value: impl Into<String>) -> RequestBuilder {
        self.req.set_extra(key.into(), value.into());
        self
    }

    /// Set the body and its declared length.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> RequestBuilder {
        let body = body.into();
        self.req.content_length = Some(body.len() as u64);
        self.req.body = RequestBody::from_bytes(body);
        self
    }

    /// The finished request. `raw_path` is `script_name` followed by the path.
    pub fn build(mut self) -> Request<'static> {
        self.req.raw_path = format!("{}{}", self.req.script_name, self.req.path_info).into();
        self.req
    }
}

/// The rest of the pipeline, for a [`crate::Filter`]. Calling it consumes it, so it
/// can be called at most once.
///
/// The host hands a filter one for each request; a unit test makes its own with
/// [`Next::from_fn`].
pub struct Next<'a>(NextInner<'a>);

/// A closure standing in for the rest of the pipeline.
type Downstream<'a> = dyn FnOnce(Request<'_>) -> Result<Response, Error> + 'a;

/// What a [`Next`] runs: the host's pipeline, or a closure standing in for it.
enum NextInner<'a> {
    Host(&'a PhNext),
    Fn(Box<Downstream<'a>>),
}

impl<'a> Next<'a> {
    /// The host's handle for the rest of the pipeline (used by the SDK's glue).
    pub(crate) fn from_host(raw: &'a PhNext) -> Next<'a> {
        Next(NextInner::Host(raw))
    }

    /// A stand-in for the rest of the pipeline: `f` gets the request the filter
    /// passes on and returns the "downstream" response. For unit tests of filters,
    /// which then run without a host.
    ///
    /// ```
    /// use plughost_sdk::{Config, Error, Filter, Next, Request, Response};
    ///
    /// /// Adds `X-Seen: yes` on the way in and `X-Done: yes` on the way out.
    /// struct Mark;
    ///
    /// impl Filter for Mark {
    ///     fn new(_config: &Config) -> Result<Self, Error> {
    ///         Ok(Mark)
    ///     }
    ///     fn call(&self, mut req: Request, next: Next<'_>) -> Result<Response, Error> {
    ///         req.set_header("x-seen", "yes");
    ///         Ok(next.call(req)?.header("X-Done", "yes"))
    ///     }
    /// }
    ///
    /// let filter = Mark::new(&Config::default()).unwrap();
    /// let req = Request::builder().path("/x").build();
    /// let next = Next::from_fn(|req: Request| {
    ///     assert_eq!(req.header("x-seen"), Some("yes"));
    ///     Ok(Response::new(200).body("downstream"))
    /// });
    /// let resp = filter.call(req, next).unwrap();
    /// assert_eq!(resp.status, 200);
    /// assert_eq!(resp.header_value("x-done"), Some("yes"));
    /// assert_eq!(resp.body.into_bytes().unwrap(), b"downstream");
    /// ```
    pub fn from_fn(f: impl FnOnce(Request<'_>) -> Result<Response, Error> + 'a) -> Next<'a> {
        Next(NextInner::Fn(Box::new(f)))
    }

    /// Pass the request on and get the response of everything downstream.
    /// An `Err` means downstream failed (the host has logged why).
    pub fn call(self, req: Request<'_>) -> Result<Response, Error> {
        match self.0 {
            NextInner::Host(raw) => crate::ffi::call_next(raw, req),
            NextInner::Fn(f) => f(req),
        }
    }
}

impl std::fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.0 {
            NextInner::Host(_) => "host",
            NextInner::Fn(_) => "fn",
        };
        f.debug_tuple("Next").field(&kind).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn builder_defaults_match_request_new() {
        let built = Request::builder().build();
        let new = Request::new("GET", "/");
        assert_eq!(
            (
                &built.method,
                &built.path_info,
                &built.raw_path,
                &built.scheme
            ),
            (&new.method, &new.path_info, &new.raw_path, &new.scheme)
        );
        assert_eq!(built.content_length, None);
        assert!(built.headers.is_empty() && built.extras.is_empty());
    }

    #[test]
    fn builder_sets_every_part() {
        let mut req = Request::builder()
            .method("PUT")
            .script_name("/app")
            .path("/a b?x=1")
            .header("X-One", "1")
            .header("x-one", "2")
            .extra("k", "v")
            .body(&b"abc"[..])
            .build();
        assert_eq!(req.method, "PUT");
        assert_eq!(req.script_name, "/app");
        assert_eq!(req.path_info, "/a b");
        assert_eq!(req.raw_path, "/app/a b");
        assert_eq!(req.query_string, "x=1");
        assert_eq!(req.header_all("X-ONE").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(req.headers[0].0, "x-one", "names are lower-cased");
        assert_eq!(req.extra("k"), Some("v"));
        assert_eq!(req.content_length, Some(3));
        let mut body = String::new();
        req.body.read_to_string(&mut body).unwrap();
        assert_eq!(body, "abc");
    }

    #[test]
    fn query_after_path_wins() {
        let req = Request::builder().path("/p?a").query("b").build();
        assert_eq!(req.query_string, "b");
    }

    #[test]
    fn next_from_fn_runs_the_closure_once_with_the_request() {
        let mut seen = None;
        let next = Next::from_fn(|req: Request| {
            seen = Some(req.path_info.into_owned());
            Ok(Response::new(204))
        });
        assert_eq!(format!("{next:?}"), "Next(\"fn\")");
        let resp = next.call(Request::new("GET", "/down")).unwrap();
        assert_eq!(resp.status, 204);
        assert_eq!(seen.as_deref(), Some("/down"));
    }

    #[test]
    fn next_from_fn_passes_errors_on() {
        let next = Next::from_fn(|_req: Request| Err(Error::new("downstream broke")));
        let err = next.call(Request::new("GET", "/")).unwrap_err();
        assert_eq!(err.message(), "downstream broke");
    }
}
