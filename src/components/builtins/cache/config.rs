//! The filter's section keys: wsgi_cache's four plus plughost's limits. An
//! unknown key is an error (as the original's factory signature made it), so a
//! typo never leaves a default silently in place.

use crate::core::builtin::SettingError;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::budget::{self, Limits};
use super::bus::{BusKeys, BusSettings};
use super::cookies::IgnoredCookies;
use super::hosts::{self, Hosts};
use super::invalidate::Invalidation;
use super::layout::Layout;
use super::path::valid_index;
use super::twins::{self, Compress};
use crate::core::config::Component;

/// Bodies larger than this are not stored unless `max_entry_bytes` says otherwise.
pub(crate) const DEFAULT_MAX_ENTRY_BYTES: u64 = 64 * 1024 * 1024;
/// Memory for copies of hot pages, unless `memory_cache_bytes` says otherwise.
pub(crate) const DEFAULT_MEMORY_CACHE_BYTES: u64 = 32 * 1024 * 1024;
/// How long concurrent misses wait for the first one, unless `lock_timeout` says otherwise.
pub(crate) const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

const KEYS: &str = "cache_dir, content_type, cache_paths, directory_index, max_entry_bytes, \
                    status_header, lock_timeout, fsync, memory_cache_bytes, ignore_cookies, adopt, \
                    layout, host_dirs, host_port, hosts, max_size, max_files, inactive, \
                    compress, compress_types, compress_min_size, purge_on, purge_parent, \
                    purge_allow, purge_token, expose_tags, refresh_concurrency, stale_max, \
                    purge_bus, purge_stream, node_name, purge_stream_max";

/// A cache section, checked.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    /// Absolute (resolved against the defining file's directory).
    pub cache_dir: PathBuf,
    /// The Content-Type of every hit (`text/html` under `content_type = auto`,
    /// as the type of a page whose own type is unknown).
    pub content_type: String,
    /// `content_type = auto`: each page keeps the Content-Type it was stored with.
    pub auto_type: bool,
    /// How a URL path becomes a file path (`layout`).
    pub layout: Layout,
    /// `host_dirs`, `host_port` and `hosts`: which hosts are cached, and where.
    pub hosts: Hosts,
    /// `max_size`, `max_files`, `inactive`: the disk budget.
    pub budget: Limits,
    /// `compress`, `compress_types`, `compress_min_size`: compressed twins.
    pub compress: Option<Compress>,
    /// Prefixes a path must be under to be cached (None: every path).
    pub cache_paths: Option<Vec<String>>,
    /// The file name a URL ending in `/` maps to.
    pub directory_index: String,
    pub max_entry_bytes: u64,
    /// The response header marking HIT, MISS or BYPASS, if any.
    pub status_header: Option<HeaderName>,
    pub lock_timeout: Duration,
    /// fsync each file before renaming it into place (crash safety).
    pub fsync: bool,
    /// Memory for revalidated copies of hot pages (0: none).
    pub memory_cache_bytes: u64,
    /// Cookies that do not make a request personal.
    pub ignore_cookies: IgnoredCookies,
    /// Take over a non-empty cache_dir without the marker (see `owner`).
    pub adopt: bool,
    /// `purge_on`, `PURGE`, tags and soft purges (see `invalidate`).
    pub inval: Invalidation,
    /// `purge_bus` and its keys (see `bus`).
    pub bus: Option<BusSettings>,
}

