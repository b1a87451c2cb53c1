//! Opening a plugin library and checking its handshake before using anything in it.
//!
//! A library is never unloaded: unloading Rust `cdylib`s is unsound (thread-local
//! destructors can run after their code is unmapped), so a [`Library`] keeps its
//! handle for the life of the process and everything created from it holds an
//! `Arc<Library>`.

use std::ffi::{c_void, CStr};
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::ptr::addr_of;

use plughost_sdk::abi::{self, PhEntry, PhHandlerVtbl, PhHandshake, PhPluginDesc};

use super::guard::nullable_fn;
use super::LoadError;

/// A loaded, checked plugin library.
pub struct Library {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub build_info: String,
    pub abi: (u16, u16),
    pub panic_unwind: bool,
    pub entries: Vec<EntryInfo>,
    /// The hash of the file's contents: two libraries with equal hashes are
    /// the same code (the registry opens each only once; reloads compare it).
    pub content_hash: u64,
    /// Kept open forever (see the module docs).
    _handle: ManuallyDrop<libloading::Library>,
}

/// One named entry of a library.
#[derive(Clone)]
pub struct EntryInfo {
    pub name: String,
    pub kind: u32,
    /// Checked non-NULL at load.
    pub create: abi::PhCreateFn,
    /// Checked non-NULL at load, as are its `call` and `destroy`.
    pub vtbl: *const PhHandlerVtbl,
    /// `PH_HANDLER_*` flags (ABI 1.1; none for a 1.0 table).
    pub flags: u32,
}

// SAFETY: `vtbl` points at a static table inside the library, which is never
// unloaded and never mutated, so it can be read from any thread.
unsafe impl Send for EntryInfo {}
// SAFETY: as above.
unsafe impl Sync for EntryInfo {}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("path", &self.path)
            .field("name", &self.name)
            .field("version", &self.version)
            .finish()
    }
}

fn host_version() -> (u16, u16) {
    (abi::PH_ABI_MAJOR, abi::PH_ABI_MINOR)
}

