//! The SDK's side of the C ABI: trampolines the export macro points the
//! descriptor at, and conversions between the raw views and the safe types.
//! This is the only module of the SDK with `unsafe` code.
//!
//! Every `extern "C"` function here runs the plugin's code inside
//! `catch_unwind`, so a panic becomes [`PH_ERR_PANIC`] and never unwinds into the host.

use std::any::Any;
use std::ffi::c_void;
use std::io::{self, Read};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::abi::*;
use crate::body::{Inner, ReqInner};
use crate::{App, Body, Config, Error, Filter, Next, Request, RequestBody, Response};

/// Size of the chunks read from a `Read` body.
const READ_CHUNK: usize = 64 * 1024;

pub(crate) fn host_log(host: &PhHost, level: i32, target: PhStr, message: PhStr) {
    // SAFETY: `log` is a function of the host's table, which the host keeps alive for
    // the whole process; the strings are borrowed only for the duration of the call.
    unsafe { (host.log)(level, target, message) }
}

/// Copy a borrowed string lossily into an owned one.
///
/// # Safety
/// `s` must be valid for the duration of the call.
unsafe fn owned(s: PhStr) -> String {
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { s.as_bytes() };
    ascii(bytes).unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned())
}

/// A copy of `bytes` if they are ASCII, as request heads nearly always are: that
/// check is several times cheaper than UTF-8 validation on short strings.
fn ascii(bytes: &[u8]) -> Option<String> {
    if !bytes.is_ascii() {
        return None;
    }
    // SAFETY: ASCII is valid UTF-8.
    Some(unsafe { String::from_utf8_unchecked(bytes.to_vec()) })
}

/// # Safety
/// `pairs` must point at `count` valid pairs (or be null with `count == 0`).
unsafe fn owned_pairs(pairs: *const PhPair, count: usize) -> Vec<(String, String)> {
    if pairs.is_null() || count == 0 {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller.
    let pairs = unsafe { std::slice::from_raw_parts(pairs, count) };
    pairs
        .iter()
        // SAFETY: each pair's strings are valid for the call, as the slice is.
        .map(|p| unsafe { (owned(p.name), owned(p.value)) })
        .collect()
}

fn borrow_pairs(pairs: &[(String, String)]) -> Vec<PhPair> {
    pairs
        .iter()
        .map(|(n, v)| PhPair {
            name: PhStr::from_str(n),
            value: PhStr::from_str(v),
        })
        .collect()
}

/// Send an error message to the host's sink, if it gave one.
fn report(err: *const PhErrorSink, message: &str) {
    if err.is_null() {
        return;
    }
    // SAFETY: a non-null sink is valid for the duration of the call that received it,
    // and `set` copies the message before returning.
    unsafe { ((*err).set)((*err).this, PhStr::from_str(message)) }
}

/// The text of a panic payload. The payload is dropped inside its own
/// `catch_unwind` (its destructor may itself panic) and leaked if it does.
fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    };
    if let Err(second) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(second);
    }
    message
}

/// Run plugin code, turning `Err` and panics into return codes and messages.
fn guard(err: *const PhErrorSink, f: impl FnOnce() -> Result<(), Error>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => PH_OK,
        Ok(Err(e)) => {
            report(err, e.message());
            PH_ERR
        }
        Err(payload) => {
            report(err, &format!("panicked: {}", panic_message(payload)));
            PH_ERR_PANIC
        }
    }
}

// ---------------------------------------------------------------------------
// Bodies that come from the host.

/// A body owned by the other side of the boundary (a request body, or the
/// response body of `next`). Released exactly once, in `Drop`.
pub struct ForeignBody {
    raw: PhBody,
    /// The chunk last returned by `next`, valid until the next call.
    chunk: PhStr,
    pos: usize,
    done: bool,
}

// SAFETY: the ABI lets a body be used from any thread as long as it is not used by
// two threads at once, which `&mut self` access guarantees.
unsafe impl Send for ForeignBody {}

