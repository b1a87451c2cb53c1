//! Tags: a stored response's `Surrogate-Key` (space-separated) or `Cache-Tag`
//! (comma-separated) header names the things its page shows, so one purge can
//! remove every page that shows article 42.
//!
//! Each page carries its own tags in the extended attribute
//! `user.plughost.tags`, set on the temporary file before the rename (so the
//! tags appear and vanish atomically with the page and can never describe
//! another version of it). For finding pages by tag, an index lives in
//! [`INDEX_DIR`] under cache_dir: a dot-named directory, which no URL maps to
//! (the URL mapping refuses dot-named segments) and no purge deletes. The
//! index is a journal of `+ page tags` lines, one `write` each with
//! `O_APPEND`, taken under an exclusive `flock` of its lock file, so the
//! serving process and `plughost cache purge` in another one may both use it.
//! Compaction writes a new journal beside it and renames it into place. A
//! journal that is missing or corrupt is rebuilt from the pages' attributes.
//!
//! The index is a hint: before a page is purged by tag, its own attribute is
//! read, and a page whose current version no longer has the tag is kept. Where
//! cache_dir's file system has no user xattrs, the index alone decides (so a
//! page re-stored without a tag may be purged once more than needed, which is
//! safe), and pages tagged before a lost index cannot be found again.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use http::header::HeaderName;
use http::HeaderMap;
use rustix::fs::{
    fgetxattr, flock, fsetxattr, openat, statat, AtFlags, Dir, FileType, FlockOperation, Mode,
    OFlags, XattrFlags,
};
use rustix::io::Errno;

use super::super::dir::{open_beneath, DIR_FLAGS};
use super::super::path::MAX_DEPTH;
use super::super::state_file;

/// The index's directory under cache_dir.
pub(in crate::components::builtins::cache) const INDEX_DIR: &str = ".plughost-tags";
const JOURNAL: &str = "journal";
const LOCK: &str = "lock";
const HEADER: &str = "plughost-tags 1\n";
/// The attribute holding a page's tags.
const XATTR: &str = "user.plughost.tags";

/// Most tags one page keeps, and the longest tag; more are ignored.
const MAX_TAGS: usize = 64;
const MAX_TAG_BYTES: usize = 128;

const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");
const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

/// The tags a response names (deduplicated, in order, bounded).
pub(in crate::components::builtins::cache) fn of_response(headers: &HeaderMap) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    let mut add = |t: &str| {
        if valid(t) && tags.len() < MAX_TAGS && !tags.iter().any(|x| x == t) {
            tags.push(t.to_owned());
        }
    };
    for v in headers.get_all(SURROGATE_KEY) {
        v.to_str()
            .unwrap_or("")
            .split_ascii_whitespace()
            .for_each(&mut add);
    }
    for v in headers.get_all(CACHE_TAG) {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .for_each(&mut add);
    }
    tags
}

/// Tags given to a purge (`Surrogate-Key: a b`, `--tag a`): the same rules.
pub(in crate::components::builtins::cache) fn parse_list(v: &str) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for t in v.split([' ', ',', '\t']).filter(|t| !t.is_empty()) {
        if valid(t) && !tags.iter().any(|x| x == t) {
            tags.push(t.to_owned());
        }
    }
    tags
}

/// A tag is visible ASCII without commas, at most [`MAX_TAG_BYTES`].
fn valid(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TAG_BYTES
        && t.bytes().all(|b| b.is_ascii_graphic() && b != b',')
}

/// Remove the tag headers from what a client sees.
pub(in crate::components::builtins::cache) fn strip(headers: &mut HeaderMap) {
    headers.remove(SURROGATE_KEY);
    headers.remove(CACHE_TAG);
}

/// Whether the response has tag headers at all (one look per miss).
pub(in crate::components::builtins::cache) fn present(headers: &HeaderMap) -> bool {
    headers.contains_key(SURROGATE_KEY) || headers.contains_key(CACHE_TAG)
}

