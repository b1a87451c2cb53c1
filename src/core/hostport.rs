//! `host`, `host:port`, `[v6]` and `[v6]:port`: the one splitter for Host
//! headers, request targets' authorities and `listen` items.

/// Why a `host[:port]` does not split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HostPortError {
    #[error("`[` without a closing `]`")]
    UnclosedBracket,
    #[error("something other than `:port` after `]`")]
    AfterBracket,
    #[error("the port is not a number from 0 to 65535")]
    InvalidPort,
}

/// A split `host[:port]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostPort<'a> {
    /// The host as written: an IPv6 literal keeps its brackets.
    pub host: &'a str,
    /// What follows the last `:` (after `]` for a literal), if there is one:
    /// possibly empty, not checked.
    pub port: Option<&'a str>,
}

impl<'a> HostPort<'a> {
    /// The host without an IPv6 literal's brackets.
    pub(crate) fn name(&self) -> &'a str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(self.host)
    }

    /// Whether the host is an `[IPv6]` literal (its contents not checked).
    pub(crate) fn bracketed(&self) -> bool {
        self.host.starts_with('[')
    }

    /// The port as a number: ASCII digits only (no sign or space), at most
    /// 65535; `None` when there is no port.
    pub(crate) fn port_number(&self) -> Result<Option<u16>, HostPortError> {
        self.port
            .map(|p| {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(HostPortError::InvalidPort);
                }
                p.parse().map_err(|_| HostPortError::InvalidPort)
            })
            .transpose()
    }
}

/// Split `value` into host and port: `[v6]` and `[v6]:port` at the closing
/// bracket, anything else at its last `:`. The port is not checked (see
/// [`HostPort::port_number`]), nor the host's characters.
pub(crate) fn split_host_port(value: &str) -> Result<HostPort<'_>, HostPortError> {
    if value.starts_with('[') {
        let end = value.find(']').ok_or(HostPortError::UnclosedBracket)?;
        let (host, rest) = value.split_at(end + 1);
        return match rest.strip_prefix(':') {
            None if rest.is_empty() => Ok(HostPort { host, port: None }),
            Some(port) => Ok(HostPort {
                host,
                port: Some(port),
            }),
            None => Err(HostPortError::AfterBracket),
        };
    }
    // A byte search: `rsplit_once(':')` walks chars backwards, slower per request.
    Ok(match value.bytes().rposition(|b| b == b':') {
        Some(colon) => HostPort {
            host: &value[..colon],
            port: Some(&value[colon + 1..]),
        },
        None => HostPort {
            host: value,
            port: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(v: &str) -> Result<(&str, &str, Option<&str>), HostPortError> {
        split_host_port(v).map(|hp| (hp.host, hp.name(), hp.port))
    }

    #[test]
    fn forms() {
        assert_eq!(
            split("example.com"),
            Ok(("example.com", "example.com", None))
        );
        assert_eq!(
            split("example.com:8080"),
            Ok(("example.com", "example.com", Some("8080")))
        );
        assert_eq!(split("[::1]"), Ok(("[::1]", "::1", None)));
        assert_eq!(split("[::1]:80"), Ok(("[::1]", "::1", Some("80"))));
        assert_eq!(split("[::1]:"), Ok(("[::1]", "::1", Some(""))));
        assert_eq!(split(""), Ok(("", "", None)));
        assert_eq!(split(":80"), Ok(("", "", Some("80"))));
        assert_eq!(split("::1:80"), Ok(("::1", "::1", Some("80"))));
        assert_eq!(split("[::1"), Err(HostPortError::UnclosedBracket));
        assert_eq!(split("[::1]x"), Err(HostPortError::AfterBracket));
        assert_eq!(split("[::1]]:80"), Err(HostPortError::AfterBracket));
    }

    #[test]
    fn ports() {
        let port = |v| split_host_port(v).unwrap().port_number();
        assert_eq!(port("a"), Ok(None));
        assert_eq!(port("a:0"), Ok(Some(0)));
        assert_eq!(port("[::1]:65535"), Ok(Some(65535)));
        for bad in ["a:", "a:65536", "a:+80", "a: 80", "a:80 ", "a:x"] {
            assert_eq!(port(bad), Err(HostPortError::InvalidPort), "{bad}");
        }
    }
}