impl ForeignBody {
    /// Take ownership of a raw body; `None` for the empty body.
    fn new(raw: PhBody) -> Option<ForeignBody> {
        if raw.vtbl.is_null() {
            return None;
        }
        Some(ForeignBody {
            raw,
            chunk: PhStr::EMPTY,
            pos: 0,
            done: false,
        })
    }

    pub(crate) fn size_hint(&self) -> Option<u64> {
        // SAFETY: `raw` is a live body we own; the vtable is valid while it is.
        let hint = unsafe { ((*self.raw.vtbl).size_hint)(self.raw.this) };
        let buffered = (self.chunk.len - self.pos) as u64;
        u64::try_from(hint).ok().map(|h| h + buffered)
    }

    /// Hand the raw body on, if nothing of it is buffered here.
    fn into_raw(self) -> Result<PhBody, ForeignBody> {
        if self.pos < self.chunk.len {
            return Err(self);
        }
        let raw = PhBody {
            vtbl: self.raw.vtbl,
            this: self.raw.this,
        };
        std::mem::forget(self);
        Ok(raw)
    }
}

impl Read for ForeignBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.chunk.len {
            if self.done {
                return Ok(0);
            }
            let mut chunk = PhStr::EMPTY;
            // SAFETY: `raw` is a live body we own; `chunk` is a valid out-pointer.
            let rc = unsafe { ((*self.raw.vtbl).next)(self.raw.this, &mut chunk) };
            match rc {
                PH_OK => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                PH_EOF => {
                    self.done = true;
                    self.chunk = PhStr::EMPTY;
                    self.pos = 0;
                }
                code => {
                    return Err(io::Error::other(format!(
                        "body stream failed (code {code})"
                    )))
                }
            }
        }
        // SAFETY: the chunk stays valid until our next call to `next` or `release`.
        let chunk = unsafe { self.chunk.as_bytes() };
        let n = buf.len().min(chunk.len() - self.pos);
        buf[..n].copy_from_slice(&chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for ForeignBody {
    fn drop(&mut self) {
        // SAFETY: we own the body and release it exactly once, here.
        unsafe { ((*self.raw.vtbl).release)(self.raw.this) }
    }
}

// ---------------------------------------------------------------------------
// Bodies the plugin produces.

struct BodySource {
    source: Source,
    /// Storage for the chunk last handed out.
    buf: Vec<u8>,
}

enum Source {
    Done,
    Bytes(Vec<u8>),
    Shared(Arc<[u8]>),
    /// Shared bytes handed out as the last chunk: kept until the next call.
    SharedSent(Arc<[u8]>),
    Reader(Box<dyn Read + Send>),
    Iter(Box<dyn Iterator<Item = io::Result<Vec<u8>>> + Send>),
}

static BODY_VTBL: PhBodyVtbl = PhBodyVtbl {
    struct_size: std::mem::size_of::<PhBodyVtbl>() as u32,
    next: body_next,
    size_hint: body_size_hint,
    release: body_release,
};

/// Turn a body into a raw handle the host will pull from and release.
fn body_into_raw(body: Body) -> PhBody {
    let source = match body.0 {
        Inner::Empty => return PhBody::EMPTY,
        Inner::Foreign(f) => match f.into_raw() {
            Ok(raw) => return raw,
            Err(partly_read) => Source::Reader(Box::new(partly_read)),
        },
        Inner::Bytes(b) => Source::Bytes(b),
        Inner::Shared(b) => Source::Shared(b),
        Inner::Reader(r) => Source::Reader(r),
        Inner::Iter(it) => Source::Iter(it),
    };
    let state = Box::new(BodySource {
        source,
        buf: Vec::new(),
    });
    PhBody {
        vtbl: &BODY_VTBL,
        this: Box::into_raw(state).cast(),
    }
}

unsafe extern "C" fn body_next(this: *mut c_void, chunk: *mut PhStr) -> i32 {
    // SAFETY: `this` is the `BodySource` we boxed in `body_into_raw`, not yet
    // released, and the ABI forbids concurrent calls on one body.
    let state = unsafe { &mut *this.cast::<BodySource>() };
    let result = catch_unwind(AssertUnwindSafe(|| state.advance()));
    let rc = match result {
        Ok(Ok(true)) => PH_OK,
        Ok(Ok(false)) => PH_EOF,
        Ok(Err(e)) => {
            crate::log(
                crate::Level::Error,
                "plughost_sdk",
                &format!("response body failed: {e}"),
            );
            PH_ERR
        }
        Err(payload) => {
            let msg = panic_message(payload);
            crate::log(
                crate::Level::Error,
                "plughost_sdk",
                &format!("response body panicked: {msg}"),
            );
            PH_ERR_PANIC
        }
    };
    if rc == PH_OK {
        // SAFETY: `chunk` is a valid out-pointer; the chunk's storage (`buf`, or the
        // shared bytes the source holds) lives until the next call.
        unsafe { *chunk = PhStr::from_bytes(state.chunk()) };
    }
    rc
}

impl BodySource {
    /// The chunk last handed out.
    fn chunk(&self) -> &[u8] {
        match &self.source {
            Source::SharedSent(b) => b,
            _ => &self.buf,
        }
    }

    /// Put the next non-empty chunk in `buf` (or, for shared bytes, hold them as
    /// [`Source::SharedSent`]); `false` at the end.
    fn advance(&mut self) -> io::Result<bool> {
        loop {
            match &mut self.source {
                Source::Done => return Ok(false),
                Source::SharedSent(_) => {
                    self.source = Source::Done;
                    return Ok(false);
                }
                Source::Shared(b) if b.is_empty() => {
                    self.source = Source::Done;
                    return Ok(false);
                }
                Source::Shared(_) => {
                    let Source::Shared(b) = std::mem::replace(&mut self.source, Source::Done)
                    else {
                        unreachable!()
                    };
                    self.source = Source::SharedSent(b);
                    return Ok(true);
                }
                Source::Bytes(_) => {
                    let Source::Bytes(b) = std::mem::replace(&mut self.source, Source::Done) else {
                        unreachable!()
                    };
                    self.buf = b;
                    return Ok(!self.buf.is_empty());
                }
                Source::Reader(r) => {
                    self.buf.resize(READ_CHUNK, 0);
                    let n = r.read(&mut self.buf)?;
                    self.buf.truncate(n);
                    if n == 0 {
                        self.source = Source::Done;
                        return Ok(false);
                    }
                    return Ok(true);
                }
                Source::Iter(it) => match it.next() {
                    None => {
                        self.source = Source::Done;
                        return Ok(false);
                    }
                    Some(chunk) => {
                        self.buf = chunk?;
                        if !self.buf.is_empty() {
                            return Ok(true);
                        }
                    }
                },
            }
        }
    }
}

unsafe extern "C" fn body_size_hint(this: *mut c_void) -> i64 {
    // SAFETY: as in `body_next`.
    let state = unsafe { &*this.cast::<BodySource>() };
    match &state.source {
        Source::Done | Source::SharedSent(_) => 0,
        Source::Bytes(b) => b.len() as i64,
        Source::Shared(b) => b.len() as i64,
        Source::Reader(_) | Source::Iter(_) => -1,
    }
}

unsafe extern "C" fn body_release(this: *mut c_void) {
    // SAFETY: `this` came from `Box::into_raw` in `body_into_raw`; the host calls
    // release exactly once.
    let state = unsafe { Box::from_raw(this.cast::<BodySource>()) };
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(state))) {
        let msg = panic_message(payload);
        crate::log(
            crate::Level::Error,
            "plughost_sdk",
            &format!("dropping a body panicked: {msg}"),
        );
    }
}

