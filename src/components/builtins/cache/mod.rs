//! `egg:plughost#cache` (= `egg:wsgi_cache#middleware`): the disk page cache filter.
//!
//! Successful GET responses are written as plain files under `cache_dir`
//! (`/a/b` → `cache_dir/a/b`, `/a/` → `cache_dir/a/__index.html`), so a static
//! server such as nginx can serve the tree directly; hits are answered from the
//! files. Compared with the Python original it refuses paths that cannot map
//! safely, never follows symlinks, writes atomically, stores only responses that
//! are shareable, coalesces concurrent misses, and never fails a request because
//! of the cache. Deleting a file is the purge: the copies of hot pages kept in
//! memory are checked against their file on every request.
//!
//! - `config`: the section keys; `path`: URL path → file; `dir`: the confined
//!   file system; `memo`: revalidated in-memory copies of hot pages; `rules`:
//!   which responses may be stored; `store`: the streaming tee and writer;
//!   `flight`: single flight; `stats`: the counters.

mod budget;
mod bus;
mod config;
mod cookies;
mod dir;
mod flight;
mod hosts;
mod invalidate;
mod layout;
mod memo;
mod mime_store;
mod owner;
pub mod path;
mod placement;
pub(crate) mod purge;
pub(crate) mod report;
mod rules;
mod state_file;
pub(crate) mod stats;
mod store;
mod twins;

use std::os::unix::fs::FileExt;
use std::sync::{Arc, Weak};

use bytes::BytesMut;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};

use self::config::Settings;
use self::dir::{CacheDir, Lookup};
use self::flight::{Flights, Join, Outcome};
use self::invalidate::guard::Guard;
use self::invalidate::refresh::{self, Refresher};
use self::invalidate::tags;
use self::memo::{Entry, Memo, Version};
use self::mime_store::TypeStore;
use self::path::CachePath;
use self::purge::Purger;
use self::report::{Reporter, Wanted};
use self::stats::{CacheStats, Event};
use self::twins::{Choice, Compress};
use super::file_response::{serve_file, FileOptions, FileRequest, SMALL_FILE};
use crate::core::builtin::{Builtin, FilterSite, Make, SettingError};
use crate::core::config::Component;
use crate::core::{body, Handler, Head, Request, Response, ResponseFuture};

/// Largest page kept in memory.
pub(crate) const MAX_MEMORY_ENTRY: u64 = 1024 * 1024;

/// The marker file's name, for the in-process tests beside the built-ins.
#[cfg(test)]
pub(crate) use self::owner::MARKER;

pub(crate) use self::bus::not_a_node;

/// Whether `t` may be a tag (for `plughost cache purge --tag`).
pub fn valid_tag(t: &str) -> bool {
    tags::parse_list(t) == [t]
}

/// `egg:plughost#cache` (= `egg:wsgi_cache#middleware`).
pub const BUILTIN: Builtin = Builtin {
    name: "cache",
    aliases: &[("wsgi_cache", "middleware"), ("wsgi-cache", "middleware")],
    make: Make::Filter(filter),
};

/// Create the cache filter for a section, wrapping `site.next` (built from
/// `site.inner`): check the keys and where the cache sits, create and open
/// `cache_dir`, and sweep temporary files left by a crash. `site.claims`
/// holds the directories of the pipeline built so far.
fn filter(site: FilterSite<'_>) -> Result<Arc<dyn Handler>, SettingError> {
    let c = site.component;
    let mut cache = Cache::new(c, site.next)?;
    if !cache.settings.hosts.dirs {
        placement::host_blind(c, site.inner)?;
    }
    let dir = std::fs::canonicalize(&cache.settings.cache_dir)
        .unwrap_or_else(|_| cache.settings.cache_dir.clone());
    placement::claim(site.claims, c, dir, cache.mapping())?;
    // Soft purges refresh pages from tasks of their own, which hold the
    // filter, and so does the purge bus (which catches up here, before the
    // host serves).
    Ok(Arc::new_cyclic(|me| {
        cache.me = me.clone();
        if let Some(b) = cache.settings.bus.clone() {
            cache.bus = Some(bus::Bus::start(
                b,
                me.clone(),
                cache.dir.clone(),
                cache.purger.clone(),
                cache.stats.clone(),
            ));
        }
        cache
    }))
}

