//! `layout`: how a mapped URL path becomes a file path. `paths` (the default,
//! wsgi_cache's) stores `/a/b` as the file `a/b`; `dirs` stores it as
//! `a/b/INDEX` (WP Super Cache's `index.html` files), so `/a` and `/a/b` can
//! both be pages.

use super::path::CachePath;

/// The `layout` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    Paths,
    Dirs,
}

/// Why a path has no file under the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlashAlias;

impl Layout {
    pub(crate) fn parse(v: &str) -> Option<Layout> {
        match v {
            "paths" => Some(Layout::Paths),
            "dirs" => Some(Layout::Dirs),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Layout::Paths => "paths",
            Layout::Dirs => "dirs",
        }
    }

    /// The file for `p` (as `path::map` made it). Under `dirs`, `/a/` would
    /// name the same file as `/a` (an app often answers one with a redirect
    /// to the other), so a trailing-slash path other than `/` has none.
    pub(crate) fn apply(self, p: CachePath, index: &str) -> Result<CachePath, SlashAlias> {
        match self {
            Layout::Paths => Ok(p),
            Layout::Dirs if p.name() != index => Ok(p.into_dir(index)),
            Layout::Dirs if p.parent().is_empty() => Ok(p),
            Layout::Dirs => Err(SlashAlias),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::path::map;
    use super::*;

    fn dirs(url: &str) -> Result<String, SlashAlias> {
        let p = map(url.as_bytes(), url, "index.html").unwrap();
        Layout::Dirs
            .apply(p, "index.html")
            .map(|p| p.rel().to_owned())
    }

    #[test]
    fn pages_beside_their_children() {
        assert_eq!(dirs("/").unwrap(), "index.html");
        assert_eq!(dirs("/items").unwrap(), "items/index.html");
        assert_eq!(dirs("/items/1").unwrap(), "items/1/index.html");
        assert_eq!(dirs("/a.css").unwrap(), "a.css/index.html");
        assert_eq!(dirs("/items/"), Err(SlashAlias));
        let p = map(b"/items/", "/items/", "index.html").unwrap();
        assert_eq!(
            Layout::Paths.apply(p, "index.html").unwrap().rel(),
            "items/index.html"
        );
        let p = map(b"/a/b", "/a/b", "i")
            .unwrap()
            .into_dir("i")
            .under("h:1");
        assert_eq!(
            (p.rel(), p.parent(), p.name()),
            ("h:1/a/b/i", "h:1/a/b", "i")
        );
    }
}