// ---------------------------------------------------------------------------
// Requests and responses.

/// Copy the raw request view into an owned request that owns `body`.
///
/// # Safety
/// `req` must be a valid request view for the duration of the call.
unsafe fn request_from_raw(req: &PhRequest, body: PhBody) -> Request {
    // Take the body first, so it is released even if anything below panics.
    let body = RequestBody(match ForeignBody::new(body) {
        Some(f) => ReqInner::Foreign(f),
        None => ReqInner::Empty,
    });
    // SAFETY: every string and array of the view is valid for the call.
    unsafe {
        let (script_name, raw_script_name) = decoded(req.script_name);
        let (path_info, raw_path_info) = decoded(req.path_info);
        Request {
            method: owned(req.method),
            scheme: owned(req.scheme),
            script_name,
            path_info,
            raw_path: owned(req.raw_path),
            query_string: owned(req.query_string),
            protocol: owned(req.protocol),
            server_name: owned(req.server_name),
            server_port: req.server_port,
            remote_addr: owned(req.remote_addr),
            remote_port: req.remote_port,
            headers: owned_pairs(req.headers, req.header_count),
            extras: owned_pairs(req.extras, req.extra_count),
            content_length: u64::try_from(req.content_length).ok(),
            body,
            raw_script_name,
            raw_path_info,
        }
    }
}

