//! What a built-in component is: its names, where it fits in a configuration
//! and how it is made. The table of built-ins itself lives with the built-ins
//! (`components::builtins::ALL`); the configuration model resolves names
//! against whichever table it is given, and the pipeline builder calls the
//! constructor it finds there. Adding a built-in is one module and one line.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::config::urlmap::MountKey;
use super::config::{Component, Node};
use super::location::Location;
use super::request::Handler;

/// A built-in component: a row of the built-in table.
pub struct Builtin {
    /// The entry under `egg:plughost`, e.g. `cache` for `egg:plughost#cache`.
    pub name: &'static str,
    /// Other `(distribution, entry)` names that mean this built-in, e.g.
    /// `("wsgi_cache", "middleware")`. Distributions match case-insensitively.
    pub aliases: &'static [(&'static str, &'static str)],
    /// How the built-in is made, which also says where it fits.
    pub make: Make,
}

/// How a built-in is made from its configuration.
#[derive(Clone, Copy)]
pub enum Make {
    /// An app: from its section alone.
    App(fn(&Component) -> Result<Arc<dyn Handler>, SettingError>),
    /// A filter: from its section, the tree below it and that tree's handler.
    Filter(fn(FilterSite<'_>) -> Result<Arc<dyn Handler>, SettingError>),
    /// A composite (urlmap): from its mounts, already built.
    Composite(MakeComposite),
    /// A server (`[server:]` sections): run by the edge, never built into a pipeline.
    Server,
}

/// One built mount of a composite: its key and its app.
pub(crate) type Mounted = (MountKey, Arc<dyn Handler>);

/// A composite's constructor: its mounts and its not-found app, built.
pub(crate) type MakeComposite = fn(Vec<Mounted>, Option<Arc<dyn Handler>>) -> Arc<dyn Handler>;

/// Where a built-in fits in a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    App,
    Composite,
    Filter,
    Server,
}

/// What a filter's constructor is given.
pub struct FilterSite<'a> {
    /// The filter's own section.
    pub component: &'a Component,
    /// The configuration tree the filter wraps (for placement checks).
    pub inner: &'a Node,
    /// The handler built from `inner`.
    pub next: Arc<dyn Handler>,
    /// Directories claimed by the components built so far in this pipeline.
    pub claims: &'a mut DirClaims,
}

/// A bad setting of one component, found when the component is made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SettingError {
    /// The key at fault, when one is.
    pub key: Option<String>,
    pub message: String,
}

impl SettingError {
    /// A problem with the section as a whole.
    pub fn new(message: impl Into<String>) -> SettingError {
        SettingError {
            key: None,
            message: message.into(),
        }
    }

    /// A problem with one key.
    pub fn key(key: &str, message: impl Into<String>) -> SettingError {
        SettingError {
            key: Some(key.to_owned()),
            message: message.into(),
        }
    }
}

/// A message about the section as a whole (helpers that know no key).
impl From<String> for SettingError {
    fn from(message: String) -> SettingError {
        SettingError::new(message)
    }
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{key}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl Builtin {
    /// Where the built-in fits.
    pub fn role(&self) -> Role {
        match self.make {
            Make::App(_) => Role::App,
            Make::Filter(_) => Role::Filter,
            Make::Composite(_) => Role::Composite,
            Make::Server => Role::Server,
        }
    }

    /// The canonical URI, `egg:plughost#NAME`.
    pub fn uri(&self) -> String {
        format!("egg:plughost#{}", self.name)
    }

    /// Whether `egg:DIST#ENTRY` names this built-in.
    fn is_named(&self, dist: &str, entry: &str) -> bool {
        (dist.eq_ignore_ascii_case("plughost") && entry == self.name)
            || self
                .aliases
                .iter()
                .any(|(d, e)| d.eq_ignore_ascii_case(dist) && *e == entry)
    }
}

impl fmt::Debug for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Builtin({})", self.name)
    }
}

/// Two rows are the same built-in when they have the same name.
impl PartialEq for Builtin {
    fn eq(&self, other: &Builtin) -> bool {
        self.name == other.name
    }
}

impl Eq for Builtin {}

/// The table of built-ins a configuration is resolved against.
#[derive(Debug, Clone, Copy, Default)]
pub struct Catalog(pub &'static [Builtin]);

impl Catalog {
    /// The built-in named by `egg:DIST#ENTRY`, if any.
    pub fn lookup(self, dist: &str, entry: &str) -> Option<&'static Builtin> {
        self.0.iter().find(|b| b.is_named(dist, entry))
    }

    /// The built-in `egg:plughost#NAME` (for the in-process tests).
    #[cfg(test)]
    pub(crate) fn named(self, name: &str) -> Option<&'static Builtin> {
        self.lookup("plughost", name)
    }

    /// Entries of a built-in distribution, for error messages.
    pub fn entries_of(self, dist: &str) -> Vec<&'static str> {
        let mut out = Vec::new();
        for b in self.0 {
            if dist.eq_ignore_ascii_case("plughost") {
                out.push(b.name);
            }
            for (d, e) in b.aliases {
                if d.eq_ignore_ascii_case(dist) {
                    out.push(*e);
                }
            }
        }
        out
    }
}

/// The directories claimed by the components of one pipeline, so two
/// components that keep files in one directory must agree on how.
#[derive(Default)]
pub struct DirClaims {
    claims: Vec<Claim>,
}

struct Claim {
    dir: PathBuf,
    mapping: String,
    section: String,
    at: Location,
}

/// Another section already keeps files in a directory, differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other section.
    pub section: String,
    /// Where the other section is defined.
    pub at: Location,
    /// How the other section maps files.
    pub mapping: String,
}

impl DirClaims {
    /// Record that section `c` keeps files in `dir` (canonical) with
    /// `mapping`; refuse it if another section keeps files there another way.
    pub fn claim(
        &mut self,
        c: &Component,
        dir: PathBuf,
        mapping: String,
    ) -> Result<(), Box<Conflict>> {
        if let Some(other) = self.claims.iter().find(|o| o.dir == dir) {
            if other.mapping != mapping {
                return Err(Box::new(Conflict {
                    section: other.section.clone(),
                    at: other.at.clone(),
                    mapping: other.mapping.clone(),
                }));
            }
        }
        self.claims.push(Claim {
            dir,
            mapping,
            section: c.section.clone(),
            at: Location::file_line(&c.file, c.line),
        });
        Ok(())
    }
}
