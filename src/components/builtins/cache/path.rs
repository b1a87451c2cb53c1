//! URL path → cache file: the one mapping used by lookups and stores.
//!
//! It works on path segments and refuses, rather than normalises, anything that
//! could name a file outside the tree, alias another key, or collide with the
//! cache's own temporary files. A refused path is passed to the app untouched.

use std::fmt;

/// Most segments a cached path may have.
pub const MAX_DEPTH: usize = 32;
/// Longest PATH_INFO (in bytes) that is cached.
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest segment (in bytes): the usual file-name limit.
pub const MAX_SEGMENT_BYTES: usize = 255;

/// Why a path cannot be mapped to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// PATH_INFO is empty or does not start with `/`.
    NotAbsolute,
    EmptySegment,
    /// A `.` or `..` segment (raw or percent-encoded).
    DotSegment,
    /// A segment starting with `.` (dotfiles and the cache's temporary files).
    Dotfile,
    /// `%2F` in the raw path: a `/` inside a segment.
    EncodedSlash,
    Backslash,
    /// NUL or another control character.
    ControlByte,
    NotUtf8,
    SegmentTooLong,
    TooDeep,
    TooLong,
    /// A segment equal to `directory_index` (it would alias the directory's URL).
    IndexName,
    /// A segment that still holds a percent-escape of `.`, `/` or `\` after
    /// decoding (`/%252e%252e/`): a front end or app that decodes again would
    /// see a dot segment or separator where the tree has a literal name.
    EncodedEscape,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::NotAbsolute => "not an absolute path",
            Refusal::EmptySegment => "empty segment",
            Refusal::DotSegment => "dot segment",
            Refusal::Dotfile => "segment starting with a dot",
            Refusal::EncodedSlash => "encoded slash",
            Refusal::Backslash => "backslash",
            Refusal::ControlByte => "control character",
            Refusal::NotUtf8 => "invalid UTF-8",
            Refusal::SegmentTooLong => "segment too long",
            Refusal::TooDeep => "too many segments",
            Refusal::TooLong => "path too long",
            Refusal::IndexName => "directory_index as a segment",
            Refusal::EncodedEscape => "percent-escaped dot, slash or backslash after decoding",
        })
    }
}

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
}

/// Map PATH_INFO (percent-decoded, relative to the mount) to a file. `raw_path`
/// is the request target's path as received, for forms decoding hides.
pub fn map(path_info: &[u8], raw_path: &str, index: &str) -> Result<CachePath, Refusal> {
    let Some(body) = path_info.strip_prefix(b"/") else {
        return Err(Refusal::NotAbsolute);
    };
    if path_info.len() > MAX_PATH_BYTES {
        return Err(Refusal::TooLong);
    }
    if has_encoded_slash(raw_path.as_bytes()) {
        return Err(Refusal::EncodedSlash);
    }
    let body = std::str::from_utf8(body).map_err(|_| Refusal::NotUtf8)?;
    // `/` and `/dir/` name the directory's index file.
    let (dirs, name) = if body.is_empty() {
        ("", None)
    } else if let Some(dirs) = body.strip_suffix('/') {
        (dirs, None)
    } else {
        match body.rfind('/') {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => ("", Some(body)),
        }
    };
    let mut depth = 0;
    // `dirs` is empty for a file in cache_dir itself, and also for `//x` and
    // `//`, whose empty first segment must be refused.
    if !dirs.is_empty() || body.starts_with('/') {
        for seg in dirs.split('/') {
            depth += 1;
            check_segment(seg, index)?;
        }
    }
    if let Some(name) = name {
        depth += 1;
        check_segment(name, index)?;
    }
    if depth > MAX_DEPTH {
        return Err(Refusal::TooDeep);
    }
    Ok(match name {
        Some(_) => CachePath {
            rel: body.to_owned(),
            name_at: body.rfind('/').map_or(0, |i| i + 1),
        },
        None => {
            let mut rel = String::with_capacity(body.len() + index.len());
            rel.push_str(body);
            rel.push_str(index);
            CachePath {
                rel,
                name_at: body.len(),
            }
        }
    })
}

fn check_segment(seg: &str, index: &str) -> Result<(), Refusal> {
    if seg.is_empty() {
        return Err(Refusal::EmptySegment);
    }
    if seg == "." || seg == ".." {
        return Err(Refusal::DotSegment);
    }
    if seg.starts_with('.') {
        return Err(Refusal::Dotfile);
    }
    if seg.len() > MAX_SEGMENT_BYTES {
        return Err(Refusal::SegmentTooLong);
    }
    if seg.contains('\\') {
        return Err(Refusal::Backslash);
    }
    if seg.chars().any(char::is_control) {
        return Err(Refusal::ControlByte);
    }
    if seg == index {
        return Err(Refusal::IndexName);
    }
    if has_escaped_separator(seg.as_bytes()) {
        return Err(Refusal::EncodedEscape);
    }
    Ok(())
}

/// `%2E`, `%2F` or `%5C` (any case) in an already decoded segment.
fn has_escaped_separator(seg: &[u8]) -> bool {
    seg.windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2] | 0x20),
                (b'2', b'e') | (b'2', b'f') | (b'5', b'c')
            )
    })
}

/// `%2F` / `%2f` anywhere in the raw path.
fn has_encoded_slash(raw: &[u8]) -> bool {
    raw.windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'2' && (w[2] | 0x20) == b'f')
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
    check_segment(name, "").is_ok() && !name.contains('/')
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
