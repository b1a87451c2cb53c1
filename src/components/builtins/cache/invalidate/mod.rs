//! Invalidation beyond deleting files by hand: purges on writes (`purge_on`),
//! the HTTP `PURGE` method, tags (`Surrogate-Key` / `Cache-Tag`), soft purges
//! that refresh a page in the background while the old file keeps being
//! served, and the guard that keeps a store already in flight from putting a
//! purged page back.
//!
//! - `guard`: purges in this process ordered against the commits of stores;
//! - `http`: the `PURGE` method (who may, what it removes, the JSON answer);
//! - `tags`: the tag index under cache_dir and the tags of stored responses;
//! - `refresh`: soft purges, one app call per page at bounded concurrency.
//!
//! This module reads the section's invalidation keys; every one is off (or
//! at its default) unless set, and costs a hit nothing.

pub(super) mod guard;
pub(super) mod http;
pub(super) mod refresh;
pub(super) mod tags;

use std::net::IpAddr;
use std::time::Duration;

use ::http::Method;

/// Soft purges refreshing at once, unless `refresh_concurrency` says otherwise.
pub(super) const DEFAULT_REFRESH_CONCURRENCY: usize = 4;
/// How long a soft-purged page may stay stale, unless `stale_max` says otherwise.
pub(super) const DEFAULT_STALE_MAX: Duration = Duration::from_secs(60);

/// The invalidation keys of one cache section.
#[derive(Debug, Clone)]
pub(super) struct Invalidation {
    /// `purge_on`: methods whose 2xx answers purge the page at their path.
    pub purge_on: Vec<Method>,
    /// `purge_parent`: such a purge also takes the parent directory's page.
    pub purge_parent: bool,
    /// `purge_allow`: who may send `PURGE`.
    pub allow: Vec<Cidr>,
    /// `purge_token`: the bearer token `PURGE` must carry, if set.
    pub token: Option<String>,
    /// `expose_tags`: leave the tag headers in what clients see.
    pub expose_tags: bool,
    /// `refresh_concurrency`: soft-purge refreshes at once.
    pub refresh_concurrency: usize,
    /// `stale_max`: a soft-purged page not refreshed by then is removed.
    pub stale_max: Duration,
}

impl Default for Invalidation {
    fn default() -> Invalidation {
        Invalidation {
            purge_on: Vec::new(),
            purge_parent: false,
            allow: ["127.0.0.1/32", "::1/128"]
                .iter()
                .map(|c| Cidr::parse(c).expect("the default CIDRs parse"))
                .collect(),
            token: None,
            expose_tags: false,
            refresh_concurrency: DEFAULT_REFRESH_CONCURRENCY,
            stale_max: DEFAULT_STALE_MAX,
        }
    }
}

/// What `purge_on` accepts.
const WRITE_METHODS: [Method; 4] = [Method::POST, Method::PUT, Method::PATCH, Method::DELETE];

impl Invalidation {
    /// Take `key` if it is one of this module's: `Ok(false)` when it is not,
    /// `Err` with the message for a bad value.
    pub(super) fn take(
        &mut self,
        key: &str,
        v: &str,
        parse_bool: fn(&str) -> Option<bool>,
        parse_duration: fn(&str) -> Option<Duration>,
    ) -> Result<bool, String> {
        let boolean = |v: &str| parse_bool(v).ok_or(format!("expected true or false, found `{v}`"));
        match key {
            "purge_on" => {
                let mut methods = Vec::new();
                for m in v.split([' ', ',']).filter(|m| !m.is_empty()) {
                    let up = m.to_ascii_uppercase();
                    let Some(method) = WRITE_METHODS.iter().find(|w| w.as_str() == up) else {
                        return Err(format!(
                            "`{m}` is not a method that changes a page (POST, PUT, PATCH, DELETE)"
                        ));
                    };
                    if !methods.contains(method) {
                        methods.push(method.clone());
                    }
                }
                self.purge_on = methods;
            }
            "purge_parent" => self.purge_parent = boolean(v)?,
            "purge_allow" => {
                let mut allow = Vec::new();
                for c in v.split([' ', ',']).filter(|c| !c.is_empty()) {
                    allow.push(Cidr::parse(c).ok_or(format!(
                        "`{c}` is not an address or network (e.g. 10.0.0.0/8, ::1/128)"
                    ))?);
                }
                self.allow = allow;
            }
            "purge_token" => {
                if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err("expected a token without spaces".into());
                }
                self.token = Some(v.to_owned());
            }
            "expose_tags" => self.expose_tags = boolean(v)?,
            "refresh_concurrency" => {
                self.refresh_concurrency = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=256).contains(n))
                    .ok_or(format!("expected a number from 1 to 256, found `{v}`"))?
            }
            "stale_max" => {
                self.stale_max = parse_duration(v).ok_or(format!(
                "expected a duration above 0 (seconds, or with s, m, h or d: 30s, 5m), found `{v}`"
            ))?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Whether a `method` answered 2xx purges its page.
    pub(super) fn purges_on(&self, method: &Method) -> bool {
        !self.purge_on.is_empty() && self.purge_on.contains(method)
    }
}

/// An address or a network: `10.0.0.0/8`, `::1/128`, `192.0.2.7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub(super) fn parse(s: &str) -> Option<Cidr> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let net: IpAddr = addr.trim_matches(['[', ']']).parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Cidr { net, bits })
    }

    /// Whether `addr` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub(super) fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, addr) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    if a[..full] != b[..full] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(key: &str, v: &str) -> Result<Invalidation, String> {
        let mut i = Invalidation::default();
        let bool_of = |v: &str| match v {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        };
        let secs = |v: &str| v.parse().ok().map(Duration::from_secs);
        assert!(i.take(key, v, bool_of, secs)?);
        Ok(i)
    }

    #[test]
    fn purge_on_takes_write_methods_only() {
        let i = take("purge_on", "post PUT,delete").unwrap();
        assert_eq!(i.purge_on, [Method::POST, Method::PUT, Method::DELETE]);
        assert!(i.purges_on(&Method::POST) && !i.purges_on(&Method::GET));
        assert!(take("purge_on", "POST GET").unwrap_err().contains("`GET`"));
        assert!(!Invalidation::default().purges_on(&Method::POST));
    }

    #[test]
    fn networks() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/33").unwrap();
        assert!(v6.contains("2001:db8:7fff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db8:8000::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("203.0.113.1".parse().unwrap()));
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("nope"), None);
        let d = Invalidation::default();
        assert!(d.allow.iter().any(|c| c.contains("::1".parse().unwrap())));
        assert!(!d
            .allow
            .iter()
            .any(|c| c.contains("192.168.1.1".parse().unwrap())));
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        assert!(take("purge_allow", "10.0.0.0/8 nope")
            .unwrap_err()
            .contains("`nope`"));
        assert!(take("refresh_concurrency", "0").is_err());
        assert!(take("purge_token", "a b").is_err());
        assert_eq!(take("stale_max", "30").unwrap().stale_max.as_secs(), 30);
    }
}
