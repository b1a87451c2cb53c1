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
//! # Which structs may grow
//! A struct can gain fields in a minor version only if its reader can tell how much
//! of it the writer knew: it starts with `struct_size` (the size the writer was
//! built with), and the reader ignores fields that end beyond it.
//! - Growable, with `struct_size`: [`PhBodyVtbl`], [`PhRequest`], [`PhHost`],
//!   [`PhHandlerVtbl`], [`PhPluginDesc`].
//! - Frozen for all of ABI 1 (each says why): [`PhStr`], [`PhPair`], [`PhBody`],
//!   [`PhResponse`], [`PhErrorSink`], [`PhNext`], [`PhEntry`], [`PhHandshake`].
//!   Changing one of them needs a new major version (a new descriptor symbol).
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

/// Log level for [`PhHost::log`]: a failure.
pub const PH_LOG_ERROR: i32 = 1;
/// Log level for [`PhHost::log`]: something unexpected that the plugin survived.
pub const PH_LOG_WARN: i32 = 2;
/// Log level for [`PhHost::log`]: normal operation worth recording.
pub const PH_LOG_INFO: i32 = 3;
/// Log level for [`PhHost::log`]: detail for debugging.
pub const PH_LOG_DEBUG: i32 = 4;
/// Log level for [`PhHost::log`]: the finest detail.
pub const PH_LOG_TRACE: i32 = 5;

/// A borrowed byte string (not NUL-terminated; may be empty with a null `ptr`).
///
/// Frozen: it is passed by value in function signatures and laid out in every
/// struct and array that holds strings, so its size is part of all of them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PhStr {
    /// The first byte; may be null when `len` is 0.
    pub ptr: *const u8,
    /// The number of bytes.
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
    #[inline]
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
///
/// Frozen: pairs travel in arrays (`*const PhPair` plus a count), so their size is
/// the arrays' stride, which a reader must know without asking.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PhPair {
    /// The name (a header name, a config key).
    pub name: PhStr,
    /// The value.
    pub value: PhStr,
}

/// Operations of a body. `next` fills `chunk` (borrowed until the next call or
/// `release`) and returns [`PH_OK`], [`PH_EOF`] or a negative error.
///
/// May grow: new functions go at the end, read only when `struct_size` covers them.
#[repr(C)]
pub struct PhBodyVtbl {
    /// `size_of` this table as its writer knew it.
    pub struct_size: u32,
    /// Fill `chunk` with the next piece: [`PH_OK`], [`PH_EOF`] or a negative error.
    pub next: unsafe extern "C" fn(this: *mut c_void, chunk: *mut PhStr) -> i32,
    /// Exact remaining length if known, else -1.
    pub size_hint: unsafe extern "C" fn(this: *mut c_void) -> i64,
    /// Free the body; called exactly once by its final holder.
    pub release: unsafe extern "C" fn(this: *mut c_void),
}

