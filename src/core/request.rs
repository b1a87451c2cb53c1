//! The host's own request and response types and the [`Handler`] trait that
//! plugin apps, plugin filters and built-ins all implement.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Version};

use super::body::{self, Body};

/// The response every handler produces.
pub type Response = http::Response<Body>;

/// A boxed future of a response.
pub type ResponseFuture<'a> = Pin<Box<dyn Future<Output = Response> + Send + 'a>>;

/// The request as WSGI's environ: everything an app can see.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    /// `http` or `https` (shared by every request of a listener).
    pub scheme: Arc<str>,
    /// SCRIPT_NAME, percent-decoded bytes.
    pub script_name: Vec<u8>,
    /// PATH_INFO, percent-decoded bytes (may be invalid UTF-8).
    pub path_info: Vec<u8>,
    /// The request target's path as received.
    pub raw_path: String,
    /// QUERY_STRING, raw.
    pub query_string: String,
    pub version: Version,
    pub server_name: String,
    pub server_port: u16,
    /// The peer's address (formatted once per connection).
    pub remote_addr: Arc<str>,
    pub remote_port: u16,
    pub headers: HeaderMap,
    /// Extra environ keys set by filters for handlers downstream.
    pub extras: Vec<(String, String)>,
    pub body: Body,
    /// True while the request is being handled on a plugin worker thread, so
    /// plugin handlers downstream call straight through instead of queueing again.
    pub on_worker: bool,
}

/// The string buffers of the last request a handler finished with on this
/// thread ([`Request::recycle`]), for the next environ built here, so a request
/// answered where it arrived (a non-blocking plugin app) allocates no strings
/// of its own.
#[derive(Debug, Default)]
pub(crate) struct SpareBuffers {
    pub raw_path: String,
    pub path_info: Vec<u8>,
    pub server_name: String,
}

/// A recycled buffer keeps its storage only up to this many bytes.
const SPARE_BYTES: usize = 1024;

thread_local! {
    static SPARE: Cell<SpareBuffers> = const {
        Cell::new(SpareBuffers {
            raw_path: String::new(),
            path_info: Vec::new(),
            server_name: String::new(),
        })
    };
}

impl SpareBuffers {
    /// This thread's spare buffers, emptied (new ones if there are none).
    pub(crate) fn take() -> SpareBuffers {
        let mut spare = SPARE.try_with(Cell::take).unwrap_or_default();
        spare.raw_path.clear();
        spare.path_info.clear();
        spare.server_name.clear();
        spare
    }
}

/// `buf` if it is small enough to keep, else an empty one.
fn keepable<T: Default>(buf: T, capacity: usize) -> T {
    if capacity <= SPARE_BYTES {
        buf
    } else {
        T::default()
    }
}

impl Request {
    /// Done with the request: its path and server-name buffers go to the next
    /// environ built on this thread ([`SpareBuffers::take`]); the rest is dropped.
    pub fn recycle(self) {
        let Request {
            raw_path,
            path_info,
            server_name,
            ..
        } = self;
        let (a, b, c) = (
            raw_path.capacity(),
            path_info.capacity(),
            server_name.capacity(),
        );
        let spare = SpareBuffers {
            raw_path: keepable(raw_path, a),
            path_info: keepable(path_info, b),
            server_name: keepable(server_name, c),
        };
        let _ = SPARE.try_with(|cell| cell.set(spare));
    }

    /// `HTTP/1.1` and friends, as WSGI's SERVER_PROTOCOL.
    pub fn protocol(&self) -> &'static str {
        match self.version {
            Version::HTTP_09 => "HTTP/0.9",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2",
            Version::HTTP_3 => "HTTP/3",
            _ => "HTTP/1.1",
        }
    }

    /// The declared body length, if any (and valid: see
    /// [`headers::content_length`](super::headers::content_length)).
    pub fn content_length(&self) -> Option<u64> {
        super::headers::content_length(&self.headers).ok().flatten()
    }
}

/// The head of a request as it arrived, borrowed: what a handler may answer
/// from at once, before the server builds the environ (see
/// [`Handler::answer_now`]).
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub method: &'a Method,
    /// The request target's path as received (not decoded).
    pub raw_path: &'a str,
    /// The query string, raw (`None` without a `?`).
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// Anything that answers requests: an app, or a filter holding the rest of the chain.
pub trait Handler: Send + Sync + 'static {
    /// Answer one request. Failures are answered too (a 500 and a log line), so a
    /// handler never returns an error; a body that fails midway aborts the connection.
    fn call(&self, req: Request) -> ResponseFuture<'_>;

    /// The answer to a bodiless request with this head, if the handler has it
    /// ready without the environ, a task or any await (a cache's page in
    /// memory); `None` sends the request the ordinary way, through
    /// [`Handler::call`]. The server asks only where the environ would hold
    /// nothing the head does not (no `url_prefix`, no trusted proxy headers to
    /// apply, no body). An answer must be exactly what `call` would give, and
    /// its body must hold no plugin's code (no reload guard keeps it alive).
    /// The default has nothing ready.
    fn answer_now(&self, _head: &Head<'_>) -> Option<Response> {
        None
    }
}

/// A short plain-text response for errors the host answers itself.
pub(crate) fn error_response(status: StatusCode) -> Response {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let mut resp = http::Response::new(body::full(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
