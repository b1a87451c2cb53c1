//! # plughost SDK
//!
//! Write web applications and filters (middleware) for the `plughost` host as
//! ordinary Rust, built as a `cdylib`, and mount them from `deploy.ini`.
//!
//! ## A plugin in ten lines
//! ```
//! #![deny(unsafe_code)] // plugin code needs none, and export_plugin! is fine with that
//! use plughost_sdk::{App, Config, Error, Request, Response};
//!
//! struct Hello { greeting: String }
//!
//! impl App for Hello {
//!     fn new(config: &Config) -> Result<Self, Error> {
//!         Ok(Hello { greeting: config.get("greeting").unwrap_or("Hello, world!").to_owned() })
//!     }
//!     fn call(&self, _req: Request) -> Result<Response, Error> {
//!         Ok(Response::new(200).header("Content-Type", "text/plain").body(self.greeting.clone()))
//!     }
//! }
//!
//! plughost_sdk::export_plugin!(name: "hello", apps: { "main" => Hello });
//! # fn main() {
//! #     // The app is plain Rust: call it without a host.
//! #     let hello = Hello::new(&Config::default()).unwrap();
//! #     let resp = hello.call(Request::builder().path("/").build()).unwrap();
//! #     assert_eq!(resp.body.into_bytes().unwrap(), b"Hello, world!");
//! # }
//! ```
//!
//! `Cargo.toml`:
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//! [dependencies]
//! plughost-sdk = { path = "…/plugins/sdk" }
//! ```
//! Build with `cargo build --release`; the library is `target/release/libhello.so`
//! (dashes in the crate name become underscores). Mount it in `deploy.ini`:
//! ```ini
//! [app:main]
//! ; finds libhello.so on the plugin path, entry "main"
//! use = egg:hello
//! greeting = Hi there
//! ```
//! `egg:NAME#ENTRY` picks another entry of the same library; `lib:path/to/libx.so#ENTRY`
//! names a file relative to the config file. The host searches `PLUGHOST_PLUGIN_PATH`
//! (`:`-separated), then `plugin_path` in `[DEFAULT]`, then `target/release` and
//! `target/debug` beside the config file, then the directory of the `plughost`
//! binary, then `../lib/plughost` beside it (the host's README lists the order).
//! (Paste Deploy has no inline comments: a ` ;` after a value is part of it.)
//!
//! ## Filters
//! A [`Filter`] gets the request and a [`Next`] handle for the rest of the pipeline.
//! It may change the request, call `next` once or not at all (answering itself), and
//! change or replace the response. See the `tag` plugin for a complete example.
//!
//! ## Routing
//! An app with more than one URL can dispatch with a [`Router`]: method + path
//! patterns (`/items/{id}`) matched against `path_info`, with the captures in
//! [`Params`], automatic 404 and 405 (with `Allow`), and a state `S` its handlers
//! share. Keep the router and the state in the app; its `call` is then
//! `self.router.call(&self.state, req)` (see [`Router`] for a complete app).
//!
//! ## Reading requests, refusing them, answering them
//! [`Request`] has helpers for the usual parts, with no dependencies:
//! [`Request::query_param`] and [`Request::query_pairs`] (decoded query string),
//! [`Request::form`] (an urlencoded POST body), [`Request::cookies`], and
//! [`Request::read_body_limited`] (the body, with a size limit). Their errors are
//! status errors (413, 415, ...) that the SDK answers itself, so `?` is enough:
//! ```
//! use plughost_sdk::{Error, Request, Response};
//!
//! fn subscribe(mut req: Request) -> Result<Response, Error> {
//!     if req.method != "POST" {
//!         return Err(Error::method_not_allowed("use POST").with_header("Allow", "POST"));
//!     }
//!     let form = req.form(8 * 1024)?; // 415 or 413 on a bad body
//!     let email = form.iter().find(|(k, _)| k == "email").map(|(_, v)| v.as_str());
//!     let email = email.ok_or_else(|| Error::unprocessable("the form needs an email"))?;
//!     Ok(Response::text(200, format!("subscribed {email}\n")))
//! }
//!
//! let req = Request::builder()
//!     .method("POST")
//!     .header("Content-Type", "application/x-www-form-urlencoded")
//!     .body("email=ada%40example.org")
//!     .build();
//! assert_eq!(subscribe(req).unwrap().body.into_bytes().unwrap(), b"subscribed ada@example.org\n");
//! let err = subscribe(Request::builder().build()).unwrap_err();
//! assert_eq!(err.to_response().unwrap().status, 405);
//! ```
//!
//! With the `json` cargo feature (`plughost-sdk = { path = "…", features = ["json"] }`,
//! which brings in `serde` and `serde_json`), `Request::json` reads a JSON body
//! into any `serde::de::DeserializeOwned` type (415, 413, 400 or 422 on a bad body)
//! and `Response::json` answers with `application/json`. Without it the SDK's only
//! dependency is `log` (plugins' `log::info!` goes to the host's log).
//!
//! ## Testing without a host
//! Plugin code is ordinary Rust: build a [`Request`] with [`Request::builder`], a
//! [`Config`] with [`Config::new`], and stand in for the rest of the pipeline with
//! [`Next::from_fn`]:
//! ```
//! use plughost_sdk::{Config, Error, Filter, Next, Request, Response};
//!
//! /// Answers 403 for paths under `deny_prefix`, passes everything else on.
//! struct Deny { prefix: String }
//!
//! impl Filter for Deny {
//!     fn new(config: &Config) -> Result<Self, Error> {
//!         Ok(Deny { prefix: config.require("deny_prefix")?.to_owned() })
//!     }
//!     fn call(&self, req: Request, next: Next<'_>) -> Result<Response, Error> {
//!         if req.path_info.starts_with(&self.prefix) {
//!             return Ok(Response::new(403));
//!         }
//!         next.call(req)
//!     }
//! }
//!
//! // In a plugin this would be a #[test] fn.
//! let config = Config::new("main", vec![], vec![("deny_prefix".into(), "/private".into())]);
//! let deny = Deny::new(&config).unwrap();
//! let downstream = |req: Request| Ok(Response::new(200).body(req.path_info));
//!
//! let resp = deny.call(Request::builder().path("/private/x").build(), Next::from_fn(downstream)).unwrap();
//! assert_eq!(resp.status, 403);
//! let resp = deny.call(Request::builder().path("/public").build(), Next::from_fn(downstream)).unwrap();
//! assert_eq!((resp.status, resp.body.into_bytes().unwrap()), (200, b"/public".to_vec()));
//! ```
//!
//! ## The contract
//! - `new` receives the section's configuration ([`Config`]: Paste Deploy's
//!   `global_conf` and `local_conf`); an `Err` stops the host's start-up with your
//!   message, the file and the section.
//! - `call` runs on many threads at once (the host's worker pool), so instances are
//!   `Send + Sync`; keep per-request state on the stack. Calls are synchronous and
//!   may block; the host never runs them on its async runtime.
//! - An `Err` from `call` is answered in one of two ways. A status error
//!   ([`Error::status`], [`Error::not_found`], [`Error::bad_request`], ...) is
//!   answered by the SDK with that status and a short text body (its message is
//!   for the client). A plain error ([`Error::new`], or `?` on another error type)
//!   gets the host's 500 and its message goes to the host's log.
//! - A panic is caught at the boundary: that request gets a 500 and the host keeps
//!   serving. Build plugins with `panic = "unwind"` (the default); with `abort` a
//!   panic ends the whole process, and the host warns at load time.
//! - Bodies stream both ways: read the request with [`RequestBody`] (`std::io::Read`),
//!   answer with [`Body::from_reader`] or [`Body::from_chunks`] for large or slow output.
//! - The raw C ABI is in [`abi`] and `include/plughost.h` (for C authors); the SDK
//!   hides it completely, so plugin code needs no `unsafe`.