/// A streamed body, pulled chunk by chunk. A null `vtbl` is the empty body.
///
/// Frozen: a handle passed by value (in calls and inside [`PhResponse`]); what a
/// body can do grows through [`PhBodyVtbl`], which carries `struct_size`.
#[repr(C)]
#[derive(Debug)]
pub struct PhBody {
    /// The body's functions; null for the empty body.
    pub vtbl: *const PhBodyVtbl,
    /// The body's state, passed to every function of `vtbl`.
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
///
/// May grow: new fields go at the end, read only when `struct_size` covers them.
#[repr(C)]
pub struct PhRequest {
    /// `size_of` this struct as its writer knew it.
    pub struct_size: u32,
    /// The request method (`GET`, `POST`, ...).
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
    /// The server's host name (SERVER_NAME).
    pub server_name: PhStr,
    /// The client's address (REMOTE_ADDR).
    pub remote_addr: PhStr,
    /// The server's port (SERVER_PORT).
    pub server_port: u16,
    /// The client's port.
    pub remote_port: u16,
    /// Header names are lower-case; repeated headers appear in order.
    pub headers: *const PhPair,
    /// The number of pairs at `headers`.
    pub header_count: usize,
    /// Extra environ keys set by filters upstream.
    pub extras: *const PhPair,
    /// The number of pairs at `extras`.
    pub extra_count: usize,
    /// Declared body length, or -1 when unknown (chunked).
    pub content_length: i64,
}

/// A response. The callee fills it; the receiver copies `reason` and `headers`,
/// takes `body`, then calls `release(owner)` if `release` is set.
///
/// Frozen: the receiver allocates it and the callee writes into it, and it has no
/// `struct_size`, so a callee built with a larger struct would write past an older
/// receiver's. New response data needs a new major version.
#[repr(C)]
pub struct PhResponse {
    /// The HTTP status code.
    pub status: u16,
    /// Reason phrase; empty means the standard one for `status`.
    pub reason: PhStr,
    /// The response headers, in order (storage owned by `owner`).
    pub headers: *const PhPair,
    /// The number of pairs at `headers`.
    pub header_count: usize,
    /// The body; the receiver takes it over (and later releases it).
    pub body: PhBody,
    /// The callee's storage behind `reason` and `headers`.
    pub owner: *mut c_void,
    /// Frees `owner`; called once by the receiver after copying. May be `None`.
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
///
/// Frozen: a two-word handle the host builds per call; a plugin has no way to
/// check its size, so new host services go into [`PhHost`] instead.
#[repr(C)]
pub struct PhErrorSink {
    /// The host's state, passed back to `set`.
    pub this: *mut c_void,
    /// Record `message` (copied before returning).
    pub set: unsafe extern "C" fn(this: *mut c_void, message: PhStr),
}

/// The rest of the pipeline, handed to a filter. `call` may be made at most once per
/// request; it consumes `body` and, on [`PH_OK`], fills `out`.
///
/// Frozen: a two-word handle the host builds per call; a plugin has no way to
/// check its size, so new host services go into [`PhHost`] instead.
#[repr(C)]
pub struct PhNext {
    /// The host's state, passed back to `call`.
    pub this: *mut c_void,
    /// Run the rest of the pipeline on `req` and `body`, filling `out` on [`PH_OK`].
    pub call: unsafe extern "C" fn(
        this: *mut c_void,
        req: *const PhRequest,
        body: PhBody,
        out: *mut PhResponse,
    ) -> i32,
}

/// Services the host offers plugins; valid for the life of the process.
///
/// May grow: new services go at the end, read only when `struct_size` covers them.
#[repr(C)]
pub struct PhHost {
    /// `size_of` this table as the host knew it.
    pub struct_size: u32,
    /// The host's ABI major version.
    pub abi_major: u16,
    /// The host's ABI minor version.
    pub abi_minor: u16,
    /// Log through the host's logger. `target` names the source (may be empty).
    pub log: unsafe extern "C" fn(level: i32, target: PhStr, message: PhStr),
}

/// An instance's functions. For an app `next` is null; for a filter it is set.
///
/// May grow (1.1 added `flags`): new fields go at the end, read only when
/// `struct_size` covers them.
#[repr(C)]
pub struct PhHandlerVtbl {
    /// `size_of` this table as the plugin knew it (a 1.0 table ends before `flags`).
    pub struct_size: u32,
    /// Answer one request: consume `body`, fill `out` on [`PH_OK`], or report
    /// through `err` and return a negative code.
    pub call: unsafe extern "C" fn(
        this: *mut c_void,
        req: *const PhRequest,
        body: PhBody,
        next: *const PhNext,
        out: *mut PhResponse,
        err: *const PhErrorSink,
    ) -> i32,
    /// Free the instance, once, after its last call.
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
///
/// Frozen: entries form an array whose stride the host must know; per-entry
/// additions go into [`PhHandlerVtbl`] (which has `struct_size`), as 1.1's
/// `flags` did.
#[repr(C)]
pub struct PhEntry {
    /// [`PH_KIND_APP`] or [`PH_KIND_FILTER`].
    pub kind: u32,
    /// NUL-terminated, static.
    pub name: *const c_char,
    /// The factory that creates instances of this entry.
    pub create: PhCreateFn,
    /// The functions of every instance `create` returns.
    pub vtbl: *const PhHandlerVtbl,
}

/// Returned by `plughost_plugin_v1`; static, never freed.
///
/// May grow: new fields go at the end, read only when `struct_size` covers them.
#[repr(C)]
pub struct PhPluginDesc {
    /// [`PH_MAGIC`].
    pub magic: u32,
    /// The plugin's ABI major version.
    pub abi_major: u16,
    /// The plugin's ABI minor version.
    pub abi_minor: u16,
    /// `size_of` this struct as the plugin knew it.
    pub struct_size: u32,
    /// `PH_FLAG_*` bits, e.g. [`PH_FLAG_PANIC_UNWIND`].
    pub flags: u32,
    /// The library's name (NUL-terminated, static), for messages and logs.
    pub plugin_name: *const c_char,
    /// The library's version (NUL-terminated, static), for logs.
    pub plugin_version: *const c_char,
    /// Free text for logs, e.g. the SDK that built it (NUL-terminated, static).
    pub build_info: *const c_char,
    /// The library's entries.
    pub entries: *const PhEntry,
    /// The number of entries at `entries`.
    pub entry_count: usize,
}

/// The `plughost_abi` symbol.
///
/// Frozen forever (across major versions too): it is how a host tells which
/// version a library speaks before reading anything else, so its layout can
/// never depend on that version.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhHandshake {
    /// [`PH_MAGIC`].
    pub magic: u32,
    /// The plugin's ABI major version.
    pub abi_major: u16,
    /// The plugin's ABI minor version.
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