impl Settings {
    pub(super) fn from_component(c: &Component) -> Result<Settings, SettingError> {
        let mut cache_dir = None;
        let mut host_port = None;
        let mut compress_types = None;
        let mut compress_min_size = None;
        let mut s = Settings {
            cache_dir: PathBuf::new(),
            content_type: "text/html".into(),
            auto_type: false,
            layout: Layout::Paths,
            hosts: Hosts::default(),
            budget: Limits::default(),
            compress: None,
            cache_paths: None,
            directory_index: "__index.html".into(),
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            status_header: None,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            fsync: true,
            memory_cache_bytes: DEFAULT_MEMORY_CACHE_BYTES,
            ignore_cookies: IgnoredCookies::default(),
            adopt: false,
            inval: Invalidation::default(),
            bus: None,
        };
        let mut bus = BusKeys::default();
        for (key, value) in &c.local_conf {
            let err = |m: String| SettingError::key(key, m);
            let v = value.trim();
            match key.as_str() {
                "cache_dir" => {
                    if v.is_empty() {
                        return Err(err("must not be empty".into()));
                    }
                    let dir = c.dir().join(v);
                    if dir.parent().is_none() {
                        return Err(err(format!(
                            "refusing `{v}`: a system directory is never a cache_dir (the cache needs a directory of its own)"
                        )));
                    }
                    cache_dir = Some(dir);
                }
                "content_type" if v.eq_ignore_ascii_case("auto") => s.auto_type = true,
                "content_type" => {
                    if HeaderValue::from_str(v).is_err() || v.is_empty() {
                        return Err(err(format!("`{v}` is not a valid header value")));
                    }
                    s.content_type = v.to_owned();
                }
                "cache_paths" => {
                    let mut paths = Vec::new();
                    for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                        if !p.starts_with('/') {
                            return Err(err(format!("`{p}` must start with `/`")));
                        }
                        paths.push(p.to_owned());
                    }
                    if paths.is_empty() {
                        return Err(err("no paths given".into()));
                    }
                    s.cache_paths = Some(paths);
                }
                "directory_index" => {
                    if !valid_index(v) {
                        return Err(err(format!(
                            "`{v}` must be a plain file name (not empty, no `/`, `\\` or control characters, not starting with `.`)"
                        )));
                    }
                    s.directory_index = v.to_owned();
                }
                "max_entry_bytes" => {
                    s.max_entry_bytes = parse_bytes(v).ok_or_else(|| {
                        err(format!(
                            "expected a number of bytes (e.g. 1048576 or 64MiB), found `{v}`"
                        ))
                    })?
                }
                "status_header" => {
                    s.status_header = if v.is_empty() {
                        None
                    } else {
                        Some(
                            HeaderName::from_bytes(v.as_bytes())
                                .map_err(|_| err(format!("`{v}` is not a valid header name")))?,
                        )
                    }
                }
                "lock_timeout" => {
                    s.lock_timeout = v
                        .parse::<f64>()
                        .ok()
                        .filter(|t| t.is_finite() && *t >= 0.0 && *t <= 3600.0)
                        .map(Duration::from_secs_f64)
                        .ok_or_else(|| err(format!("expected seconds (0 to 3600), found `{v}`")))?
                }
                "memory_cache_bytes" => {
                    s.memory_cache_bytes = parse_bytes(v).ok_or_else(|| {
                        err(format!(
                            "expected a number of bytes (0 turns it off), found `{v}`"
                        ))
                    })?
                }
                "ignore_cookies" => {
                    s.ignore_cookies = IgnoredCookies::parse(v).map_err(|e| err(e.to_string()))?
                }
                "layout" => {
                    s.layout = Layout::parse(v)
                        .ok_or_else(|| err(format!("expected `paths` or `dirs`, found `{v}`")))?
                }
                "host_dirs" => {
                    s.hosts.dirs = parse_bool(v)
                        .ok_or_else(|| err(format!("expected true or false, found `{v}`")))?
                }
                "host_port" => {
                    host_port = Some(
                        parse_bool(v)
                            .ok_or_else(|| err(format!("expected true or false, found `{v}`")))?,
                    )
                }
                "max_size" => {
                    s.budget.max_size = Some(parse_bytes(v).filter(|n| *n > 0).ok_or_else(|| {
                        err(format!(
                            "expected a number of bytes above 0 (e.g. 512K, 100M, 2G), found `{v}`"
                        ))
                    })?)
                }
                "max_files" => {
                    s.budget.max_files =
                        Some(v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                            err(format!("expected a number of pages above 0, found `{v}`"))
                        })?)
                }
                "inactive" => {
                    s.budget.inactive = Some(budget::parse_duration(v).ok_or_else(|| {
                        err(format!(
                            "expected a duration above 0 (seconds, or with s, m, h or d: 10m, 7d), found `{v}`"
                        ))
                    })?)
                }
                "compress" => {
                    s.compress = Some(Compress {
                        encs: twins::parse_encs(v).map_err(err)?,
                        types: Vec::new(),
                        min_size: 0,
                    })
                }
                "compress_types" => {
                    let types: Vec<String> = v
                        .split([' ', ','])
                        .filter(|t| !t.is_empty())
                        .map(str::to_ascii_lowercase)
                        .collect();
                    if let Some(bad) = types.iter().find(|t| t.split('/').count() != 2) {
                        return Err(err(format!("`{bad}` is not a media type (type/subtype)")));
                    }
                    if types.is_empty() {
                        return Err(err("no media types given".into()));
                    }
                    compress_types = Some(types);
                }
                "compress_min_size" => {
                    compress_min_size = Some(parse_bytes(v).ok_or_else(|| {
                        err(format!("expected a number of bytes (e.g. 256 or 1K), found `{v}`"))
                    })?)
                }
                "hosts" => s.hosts.only = Some(hosts::parse_list(v).map_err(err)?),
                "adopt" => {
                    s.adopt = parse_bool(v)
                        .ok_or_else(|| err(format!("expected true or false, found `{v}`")))?
                }
                "fsync" => {
                    s.fsync = parse_bool(v)
                        .ok_or_else(|| err(format!("expected true or false, found `{v}`")))?
                }
                _ => {
                    if !s
                        .inval
                        .take(key, v, parse_bool, budget::parse_duration)
                        .map_err(err)?
                        && !bus.take(key, v).map_err(err)?
                    {
                        return Err(SettingError::key(
                            key,
                            format!("unknown key `{key}`; the cache filter's keys are {KEYS}"),
                        ));
                    }
                }
            }
        }
        match &mut s.compress {
            Some(c) => {
                c.types = compress_types.unwrap_or_else(|| {
                    twins::DEFAULT_TYPES
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect()
                });
                c.min_size = compress_min_size.unwrap_or(twins::DEFAULT_MIN_SIZE);
            }
            None => {
                for (key, set) in [
                    ("compress_types", compress_types.is_some()),
                    ("compress_min_size", compress_min_size.is_some()),
                ] {
                    if set {
                        return Err(SettingError::key(
                            key,
                            "only means something with `compress`",
                        ));
                    }
                }
            }
        }
        if let Some(keep) = host_port {
            if !s.hosts.dirs {
                return Err(SettingError::key(
                    "host_port",
                    "only means something with `host_dirs = true`",
                ));
            }
            s.hosts.port = keep;
        }
        s.bus = bus
            .finish()
            .map_err(|key| SettingError::key(key, "only means something with `purge_bus`"))?;
        s.cache_dir = cache_dir.ok_or_else(|| {
            SettingError::key("cache_dir", "required (the directory to keep pages in)")
        })?;
        Ok(s)
    }
}

/// `1048576`, `512KiB`, `64MiB`, `1GiB` (also `k`/`M`/`G`, all binary).
fn parse_bytes(v: &str) -> Option<u64> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Paste Deploy's `asbool` spellings.
fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "y" | "t" | "1" => Some(true),
        "false" | "no" | "off" | "n" | "f" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_bools() {
        assert_eq!(parse_bytes("1048576"), Some(1 << 20));
        assert_eq!(parse_bytes("64MiB"), Some(64 << 20));
        assert_eq!(parse_bytes("2 k"), Some(2048));
        assert_eq!(parse_bytes("1G"), Some(1 << 30));
        assert_eq!(parse_bytes(""), None);
        assert_eq!(parse_bytes("x"), None);
        assert_eq!(parse_bytes("5 parsecs"), None);
        assert_eq!(parse_bool("Off"), Some(false));
        assert_eq!(parse_bool("yes"), Some(true));
        assert_eq!(parse_bool("maybe"), None);
    }
}
