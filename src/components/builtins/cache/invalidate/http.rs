//! The `PURGE` method: `PURGE /path` purges that page, with `X-Purge-Prefix: 1`
//! its subtree, with `Surrogate-Key: k1 k2` every page tagged k1 or k2; with
//! `X-Purge-Soft: 1` the pages are refreshed instead (see `refresh`).
//!
//! Allowed only from `purge_allow` and, when `purge_token` is set, only with
//! `Authorization: Bearer TOKEN`; anyone else gets 403 and nothing is
//! removed. The answer is JSON, `{"purged": N}` (pages removed, or scheduled
//! for refresh). A `PURGE` never reaches the app.

use std::net::IpAddr;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::super::bus;
use super::super::path::CachePath;
use super::super::purge::{PurgeError, Purged};
use super::super::stats::Event;
use super::super::Cache;
use super::refresh::Template;
use super::tags;
use crate::core::{body, Request, Response};

const PREFIX: HeaderName = HeaderName::from_static("x-purge-prefix");
const SOFT: HeaderName = HeaderName::from_static("x-purge-soft");
const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");

/// What one `PURGE` asks for.
enum What {
    Page(String),
    Prefix(String),
    Tags(Vec<String>),
}

/// Answer a `PURGE` request.
pub(in crate::components::builtins::cache) async fn purge(cache: &Cache, req: Request) -> Response {
    let inval = &cache.settings.inval;
    if let Err(why) = allowed(inval, &req) {
        let n = cache.stats.count(Event::PurgeRefused);
        tracing::warn!(path = %req.raw_path, peer = %req.remote_addr, count = n, "cache: PURGE refused: {why}");
        return json(
            StatusCode::FORBIDDEN,
            &format!("{{\"error\": {}}}", quote(why)),
        );
    }
    let Some(me) = cache.me.upgrade() else {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"error\": \"the cache is shutting down\"}",
        );
    };
    let what = match what(cache, &req) {
        Ok(w) => w,
        Err(e) => {
            return json(
                StatusCode::BAD_REQUEST,
                &format!("{{\"error\": {}}}", quote(&e)),
            )
        }
    };
    let soft = flag(&req.headers, &SOFT);
    cache.stats.count(Event::PurgeHttp);
    cache.announce(
        match &what {
            What::Page(u) => bus::Target::Page(u.clone()),
            What::Prefix(u) => bus::Target::Prefix(u.clone()),
            What::Tags(t) => bus::Target::Tags(t.clone()),
        },
        soft,
    );
    let worker = me.clone();
    let done = tokio::task::spawn_blocking(move || -> Result<Done, PurgeError> {
        let p = &worker.purger;
        if soft {
            return Ok(Done::Refresh(match what {
                What::Page(url) => p.pages(&url, false)?,
                What::Prefix(url) => p.pages(&url, true)?,
                What::Tags(t) => p.tagged(&t)?.into_iter().map(CachePath::from_rel).collect(),
            }));
        }
        let Purged { files } = match what {
            What::Page(url) => p.purge(&url, false)?,
            What::Prefix(url) => p.purge(&url, true)?,
            What::Tags(t) => {
                worker.stats.count(Event::PurgeTag);
                p.purge_tags(&t)?
            }
        };
        Ok(Done::Removed(files))
    })
    .await;
    let n = match done {
        Ok(Ok(Done::Removed(n))) => {
            for _ in 0..n {
                cache.stats.count(Event::Purged);
            }
            n
        }
        Ok(Ok(Done::Refresh(pages))) => {
            let n = cache.refresher.schedule(&me, pages, &template(&req));
            for _ in 0..n {
                cache.stats.count(Event::SoftPurge);
            }
            n
        }
        Ok(Err(PurgeError::NeverCached { .. } | PurgeError::SlashUnderDirs { .. })) => 0,
        Ok(Err(
            e @ (PurgeError::IsDirectory { .. }
            | PurgeError::BadHost { .. }
            | PurgeError::Nul { .. }),
        )) => {
            return json(
                StatusCode::BAD_REQUEST,
                &format!("{{\"error\": {}}}", quote(&e.to_string())),
            );
        }
        Ok(Err(e)) => {
            tracing::warn!(path = %req.raw_path, "cache: PURGE failed: {e}");
            return json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("{{\"error\": {}}}", quote(&e.to_string())),
            );
        }
        Err(e) => {
            tracing::warn!(path = %req.raw_path, "cache: PURGE failed: {e}");
            return json(
                StatusCode::INTERNAL_SERVER_ERROR,
                "{\"error\": \"the purge failed\"}",
            );
        }
    };
    tracing::info!(path = %req.raw_path, peer = %req.remote_addr, soft, purged = n, "cache: PURGE");
    json(StatusCode::OK, &format!("{{\"purged\": {n}}}"))
}

/// What the blocking part of a purge did.
enum Done {
    /// Pages removed.
    Removed(usize),
    /// Pages to refresh (a soft purge).
    Refresh(Vec<CachePath>),
}

fn flag(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes" | "on"))
}

/// Who may purge: an address in `purge_allow`, with the bearer token if one is set.
fn allowed(inval: &super::Invalidation, req: &Request) -> Result<(), &'static str> {
    let peer: Option<IpAddr> = req.remote_addr.trim_matches(['[', ']']).parse().ok();
    if !peer.is_some_and(|a| inval.allow.iter().any(|c| c.contains(a))) {
        return Err("the peer is not in purge_allow");
    }
    if let Some(token) = &inval.token {
        let given = req
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
            return Err("a missing or wrong bearer token");
        }
    }
    Ok(())
}

/// Compare without stopping at the first difference (the token's bytes do
/// not leak through timing).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The URL the purge names, as `Purger` takes it: the whole path (SCRIPT_NAME
/// + PATH_INFO, as received), under `host_dirs` with the request's host.
fn what(cache: &Cache, req: &Request) -> Result<What, String> {
    if let Some(v) = req.headers.get(SURROGATE_KEY) {
        let t = tags::parse_list(v.to_str().unwrap_or(""));
        if t.is_empty() {
            return Err("Surrogate-Key names no valid tag".into());
        }
        return Ok(What::Tags(t));
    }
    let url = &req.raw_path;
    if url.is_empty() || !url.starts_with('/') {
        return Err("expected a path".into());
    }
    let url = cache
        .purge_url(url, &req.headers)
        .ok_or("no Host to purge a host's page for")?;
    Ok(if flag(&req.headers, &PREFIX) {
        What::Prefix(url)
    } else {
        What::Page(url)
    })
}

fn json(status: StatusCode, text: &str) -> Response {
    let mut resp = Response::new(body::full(Bytes::from(format!("{text}\n"))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The template of the refresh requests a soft `PURGE` makes.
pub(in crate::components::builtins::cache) fn template(req: &Request) -> Template {
    Template {
        scheme: req.scheme.clone(),
        script_name: req.script_name.clone(),
        server_name: req.server_name.clone(),
        server_port: req.server_port,
        host: req.headers.get(header::HOST).cloned(),
    }
}
