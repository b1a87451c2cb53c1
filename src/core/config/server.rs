//! The `[server:NAME]` section: where and how to listen.
//!
//! Keys follow waitress (`host`, `port`, `listen`, `threads`, `url_scheme`,
//! `url_prefix`) plus plughost's limits. An unknown key is an error, so a typo
//! never silently leaves a default in place.

use std::path::Path;
use std::time::Duration;

use super::ini::Section;
use super::trusted_proxy::TrustedProxy;
use super::{ConfigError, ErrorKind};

/// Server settings, with defaults a public server can use.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// `host:port` pairs to listen on.
    pub listen: Vec<(String, u16)>,
    /// Plugin worker threads: at most this many plugin calls run at once.
    pub threads: usize,
    /// `wsgi.url_scheme` for requests (`http` or `https` behind a TLS proxy).
    pub url_scheme: String,
    /// A prefix moved from PATH_INFO to SCRIPT_NAME on every request.
    pub url_prefix: String,
    /// Largest request head (request line and headers) in bytes; larger gets 431.
    pub max_header_bytes: usize,
    /// Largest request body in bytes; larger gets 413.
    pub max_body_bytes: u64,
    /// Time a client has to send the request head.
    pub header_timeout: Duration,
    /// How long a graceful shutdown waits for requests in flight.
    pub shutdown_timeout: Duration,
    /// Longest wait for the next piece of a request body (slow-body clients).
    pub body_timeout: Duration,
    /// Request bodies up to this many bytes are held in memory; the rest of a
    /// larger one is spooled to an unlinked temporary file.
    pub request_buffer_bytes: u64,
    /// Bytes per second a body larger than `request_buffer_bytes` must average
    /// after its first [`MIN_RATE_GRACE`], or it gets 408 (0: no minimum).
    pub min_body_rate: u64,
    /// Longest time a response write may make no progress before the
    /// connection is closed (clients that stop reading).
    pub send_timeout: Duration,
    /// Longest time a plugin call may take before the client gets a 504.
    pub request_timeout: Duration,
    /// Most connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// waitress's `trusted_proxy*` and `clear_untrusted_proxy_headers`.
    pub trusted_proxy: TrustedProxy,
    /// waitress's `unix_socket`: also (with no `host`/`port`/`listen`: only)
    /// serve on this unix socket.
    pub unix_socket: Option<std::path::PathBuf>,
    /// waitress's `unix_socket_perms`: the socket file's mode.
    pub unix_socket_perms: u32,
}

/// How long a large request body may take before `min_body_rate` applies.
pub(crate) const MIN_RATE_GRACE: Duration = Duration::from_secs(10);

pub(crate) const DEFAULT_HOST: &str = "127.0.0.1";
pub(crate) const DEFAULT_PORT: u16 = 8080;

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: vec![(DEFAULT_HOST.to_owned(), DEFAULT_PORT)],
            threads: 8,
            url_scheme: "http".into(),
            url_prefix: String::new(),
            max_header_bytes: 64 * 1024,
            max_body_bytes: 1024 * 1024 * 1024,
            header_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            request_buffer_bytes: 1024 * 1024,
            min_body_rate: 1024,
            send_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            trusted_proxy: TrustedProxy::default(),
            unix_socket: None,
            unix_socket_perms: 0o600,
        }
    }
}

/// The `use =` values that name the built-in HTTP server.
pub(crate) const SERVER_USES: &[&str] = &[
    "egg:plughost#http",
    "egg:plughost",
    "egg:Paste#http",
    "egg:waitress#main",
    "egg:waitress",
];

