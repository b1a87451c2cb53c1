//! The main configuration file as the loader read it, for the sections that
//! lie outside the application tree (pserve's `[loggers]`, `[handlers]`,
//! `[formatters]`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::conf::{get, Conf};
use super::ini::{IniFile, Section};
use super::interpolate::{interpolate, InterpolateError};

/// The parsed main file and the defaults its values interpolate against: its
/// `[DEFAULT]` keys, `here`, `__file__` and the command-line variables, as
/// for every section the loader resolves.
#[derive(Debug, Clone)]
pub struct MainFile {
    path: PathBuf,
    ini: Arc<IniFile>,
    /// D(F), raw (see `defaults::Defaults::raw`).
    defaults: Arc<Conf>,
}

impl MainFile {
    pub(super) fn new(path: PathBuf, ini: IniFile, defaults: Conf) -> MainFile {
        MainFile {
            path,
            ini: Arc::new(ini),
            defaults: Arc::new(defaults),
        }
    }

    /// The file's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory holding it (`here`).
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }

    pub fn section(&self, header: &str) -> Option<&Section> {
        self.ini.section(header)
    }

    /// `key` of `section` (a section of this file), interpolated as the loader
    /// interpolates a section's keys: names are looked up in the section, then
    /// in the defaults. `None` when the section lacks the key.
    pub fn value(&self, section: &Section, key: &str) -> Result<Option<String>, InterpolateError> {
        let Some(raw) = section.get(key) else {
            return Ok(None);
        };
        let lookup = |name: &str| {
            section
                .get(name)
                .or_else(|| get(&self.defaults, name))
                .map(str::to_owned)
        };
        interpolate(raw, &lookup).map(Some)
    }
}
