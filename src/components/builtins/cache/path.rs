//! URL path → cache file: the one mapping used by lookups and stores.
//!
//! It works on path segments and refuses, rather than normalises, anything that
//! could name a file outside the tree, alias another key, or collide with the
//! cache's own temporary files. A refused path is passed to the app untouched.
//! The segment rules are [`url_path`]'s (shared with the static app); this
//! module adds the cache's own: the strictest [`Rules`], PATH_INFO must be
//! absolute, and `directory_index` names a directory's page and no segment.

pub use crate::components::builtins::url_path::Refusal;
use crate::components::builtins::url_path::{self, EmptySegments, Limits, Rules};

/// Most segments a cached path may have.
pub const MAX_DEPTH: usize = 32;
/// Longest PATH_INFO (in bytes) that is cached.
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest segment (in bytes): the usual file-name limit.
pub const MAX_SEGMENT_BYTES: usize = 255;

/// The cache's rules: the strictest, since a page must have exactly one key.
const RULES: Rules = Rules {
    empty_segments: EmptySegments::Refuse,
    refuse_escapes: true,
    unicode_controls: true,
    raw_backslash: false,
    limits: Some(Limits {
        path_bytes: MAX_PATH_BYTES,
        depth: MAX_DEPTH,
        segment_bytes: MAX_SEGMENT_BYTES,
    }),
};

/// A file under cache_dir, relative to it: `foo/bar` or `foo/__index.html`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePath {
    rel: String,
    /// Where the file name starts in `rel`.
    name_at: usize,
}

impl CachePath {
    /// The whole relative path (never empty, no leading `/`).
    pub fn rel(&self) -> &str {
        &self.rel
    }

    /// The directory part, `""` for cache_dir itself.
    pub fn parent(&self) -> &str {
        &self.rel[..self.name_at.saturating_sub(1)]
    }

    /// The file name.
    pub fn name(&self) -> &str {
        &self.rel[self.name_at..]
    }

    /// The page as the directory index inside its own directory (`a/b` →
    /// `a/b/INDEX`), for `layout = dirs`.
    pub(crate) fn into_dir(mut self, index: &str) -> CachePath {
        self.rel.push('/');
        self.name_at = self.rel.len();
        self.rel.push_str(index);
        self
    }

    /// The file beside this one named with `suffix` added (a compressed twin).
    pub(crate) fn with_suffix(mut self, suffix: &str) -> CachePath {
        self.rel.push_str(suffix);
        self
    }

    /// A page found in the tree (by a listing or the tag index): `rel` is a
    /// relative path the cache wrote, used only to name files beneath cache_dir.
    pub(crate) fn from_rel(rel: String) -> CachePath {
        let name_at = rel.rfind('/').map_or(0, |i| i + 1);
        CachePath { rel, name_at }
    }

    /// The page inside directory `dir` (one checked segment), for `host_dirs`.
    pub(crate) fn under(self, dir: &str) -> CachePath {
        CachePath {
            rel: format!("{dir}/{}", self.rel),
            name_at: self.name_at + dir.len() + 1,
        }
    }
}

/// Map PATH_INFO (percent-decoded, relative to the mount) to a file. `raw_path`
/// is the request target's path as received, for forms decoding hides.
pub fn map(path_info: &[u8], raw_path: &str, index: &str) -> Result<CachePath, Refusal> {
    if !path_info.starts_with(b"/") {
        return Err(Refusal::NotAbsolute);
    }
    let p = url_path::map(path_info, raw_path, &RULES, index)?;
    // `/` and `/dir/` name the directory's index file.
    Ok(if p.trailing_slash {
        let mut rel = p.rel;
        if !rel.is_empty() {
            rel.push('/');
        }
        let name_at = rel.len();
        rel.push_str(index);
        CachePath { rel, name_at }
    } else {
        let name_at = p.rel.rfind('/').map_or(0, |i| i + 1);
        CachePath {
            rel: p.rel,
            name_at,
        }
    })
}

/// Whether `path` is under one of `prefixes` on a segment boundary: `/a` covers
/// `/a` and `/a/x`, not `/ab`; `/a/` covers `/a/` and below.
pub fn in_scope(path: &[u8], prefixes: &[String]) -> bool {
    prefixes.iter().any(|p| {
        let p = p.as_bytes();
        path.starts_with(p) && (path.len() == p.len() || p.ends_with(b"/") || path[p.len()] == b'/')
    })
}

