//! The proxy's keys: Paste's `address`, `allowed_request_methods`,
//! `suppress_http_headers`, and plughost's `timeout`, `connect_timeout`,
//! `max_connections`.

use std::path::PathBuf;
use std::time::Duration;

use http::Method;

use crate::core::builtin::SettingError;
use crate::core::config::Component;

/// Where the backend listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `http://host:port`; `authority` as written (the backend's Host).
    Tcp {
        host: String,
        port: u16,
        authority: String,
    },
    /// `unix:/path/to.sock`.
    Unix(PathBuf),
}

/// A proxy's settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The address as configured (for log lines).
    pub address: String,
    pub target: Target,
    /// The address's path (`/base/`), empty when it has none.
    pub base_path: String,
    /// Empty: every method.
    pub allowed_methods: Vec<Method>,
    /// Lower-case request header names never sent to the backend.
    pub suppress: Vec<String>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_connections: usize,
}

const KEYS: &str = "address, allowed_request_methods, suppress_http_headers, timeout, \
                    connect_timeout, max_connections";

impl Settings {
    pub(crate) fn from_component(c: &Component) -> Result<Settings, SettingError> {
        let mut address = None;
        let mut allowed_methods = Vec::new();
        let mut suppress = Vec::new();
        let mut timeout = Duration::from_secs(60);
        let mut connect_timeout = None;
        let mut max_connections = 100;
        for (key, value) in &c.local_conf {
            match key.as_str() {
                "address" => address = Some(value.trim().to_owned()),
                "allowed_request_methods" => {
                    allowed_methods = value
                        .split_whitespace()
                        .map(|m| {
                            Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                                SettingError::key(key, format!("not an HTTP method: {m:?}"))
                            })
                        })
                        .collect::<Result<_, _>>()?
                }
                "suppress_http_headers" => {
                    suppress = value
                        .split_whitespace()
                        .map(|h| h.to_ascii_lowercase().replace('_', "-"))
                        .collect()
                }
                "timeout" => timeout = seconds(key, value)?,
                "connect_timeout" => connect_timeout = Some(seconds(key, value)?),
                "max_connections" => {
                    max_connections = value
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            SettingError::key(
                                key,
                                format!("expected a positive number, found {value:?}"),
                            )
                        })?
                }
                other => {
                    return Err(SettingError::key(
                        other,
                        format!("unknown proxy key; known keys: {KEYS}"),
                    ))
                }
            }
        }
        let address = address.ok_or_else(|| {
            SettingError::new("address is required (http://host:port/base or unix:/path/to.sock)")
        })?;
        let (target, base_path) =
            parse_address(&address).map_err(|why| SettingError::key("address", why))?;
        Ok(Settings {
            address,
            target,
            base_path,
            allowed_methods,
            suppress,
            timeout,
            // A connect takes at most the whole timeout unless told otherwise.
            connect_timeout: connect_timeout.unwrap_or(timeout),
            max_connections,
        })
    }
}

fn seconds(key: &str, value: &str) -> Result<Duration, SettingError> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| SettingError::key(key, format!("expected seconds, found {value:?}")))
}

/// `http://host[:port][/path]` or `unix:/path`, into a target and base path.
fn parse_address(address: &str) -> Result<(Target, String), String> {
    if let Some(path) = address.strip_prefix("unix:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        if !path.starts_with('/') {
            return Err(format!("a unix socket path must be absolute: {address:?}"));
        }
        return Ok((Target::Unix(PathBuf::from(path)), String::new()));
    }
    let Some(rest) = address.strip_prefix("http://") else {
        return Err(format!(
            "expected http://host:port/base or unix:/path/to.sock, found {address:?} \
             (https backends are not supported)"
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if path.contains(['?', '#']) {
        return Err(format!(
            "the address may not carry a query or fragment: {address:?}"
        ));
    }
    let hp = crate::core::hostport::split_host_port(authority)
        .map_err(|_| format!("not a host[:port]: {authority:?}"))?;
    let port = hp
        .port_number()
        .map_err(|_| format!("not a port number in {authority:?}"))?
        .unwrap_or(80);
    let host = hp.name().to_owned();
    if host.is_empty() {
        return Err(format!("no host in {address:?}"));
    }
    let authority = authority.to_owned();
    Ok((
        Target::Tcp {
            host,
            port,
            authority,
        },
        path.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("http://127.0.0.1:8000/base/").unwrap(),
            (
                Target::Tcp {
                    host: "127.0.0.1".into(),
                    port: 8000,
                    authority: "127.0.0.1:8000".into(),
                },
                "/base/".into()
            )
        );
        assert_eq!(
            parse_address("http://example.com").unwrap().0,
            Target::Tcp {
                host: "example.com".into(),
                port: 80,
                authority: "example.com".into(),
            }
        );
        assert_eq!(
            parse_address("unix:/run/app.sock").unwrap().0,
            Target::Unix("/run/app.sock".into())
        );
        assert!(parse_address("https://x").is_err());
        assert!(parse_address("unix:relative.sock").is_err());
        assert!(parse_address("http://h:99999/").is_err());
    }
}
