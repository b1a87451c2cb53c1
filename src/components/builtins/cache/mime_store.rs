//! `content_type = auto`: each page keeps the Content-Type it was stored with,
//! in the extended attribute `user.mime_type` (the one Apache's
//! mod_mime_xattr reads), set on the temporary file before it is renamed into
//! place, so the type appears atomically with the page. Where cache_dir's file
//! system has no user xattrs, a page's type is the one its file name's
//! extension implies (the table nginx's recipe carries), and only responses
//! of that type are stored.

use std::fs::File;
use std::io;

use http::HeaderValue;
use rustix::fs::{fgetxattr, fsetxattr, XattrFlags};
use rustix::io::Errno;

/// The attribute holding a page's Content-Type.
pub(super) const XATTR: &str = "user.mime_type";

/// Longest Content-Type kept.
const MAX_TYPE: usize = 256;

/// The type of a page whose extension says nothing (also nginx's `default_type`).
pub(super) const DEFAULT_TYPE: &str = "text/html";

/// Where page types live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TypeStore {
    /// In `user.mime_type` on each page.
    Xattr,
    /// Derived from the page's extension (no user xattrs on cache_dir's file system).
    Extension,
}

/// Extension → type: a subset of nginx's mime.types, the same lines as the
/// `types` block of examples/nginx/auto-type.conf.
const TYPES: &[(&str, &str)] = &[
    ("html", "text/html"),
    ("htm", "text/html"),
    ("css", "text/css"),
    ("js", "application/javascript"),
    ("mjs", "application/javascript"),
    ("json", "application/json"),
    ("xml", "text/xml"),
    ("txt", "text/plain"),
    ("csv", "text/csv"),
    ("svg", "image/svg+xml"),
    ("rss", "application/rss+xml"),
    ("atom", "application/atom+xml"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("ico", "image/x-icon"),
    ("pdf", "application/pdf"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("wasm", "application/wasm"),
];

/// The type a file name's extension implies (case-insensitive), else [`DEFAULT_TYPE`].
pub(super) fn by_extension(name: &str) -> &'static str {
    name.rsplit_once('.')
        .and_then(|(_, ext)| {
            TYPES
                .iter()
                .find(|(e, _)| e.eq_ignore_ascii_case(ext))
                .map(|(_, t)| *t)
        })
        .unwrap_or(DEFAULT_TYPE)
}

/// Record `content_type` on a page's (temporary) file.
pub(super) fn write(file: &File, content_type: &str) -> io::Result<()> {
    fsetxattr(file, XATTR, content_type.as_bytes(), XattrFlags::empty()).map_err(io::Error::from)
}

/// The Content-Type recorded on an opened page, if it has a valid one (a
/// page written by hand or before `auto` has none).
pub(super) fn read(file: &File) -> Option<HeaderValue> {
    let mut buf = [0u8; MAX_TYPE];
    let n = fgetxattr(file, XATTR, &mut buf[..]).ok()?;
    HeaderValue::from_bytes(&buf[..n])
        .ok()
        .filter(|v| !v.is_empty())
}

/// Whether `file` (a new temporary file in cache_dir) can carry the attribute.
pub(super) fn probe(file: &File) -> io::Result<TypeStore> {
    match fsetxattr(file, XATTR, DEFAULT_TYPE.as_bytes(), XattrFlags::empty()) {
        Ok(()) => Ok(TypeStore::Xattr),
        Err(Errno::OPNOTSUPP | Errno::NOSYS) => Ok(TypeStore::Extension),
        Err(Errno::PERM) => Ok(TypeStore::Extension),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions() {
        assert_eq!(by_extension("a.CSS"), "text/css");
        assert_eq!(by_extension("x.json"), "application/json");
        assert_eq!(by_extension("__index.html"), "text/html");
        assert_eq!(by_extension("items"), DEFAULT_TYPE);
        assert_eq!(by_extension("a.unknown"), DEFAULT_TYPE);
    }

    #[test]
    fn kept_on_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let f = File::create(tmp.path().join("p")).unwrap();
        if probe(&f).unwrap() == TypeStore::Extension {
            return; // no user xattrs here; tests/page_tree.rs covers the fallback
        }
        assert_eq!(read(&f).unwrap(), DEFAULT_TYPE);
        write(&f, "application/json; charset=utf-8").unwrap();
        assert_eq!(read(&f).unwrap(), "application/json; charset=utf-8");
        let g = File::create(tmp.path().join("q")).unwrap();
        assert_eq!(read(&g), None);
    }
}
