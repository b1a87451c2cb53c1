//! Soft purges: instead of deleting a page, ask the app for it again in the
//! background while the old file keeps being served (by the host and by a
//! front end reading the tree), then rename the new answer over it, or remove
//! the page if the answer may not be stored.
//!
//! Each page is refreshed once at a time (a page already being refreshed is
//! not asked for twice), at most `refresh_concurrency` pages at once; a
//! refresh that has not landed within `stale_max` removes the page. Requests
//! for the page meanwhile are hits on the old file, so they never reach the
//! app; the refresh is the only app call for it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use http::{header, HeaderMap, HeaderValue, Method, Version};
use percent_encoding::utf8_percent_encode;
use tokio::sync::Semaphore;

use super::super::path::CachePath;
use super::super::report::Outcome;
use super::super::Cache;
use crate::core::{body, Request};

/// The refreshes in progress of one cache.
pub(in crate::components::builtins::cache) struct Refresher {
    permits: Arc<Semaphore>,
    busy: Arc<Mutex<HashSet<String>>>,
}

/// What a refresh request copies from the request that asked for it.
pub(in crate::components::builtins::cache) struct Template {
    pub scheme: Arc<str>,
    /// The mount the cache sits under (SCRIPT_NAME of the asking request).
    pub script_name: Vec<u8>,
    pub server_name: String,
    pub server_port: u16,
    /// The Host to send when the page's tree does not name one.
    pub host: Option<HeaderValue>,
}

impl Template {
    /// For refreshes no request asked for (soft purges from the purge bus):
    /// the cache's own mount at the root, `localhost` unless the page's host
    /// directory names a host.
    pub(in crate::components::builtins::cache) fn bare() -> Template {
        Template {
            scheme: "http".into(),
            script_name: Vec::new(),
            server_name: "localhost".into(),
            server_port: 80,
            host: Some(HeaderValue::from_static("localhost")),
        }
    }
}

impl Refresher {
    pub(in crate::components::builtins::cache) fn new(concurrency: usize) -> Refresher {
        Refresher {
            permits: Arc::new(Semaphore::new(concurrency)),
            busy: Arc::default(),
        }
    }

    /// Refresh `pages` of `cache` in the background; how many were scheduled
    /// (a page already being refreshed counts: its refresh covers this one).
    pub(in crate::components::builtins::cache) fn schedule(
        &self,
        cache: &Arc<Cache>,
        pages: Vec<CachePath>,
        template: &Template,
    ) -> usize {
        let mut scheduled = 0;
        for page in pages {
            let Some(req) = request_for(cache, &page, template) else {
                tracing::debug!(
                    path = page.rel(),
                    "cache: soft purge: no URL maps to this page; removed instead"
                );
                let _ = cache.purger.remove_page(&page);
                continue;
            };
            scheduled += 1;
            if !self.lock().insert(page.rel().to_owned()) {
                continue;
            }
            let (cache, permits, busy) = (cache.clone(), self.permits.clone(), self.busy.clone());
            tokio::spawn(async move {
                let permit = permits.acquire_owned().await;
                let (resp, report) = cache.refresh(req).await;
                // The refresh is its own client: its body is not needed (the
                // store does not wait for the client).
                drop(resp);
                let outcome = report.outcome().await;
                tracing::debug!(path = page.rel(), ?outcome, "cache: refreshed");
                drop(permit);
                busy.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(page.rel());
            });
        }
        scheduled
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The GET request that would have stored `page`: its URL path from the
/// tree's layout, its Host from the host directory (under `host_dirs`).
fn request_for(cache: &Cache, page: &CachePath, t: &Template) -> Option<Request> {
    let (dir_host, path) = cache.purger.url_of(page)?;
    let host = match dir_host {
        Some(h) => Some(HeaderValue::from_str(&h).ok()?),
        None => t.host.clone(),
    };
    let decoded = crate::components::builtins::url_path::decode(&path);
    let path_info = decoded.strip_prefix(&t.script_name[..])?.to_vec();
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, host?);
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static("plughost-refresh"),
    );
    Some(Request {
        method: Method::GET,
        scheme: t.scheme.clone(),
        script_name: t.script_name.clone(),
        path_info,
        raw_path: path,
        query_string: String::new(),
        version: Version::HTTP_11,
        server_name: t.server_name.clone(),
        server_port: t.server_port,
        remote_addr: "127.0.0.1".into(),
        remote_port: 0,
        headers,
        extras: Vec::new(),
        body: body::empty(),
        on_worker: false,
    })
}

/// The URL path a page file was stored for: `a/b` → `/a/b`, `a/INDEX` →
/// `/a/` (under `layout = dirs`: `/a`), `INDEX` → `/`.
pub(in crate::components::builtins::cache) fn url_path(
    rel: &str,
    index: &str,
    dirs: bool,
) -> String {
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let mut segs: Vec<&str> = if dir.is_empty() {
        Vec::new()
    } else {
        dir.split('/').collect()
    };
    let trailing = name == index;
    if !trailing {
        segs.push(name);
    }
    let mut out = String::new();
    for seg in &segs {
        out.push('/');
        out.extend(utf8_percent_encode(
            seg,
            crate::components::builtins::url_path::PATH_ESCAPE,
        ));
    }
    // A directory index is `/a/`, but under `layout = dirs` the page `/a`.
    if trailing && (!dirs || segs.is_empty()) {
        out.push('/');
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Whether a refresh's outcome left the page current (else the watchdog removes it).
pub(in crate::components::builtins::cache) fn landed(o: &Outcome) -> bool {
    matches!(
        o,
        Outcome::Stored | Outcome::NotStored(_) | Outcome::Hit | Outcome::Bypass(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_back_to_urls() {
        let i = "__index.html";
        assert_eq!(url_path("a/b", i, false), "/a/b");
        assert_eq!(url_path("a/__index.html", i, false), "/a/");
        assert_eq!(url_path("__index.html", i, false), "/");
        assert_eq!(url_path("a/__index.html", i, true), "/a");
        assert_eq!(url_path("__index.html", i, true), "/");
        assert_eq!(url_path("a b/c?d%", i, false), "/a%20b/c%3Fd%25");
        assert_eq!(url_path("caf\u{e9}", i, false), "/caf%C3%A9");
    }
}