/// Put `tags` on a page's temporary file. `Ok(false)`: the file system has no
/// user xattrs (the index alone will know them).
pub(in crate::components::builtins::cache) fn write_attr(
    file: &File,
    tags: &[String],
) -> io::Result<bool> {
    match fsetxattr(file, XATTR, tags.join(" ").as_bytes(), XattrFlags::empty()) {
        Ok(()) => Ok(true),
        Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::PERM) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A page's own tags: `None` when its file system keeps no attributes.
fn read_attr(file: BorrowedFd<'_>) -> Option<Vec<String>> {
    let mut buf = vec![0u8; MAX_TAGS * (MAX_TAG_BYTES + 1)];
    match fgetxattr(file, XATTR, &mut buf[..]) {
        Ok(n) => Some(parse_list(&String::from_utf8_lossy(&buf[..n]))),
        Err(Errno::NODATA) => Some(Vec::new()),
        Err(_) => None,
    }
}

/// The tag index of one cache_dir (whose root directory is given to each call,
/// so a replaced cache_dir is followed).
pub(in crate::components::builtins::cache) struct Index;

/// What the journal says: page → tags (the last line for a page wins).
type Pages = HashMap<String, Vec<String>>;

impl Index {
    /// Record that `rel` was stored with `tags` (after its rename). A journal
    /// that is missing is rebuilt first (so it never starts out incomplete).
    pub(in crate::components::builtins::cache) fn record(
        root: BorrowedFd<'_>,
        rel: &str,
        tags: &[String],
    ) -> io::Result<()> {
        let dir = index_dir(root)?;
        let _lock = lock(dir.as_fd())?;
        if !exists(dir.as_fd(), JOURNAL)? {
            // The page's own line follows (where attributes are kept, the
            // rebuild found it already; the later line agrees).
            rebuild(root, dir.as_fd())?;
        }
        let mut f = File::from(openat(
            dir.as_fd(),
            JOURNAL,
            OFlags::WRONLY | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?);
        let line = line(rel, tags);
        if let Err(e) = f.write_all(line.as_bytes()) {
            // An index missing a page would hide it from tag purges: drop the
            // journal so the next reader rebuilds it from the pages.
            let _ = rustix::fs::unlinkat(dir.as_fd(), JOURNAL, AtFlags::empty());
            return Err(e);
        }
        Ok(())
    }

    /// The pages that have any of `tags`, checked against each page's own
    /// attribute where there is one; compacts the journal when it has grown.
    pub(in crate::components::builtins::cache) fn pages_with(
        root: BorrowedFd<'_>,
        tags: &[String],
    ) -> io::Result<Vec<String>> {
        let dir = index_dir(root)?;
        let _lock = lock(dir.as_fd())?;
        let (pages, lines) = match read(dir.as_fd())? {
            Some(read) => read,
            None => {
                let pages = rebuild(root, dir.as_fd())?;
                let n = pages.len();
                (pages, n)
            }
        };
        let mut found = Vec::new();
        let mut live = Pages::new();
        for (rel, page_tags) in pages {
            let Ok(fd) = open_beneath(root, &rel, OFlags::RDONLY) else {
                continue; // gone: nothing to purge, and compaction forgets it
            };
            let current = read_attr(fd.as_fd()).unwrap_or(page_tags);
            if current.iter().any(|t| tags.contains(t)) {
                found.push(rel.clone());
            }
            if !current.is_empty() {
                live.insert(rel, current);
            }
        }
        if lines > 2 * live.len() + 64 {
            write_journal(dir.as_fd(), &live)?;
        }
        found.sort();
        Ok(found)
    }
}

fn line(rel: &str, tags: &[String]) -> String {
    format!("+\t{}\t{}\n", escape(rel), tags.join(" "))
}

/// `%`, tabs, newlines and other control bytes of a page name as `%XX`.
fn escape(rel: &str) -> String {
    let mut out = String::with_capacity(rel.len());
    for c in rel.chars() {
        if c == '%' || c.is_control() {
            let mut b = [0u8; 4];
            for byte in c.encode_utf8(&mut b).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    String::from_utf8(percent_encoding::percent_decode_str(s).collect()).ok()
}

fn index_dir(root: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    state_file::make_dir(root, INDEX_DIR)
}

/// The index's lock, held until the returned file is dropped.
fn lock(dir: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let fd = openat(
        dir,
        LOCK,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    match flock(&fd, FlockOperation::LockExclusive) {
        Ok(()) | Err(Errno::NOLCK) => Ok(fd),
        Err(e) => Err(e.into()),
    }
}

fn exists(dir: BorrowedFd<'_>, name: &str) -> io::Result<bool> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The journal's pages and its number of lines; `None` if it is missing or
/// corrupt (a last line cut short by a crash is ignored, not corruption).
fn read(dir: BorrowedFd<'_>) -> io::Result<Option<(Pages, usize)>> {
    Ok(state_file::read(dir, JOURNAL)?
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|text| parse(&text)))
}

fn parse(text: &str) -> Option<(Pages, usize)> {
    let body = text.strip_prefix(HEADER)?;
    let mut pages = Pages::new();
    let mut lines = 0;
    let complete = body.rfind('\n').map_or("", |i| &body[..=i]);
    for l in complete.lines() {
        let mut parts = l.splitn(3, '\t');
        let (Some("+"), Some(rel), Some(tags)) = (parts.next(), parts.next(), parts.next()) else {
            return None;
        };
        let rel = unescape(rel).filter(|r| !r.is_empty())?;
        lines += 1;
        pages.insert(rel, parse_list(tags));
    }
    Some((pages, lines))
}

fn write_journal(dir: BorrowedFd<'_>, pages: &Pages) -> io::Result<()> {
    let mut text = String::from(HEADER);
    let mut sorted: Vec<_> = pages.iter().collect();
    sorted.sort();
    for (rel, tags) in sorted {
        text.push_str(&line(rel, tags));
    }
    state_file::replace(dir, JOURNAL, text.as_bytes(), true)
}

/// Rebuild the journal from the pages' attributes (walking the tree, no
/// symlink followed, dot-named entries skipped).
fn rebuild(root: BorrowedFd<'_>, dir: BorrowedFd<'_>) -> io::Result<Pages> {
    let mut pages = Pages::new();
    let mut supported = true;
    walk(root, String::new(), 0, &mut pages, &mut supported);
    if !supported {
        tracing::warn!(
            "cache: the tag index was missing or corrupt and this file system keeps no tags on pages; pages tagged before cannot be found by tag"
        );
    } else {
        tracing::info!(
            pages = pages.len(),
            "cache: rebuilt the tag index from the pages"
        );
    }
    write_journal(dir, &pages)?;
    Ok(pages)
}

fn walk(
    dir: BorrowedFd<'_>,
    prefix: String,
    depth: usize,
    pages: &mut Pages,
    supported: &mut bool,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(entries) = Dir::read_from(dir) else {
        return;
    };
    let mut names: Vec<(CString, FileType)> = Vec::new();
    for entry in entries.flatten() {
        let bytes = entry.file_name().to_bytes();
        if bytes.starts_with(b".") {
            continue;
        }
        names.push((entry.file_name().to_owned(), entry.file_type()));
    }
    for (name, mut kind) in names {
        let Ok(s) = name.to_str() else { continue };
        let rel = if prefix.is_empty() {
            s.to_owned()
        } else {
            format!("{prefix}/{s}")
        };
        if kind == FileType::Unknown {
            kind = statat(dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| FileType::from_raw_mode(st.st_mode))
                .unwrap_or(FileType::Unknown);
        }
        match kind {
            FileType::Directory => {
                if let Ok(sub) = openat(dir, name.as_c_str(), DIR_FLAGS, Mode::empty()) {
                    walk(sub.as_fd(), rel, depth + 1, pages, supported);
                }
            }
            FileType::RegularFile => {
                let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let Ok(fd) = openat(dir, name.as_c_str(), flags, Mode::empty()) else {
                    continue;
                };
                match read_attr(fd.as_fd()) {
                    Some(tags) if !tags.is_empty() => {
                        pages.insert(rel, tags);
                    }
                    Some(_) => {}
                    None => *supported = false,
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn tags_from_both_headers() {
        let mut h = HeaderMap::new();
        h.insert(SURROGATE_KEY, HeaderValue::from_static("article-42  home"));
        h.append(CACHE_TAG, HeaderValue::from_static("home, list,  x,y"));
        assert_eq!(of_response(&h), ["article-42", "home", "list", "x", "y"]);
        strip(&mut h);
        assert!(h.is_empty());
        assert_eq!(parse_list("a,b c  a"), ["a", "b", "c"]);
        let long = "t".repeat(MAX_TAG_BYTES + 1);
        assert!(parse_list(&long).is_empty());
    }

    #[test]
    fn journal_lines_round_trip_and_a_torn_tail_is_ignored() {
        let mut text = String::from(HEADER);
        text += &line("a/b%c\td", &["t1".into(), "t2".into()]);
        text += &line("x", &["t3".into()]);
        text += &line("x", &["t4".into()]);
        text += "+\tcut sho";
        let (pages, lines) = parse(&text).unwrap();
        assert_eq!(lines, 3);
        assert_eq!(pages["a/b%c\td"], ["t1", "t2"]);
        assert_eq!(pages["x"], ["t4"]);
        assert!(parse("garbage\n").is_none());
        assert!(parse(&format!("{HEADER}nonsense line\n")).is_none());
    }

    #[test]
    fn found_by_tag_and_rebuilt_when_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let root_fd = openat(rustix::fs::CWD, tmp.path(), DIR_FLAGS, Mode::empty()).unwrap();
        let root = root_fd.as_fd();
        std::fs::create_dir(tmp.path().join("news")).unwrap();
        let page = |rel: &str, tags: &[&str]| {
            let f = File::create(tmp.path().join(rel)).unwrap();
            let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
            let attrs = write_attr(&f, &tags).unwrap();
            Index::record(root, rel, &tags).unwrap();
            attrs
        };
        let attrs = page("news/1", &["a42", "home"]);
        page("news/2", &["a7"]);
        page("about", &[]);
        assert_eq!(
            Index::pages_with(root, &["a42".into()]).unwrap(),
            ["news/1"]
        );
        assert_eq!(
            Index::pages_with(root, &["home".into(), "a7".into()]).unwrap(),
            ["news/1", "news/2"]
        );
        if !attrs {
            return; // no user xattrs here: nothing to rebuild from
        }
        // Re-stored without the tag: its own attribute wins over the journal.
        let f = File::create(tmp.path().join("news/2")).unwrap();
        write_attr(&f, &[]).unwrap();
        assert!(Index::pages_with(root, &["a7".into()]).unwrap().is_empty());
        // A lost or corrupt journal is rebuilt from the pages.
        std::fs::remove_file(tmp.path().join(INDEX_DIR).join(JOURNAL)).unwrap();
        assert_eq!(
            Index::pages_with(root, &["a42".into()]).unwrap(),
            ["news/1"]
        );
        std::fs::write(tmp.path().join(INDEX_DIR).join(JOURNAL), "junk").unwrap();
        assert_eq!(
            Index::pages_with(root, &["home".into()]).unwrap(),
            ["news/1"]
        );
    }
}
