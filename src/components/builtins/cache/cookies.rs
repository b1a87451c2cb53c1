//! Which request cookies make a request personal. A request that carries any
//! cookie is passed to the app and its response is never stored, unless every
//! cookie it carries matches one of `ignore_cookies` (analytics and consent
//! cookies that do not change the page).

use http::{header, HeaderMap};

/// The `ignore_cookies` globs (`*` any run of characters, `?` one character).
/// A word of `ignore_cookies` that cannot be a cookie name glob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a cookie name glob (no `=`, `;`, quotes or control characters)")]
pub(super) struct BadGlob(pub String);

#[derive(Debug, Clone, Default, PartialEq, Eq)]

pub(super) struct IgnoredCookies {
    globs: Vec<String>,
}

impl IgnoredCookies {
    /// Parse a whitespace- or comma-separated list of cookie-name globs.
    pub(super) fn parse(v: &str) -> Result<IgnoredCookies, BadGlob> {
        let mut globs = Vec::new();
        for g in v.split(|c: char| c == ',' || c.is_whitespace()) {
            if g.is_empty() {
                continue;
            }
            if g.bytes()
                .any(|b| b.is_ascii_control() || b"=;\"".contains(&b))
            {
                return Err(BadGlob(g.to_owned()));
            }
            globs.push(g.to_owned());
        }
        Ok(IgnoredCookies { globs })
    }

    /// Whether the request carries a cookie that no glob lists.
    pub(super) fn personal(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::COOKIE)
            .iter()
            .any(|line| self.personal_line(line.as_bytes()))
    }

    /// Whether one `Cookie` header line carries a cookie that no glob lists.
    pub(super) fn personal_line(&self, line: &[u8]) -> bool {
        line.split(|&b| b == b';')
            .map(|pair| {
                let name = pair.split(|&b| b == b'=').next().unwrap_or(pair);
                name.trim_ascii()
            })
            .filter(|name| !name.is_empty())
            .any(|name| !self.globs.iter().any(|g| glob(g.as_bytes(), name)))
    }
}

/// Shell-style match of `name` against `pattern` (`*`, `?`), case-sensitive
/// as cookie names are. Iterative with one backtrack point: linear for the
/// short patterns a config holds.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn personal(ignore: &str, cookies: &[&str]) -> bool {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(header::COOKIE, c.parse().unwrap());
        }
        IgnoredCookies::parse(ignore).unwrap().personal(&h)
    }

    #[test]
    fn globs() {
        assert!(glob(b"_ga*", b"_ga"));
        assert!(glob(b"_ga*", b"_ga_XYZ"));
        assert!(!glob(b"_ga*", b"x_ga"));
        assert!(glob(b"*id", b"_gid"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a?c", b"ac"));
        assert!(glob(b"*", b""));
        assert!(glob(b"a*b*c", b"a-b-b-c"));
        assert!(!glob(b"a*b*c", b"a-b-b-"));
        assert!(!glob(b"Session", b"session"));
    }

    #[test]
    fn only_unlisted_cookies_make_a_request_personal() {
        assert!(!personal("", &[]));
        assert!(personal("", &["session=1"]));
        assert!(!personal("_ga* _gid", &["_ga=1; _gid=2", "_ga_ABC=3"]));
        assert!(personal("_ga*, _gid", &["_ga=1; session=x"]));
        assert!(personal("_ga*", &["_ga=1", "sid=2"]));
        // Empty pieces (`;;`, a trailing `;`) are not cookies.
        assert!(!personal("_ga", &["_ga=1;; "]));
        assert!(IgnoredCookies::parse("a=b").is_err());
    }
}
