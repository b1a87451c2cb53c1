//! Conversions between the host's request/response/body types and the raw ABI
//! views, in both directions. Ownership follows the ABI: the side that allocates
//! supplies the `release`, and every handle is released exactly once (in `Drop`).

use std::any::Any;
use std::cell::Cell;
use std::ffi::c_void;
use std::ptr::addr_of;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Method, StatusCode, Version};
use http_body_util::BodyExt;
use plughost_sdk::abi::{self, PhBody, PhBodyVtbl, PhPair, PhRequest, PhResponse, PhStr};
use tokio::runtime::Handle;

use super::guard::{host_callback, nullable_fn};
use super::header_cache;
use super::host_api::lossy;
use super::library::same_ptr;
use crate::core::blocking;
use crate::core::body as bodies;
use crate::core::read_ahead::{BlockingChunks, ReadAhead};
use crate::core::{Body, BodyError, Request, Response};

/// How much of a plugin's body is read on the worker before deciding to stream it:
/// a body that ends within this is sent with a Content-Length and no extra thread.
const PREREAD_BYTES: usize = 64 * 1024;

/// Hop-by-hop headers an app must not set; the server manages them.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];

/// What is wrong with a request or response a plugin handed the host. The text
/// follows "plugin returned an invalid response: " or "a filter passed an
/// invalid request to `next`: " in log lines.
#[derive(Debug, thiserror::Error)]
pub enum InvalidMessage {
    #[error("invalid method {0:?}")]
    Method(String),
    #[error("invalid header name {0:?}")]
    HeaderName(String),
    #[error("invalid value for header {0}")]
    HeaderValue(HeaderName),
    #[error("invalid status code {0}")]
    Status(u16),
    #[error("invalid reason phrase {0:?}")]
    Reason(String),
    #[error("body failed before its first {PREREAD_BYTES} bytes (code {0})")]
    BodyFailed(i32),
    /// A body table with a NULL function: never called; the body is released
    /// if its `release` is set, else leaked.
    #[error("body has a NULL `{0}` function in its table")]
    NullBodyFn(&'static str),
}

/// Keeps a plugin's instance (and so its library) alive while a body from it exists.
pub(crate) type KeepAlive = Arc<dyn Any + Send + Sync>;

// ---------------------------------------------------------------------------
// Request view: host request -> PhRequest (borrowed for one call).

thread_local! {
    /// Header pairs storage reused by this thread's request views, so building a
    /// view allocates nothing. A view takes it for its call, so a nested call on
    /// the same thread (a filter's `next`) builds its own.
    static VIEW_PAIRS: Cell<Vec<PhPair>> = const { Cell::new(Vec::new()) };
}

/// The storage a [`PhRequest`] points into.
pub(crate) struct RequestView {
    headers: Vec<PhPair>,
    extras: Vec<PhPair>,
    /// `Request::content_length` (the one strict parser, `core::headers`).
    content_length: Option<u64>,
}

impl RequestView {
    pub(super) fn new(req: &Request) -> RequestView {
        let mut headers = VIEW_PAIRS.try_with(Cell::take).unwrap_or_default();
        headers.reserve(req.headers.len());
        let mut has_length = false;
        headers.extend(req.headers.iter().map(|(n, v)| {
            has_length |= n == http::header::CONTENT_LENGTH;
            PhPair {
                name: PhStr::from_str(n.as_str()),
                value: PhStr::from_bytes(v.as_bytes()),
            }
        }));
        // Seen on the way through the headers, so most requests (no body, no
        // Content-Length) skip the lookup.
        let content_length = if has_length {
            req.content_length()
        } else {
            None
        };
        RequestView {
            headers,
            extras: req
                .extras
                .iter()
                .map(|(k, v)| PhPair {
                    name: PhStr::from_str(k),
                    value: PhStr::from_str(v),
                })
                .collect(),
            content_length,
        }
    }