// Every public item says what it is and why a plugin author would use it.
#![deny(missing_docs)]
// All `unsafe` lives in `abi` and `ffi` (each block with a `// SAFETY:` comment);
// everything else is safe code over their safe functions.
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[allow(unsafe_code)]
pub mod abi;
mod body;
mod config;
mod error;
#[doc(hidden)]
#[allow(unsafe_code)]
pub mod ffi;
mod helpers;
mod log;
mod request;
mod response;
mod router;

pub use body::{Body, RequestBody};
pub use config::Config;
pub use error::Error;
pub use log::{log, Level};
pub use request::{Next, Request, RequestBuilder};
pub use response::Response;
pub use router::{Params, Router};

/// An application: the end of a pipeline (a WSGI app).
pub trait App: Send + Sync + Sized + 'static {
    /// Build an instance from the section's configuration.
    fn new(config: &Config) -> Result<Self, Error>;
    /// Answer one request.
    fn call(&self, req: Request<'_>) -> Result<Response, Error>;

    /// Set to `true` only if `call` never blocks: no file or network I/O, no
    /// sleeping, no lock held by slow code, microseconds of work (and the same for
    /// producing the first 64 KiB of the response body). The host then runs
    /// body-less requests on its event loop instead of a worker thread, which saves
    /// two thread hand-offs per request; `request_timeout` cannot apply there. A
    /// call that takes longer than the host's limit sends the instance back to the
    /// worker pool for good, with a warning.
    const NONBLOCKING: bool = false;
}