/// The filter.
pub(crate) struct Cache {
    next: Arc<dyn Handler>,
    settings: Settings,
    dir: Arc<CacheDir>,
    flights: Flights,
    memo: Memo,
    content_type: HeaderValue,
    /// `content_type` without parameters: the only media type stored.
    media_type: String,
    /// `content_type = auto`: where page types are kept.
    types: Option<TypeStore>,
    /// The disk budget, if any key of it is set.
    budget: Option<Arc<budget::Budget>>,
    /// `compress`: the twins' settings.
    compress: Option<Arc<Compress>>,
    stats: Arc<CacheStats>,
    /// Purges in this process, against stores in flight.
    guard: Arc<Guard>,
    /// Purges made here (`PURGE`, `purge_on`, expired refreshes).
    purger: Arc<Purger>,
    /// Soft purges in progress.
    refresher: Refresher,
    /// This filter, for the refresh tasks (dangling for a cache made outside
    /// a pipeline, which then refreshes nothing in the background).
    me: Weak<Cache>,
    /// `purge_bus`: where this node's purges go, and other nodes' come from.
    bus: Option<bus::Bus>,
}

const HIT: HeaderValue = HeaderValue::from_static("HIT");
const MISS: HeaderValue = HeaderValue::from_static("MISS");
const BYPASS: HeaderValue = HeaderValue::from_static("BYPASS");
const ACCEPT_ENCODING: HeaderValue = HeaderValue::from_static("Accept-Encoding");

impl Cache {
    pub(crate) fn new(c: &Component, next: Arc<dyn Handler>) -> Result<Cache, SettingError> {
        let settings = Settings::from_component(c)?;
        let shown = settings.cache_dir.display();
        let dir = CacheDir::open_owned(&settings.cache_dir, &c.file, settings.adopt)
            .map_err(|e| SettingError::key("cache_dir", e.to_string()))?;
        let swept = dir.sweep();
        if swept > 0 {
            tracing::info!("cache: removed {swept} temporary files left in {shown}");
        }
        let stats = stats::for_filter(&c.section, &settings.cache_dir.to_string_lossy());
        tracing::debug!(section = %c.section, cache_dir = %shown, "cache: ready");
        let types = if settings.auto_type {
            Some(probe_types(&dir, &settings).map_err(|e| {
                SettingError::key(
                    "content_type",
                    format!("cannot test {shown} for extended attributes: {e}"),
                )
            })?)
        } else {
            None
        };
        if types == Some(TypeStore::Extension) {
            tracing::warn!(
                "cache: {shown} has no user extended attributes: content_type = auto types each page by its file name's extension"
            );
        }
        let memo = Memo::new(
            settings.memory_cache_bytes,
            MAX_MEMORY_ENTRY.min(settings.memory_cache_bytes / 8),
        );
        let dir = Arc::new(dir);
        let guard = Arc::new(Guard::default());
        let purger = Arc::new(Purger::of(dir.clone(), settings.clone(), guard.clone()));
        // Counters outlive a reload; the gauges follow the new section's keys.
        let budgeted = settings.budget.active();
        stats
            .budgeted
            .store(budgeted, std::sync::atomic::Ordering::Relaxed);
        let budget = budgeted.then(|| {
            budget::Budget::start(
                settings.budget.clone(),
                dir.clone(),
                stats.clone(),
                settings.compress.is_some(),
            )
        });
        let settings_concurrency = settings.inval.refresh_concurrency;
        Ok(Cache {
            compress: settings.compress.clone().map(Arc::new),
            budget,
            next,
            memo,
            media_type: rules::media_type(&settings.content_type).to_owned(),
            content_type: HeaderValue::from_str(&settings.content_type)
                .map_err(|_| "content_type: not a valid header value".to_owned())?,
            types,
            settings,
            dir,
            flights: Flights::default(),
            stats,
            guard,
            purger,
            refresher: Refresher::new(settings_concurrency),
            me: Weak::new(),
            bus: None,
        })
    }

    /// Tell the other nodes of a purge applied here (with `purge_bus`).
    fn announce(&self, target: bus::Target, soft: bool) {
        if let Some(b) = &self.bus {
            b.publish(target, soft);
        }
    }

    /// The URL a purge names for `path` (a whole path as received): under
    /// `host_dirs` with the request's host, as `Purger` and the bus take it.
    fn purge_url(&self, path: &str, headers: &HeaderMap) -> Option<String> {
        if !self.settings.hosts.dirs {
            return Some(path.to_owned());
        }
        let host = headers.get(header::HOST)?.to_str().ok()?;
        Some(format!("http://{}{path}", host.to_ascii_lowercase()))
    }

    /// How this cache maps URLs to files, for comparing sections that share a cache_dir.
    fn mapping(&self) -> String {
        let s = &self.settings;
        let mut m = format!("directory_index = {}", s.directory_index);
        if s.layout != layout::Layout::Paths {
            m += &format!(", layout = {}", s.layout.name());
        }
        if s.hosts.dirs {
            m += &format!(", host_dirs = true, host_port = {}", s.hosts.port);
        }
        if s.compress.is_some() {
            m += ", compress (`.gz`/`.br` names are twins)";
        }
        m
    }