    /// The raw view; valid while both `self` and `req` are alive and unchanged.
    pub(super) fn raw(&self, req: &Request) -> PhRequest {
        PhRequest {
            struct_size: std::mem::size_of::<PhRequest>() as u32,
            method: PhStr::from_str(req.method.as_str()),
            scheme: PhStr::from_str(&req.scheme),
            script_name: PhStr::from_bytes(&req.script_name),
            path_info: PhStr::from_bytes(&req.path_info),
            raw_path: PhStr::from_str(&req.raw_path),
            query_string: PhStr::from_str(&req.query_string),
            protocol: PhStr::from_str(req.protocol()),
            server_name: PhStr::from_str(&req.server_name),
            remote_addr: PhStr::from_str(&req.remote_addr),
            server_port: req.server_port,
            remote_port: req.remote_port,
            headers: self.headers.as_ptr(),
            header_count: self.headers.len(),
            extras: self.extras.as_ptr(),
            extra_count: self.extras.len(),
            content_length: self.content_length.map_or(-1, |n| n as i64),
        }
    }
}

impl Drop for RequestView {
    fn drop(&mut self) {
        // Hand the storage back for the thread's next view (the pairs left in it
        // point nowhere useful, and are overwritten before they are read again).
        let mut headers = std::mem::take(&mut self.headers);
        headers.clear();
        let _ = VIEW_PAIRS.try_with(|cell| cell.set(headers));
    }
}

/// # Safety
/// `pairs` must point at `count` pairs valid for the call (or be null).
unsafe fn pairs<'a>(pairs: *const PhPair, count: usize) -> &'a [PhPair] {
    if pairs.is_null() || count == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(pairs, count) }
    }
}

/// Rebuild a host request from a view a filter passed to `next`.
///
/// # Safety
/// `view` must be valid for the call; `body` is taken over.
pub(crate) unsafe fn request_from_view(
    view: &PhRequest,
    body: PhBody,
    rt: &Handle,
    keep: &KeepAlive,
) -> Result<Request, InvalidMessage> {
    let body = body_from_plugin(body, rt, keep.clone());
    // SAFETY: every string and array of the view is valid for the call.
    unsafe {
        let method = Method::from_bytes(view.method.as_bytes())
            .map_err(|_| InvalidMessage::Method(lossy(view.method)))?;
        let mut headers = http::HeaderMap::with_capacity(view.header_count);
        for p in pairs(view.headers, view.header_count) {
            let (name, value) = header(p)?;
            headers.append(name, value);
        }
        let extras = pairs(view.extras, view.extra_count)
            .iter()
            .map(|p| (lossy(p.name), lossy(p.value)))
            .collect();
        Ok(Request {
            method,
            scheme: lossy(view.scheme).into(),
            script_name: view.script_name.as_bytes().to_vec(),
            path_info: view.path_info.as_bytes().to_vec(),
            raw_path: lossy(view.raw_path),
            query_string: lossy(view.query_string),
            version: if view.protocol.as_bytes() == b"HTTP/1.0" {
                Version::HTTP_10
            } else {
                Version::HTTP_11
            },
            server_name: lossy(view.server_name),
            server_port: view.server_port,
            remote_addr: lossy(view.remote_addr).into(),
            remote_port: view.remote_port,
            headers,
            extras,
            body: body?,
            on_worker: true,
        })
    }
}

/// # Safety
/// The pair's strings must be valid for the call.
unsafe fn header(p: &PhPair) -> Result<(HeaderName, HeaderValue), InvalidMessage> {
    // SAFETY: guaranteed by the caller.
    let (name, value) = unsafe { (p.name.as_bytes(), p.value.as_bytes()) };
    let name = HeaderName::from_bytes(name)
        .map_err(|_| InvalidMessage::HeaderName(String::from_utf8_lossy(name).into_owned()))?;
    let value = match HeaderValue::from_bytes(value) {
        Ok(value) => value,
        Err(_) => return Err(InvalidMessage::HeaderValue(name)),
    };
    Ok((name, value))
}

