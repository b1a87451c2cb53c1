//! `egg:plughost#urlmap` (= `egg:Paste#urlmap`): dispatch on path prefix (and
//! optionally host), moving the matched prefix from PATH_INFO to SCRIPT_NAME.

use std::sync::Arc;

use http::StatusCode;

use crate::core::builtin::{Builtin, Make};
use crate::core::config::urlmap::MountKey;
use crate::core::hostport::{split_host_port, HostPort};
use crate::core::{error_response, Handler, Request, ResponseFuture};

/// `egg:plughost#urlmap` (= `egg:Paste#urlmap`).
pub(crate) const BUILTIN: Builtin = Builtin {
    name: "urlmap",
    aliases: &[("Paste", "urlmap")],
    make: Make::Composite(build),
};

fn build(
    mounts: Vec<(MountKey, Arc<dyn Handler>)>,
    not_found: Option<Arc<dyn Handler>>,
) -> Arc<dyn Handler> {
    Arc::new(UrlMap::new(mounts, not_found))
}

/// A compiled urlmap: mounts in match order (Paste's order).
pub(crate) struct UrlMap {
    mounts: Vec<(Mount, Arc<dyn Handler>)>,
    not_found: Option<Arc<dyn Handler>>,
}

struct Mount {
    /// `host` or `host:port` to match, if the key had `domain`.
    domain: Option<String>,
    path: Vec<u8>,
}

impl UrlMap {
    pub(crate) fn new(
        mounts: Vec<(MountKey, Arc<dyn Handler>)>,
        not_found: Option<Arc<dyn Handler>>,
    ) -> UrlMap {
        let mounts = mounts
            .into_iter()
            .map(|(key, app)| {
                let domain = key.domain.map(|d| match key.port {
                    Some(p) => format!("{d}:{p}"),
                    None => d,
                });
                (
                    Mount {
                        domain,
                        path: key.path.into_bytes(),
                    },
                    app,
                )
            })
            .collect();
        UrlMap { mounts, not_found }
    }
}

/// Collapse runs of `/`, as Paste does before matching.
fn collapse(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for &b in path {
        if b == b'/' && out.last() == Some(&b'/') {
            continue;
        }
        out.push(b);
    }
    out
}

/// The request's host (lower-case, without port) and port.
fn host_and_port(req: &Request) -> (String, String) {
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| req.server_name.clone())
        .to_ascii_lowercase();
    let default = if &*req.scheme == "http" { "80" } else { "443" };
    match split_host_port(&host) {
        Ok(HostPort { host, port }) => (host.to_owned(), port.unwrap_or(default).to_owned()),
        Err(_) => (host, default.to_owned()),
    }
}

impl Handler for UrlMap {
    fn call(&self, mut req: Request) -> ResponseFuture<'_> {
        let (host, port) = host_and_port(&req);
        let path = collapse(&req.path_info);
        for (mount, app) in &self.mounts {
            if let Some(domain) = &mount.domain {
                if *domain != host && *domain != format!("{host}:{port}") {
                    continue;
                }
            }
            let p = &mount.path;
            if path == *p || (path.starts_with(p) && path.get(p.len()) == Some(&b'/')) {
                req.script_name.extend_from_slice(p);
                req.path_info = path[p.len()..].to_vec();
                return app.call(req);
            }
        }
        match &self.not_found {
            Some(app) => app.call(req),
            None => Box::pin(async { error_response(StatusCode::NOT_FOUND) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_slashes() {
        assert_eq!(collapse(b"//a///b/"), b"/a/b/");
    }
}
