//! Loading plugin libraries and calling into them: the host's side of the C ABI.
//! This module's children are the only place in the host with `unsafe` code: the
//! crate denies `unsafe_code` and only the loader modules below allow it. Every
//! host function a plugin can call is written with [`guard::host_callback!`].

#[allow(unsafe_code)]
mod bridge;
#[allow(unsafe_code)]
mod guard;
mod header_cache;
#[allow(unsafe_code)]
mod host_api;
#[allow(unsafe_code)]
mod instance;
#[allow(unsafe_code)]
mod library;
pub(crate) mod search;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub(crate) use instance::CreateError;
pub use instance::Instance;
pub(crate) use instance::NextHandle;
pub(crate) use library::Library;

/// Why a library could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The dynamic loader refused the file (its message, naming the user's file).
    #[error("cannot load plugin library {}: {message}", path.display())]
    Open { path: PathBuf, message: String },
    #[error("cannot load plugin library {}: no such file", path.display())]
    Missing { path: PathBuf },
    #[error("cannot load plugin library {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot load plugin library {}: {error}", path.display())]
    Copy { path: PathBuf, error: CopyError },
    #[error("{} is not a plughost plugin: it has no `plughost_abi` handshake symbol (build it with plughost-sdk's export_plugin! or PLUGHOST_EXPORT_HANDSHAKE in C)", path.display())]
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
    /// A function pointer (or the handler table) the ABI requires is NULL.
    #[error("{} is not a valid plugin: entry `{entry}` has a NULL `{field}` pointer", path.display())]
    NullPointer {
        path: PathBuf,
        entry: String,
        field: &'static str,
    },
    /// Two entries of one kind share a name, so `egg:LIB#NAME` could mean either.
    #[error("{} is not a valid plugin: it exports two {} entries named `{entry}`", path.display(), library::kind_name(*kind))]
    DuplicateEntry {
        path: PathBuf,
        entry: String,
        kind: u32,
    },
    #[error("plugin `{name}` not found; searched: {}", searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound {
        name: String,
        searched: Vec<PathBuf>,
    },
}

/// Every library opened by this process, so each is opened once, and a
/// library rebuilt in place is opened again (as new code) on the next load.
/// Libraries are always opened from a private copy (mode 0700 directory,
/// unlinked once mapped), never from the user's file.
#[derive(Default)]
pub struct Registry {
    state: Mutex<RegistryState>,
}

#[derive(Default)]
struct RegistryState {
    /// Canonical path → what was last loaded from it.
    by_path: HashMap<PathBuf, Loaded>,
    /// Content hash → library, so unchanged contents are never opened twice.
    by_hash: HashMap<u64, Arc<Library>>,
}

struct Loaded {
    stamp: FileStamp,
    lib: Arc<Library>,
}

/// What identifies a version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

impl FileStamp {
    /// The stamp of `path` now, if it exists.
    pub(crate) fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: std::os::unix::fs::MetadataExt::ino(&meta),
        })
    }
}

fn content_hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Why a private copy of a library could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("cannot tell this process's user: {0}")]
    NoUser(std::io::Error),
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", dir.display())]
    StatDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a private directory of this user (mode 0700)", dir.display())]
    NotPrivate { dir: PathBuf },
    #[error("cannot copy to {}: {source}", copy.display())]
    Write {
        copy: PathBuf,
        source: std::io::Error,
    },
}

/// The private directory library copies are opened from:
/// `$XDG_RUNTIME_DIR/plughost-libs` (else `plughost-libs-UID` in the temporary
/// directory), mode 0700 and owned by this user, or refused.
fn copies_dir() -> Result<PathBuf, CopyError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(CopyError::NoUser)?;
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(d) if d.is_absolute() && d.is_dir() => d.join("plughost-libs"),
        _ => std::env::temp_dir().join(format!("plughost-libs-{uid}")),
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(CopyError::CreateDir { dir, source }),
    }
    let meta = match std::fs::symlink_metadata(&dir) {
        Ok(meta) => meta,
        Err(source) => return Err(CopyError::StatDir { dir, source }),
    };
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(CopyError::NotPrivate { dir });
    }
    Ok(dir)
}

/// Write `bytes` to a new file in the private directory, named by their hash
/// (plus this process and a counter, so concurrent hosts never share a file
/// being written).
fn private_copy(key: &Path, bytes: &[u8], hash: u64) -> Result<PathBuf, CopyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = copies_dir()?;
    let stem = key
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let copy = dir.join(format!(
        "{stem}-{hash:016x}-{}-{}{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        std::env::consts::DLL_SUFFIX
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(&copy)
        .and_then(|mut f| f.write_all(bytes));
    if let Err(source) = written {
        let _ = std::fs::remove_file(&copy);
        return Err(CopyError::Write { copy, source });
    }
    Ok(copy)
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

    /// Open the library at `path`: the one already open if the file is unchanged
    /// or its contents were opened before, else a private copy of its contents.
    pub fn open(&self, path: &Path) -> Result<Arc<Library>, LoadError> {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_owned());
        let Some(stamp) = FileStamp::of(&key).filter(|_| key.is_file()) else {
            return Err(LoadError::Missing {
                path: path.to_owned(),
            });
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(loaded) = state.by_path.get(&key) {
            if loaded.stamp == stamp {
                return Ok(loaded.lib.clone());
            }
        }
        let bytes = std::fs::read(&key).map_err(|error| LoadError::Read {
            path: path.to_owned(),
            error,
        })?;
        let hash = content_hash(&bytes);
        if let Some(lib) = state.by_hash.get(&hash).cloned() {
            state.by_path.insert(
                key,
                Loaded {
                    stamp,
                    lib: lib.clone(),
                },
            );
            return Ok(lib);
        }
        if state.by_path.contains_key(&key) {
            tracing::info!(path = %key.display(), "plugin library changed on disk; loading the new build");
        }
        // Always opened from a private copy: the user's file may then be
        // rewritten in place (`cp`) at any time without touching mapped code.
        let copy = private_copy(&key, &bytes, hash).map_err(|error| LoadError::Copy {
            path: path.to_owned(),
            error,
        })?;
        let opened = Library::open(&copy, &key, hash);
        // The mapping keeps the copy's contents; the name is no longer needed.
        let _ = std::fs::remove_file(&copy);
        let lib = Arc::new(opened?);
        tracing::debug!(path = %key.display(), name = %lib.name, version = %lib.version, build = %lib.build_info, "loaded plugin");
        state.by_hash.insert(hash, lib.clone());
        state.by_path.insert(
            key,
            Loaded {
                stamp,
                lib: lib.clone(),
            },
        );
        Ok(lib)
    }
}