/// A decoded path as a string, plus its exact bytes when they are not UTF-8.
///
/// # Safety
/// `s` must be valid for the duration of the call.
unsafe fn decoded(s: PhStr) -> (String, Option<Vec<u8>>) {
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { s.as_bytes() };
    if let Some(text) = ascii(bytes) {
        return (text, None);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), None),
        Err(_) => (
            String::from_utf8_lossy(bytes).into_owned(),
            Some(bytes.to_vec()),
        ),
    }
}

/// The bytes to send for a string that may have come in as invalid UTF-8:
/// the original bytes if the string was not changed.
fn exact<'a>(shown: &'a str, raw: &'a Option<Vec<u8>>) -> &'a [u8] {
    match raw {
        Some(raw) if String::from_utf8_lossy(raw) == shown => raw,
        _ => shown.as_bytes(),
    }
}

/// Storage behind a response's status line and headers, freed by `release`.
struct ResponseOwner {
    _reason: String,
    _headers: Vec<(String, String)>,
    pairs: Vec<PhPair>,
}

unsafe extern "C" fn response_release(owner: *mut c_void) {
    // SAFETY: `owner` came from `Box::into_raw` in `response_into_raw`; the receiver
    // calls release exactly once. Dropping strings cannot panic.
    drop(unsafe { Box::from_raw(owner.cast::<ResponseOwner>()) });
}

fn response_into_raw(resp: Response, out: &mut PhResponse) {
    let reason = resp.reason.unwrap_or_default();
    let pairs = borrow_pairs(&resp.headers);
    let owner = Box::new(ResponseOwner {
        pairs,
        _reason: reason,
        _headers: resp.headers,
    });
    out.status = resp.status;
    out.reason = PhStr::from_str(&owner._reason);
    out.headers = owner.pairs.as_ptr();
    out.header_count = owner.pairs.len();
    out.body = body_into_raw(resp.body);
    out.owner = Box::into_raw(owner).cast();
    out.release = Some(response_release);
}

/// Copy a filled raw response into an owned one, taking its body and releasing the rest.
///
/// # Safety
/// `raw` must have been filled by a successful call.
unsafe fn response_from_raw(raw: PhResponse) -> Response {
    let body = ForeignBody::new(raw.body);
    // SAFETY: the reason and headers are valid until `release(owner)`, called below.
    let (reason, headers) = unsafe {
        (
            owned(raw.reason),
            owned_pairs(raw.headers, raw.header_count),
        )
    };
    if let Some(release) = raw.release {
        // SAFETY: we are the receiver and release the storage exactly once.
        unsafe { release(raw.owner) };
    }
    Response {
        status: raw.status,
        reason: (!reason.is_empty()).then_some(reason),
        headers,
        body: match body {
            Some(f) => Body(Inner::Foreign(f)),
            None => Body::empty(),
        },
    }
}

