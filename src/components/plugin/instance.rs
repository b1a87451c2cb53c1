//! A plugin app or filter instance: created by its factory, called from worker
//! threads, destroyed when the last `Arc` to it goes (after its last request and
//! its last response body).

use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use plughost_sdk::abi::{
    self, PhBody, PhHandlerVtbl, PhNext, PhPair, PhRequest, PhResponse, PhStr,
};
use tokio::runtime::Handle;

use super::bridge::{self, InvalidMessage, KeepAlive, RequestView};
use super::guard::host_callback;
use super::host_api::{ErrorSink, HOST_API};
use super::library::{kind_name, Library};
use crate::core::{blocking, body, Handler, Request, Response};

/// The rest of the pipeline, as a filter instance sees it.
pub(crate) type NextHandle = Arc<dyn Handler>;

/// Why a call produced no response.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("plugin returned error code {code}: {message}")]
    Failed { code: i32, message: String },
    #[error("plugin panicked: {0}")]
    Panicked(String),
    #[error("plugin returned an invalid response: {0}")]
    InvalidResponse(#[from] InvalidMessage),
}

/// Why [`Instance::create`] made no instance. The text follows `LIB#ENTRY: ` in
/// start-up errors.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{} has no entry `{entry}`; it exports: {exports}", library.display())]
    NoEntry {
        library: PathBuf,
        entry: String,
        exports: String,
    },
    #[error("entry `{entry}` of {} is {} entry, but this section needs {}", library.display(), with_article(kind_name(*found)), with_article(kind_name(*wanted)))]
    WrongKind {
        library: PathBuf,
        entry: String,
        found: u32,
        wanted: u32,
    },
    /// The factory returned an error code; its message (or "no message").
    #[error("{0}")]
    Failed(String),
    /// The factory returned `PH_ERR_PANIC`: the SDK caught a panic in it.
    #[error("factory panicked: {0}")]
    Panicked(String),
    /// The factory returned `PH_OK` but left the instance pointer NULL.
    #[error("factory returned success but no instance")]
    NullInstance,
}

/// A live plugin instance.
pub struct Instance {
    this: *mut c_void,
    vtbl: *const PhHandlerVtbl,
    kind: u32,
    /// `[app:main] libecho.so#main`, for log lines.
    label: String,
    /// An app that declared `PH_HANDLER_NONBLOCKING` and has not broken the promise:
    /// its body-less requests run on the event loop (see [`Instance::runs_inline`]).
    inline: AtomicBool,
    /// Whether an inline call has been judged: the first one is not (see
    /// [`Instance::judge_inline`]).
    warmed: AtomicBool,
    /// Declared last so the library outlives the instance's destruction.
    _lib: Arc<Library>,
}

// SAFETY: the ABI requires instances to be callable from many threads at once
// (the SDK enforces `Send + Sync` on the Rust types behind them).
unsafe impl Send for Instance {}
// SAFETY: as above.
unsafe impl Sync for Instance {}

fn pairs(conf: &[(String, String)]) -> Vec<PhPair> {
    conf.iter()
        .map(|(k, v)| PhPair {
            name: PhStr::from_str(k),
            value: PhStr::from_str(v),
        })
        .collect()
}

fn with_article(kind: &str) -> String {
    match kind {
        "app" => "an app".into(),
        other => format!("a {other}"),
    }
}

impl Instance {
    /// Run entry `entry`'s factory with the section's configuration.
    pub fn create(
        lib: Arc<Library>,
        entry: &str,
        want_kind: u32,
        global: &[(String, String)],
        local: &[(String, String)],
        label: String,
    ) -> Result<Instance, CreateError> {
        let Some(info) = lib.entry(entry, want_kind) else {
            return Err(CreateError::NoEntry {
                library: lib.path.clone(),
                entry: entry.to_owned(),
                exports: lib.entry_list(),
            });
        };
        if info.kind != want_kind {
            return Err(CreateError::WrongKind {
                library: lib.path.clone(),
                entry: entry.to_owned(),
                found: info.kind,
                wanted: want_kind,
            });
        }
        let (global, local) = (pairs(global), pairs(local));
        let mut sink = ErrorSink::default();
        let raw_sink = sink.raw();
        let mut this: *mut c_void = std::ptr::null_mut();
        // SAFETY: the entry came from a checked descriptor (its `create` is non-NULL);
        // every pointer passed is valid for the duration of the call; `this`
        // receives the new instance.
        let rc = unsafe {
            (info.create)(
                &HOST_API,
                PhStr::from_str(entry),
                global.as_ptr(),
                global.len(),
                local.as_ptr(),
                local.len(),
                &mut this,
                &raw_sink,
            )
        };
        let message = sink.message.take().unwrap_or_else(|| "no message".into());
        match rc {
            abi::PH_OK if !this.is_null() => Ok(Instance {
                this,
                vtbl: info.vtbl,
                kind: info.kind,
                label,
                inline: AtomicBool::new(
                    info.kind == abi::PH_KIND_APP && info.flags & abi::PH_HANDLER_NONBLOCKING != 0,
                ),
                warmed: AtomicBool::new(false),
                _lib: lib,
            }),
            abi::PH_OK => Err(CreateError::NullInstance),
            abi::PH_ERR_PANIC => Err(CreateError::Panicked(panic_message(message))),
            _ => Err(CreateError::Failed(message)),
        }
    }

    /// `[section] file#entry`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether calls may run on the event loop: a non-blocking app in good standing.
    pub fn runs_inline(&self) -> bool {
        self.inline.load(Ordering::Relaxed)
    }

