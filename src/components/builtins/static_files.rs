//! `egg:plughost#static` (= `egg:Paste#static`): serve files from `document_root`.
//!
//! Keys: `document_root` (required; relative to the file defining the section;
//! must be an existing directory), `cache_max_age` (seconds, adds
//! `Cache-Control: max-age=N`), `index` (default `index.html`; empty disables).
//! Any other key is an error, so a misspelt key is not silently ignored.
//!
//! Mapping PATH_INFO to a file ([`url_path`], shared with the cache) refuses, with 404, anything that could leave the
//! root or reach what should stay hidden: `.`/`..` and every other segment
//! starting with a dot (dotfiles), however encoded; an encoded `/` or `\` in
//! the raw path; backslashes, NUL and control bytes; invalid UTF-8. Empty
//! segments collapse. The file is then opened (non-blocking, so a FIFO cannot
//! stall the runtime) and the path the kernel actually opened is read back from
//! `/proc/self/fd`: unless it lies under the root's real path, the answer is 404,
//! so symlinks may point anywhere inside the root and nowhere outside it. The
//! root itself may be a symlink that is switched at run time (atomic deploys):
//! its real path is re-resolved when a file seems to lie outside it.
//!
//! Directories: without a trailing slash → 301 to the slash form (SCRIPT_NAME +
//! PATH_INFO + `/`, query kept); with one → the index file, else 404 (no listings).
//! Everything about answering from the open file (conditional GET, ranges,
//! streaming) is [`file_response::serve_file`].

use std::borrow::Cow;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use http::{header, HeaderValue, Method, StatusCode};
use percent_encoding::percent_encode;

use super::file_response::{self, FileOptions, FileRequest};
use super::url_path::{self, EmptySegments, RelPath, Rules};
use crate::core::builtin::{Builtin, Make, SettingError};
use crate::core::config::Component;
use crate::core::{body, error_response, Handler, Request, Response, ResponseFuture};

const KEYS: &[&str] = &["document_root", "cache_max_age", "index"];

/// `egg:plughost#static` (= `egg:Paste#static`).
pub(crate) const BUILTIN: Builtin = Builtin {
    name: "static",
    aliases: &[("Paste", "static")],
    make: Make::App(app),
};

/// Create the static app for a section.
fn app(c: &Component) -> Result<Arc<dyn Handler>, SettingError> {
    Ok(Arc::new(StaticApp::new(c)?))
}

/// The static file app.
pub(crate) struct StaticApp {
    /// `document_root` made absolute, as configured: every lookup starts here.
    root: PathBuf,
    /// The root's real path (symlinks resolved): no file served may lie outside.
    real_root: RwLock<PathBuf>,
    cache_control: Option<HeaderValue>,
    index: Option<String>,
}

impl StaticApp {
    pub(crate) fn new(c: &Component) -> Result<StaticApp, SettingError> {
        if let Some((key, _)) = c
            .local_conf
            .iter()
            .find(|(k, _)| !KEYS.contains(&k.as_str()))
        {
            return Err(SettingError::key(
                key,
                "unknown key for the static app (it takes document_root, cache_max_age, index)",
            ));
        }
        let configured = c.get("document_root").ok_or_else(|| {
            SettingError::key(
                "document_root",
                "missing required key `document_root` (the directory to serve)",
            )
        })?;
        if configured.is_empty() {
            return Err(SettingError::key(
                "document_root",
                "is empty; give the directory to serve",
            ));
        }
        // Absolute (lexically) so lookups never depend on the working directory.
        let root = c.dir().join(configured);
        let root = std::path::absolute(&root).unwrap_or(root);
        let real_root = std::fs::canonicalize(&root).map_err(|e| {
            SettingError::key(
                "document_root",
                format!("{}: {}", root.display(), io_reason(&e)),
            )
        })?;
        if !real_root.is_dir() {
            return Err(SettingError::key(
                "document_root",
                format!("{}: not a directory", root.display()),
            ));
        }
        let cache_control = match c.get("cache_max_age").map(str::trim) {
            None | Some("") => None,
            Some(v) => {
                let secs: u64 = v.parse().map_err(|_| {
                    SettingError::key(
                        "cache_max_age",
                        format!("`{v}` is not a whole number of seconds"),
                    )
                })?;
                Some(HeaderValue::from_str(&format!("max-age={secs}")).expect("ASCII"))
            }
        };
        let index = match c.get("index").map(str::trim) {
            None => Some("index.html".to_owned()),
            Some("") => None,
            Some(name) => {
                if name.starts_with('.') || name.contains(['/', '\\', '\0']) {
                    return Err(SettingError::key(
                        "index",
                        format!("`{name}` must be a plain file name (no slashes, not starting with a dot)"),
                    ));
                }
                Some(name.to_owned())
            }
        };
        Ok(StaticApp {
            root,
            real_root: RwLock::new(real_root),
            cache_control,
            index,
        })
    }