pub(crate) fn call_next(next: &PhNext, req: Request) -> Result<Response, Error> {
    let headers = borrow_pairs(&req.headers);
    let extras = borrow_pairs(&req.extras);
    let view = PhRequest {
        struct_size: std::mem::size_of::<PhRequest>() as u32,
        method: PhStr::from_str(&req.method),
        scheme: PhStr::from_str(&req.scheme),
        script_name: PhStr::from_bytes(exact(&req.script_name, &req.raw_script_name)),
        path_info: PhStr::from_bytes(exact(&req.path_info, &req.raw_path_info)),
        raw_path: PhStr::from_str(&req.raw_path),
        query_string: PhStr::from_str(&req.query_string),
        protocol: PhStr::from_str(&req.protocol),
        server_name: PhStr::from_str(&req.server_name),
        remote_addr: PhStr::from_str(&req.remote_addr),
        server_port: req.server_port,
        remote_port: req.remote_port,
        headers: headers.as_ptr(),
        header_count: headers.len(),
        extras: extras.as_ptr(),
        extra_count: extras.len(),
        content_length: req.content_length.map_or(-1, |n| n as i64),
    };
    let body = match req.body.0 {
        ReqInner::Empty => PhBody::EMPTY,
        ReqInner::Foreign(f) => body_into_raw(Body(Inner::Foreign(f))),
        ReqInner::Local(r) => body_into_raw(Body(Inner::Reader(r))),
    };
    let mut out = PhResponse::empty();
    // SAFETY: `next` is the host's handle, valid for the current call; the view and
    // its strings outlive the call; the body is handed over.
    let rc = unsafe { (next.call)(next.this, &view, body, &mut out) };
    if rc != PH_OK {
        return Err(Error::new(format!(
            "the rest of the pipeline failed (code {rc})"
        )));
    }
    // SAFETY: the call succeeded, so `out` is filled.
    Ok(unsafe { response_from_raw(out) })
}

// ---------------------------------------------------------------------------
// Factories and instances.

/// Builds the configuration a factory sees.
///
/// # Safety
/// The arrays must be valid for the duration of the call.
unsafe fn config_from_raw(
    entry: PhStr,
    global: *const PhPair,
    global_count: usize,
    local: *const PhPair,
    local_count: usize,
) -> Config {
    // SAFETY: guaranteed by the caller.
    unsafe {
        Config::new(
            owned(entry),
            owned_pairs(global, global_count),
            owned_pairs(local, local_count),
        )
    }
}

/// The shared part of both factories.
///
/// # Safety
/// Arguments as the ABI's `create` describes them.
#[allow(clippy::too_many_arguments)]
unsafe fn create_with<T: Send + Sync + 'static>(
    host: *const PhHost,
    entry: PhStr,
    global: *const PhPair,
    global_count: usize,
    local: *const PhPair,
    local_count: usize,
    this_out: *mut *mut c_void,
    err: *const PhErrorSink,
    new: fn(&Config) -> Result<T, Error>,
) -> i32 {
    guard(err, || {
        if !host.is_null() {
            // SAFETY: the host's table lives for the whole process.
            crate::log::set_host(unsafe { &*host });
        }
        // SAFETY: arrays valid for this call, per the ABI.
        let config = unsafe { config_from_raw(entry, global, global_count, local, local_count) };
        let instance = new(&config)?;
        // SAFETY: `this_out` is a valid out-pointer.
        unsafe { *this_out = Box::into_raw(Box::new(instance)).cast() };
        Ok(())
    })
}

