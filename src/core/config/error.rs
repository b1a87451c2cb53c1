use std::fmt;
use std::path::PathBuf;

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
pub struct ConfigError {
    pub kind: ErrorKind,
    pub file: PathBuf,
    pub line: Option<usize>,
    pub section: Option<String>,
    pub key: Option<String>,
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
            file: file.into(),
            line: None,
            section: None,
            key: None,
            message: message.into(),
        }
    }

    pub fn at(mut self, line: usize) -> ConfigError {
        self.line = Some(line);
        self
    }

    pub fn in_section(mut self, section: &str) -> ConfigError {
        self.section = Some(section.to_owned());
        self
    }

    pub fn for_key(mut self, key: &str) -> ConfigError {
        self.key = Some(key.to_owned());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(":")?;
        if let Some(section) = &self.section {
            write!(f, " [{section}]")?;
        }
        if let Some(key) = &self.key {
            write!(f, " {key}:")?;
        } else if self.section.is_some() {
            f.write_str(":")?;
        }
        write!(f, " {}", self.message)
    }
}

impl From<SyntaxError> for ConfigError {
    fn from(e: SyntaxError) -> ConfigError {
        ConfigError::new(ErrorKind::Syntax, e.path, e.message).at(e.line)
    }
}
