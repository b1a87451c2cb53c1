//! Host trees (`host_dirs`, `host_port`, `hosts`): which request hosts the
//! cache stores pages for, and the directory under cache_dir each one's pages
//! live in. Off by default: then the cache is host-blind, as wsgi_cache was,
//! and no request pays for any of this.

use http::{header, HeaderMap};

use crate::core::hostport::split_host_port;

/// The host settings of one cache section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hosts {
    /// `host_dirs = true`: pages live under `cache_dir/<host>/`.
    pub dirs: bool,
    /// `host_port` (default true): the directory name keeps the Host's port.
    pub port: bool,
    /// `hosts`: the only hosts (lowercase names, no port) stored at all.
    pub only: Option<Vec<String>>,
}

impl Default for Hosts {
    fn default() -> Hosts {
        Hosts {
            dirs: false,
            port: true,
            only: None,
        }
    }
}

/// Why a request's host keeps it out of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// No Host, or one that is neither a DNS name nor an IP literal.
    Invalid,
    /// A valid host `hosts` does not list.
    NotListed,
}

impl Hosts {
    /// Whether requests need looking at (any host key set).
    pub(super) fn active(&self) -> bool {
        self.dirs || self.only.is_some()
    }

    /// The directory for the request's host (`None` without `host_dirs`), or
    /// why the request is not cached.
    pub(super) fn dir_for(&self, headers: &HeaderMap) -> Result<Option<String>, Refused> {
        let raw = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .ok_or(Refused::Invalid)?;
        self.dir_of(&raw.to_ascii_lowercase())
    }

    /// [`Hosts::dir_for`] of a lowercase `host[:port]`.
    pub(super) fn dir_of(&self, lower: &str) -> Result<Option<String>, Refused> {
        let (name, port) = parse(lower).ok_or(Refused::Invalid)?;
        if let Some(only) = &self.only {
            if !only.contains(&name) {
                return Err(Refused::NotListed);
            }
        }
        if !self.dirs {
            return Ok(None);
        }
        Ok(Some(match port {
            Some(p) if self.port => format!("{name}:{p}"),
            _ => name,
        }))
    }
}

/// A lowercase `host[:port]` → (host as a directory names it, port): the host
/// a DNS name or an IP literal (IPv6 keeps its brackets).
fn parse(value: &str) -> Option<(String, Option<u16>)> {
    let hp = split_host_port(value).ok()?;
    let port = hp.port_number().ok()?;
    if hp.port.is_some() && port.is_none() {
        return None;
    }
    let name = hp.name();
    let ok = if hp.bracketed() {
        name.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        name.parse::<std::net::Ipv4Addr>().is_ok() || dns_name(name)
    };
    ok.then(|| (hp.host.to_owned(), port))
}

/// A DNS name (RFC 1123 labels: letters, digits, inner hyphens, 1 to 63
/// bytes each; at most 253 bytes; one trailing dot is not allowed, so a
/// name has one spelling and one directory).
fn dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// The `hosts` key: names (or IP literals) separated by spaces or commas,
/// lowercased; ports are not part of them.
pub(super) fn parse_list(v: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in v.split([' ', ',', '\t']).filter(|s| !s.is_empty()) {
        let lower = item.to_ascii_lowercase();
        match parse(&lower) {
            Some((name, None)) => out.push(name),
            Some((_, Some(_))) => {
                return Err(format!(
                    "`{item}`: list hosts without a port (`host_port` decides the directory)"
                ))
            }
            None => return Err(format!("`{item}` is not a DNS name or IP literal")),
        }
    }
    if out.is_empty() {
        return Err("no hosts given".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_host(h: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::HOST, HeaderValue::from_str(h).unwrap());
        m
    }

    #[test]
    fn directories_per_host() {
        let h = Hosts {
            dirs: true,
            ..Hosts::default()
        };
        let dir = |v: &str| h.dir_for(&with_host(v));
        assert_eq!(dir("A.Example:8080"), Ok(Some("a.example:8080".into())));
        assert_eq!(dir("a.example"), Ok(Some("a.example".into())));
        assert_eq!(dir("127.0.0.1:80"), Ok(Some("127.0.0.1:80".into())));
        assert_eq!(dir("[::1]:80"), Ok(Some("[::1]:80".into())));
        for bad in [
            "",
            "..",
            "a..b",
            "-a.example",
            "a_b.example",
            "a.example.",
            "[zz]",
            "a:x",
            "a:",
            "a/b",
            "%2e%2e",
        ] {
            assert_eq!(dir(bad), Err(Refused::Invalid), "{bad:?}");
        }
        assert_eq!(h.dir_for(&HeaderMap::new()), Err(Refused::Invalid));
        let no_port = Hosts {
            dirs: true,
            port: false,
            only: None,
        };
        assert_eq!(
            no_port.dir_for(&with_host("a.example:8080")),
            Ok(Some("a.example".into()))
        );
    }

    #[test]
    fn only_listed_hosts() {
        let h = Hosts {
            dirs: false,
            port: true,
            only: Some(parse_list("A.example, b.example").unwrap()),
        };
        assert_eq!(h.dir_for(&with_host("a.EXAMPLE:1")), Ok(None));
        assert_eq!(
            h.dir_for(&with_host("evil.example")),
            Err(Refused::NotListed)
        );
        assert!(parse_list("a.example:80").is_err());
        assert!(parse_list("a/b").is_err());
        assert!(parse_list(" , ").is_err());
    }
}
