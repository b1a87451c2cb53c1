//! waitress's trusted proxy headers: from a trusted peer, the configured
//! `X-Forwarded-*` (or `Forwarded`) headers set REMOTE_ADDR, the URL scheme,
//! SERVER_NAME/SERVER_PORT and Host, each value taken `trusted_proxy_count`
//! entries from the right; proxy headers nobody trusts are removed when
//! `clear_untrusted_proxy_headers` is on. A malformed trusted header is a 400.

use http::HeaderValue;

use crate::core::config::trusted_proxy::{ProxyHeader, TrustedProxy};
use crate::core::Request;

/// A trusted proxy header that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("malformed {header} header from trusted proxy: {why}")]
pub(crate) struct Malformed {
    header: &'static str,
    why: String,
}

fn malformed(header: ProxyHeader, why: impl Into<String>) -> Malformed {
    Malformed {
        header: header.name(),
        why: why.into(),
    }
}

/// What the trusted headers said.
#[derive(Default)]
struct Forwarded {
    client: Option<String>,
    host: Option<String>,
    proto: Option<String>,
    port: Option<String>,
}

/// Apply `cfg` to a request from `peer` (an IP, or `localhost` for a unix socket).
pub(crate) fn apply(req: &mut Request, cfg: &TrustedProxy, peer: &str) -> Result<(), Malformed> {
    if !cfg.trusts(peer) {
        if cfg.clear_untrusted {
            for h in ProxyHeader::ALL {
                req.headers.remove(h.name());
            }
        }
        return Ok(());
    }
    if cfg.clear_untrusted {
        for h in ProxyHeader::ALL
            .into_iter()
            .filter(|h| !cfg.headers.contains(h))
        {
            req.headers.remove(h.name());
        }
    }
    let mut fwd = Forwarded::default();
    for &h in &cfg.headers {
        let Some(value) = joined(req, h.name()) else {
            continue;
        };
        match h {
            ProxyHeader::XForwardedFor => fwd.client = Some(pick(&value, cfg.count)),
            ProxyHeader::XForwardedHost => fwd.host = Some(pick(&value, cfg.count)),
            ProxyHeader::XForwardedProto => fwd.proto = Some(pick(&value, cfg.count)),
            ProxyHeader::XForwardedPort => fwd.port = Some(pick(&value, cfg.count)),
            ProxyHeader::XForwardedBy => {}
            ProxyHeader::Forwarded => fwd = forwarded(&value, cfg.count)?,
        }
    }
    if let Some(client) = fwd.client.filter(|c| !c.is_empty()) {
        let (addr, port) = split_client(&client);
        req.remote_addr = addr.into();
        if let Some(port) = port {
            req.remote_port = port;
        }
    }
    let mut port = fwd.port;
    if let Some(proto) = fwd.proto {
        let proto = proto.to_ascii_lowercase();
        let scheme = match proto.as_str() {
            "http" | "ws" => "http",
            "https" | "wss" => "https",
            _ => {
                return Err(malformed(
                    ProxyHeader::XForwardedProto,
                    format!("unknown scheme {proto:?}"),
                ))
            }
        };
        req.scheme = scheme.into();
        if port.is_none() {
            port = Some(if scheme == "https" { "443" } else { "80" }.to_owned());
        }
    }
    if let Some(host) = fwd.host.filter(|h| !h.is_empty()) {
        let hp = crate::core::hostport::split_host_port(&host)
            .map_err(|_| malformed(ProxyHeader::XForwardedHost, format!("not a host: {host:?}")))?;
        if let Some(p) = hp.port {
            port = Some(p.to_owned());
        }
        req.server_name = hp.name().to_owned();
        if let Ok(v) = HeaderValue::from_str(&host) {
            req.headers.insert(http::header::HOST, v);
        }
    }
    if let Some(port) = port {
        req.server_port = port
            .trim()
            .parse()
            .map_err(|_| malformed(ProxyHeader::XForwardedPort, format!("not a port: {port:?}")))?;
    }
    Ok(())
}

/// Every value of a header joined with `,` (repeated headers are one list).
fn joined(req: &Request, name: &str) -> Option<String> {
    let parts: Vec<&str> = req
        .headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

/// The entry `count` from the right (the leftmost if the list is shorter).
fn pick(list: &str, count: usize) -> String {
    let items: Vec<&str> = list.split(',').map(str::trim).collect();
    items[items.len() - count.min(items.len())].to_owned()
}

/// `Forwarded: for=...;proto=...;host=...` (RFC 7239), the element `count`
/// from the right.
fn forwarded(value: &str, count: usize) -> Result<Forwarded, Malformed> {
    let elements: Vec<&str> = value.split(',').collect();
    let element = elements[elements.len() - count.min(elements.len())];
    let mut out = Forwarded::default();
    for pair in element.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| malformed(ProxyHeader::Forwarded, format!("not key=value: {pair:?}")))?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v)
            .to_owned();
        match k.trim().to_ascii_lowercase().as_str() {
            "for" => out.client = Some(v),
            "host" => out.host = Some(v),
            "proto" => out.proto = Some(v),
            "by" => {}
            other => {
                return Err(malformed(
                    ProxyHeader::Forwarded,
                    format!("unknown parameter {other:?}"),
                ))
            }
        }
    }
    Ok(out)
}

/// `1.2.3.4`, `1.2.3.4:80`, `[::1]:80` or `::1` into address and port.
fn split_client(client: &str) -> (String, Option<u16>) {
    if let Some(rest) = client.strip_prefix('[') {
        if let Some((addr, tail)) = rest.split_once(']') {
            return (
                addr.to_owned(),
                tail.strip_prefix(':').and_then(|p| p.parse().ok()),
            );
        }
    }
    match client.split_once(':') {
        Some((addr, port)) if !port.contains(':') => (addr.to_owned(), port.parse().ok()),
        _ => (client.to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_read_from_the_right() {
        assert_eq!(pick("a, b, c", 1), "c");
        assert_eq!(pick("a, b, c", 2), "b");
        assert_eq!(pick("a", 3), "a");
    }

    #[test]
    fn forwarded_elements_and_clients() {
        let f = forwarded(
            "for=1.1.1.1, for=\"[2001:db8::1]:4711\";proto=https;host=ex.org",
            1,
        )
        .unwrap();
        assert_eq!(f.client.as_deref(), Some("[2001:db8::1]:4711"));
        assert_eq!(f.proto.as_deref(), Some("https"));
        assert_eq!(f.host.as_deref(), Some("ex.org"));
        assert!(forwarded("for", 1).is_err());
        assert_eq!(
            split_client("[2001:db8::1]:4711"),
            ("2001:db8::1".into(), Some(4711))
        );
        assert_eq!(split_client("10.0.0.1:99"), ("10.0.0.1".into(), Some(99)));
        assert_eq!(split_client("::1"), ("::1".into(), None));
    }
}
