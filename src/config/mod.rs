//! Reading a Paste-Deploy-style `deploy.ini` into a resolved tree of components.
//!
//! Resolution is separate from creation: this module reads files, finds sections,
//! interpolates values and computes each component's `global_conf` and
//! `local_conf`, and never loads a library or calls a factory. The pipeline
//! builder turns the tree into running handlers.

pub mod error;
pub mod ini;
pub mod interpolate;
mod resolve;
pub mod server;

use std::path::PathBuf;

use crate::builtins::Builtin;

pub use error::{ConfigError, ErrorKind};
pub use resolve::load;
pub use server::ServerConfig;

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
    pub warnings: Vec<String>,
}

/// A node of the application tree.
#[derive(Debug, Clone)]
pub enum Node {
    /// An application.
    App(Component),
    /// A filter wrapping the rest of the tree.
    Filter { filter: Component, inner: Box<Node> },
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

    /// `file:line [section]`, for messages.
    pub fn location(&self) -> String {
        format!("{}:{} [{}]", self.file.display(), self.line, self.section)
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
    Builtin(Builtin),
}

impl Source {
    pub fn entry(&self) -> &str {
        match self {
            Source::Egg { entry, .. } | Source::Lib { entry, .. } => entry,
            Source::Builtin(b) => b.uri().rsplit('#').next().unwrap_or("main"),
        }
    }
}
