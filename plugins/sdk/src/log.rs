use std::sync::OnceLock;

use crate::abi::{PhHost, PhStr};

/// Severity of a log line sent to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A failure ([`crate::abi::PH_LOG_ERROR`]).
    Error = 1,
    /// Something unexpected the plugin survived ([`crate::abi::PH_LOG_WARN`]).
    Warn = 2,
    /// Normal operation worth recording ([`crate::abi::PH_LOG_INFO`]).
    Info = 3,
    /// Detail for debugging ([`crate::abi::PH_LOG_DEBUG`]).
    Debug = 4,
    /// The finest detail ([`crate::abi::PH_LOG_TRACE`]).
    Trace = 5,
}

/// The host's service table, recorded at the first factory call. The host keeps
/// it alive for the whole process, so a `&'static` is accurate.
static HOST: OnceLock<&'static PhHost> = OnceLock::new();

pub(crate) fn set_host(host: &'static PhHost) {
    let _ = HOST.set(host);
    // The plugin's own copy of the `log` crate now writes to the host; a plugin
    // that installed a logger of its own keeps it.
    if ::log::set_logger(&HostLogger).is_ok() {
        ::log::set_max_level(::log::LevelFilter::Trace);
    }
}

/// The `log` crate's backend inside a plugin: each record becomes one host log
/// line (tracing, under the host's log config) with the record's target
/// (the plugin crate's module path) as the plugin name.
struct HostLogger;

impl ::log::Log for HostLogger {
    fn enabled(&self, _: &::log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &::log::Record<'_>) {
        let level = match record.level() {
            ::log::Level::Error => Level::Error,
            ::log::Level::Warn => Level::Warn,
            ::log::Level::Info => Level::Info,
            ::log::Level::Debug => Level::Debug,
            ::log::Level::Trace => Level::Trace,
        };
        log(level, record.target(), &record.args().to_string());
    }

    fn flush(&self) {}
}

/// Log a line through the host's logger (tracing); `target` is the plugin's name.
/// Before the host has created an instance, the line goes to stderr.
pub fn log(level: Level, target: &str, message: &str) {
    match HOST.get() {
        Some(host) => crate::ffi::host_log(
            host,
            level as i32,
            PhStr::from_str(target),
            PhStr::from_str(message),
        ),
        None => eprintln!("[{level:?}] {target}: {message}"),
    }
}
