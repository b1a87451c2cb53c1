//! The raw plugin ABI, version 1: `#[repr(C)]` types and `extern "C"` function
//! pointers only, so a plugin built by another rustc, or written in C against
//! `include/plughost.h`, works with any host that speaks the same major version.
//!
//! # Handshake
//! A plugin library exports two symbols:
//! - `plughost_abi`: a [`PhHandshake`] (magic, ABI major, ABI minor). Its name never
//!   changes, so the host can always tell a plugin built for another version and say so.
//! - `plughost_plugin_v1`: a function returning a static [`PhPluginDesc`] that lists
//!   the library's named entries (app and filter factories).
//!
//! The host refuses a library whose handshake is missing, whose magic differs,
//! whose major differs, or whose minor is newer than the host's, and calls nothing in it.
//! A minor version only ever adds fields at the end of a struct (checked through
//! `struct_size`) or functions at the end of a table. 1.1 added
//! [`PhHandlerVtbl::flags`] ([`PH_HANDLER_NONBLOCKING`]); 1.0 plugins still load.
//!
//! # Ownership (who frees what)
//! Whoever allocates supplies the destructor; nothing is ever freed by the other side.
//! - [`PhStr`] and [`PhPair`] arrays are borrowed for the duration of the call that
//!   receives them. Copy what you keep.
//! - [`PhBody`] is a move-only handle: its final holder calls `release` exactly once,
//!   also when it stops early. A handler always consumes the request body it is given.
//! - [`PhResponse`] carries `owner`/`release`: the receiver copies the status line and
//!   headers, takes `body` (which it then owns), and calls `release(owner)` once.
//! - Instances are freed only by `destroy`, called by the host after the last request
//!   that used the instance has finished (including its response body).
//!
//! # Threads and errors
//! `call` runs on many threads at once; a body is never used by two threads at once
//! but consecutive `next` calls may come from different threads. Every function returns
//! [`PH_OK`] or a negative code; nothing may unwind out of a plugin function.

use core::ffi::{c_char, c_void};

/// `"PLUG"` in ASCII: the first field of the handshake and of the descriptor.
pub const PH_MAGIC: u32 = 0x504C_5547;
/// Major ABI version: a plugin must match it exactly.
pub const PH_ABI_MAJOR: u16 = 1;
/// Minor ABI version: a plugin's minor must not be newer than the host's.
pub const PH_ABI_MINOR: u16 = 1;

/// Success.
pub const PH_OK: i32 = 0;
/// End of a body (returned by [`PhBodyVtbl::next`]).
pub const PH_EOF: i32 = 1;
/// A failure; details were reported through the error sink or the host log.
pub const PH_ERR: i32 = -1;
/// Plugin code panicked; the SDK caught it at the boundary.
pub const PH_ERR_PANIC: i32 = -2;

/// Entry kind: an application (terminal handler).
pub const PH_KIND_APP: u32 = 1;
/// Entry kind: a filter (middleware holding a `next`).
pub const PH_KIND_FILTER: u32 = 2;

/// Descriptor flag: the plugin was built with `panic = "unwind"`, so the SDK can
/// turn panics into errors. Without it a panic aborts the whole process.
pub const PH_FLAG_PANIC_UNWIND: u32 = 1;

/// Handler flag (ABI 1.1, [`PhHandlerVtbl::flags`]): the app's `call`, and the
/// first 64 KiB of the body it returns, never block: no I/O, no sleeping, no lock
/// held by slow code, microseconds of work. The host may then run it on its event
/// loop instead of a worker thread (saving two thread hand-offs per request) when the
/// request has no body. A call that breaks the promise stalls other connections, so
/// the host moves an instance back to the worker pool after one slow call.
/// Filters ignore it: their `next` waits on the rest of the pipeline.
pub const PH_HANDLER_NONBLOCKING: u32 = 1;

/// Log levels for [`PhHost::log`].
pub const PH_LOG_ERROR: i32 = 1;
pub const PH_LOG_WARN: i32 = 2;
pub const PH_LOG_INFO: i32 = 3;
pub const PH_LOG_DEBUG: i32 = 4;
pub const PH_LOG_TRACE: i32 = 5;

