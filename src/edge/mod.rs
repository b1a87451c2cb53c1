//! The top floor: what faces the outside world: the HTTP server, process
//! logging and the text `check` prints. `main.rs` sits beside it.

pub mod check;
mod log_names;
pub mod logging;
pub(crate) mod server;
