//! plughost: a compiled host for WSGI-style web apps and filters loaded from
//! plugin libraries and composed by a Paste-Deploy-style `deploy.ini`.
//!
//! The layers, outermost first: [`server`] speaks HTTP and builds each request's
//! environ; [`pipeline`] chains handlers; [`plugin`] loads libraries and calls
//! into them through the C ABI of `plughost-sdk`; [`config`] reads and resolves
//! the configuration. See ARCHITECTURE.md.

pub mod builtins;
pub mod check;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod plugin;
pub mod reload;
pub mod server;
pub mod timefmt;
