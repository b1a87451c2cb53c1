//! `plughost cache purge`: delete cached pages through the same URL → file
//! mapping the filter uses, beneath cache_dir, never following a symlink (a
//! symlink is removed as a link, its target is never touched). Dot-named
//! entries (the marker, temporary files, `.htaccess`, `.git/`, at any depth)
//! are never deleted: the cache never writes a page under such a name.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use rustix::fs::{openat, statat, unlinkat, AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::bus::{publish_now, Target};
use super::config::Settings;
use super::dir::{open_beneath, CacheDir, DIR_FLAGS};
use super::invalidate::guard::{Guard, Scope};
use super::invalidate::refresh::url_path;
use super::invalidate::tags::Index;
use super::owner::{self, OwnerError};
use super::path::{self, CachePath, Refusal, MAX_DEPTH};
use super::twins;
use crate::components::builtins::url_path;
use crate::core::builtin::SettingError;
use crate::core::config::Component;

/// Why a purge could not be done.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error("cache_dir: {0}")]
    Owner(#[from] OwnerError),
    #[error("cannot open {}: {error}", path.display())]
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{url}: never cached ({refusal})")]
    NeverCached { url: String, refusal: Refusal },
    #[error("{url}: is a directory of pages; use --prefix to purge them all")]
    IsDirectory { url: String },
    #[error("{url}: {error}")]
    Io { url: String, error: Errno },
    #[error("{url}: never cached (layout = dirs stores `/a` only, not `/a/`)")]
    SlashUnderDirs { url: String },
    #[error("{url}: not a host the cache keeps a directory for (a DNS name or IP literal)")]
    BadHost { url: String },
    #[error("{url}: contains a NUL byte")]
    Nul { url: String },
    #[error("the tag index: {0}")]
    Tags(std::io::Error),
    #[error("cannot publish to the purge bus {url}: {error}")]
    Bus {
        url: String,
        error: redis::RedisError,
    },
    #[error("this cache has no purge_bus to publish to")]
    NoBus,
}

/// What one purge did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub files: usize,
}

/// A cache section to purge from.
pub struct Purger {
    dir: Arc<CacheDir>,
    settings: Settings,
    /// Told of every purge before anything is deleted, so a store in flight
    /// cannot put a purged page back (see `invalidate::guard`).
    guard: Arc<Guard>,
}

