//! The SDK's side of the C ABI: trampolines the export macro points the
//! descriptor at, and conversions between the raw views and the safe types.
//! With [`crate::abi`], this is the only module of the SDK with `unsafe` code
//! (the crate root denies `unsafe_code` everywhere else).
//!
//! # FFI discipline
//! Every `extern "C"` function the SDK hands the host is defined through one
//! macro, `ffi_export!`, and nothing else. It generates the function and runs its
//! body through `boundary`, which:
//! - checks the pointer arguments the function names as `non_null` and, if one is
//!   null, reports it and returns the function's `on_null` value without running
//!   the body;
//! - runs the body inside `catch_unwind`, so a panic becomes the function's
//!   `on_panic` value (e.g. [`PH_ERR_PANIC`]) and never unwinds into the host;
//! - reports both to the call's error sink when it has one, else to the host log.
//!
//! The only `extern "C"` function outside it is `plughost_plugin_v1`, generated
//! by [`crate::export_plugin!`] in the plugin's crate: it takes no arguments and
//! returns the address of a static, so there is nothing to check or catch.

use std::any::Any;
use std::borrow::Cow;
use std::cell::Cell;
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

/// View a borrowed string for `'a` without copying it: as it is when it is UTF-8
/// (request heads nearly always are), as a lossy owned copy when not.
///
/// # Safety
/// `s` must be valid and unchanged for `'a`.
#[inline]
unsafe fn text<'a>(s: PhStr) -> Cow<'a, str> {
    // SAFETY: guaranteed by the caller.
    let bytes: &'a [u8] = unsafe { s.as_bytes() };
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8 (and the check is several times cheaper than
        // UTF-8 validation on short strings).
        return Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    non_ascii_text(bytes)
}

/// [`text`] for bytes that are not ASCII: out of line, as request heads rarely
/// need it, so the common case inlines into the request view.
#[cold]
#[inline(never)]
fn non_ascii_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(t) => Cow::Borrowed(t),
        Err(_) => Cow::Owned(String::from_utf8_lossy(bytes).into_owned()),
    }
}

/// View borrowed pairs for `'a` (see [`text`]).
///
/// # Safety
/// `pairs` must point at `count` pairs valid and unchanged for `'a` (or be null).
unsafe fn text_pairs<'a>(pairs: *const PhPair, count: usize) -> Vec<(Cow<'a, str>, Cow<'a, str>)> {
    if pairs.is_null() || count == 0 {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller.
    let pairs: &'a [PhPair] = unsafe { std::slice::from_raw_parts(pairs, count) };
    pairs
        .iter()
        // SAFETY: each pair's strings are valid for `'a`, as the slice is.
        .map(|p| unsafe { (text(p.name), text(p.value)) })
        .collect()
}