/// Whether `name` can be a `directory_index`: one plain segment.
pub fn valid_index(name: &str) -> bool {
    url_path::check_segment(name, &RULES, "").is_ok() && !name.contains('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    const IX: &str = "__index.html";

    fn ok(path: &str) -> (String, String, String) {
        let p = map(path.as_bytes(), path, IX).unwrap_or_else(|e| panic!("{path}: {e}"));
        (p.rel().into(), p.parent().into(), p.name().into())
    }

    fn refused(path: &[u8], raw: &str) -> Refusal {
        map(path, raw, IX).expect_err(&String::from_utf8_lossy(path))
    }

    #[test]
    fn files_and_directory_indexes() {
        assert_eq!(
            ok("/foo/bar"),
            ("foo/bar".into(), "foo".into(), "bar".into())
        );
        assert_eq!(ok("/foo"), ("foo".into(), "".into(), "foo".into()));
        assert_eq!(
            ok("/"),
            ("__index.html".into(), "".into(), "__index.html".into())
        );
        assert_eq!(
            ok("/a/b/"),
            (
                "a/b/__index.html".into(),
                "a/b".into(),
                "__index.html".into()
            )
        );
        assert_eq!(ok("/x.css"), ("x.css".into(), "".into(), "x.css".into()));
        assert_eq!(
            ok("/a.b/c..d/é"),
            ("a.b/c..d/é".into(), "a.b/c..d".into(), "é".into())
        );
    }

    #[test]
    fn unsafe_forms_are_refused() {
        use Refusal::*;
        assert_eq!(refused(b"", ""), NotAbsolute);
        assert_eq!(refused(b"a/b", "a/b"), NotAbsolute);
        assert_eq!(refused(b"/../etc/passwd", "/../etc/passwd"), DotSegment);
        assert_eq!(refused(b"/a/..", "/a/%2e%2e"), DotSegment);
        assert_eq!(refused(b"/a/./b", "/a/./b"), DotSegment);
        assert_eq!(refused(b"/a/../", "/a/../"), DotSegment);
        assert_eq!(refused(b"/.hidden", "/.hidden"), Dotfile);
        assert_eq!(
            refused(b"/a/.plughost-tmp-1-2", "/a/.plughost-tmp-1-2"),
            Dotfile
        );
        assert_eq!(refused(b"//etc/passwd", "//etc/passwd"), EmptySegment);
        assert_eq!(refused(b"//", "//"), EmptySegment);
        assert_eq!(refused(b"/a//b", "/a//b"), EmptySegment);
        assert_eq!(refused(b"/a//", "/a//"), EmptySegment);
        assert_eq!(refused(b"/a/b", "/a%2Fb"), EncodedSlash);
        assert_eq!(refused(b"/a/b", "/a%2fb"), EncodedSlash);
        assert_eq!(refused(b"/a\\b", "/a%5Cb"), Backslash);
        assert_eq!(refused(b"/a\0b", "/a%00b"), ControlByte);
        assert_eq!(refused(b"/a\nb", "/a%0Ab"), ControlByte);
        assert_eq!(refused(b"/a\x7fb", "/a%7Fb"), ControlByte);
        assert_eq!(refused("/a\u{85}".as_bytes(), "/a%C2%85"), ControlByte);
        assert_eq!(refused(b"/a\xffb", "/a%ffb"), NotUtf8);
        assert_eq!(refused(b"/__index.html", "/__index.html"), IndexName);
        assert_eq!(refused(b"/d/__index.html", "/d/__index.html"), IndexName);
        assert_eq!(refused(b"/__index.html/x", "/__index.html/x"), IndexName);
        // Double-encoded: decoded once, the segment is still an escape of `..`.
        assert_eq!(refused(b"/%2e%2e/x", "/%252e%252e/x"), EncodedEscape);
        assert_eq!(refused(b"/a/%2E", "/a/%252E"), EncodedEscape);
        assert_eq!(refused(b"/a%2fb", "/a%252fb"), EncodedEscape);
        assert_eq!(refused(b"/a%5Cb", "/a%255Cb"), EncodedEscape);
        assert_eq!(ok("/100%25/x").0, "100%25/x");
    }

    #[test]
    fn limits() {
        let seg = "s".repeat(MAX_SEGMENT_BYTES);
        ok(&format!("/{seg}"));
        let long = format!("/{seg}s");
        assert_eq!(refused(long.as_bytes(), &long), Refusal::SegmentTooLong);

        let deep = "/d".repeat(MAX_DEPTH);
        ok(&deep);
        let deeper = "/d".repeat(MAX_DEPTH + 1);
        assert_eq!(refused(deeper.as_bytes(), &deeper), Refusal::TooDeep);
        // A directory index counts as the segment it stands for.
        let deep_dir = format!("{}/", "/d".repeat(MAX_DEPTH));
        ok(&deep_dir);

        let path = format!("/{}", "abcdefgh/".repeat(MAX_PATH_BYTES / 9 + 1));
        assert_eq!(refused(path.as_bytes(), &path), Refusal::TooLong);
    }

    #[test]
    fn scope_is_on_segment_boundaries() {
        let p = vec!["/licenses".to_owned(), "/docs/".to_owned()];
        assert!(in_scope(b"/licenses", &p));
        assert!(in_scope(b"/licenses/", &p));
        assert!(in_scope(b"/licenses/by/4.0", &p));
        assert!(!in_scope(b"/licenses-old", &p));
        assert!(!in_scope(b"/licensesx/y", &p));
        assert!(in_scope(b"/docs/", &p));
        assert!(in_scope(b"/docs/a", &p));
        assert!(!in_scope(b"/docs", &p));
        assert!(!in_scope(b"/", &p));
        assert!(in_scope(b"/anything", &["/".to_owned()]));
    }

    #[test]
    fn index_names() {
        assert!(valid_index("__index.html"));
        assert!(valid_index("index.html"));
        for bad in ["", ".", "..", ".index", "a/b", "a\\b", "a\0"] {
            assert!(!valid_index(bad), "{bad:?}");
        }
    }
}
