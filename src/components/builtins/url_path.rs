//! URL path → relative file path below a root: the one mapping shared by the
//! cache's lookups and stores ([`cache::path`](super::cache::path)), its purge
//! command, and the static app ([`static_files`](super::static_files)).
//!
//! It works on path segments and refuses, rather than normalises, anything that
//! could name a file outside the root: `.`/`..` and every other segment starting
//! with a dot, however encoded; an encoded `/` in the raw path (one decoding has
//! turned into a real separator); backslashes, NUL and control characters;
//! invalid UTF-8. The result is relative (no leading `/`, no empty, `.` or `..`
//! segment), so joined to the root it stays inside it lexically; each caller
//! then opens it its own way (the cache beneath a directory fd without
//! symlinks, static by checking the opened file's real path).
//!
//! What differs between callers is a [`Rules`] value (empty segments, double
//! encoding, limits) and the policy left to each: the cache's
//! `directory_index` and refusal reasons, static's index file and redirects.

use std::fmt;

use percent_encoding::{percent_decode_str, AsciiSet, CONTROLS};

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
    /// A segment equal to a reserved name (the cache's `directory_index`: it
    /// would alias the directory's URL).
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

impl std::error::Error for Refusal {}

/// What `//` means to a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EmptySegments {
    /// Refused ([`Refusal::EmptySegment`]): the cache, where `/a//b` must not
    /// alias `/a/b`.
    Refuse,
    /// Skipped: `/a//b` names `a/b` (static files).
    Skip,
}

/// Size limits on a mapped path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Longest PATH_INFO, in bytes.
    pub path_bytes: usize,
    /// Most segments.
    pub depth: usize,
    /// Longest segment, in bytes.
    pub segment_bytes: usize,
}

/// How strict one caller is; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rules {
    pub empty_segments: EmptySegments,
    /// Refuse a segment that still holds `%2E`, `%2F` or `%5C` after decoding
    /// ([`Refusal::EncodedEscape`]); otherwise such a segment is a literal name.
    pub refuse_escapes: bool,
    /// Refuse Unicode (C1) control characters as well as ASCII ones.
    pub unicode_controls: bool,
    /// Refuse `%5C` in the raw path too (as [`Refusal::Backslash`]), not only
    /// the decoded backslash.
    pub raw_backslash: bool,
    /// `None`: only the limits the file system imposes.
    pub limits: Option<Limits>,
}

/// A request path mapped below a root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelPath {
    /// Segments joined by `/`: no empty ones, no leading or trailing slash
    /// (empty: the root itself).
    pub rel: String,
    /// PATH_INFO ended with `/`: it names a directory.
    pub trailing_slash: bool,
}

/// Bytes escaped in a URL path (a `Location`, a page's URL): controls, space, non-ASCII, and what
/// would end or change the path (`?`, `#`, `%`) or is unsafe in URLs.
pub(crate) const PATH_ESCAPE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Percent-decode a URL path (once), as the server does for PATH_INFO.
pub(crate) fn decode(raw: &str) -> Vec<u8> {
    percent_decode_str(raw).collect()
}

/// Map PATH_INFO (percent-decoded) to a path relative to the root, under
/// `rules`. `raw_path` is the request target's path as received, for forms
/// decoding hides. A segment equal to `reserved` (when not empty) is refused
/// as [`Refusal::IndexName`].
pub(crate) fn map(
    path_info: &[u8],
    raw_path: &str,
    rules: &Rules,
    reserved: &str,
) -> Result<RelPath, Refusal> {
    if let Some(limits) = &rules.limits {
        if path_info.len() > limits.path_bytes {
            return Err(Refusal::TooLong);
        }
    }
    check_raw(raw_path.as_bytes(), rules)?;
    let path = std::str::from_utf8(path_info).map_err(|_| Refusal::NotUtf8)?;
    let trailing_slash = path.ends_with('/');
    // One leading and one trailing slash delimit the segments; any other empty
    // segment is `//` somewhere.
    let body = path.strip_prefix('/').unwrap_or(path);
    let body = body.strip_suffix('/').unwrap_or(body);
    let mut rel = String::with_capacity(body.len());
    let mut depth = 0;
    // `body` is empty for `/` (no segment) and for `//` (one empty segment).
    if !body.is_empty() || path.len() > 1 {
        for seg in body.split('/') {
            if seg.is_empty() && rules.empty_segments == EmptySegments::Skip {
                continue;
            }
            depth += 1;
            check_segment(seg, rules, reserved)?;
            if !rel.is_empty() {
                rel.push('/');
            }
            rel.push_str(seg);
        }
    }
    if let Some(limits) = &rules.limits {
        if depth > limits.depth {
            return Err(Refusal::TooDeep);
        }
    }
    Ok(RelPath {
        rel,
        trailing_slash,
    })
}