impl Purger {
    /// For the cache configured by `c`; `None` when its cache_dir does not exist yet.
    pub fn new(c: &Component) -> Result<Option<Purger>, PurgeError> {
        let settings = Settings::from_component(c)?;
        owner::check_path(&settings.cache_dir, &c.file)?;
        match CacheDir::open_existing(&settings.cache_dir) {
            Ok(dir) => {
                if !settings.adopt && !owner::is_marked(dir.root().as_fd()) {
                    return Err(OwnerError::NotOwned(settings.cache_dir.clone()).into());
                }
                Ok(Some(Purger {
                    dir: Arc::new(dir),
                    settings,
                    guard: Arc::default(),
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(PurgeError::Open {
                path: settings.cache_dir.clone(),
                error,
            }),
        }
    }

    /// The purger of a running cache filter (sharing its directory and guard).
    pub(super) fn of(dir: Arc<CacheDir>, settings: Settings, guard: Arc<Guard>) -> Purger {
        Purger {
            dir,
            settings,
            guard,
        }
    }

    pub fn cache_dir(&self) -> &PathBuf {
        &self.settings.cache_dir
    }

    /// Delete the page for URL path `url` (as the filter sees PATH_INFO, may be
    /// percent-encoded). With `prefix`, every page at or below it. Under
    /// `host_dirs`, `http://HOST[:PORT]/path` names one host's page and a bare
    /// path that page under every host.
    pub fn purge(&self, url: &str, prefix: bool) -> Result<Purged, PurgeError> {
        let (host, path_part) = split_url(url);
        let mut purged = Purged::default();
        for base in self.bases(url, host)? {
            let done = self.purge_in(&base, url, path_part, prefix)?;
            purged.files += done.files;
        }
        Ok(purged)
    }

    /// The directories pages are purged in: cache_dir itself, or under
    /// `host_dirs` the named host's (or every host's) directory.
    fn bases(&self, url: &str, host: Option<&str>) -> Result<Vec<String>, PurgeError> {
        let hosts = &self.settings.hosts;
        if !hosts.dirs {
            return Ok(vec![String::new()]);
        }
        if let Some(h) = host {
            return match hosts.dir_of(&h.to_ascii_lowercase()) {
                Ok(Some(dir)) => Ok(vec![dir]),
                _ => Err(PurgeError::BadHost {
                    url: url.to_owned(),
                }),
            };
        }
        let mut all = Vec::new();
        for entry in Dir::read_from(self.dir.root().as_fd()).map_err(|e| io(url, e))? {
            let entry = entry.map_err(|e| io(url, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.file_type() == FileType::Directory {
                all.push(name);
            }
        }
        Ok(all)
    }

    /// [`Purger::purge`] inside `base` (`""`: cache_dir).
    fn purge_in(
        &self,
        base: &str,
        url: &str,
        path_part: &str,
        prefix: bool,
    ) -> Result<Purged, PurgeError> {
        let decoded = url_path::decode(path_part);
        if prefix {
            return self.purge_prefix(base, url, path_part, &decoded);
        }
        let index = &self.settings.directory_index;
        let never = |refusal| PurgeError::NeverCached {
            url: url.to_owned(),
            refusal,
        };
        let p = path::map(&decoded, path_part, index).map_err(never)?;
        let p = self
            .settings
            .layout
            .apply(p, index)
            .map_err(|_| PurgeError::SlashUnderDirs {
                url: url.to_owned(),
            })?;
        let p = if base.is_empty() { p } else { p.under(base) };
        match self.remove_page(&p) {
            Ok(true) => Ok(Purged { files: 1 }),
            Ok(false) => Ok(Purged::default()),
            Err(Errno::ISDIR) => Err(PurgeError::IsDirectory {
                url: url.to_owned(),
            }),
            Err(source) => Err(io(url, source)),
        }
    }

    /// Remove one page and its twins (`false`: it was not there).
    pub(super) fn remove_page(&self, p: &CachePath) -> rustix::io::Result<bool> {
        self.guard.purging([Scope::Page(p.rel().to_owned())]);
        let (parent, name) = p.rel().rsplit_once('/').unwrap_or(("", p.rel()));
        let Some(dir) = self.parent(parent)? else {
            return Ok(false);
        };
        let root = self.dir.root();
        let at = dir.as_ref().map_or(root.as_fd(), |d| d.as_fd());
        self.remove_twins(at, name);
        match unlinkat(at, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Delete every page tagged with any of `tags` (see `invalidate::tags`).
    pub fn purge_tags(&self, tags: &[String]) -> Result<Purged, PurgeError> {
        self.guard
            .purging(tags.iter().map(|t| Scope::Tag(t.clone())));
        let mut purged = Purged::default();
        for rel in self.tagged(tags)? {
            let p = CachePath::from_rel(rel);
            if self.remove_page(&p).map_err(|e| io(p.rel(), e))? {
                purged.files += 1;
            }
        }
        Ok(purged)
    }

    /// The URL a page was stored for: under `host_dirs` its host (the
    /// directory's name) and the path; `None` for a file no URL maps to.
    pub(super) fn url_of(&self, page: &CachePath) -> Option<(Option<String>, String)> {
        let s = &self.settings;
        let (host, rel) = if s.hosts.dirs {
            let (dir, rest) = page.rel().split_once('/')?;
            (Some(dir.to_owned()), rest)
        } else {
            (None, page.rel())
        };
        let dirs = s.layout == super::layout::Layout::Dirs;
        Some((host, url_path(rel, &s.directory_index, dirs)))
    }

    /// The URLs of the pages a soft purge of `urls` (each with `prefix`: its
    /// subtree) and of `tags` refreshes, for `plughost cache purge --soft`.
    pub fn soft_targets(
        &self,
        urls: &[String],
        prefix: bool,
        tags: &[String],
    ) -> Result<Vec<(Option<String>, String)>, PurgeError> {
        let mut pages = Vec::new();
        for url in urls {
            match self.pages(url, prefix) {
                Ok(found) => pages.extend(found),
                Err(PurgeError::NeverCached { .. } | PurgeError::SlashUnderDirs { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if !tags.is_empty() {
            pages.extend(self.tagged(tags)?.into_iter().map(CachePath::from_rel));
        }
        pages.sort_by(|a, b| a.rel().cmp(b.rel()));
        pages.dedup();
        Ok(pages.iter().filter_map(|p| self.url_of(p)).collect())
    }

    /// The pages tagged with any of `tags`.
    pub(super) fn tagged(&self, tags: &[String]) -> Result<Vec<String>, PurgeError> {
        Index::pages_with(self.dir.root().as_fd(), tags).map_err(PurgeError::Tags)
    }

    /// The pages a purge of `url` (with `prefix`: its subtree) would delete,
    /// without deleting them (for soft purges).
    pub(super) fn pages(&self, url: &str, prefix: bool) -> Result<Vec<CachePath>, PurgeError> {
        let (host, path_part) = split_url(url);
        let mut found = Vec::new();
        for base in self.bases(url, host)? {
            let decoded = url_path::decode(path_part);
            let index = &self.settings.directory_index;
            let never = |refusal| PurgeError::NeverCached {
                url: url.to_owned(),
                refusal,
            };
            if prefix {
                let trimmed = decoded.strip_suffix(b"/").unwrap_or(&decoded);
                let start = if trimmed.is_empty() {
                    base.clone()
                } else {
                    let raw = path_part.strip_suffix('/').unwrap_or(path_part);
                    let p = path::map(trimmed, raw, index).map_err(never)?;
                    if base.is_empty() {
                        p.rel().to_owned()
                    } else {
                        p.under(&base).rel().to_owned()
                    }
                };
                self.list(&start, &mut found).map_err(|e| io(url, e))?;
                continue;
            }
            let p = path::map(&decoded, path_part, index).map_err(never)?;
            let p =
                self.settings
                    .layout
                    .apply(p, index)
                    .map_err(|_| PurgeError::SlashUnderDirs {
                        url: url.to_owned(),
                    })?;
            let p = if base.is_empty() { p } else { p.under(&base) };
            if let Ok(fd) = open_beneath(self.dir.root().as_fd(), p.rel(), OFlags::RDONLY) {
                if rustix::fs::fstat(&fd)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
                {
                    found.push(p);
                }
            }
        }
        Ok(found)
    }

    /// The pages at or below `rel` (a file or a directory; `""`: all).
    fn list(&self, rel: &str, out: &mut Vec<CachePath>) -> rustix::io::Result<()> {
        let root = self.dir.root();
        let fd = if rel.is_empty() {
            rustix::io::dup(root.as_fd())?
        } else {
            match open_beneath(root.as_fd(), rel, OFlags::RDONLY) {
                Ok(fd) => fd,
                Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
                Err(e) => return Err(e),
            }
        };
        let kind = FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode);
        if kind == FileType::RegularFile {
            out.push(CachePath::from_rel(rel.to_owned()));
            return Ok(());
        }
        if kind != FileType::Directory {
            return Ok(());
        }
        let twins = self.settings.compress.is_some();
        list_dir(fd.as_fd(), rel, 0, twins, out)
    }

    /// Under `compress`, the page's twins go with it (first, so no twin is
    /// ever left without its page).
    fn remove_twins(&self, at: BorrowedFd<'_>, name: &str) {
        if self.settings.compress.is_some() {
            for s in twins::SUFFIXES {
                let _ = unlinkat(at, format!("{name}{s}").as_str(), AtFlags::empty());
            }
        }
    }

    /// The directory `parent` (relative, already mapped) beneath cache_dir:
    /// `Some(None)` is cache_dir itself, `None` means it does not exist (nothing
    /// to purge).
    fn parent(&self, parent: &str) -> rustix::io::Result<Option<Option<OwnedFd>>> {
        if parent.is_empty() {
            return Ok(Some(None));
        }
        match open_beneath(
            self.dir.root().as_fd(),
            parent,
            OFlags::RDONLY | OFlags::DIRECTORY,
        ) {
            Ok(fd) => Ok(Some(Some(fd))),
            Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn purge_prefix(
        &self,
        base: &str,
        url: &str,
        path_part: &str,
        decoded: &[u8],
    ) -> Result<Purged, PurgeError> {
        let trimmed = decoded.strip_suffix(b"/").unwrap_or(decoded);
        let mut purged = Purged::default();
        if trimmed.is_empty() {
            self.guard.purging([Scope::Tree(base.to_owned())]);
            let Some(dir) = self.parent(base).map_err(|source| io(url, source))? else {
                return Ok(purged);
            };
            let root = self.dir.root();
            let at = dir.as_ref().map_or(root.as_fd(), |d| d.as_fd());
            remove_contents(at, 0, &mut purged).map_err(|source| io(url, source))?;
            return Ok(purged);
        }
        // The prefix itself must be a mappable page path (so it names a file or
        // directory of the tree, never anything outside it).
        let raw = path_part.strip_suffix('/').unwrap_or(path_part);
        let p = path::map(trimmed, raw, &self.settings.directory_index).map_err(|refusal| {
            PurgeError::NeverCached {
                url: url.to_owned(),
                refusal,
            }
        })?;
        let p = if base.is_empty() { p } else { p.under(base) };
        self.guard.purging([Scope::Tree(p.rel().to_owned())]);
        let (parent, name) = p.rel().rsplit_once('/').unwrap_or(("", p.rel()));
        let Some(dir) = self.parent(parent).map_err(|source| io(url, source))? else {
            return Ok(purged);
        };
        let root = self.dir.root();
        let at = dir.as_ref().map_or(root.as_fd(), |d| d.as_fd());
        self.remove_twins(at, name);
        remove_entry(
            at,
            &CString::new(name).map_err(|_| PurgeError::Nul {
                url: url.to_owned(),
            })?,
            0,
            &mut purged,
        )
        .map_err(|source| io(url, source))?;
        Ok(purged)
    }
}

/// Publish purges of `urls` (with `prefix`, their subtrees) and of `tags` to
/// the purge bus of the cache section `c`, without applying them here (every
/// node does); how many were published and where, `None` when the section
/// has no `purge_bus`.
pub fn publish(
    c: &Component,
    urls: &[String],
    prefix: bool,
    tags: &[String],
    soft: bool,
) -> Result<Option<(usize, String)>, PurgeError> {
    let settings = Settings::from_component(c)?;
    let Some(bus) = &settings.bus else {
        return Ok(None);
    };
    let mut targets: Vec<Target> = urls
        .iter()
        .map(|u| {
            if prefix {
                Target::Prefix(u.clone())
            } else {
                Target::Page(u.clone())
            }
        })
        .collect();
    if !tags.is_empty() {
        targets.push(Target::Tags(tags.to_vec()));
    }
    publish_now(bus, &targets, soft)
        .map(|n| Some((n, bus.url.clone())))
        .map_err(|error| PurgeError::Bus {
            url: bus.url.clone(),
            error,
        })
}

/// `http://HOST/path` (or `https://`) → (Some(HOST), `/path`); a bare path → (None, path).
fn split_url(url: &str) -> (Option<&str>, &str) {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return (None, url);
    };
    match rest.find('/') {
        Some(i) => (Some(&rest[..i]), &rest[i..]),
        None => (Some(rest), "/"),
    }
}

fn io(url: &str, error: Errno) -> PurgeError {
    PurgeError::Io {
        url: url.to_owned(),
        error,
    }
}

/// Remove `name` in `dir`: a file or link is unlinked, a directory emptied and removed.
fn remove_entry(
    dir: BorrowedFd<'_>,
    name: &CString,
    depth: usize,
    purged: &mut Purged,
) -> rustix::io::Result<()> {
    let kind = match statat(dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => FileType::from_raw_mode(st.st_mode),
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if kind == FileType::Directory {
        if depth > MAX_DEPTH {
            return Ok(());
        }
        let sub = openat(dir, name.as_c_str(), DIR_FLAGS, Mode::empty())?;
        remove_contents(sub.as_fd(), depth + 1, purged)?;
        match unlinkat(dir, name.as_c_str(), AtFlags::REMOVEDIR) {
            // Dot-named entries or a store in progress: keep the directory.
            Ok(()) | Err(Errno::NOTEMPTY) => Ok(()),
            Err(e) => Err(e),
        }
    } else {
        unlinkat(dir, name.as_c_str(), AtFlags::empty())?;
        if kind == FileType::RegularFile {
            purged.files += 1;
        }
        Ok(())
    }
}

/// The pages (regular files; not dot-named, not twins under `compress`) in
/// `dir` (at `rel`) and below.
fn list_dir(
    dir: BorrowedFd<'_>,
    rel: &str,
    depth: usize,
    twins: bool,
    out: &mut Vec<CachePath>,
) -> rustix::io::Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let mut entries = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        if name.starts_with('.') || (twins && twins::SUFFIXES.iter().any(|s| name.ends_with(s))) {
            continue;
        }
        entries.push((entry.file_name().to_owned(), name.to_owned()));
    }
    for (c, name) in entries {
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        match statat(dir, c.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
                out.push(CachePath::from_rel(child));
            }
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                let sub = openat(dir, c.as_c_str(), DIR_FLAGS, Mode::empty())?;
                list_dir(sub.as_fd(), &child, depth + 1, twins, out)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Remove everything in `dir` but dot-named entries (the marker, temporary
/// files of stores in progress, files the cache never writes).
fn remove_contents(
    dir: BorrowedFd<'_>,
    depth: usize,
    purged: &mut Purged,
) -> rustix::io::Result<()> {
    let mut names = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let bytes = entry.file_name().to_bytes();
        if bytes.starts_with(b".") {
            continue;
        }
        names.push(entry.file_name().to_owned());
    }
    for name in names {
        remove_entry(dir, &name, depth, purged)?;
    }
    Ok(())
}