    /// Where a page of type `content_type` would be served from, under
    /// `content_type = auto` without xattrs: only a page whose extension
    /// implies its type may be stored.
    fn extension_fits(&self, path: &CachePath, content_type: &str) -> bool {
        rules::media_type(content_type).eq_ignore_ascii_case(mime_store::by_extension(path.name()))
    }

    /// The file for `req`, or why the cache stays out of it.
    fn candidate(&self, req: &Request) -> Result<CachePath, Event> {
        if req.method != Method::GET && req.method != Method::HEAD {
            return Err(Event::BypassMethod);
        }
        if !req.query_string.is_empty() {
            return Err(Event::BypassQuery);
        }
        if req.headers.contains_key(header::AUTHORIZATION) {
            return Err(Event::BypassAuthorization);
        }
        if self.settings.ignore_cookies.personal(&req.headers) {
            return Err(Event::BypassCookie);
        }
        // `cache_paths` are the app's own paths, relative to its mount...
        if let Some(prefixes) = &self.settings.cache_paths {
            if !path::in_scope(&req.path_info, prefixes) {
                return Err(Event::BypassScope);
            }
        }
        self.page_for(req)
    }

    /// The page a request's path names, whatever its method: the file a GET
    /// would be stored in (also what `purge_on` and refreshes purge).
    fn page_for(&self, req: &Request) -> Result<CachePath, Event> {
        // The page is keyed on the whole path (SCRIPT_NAME +
        // PATH_INFO): what a front end serving the tree sees, and distinct for
        // every mount of an urlmap below the cache.
        let full: std::borrow::Cow<'_, [u8]> = if req.script_name.is_empty() {
            (&req.path_info[..]).into()
        } else {
            [&req.script_name[..], &req.path_info[..]].concat().into()
        };
        self.page_at(&full, &req.raw_path, &req.headers)
    }

    /// The page for the whole path `full` (decoded; `raw` as received).
    fn page_at(&self, full: &[u8], raw: &str, headers: &HeaderMap) -> Result<CachePath, Event> {
        let index = &self.settings.directory_index;
        let page = path::map(full, raw, index).map_err(|_| Event::BypassUnsafePath)?;
        let page = self
            .settings
            .layout
            .apply(page, index)
            .map_err(|_| Event::BypassSlash)?;
        // `/a.gz` would be `/a`'s gzip twin served as a page.
        if self.compress.is_some() && twins::SUFFIXES.iter().any(|s| page.name().ends_with(s)) {
            return Err(Event::BypassTwinName);
        }
        if !self.settings.hosts.active() {
            return Ok(page);
        }
        match self.settings.hosts.dir_for(headers) {
            Ok(Some(host)) => Ok(page.under(&host)),
            Ok(None) => Ok(page),
            Err(_) => Err(Event::BypassHost),
        }
    }

    /// The Content-Type of a hit from `file`: the cache's, or under `auto`
    /// the page's own (its xattr, else its extension's).
    fn type_of(&self, path: &CachePath, file: &std::fs::File) -> HeaderValue {
        match self.types {
            None => self.content_type.clone(),
            Some(TypeStore::Xattr) => mime_store::read(file)
                .unwrap_or_else(|| HeaderValue::from_static(mime_store::by_extension(path.name()))),
            Some(TypeStore::Extension) => {
                HeaderValue::from_static(mime_store::by_extension(path.name()))
            }
        }
    }

    async fn handle(&self, req: Request) -> Response {
        if req.method.as_str() == "PURGE" {
            return invalidate::http::purge(self, req).await;
        }
        let Some(wanted) = report::wanted(&req.extras) else {
            return self.serve(req, Reporter::none()).await;
        };
        let (mut resp, report) = match wanted {
            Wanted::Refresh => self.refresh(req).await,
            Wanted::Report => {
                let (reporter, report) = Reporter::new();
                (self.serve(req, reporter).await, report)
            }
        };
        resp.extensions_mut().insert(report);
        resp
    }

    /// Answer `req`, telling `reporter` what the cache did.
    async fn serve(&self, req: Request, reporter: Reporter) -> Response {
        let path = match self.candidate(&req) {
            Ok(p) => p,
            Err(event) => {
                if event == Event::BypassMethod && self.settings.inval.purges_on(&req.method) {
                    return self.write_through(req).await;
                }
                let n = self.stats.count(event);
                tracing::debug!(path = %req.raw_path, event = event.name(), count = n, "cache: bypass");
                reporter.decide(report::Outcome::Bypass(event.name()));
                return self.pass(req, BYPASS).await;
            }
        };
        if let Some(c) = &self.compress {
            if let Some(resp) = self.twin_hit(&Ask::of(&req), &path, c).await {
                reporter.decide(report::Outcome::Hit);
                return resp;
            }
        }
        if let Some(resp) = self.memory_hit(&Ask::of(&req), &path) {
            reporter.decide(report::Outcome::Hit);
            return resp;
        }
        match self.dir.lookup(&path) {
            Lookup::Hit(file, meta) => {
                reporter.decide(report::Outcome::Hit);
                return self
                    .hit(&Ask::of(&req), &path, file, &meta, Event::Hit)
                    .await;
            }
            Lookup::Miss => {}
            Lookup::Blocked(event, e) => {
                self.stats.count(Event::Miss);
                self.stats.problem(event, path.rel(), &e);
                reporter.decide(report::Outcome::Failed(e.to_string()));
                return self.pass(req, MISS).await;
            }
        }
        let n = self.stats.count(Event::Miss);
        tracing::debug!(path = path.rel(), count = n, "cache: miss");
        if req.method == Method::HEAD {
            self.stats.count(Event::NoStoreHead);
            reporter.decide(report::Outcome::NotStored(Event::NoStoreHead.name()));
            return self.pass(req, MISS).await;
        }
        let leader = match self.flights.join(path.rel()) {
            Join::Leader(leader) => leader,
            Join::Waiter(waiter) => {
                if waiter.wait(self.settings.lock_timeout).await == Outcome::Stored {
                    if let Lookup::Hit(file, meta) = self.dir.lookup(&path) {
                        reporter.decide(report::Outcome::Hit);
                        return self
                            .hit(&Ask::of(&req), &path, file, &meta, Event::Coalesced)
                            .await;
                    }
                }
                self.stats.count(Event::CoalesceFallback);
                reporter.decide(report::Outcome::NotStored(Event::CoalesceFallback.name()));
                return self.pass(req, MISS).await;
            }
        };
        // The previous flight may have stored the file since the lookup above.
        if let Lookup::Hit(file, meta) = self.dir.lookup(&path) {
            leader.stored();
            reporter.decide(report::Outcome::Hit);
            return self
                .hit(&Ask::of(&req), &path, file, &meta, Event::Hit)
                .await;
        }
        self.miss(req, path, leader, reporter, false).await
    }

    /// The answer from the page's copy in memory, if a plain request may
    /// have it and the file is still the version the copy was read from (a
    /// page the connection may send from its file is checked by opening it,
    /// and the body then carries the open file).
    fn memory_hit(&self, ask: &Ask<'_>, path: &CachePath) -> Option<Response> {
        if !self.memo.enabled() || !plain(ask.headers) {
            return None;
        }
        let entry = self.memo.peek(path.rel())?;
        self.answer_entry(ask, entry, Some(path))
    }

    /// The answer from `entry` if its file is still the version it was read
    /// from. One check against the file per hit: a page the connection may
    /// send from its file (a file-backed body) is checked by opening it at
    /// `file` (without, such a page is left to the caller: `None`), any other
    /// by one stat.
    fn answer_entry(
        &self,
        ask: &Ask<'_>,
        entry: Arc<Entry>,
        file: Option<&CachePath>,
    ) -> Option<Response> {
        let rel = &*entry.rel;
        let from_file =
            *ask.method == Method::GET && entry.body.len() >= body::FILE_BACKED_MIN_BYTES;
        let (current, file) = if from_file {
            match self.dir.lookup(file?) {
                Lookup::Hit(file, meta) => (Some(Version::of(&meta)), Some(file)),
                _ => (None, None),
            }
        } else {
            (self.dir.version(rel), None)
        };
        if !self.memo.still(rel, &entry, current) {
            return None;
        }
        if let Some(b) = &self.budget {
            b.touch(rel, entry.body.len() as u64);
        }
        Some(self.answer(ask, &entry, file, Event::Hit))
    }

    /// [`Handler::answer_now`]: the path `serve` takes for a plain GET or HEAD
    /// whose page is in memory, taken straight from the request's head; any
    /// other request (a bypass, a twin, a miss, a page sent from its file)
    /// goes the ordinary way, where `serve` decides it again.
    fn ready(&self, head: &Head<'_>) -> Option<Response> {
        if !self.memo.enabled()
            || (head.method != Method::GET && head.method != Method::HEAD)
            || head.query.is_some_and(|q| !q.is_empty())
            || !self.plain_and_public(head.headers)
        {
            return None;
        }
        if let Some(c) = &self.compress {
            if twins::negotiate(head.headers, &c.encs) != Choice::Identity {
                return None;
            }
        }
        let ask = Ask {
            method: head.method,
            headers: head.headers,
            raw_path: head.raw_path,
        };
        // Where the page is a function of the path alone, a path seen before
        // needs no mapping (the alias exists only for a path that passed
        // `cache_paths` and mapped to a page).
        let aliased = !self.settings.hosts.active();
        if aliased {
            if let Some(entry) = self.memo.peek_target(head.raw_path) {
                return self.answer_entry(&ask, entry, None);
            }
        }
        // The environ's PATH_INFO: the percent-decoded path (no url_prefix
        // here, so SCRIPT_NAME is empty), borrowed when nothing is encoded.
        let decoded = std::borrow::Cow::from(percent_encoding::percent_decode_str(head.raw_path));
        if let Some(prefixes) = &self.settings.cache_paths {
            if !path::in_scope(&decoded, prefixes) {
                return None;
            }
        }
        let path = self.page_at(&decoded, head.raw_path, head.headers).ok()?;
        let entry = self.memo.peek(path.rel())?;
        if aliased {
            self.memo.alias(head.raw_path, path.rel());
        }
        self.answer_entry(&ask, entry, None)
    }

    /// In one pass over the request's headers: `plain` (no `If-*`, no
    /// `Range`), and none that makes `candidate` bypass the cache (no
    /// `Authorization`, no cookie `ignore_cookies` does not list). `ready`
    /// repeats `candidate`'s other rules on the head; the unit test
    /// `ready_answers_are_exactly_the_memory_hits` holds the two together.
    fn plain_and_public(&self, headers: &HeaderMap) -> bool {
        headers.iter().all(|(name, value)| {
            if name == header::AUTHORIZATION {
                return false;
            }
            if name == header::COOKIE {
                return !self.settings.ignore_cookies.personal_line(value.as_bytes());
            }
            let name = name.as_str();
            !(name.starts_with("if-") || name == "range")
        })
    }

    /// A write `purge_on` names: the app answers, and a 2xx purges the page
    /// at the request's path (and with `purge_parent` its parent's) before
    /// the answer goes out, so the client's next GET sees the change.
    async fn write_through(&self, req: Request) -> Response {
        let mut pages: Vec<CachePath> = self.page_for(&req).into_iter().collect();
        let mut urls = vec![req.raw_path.clone()];
        if self.settings.inval.purge_parent {
            pages.extend(self.parent_pages(&req));
            let trimmed = req.raw_path.strip_suffix('/').unwrap_or(&req.raw_path);
            if let Some(cut) = trimmed.rfind('/') {
                urls.push(trimmed[..=cut].to_owned());
                if cut > 0 {
                    urls.push(trimmed[..cut].to_owned());
                }
            }
        }
        let urls: Vec<String> = urls
            .iter()
            .filter_map(|u| self.purge_url(u, &req.headers))
            .collect();
        let resp = self.pass(req, BYPASS).await;
        if resp.status().is_success() && self.bus.is_some() {
            for u in urls {
                self.announce(bus::Target::Page(u), false);
            }
        }
        if resp.status().is_success() && !pages.is_empty() {
            let purger = self.purger.clone();
            let removed = tokio::task::spawn_blocking(move || {
                pages
                    .iter()
                    .filter(|p| purger.remove_page(p).unwrap_or(false))
                    .count()
            })
            .await
            .unwrap_or(0);
            self.stats.count(Event::PurgeOnWrite);
            for _ in 0..removed {
                self.stats.count(Event::Purged);
            }
        }
        resp
    }

    /// The pages of the request path's parent directory: `/items/7` →
    /// `/items` and `/items/` (whichever the layout stores).
    fn parent_pages(&self, req: &Request) -> Vec<CachePath> {
        let full = [&req.script_name[..], &req.path_info[..]].concat();
        let trimmed = full.strip_suffix(b"/").unwrap_or(&full);
        let raw = req.raw_path.strip_suffix('/').unwrap_or(&req.raw_path);
        let (Some(cut), Some(raw_cut)) = (trimmed.iter().rposition(|b| *b == b'/'), raw.rfind('/'))
        else {
            return Vec::new();
        };
        let (parent, raw_parent) = (&trimmed[..=cut], &raw[..=raw_cut]);
        let mut pages = Vec::new();
        for (p, r) in [
            (parent, raw_parent),
            (&parent[..cut.max(1)], &raw_parent[..raw_cut.max(1)]),
        ] {
            if let Ok(page) = self.page_at(p, r, &req.headers) {
                if !pages.contains(&page) {
                    pages.push(page);
                }
            }
        }
        pages
    }

    /// A soft purge's refresh of the page `req` names: the app is asked
    /// whether or not the page is cached; a storable answer replaces it, any
    /// other removes it, and a page whose refresh has not landed within
    /// `stale_max` is removed too. The report tells the outcome.
    async fn refresh(&self, req: Request) -> (Response, report::Report) {
        let (reporter, report) = Reporter::new();
        let path = match self.page_for(&req) {
            Ok(p) if req.method == Method::GET => p,
            Ok(_) => {
                reporter.decide(report::Outcome::Bypass(Event::BypassMethod.name()));
                return (self.pass(req, BYPASS).await, report);
            }
            Err(event) => {
                reporter.decide(report::Outcome::Bypass(event.name()));
                return (self.pass(req, BYPASS).await, report);
            }
        };
        let leader = match self.flights.join(path.rel()) {
            Join::Leader(leader) => leader,
            Join::Waiter(waiter) => {
                // A miss of this very page is asking the app right now.
                let stored = waiter.wait(self.settings.lock_timeout).await == Outcome::Stored;
                reporter.decide(if stored {
                    report::Outcome::Stored
                } else {
                    report::Outcome::NotStored(Event::CoalesceFallback.name())
                });
                return (self.pass(req, MISS).await, report);
            }
        };
        let watch = (report.clone(), self.purger.clone(), self.stats.clone());
        let (stale_max, page) = (self.settings.inval.stale_max, path.clone());
        tokio::spawn(async move {
            let (report, purger, stats) = watch;
            match tokio::time::timeout(stale_max, report.outcome()).await {
                Ok(o) if refresh::landed(&o) => {
                    if o == report::Outcome::Stored {
                        stats.count(Event::Refreshed);
                    }
                }
                _ => {
                    tracing::info!(
                        path = page.rel(),
                        "cache: a soft-purged page was not refreshed within stale_max; removed"
                    );
                    let _ = tokio::task::spawn_blocking(move || purger.remove_page(&page)).await;
                    stats.count(Event::RefreshExpired);
                    stats.count(Event::Purged);
                }
            }
        });
        (self.miss(req, path, leader, reporter, true).await, report)
    }

    /// Answer from a cached file: a plain GET of a page small enough is read
    /// whole and kept in memory for the next requests; anything else (HEAD,
    /// conditional requests, ranges, large files) goes through `serve_file`.
    async fn hit(
        &self,
        req: &Ask<'_>,
        path: &CachePath,
        file: std::fs::File,
        meta: &std::fs::Metadata,
        event: Event,
    ) -> Response {
        let len = meta.len();
        if let Some(b) = &self.budget {
            b.touch(path.rel(), len);
        }
        let content_type = self.type_of(path, &file);
        if *req.method == Method::GET && len <= self.memo.max_entry && plain(req.headers) {
            let read = move || {
                let mut buf = BytesMut::zeroed(len as usize);
                file.read_exact_at(&mut buf, 0).map(|()| buf.freeze())
            };
            let body = if len <= SMALL_FILE {
                Some(read())
            } else {
                tokio::task::spawn_blocking(read).await.ok()
            };
            match body {
                Some(Ok(body)) => {
                    let mark = self.settings.status_header.as_ref().map(|n| (n, HIT));
                    let mut entry = Entry::new(path.rel(), meta, body, &content_type, mark);
                    if self.compress.is_some() {
                        entry.headers.insert(header::VARY, ACCEPT_ENCODING);
                    }
                    let entry = Arc::new(entry);
                    self.memo.put(path.rel(), entry.clone());
                    return self.answer(req, &entry, None, event);
                }
                // Truncated under us; the next request sees the file as it is then.
                _ => return self.read_failed(req),
            }
        }
        self.count_hit(event, req);
        let resp = serve_file(
            file,
            meta,
            &FileRequest {
                method: req.method,
                headers: req.headers,
            },
            &FileOptions {
                content_type: content_type.to_str().unwrap_or(mime_store::DEFAULT_TYPE),
                ranges: true,
            },
        );
        if resp.status() == StatusCode::NOT_MODIFIED {
            self.stats.count(Event::NotModified);
        }
        let mut resp = self.mark(resp, HIT);
        if self.compress.is_some() {
            resp.headers_mut().insert(header::VARY, ACCEPT_ENCODING);
        }
        resp
    }

    /// Under `compress`: the twin `req` prefers, if the page and a twin of
    /// this very version of it are on disk (`None`: the page answers, or a
    /// miss); a 406 when the page is here but nothing the request accepts is.
    /// Only plain requests get twins; conditional and range requests get the
    /// page.
    async fn twin_hit(&self, ask: &Ask<'_>, path: &CachePath, c: &Compress) -> Option<Response> {
        let enc = match twins::negotiate(ask.headers, &c.encs) {
            Choice::Identity => return None,
            Choice::None => {
                self.dir.version(path.rel())?;
                let mut resp = crate::core::error_response(StatusCode::NOT_ACCEPTABLE);
                resp.headers_mut().insert(header::VARY, ACCEPT_ENCODING);
                return Some(self.mark(resp, HIT));
            }
            Choice::Twin(enc) => enc,
        };
        if !plain(ask.headers) {
            return None;
        }
        let twin = path.clone().with_suffix(enc.suffix());
        if self.memo.enabled() {
            if let Some(entry) = self.memo.peek(twin.rel()) {
                let page = self.dir.version(path.rel())?;
                if entry.twin_of == Some(page.mtime())
                    && self
                        .memo
                        .still(twin.rel(), &entry, self.dir.version(twin.rel()))
                {
                    if let Some(b) = &self.budget {
                        b.touch(path.rel(), entry.body.len() as u64);
                    }
                    return Some(self.answer(ask, &entry, None, Event::Hit));
                }
            }
        }
        let Lookup::Hit(page_file, page_meta) = self.dir.lookup(path) else {
            return None;
        };
        let page_mtime = Version::of(&page_meta).mtime();
        let Lookup::Hit(file, meta) = self.dir.lookup(&twin) else {
            return None;
        };
        if !twins::fresh(&meta, page_mtime) {
            return None;
        }
        if let Some(b) = &self.budget {
            b.touch(path.rel(), page_meta.len());
        }
        let content_type = self.type_of(path, &page_file);
        let len = meta.len();
        if len <= self.memo.max_entry {
            let mut buf = BytesMut::zeroed(len as usize);
            let read = if len <= SMALL_FILE {
                file.read_exact_at(&mut buf, 0).map(|()| buf.freeze())
            } else {
                tokio::task::spawn_blocking(move || {
                    file.read_exact_at(&mut buf, 0).map(|()| buf.freeze())
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            };
            let Ok(body) = read else {
                return Some(self.read_failed(ask));
            };
            let mark = self.settings.status_header.as_ref().map(|n| (n, HIT));
            let mut entry = Entry::new(twin.rel(), &meta, body, &content_type, mark);
            entry.headers.insert(header::CONTENT_ENCODING, enc.header());
            entry.headers.insert(header::VARY, ACCEPT_ENCODING);
            entry.twin_of = Some(page_mtime);
            let entry = Arc::new(entry);
            self.memo.put(twin.rel(), entry.clone());
            return Some(self.answer(ask, &entry, None, Event::Hit));
        }
        self.count_hit(Event::Hit, ask);
        let mut resp = serve_file(
            file,
            &meta,
            &FileRequest {
                method: ask.method,
                headers: ask.headers,
            },
            &FileOptions {
                content_type: content_type.to_str().unwrap_or(mime_store::DEFAULT_TYPE),
                ranges: false,
            },
        );
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, enc.header());
        resp.headers_mut().insert(header::VARY, ACCEPT_ENCODING);
        Some(self.mark(resp, HIT))
    }

    /// A 200 (or headers only, for HEAD) from a page in memory, with the
    /// headers the entry prepared. `file`: the entry's file, opened and found
    /// to be the same version (same inode, size, mtime and ctime) as the bytes,
    /// so the body is file-backed and the connection may send it from there.
    fn answer(
        &self,
        req: &Ask<'_>,
        entry: &Entry,
        file: Option<std::fs::File>,
        event: Event,
    ) -> Response {
        self.count_hit(event, req);
        let body = if *req.method == Method::HEAD {
            body::empty()
        } else if let Some(file) = file {
            body::file_backed(entry.body.clone(), file)
        } else {
            body::full(entry.body.clone())
        };
        let mut resp = Response::new(body);
        *resp.headers_mut() = entry.headers.clone();
        resp
    }

    fn count_hit(&self, event: Event, req: &Ask<'_>) {
        let n = self.stats.count(event);
        if event != Event::Hit {
            self.stats.count(Event::Hit);
        }
        tracing::debug!(path = %req.raw_path, event = event.name(), count = n, "cache: hit");
    }

    /// The file could not be read after it was opened (it shrank): a 500, as
    /// `serve_file` answers the same case.
    fn read_failed(&self, req: &Ask<'_>) -> Response {
        tracing::warn!(path = %req.raw_path, "cache: a cached file could not be read");
        crate::core::error_response(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Call the app as the leader of a miss, storing the response if it may
    /// be. `refresh`: the page is there and being refreshed; an answer that
    /// may not be stored removes it.
    async fn miss(
        &self,
        req: Request,
        path: CachePath,
        leader: flight::Leader,
        reporter: Reporter,
        refresh: bool,
    ) -> Response {
        let ticket = self.guard.ticket();
        let resp = self.next.call(req).await;
        let (mut parts, body) = resp.into_parts();
        let tags = if tags::present(&parts.headers) {
            let t = tags::of_response(&parts.headers);
            if !self.settings.inval.expose_tags {
                tags::strip(&mut parts.headers);
            }
            t
        } else {
            Vec::new()
        };
        let declared = rules::content_length(&parts.headers);
        let want = self.types.is_none().then_some(self.media_type.as_str());
        let stored_type = self
            .types
            .and_then(|_| rules::single_content_type(&parts.headers));
        let refusal = rules::refuse(parts.status, &parts.headers, want).or_else(|| {
            if self.types == Some(TypeStore::Extension)
                && !stored_type.is_some_and(|t| self.extension_fits(&path, t))
            {
                Some(Event::NoStoreTypeMismatch)
            } else if declared.is_some_and(|n| n > self.settings.max_entry_bytes) {
                Some(Event::NoStoreTooLarge)
            } else if declared == Some(0) || http_body::Body::is_end_stream(&body) {
                Some(Event::NoStoreEmpty)
            } else {
                None
            }
        });
        let stored = refusal.is_none();
        let body = match refusal {
            Some(event) => {
                let n = self.stats.count(event);
                tracing::debug!(
                    path = path.rel(),
                    event = event.name(),
                    count = n,
                    "cache: not stored"
                );
                if refresh {
                    let purger = self.purger.clone();
                    let page = path.clone();
                    let _ = tokio::task::spawn_blocking(move || purger.remove_page(&page)).await;
                    self.stats.count(Event::RefreshRemoved);
                    self.stats.count(Event::Purged);
                }
                reporter.decide(report::Outcome::NotStored(event.name()));
                drop(leader);
                body
            }
            None => store::store(
                body,
                store::Job {
                    dir: self.dir.clone(),
                    path,
                    stats: self.stats.clone(),
                    leader,
                    fsync: self.settings.fsync,
                    max_bytes: self.settings.max_entry_bytes,
                    declared,
                    budget: self.budget.clone(),
                    compress: self.compress.clone(),
                    twins: self.compress.as_ref().is_some_and(|c| {
                        c.wants(rules::media_type(stored_type.unwrap_or(&self.media_type)))
                    }),
                    mime: match self.types {
                        Some(TypeStore::Xattr) => stored_type.map(str::to_owned),
                        _ => None,
                    },
                    ticket,
                    guard: self.guard.clone(),
                    tags,
                    reporter,
                },
            ),
        };
        if let Some(name) = &self.settings.status_header {
            parts.headers.insert(name.clone(), MISS);
        }
        if self.compress.is_some() && stored {
            parts.headers.insert(header::VARY, ACCEPT_ENCODING);
        }
        Response::from_parts(parts, body)
    }

    /// Let the app answer, untouched but for the status header (and the tag
    /// headers, which clients see only with `expose_tags`).
    async fn pass(&self, req: Request, mark: HeaderValue) -> Response {
        let mut resp = self.next.call(req).await;
        if !self.settings.inval.expose_tags && tags::present(resp.headers()) {
            tags::strip(resp.headers_mut());
        }
        self.mark(resp, mark)
    }

    fn mark(&self, mut resp: Response, mark: HeaderValue) -> Response {
        if let Some(name) = &self.settings.status_header {
            resp.headers_mut().insert(name.clone(), mark);
        }
        resp
    }
}

/// Where cache_dir keeps page types: a temporary file is given the attribute
/// (then removed). `PLUGHOST_CACHE_NO_XATTR=1` forces the extension fallback,
/// as on a file system without user xattrs (for tests and diagnosis).
fn probe_types(dir: &CacheDir, s: &Settings) -> std::io::Result<TypeStore> {
    if std::env::var_os("PLUGHOST_CACHE_NO_XATTR").is_some_and(|v| v == "1") {
        return Ok(TypeStore::Extension);
    }
    let probe = path::map(b"/probe", "/probe", &s.directory_index).expect("a plain segment maps");
    let mut temp = dir.parent_dir(&probe).and_then(dir::TempFile::create)?;
    mime_store::probe(temp.file())
}

/// What a hit needs from the request (borrowed field by field, so it can be
/// held across an await: the request's body is not `Sync`).
struct Ask<'a> {
    method: &'a Method,
    headers: &'a HeaderMap,
    raw_path: &'a str,
}

impl Ask<'_> {
    fn of(req: &Request) -> Ask<'_> {
        Ask {
            method: &req.method,
            headers: &req.headers,
            raw_path: &req.raw_path,
        }
    }
}

/// Whether a request asks for the whole page unconditionally (so a copy in
/// memory can answer it; `Range` and the `If-*` validators go through
/// `serve_file`). One pass over the few headers a request has.
fn plain(headers: &HeaderMap) -> bool {
    headers.keys().all(|name| {
        let name = name.as_str();
        !(name.starts_with("if-") || name == "range")
    })
}

impl Handler for Cache {
    fn call(&self, req: Request) -> ResponseFuture<'_> {
        Box::pin(self.handle(req))
    }

    fn answer_now(&self, head: &Head<'_>) -> Option<Response> {
        self.ready(head)
    }
}