// ---------------------------------------------------------------------------
// Host bodies handed to plugins (request bodies, and `next`'s response bodies).

struct HostBody {
    body: Body,
    /// The chunk last handed out, kept alive until the next call.
    chunk: Bytes,
}

static HOST_BODY_VTBL: PhBodyVtbl = PhBodyVtbl {
    struct_size: std::mem::size_of::<PhBodyVtbl>() as u32,
    next: host_body_next,
    size_hint: host_body_size_hint,
    release: host_body_release,
};

/// Hand a host body to a plugin. Plugins pull it on worker threads, where
/// blocking on the runtime is allowed.
pub(crate) fn body_to_plugin(body: Body) -> PhBody {
    if http_body::Body::is_end_stream(&body) {
        return PhBody::EMPTY;
    }
    let state = Box::new(HostBody {
        body,
        chunk: Bytes::new(),
    });
    PhBody {
        vtbl: &HOST_BODY_VTBL,
        this: Box::into_raw(state).cast(),
    }
}

host_callback! {
    /// `PhBodyVtbl::next` of a host body. `PH_ERR` on a NULL `this` or `chunk`,
    /// and on a panic in the host (the body then stays unreleased until `release`).
    fn host_body_next(this: *mut c_void, chunk: *mut PhStr) -> i32;
    non_null(this, chunk) else abi::PH_ERR;
    on_panic abi::PH_ERR;
    {
        // SAFETY: `this` is a live `HostBody` (not yet released) and the ABI forbids
        // concurrent calls on one body.
        let state = unsafe { &mut *this.cast::<HostBody>() };
        let next = loop {
            // Not the runtime's block_on: this may run inside a filter's `next`, which
            // is already inside the runtime's context (see `blocking::wait`).
            match blocking::wait(state.body.frame()) {
                None => break None,
                Some(Err(e)) => {
                    tracing::debug!("request body failed: {e}");
                    break Some(Err(()));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            break Some(Ok(data));
                        }
                    }
                }
            }
        };
        match next {
            None => abi::PH_EOF,
            Some(Ok(data)) => {
                state.chunk = data;
                // SAFETY: `chunk` is a valid (non-NULL, checked) out-pointer; the bytes
                // live in `state.chunk` until the next call or release.
                unsafe { *chunk = PhStr::from_bytes(&state.chunk) };
                abi::PH_OK
            }
            Some(Err(())) => abi::PH_ERR,
        }
    }
}

host_callback! {
    /// `PhBodyVtbl::size_hint` of a host body: -1 (unknown) on a NULL `this` or a panic.
    fn host_body_size_hint(this: *mut c_void) -> i64;
    non_null(this) else -1;
    on_panic -1;
    {
        // SAFETY: as in `host_body_next`.
        let state = unsafe { &*this.cast::<HostBody>() };
        http_body::Body::size_hint(&state.body)
            .exact()
            .map_or(-1, |n| n as i64)
    }
}

host_callback! {
    /// `PhBodyVtbl::release` of a host body. A NULL `this` is ignored; a panic while
    /// dropping the body is logged (what it had not freed leaks).
    fn host_body_release(this: *mut c_void);
    non_null(this);
    {
        // SAFETY: `this` came from `Box::into_raw` in `body_to_plugin`; released once.
        drop(unsafe { Box::from_raw(this.cast::<HostBody>()) });
    }
}

// ---------------------------------------------------------------------------
// Plugin bodies received by the host.

/// A body owned by a plugin; released exactly once when dropped.
pub(crate) struct PluginBody {
    raw: PhBody,
    _keep: KeepAlive,
}

// SAFETY: the ABI allows a body to be used from any thread, one at a time;
// `&mut self` access guarantees one at a time.
unsafe impl Send for PluginBody {}

