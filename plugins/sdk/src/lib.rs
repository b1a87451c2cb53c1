//! # plughost SDK
//!
//! Write web applications and filters (middleware) for the `plughost` host as
//! ordinary Rust, built as a `cdylib`, and mount them from `deploy.ini`.
//!
//! ## A plugin in ten lines
//! ```ignore
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
//! use = egg:hello          ; finds libhello.so on the plugin path, entry "main"
//! greeting = Hi there
//! ```
//! `egg:NAME#ENTRY` picks another entry of the same library; `lib:path/to/libx.so#ENTRY`
//! names a file relative to the config file. The host searches `PLUGHOST_PLUGIN_PATH`,
//! then `plugin_path` in `[DEFAULT]`, then `target/release` and `target/debug` beside
//! the config file.
//!
//! ## Filters
//! A [`Filter`] gets the request and a [`Next`] handle for the rest of the pipeline.
//! It may change the request, call `next` once or not at all (answering itself), and
//! change or replace the response. See the `tag` plugin for a complete example.
//!
//! ## The contract
//! - `new` receives the section's configuration ([`Config`]: Paste Deploy's
//!   `global_conf` and `local_conf`); an `Err` stops the host's start-up with your
//!   message, the file and the section.
//! - `call` runs on many threads at once (the host's worker pool), so instances are
//!   `Send + Sync`; keep per-request state on the stack. Calls are synchronous and
//!   may block; the host never runs them on its async runtime.
//! - A panic is caught at the boundary: that request gets a 500 and the host keeps
//!   serving. Build plugins with `panic = "unwind"` (the default); with `abort` a
//!   panic ends the whole process, and the host warns at load time.
//! - Bodies stream both ways: read the request with [`RequestBody`] (`std::io::Read`),
//!   answer with [`Body::from_reader`] or [`Body::from_chunks`] for large or slow output.
//! - The raw C ABI is in [`abi`] and `include/plughost.h` (for C authors); the SDK
//!   hides it completely, so plugin code needs no `unsafe`.

pub mod abi;
mod body;
mod config;
mod error;
#[doc(hidden)]
pub mod ffi;
mod log;
mod request;
mod response;

pub use body::{Body, RequestBody};
pub use config::Config;
pub use error::Error;
pub use log::{log, Level};
pub use request::{Next, Request, RequestBuilder};
pub use response::Response;

/// An application: the end of a pipeline (a WSGI app).
pub trait App: Send + Sync + Sized + 'static {
    /// Build an instance from the section's configuration.
    fn new(config: &Config) -> Result<Self, Error>;
    /// Answer one request.
    fn call(&self, req: Request) -> Result<Response, Error>;

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
    fn call(&self, req: Request, next: Next<'_>) -> Result<Response, Error>;
}

/// Export a plugin library: its name and its named app and filter entries.
///
/// ```ignore
/// plughost_sdk::export_plugin!(
///     name: "demo",
///     apps: { "main" => Hello, "other" => Other },
///     filters: { "gzip" => Gzip },
/// );
/// ```
/// Both `apps` and `filters` are optional. Entry names are what `egg:demo#NAME` picks;
/// `main` is the default.
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
