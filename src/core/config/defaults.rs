//! D(F): a file's `[DEFAULT]` keys, its `here` and `__file__`, and the keys
//! injected by whoever opened it (command-line variables, or an includer's
//! global config), each interpolated against D.

use std::collections::HashMap;
use std::path::Path;

use super::conf::{get, set, Conf};
use super::ini::IniFile;
use super::interpolate::{interpolate_within, Budget};
use super::{ConfigError, ErrorKind};

/// The defaults of one opening of a file.
#[derive(Debug, Clone)]
pub(super) struct Defaults {
    /// Raw values, for interpolating other values of the file.
    pub raw: Conf,
    /// Interpolated values.
    pub values: Conf,
    /// Lines of keys written in `[DEFAULT]` itself.
    pub lines: HashMap<String, usize>,
}

/// `%` in a path or an injected value is literal, not interpolation syntax.
fn literal(s: &str) -> String {
    s.replace('%', "%%")
}

impl Defaults {
    pub(super) fn new(
        ini: &IniFile,
        path: &Path,
        injected: &Conf,
        budget: &mut Budget,
    ) -> Result<Defaults, ConfigError> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        let mut raw: Conf = Vec::new();
        let mut lines = HashMap::new();
        if let Some(section) = ini.section("DEFAULT") {
            for e in &section.entries {
                raw.push((e.key.clone(), e.value.clone()));
                lines.insert(e.key.clone(), e.line);
            }
        }
        set(&mut raw, "here", literal(&dir.display().to_string()));
        set(&mut raw, "__file__", literal(&path.display().to_string()));
        for (k, v) in injected {
            if get(&raw, k).is_none() {
                raw.push((k.clone(), literal(v)));
            }
        }
        let mut values = Vec::with_capacity(raw.len());
        for (key, value) in &raw {
            let value =
                interpolate_within(value, &|name| get(&raw, name).map(str::to_owned), budget)
                    .map_err(|m| {
                        let mut e = ConfigError::new(ErrorKind::Interpolation, path, m.to_string())
                            .in_section("DEFAULT")
                            .for_key(key);
                        if let Some(line) = lines.get(key) {
                            e = e.at(*line);
                        }
                        e
                    })?;
            values.push((key.clone(), value));
        }
        Ok(Defaults { raw, values, lines })
    }

    /// Whether `key` is in D (and so dropped from a section's local config).
    pub(super) fn contains(&self, key: &str) -> bool {
        get(&self.values, key).is_some()
    }
}