/// The first NULL function of a plugin body's table, and its `release` (if set).
///
/// # Safety
/// `vtbl` must be non-NULL and point at a body table.
unsafe fn check_body_vtbl(
    vtbl: *const PhBodyVtbl,
) -> (
    Option<&'static str>,
    Option<unsafe extern "C" fn(*mut c_void)>,
) {
    // SAFETY: guaranteed by the caller; each field is read as a nullable pointer.
    let (next, size_hint, release) = unsafe {
        (
            nullable_fn(addr_of!((*vtbl).next)),
            nullable_fn(addr_of!((*vtbl).size_hint)),
            nullable_fn(addr_of!((*vtbl).release)),
        )
    };
    let missing = if next.is_none() {
        Some("next")
    } else if size_hint.is_none() {
        Some("size_hint")
    } else if release.is_none() {
        Some("release")
    } else {
        None
    };
    (missing, release)
}

impl PluginBody {
    /// Take over a body a plugin handed the host (`raw.vtbl` non-NULL), checking its
    /// table as it arrives: a table with a NULL function is a plugin fault. Such a
    /// body is released at once when its `release` is set (leaked when not), and
    /// nothing else in it is called.
    fn adopt(raw: PhBody, keep: KeepAlive) -> Result<PluginBody, InvalidMessage> {
        // SAFETY: `raw.vtbl` is non-NULL (checked by every caller) and points at the
        // plugin's body table.
        match unsafe { check_body_vtbl(raw.vtbl) } {
            (None, _) => Ok(PluginBody { raw, _keep: keep }),
            (Some(missing), release) => {
                if let Some(release) = release {
                    // SAFETY: we own the body; released once, here, and never used again.
                    unsafe { release(raw.this) };
                }
                Err(InvalidMessage::NullBodyFn(missing))
            }
        }
    }

    /// The next chunk, `None` at the end, or the plugin's error code.
    fn next(&mut self) -> Result<Option<&[u8]>, i32> {
        let chunk = self.next_raw()?;
        // SAFETY: the chunk is valid until the next call on this body, which the
        // borrow of `self` rules out.
        Ok(chunk.map(|c| unsafe { c.as_bytes() }))
    }

    /// As `next`, but the chunk unborrowed: valid until the next call on this body
    /// or its release.
    fn next_raw(&mut self) -> Result<Option<PhStr>, i32> {
        let mut chunk = PhStr::EMPTY;
        // SAFETY: we own a live body; `chunk` is a valid out-pointer.
        let rc = unsafe { ((*self.raw.vtbl).next)(self.raw.this, &mut chunk) };
        match rc {
            abi::PH_OK => Ok(Some(chunk)),
            abi::PH_EOF => Ok(None),
            code => Err(code),
        }
    }

    fn size_hint(&self) -> Option<u64> {
        // SAFETY: we own a live body.
        let hint = unsafe { ((*self.raw.vtbl).size_hint)(self.raw.this) };
        u64::try_from(hint).ok()
    }
}

impl Drop for PluginBody {
    fn drop(&mut self) {
        // SAFETY: we own the body and release it exactly once, here.
        unsafe { ((*self.raw.vtbl).release)(self.raw.this) }
    }
}

/// A plugin body whose first chunk was all of it, kept unreleased so the chunk can
/// go to the connection as it is: one body, no copy. The plugin releases the body
/// (and the chunk's memory) when the last `Bytes` of it is dropped.
struct WholeChunk {
    chunk: PhStr,
    /// Owns the chunk's memory: released (by `Drop`) only with the bytes.
    _body: PluginBody,
}

// SAFETY: the body may be used from any thread (see `PluginBody`); the chunk is
// immutable memory the body owns, and no call is made on the body again, so
// reading it from any thread until the release is fine.
unsafe impl Send for WholeChunk {}

impl AsRef<[u8]> for WholeChunk {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the chunk is valid until the next call on the body or its release;
        // no other call is ever made, and the release runs only when `self` drops,
        // after the last borrow of this slice.
        unsafe { self.chunk.as_bytes() }
    }
}

fn body_error(code: i32) -> BodyError {
    format!("plugin body failed (code {code})").into()
}

