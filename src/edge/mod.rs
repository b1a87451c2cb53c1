//! The top floor: what faces the outside world: the HTTP server, process
//! logging, the text `check` prints, and `cache warm` and `cache purge --soft`
//! (through the in-process request helper). `main.rs` sits beside it.

pub mod check;
pub mod handover;
pub(crate) mod in_process;
mod log_names;
pub mod logging;
mod python_origin;
pub(crate) mod server;
pub(crate) mod soft_purge;
pub(crate) mod warm;