/// Check one decoded segment under `rules`; `reserved` as for [`map`].
pub(crate) fn check_segment(seg: &str, rules: &Rules, reserved: &str) -> Result<(), Refusal> {
    if seg.is_empty() {
        return Err(Refusal::EmptySegment);
    }
    if seg == "." || seg == ".." {
        return Err(Refusal::DotSegment);
    }
    if seg.starts_with('.') {
        return Err(Refusal::Dotfile);
    }
    if let Some(limits) = &rules.limits {
        if seg.len() > limits.segment_bytes {
            return Err(Refusal::SegmentTooLong);
        }
    }
    if seg.contains('\\') {
        return Err(Refusal::Backslash);
    }
    let control = if rules.unicode_controls {
        seg.chars().any(char::is_control)
    } else {
        seg.bytes().any(|b| b.is_ascii_control())
    };
    if control {
        return Err(Refusal::ControlByte);
    }
    if !reserved.is_empty() && seg == reserved {
        return Err(Refusal::IndexName);
    }
    if rules.refuse_escapes && has_escaped_separator(seg.as_bytes()) {
        return Err(Refusal::EncodedEscape);
    }
    Ok(())
}

/// The raw path's encoded separators: `%2F` always, `%5C` when the rules say.
fn check_raw(raw: &[u8], rules: &Rules) -> Result<(), Refusal> {
    let mut backslash = false;
    for w in raw.windows(3) {
        if w[0] != b'%' {
            continue;
        }
        match (w[1], w[2] | 0x20) {
            (b'2', b'f') => return Err(Refusal::EncodedSlash),
            (b'5', b'c') => backslash = true,
            _ => {}
        }
    }
    if backslash && rules.raw_backslash {
        return Err(Refusal::Backslash);
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

#[cfg(test)]
mod tests {
    use super::*;

    const LAX: Rules = Rules {
        empty_segments: EmptySegments::Skip,
        refuse_escapes: false,
        unicode_controls: false,
        raw_backslash: true,
        limits: None,
    };

    fn encoded_separator(raw: &[u8]) -> bool {
        check_raw(raw, &LAX).is_err()
    }

    #[test]
    fn encoded_separator_detection() {
        assert!(encoded_separator(b"/a%2Fb"));
        assert!(encoded_separator(b"%2f"));
        assert!(encoded_separator(b"/x%5c"));
        assert!(!encoded_separator(b"/a%25b/%2"));
        assert!(!encoded_separator(b"/a%252Fb"));
    }

    #[test]
    fn raw_backslash_reason_follows_the_encoded_slash() {
        assert_eq!(check_raw(b"/a%5C%2F", &LAX), Err(Refusal::EncodedSlash));
        assert_eq!(check_raw(b"/a%5C", &LAX), Err(Refusal::Backslash));
        let cache_like = Rules {
            raw_backslash: false,
            ..LAX
        };
        assert_eq!(check_raw(b"/a%5C", &cache_like), Ok(()));
    }

    #[test]
    fn decode_is_one_pass() {
        assert_eq!(decode("/a%20b/%252e"), b"/a b/%2e");
    }
}