/// Turn a plugin's body into a host body. Runs on a worker thread: it reads up
/// to [`PREREAD_BYTES`] at once; a body that ends within that becomes an
/// in-memory body, anything longer is pulled a chunk at a time ([`PulledBody`]).
pub(crate) fn body_from_plugin(
    raw: PhBody,
    rt: &Handle,
    keep: KeepAlive,
) -> Result<Body, InvalidMessage> {
    if raw.vtbl.is_null() {
        return Ok(bodies::empty());
    }
    if same_ptr(raw.vtbl, &HOST_BODY_VTBL) {
        // One of ours, handed back unchanged (a filter passing the request body on).
        // SAFETY: the vtable identifies a `HostBody` boxed by `body_to_plugin`;
        // the plugin hands it back to us, so we now own it.
        let state = unsafe { Box::from_raw(raw.this.cast::<HostBody>()) };
        return Ok(state.body);
    }
    let mut body = PluginBody::adopt(raw, keep)?;
    // The hint is exact (ABI), so a body that has given all it announced has ended
    // without another call to find that out.
    let hint = body.size_hint();
    let mut first = BytesMut::new();
    loop {
        match body.next_raw() {
            Ok(None) => return Ok(bodies::full(first.freeze())),
            Ok(Some(chunk))
                if first.is_empty() && chunk.len > 0 && hint == Some(chunk.len as u64) =>
            {
                // All of it in one chunk (an in-memory body): pass it on as it is.
                return Ok(bodies::full(Bytes::from_owner(WholeChunk {
                    chunk,
                    _body: body,
                })));
            }
            Ok(Some(chunk)) => {
                if first.capacity() == 0 {
                    // Sized once from the hint, so a small body is one allocation.
                    first.reserve(hint.map_or(0, |n| n.min(PREREAD_BYTES as u64) as usize));
                }
                // SAFETY: the chunk is valid until the next call on the body.
                first.extend_from_slice(unsafe { chunk.as_bytes() });
                if hint == Some(first.len() as u64) {
                    return Ok(bodies::full(first.freeze()));
                }
                if first.len() >= PREREAD_BYTES {
                    break;
                }
            }
            Err(code) => return Err(InvalidMessage::BodyFailed(code)),
        }
    }
    // `size_hint` is what remains, so ask after the pre-read (asking before and
    // adding the pre-read bytes counted them twice: a doubled Content-Length).
    let exact = body.size_hint().map(|rest| rest + first.len() as u64);
    // Read the next chunk while the head (and the pre-read) go out.
    let pulled = ReadAhead::new([first.freeze()], Some(Pulled(body)), exact, rt.clone());
    Ok(Body::new(pulled.started()))
}

/// A plugin body past its pre-read, read a chunk at a time on blocking threads
/// (one read ahead, `core::read_ahead`), so a client that stops reading holds
/// at most two chunks of memory and no thread. The body is released wherever
/// the last read leaves it.
struct Pulled(PluginBody);