    /// A call on the event loop took `took`. Longer than `limit` breaks the
    /// non-blocking promise: this instance's calls go to the worker pool from now
    /// on. The instance's first call is not judged: it pays one-time costs (first
    /// touch of its pages, lazy statics, code translation under valgrind) that say
    /// nothing about the calls after it.
    pub fn judge_inline(&self, took: std::time::Duration, limit: std::time::Duration) {
        if !self.warmed.swap(true, Ordering::Relaxed) {
            if took > limit {
                tracing::debug!(
                    plugin = self.label(),
                    "first call took {took:?} on the event loop; not judged (warm-up)"
                );
            }
            return;
        }
        if took > limit && self.inline.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                plugin = self.label(),
                "declares itself non-blocking, but one call took {took:?} on the event loop; \
                 its calls now run on the worker pool"
            );
        }
    }

    /// Whether this is a filter.
    pub fn is_filter(&self) -> bool {
        self.kind == abi::PH_KIND_FILTER
    }

    /// Call the instance on the current (worker) thread. `next` is the rest of the
    /// pipeline for a filter.
    pub fn call(
        self: &Arc<Self>,
        mut req: Request,
        next: Option<&NextHandle>,
        rt: &Handle,
    ) -> Result<Response, CallError> {
        let keep: KeepAlive = self.clone();
        let view = RequestView::new(&req);
        let raw_req = view.raw(&req);
        let raw_body = bridge::body_to_plugin(std::mem::replace(&mut req.body, body::empty()));
        let mut next_state = next.map(|handler| NextState {
            handler: handler.clone(),
            rt: rt.clone(),
            keep: keep.clone(),
            called: false,
        });
        let raw_next = next_state.as_mut().map(|state| PhNext {
            this: (state as *mut NextState).cast(),
            call: next_call,
        });
        let next_ptr = raw_next
            .as_ref()
            .map_or(std::ptr::null(), |n| n as *const PhNext);
        let mut sink = ErrorSink::default();
        let raw_sink = sink.raw();
        let mut out = PhResponse::empty();
        // SAFETY: `this` is live until `Drop`, which cannot run while `self` is
        // borrowed; the table and its `call` were checked non-NULL at load; the
        // request view, next handle and sink outlive the call; the body is handed over.
        let rc = unsafe {
            ((*self.vtbl).call)(self.this, &raw_req, raw_body, next_ptr, &mut out, &raw_sink)
        };
        drop(view);
        // The view's strings are no longer read: their buffers go to the next
        // environ built on this thread.
        req.recycle();
        match rc {
            // SAFETY: the call succeeded, so `out` is filled.
            abi::PH_OK => {
                unsafe { bridge::response_from_plugin(out, rt, keep) }.map_err(CallError::from)
            }
            abi::PH_ERR_PANIC => Err(CallError::Panicked(panic_message(
                sink.message.unwrap_or_else(|| "no message".into()),
            ))),
            code => Err(CallError::Failed {
                code,
                message: sink.message.unwrap_or_else(|| "no message".into()),
            }),
        }
    }
}

impl CreateError {
    /// The key a factory refused, when it said so the way the SDK's
    /// `Config::expect_keys` does ("unknown key `KEY`; ..."), so the start-up
    /// error can point at that key's own line.
    pub fn unknown_key(&self) -> Option<&str> {
        let CreateError::Failed(message) = self else {
            return None;
        };
        let rest = message.strip_prefix("unknown key `")?;
        rest.split_once('`').map(|(key, _)| key)
    }
}

/// A panic's message without the `panicked: ` the SDK's trampolines put in
/// front of it, so the host's one log line says "plugin panicked: MESSAGE"
/// (not "panicked: panicked:").
fn panic_message(message: String) -> String {
    match message.strip_prefix("panicked: ") {
        Some(rest) => rest.to_owned(),
        None => message,
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: the last reference is gone, so no call or body of this instance is
        // running; destroy (checked non-NULL at load) runs exactly once.
        unsafe { ((*self.vtbl).destroy)(self.this) }
    }
}

/// What a filter's `next` handle points at during one call.
struct NextState {
    handler: NextHandle,
    rt: Handle,
    keep: KeepAlive,
    called: bool,
}

host_callback! {
    /// `PhNext::call`. `PH_ERR` (after releasing `body`) on a NULL `this`, `req` or
    /// `out`, on a second call in one request, on an invalid request, and on a
    /// panic in the pipeline behind the filter.
    fn next_call(
        this: *mut c_void,
        req: *const PhRequest,
        body: PhBody,
        out: *mut PhResponse,
    ) -> i32;
    non_null(this, req, out) else {
        // The call consumes the body whatever happens; nothing else refers to it.
        bridge::discard_body(body, Arc::new(()));
        abi::PH_ERR
    };
    on_panic abi::PH_ERR;
    {
        // SAFETY: `this` is the `NextState` of the filter call in progress; the ABI
        // forbids using it after that call returns.
        let state = unsafe { &mut *this.cast::<NextState>() };
        if state.called {
            bridge::discard_body(body, state.keep.clone());
            tracing::error!("a filter called `next` twice in one request; the second call fails");
            return abi::PH_ERR;
        }
        state.called = true;
        // SAFETY: the view is valid for this call; the body is handed to us.
        let req = match unsafe { bridge::request_from_view(&*req, body, &state.rt, &state.keep) } {
            Ok(req) => req,
            Err(message) => {
                tracing::error!("a filter passed an invalid request to `next`: {message}");
                return abi::PH_ERR;
            }
        };
        let resp = blocking::wait_in(&state.rt, state.handler.call(req));
        // SAFETY: `out` is the filter's valid (non-NULL, checked) out-pointer.
        bridge::response_to_plugin(resp, unsafe { &mut *out });
        abi::PH_OK
    }
}
