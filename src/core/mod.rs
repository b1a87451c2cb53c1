//! The bottom floor: the types every other floor shares and that import
//! nothing above them: requests, bodies, the [`Handler`](request::Handler)
//! trait, error responses, the process-wide metric counters, and the
//! configuration model (including the built-in name table).

pub mod blocking;
pub mod body;
pub mod builtin;
pub mod config;
pub mod headers;
pub mod hostport;
pub mod location;
pub mod metrics;
pub mod request;
pub mod timefmt;

pub use body::{Body, BodyError};
pub use request::{error_response, Handler, Request, Response, ResponseFuture};