unsafe extern "C" fn destroy<T>(this: *mut c_void) {
    // SAFETY: `this` came from `Box::into_raw` in `create_with::<T>`; the host
    // destroys each instance once, after its last call.
    let instance = unsafe { Box::from_raw(this.cast::<T>()) };
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(instance))) {
        let msg = panic_message(payload);
        crate::log(
            crate::Level::Error,
            "plughost_sdk",
            &format!("destroying an instance panicked: {msg}"),
        );
    }
}

/// The glue between an [`App`] type and the ABI.
pub struct AppGlue<T>(PhantomData<T>);

impl<T: App> AppGlue<T> {
    pub const VTBL: PhHandlerVtbl = PhHandlerVtbl {
        struct_size: std::mem::size_of::<PhHandlerVtbl>() as u32,
        call: Self::call,
        destroy: destroy::<T>,
        flags: if T::NONBLOCKING {
            PH_HANDLER_NONBLOCKING
        } else {
            0
        },
    };

    #[allow(clippy::too_many_arguments)]
    unsafe extern "C" fn create(
        host: *const PhHost,
        entry: PhStr,
        global: *const PhPair,
        global_count: usize,
        local: *const PhPair,
        local_count: usize,
        this_out: *mut *mut c_void,
        err: *const PhErrorSink,
    ) -> i32 {
        // SAFETY: arguments as the ABI describes; forwarded unchanged.
        unsafe {
            create_with::<T>(
                host,
                entry,
                global,
                global_count,
                local,
                local_count,
                this_out,
                err,
                T::new,
            )
        }
    }

    unsafe extern "C" fn call(
        this: *mut c_void,
        req: *const PhRequest,
        body: PhBody,
        _next: *const PhNext,
        out: *mut PhResponse,
        err: *const PhErrorSink,
    ) -> i32 {
        guard(err, || {
            // SAFETY: `this` is a live instance of `T` (the host destroys it only after
            // its last call); `req` and `out` are valid for the call.
            let (app, request, out) =
                unsafe { (&*this.cast::<T>(), request_from_raw(&*req, body), &mut *out) };
            response_into_raw(app.call(request)?, out);
            Ok(())
        })
    }
}

/// The glue between a [`Filter`] type and the ABI.
pub struct FilterGlue<T>(PhantomData<T>);

impl<T: Filter> FilterGlue<T> {
    pub const VTBL: PhHandlerVtbl = PhHandlerVtbl {
        struct_size: std::mem::size_of::<PhHandlerVtbl>() as u32,
        call: Self::call,
        destroy: destroy::<T>,
        flags: 0,
    };

    #[allow(clippy::too_many_arguments)]
    unsafe extern "C" fn create(
        host: *const PhHost,
        entry: PhStr,
        global: *const PhPair,
        global_count: usize,
        local: *const PhPair,
        local_count: usize,
        this_out: *mut *mut c_void,
        err: *const PhErrorSink,
    ) -> i32 {
        // SAFETY: arguments as the ABI describes; forwarded unchanged.
        unsafe {
            create_with::<T>(
                host,
                entry,
                global,
                global_count,
                local,
                local_count,
                this_out,
                err,
                T::new,
            )
        }
    }

    unsafe extern "C" fn call(
        this: *mut c_void,
        req: *const PhRequest,
        body: PhBody,
        next: *const PhNext,
        out: *mut PhResponse,
        err: *const PhErrorSink,
    ) -> i32 {
        guard(err, || {
            // SAFETY: as for apps; a filter's `next` is a valid handle for this call.
            let (filter, request, out) =
                unsafe { (&*this.cast::<T>(), request_from_raw(&*req, body), &mut *out) };
            if next.is_null() {
                return Err(Error::new("filter called without a next handler"));
            }
            // SAFETY: checked non-null above; valid for the duration of this call.
            let next = Next::from_host(unsafe { &*next });
            response_into_raw(filter.call(request, next)?, out);
            Ok(())
        })
    }
}

/// A descriptor entry for an app type (used by [`crate::export_plugin!`]).
pub const fn app_entry<T: App>(
    name: *const std::ffi::c_char,
    vtbl: &'static PhHandlerVtbl,
) -> PhEntry {
    PhEntry {
        kind: PH_KIND_APP,
        name,
        create: AppGlue::<T>::create,
        vtbl,
    }
}

