//! The bottom floor: the types every other floor shares and that import
//! nothing above them: requests, bodies, the [`Handler`](request::Handler)
//! trait, error responses, the process-wide metric counters, and the
//! configuration model (including the built-in name table).

pub(crate) mod blocking;
pub mod body;
pub(crate) mod builtin;
pub(crate) mod config;
pub(crate) mod headers;
pub(crate) mod hostport;
pub(crate) mod location;
pub(crate) mod metrics;
pub(crate) mod read_ahead;
pub(crate) mod request;
pub(crate) mod socket;
pub(crate) mod timefmt;

pub use body::{Body, BodyError};
pub(crate) use request::error_response;
pub use request::{Handler, Head, Request, Response, ResponseFuture};