impl BlockingChunks for Pulled {
    fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        loop {
            match self.0.next() {
                Ok(Some([])) => continue,
                Ok(Some(chunk)) => return Ok(Some(Bytes::copy_from_slice(chunk))),
                Ok(None) => return Ok(None),
                Err(code) => {
                    tracing::error!(
                        "plugin response body failed midway (code {code}); aborting the response"
                    );
                    return Err(body_error(code));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Responses.

/// Storage behind a response the host hands to a filter, freed by `release`.
struct HostResponse {
    reason: String,
    pairs: Vec<PhPair>,
    _headers: http::HeaderMap,
}

host_callback! {
    /// `PhResponse::release` of a response the host handed a filter. A NULL
    /// `owner` is ignored; a panic while freeing is logged.
    fn host_response_release(owner: *mut c_void);
    non_null(owner);
    {
        // SAFETY: `owner` came from `Box::into_raw` in `response_to_plugin`; released once.
        drop(unsafe { Box::from_raw(owner.cast::<HostResponse>()) });
    }
}

/// Hand a host response to a filter (the result of its `next`).
pub(crate) fn response_to_plugin(resp: Response, out: &mut PhResponse) {
    let (parts, body) = resp.into_parts();
    let reason = parts
        .extensions
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
        .unwrap_or_default();
    let headers = parts.headers;
    let pairs = headers
        .iter()
        .map(|(n, v)| PhPair {
            name: PhStr::from_str(n.as_str()),
            value: PhStr::from_bytes(v.as_bytes()),
        })
        .collect();
    let owner = Box::new(HostResponse {
        reason,
        pairs,
        _headers: headers,
    });
    out.status = parts.status.as_u16();
    out.reason = PhStr::from_str(&owner.reason);
    out.headers = owner.pairs.as_ptr();
    out.header_count = owner.pairs.len();
    out.body = body_to_plugin(body);
    out.owner = Box::into_raw(owner).cast();
    out.release = Some(host_response_release);
}

/// Take a response a plugin filled in: validate it, copy its head, take its body
/// and release the rest.
///
/// # Safety
/// `raw` must have been filled by a successful plugin call.
pub(crate) unsafe fn response_from_plugin(
    raw: PhResponse,
    rt: &Handle,
    keep: KeepAlive,
) -> Result<Response, InvalidMessage> {
    // Own the body first, so it is released on every path below.
    let body_raw = raw.body;
    let head = (|| {
        let status = StatusCode::from_u16(raw.status)
            .ok()
            // http accepts 100-999; HTTP has 100-599, and 1xx is not a final answer.
            .filter(|s| !s.is_informational() && s.as_u16() <= 599)
            .ok_or(InvalidMessage::Status(raw.status))?;
        // Built in place: `http::response::Builder` moves the whole head at every step.
        let mut head = http::Response::new(());
        *head.status_mut() = status;
        // SAFETY: the reason and headers are valid until `release`, called below.
        let reason = unsafe { raw.reason.as_bytes() };
        if !reason.is_empty() && Some(reason) != status.canonical_reason().map(str::as_bytes) {
            let phrase = hyper::ext::ReasonPhrase::try_from(reason.to_vec()).map_err(|_| {
                InvalidMessage::Reason(String::from_utf8_lossy(reason).into_owned())
            })?;
            head.extensions_mut().insert(phrase);
        }
        let headers = head.headers_mut();
        // SAFETY: as above.
        for p in unsafe { pairs(raw.headers, raw.header_count) } {
            // SAFETY: as above.
            let (name_bytes, value_bytes) = unsafe { (p.name.as_bytes(), p.value.as_bytes()) };
            // SAFETY: as above.
            let (name, value) =
                header_cache::parsed(name_bytes, value_bytes, || unsafe { header(p) })?;
            if HOP_BY_HOP.contains(&name.as_str()) {
                tracing::debug!(header = %name, "dropping a hop-by-hop header set by a plugin");
                continue;
            }
            headers.append(name, value);
        }
        Ok::<_, InvalidMessage>(head)
    })();
    if let Some(release) = raw.release {
        // SAFETY: we are the receiver; the storage is released exactly once.
        unsafe { release(raw.owner) };
    }
    match head {
        Ok(head) => {
            let body = body_from_plugin(body_raw, rt, keep)?;
            Ok(head.map(|()| body))
        }
        Err(e) => {
            discard_body(body_raw, keep);
            Err(e)
        }
    }
}

/// Release a body without reading it.
pub(crate) fn discard_body(raw: PhBody, keep: KeepAlive) {
    if raw.vtbl.is_null() {
        return;
    }
    if same_ptr(raw.vtbl, &HOST_BODY_VTBL) {
        // SAFETY: one of ours handed back, as in `body_from_plugin`; freed once, here.
        drop(unsafe { Box::from_raw(raw.this.cast::<HostBody>()) });
        return;
    }
    if let Err(e) = PluginBody::adopt(raw, keep) {
        tracing::error!("a plugin handed the host an invalid body: {e}");
    }
}
