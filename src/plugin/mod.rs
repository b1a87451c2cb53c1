//! Loading plugin libraries and calling into them: the host's side of the C ABI.
//! This module (with its children) is the only place in the host with `unsafe` code.

mod bridge;
mod host_api;
mod instance;
mod library;
pub mod search;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use instance::{CallError, Instance, NextHandle};
pub use library::{kind_name, EntryInfo, Library};

/// Why a library could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot load plugin library {}: {message}", path.display())]
    Open { path: PathBuf, message: String },
    #[error("{} is not a plughost plugin: it has no `plughost_abi` handshake symbol (build it with plughost-sdk's export_plugin! or PLUGHOST_EXPORT_PLUGIN in C)", path.display())]
    NoHandshake { path: PathBuf },
    #[error("{} is not a plughost plugin: handshake magic is {magic:#010x}, expected {:#010x}", path.display(), plughost_sdk::abi::PH_MAGIC)]
    BadMagic { path: PathBuf, magic: u32 },
    #[error("{} was built for plugin ABI {}.{}, but this host speaks ABI {}.{}; rebuild the plugin against a matching plughost-sdk", path.display(), plugin.0, plugin.1, host.0, host.1)]
    AbiMismatch {
        path: PathBuf,
        plugin: (u16, u16),
        host: (u16, u16),
    },
    #[error("{} has a handshake but no `plughost_plugin_v1` descriptor", path.display())]
    NoDescriptor { path: PathBuf },
    #[error("{} is not a valid plugin: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("plugin `{name}` not found; searched: {}", searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound {
        name: String,
        searched: Vec<PathBuf>,
    },
}

/// Every library opened by this process, by path, so each is opened once.
#[derive(Default)]
pub struct Registry {
    libraries: Mutex<HashMap<PathBuf, Arc<Library>>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Find `egg:NAME`'s library on the plugin path and open it.
    pub fn egg(&self, name: &str, config_dirs: &[PathBuf]) -> Result<Arc<Library>, LoadError> {
        let dirs = search::search_dirs(config_dirs);
        let path = search::find_library(name, &dirs).map_err(|searched| LoadError::NotFound {
            name: name.to_owned(),
            searched,
        })?;
        self.open(&path)
    }

    /// Open the library at `path` (or return the one already open).
    pub fn open(&self, path: &Path) -> Result<Arc<Library>, LoadError> {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_owned());
        let mut libs = self.libraries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lib) = libs.get(&key) {
            return Ok(lib.clone());
        }
        if !key.is_file() {
            return Err(LoadError::Open {
                path: path.to_owned(),
                message: "no such file".into(),
            });
        }
        let lib = Arc::new(Library::open(&key)?);
        if !lib.panic_unwind && lib.build_info.starts_with("plughost-sdk") {
            tracing::warn!(
                path = %key.display(),
                "plugin was built without panic=unwind: a panic in it will abort the whole process"
            );
        }
        tracing::debug!(path = %key.display(), name = %lib.name, version = %lib.version, build = %lib.build_info, "loaded plugin");
        libs.insert(key, lib.clone());
        Ok(lib)
    }
}