/// A borrowed byte string (not NUL-terminated; may be empty with a null `ptr`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PhStr {
    pub ptr: *const u8,
    pub len: usize,
}

impl PhStr {
    /// The empty string.
    pub const EMPTY: PhStr = PhStr {
        ptr: core::ptr::null(),
        len: 0,
    };

    /// Borrow `s` for a call.
    pub const fn from_bytes(s: &[u8]) -> PhStr {
        PhStr {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// Borrow `s` for a call.
    #[allow(clippy::should_implement_trait)]
    pub const fn from_str(s: &str) -> PhStr {
        PhStr::from_bytes(s.as_bytes())
    }

    /// View the bytes.
    ///
    /// # Safety
    /// `ptr` must point at `len` readable bytes (or be null with `len == 0`) that stay
    /// valid and unchanged for `'a`.
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.len == 0 || self.ptr.is_null() {
            &[]
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// A name/value pair: a header, a config key, an extra environ key.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PhPair {
    pub name: PhStr,
    pub value: PhStr,
}

/// Operations of a body. `next` fills `chunk` (borrowed until the next call or
/// `release`) and returns [`PH_OK`], [`PH_EOF`] or a negative error.
#[repr(C)]
pub struct PhBodyVtbl {
    pub struct_size: u32,
    pub next: unsafe extern "C" fn(this: *mut c_void, chunk: *mut PhStr) -> i32,
    /// Exact remaining length if known, else -1.
    pub size_hint: unsafe extern "C" fn(this: *mut c_void) -> i64,
    pub release: unsafe extern "C" fn(this: *mut c_void),
}

/// A streamed body, pulled chunk by chunk. A null `vtbl` is the empty body.
#[repr(C)]
#[derive(Debug)]
pub struct PhBody {
    pub vtbl: *const PhBodyVtbl,
    pub this: *mut c_void,
}

impl PhBody {
    /// The empty body (nothing to release).
    pub const EMPTY: PhBody = PhBody {
        vtbl: core::ptr::null(),
        this: core::ptr::null_mut(),
    };
}

/// The request, as WSGI's environ: borrowed for the duration of the call.
#[repr(C)]
pub struct PhRequest {
    pub struct_size: u32,
    pub method: PhStr,
    /// `http` or `https` (wsgi.url_scheme).
    pub scheme: PhStr,
    /// The mount point (SCRIPT_NAME), percent-decoded.
    pub script_name: PhStr,
    /// The rest of the path (PATH_INFO), percent-decoded; may be invalid UTF-8.
    pub path_info: PhStr,
    /// The request target's path exactly as received (not decoded).
    pub raw_path: PhStr,
    /// The raw query string, without `?`.
    pub query_string: PhStr,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub protocol: PhStr,
    pub server_name: PhStr,
    pub remote_addr: PhStr,
    pub server_port: u16,
    pub remote_port: u16,
    /// Header names are lower-case; repeated headers appear in order.
    pub headers: *const PhPair,
    pub header_count: usize,
    /// Extra environ keys set by filters upstream.
    pub extras: *const PhPair,
    pub extra_count: usize,
    /// Declared body length, or -1 when unknown (chunked).
    pub content_length: i64,
}

/// A response. The callee fills it; the receiver copies `reason` and `headers`,
/// takes `body`, then calls `release(owner)` if `release` is set.
#[repr(C)]
pub struct PhResponse {
    pub status: u16,
    /// Reason phrase; empty means the standard one for `status`.
    pub reason: PhStr,
    pub headers: *const PhPair,
    pub header_count: usize,
    pub body: PhBody,
    pub owner: *mut c_void,
    pub release: Option<unsafe extern "C" fn(owner: *mut c_void)>,
}

impl PhResponse {
    /// An unfilled response, as the caller passes it in.
    pub const fn empty() -> PhResponse {
        PhResponse {
            status: 0,
            reason: PhStr {
                ptr: core::ptr::null(),
                len: 0,
            },
            headers: core::ptr::null(),
            header_count: 0,
            body: PhBody::EMPTY,
            owner: core::ptr::null_mut(),
            release: None,
        }
    }
}

/// Where a plugin writes an error message; the host copies it during the call.
#[repr(C)]
pub struct PhErrorSink {
    pub this: *mut c_void,
    pub set: unsafe extern "C" fn(this: *mut c_void, message: PhStr),
}

/// The rest of the pipeline, handed to a filter. `call` may be made at most once per
/// request; it consumes `body` and, on [`PH_OK`], fills `out`.
#[repr(C)]
pub struct PhNext {
    pub this: *mut c_void,
    pub call: unsafe extern "C" fn(
        this: *mut c_void,
        req: *const PhRequest,
        body: PhBody,
        out: *mut PhResponse,
    ) -> i32,
}

/// Services the host offers plugins; valid for the life of the process.
#[repr(C)]
pub struct PhHost {
    pub struct_size: u32,
    pub abi_major: u16,
    pub abi_minor: u16,
    /// Log through the host's logger. `target` names the source (may be empty).
    pub log: unsafe extern "C" fn(level: i32, target: PhStr, message: PhStr),
}

/// An instance's functions. For an app `next` is null; for a filter it is set.
#[repr(C)]
pub struct PhHandlerVtbl {
    pub struct_size: u32,
    pub call: unsafe extern "C" fn(
        this: *mut c_void,
        req: *const PhRequest,
        body: PhBody,
        next: *const PhNext,
        out: *mut PhResponse,
        err: *const PhErrorSink,
    ) -> i32,
    pub destroy: unsafe extern "C" fn(this: *mut c_void),
    /// ABI 1.1: `PH_HANDLER_*` flags. Read only when `struct_size` covers it; a 1.0
    /// table ends before it, which means no flags.
    pub flags: u32,
}

/// A factory: Paste Deploy's `app_factory(global_conf, **local_conf)`.
pub type PhCreateFn = unsafe extern "C" fn(
    host: *const PhHost,
    entry: PhStr,
    global_conf: *const PhPair,
    global_count: usize,
    local_conf: *const PhPair,
    local_count: usize,
    this_out: *mut *mut c_void,
    err: *const PhErrorSink,
) -> i32;

/// One named entry of a library (`egg:LIB#NAME`).
#[repr(C)]
pub struct PhEntry {
    pub kind: u32,
    /// NUL-terminated, static.
    pub name: *const c_char,
    pub create: PhCreateFn,
    pub vtbl: *const PhHandlerVtbl,
}

/// Returned by `plughost_plugin_v1`; static, never freed.
#[repr(C)]
pub struct PhPluginDesc {
    pub magic: u32,
    pub abi_major: u16,
    pub abi_minor: u16,
    pub struct_size: u32,
    pub flags: u32,
    /// NUL-terminated strings, static; `build_info` is free text for logs.
    pub plugin_name: *const c_char,
    pub plugin_version: *const c_char,
    pub build_info: *const c_char,
    pub entries: *const PhEntry,
    pub entry_count: usize,
}

/// The `plughost_abi` symbol.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhHandshake {
    pub magic: u32,
    pub abi_major: u16,
    pub abi_minor: u16,
}

impl PhHandshake {
    /// The handshake of this SDK's ABI version.
    pub const CURRENT: PhHandshake = PhHandshake {
        magic: PH_MAGIC,
        abi_major: PH_ABI_MAJOR,
        abi_minor: PH_ABI_MINOR,
    };
}

/// Name of the handshake symbol.
pub const HANDSHAKE_SYMBOL: &[u8] = b"plughost_abi\0";
/// Name of the v1 descriptor function.
pub const DESCRIPTOR_SYMBOL_V1: &[u8] = b"plughost_plugin_v1\0";

/// Signature of `plughost_plugin_v1`.
pub type PhDescriptorFn = unsafe extern "C" fn() -> *const PhPluginDesc;

// SAFETY: these types are only ever placed in statics that point at other
// immutable statics (names, vtables, entry arrays); nothing mutates them after
// initialisation, so sharing them between threads is sound.
unsafe impl Sync for PhEntry {}
// SAFETY: as above.
unsafe impl Sync for PhPluginDesc {}
// SAFETY: a vtable is a table of function pointers in a static.
unsafe impl Sync for PhBodyVtbl {}
// SAFETY: as above.
unsafe impl Sync for PhHandlerVtbl {}
// SAFETY: the host table is immutable after creation and lives for the process.
unsafe impl Sync for PhHost {}