fn borrow_pairs<S: AsRef<str>>(pairs: &[(S, S)]) -> Vec<PhPair> {
    pairs
        .iter()
        .map(|(n, v)| PhPair {
            name: PhStr::from_str(n.as_ref()),
            value: PhStr::from_str(v.as_ref()),
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

/// Report a failure of an exported function: `message` to the call's error sink
/// when it has one, else `for_log` (which names the function) to the host log.
fn fail(sink: *const PhErrorSink, message: &str, for_log: impl FnOnce() -> String) {
    if sink.is_null() {
        crate::log(crate::Level::Error, "plughost_sdk", &for_log());
    } else {
        report(sink, message);
    }
}

/// The run-time half of `ffi_export!` (see the module docs): null checks, then
/// `run` inside `catch_unwind`. `args` pairs each pointer argument's name with
/// whether it is null; `sink` may be null. `run(true)` is called after a null
/// argument has been reported (it must not touch the arguments' pointees),
/// `run(false)` when all are set: one closure, so both paths can consume the
/// function's by-value arguments.
pub(crate) fn boundary<R>(
    what: &'static str,
    sink: *const PhErrorSink,
    args: &[(&'static str, bool)],
    on_panic: R,
    run: impl FnOnce(bool) -> R,
) -> R {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let null = args.iter().find(|(_, is_null)| *is_null);
        if let Some((name, _)) = null {
            let message = format!("{what}: null `{name}` argument");
            fail(sink, &message, || message.clone());
        }
        run(null.is_some())
    }));
    match result {
        Ok(value) => value,
        Err(payload) => {
            let message = panic_message(payload);
            fail(sink, &format!("panicked: {message}"), || {
                format!("{what} panicked: {message}")
            });
            on_panic
        }
    }
}

/// Defines an `unsafe extern "C"` function the host calls, with its body run by
/// `boundary`. The only way this module defines such functions:
///
/// ```text
/// ffi_export! {
///     /// docs and attributes
///     fn name[generics](arg: Type, ...) -> Ret {
///         what: "a description for messages",
///         non_null: [ptr_arg, ...],     // checked before the body runs
///         sink: err,                    // a *const PhErrorSink, or null()
///         on_null: expr,                // returned (after reporting) on a null
///         on_panic: expr,               // returned (after reporting) on a panic
///     } { body }
/// }
/// ```
/// `on_null` runs instead of the body and may consume by-value arguments (a
/// handler releases its request body there, as the ABI requires).
macro_rules! ffi_export {
    (
        $(#[$attr:meta])*
        fn $name:ident $([$($gen:tt)*])? ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)? {
            what: $what:expr,
            non_null: [$($nn:ident),* $(,)?],
            sink: $sink:expr,
            on_null: $on_null:expr,
            on_panic: $on_panic:expr $(,)?
        } $body:block
    ) => {
        $(#[$attr])*
        unsafe extern "C" fn $name $(<$($gen)*>)? ( $($arg: $ty),* ) $(-> $ret)? {
            let args: &[(&'static str, bool)] = &[$((stringify!($nn), $nn.is_null())),*];
            let sink: *const PhErrorSink = $sink;
            boundary($what, sink, args, $on_panic, move |null: bool| {
                if null {
                    $on_null
                } else $body
            })
        }
    };
}

/// The return code of a handler or factory body, reporting an `Err` to `err`.
fn result_code(err: *const PhErrorSink, result: Result<(), Error>) -> i32 {
    match result {
        Ok(()) => PH_OK,
        Err(e) => {
            report(err, e.message());
            PH_ERR
        }
    }
}

/// The return code of an app's or filter's `call`, filling `out` on success.
/// A status error ([`Error::status`]) is answered here, as a response of its own
/// ([`Error::to_response`]), so the host sees a success; a plain error is
/// reported to `err` and becomes [`PH_ERR`] (the host answers 500 and logs it).
fn handler_code(
    err: *const PhErrorSink,
    out: &mut PhResponse,
    result: Result<Response, Error>,
) -> i32 {
    let result = result.or_else(|e| e.to_response().ok_or(e));
    result_code(err, result.map(|resp| response_into_raw(resp, out)))
}

#[cfg(test)]
mod handler_code_tests {
    use super::*;

    unsafe extern "C" fn keep(this: *mut c_void, message: PhStr) {
        // SAFETY: `this` is the test's `Vec<String>`, alive for the call; the
        // message is valid for the call.
        unsafe { (*this.cast::<Vec<String>>()).push(owned(message)) }
    }

    /// Run `handler_code` as a trampoline does: the code, what the host would
    /// receive, and the messages reported to the sink.
    fn run(result: Result<Response, Error>) -> (i32, Option<Response>, Vec<String>) {
        let mut messages = Vec::<String>::new();
        let sink = PhErrorSink {
            this: (&mut messages as *mut Vec<String>).cast(),
            set: keep,
        };
        let mut out = PhResponse::empty();
        let rc = handler_code(&sink, &mut out, result);
        // SAFETY: on PH_OK `handler_code` filled `out`.
        let resp = (rc == PH_OK).then(|| unsafe { response_from_raw(out) });
        (rc, resp, messages)
    }

    #[test]
    fn a_status_error_is_answered_by_the_sdk_not_reported() {
        let (rc, resp, messages) = run(Err(Error::not_found("no such item")));
        assert_eq!((rc, messages.len()), (PH_OK, 0));
        let resp = resp.unwrap();
        assert_eq!(resp.status, 404);
        assert_eq!(
            resp.header_value("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(
            resp.body.into_bytes().unwrap(),
            b"404 Not Found: no such item\n"
        );

        let err = Error::method_not_allowed("").with_header("Allow", "GET");
        let (rc, resp, _) = run(Err(err));
        let resp = resp.unwrap();
        assert_eq!((rc, resp.status), (PH_OK, 405));
        assert_eq!(resp.header_value("allow"), Some("GET"));
    }

    #[test]
    fn a_plain_error_is_reported_as_before() {
        let (rc, resp, messages) = run(Err(Error::new("nope")));
        assert_eq!((rc, resp.is_none()), (PH_ERR, true));
        assert_eq!(messages, ["nope"]);
        let io = Error::from(io::Error::other("disk"));
        let (rc, _, messages) = run(Err(io));
        assert_eq!(
            (rc, &messages[..]),
            (PH_ERR, &["I/O error: disk".to_owned()][..])
        );
    }

    #[test]
    fn a_response_passes_through() {
        let (rc, resp, messages) = run(Ok(Response::new(201).body("made")));
        assert_eq!((rc, messages.len()), (PH_OK, 0));
        let resp = resp.unwrap();
        assert_eq!(resp.status, 201);
        assert_eq!(resp.body.into_bytes().unwrap(), b"made");
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

thread_local! {
    /// The box of this thread's last released body, for the next body: a plugin
    /// answering a request allocates no body box of its own (the host releases a
    /// body on the thread that answers, or one that answers next).
    static SPARE_BODY: Cell<Option<Box<BodySource>>> = const { Cell::new(None) };
    /// The same for the storage behind a response's head.
    static SPARE_OWNER: Cell<Option<Box<ResponseOwner>>> = const { Cell::new(None) };
}

/// A spare [`ResponseOwner`] keeps its pairs array only up to this many pairs.
const SPARE_PAIRS: usize = 32;

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
    let state = match SPARE_BODY.try_with(Cell::take).ok().flatten() {
        Some(mut spare) => {
            spare.source = source;
            spare
        }
        None => Box::new(BodySource {
            source,
            buf: Vec::new(),
        }),
    };
    PhBody {
        vtbl: &BODY_VTBL,
        this: Box::into_raw(state).cast(),
    }
}

ffi_export! {
    /// [`PhBodyVtbl::next`] of the bodies the plugin produces.
    fn body_next(this: *mut c_void, chunk: *mut PhStr) -> i32 {
        what: "a response body's next",
        non_null: [this, chunk],
        sink: std::ptr::null(),
        on_null: PH_ERR,
        on_panic: PH_ERR_PANIC,
    } {
        // SAFETY: `this` is the `BodySource` we boxed in `body_into_raw` (checked
        // non-null), not yet released, and the ABI forbids concurrent calls on one body.
        let state = unsafe { &mut *this.cast::<BodySource>() };
        match state.advance() {
            Ok(true) => {
                // SAFETY: `chunk` is a valid out-pointer (checked non-null); the
                // chunk's storage (`buf`, or the shared bytes the source holds) lives
                // until the next call.
                unsafe { *chunk = PhStr::from_bytes(state.chunk()) };
                PH_OK
            }
            Ok(false) => PH_EOF,
            Err(e) => {
                crate::log(
                    crate::Level::Error,
                    "plughost_sdk",
                    &format!("response body failed: {e}"),
                );
                PH_ERR
            }
        }
    }
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

ffi_export! {
    /// [`PhBodyVtbl::size_hint`] of the bodies the plugin produces.
    fn body_size_hint(this: *mut c_void) -> i64 {
        what: "a response body's size_hint",
        non_null: [this],
        sink: std::ptr::null(),
        on_null: -1,
        on_panic: -1,
    } {
        // SAFETY: as in `body_next`.
        let state = unsafe { &*this.cast::<BodySource>() };
        match &state.source {
            Source::Done | Source::SharedSent(_) => 0,
            Source::Bytes(b) => b.len() as i64,
            Source::Shared(b) => b.len() as i64,
            Source::Reader(_) | Source::Iter(_) => -1,
        }
    }
}

ffi_export! {
    /// [`PhBodyVtbl::release`] of the bodies the plugin produces.
    fn body_release(this: *mut c_void) {
        what: "releasing a response body",
        non_null: [this],
        sink: std::ptr::null(),
        on_null: (),
        on_panic: (),
    } {
        // SAFETY: `this` came from `Box::into_raw` in `body_into_raw` (checked
        // non-null); the host calls release exactly once. A panicking drop is caught
        // by the boundary.
        let mut state = unsafe { Box::from_raw(this.cast::<BodySource>()) };
        state.source = Source::Done;
        // A large chunk buffer is not kept for the next body.
        state.buf = Vec::new();
        let _ = SPARE_BODY.try_with(|spare| spare.set(Some(state)));
    }
}

// ---------------------------------------------------------------------------
// Requests and responses.

/// The SDK's view of a raw request for the call: its strings borrowed, the body
/// taken over.
///
/// # Safety
/// `req` must be a valid request view, its strings and arrays valid for `'a`.
unsafe fn request_from_raw<'a>(req: &'a PhRequest, body: PhBody) -> Request<'a> {
    // Take the body first, so it is released even if anything below panics.
    let body = RequestBody(match ForeignBody::new(body) {
        Some(f) => ReqInner::Foreign(f),
        None => ReqInner::Empty,
    });
    // SAFETY: every string and array of the view is valid for `'a`.
    unsafe {
        let (script_name, raw_script_name) = decoded(req.script_name);
        let (path_info, raw_path_info) = decoded(req.path_info);
        Request {
            method: text(req.method),
            scheme: text(req.scheme),
            script_name,
            path_info,
            raw_path: text(req.raw_path),
            query_string: text(req.query_string),
            protocol: text(req.protocol),
            server_name: text(req.server_name),
            server_port: req.server_port,
            remote_addr: text(req.remote_addr),
            remote_port: req.remote_port,
            headers: text_pairs(req.headers, req.header_count),
            extras: text_pairs(req.extras, req.extra_count),
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
/// `s` must be valid for `'a`.
unsafe fn decoded<'a>(s: PhStr) -> (Cow<'a, str>, Option<Cow<'a, [u8]>>) {
    // SAFETY: guaranteed by the caller.
    let shown = unsafe { text(s) };
    let raw = match shown {
        // SAFETY: as above.
        Cow::Owned(_) => Some(Cow::Borrowed(unsafe { s.as_bytes() })),
        Cow::Borrowed(_) => None,
    };
    (shown, raw)
}

/// The bytes to send for a string that may have come in as invalid UTF-8:
/// the original bytes if the string was not changed.
fn exact<'a>(shown: &'a str, raw: &'a Option<Cow<'_, [u8]>>) -> &'a [u8] {
    match raw {
        Some(raw) if String::from_utf8_lossy(raw) == shown => raw,
        _ => shown.as_bytes(),
    }
}

/// Storage behind a response's status line and headers, freed by `release`.
/// Reused through [`SPARE_OWNER`], so answering allocates neither the box nor
/// the pairs array.
#[derive(Default)]
struct ResponseOwner {
    reason: String,
    headers: Vec<(String, String)>,
    pairs: Vec<PhPair>,
}

ffi_export! {
    /// [`PhResponse::release`] of the responses the plugin produces.
    fn response_release(owner: *mut c_void) {
        what: "releasing a response",
        non_null: [owner],
        sink: std::ptr::null(),
        on_null: (),
        on_panic: (),
    } {
        // SAFETY: `owner` came from `Box::into_raw` in `response_into_raw` (checked
        // non-null); the receiver calls release exactly once.
        let mut owner = unsafe { Box::from_raw(owner.cast::<ResponseOwner>()) };
        owner.pairs.clear();
        if owner.pairs.capacity() > SPARE_PAIRS {
            owner.pairs = Vec::new();
        }
        crate::response::recycle_headers(std::mem::take(&mut owner.headers));
        owner.reason = String::new();
        let _ = SPARE_OWNER.try_with(|spare| spare.set(Some(owner)));
    }
}

fn response_into_raw(resp: Response, out: &mut PhResponse) {
    let mut owner = SPARE_OWNER
        .try_with(Cell::take)
        .ok()
        .flatten()
        .unwrap_or_default();
    let o = &mut *owner;
    o.reason = resp.reason.unwrap_or_default();
    o.headers = resp.headers;
    o.pairs.extend(o.headers.iter().map(|(n, v)| PhPair {
        name: PhStr::from_str(n),
        value: PhStr::from_str(v),
    }));
    out.status = resp.status;
    out.reason = PhStr::from_str(&o.reason);
    out.headers = o.pairs.as_ptr();
    out.header_count = o.pairs.len();
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

pub(crate) fn call_next(next: &PhNext, req: Request<'_>) -> Result<Response, Error> {
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

/// The shared part of both factories, run inside their boundary.
///
/// # Safety
/// Arguments as the ABI's `create` describes them; `this_out` is non-null.
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
    if !host.is_null() {
        // SAFETY: the host's table lives for the whole process.
        crate::log::set_host(unsafe { &*host });
    }
    // SAFETY: arrays valid for this call, per the ABI.
    let config = unsafe { config_from_raw(entry, global, global_count, local, local_count) };
    let result = new(&config).map(|instance| {
        // SAFETY: `this_out` is a valid out-pointer (checked non-null by the caller).
        unsafe { *this_out = Box::into_raw(Box::new(instance)).cast() };
    });
    result_code(err, result)
}

ffi_export! {
    /// [`PhHandlerVtbl::destroy`] of every entry: frees an instance of `T`.
    fn destroy[T](this: *mut c_void) {
        what: "destroying an instance",
        non_null: [this],
        sink: std::ptr::null(),
        on_null: (),
        on_panic: (),
    } {
        // SAFETY: `this` came from `Box::into_raw` in `create_with::<T>` (checked
        // non-null); the host destroys each instance once, after its last call.
        drop(unsafe { Box::from_raw(this.cast::<T>()) });
    }
}

/// Release a request body a handler will not run on (a null argument), as the
/// ABI requires of every handler call.
fn release_unused(body: PhBody) {
    drop(ForeignBody::new(body));
}

/// The glue between an [`App`] type and the ABI.
pub struct AppGlue<T>(PhantomData<T>);

/// A factory's arguments, as the ABI's [`PhCreateFn`] lists them; one macro so
/// that both glues declare exactly the same function.
macro_rules! glue_create {
    ($what:literal) => {
        ffi_export! {
            /// The entry's [`PhCreateFn`]: builds an instance from its configuration.
            #[allow(clippy::too_many_arguments)]
            fn create(
                host: *const PhHost,
                entry: PhStr,
                global: *const PhPair,
                global_count: usize,
                local: *const PhPair,
                local_count: usize,
                this_out: *mut *mut c_void,
                err: *const PhErrorSink,
            ) -> i32 {
                what: $what,
                non_null: [this_out],
                sink: err,
                on_null: PH_ERR,
                on_panic: PH_ERR_PANIC,
            } {
                // SAFETY: arguments as the ABI describes, `this_out` checked non-null.
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
        }
    };
}

impl<T: App> AppGlue<T> {
    /// The handler table of every instance of `T`.
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

    glue_create!("creating an app");

    ffi_export! {
        /// [`PhHandlerVtbl::call`] of an app: answers one request.
        fn call(
            this: *mut c_void,
            req: *const PhRequest,
            body: PhBody,
            _next: *const PhNext,
            out: *mut PhResponse,
            err: *const PhErrorSink,
        ) -> i32 {
            what: "an app call",
            non_null: [this, req, out],
            sink: err,
            on_null: {
                release_unused(body);
                PH_ERR
            },
            on_panic: PH_ERR_PANIC,
        } {
            // SAFETY: `this` is a live instance of `T` (the host destroys it only
            // after its last call); `req` and `out` are valid for the call; all three
            // were checked non-null.
            let (app, request, out) =
                unsafe { (&*this.cast::<T>(), request_from_raw(&*req, body), &mut *out) };
            handler_code(err, out, app.call(request))
        }
    }
}

/// The glue between a [`Filter`] type and the ABI.
pub struct FilterGlue<T>(PhantomData<T>);

impl<T: Filter> FilterGlue<T> {
    /// The handler table of every instance of `T`.
    pub const VTBL: PhHandlerVtbl = PhHandlerVtbl {
        struct_size: std::mem::size_of::<PhHandlerVtbl>() as u32,
        call: Self::call,
        destroy: destroy::<T>,
        flags: 0,
    };

    glue_create!("creating a filter");

    ffi_export! {
        /// [`PhHandlerVtbl::call`] of a filter: handles one request, with `next`.
        fn call(
            this: *mut c_void,
            req: *const PhRequest,
            body: PhBody,
            next: *const PhNext,
            out: *mut PhResponse,
            err: *const PhErrorSink,
        ) -> i32 {
            what: "a filter call",
            non_null: [this, req, next, out],
            sink: err,
            on_null: {
                release_unused(body);
                PH_ERR
            },
            on_panic: PH_ERR_PANIC,
        } {
            // SAFETY: as for apps; a filter's `next` is a valid handle for this call;
            // all four were checked non-null.
            let (filter, request, next, out) = unsafe {
                (
                    &*this.cast::<T>(),
                    request_from_raw(&*req, body),
                    Next::from_host(&*next),
                    &mut *out,
                )
            };
            handler_code(err, out, filter.call(request, next))
        }
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

    #[test]
    fn a_released_response_and_body_leave_their_storage_to_the_next_ones() {
        let mut out = PhResponse::empty();
        let resp = Response::new(200).header("A", "1").header("B", "2");
        response_into_raw(resp.body(Arc::<str>::from("page")), &mut out);
        let (owner, body) = (out.owner, out.body.this);
        // SAFETY: `out` was just filled, as a successful call fills it.
        let first = unsafe { response_from_raw(out) };
        assert_eq!(first.headers.len(), 2);
        drop(first); // releases the body

        let next = Response::new(201);
        assert!(next.headers.capacity() >= 2, "the headers array is reused");
        let mut out = PhResponse::empty();
        response_into_raw(next.header("C", "3").body(Arc::<str>::from("x")), &mut out);
        assert_eq!(
            (out.owner, out.body.this),
            (owner, body),
            "both boxes reused"
        );
        // SAFETY: as above.
        let again = unsafe { response_from_raw(out) };
        assert_eq!(
            (again.status, again.headers),
            (201, vec![("C".to_owned(), "3".to_owned())])
        );
        assert_eq!(again.body.into_bytes().unwrap(), b"x");
    }
    fn decode(bytes: &[u8]) -> (Cow<'_, str>, Option<Cow<'_, [u8]>>) {
        // SAFETY: the view points into `bytes`, alive as long as the result.
        unsafe { decoded(PhStr::from_bytes(bytes)) }
    }

    fn copy(bytes: &[u8]) -> String {
        // SAFETY: as in `decode`.
        unsafe { owned(PhStr::from_bytes(bytes)) }
    }

    #[test]
    fn request_strings_keep_exact_bytes_only_when_not_utf8() {
        assert_eq!(decode(b"/a b"), ("/a b".into(), None));
        assert!(
            matches!(decode(b"/a b").0, Cow::Borrowed(_)),
            "UTF-8 is not copied"
        );
        assert_eq!(decode("/caf\u{e9}".as_bytes()), ("/caf\u{e9}".into(), None));
        assert!(matches!(
            decode("/caf\u{e9}".as_bytes()).0,
            Cow::Borrowed(_)
        ));
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

    // -----------------------------------------------------------------------
    // The boundary: null arguments, errors and panics at every exported function.

    /// An error sink that keeps what it is sent.
    #[derive(Default)]
    struct Sink(std::cell::RefCell<Vec<String>>);

    unsafe extern "C" fn sink_set(this: *mut c_void, message: PhStr) {
        // SAFETY: `this` is the `Sink` of `Sink::raw`, alive for the call; the
        // message is valid for the call.
        unsafe { (*this.cast::<Sink>()).0.borrow_mut().push(owned(message)) }
    }

    impl Sink {
        fn raw(&self) -> PhErrorSink {
            PhErrorSink {
                this: (self as *const Sink).cast_mut().cast(),
                set: sink_set,
            }
        }
        fn messages(&self) -> Vec<String> {
            self.0.borrow().clone()
        }
    }

    /// A reader that records being dropped, so a test can see a body released.
    struct Flag(Arc<std::sync::atomic::AtomicBool>, &'static [u8]);

    impl Read for Flag {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.1.read(buf)
        }
    }

    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// A raw body as the host would hand it over, and a flag set on release.
    fn host_body(bytes: &'static [u8]) -> (PhBody, Arc<std::sync::atomic::AtomicBool>) {
        let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let raw = body_into_raw(Body::from_reader(Flag(released.clone(), bytes)));
        (raw, released)
    }

    fn is_set(flag: &std::sync::atomic::AtomicBool) -> bool {
        flag.load(std::sync::atomic::Ordering::SeqCst)
    }

    struct TestApp;

    impl App for TestApp {
        fn new(config: &Config) -> Result<Self, Error> {
            match config.get("fail") {
                Some(why) => Err(Error::new(why)),
                None => Ok(TestApp),
            }
        }
        fn call(&self, mut req: Request) -> Result<Response, Error> {
            match &*req.path_info {
                "/panic" => panic!("boom"),
                "/err" => Err(Error::new("nope")),
                path => Ok(Response::new(201)
                    .header("X-Path", path)
                    .body(req.body.read_all()?)),
            }
        }
    }

    struct TestFilter;

    impl Filter for TestFilter {
        fn new(_config: &Config) -> Result<Self, Error> {
            Ok(TestFilter)
        }
        fn call(&self, mut req: Request, next: Next<'_>) -> Result<Response, Error> {
            req.set_header("x-in", "1");
            let mut resp = next.call(req)?;
            resp.set_header("X-Out", "1");
            Ok(resp)
        }
    }

    fn raw_request(path: &'static str, headers: &[PhPair]) -> PhRequest {
        PhRequest {
            struct_size: std::mem::size_of::<PhRequest>() as u32,
            method: PhStr::from_str("POST"),
            scheme: PhStr::from_str("http"),
            script_name: PhStr::EMPTY,
            path_info: PhStr::from_str(path),
            raw_path: PhStr::from_str(path),
            query_string: PhStr::EMPTY,
            protocol: PhStr::from_str("HTTP/1.1"),
            server_name: PhStr::from_str("localhost"),
            remote_addr: PhStr::from_str("127.0.0.1"),
            server_port: 80,
            remote_port: 1,
            headers: headers.as_ptr(),
            header_count: headers.len(),
            extras: std::ptr::null(),
            extra_count: 0,
            content_length: -1,
        }
    }

    #[test]
    fn the_request_view_borrows_the_hosts_strings_and_to_owned_copies_them() {
        // The host's memory: freed below, after the owned copy is made.
        let (path, value) = (String::from("/items/7"), String::from("1"));
        let host_headers = [PhPair {
            name: PhStr::from_str("x-a"),
            value: PhStr::from_str(&value),
        }];
        let mut raw = raw_request("/", &host_headers);
        raw.path_info = PhStr::from_str(&path);
        // SAFETY: `raw` and the strings it points at outlive `req`.
        let req = unsafe { request_from_raw(&raw, PhBody::EMPTY) };
        let points_into = |s: &Cow<'_, str>, host: PhStr| matches!(s, Cow::Borrowed(b) if b.as_ptr() == host.ptr && b.len() == host.len);
        assert!(points_into(&req.method, raw.method));
        assert!(points_into(&req.path_info, raw.path_info));
        assert!(points_into(&req.raw_path, raw.raw_path));
        assert!(points_into(&req.remote_addr, raw.remote_addr));
        assert!(points_into(&req.headers[0].0, host_headers[0].name));
        assert!(points_into(&req.headers[0].1, host_headers[0].value));
        let owned: Request<'static> = req.to_owned();
        assert!(matches!(owned.path_info, Cow::Owned(_)));
        assert!(matches!(owned.headers[0].1, Cow::Owned(_)));
        drop((path, value));
        // The copy lives on, on another thread, after the host's memory is gone.
        let kept = std::thread::spawn(move || {
            (owned.path_info.into_owned(), owned.headers[0].1.to_string())
        });
        assert_eq!(kept.join().unwrap(), ("/items/7".into(), "1".into()));
    }

    /// Create an instance through an entry's factory, as the host does.
    fn create(entry: &PhEntry, local: &[PhPair], sink: &Sink) -> (i32, *mut c_void) {
        let mut this = std::ptr::null_mut();
        let err = sink.raw();
        // SAFETY: every argument is valid for the call; `this` is an out-pointer.
        let rc = unsafe {
            (entry.create)(
                std::ptr::null(),
                PhStr::from_str("main"),
                std::ptr::null(),
                0,
                local.as_ptr(),
                local.len(),
                &mut this,
                &err,
            )
        };
        (rc, this)
    }

    /// Call an instance as the host does; the response, if any, as owned values.
    fn call(
        vtbl: &PhHandlerVtbl,
        this: *mut c_void,
        req: *const PhRequest,
        body: PhBody,
        next: *const PhNext,
        sink: &Sink,
    ) -> (i32, Option<Response>) {
        let mut out = PhResponse::empty();
        let err = sink.raw();
        // SAFETY: arguments as the ABI describes (or deliberately null).
        let rc = unsafe { (vtbl.call)(this, req, body, next, &mut out, &err) };
        // SAFETY: on PH_OK the call filled `out`.
        (rc, (rc == PH_OK).then(|| unsafe { response_from_raw(out) }))
    }

    fn app() -> (&'static PhHandlerVtbl, PhEntry) {
        static VTBL: PhHandlerVtbl = AppGlue::<TestApp>::VTBL;
        (&VTBL, app_entry::<TestApp>(c"app".as_ptr(), &VTBL))
    }

    #[test]
    fn an_app_call_round_trips_and_errors_and_panics_become_codes() {
        let (vtbl, entry) = app();
        let sink = Sink::default();
        let (rc, this) = create(&entry, &[], &sink);
        assert_eq!((rc, this.is_null()), (PH_OK, false));

        let (body, released) = host_body(b"payload");
        let req = raw_request("/ok", &[]);
        let (rc, resp) = call(vtbl, this, &req, body, std::ptr::null(), &sink);
        assert_eq!(rc, PH_OK);
        let resp = resp.unwrap();
        assert_eq!(resp.status, 201);
        assert_eq!(resp.header_value("x-path"), Some("/ok"));
        assert_eq!(resp.body.into_bytes().unwrap(), b"payload");
        assert!(is_set(&released));

        let (body, _) = host_body(b"");
        let req = raw_request("/err", &[]);
        assert_eq!(
            call(vtbl, this, &req, body, std::ptr::null(), &sink).0,
            PH_ERR
        );
        let (body, released) = host_body(b"");
        let req = raw_request("/panic", &[]);
        let (rc, _) = call(vtbl, this, &req, body, std::ptr::null(), &sink);
        assert_eq!(rc, PH_ERR_PANIC);
        assert!(
            is_set(&released),
            "a panicking call still releases its body"
        );
        assert_eq!(sink.messages(), ["nope", "panicked: boom"]);

        // SAFETY: the instance came from `create` and is not used again.
        unsafe { (vtbl.destroy)(this) };
    }

    #[test]
    fn null_pointers_are_refused_with_a_message_and_the_body_released() {
        let (vtbl, entry) = app();
        let sink = Sink::default();
        let (_, this) = create(&entry, &[], &sink);
        let (body, released) = host_body(b"unread");
        let (rc, resp) = call(vtbl, this, std::ptr::null(), body, std::ptr::null(), &sink);
        assert_eq!((rc, resp.is_none()), (PH_ERR, true));
        assert!(is_set(&released), "the request body is consumed even so");

        // A null `next` is refused before `this` (here an app) is looked at.
        let filter_vtbl = &FilterGlue::<TestFilter>::VTBL;
        let (body, released) = host_body(b"");
        let req = raw_request("/", &[]);
        let (rc, _) = call(filter_vtbl, this, &req, body, std::ptr::null(), &sink);
        assert_eq!(rc, PH_ERR);
        assert!(is_set(&released));
        assert_eq!(
            sink.messages(),
            [
                "an app call: null `req` argument",
                "a filter call: null `next` argument"
            ]
        );

        let err = sink.raw();
        // SAFETY: deliberately null `this_out`; everything else is valid.
        let rc = unsafe {
            (entry.create)(
                std::ptr::null(),
                PhStr::EMPTY,
                std::ptr::null(),
                0,
                std::ptr::null(),
                0,
                std::ptr::null_mut(),
                &err,
            )
        };
        assert_eq!(rc, PH_ERR);
        assert_eq!(
            sink.messages().last().map(String::as_str),
            Some("creating an app: null `this_out` argument")
        );
        // SAFETY: the body functions and `destroy` must survive null handles; the
        // instance is destroyed once, last.
        unsafe {
            assert_eq!(
                body_next(std::ptr::null_mut(), std::ptr::null_mut()),
                PH_ERR
            );
            assert_eq!(body_size_hint(std::ptr::null_mut()), -1);
            body_release(std::ptr::null_mut());
            response_release(std::ptr::null_mut());
            (vtbl.destroy)(std::ptr::null_mut());
            (vtbl.destroy)(this);
        }
    }

    #[test]
    fn a_factory_error_is_reported() {
        let (_, entry) = app();
        let sink = Sink::default();
        let local = [PhPair {
            name: PhStr::from_str("fail"),
            value: PhStr::from_str("bad config"),
        }];
        let (rc, this) = create(&entry, &local, &sink);
        assert_eq!((rc, this.is_null()), (PH_ERR, true));
        assert_eq!(sink.messages(), ["bad config"]);
    }

    #[test]
    fn a_panicking_body_is_a_code_not_an_unwind() {
        let raw = body_into_raw(Body::from_chunks(std::iter::once_with(
            || -> io::Result<Vec<u8>> { panic!("chunk") },
        )));
        let mut chunk = PhStr::EMPTY;
        // SAFETY: a live body from `body_into_raw`, released once.
        unsafe {
            assert_eq!(((*raw.vtbl).next)(raw.this, &mut chunk), PH_ERR_PANIC);
            ((*raw.vtbl).release)(raw.this);
        }
    }

    /// What the fake pipeline behind a filter saw.
    #[derive(Default)]
    struct Downstream {
        header: Option<String>,
        body: Vec<u8>,
    }

    unsafe extern "C" fn downstream_call(
        this: *mut c_void,
        req: *const PhRequest,
        body: PhBody,
        out: *mut PhResponse,
    ) -> i32 {
        // SAFETY: `this` is the test's `Downstream`; `req` and `out` are valid for
        // the call, and the body is ours to consume.
        unsafe {
            let seen = &mut *this.cast::<Downstream>();
            let mut req = request_from_raw(&*req, body);
            seen.header = req.header("x-in").map(str::to_owned);
            seen.body = req.body.read_all().unwrap();
            response_into_raw(Response::new(202).body("down"), &mut *out);
        }
        PH_OK
    }

    #[test]
    fn a_filter_passes_requests_and_bodies_through_the_host_next() {
        let sink = Sink::default();
        let entry = filter_entry::<TestFilter>(c"f".as_ptr(), &FilterGlue::<TestFilter>::VTBL);
        let (rc, this) = create(&entry, &[], &sink);
        assert_eq!(rc, PH_OK);
        let mut seen = Downstream::default();
        let next = PhNext {
            this: (&mut seen as *mut Downstream).cast(),
            call: downstream_call,
        };
        let (body, released) = host_body(b"up");
        let req = raw_request("/", &[]);
        // SAFETY: `entry.vtbl` is the filter's static table.
        let vtbl = unsafe { &*entry.vtbl };
        let (rc, resp) = call(vtbl, this, &req, body, &next, &sink);
        assert_eq!(rc, PH_OK, "{:?}", sink.messages());
        let resp = resp.unwrap();
        assert_eq!(resp.status, 202);
        assert_eq!(resp.header_value("x-out"), Some("1"));
        assert_eq!(resp.body.into_bytes().unwrap(), b"down");
        assert_eq!(
            (seen.header.as_deref(), &seen.body[..]),
            (Some("1"), &b"up"[..])
        );
        assert!(is_set(&released));
        // SAFETY: created above, destroyed once.
        unsafe { (vtbl.destroy)(this) };
    }

    #[test]
    fn a_body_built_in_the_plugin_streams_through_the_host_next() {
        let mut seen = Downstream::default();
        let next = PhNext {
            this: (&mut seen as *mut Downstream).cast(),
            call: downstream_call,
        };
        let req = Request::builder().header("X-In", "b").body("local").build();
        let resp = Next::from_host(&next).call(req).unwrap();
        assert_eq!(resp.status, 202);
        assert_eq!(
            (seen.header.as_deref(), &seen.body[..]),
            (Some("b"), &b"local"[..])
        );
    }
}

/// Whether no two of `names` are equal (a `const fn`, so `export_plugin!`
/// refuses a duplicate entry name at compile time).
#[doc(hidden)]
pub const fn distinct_names(names: &[&str]) -> bool {
    let mut i = 0;
    while i < names.len() {
        let mut j = i + 1;
        while j < names.len() {
            if same(names[i].as_bytes(), names[j].as_bytes()) {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod distinct_tests {
    use super::distinct_names;

    #[test]
    fn duplicate_names_are_found() {
        assert!(distinct_names(&[]));
        assert!(distinct_names(&["main", "other"]));
        assert!(!distinct_names(&["main", "other", "main"]));
    }
}
