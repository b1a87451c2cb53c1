//! Log levels as config files name them: Python's `logging` names and numbers
//! (pserve's `[logger_*]`/`[handler_*]` `level`, translogger's `logging_level`).

/// A level, least to most severe, then `Off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Off,
}

/// A level name or number that is not one of Python's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown level {0:?}")]
pub(crate) struct UnknownLevel(pub String);

/// `NOTSET`/`TRACE`/`0`, `DEBUG`/`10`, `INFO`/`20`, `WARNING`/`WARN`/`30`,
/// `ERROR`/`CRITICAL`/`FATAL`/`40`/`50`, `OFF`; any case, surrounding spaces
/// ignored.
pub(crate) fn parse_level(value: &str) -> Result<LogLevel, UnknownLevel> {
    Ok(match value.trim().to_ascii_uppercase().as_str() {
        "NOTSET" | "TRACE" | "0" => LogLevel::Trace,
        "DEBUG" | "10" => LogLevel::Debug,
        "INFO" | "20" => LogLevel::Info,
        "WARNING" | "WARN" | "30" => LogLevel::Warn,
        "ERROR" | "CRITICAL" | "FATAL" | "40" | "50" => LogLevel::Error,
        "OFF" => LogLevel::Off,
        _ => return Err(UnknownLevel(value.to_owned())),
    })
}

impl LogLevel {
    /// As a tracing filter: what passes at this level.
    pub(crate) fn filter(self) -> tracing::level_filters::LevelFilter {
        use tracing::level_filters::LevelFilter;
        match self {
            LogLevel::Trace => LevelFilter::TRACE,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Off => LevelFilter::OFF,
        }
    }

    /// As the level of a `log` record; `None` for `Off` (no record has it).
    pub(crate) fn record_level(self) -> Option<log::Level> {
        Some(match self {
            LogLevel::Trace => log::Level::Trace,
            LogLevel::Debug => log::Level::Debug,
            LogLevel::Info => log::Level::Info,
            LogLevel::Warn => log::Level::Warn,
            LogLevel::Error => log::Level::Error,
            LogLevel::Off => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse_level(" warning "), Ok(LogLevel::Warn));
        assert_eq!(parse_level("WARN"), Ok(LogLevel::Warn));
        assert_eq!(parse_level("50"), Ok(LogLevel::Error));
        assert_eq!(parse_level("notset"), Ok(LogLevel::Trace));
        assert_eq!(parse_level("Off"), Ok(LogLevel::Off));
        assert_eq!(
            parse_level("loud").unwrap_err().to_string(),
            "unknown level \"loud\""
        );
        assert_eq!(LogLevel::Off.record_level(), None);
        assert_eq!(LogLevel::Info.record_level(), Some(log::Level::Info));
    }
}