impl ServerConfig {
    /// Read a server section whose values are already interpolated.
    pub fn from_section(
        file: &Path,
        section: &Section,
        values: &[(String, String, usize)],
    ) -> Result<ServerConfig, ConfigError> {
        let mut cfg = ServerConfig::default();
        let mut host = None;
        let mut port = None;
        let (mut count_set, mut headers_set) = (false, false);
        let mut listen_set = false;
        for (key, value, line) in values {
            let err = |message: String| {
                ConfigError::new(ErrorKind::BadValue, file, message)
                    .at(*line)
                    .in_section(&section.header)
                    .for_key(key)
            };
            match key.as_str() {
                "use" => {
                    let known = SERVER_USES.iter().chain(super::server_alias::USES);
                    if !known.clone().any(|u| u.eq_ignore_ascii_case(value)) {
                        return Err(err(format!(
                            "unknown server {value:?}; plughost serves HTTP itself: use one of {}",
                            known.copied().collect::<Vec<_>>().join(", ")
                        )));
                    }
                }
                "host" => host = Some(value.clone()),
                "port" => port = Some(value.parse::<u16>().map_err(|_| err(format!("not a port number: {value:?}")))?),
                "listen" => {
                    listen_set = true;
                    cfg.listen = value
                        .split_whitespace()
                        .map(|item| parse_listen(item).ok_or_else(|| err(format!("expected HOST:PORT, found {item:?}"))))
                        .collect::<Result<_, _>>()?;
                    if cfg.listen.is_empty() {
                        return Err(err("empty".into()));
                    }
                }
                "threads" => {
                    cfg.threads = positive(value).ok_or_else(|| err(format!("expected a positive number, found {value:?}")))?
                }
                "url_scheme" => {
                    if value != "http" && value != "https" {
                        return Err(err(format!("expected http or https, found {value:?}")));
                    }
                    cfg.url_scheme = value.clone();
                }
                "url_prefix" => {
                    let trimmed = value.trim_end_matches('/');
                    if !trimmed.is_empty() && !trimmed.starts_with('/') {
                        return Err(err(format!("must start with `/`: {value:?}")));
                    }
                    cfg.url_prefix = trimmed.to_owned();
                }
                "max_header_bytes" => {
                    cfg.max_header_bytes = positive(value)
                        .filter(|n| *n >= 8192)
                        .ok_or_else(|| err(format!("expected a number of bytes >= 8192, found {value:?}")))?
                }
                "max_body_bytes" => {
                    cfg.max_body_bytes = value.parse().map_err(|_| err(format!("expected a number of bytes, found {value:?}")))?
                }
                "header_timeout" => cfg.header_timeout = seconds(value).ok_or_else(|| err(format!("expected seconds, found {value:?}")))?,
                "shutdown_timeout" => cfg.shutdown_timeout = seconds(value).ok_or_else(|| err(format!("expected seconds, found {value:?}")))?,
                "body_timeout" => cfg.body_timeout = seconds(value).ok_or_else(|| err(format!("expected seconds, found {value:?}")))?,
                "request_buffer_bytes" => {
                    cfg.request_buffer_bytes = value.parse().map_err(|_| err(format!("expected a number of bytes, found {value:?}")))?
                }
                "min_body_rate" => {
                    cfg.min_body_rate = value.parse().map_err(|_| err(format!("expected bytes per second, found {value:?}")))?
                }
                "send_timeout" => cfg.send_timeout = seconds(value).ok_or_else(|| err(format!("expected seconds, found {value:?}")))?,
                "request_timeout" => cfg.request_timeout = seconds(value).ok_or_else(|| err(format!("expected seconds, found {value:?}")))?,
                "max_connections" => {
                    cfg.max_connections = positive(value).ok_or_else(|| err(format!("expected a positive number, found {value:?}")))?
                }
                "trusted_proxy" => {
                    let v = value.trim();
                    cfg.trusted_proxy.proxy = (!v.is_empty()).then(|| v.to_owned());
                }
                "trusted_proxy_count" => {
                    cfg.trusted_proxy.count = positive(value).ok_or_else(|| err(format!("expected a positive number, found {value:?}")))?;
                    count_set = true;
                }
                "trusted_proxy_headers" => {
                    cfg.trusted_proxy.headers = TrustedProxy::parse_headers(value).map_err(err)?;
                    headers_set = true;
                }
                "unix_socket" => {
                    let v = value.trim();
                    if v.is_empty() {
                        return Err(err("empty".into()));
                    }
                    let dir = file.parent().unwrap_or(Path::new("/"));
                    cfg.unix_socket = Some(dir.join(v));
                }
                "unix_socket_perms" => {
                    cfg.unix_socket_perms = u32::from_str_radix(value.trim().trim_start_matches("0o"), 8)
                        .ok()
                        .filter(|m| *m <= 0o777)
                        .ok_or_else(|| err(format!("expected an octal file mode such as 600, found {value:?}")))?
                }
                "clear_untrusted_proxy_headers" => {
                    cfg.trusted_proxy.clear_untrusted = boolean(value).ok_or_else(|| err(format!("expected true or false, found {value:?}")))?
                }
                _ => {
                    return Err(ConfigError::new(
                        ErrorKind::UnknownKey,
                        file,
                        "unknown server key; known keys: use, host, port, listen, threads, url_scheme, url_prefix, \
                         max_header_bytes, max_body_bytes, request_buffer_bytes, min_body_rate, header_timeout, \
                         body_timeout, send_timeout, request_timeout, max_connections, shutdown_timeout, \
                         trusted_proxy, trusted_proxy_count, trusted_proxy_headers, clear_untrusted_proxy_headers, \
                         unix_socket, unix_socket_perms",
                    )
                    .at(*line)
                    .in_section(&section.header)
                    .for_key(key))
                }
            }
        }
        if let Err((key, why)) = cfg.trusted_proxy.finish(count_set, headers_set) {
            let line = values
                .iter()
                .find(|(k, _, _)| k == key)
                .map_or(section.line, |(_, _, l)| *l);
            return Err(ConfigError::new(ErrorKind::BadValue, file, why)
                .at(line)
                .in_section(&section.header)
                .for_key(key));
        }
        if host.is_some() || port.is_some() {
            cfg.listen = vec![(
                host.unwrap_or_else(|| DEFAULT_HOST.to_owned()),
                port.unwrap_or(DEFAULT_PORT),
            )];
        } else if cfg.unix_socket.is_some() && !listen_set {
            // waitress: a unix socket instead of the default TCP address.
            cfg.listen.clear();
        }
        Ok(cfg)
    }
}

fn positive(value: &str) -> Option<usize> {
    value.parse::<usize>().ok().filter(|n| *n > 0)
}

/// Python's truthy words, as waitress's `asbool` reads them.
fn boolean(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "y" | "t" | "1" => Some(true),
        "false" | "no" | "off" | "n" | "f" | "0" => Some(false),
        _ => None,
    }
}

fn seconds(value: &str) -> Option<Duration> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
}

/// `host:port`, `[v6]:port` or `*:port`.
fn parse_listen(item: &str) -> Option<(String, u16)> {
    let hp = crate::core::hostport::split_host_port(item).ok()?;
    let port = hp.port_number().ok()??;
    let host = hp.name();
    let host = if host == "*" || host.is_empty() {
        "0.0.0.0"
    } else {
        host
    };
    Some((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(parse_listen("127.0.0.1:80"), Some(("127.0.0.1".into(), 80)));
        assert_eq!(parse_listen("[::1]:8080"), Some(("::1".into(), 8080)));
        assert_eq!(parse_listen("*:81"), Some(("0.0.0.0".into(), 81)));
        assert_eq!(parse_listen("nope"), None);
    }
}
