use std::path::PathBuf;

use crate::core::location::Location;

use super::ini::SyntaxError;

/// What went wrong, for callers that must tell errors apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Read,
    Syntax,
    NoSection,
    Ambiguous,
    Cycle,
    BadUri,
    MissingKey,
    BadValue,
    Interpolation,
    UnknownKey,
}

/// A configuration error: always names the file, and the line, section and key
/// where they are known.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{at}: {message}")]
pub struct ConfigError {
    pub kind: ErrorKind,
    pub at: Location,
    pub message: String,
}

impl ConfigError {
    pub fn new(
        kind: ErrorKind,
        file: impl Into<PathBuf>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            kind,
            at: Location::file(file),
            message: message.into(),
        }
    }

    pub fn at(mut self, line: usize) -> ConfigError {
        self.at.line = Some(line);
        self
    }

    pub fn in_section(mut self, section: &str) -> ConfigError {
        self.at.section = Some(section.to_owned());
        self
    }

    pub fn for_key(mut self, key: &str) -> ConfigError {
        self.at.key = Some(key.to_owned());
        self
    }
}

impl From<SyntaxError> for ConfigError {
    fn from(e: SyntaxError) -> ConfigError {
        ConfigError::new(ErrorKind::Syntax, e.path, e.message).at(e.line)
    }
}
