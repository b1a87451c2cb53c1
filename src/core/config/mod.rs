//! Reading a Paste-Deploy-style `deploy.ini` into a resolved tree of components.
//!
//! Resolution is separate from creation: this module reads files, finds sections,
//! interpolates values and computes each component's `global_conf` and
//! `local_conf`, and never loads a library or calls a factory. The pipeline
//! builder turns the tree into running handlers.

mod conf;
mod defaults;
pub(crate) mod error;
pub mod ini;
pub mod interpolate;
pub(crate) mod level;
pub(crate) mod lint;
mod lookup;
pub(crate) mod main_file;
mod reference;
mod resolve;
pub(crate) mod server;
pub(crate) mod server_alias;
pub(crate) mod trusted_proxy;
pub(crate) mod urlmap;

use std::path::PathBuf;

use crate::core::builtin::{Builtin, Role};
use crate::core::location::{Location, Warning};

pub use error::{ConfigError, ErrorKind};
pub use main_file::MainFile;
pub(crate) use resolve::load;
#[cfg(test)]
pub(crate) use resolve::read_main;
pub(crate) use server::ServerConfig;

/// Everything a configuration file describes.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The application tree to serve.
    pub app: Node,
    /// The server section's settings.
    pub server: ServerConfig,
    /// Every file read, main file first (for `check` and reloads).
    pub files: Vec<PathBuf>,
    /// Directories the config adds to the plugin search path, in order.
    pub plugin_dirs: Vec<PathBuf>,
    /// Things that are not errors but probably mistakes.
    pub warnings: Vec<Warning>,
    /// Plugins that `require =` keys say must be loadable, with where they were named.
    pub requires: Vec<(String, Location)>,
    /// The main file as read, for its sections outside the app tree (logging).
    pub main: MainFile,
}

/// A node of the application tree.
#[derive(Debug, Clone)]
pub enum Node {
    /// An application.
    App(Component),
    /// A filter wrapping the rest of the tree.
    Filter { filter: Component, inner: Box<Node> },
    /// An urlmap composite: path prefixes (and domains) mapped to apps.
    UrlMap {
        map: Component,
        mounts: Vec<Mount>,
        not_found: Option<Box<Node>>,
    },
}

/// One entry of an urlmap.
#[derive(Debug, Clone)]
pub struct Mount {
    pub key: urlmap::MountKey,
    /// The line of the key, for messages.
    pub line: usize,
    pub app: Node,
}

impl Node {
    /// Every component in the tree, outermost first.
    pub fn components(&self) -> Vec<&Component> {
        let mut out = Vec::new();
        self.walk(&mut |c| out.push(c));
        out
    }

    fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a Component)) {
        match self {
            Node::App(c) => f(c),
            Node::Filter { filter, inner } => {
                f(filter);
                inner.walk(f);
            }
            Node::UrlMap {
                map,
                mounts,
                not_found,
            } => {
                f(map);
                for m in mounts {
                    m.app.walk(f);
                }
                if let Some(n) = not_found {
                    n.walk(f);
                }
            }
        }
    }

    /// Every component, mutably.
    pub(crate) fn for_each_mut(&mut self, f: &mut dyn FnMut(&mut Component)) {
        match self {
            Node::App(c) => f(c),
            Node::Filter { filter, inner } => {
                f(filter);
                inner.for_each_mut(f);
            }
            Node::UrlMap {
                map,
                mounts,
                not_found,
            } => {
                f(map);
                for m in mounts {
                    m.app.for_each_mut(f);
                }
                if let Some(n) = not_found {
                    n.for_each_mut(f);
                }
            }
        }
    }
}

/// Whether a component is an app or a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    App,
    Filter,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::App => "app",
            Kind::Filter => "filter",
        }
    }
}

/// One configured app or filter: where it is defined, where its code comes from,
/// and the configuration its factory receives.
#[derive(Debug, Clone)]
pub struct Component {
    pub kind: Kind,
    /// The section header, e.g. `app:main`.
    pub section: String,
    pub file: PathBuf,
    pub line: usize,
    pub source: Source,
    pub global_conf: Vec<(String, String)>,
    pub local_conf: Vec<(String, String)>,
    /// Where each key of `local_conf` was written (for messages).
    pub local_at: Vec<(String, Location)>,
}

impl Component {
    /// The directory of the file that defines this component (for relative paths).
    pub fn dir(&self) -> &std::path::Path {
        self.file.parent().unwrap_or(std::path::Path::new("/"))
    }

    /// A key of the section's local config.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.local_conf
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Where the section is, for messages.
    pub fn location(&self) -> Location {
        Location::section(&self.file, self.line, &self.section)
    }

    /// Where a key of the local config was written; the section with the key
    /// named when the key has no line of its own (or is missing).
    pub fn key_location(&self, key: &str) -> Location {
        self.local_at
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, at)| at.clone())
            .unwrap_or_else(|| self.location().for_key(key))
    }
}

/// Where a component's code comes from (the `use =` URI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `egg:DIST#ENTRY`: a plugin library found on the plugin path.
    Egg { dist: String, entry: String },
    /// `lib:PATH#ENTRY`: a library file (already resolved against the config file).
    Lib { path: PathBuf, entry: String },
    /// A component built into the host (`egg:plughost#cache`, `egg:Paste#urlmap`, ...).
    Builtin(&'static Builtin),
    /// Python code named the way Paste names it without an entry point:
    /// `use = call:module:attr`, or a protocol key (`paste.app_factory =
    /// module:attr`). It runs through the WSGI bridge plugin.
    Python {
        /// `module:attr`.
        spec: String,
        /// The protocol key that named it (`paste.filter_app_factory`...);
        /// `None` for `call:`, whose protocol follows the section's kind.
        protocol: Option<&'static str>,
    },
}

impl Source {
    pub fn entry(&self) -> &str {
        match self {
            Source::Egg { entry, .. } | Source::Lib { entry, .. } => entry,
            Source::Builtin(b) => b.name,
            Source::Python { spec, .. } => spec,
        }
    }

    /// Where a built-in fits; `None` for plugin code.
    pub fn role(&self) -> Option<Role> {
        match self {
            Source::Builtin(b) => Some(b.role()),
            _ => None,
        }
    }
}