    fn respond(&self, req: &Request) -> Response {
        if req.method != Method::GET && req.method != Method::HEAD {
            return file_response::method_not_allowed();
        }
        let Some(mapped) = map_path(&req.path_info, &req.raw_path) else {
            tracing::debug!(path = req.raw_path, "static: refused path");
            return not_found();
        };
        let mut path = self.root.join(&mapped.rel);
        let (mut file, mut meta) = match self.open(&path) {
            Ok(opened) => opened,
            Err(status) => return error_response(status),
        };
        let mut name: &str = mapped.rel.rsplit('/').next().unwrap_or("");
        if meta.is_dir() {
            if !mapped.trailing_slash {
                return redirect(&req.script_name, &mapped.rel, &req.query_string);
            }
            let Some(index) = &self.index else {
                return not_found();
            };
            path.push(index);
            (file, meta) = match self.open(&path) {
                Ok(opened) => opened,
                Err(status) => return error_response(status),
            };
            if !meta.is_file() {
                return not_found();
            }
            name = index;
        } else if !meta.is_file() || mapped.trailing_slash {
            return not_found();
        }
        let content_type = content_type(name);
        let mut resp = file_response::serve_file(
            file,
            &meta,
            &FileRequest {
                method: &req.method,
                headers: &req.headers,
            },
            &FileOptions {
                content_type: &content_type,
                ranges: true,
            },
        );
        if let Some(cc) = &self.cache_control {
            if matches!(
                resp.status(),
                StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
            ) {
                resp.headers_mut().insert(header::CACHE_CONTROL, cc.clone());
            }
        }
        resp
    }

    /// Open `path` (a regular file or directory under the root) and stat it.
    fn open(&self, path: &Path) -> Result<(File, Metadata), StatusCode> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| open_error(path, &e))?;
        let meta = file.metadata().map_err(|e| open_error(path, &e))?;
        if !meta.is_file() && !meta.is_dir() {
            return Err(StatusCode::NOT_FOUND);
        }
        let real = real_path(&file, path).map_err(|e| open_error(path, &e))?;
        if !self.contains(&real) {
            tracing::debug!(
                "static: {} resolves to {}, outside document_root",
                path.display(),
                real.display()
            );
            return Err(StatusCode::NOT_FOUND);
        }
        Ok((file, meta))
    }

    /// Whether `real` lies in the root's real path, re-resolving the root once
    /// if it does not (the root may be a symlink that was switched).
    fn contains(&self, real: &Path) -> bool {
        {
            let root = self.real_root.read().unwrap_or_else(|p| p.into_inner());
            if real.starts_with(&*root) {
                return true;
            }
        }
        let Ok(now) = std::fs::canonicalize(&self.root) else {
            return false;
        };
        let inside = real.starts_with(&now);
        let moved = *self.real_root.read().unwrap_or_else(|p| p.into_inner()) != now;
        if moved {
            tracing::info!(
                "static: document_root {} now resolves to {}",
                self.root.display(),
                now.display()
            );
            *self.real_root.write().unwrap_or_else(|p| p.into_inner()) = now;
        }
        inside
    }
}

impl Handler for StaticApp {
    fn call(&self, req: Request) -> ResponseFuture<'_> {
        Box::pin(std::future::ready(self.respond(&req)))
    }
}

/// The path the kernel opened for `file`: `/proc/self/fd/N` when available (one
/// syscall, and exactly the file we hold), else `path` canonicalized.
fn real_path(file: &File, path: &Path) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .or_else(|_| std::fs::canonicalize(path))
}

fn open_error(path: &Path, e: &io::Error) -> StatusCode {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG | libc::ENXIO) => {
            StatusCode::NOT_FOUND
        }
        Some(libc::EACCES | libc::EPERM) => StatusCode::FORBIDDEN,
        _ if e.kind() == io::ErrorKind::InvalidInput => StatusCode::NOT_FOUND,
        _ => {
            tracing::warn!("static: cannot open {}: {e}", path.display());
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such directory".into(),
        _ => e.to_string(),
    }
}

fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND)
}

/// Static's rules: empty segments collapse, a double-encoded dot is a literal
/// name (decoded once only), no limits but the file system's.
const RULES: Rules = Rules {
    empty_segments: EmptySegments::Skip,
    refuse_escapes: false,
    unicode_controls: false,
    raw_backslash: true,
    limits: None,
};

/// Map PATH_INFO (percent-decoded) to a relative path, or `None` when the path is
/// refused: see the module docs. `raw_path` is the path as received, checked for
/// encoded separators that decoding has turned into real ones.
fn map_path(path_info: &[u8], raw_path: &str) -> Option<RelPath> {
    url_path::map(path_info, raw_path, &RULES, "").ok()
}

