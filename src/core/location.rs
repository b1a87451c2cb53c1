//! Where something is in the configuration: `file:line: [section] key`, the
//! one format every message that points into a config file uses.

use std::fmt;
use std::path::{Path, PathBuf};

/// A place in a configuration file; as precise as is known.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub section: Option<String>,
    pub key: Option<String>,
}

impl Location {
    /// A whole file.
    pub fn file(file: impl Into<PathBuf>) -> Location {
        Location {
            file: file.into(),
            ..Location::default()
        }
    }

    /// A line of a file.
    pub fn file_line(file: &Path, line: usize) -> Location {
        Location::file(file).at(line)
    }

    /// A section, by the file and line of its header.
    pub fn section(file: &Path, line: usize, section: &str) -> Location {
        Location::file_line(file, line).in_section(section)
    }

    pub fn at(mut self, line: usize) -> Location {
        self.line = Some(line);
        self
    }

    pub fn in_section(mut self, section: &str) -> Location {
        self.section = Some(section.to_owned());
        self
    }

    pub fn for_key(mut self, key: &str) -> Location {
        self.key = Some(key.to_owned());
        self
    }
}

/// Something that is not an error but probably a mistake, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub at: Location,
    pub message: String,
}

impl Warning {
    pub fn new(at: Location, message: impl Into<String>) -> Warning {
        Warning {
            at,
            message: message.into(),
        }
    }
}

/// `file:line: [section] key `KEY` MESSAGE` for a key, else `LOCATION: MESSAGE`.
impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at.key {
            Some(key) => {
                let place = Location {
                    key: None,
                    ..self.at.clone()
                };
                write!(f, "{place} key `{key}` {}", self.message)
            }
            None => write!(f, "{}: {}", self.at, self.message),
        }
    }
}

/// `file:line: [section] key`, leaving out what is not known. A message
/// follows after `": "`.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(section) = &self.section {
            write!(f, ": [{section}]")?;
        }
        if let Some(key) = &self.key {
            if self.section.is_none() {
                f.write_str(":")?;
            }
            write!(f, " {key}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_what_is_known() {
        let f = Path::new("/etc/deploy.ini");
        assert_eq!(Location::file(f).to_string(), "/etc/deploy.ini");
        assert_eq!(Location::file_line(f, 3).to_string(), "/etc/deploy.ini:3");
        assert_eq!(
            Location::section(f, 3, "app:main").to_string(),
            "/etc/deploy.ini:3: [app:main]"
        );
        assert_eq!(
            Location::section(f, 3, "app:main")
                .for_key("use")
                .to_string(),
            "/etc/deploy.ini:3: [app:main] use"
        );
        assert_eq!(
            Location::file(f).for_key("x").to_string(),
            "/etc/deploy.ini: x"
        );
    }
}