/// A filter: middleware wrapping the rest of the pipeline (a WSGI middleware).
pub trait Filter: Send + Sync + Sized + 'static {
    /// Build an instance from the section's configuration.
    fn new(config: &Config) -> Result<Self, Error>;
    /// Handle one request; call `next.call(req)` at most once to pass it on.
    fn call(&self, req: Request<'_>, next: Next<'_>) -> Result<Response, Error>;
}

/// Export a plugin library: its name and its named app and filter entries.
///
/// ```
/// # #![deny(unsafe_code)]
/// # use plughost_sdk::{App, Config, Error, Filter, Next, Request, Response};
/// # struct Hello;
/// # impl App for Hello {
/// #     fn new(_: &Config) -> Result<Self, Error> { Ok(Hello) }
/// #     fn call(&self, _: Request) -> Result<Response, Error> { Ok(Response::new(200)) }
/// # }
/// # struct Other;
/// # impl App for Other {
/// #     fn new(_: &Config) -> Result<Self, Error> { Ok(Other) }
/// #     fn call(&self, _: Request) -> Result<Response, Error> { Ok(Response::new(204)) }
/// # }
/// # struct Gzip;
/// # impl Filter for Gzip {
/// #     fn new(_: &Config) -> Result<Self, Error> { Ok(Gzip) }
/// #     fn call(&self, req: Request, next: Next<'_>) -> Result<Response, Error> { next.call(req) }
/// # }
/// plughost_sdk::export_plugin!(
///     name: "demo",
///     apps: { "main" => Hello, "other" => Other },
///     filters: { "gzip" => Gzip },
/// );
/// # fn main() {
/// #     // The two symbols the host looks for.
/// #     assert_eq!(plughost_abi, plughost_sdk::abi::PhHandshake::CURRENT);
/// #     assert!(!plughost_plugin_v1().is_null());
/// # }
/// ```
/// Both `apps` and `filters` are optional. Entry names are what `egg:demo#NAME` picks;
/// `main` is the default.
///
/// It expands to two `#[no_mangle]` items in your crate, `plughost_abi` and
/// `plughost_plugin_v1`; so use it once per library, at the crate's top level. It
/// compiles under `#![deny(unsafe_code)]` (see the example above).
///
/// An app and a filter may share a name (`use = egg:demo` then means the app
/// in an `[app:]` section and the filter in a `[filter:]` section), but two
/// entries of one kind may not; this does not compile:
/// ```compile_fail
/// # use plughost_sdk::{App, Config, Error, Request, Response};
/// # struct A;
/// # impl App for A {
/// #     fn new(_: &Config) -> Result<Self, Error> { Ok(A) }
/// #     fn call(&self, _: Request) -> Result<Response, Error> { Ok(Response::new(200)) }
/// # }
/// plughost_sdk::export_plugin!(name: "dup", apps: { "main" => A, "main" => A });
/// ```
#[macro_export]
macro_rules! export_plugin {
    (
        name: $name:literal
        $(, apps: { $($app_name:literal => $app:ty),* $(,)? })?
        $(, filters: { $($filter_name:literal => $filter:ty),* $(,)? })?
        $(,)?
    ) => {
        #[allow(non_upper_case_globals)]
        #[unsafe(no_mangle)]
        pub static plughost_abi: $crate::abi::PhHandshake = $crate::abi::PhHandshake::CURRENT;

        // Two entries of one kind may not share a name (an app and a filter may).
        const _: () = assert!(
            $crate::ffi::distinct_names(&[$($($app_name),*)?]),
            "export_plugin!: two apps share a name"
        );
        const _: () = assert!(
            $crate::ffi::distinct_names(&[$($($filter_name),*)?]),
            "export_plugin!: two filters share a name"
        );

        #[unsafe(no_mangle)]
        pub extern "C" fn plughost_plugin_v1() -> *const $crate::abi::PhPluginDesc {
            static ENTRIES: &[$crate::abi::PhEntry] = &[
                $($($crate::ffi::app_entry::<$app>(concat!($app_name, "\0").as_ptr() as *const _, &$crate::ffi::AppGlue::<$app>::VTBL),)*)?
                $($($crate::ffi::filter_entry::<$filter>(concat!($filter_name, "\0").as_ptr() as *const _, &$crate::ffi::FilterGlue::<$filter>::VTBL),)*)?
            ];
            static DESC: $crate::abi::PhPluginDesc = $crate::ffi::descriptor(
                concat!($name, "\0").as_ptr() as *const _,
                concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const _,
                ENTRIES,
            );
            &DESC
        }
    };
}