/// The slash form of a directory URL: SCRIPT_NAME + `/` + rel + `/` + `?query`.
fn location(script_name: &[u8], rel: &str, query: &str) -> String {
    // Always one leading slash: never `//` (a protocol-relative URL naming
    // another host), never a relative reference.
    let start = script_name.iter().position(|&b| b != b'/');
    let end = script_name.iter().rposition(|&b| b != b'/');
    let script = match (start, end) {
        (Some(s), Some(e)) => &script_name[s..=e],
        _ => &[],
    };
    let mut loc = String::with_capacity(script.len() + rel.len() + query.len() + 4);
    loc.push('/');
    if !script.is_empty() {
        loc.extend(percent_encode(script, url_path::PATH_ESCAPE));
        loc.push('/');
    }
    if !rel.is_empty() {
        loc.extend(percent_encode(rel.as_bytes(), url_path::PATH_ESCAPE));
        loc.push('/');
    }
    if !query.is_empty() {
        loc.push('?');
        loc.push_str(query);
    }
    loc
}

fn redirect(script_name: &[u8], rel: &str, query: &str) -> Response {
    let mut loc = location(script_name, rel, query);
    let value = match HeaderValue::try_from(loc.as_str()) {
        Ok(v) => v,
        Err(_) => {
            // A query string that is not a valid header value: drop it.
            loc = location(script_name, rel, "");
            match HeaderValue::try_from(loc) {
                Ok(v) => v,
                Err(_) => return not_found(),
            }
        }
    };
    let mut resp = http::Response::new(body::full(bytes::Bytes::from_static(
        b"301 Moved Permanently\n",
    )));
    *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
    let h = resp.headers_mut();
    h.insert(header::LOCATION, value);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The Content-Type for a file name: from its extension, text types in UTF-8.
fn content_type(name: &str) -> Cow<'static, str> {
    let Some(mime) = mime_guess::from_path(name).first_raw() else {
        return Cow::Borrowed("application/octet-stream");
    };
    let textual = mime.starts_with("text/")
        || matches!(
            mime,
            "application/javascript"
                | "application/json"
                | "application/xml"
                | "application/xhtml+xml"
                | "image/svg+xml"
        );
    if textual {
        Cow::Owned(format!("{mime}; charset=utf-8"))
    } else {
        Cow::Borrowed(mime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(path_info: &[u8], raw: &str) -> Option<(String, bool)> {
        map_path(path_info, raw).map(|m| (m.rel, m.trailing_slash))
    }

    #[test]
    fn plain_paths_map_below_the_root() {
        let m = |p: &str| mapped(p.as_bytes(), p);
        assert_eq!(m("/a/b.txt"), Some(("a/b.txt".into(), false)));
        assert_eq!(m("/a/b/"), Some(("a/b".into(), true)));
        assert_eq!(m("/"), Some(("".into(), true)));
        assert_eq!(m(""), Some(("".into(), false)));
        assert_eq!(m("//a///b"), Some(("a/b".into(), false)));
        assert_eq!(m("/a..b/c.d."), Some(("a..b/c.d.".into(), false)));
        assert_eq!(
            mapped("/é t".as_bytes(), "/%C3%A9%20t"),
            Some(("é t".into(), false))
        );
        // Decoded once only: a double-encoded dot is a literal name.
        assert_eq!(
            mapped(b"/%2e%2e/x", "/%252e%252e/x"),
            Some(("%2e%2e/x".into(), false))
        );
    }

    #[test]
    fn traversal_and_hidden_paths_are_refused() {
        for (decoded, raw) in [
            (&b"/../canary"[..], "/../canary"),
            (b"/a/../../canary", "/a/../../canary"),
            (b"/../canary", "/%2e%2e/canary"),
            (b"/../canary", "/%2E%2E/canary"),
            (b"/./x", "/%2e/x"),
            (b"/../canary", "/..%2Fcanary"),
            (b"/a/../../canary", "/a%2F..%2F..%2Fcanary"),
            (b"/a/b", "/a%2fb"),
            (b"/..\\canary", "/..%5Ccanary"),
            (b"/a\\b", "/a%5cb"),
            (b"/a\\b", "/a\\b"),
            (b"/canary\0.txt", "/canary%00.txt"),
            (b"/a\nb", "/a%0Ab"),
            (b"/a\x7fb", "/a%7Fb"),
            (b"/\xff", "/%ff"),
            (b"/.hidden", "/.hidden"),
            (b"/a/.git/config", "/a/.git/config"),
            (b"/.", "/."),
            (b"/..", "/.."),
        ] {
            assert_eq!(mapped(decoded, raw), None, "{raw}");
        }
    }

    #[test]
    fn redirect_locations() {
        assert_eq!(location(b"", "docs", ""), "/docs/");
        assert_eq!(location(b"", "", ""), "/");
        assert_eq!(location(b"/static", "", "a=1"), "/static/?a=1");
        assert_eq!(location(b"/static", "a b/c", "x"), "/static/a%20b/c/?x");
        assert_eq!(location(b"/app/", "d", ""), "/app/d/");
        assert_eq!(location(b"//evil.example", "d", ""), "/evil.example/d/");
        assert_eq!(location(b"", "é?#%", ""), "/%C3%A9%3F%23%25/");
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("a.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("a.PNG"), "image/png");
        assert_eq!(content_type("a.json"), "application/json; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
        assert_eq!(content_type("a.unknownext"), "application/octet-stream");
    }
}