/// A descriptor entry for a filter type (used by [`crate::export_plugin!`]).
pub const fn filter_entry<T: Filter>(
    name: *const std::ffi::c_char,
    vtbl: &'static PhHandlerVtbl,
) -> PhEntry {
    PhEntry {
        kind: PH_KIND_FILTER,
        name,
        create: FilterGlue::<T>::create,
        vtbl,
    }
}

/// The library descriptor (used by [`crate::export_plugin!`]).
pub const fn descriptor(
    name: *const std::ffi::c_char,
    version: *const std::ffi::c_char,
    entries: &'static [PhEntry],
) -> PhPluginDesc {
    PhPluginDesc {
        magic: PH_MAGIC,
        abi_major: PH_ABI_MAJOR,
        abi_minor: PH_ABI_MINOR,
        struct_size: std::mem::size_of::<PhPluginDesc>() as u32,
        flags: if cfg!(panic = "unwind") {
            PH_FLAG_PANIC_UNWIND
        } else {
            0
        },
        plugin_name: name,
        plugin_version: version,
        build_info: concat!("plughost-sdk ", env!("CARGO_PKG_VERSION"), "\0")
            .as_ptr()
            .cast(),
        entries: entries.as_ptr(),
        entry_count: entries.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pull a raw body the way the host does: every chunk, then release.
    fn pull(raw: PhBody) -> (Vec<Vec<u8>>, i64) {
        let mut chunks = Vec::new();
        // SAFETY: `raw` is a live body from `body_into_raw`, used on one thread and
        // released once at the end.
        unsafe {
            let hint = ((*raw.vtbl).size_hint)(raw.this);
            loop {
                let mut chunk = PhStr::EMPTY;
                match ((*raw.vtbl).next)(raw.this, &mut chunk) {
                    PH_OK => chunks.push(chunk.as_bytes().to_vec()),
                    PH_EOF => break,
                    rc => panic!("body failed: {rc}"),
                }
            }
            ((*raw.vtbl).release)(raw.this);
            (chunks, hint)
        }
    }

    #[test]
    fn shared_bodies_are_one_chunk_with_an_exact_hint_and_are_not_consumed() {
        let page: Arc<str> = "shared page".into();
        for _ in 0..2 {
            let (chunks, hint) = pull(body_into_raw(Body::from(page.clone())));
            assert_eq!((chunks, hint), (vec![b"shared page".to_vec()], 11));
        }
        let (chunks, hint) = pull(body_into_raw(Body::from(Arc::<[u8]>::from(&b""[..]))));
        assert_eq!((chunks.len(), hint), (0, 0));
    }

    fn decode(bytes: &[u8]) -> (String, Option<Vec<u8>>) {
        // SAFETY: the view points into `bytes`, alive for the call.
        unsafe { decoded(PhStr::from_bytes(bytes)) }
    }

    fn copy(bytes: &[u8]) -> String {
        // SAFETY: as in `decode`.
        unsafe { owned(PhStr::from_bytes(bytes)) }
    }

    #[test]
    fn request_strings_keep_exact_bytes_only_when_not_utf8() {
        assert_eq!(decode(b"/a b"), ("/a b".into(), None));
        assert_eq!(decode("/caf\u{e9}".as_bytes()), ("/caf\u{e9}".into(), None));
        let (text, raw) = decode(b"/\xff");
        assert_eq!(text, "/\u{fffd}");
        assert_eq!(
            exact(&text, &raw),
            b"/\xff",
            "unchanged: the original bytes go on"
        );
        assert_eq!(
            exact("/new", &raw),
            b"/new",
            "changed: the new text goes on"
        );
        assert_eq!(copy(b"GET"), "GET");
        assert_eq!(copy(b"\xc3("), "\u{fffd}(");
    }
}
