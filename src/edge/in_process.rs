//! Requests sent through a deployment's pipeline in-process: no socket, no
//! listener, the environ built exactly as the server builds it (its
//! `url_scheme`, `url_prefix`, the Host given), so the cache files a page
//! where a network request would have. Used by `cache warm` (and meant for
//! soft purges).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use http::{header, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use tokio::runtime::Handle;

use super::server::{environ::environ, head, Peer, ServerEnv};
use crate::assembly::{build, BuildError, WorkerPool};
use crate::components::builtins::cache::report::Report;
use crate::components::plugin::Registry;
use crate::core::config::{Deployment, ServerConfig};
use crate::core::{body, BodyError, Handler};

/// A built pipeline and what its requests need.
pub(crate) struct InProcess {
    root: Arc<dyn Handler>,
    env: ServerEnv,
    peer: Peer,
    default_host: String,
    // Held for the pipeline's plugin instances (the registry owns the library
    // copies; the pool runs plugin calls).
    _registry: Registry,
    _pool: WorkerPool,
}

/// What one request got.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) status: StatusCode,
    /// The cache's report, if a cache answered and the request asked for one.
    pub(crate) report: Option<Report>,
    /// The body's length read to its end, or how it failed.
    pub(crate) body: Result<u64, BodyError>,
}

/// Why a request could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{0:?}: not a URL path ({1})")]
    Path(String, &'static str),
    #[error("{0:?}: not a Host header value")]
    Host(String),
}

impl InProcess {
    /// Build `deployment`'s pipeline (loading plugins, running factories and
    /// the built-ins' start-up, as `serve` does) on the runtime `rt`.
    pub(crate) fn build(deployment: &Deployment, rt: &Handle) -> Result<InProcess, BuildError> {
        // A short-lived pipeline of a command: it publishes what it purges,
        // it does not consume the purge bus (the serving nodes do).
        crate::components::builtins::cache::not_a_node();
        let registry = Registry::new();
        let server = &deployment.server;
        let pool = WorkerPool::new(server.threads, server.request_timeout);
        let pipeline = build(deployment, &registry, &pool, rt)?;
        for w in &pipeline.warnings {
            tracing::warn!("{w}");
        }
        let (host, port) = listen_of(server);
        Ok(InProcess {
            root: pipeline.root,
            env: ServerEnv {
                url_scheme: server.url_scheme.as_str().into(),
                url_prefix: server.url_prefix.clone(),
                local: SocketAddr::new(host.unwrap_or(Ipv4Addr::LOCALHOST.into()), port),
            },
            peer: Peer::new(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0)),
            default_host: default_host(server),
            _registry: registry,
            _pool: pool,
        })
    }

    /// The Host a request gets when none is given: the server's first
    /// `host:port` (`localhost` for a wildcard address), or `localhost`.
    pub(crate) fn default_host(&self) -> &str {
        &self.default_host
    }

    /// Check a path and Host before any request is made.
    pub(crate) fn check(path: &str, host: &str) -> Result<(), RequestError> {
        request_head(path, host).map(drop)
    }

    /// GET `path` (percent-encoded as on the wire) with `Host: host` and
    /// `extras` in the environ; the body is read to its end and dropped.
    pub(crate) async fn get(
        &self,
        path: &str,
        host: &str,
        extras: &[(String, String)],
    ) -> Result<Fetched, RequestError> {
        let parts = request_head(path, host)?;
        let mut request = environ(parts, body::empty(), &self.peer, &self.env);
        request.extras.extend(extras.iter().cloned());
        let resp = self.root.call(request).await;
        let status = resp.status();
        let report = resp.extensions().get::<Report>().cloned();
        let mut body = resp.into_body();
        let mut read = 0u64;
        let body = loop {
            match body.frame().await {
                None => break Ok(read),
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        read += data.len() as u64;
                    }
                }
                Some(Err(e)) => break Err(e),
            }
        };
        Ok(Fetched {
            status,
            report,
            body,
        })
    }
}

fn request_head(path: &str, host: &str) -> Result<http::request::Parts, RequestError> {
    if !path.starts_with('/') {
        return Err(RequestError::Path(
            path.to_owned(),
            "it must start with `/`",
        ));
    }
    let host_value = HeaderValue::from_str(host)
        .ok()
        .filter(|_| !host.is_empty())
        .ok_or_else(|| RequestError::Host(host.to_owned()))?;
    let mut req = http::Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::HOST, host_value)
        .header(
            header::USER_AGENT,
            concat!("plughost/", env!("CARGO_PKG_VERSION"), " (in-process)"),
        )
        .body(())
        .map_err(|_| RequestError::Path(path.to_owned(), "not a valid request target"))?;
    // The server's own Host rules.
    head::check(&mut req).map_err(|_| RequestError::Host(host.to_owned()))?;
    let (parts, ()) = req.into_parts();
    if parts.uri.query().is_some() {
        return Err(RequestError::Path(path.to_owned(), "no query string"));
    }
    Ok(parts)
}

/// The first `[server:]` address, parsed when it is an IP.
fn listen_of(server: &ServerConfig) -> (Option<IpAddr>, u16) {
    match server.listen.first() {
        Some((host, port)) => (host.trim_matches(['[', ']']).parse().ok(), *port),
        None => (None, 80),
    }
}

fn default_host(server: &ServerConfig) -> String {
    let Some((host, port)) = server.listen.first() else {
        return "localhost".to_owned();
    };
    let bare = host.trim_matches(['[', ']']);
    let name = match bare.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => "localhost".to_owned(),
        Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
        Ok(IpAddr::V4(ip)) => ip.to_string(),
        Err(_) if bare.is_empty() => "localhost".to_owned(),
        Err(_) => bare.to_owned(),
    };
    format!("{name}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(listen: &[(&str, u16)]) -> ServerConfig {
        ServerConfig {
            listen: listen.iter().map(|(h, p)| ((*h).to_owned(), *p)).collect(),
            ..ServerConfig::default()
        }
    }

    #[test]
    fn the_default_host_is_the_servers_address() {
        assert_eq!(default_host(&server(&[])), "localhost");
        assert_eq!(
            default_host(&server(&[("127.0.0.1", 8080)])),
            "127.0.0.1:8080"
        );
        assert_eq!(default_host(&server(&[("0.0.0.0", 80)])), "localhost:80");
        assert_eq!(default_host(&server(&[("::1", 81)])), "[::1]:81");
        assert_eq!(default_host(&server(&[("[::]", 82)])), "localhost:82");
        assert_eq!(
            default_host(&server(&[("example.org", 83)])),
            "example.org:83"
        );
    }

    #[test]
    fn paths_and_hosts_are_checked() {
        assert!(InProcess::check("/a%20b/", "localhost").is_ok());
        assert!(InProcess::check("a", "localhost").is_err());
        assert!(InProcess::check("/a?b", "localhost").is_err());
        assert!(InProcess::check("/a b", "localhost").is_err());
        assert!(InProcess::check("/a", "").is_err());
        assert!(InProcess::check("/a", "bad host").is_err());
        assert!(InProcess::check("/a", "h\r\nX: y").is_err());
    }
}