/// Read a static NUL-terminated string of the library.
///
/// # Safety
/// `p` must be null or point at a NUL-terminated string that lives as long as the library.
unsafe fn c_string(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl Library {
    /// Open `path`, check the handshake and read the descriptor. Messages and
    /// [`Library::path`] name `shown` (the file the user named, when `path` is a
    /// private copy of it).
    pub fn open(path: &Path, shown: &Path, content_hash: u64) -> Result<Library, LoadError> {
        let display = shown.to_owned();
        let handle: libloading::Library = {
            use libloading::os::unix::{Library as UnixLibrary, RTLD_LOCAL, RTLD_NOW};
            // SAFETY: loading runs the library's initialisers; plugins are trusted code
            // chosen by the operator in the config file. RTLD_NOW makes missing symbols
            // fail here rather than at first call; RTLD_LOCAL keeps each plugin's
            // exported names from colliding with another's.
            unsafe { UnixLibrary::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
                .map_err(|e| LoadError::Open {
                    path: display.clone(),
                    // The loader names the private copy; name the user's file.
                    message: e
                        .to_string()
                        .replace(&*path.to_string_lossy(), &display.to_string_lossy()),
                })?
                .into()
        };

        // SAFETY: `plughost_abi` is declared by the ABI as a static `PhHandshake`;
        // we only read it through the pointer the loader gives us, when not NULL
        // (a weak undefined symbol resolves to NULL without an error).
        let handshake: PhHandshake = unsafe {
            let symbol = handle
                .get::<*const PhHandshake>(abi::HANDSHAKE_SYMBOL)
                .map_err(|_| LoadError::NoHandshake {
                    path: display.clone(),
                })?;
            if symbol.is_null() {
                return Err(LoadError::NoHandshake { path: display });
            }
            std::ptr::read_unaligned(*symbol)
        };
        check_handshake(
            shown,
            handshake.magic,
            handshake.abi_major,
            handshake.abi_minor,
        )?;

        // SAFETY: the handshake matched, so the library promises `plughost_plugin_v1`
        // has the v1 signature and returns a static descriptor. The symbol is read
        // as a nullable function pointer (`Option<fn>` has the layout of a pointer)
        // and called only when it is not NULL.
        let desc: &'static PhPluginDesc = unsafe {
            let symbol = handle
                .get::<Option<abi::PhDescriptorFn>>(abi::DESCRIPTOR_SYMBOL_V1)
                .map_err(|_| LoadError::NoDescriptor {
                    path: display.clone(),
                })?;
            let Some(descriptor) = *symbol else {
                return Err(LoadError::NoDescriptor { path: display });
            };
            let p = descriptor();
            if p.is_null() {
                return Err(LoadError::NoDescriptor { path: display });
            }
            &*p
        };
        check_handshake(shown, desc.magic, desc.abi_major, desc.abi_minor)?;
        if (desc.struct_size as usize) < std::mem::size_of::<PhPluginDesc>() {
            return Err(LoadError::Invalid {
                path: display,
                message: format!(
                    "descriptor is {} bytes, v1 needs {}",
                    desc.struct_size,
                    std::mem::size_of::<PhPluginDesc>()
                ),
            });
        }
        let mut entries = Vec::with_capacity(desc.entry_count);
        if desc.entry_count > 0 && !desc.entries.is_null() {
            for i in 0..desc.entry_count {
                // SAFETY: the descriptor points at `entry_count` static entries; each
                // is read through raw pointers, never as a `&PhEntry`, so a NULL in a
                // function-pointer field is seen, not assumed away.
                let info =
                    unsafe { read_entry(desc.entries.add(i)) }.map_err(|(entry, field)| {
                        LoadError::NullPointer {
                            path: display.clone(),
                            entry,
                            field,
                        }
                    })?;
                if entries
                    .iter()
                    .any(|e: &EntryInfo| e.name == info.name && e.kind == info.kind)
                {
                    return Err(LoadError::DuplicateEntry {
                        path: display,
                        entry: info.name,
                        kind: info.kind,
                    });
                }
                entries.push(info);
            }
        }
        Ok(Library {
            path: display,
            // SAFETY: static NUL-terminated strings of the descriptor.
            name: unsafe { c_string(desc.plugin_name) },
            // SAFETY: as above.
            version: unsafe { c_string(desc.plugin_version) },
            // SAFETY: as above.
            build_info: unsafe { c_string(desc.build_info) },
            abi: (desc.abi_major, desc.abi_minor),
            panic_unwind: desc.flags & abi::PH_FLAG_PANIC_UNWIND != 0,
            entries,
            content_hash,
            _handle: ManuallyDrop::new(handle),
        })
    }

    /// The entry called `name` of `kind` (a library may export an app and a
    /// filter under one name, as Paste distributions do); failing that, an
    /// entry of another kind with that name, so the caller can say so.
    pub fn entry(&self, name: &str, kind: u32) -> Option<&EntryInfo> {
        let named = || self.entries.iter().filter(|e| e.name == name);
        named().find(|e| e.kind == kind).or_else(|| named().next())
    }

    /// Entry names with their kinds, for messages.
    pub fn entry_list(&self) -> String {
        if self.entries.is_empty() {
            return "none".into();
        }
        self.entries
            .iter()
            .map(|e| format!("{} ({})", e.name, kind_name(e.kind)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `app`, `filter` or `unknown`.
pub(crate) fn kind_name(kind: u32) -> &'static str {
    match kind {
        abi::PH_KIND_APP => "app",
        abi::PH_KIND_FILTER => "filter",
        _ => "unknown kind",
    }
}

fn check_handshake(path: &Path, magic: u32, major: u16, minor: u16) -> Result<(), LoadError> {
    if magic != abi::PH_MAGIC {
        return Err(LoadError::BadMagic {
            path: path.to_owned(),
            magic,
        });
    }
    let host = host_version();
    if major != host.0 || minor > host.1 {
        return Err(LoadError::AbiMismatch {
            path: path.to_owned(),
            plugin: (major, minor),
            host,
        });
    }
    Ok(())
}

/// Read and check one entry of a descriptor: every function pointer the ABI
/// requires (`create`, the table, its `call` and `destroy`) must be non-NULL.
/// A NULL one is `Err((entry name, field))`.
///
/// # Safety
/// `e` must point at a static `PhEntry` whose `name` is NULL or a static
/// NUL-terminated string and whose `vtbl` is NULL or points at a static handler
/// table at least `struct_size` bytes long.
unsafe fn read_entry(e: *const PhEntry) -> Result<EntryInfo, (String, &'static str)> {
    // SAFETY: guaranteed by the caller; fields are read one at a time through raw
    // pointers, the function pointers as nullable ones.
    unsafe {
        let name = c_string(addr_of!((*e).name).read_unaligned());
        let kind = addr_of!((*e).kind).read_unaligned();
        let Some(create) = nullable_fn(addr_of!((*e).create)) else {
            return Err((name, "create"));
        };
        let vtbl = addr_of!((*e).vtbl).read_unaligned();
        if vtbl.is_null() {
            return Err((name, "vtbl"));
        }
        if nullable_fn(addr_of!((*vtbl).call)).is_none() {
            return Err((name, "vtbl->call"));
        }
        if nullable_fn(addr_of!((*vtbl).destroy)).is_none() {
            return Err((name, "vtbl->destroy"));
        }
        Ok(EntryInfo {
            name,
            kind,
            create,
            vtbl,
            flags: handler_flags(vtbl),
        })
    }
}

/// The table's flags, or 0 for a table that ends before them (ABI 1.0).
///
/// # Safety
/// `vtbl` must point at a handler table at least `struct_size` bytes long.
unsafe fn handler_flags(vtbl: *const PhHandlerVtbl) -> u32 {
    let end_of_flags = std::mem::offset_of!(PhHandlerVtbl, flags) + std::mem::size_of::<u32>();
    // SAFETY: `struct_size` is the first field of every version of the table; the
    // flags are read through a raw pointer only when the table says it has them.
    unsafe {
        let size = std::ptr::addr_of!((*vtbl).struct_size).read_unaligned();
        if (size as usize) < end_of_flags {
            0
        } else {
            std::ptr::addr_of!((*vtbl).flags).read_unaligned()
        }
    }
}

/// Pointer identity of a vtable, to recognise the host's own bodies.
pub(crate) fn same_ptr<T>(a: *const T, b: *const T) -> bool {
    std::ptr::eq(a as *const c_void, b as *const c_void)
}
