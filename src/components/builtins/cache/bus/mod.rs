//! The purge bus (`purge_bus = redis://HOST:PORT/DB`): every purge this node
//! performs is published to a Redis stream, and every node applies every
//! entry to its own tree, so a page purged anywhere is purged wherever it
//! lives. Nothing else is shared: each node keeps its own tree, layout, host
//! directories and twins, and maps each purge's URL itself.
//!
//! - `message`: one purge on the stream; `position`: where this node is in it
//!   (kept under cache_dir); `link`: the Redis commands (redis-rs).
//!
//! Two threads per cache filter, each with its own connection: the
//! *publisher* sends queued purges (the request that purged never waits for
//! Redis: the purge is applied here at once, queued in memory, bounded, and
//! published when Redis answers, with one warning per outage), and the
//! *consumer* reads the stream after this node's position with a blocking
//! `XREAD` and applies what other nodes published. At start, before the host
//! serves, the node catches up from its saved position; a position older than
//! what the stream still holds (trimmed by `purge_stream_max`) means purges
//! were missed, and the node wipes its tree (logged). An entry from this very
//! process is skipped (it was applied when it was made).

mod link;
mod message;
pub(super) mod position;

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::runtime::Handle;

use self::link::Link;
pub(super) use self::message::{Message, Target};
use self::position::EntryId;
use super::dir::CacheDir;
use super::invalidate::refresh::Template;
use super::path::CachePath;
use super::purge::{PurgeError, Purger};
use super::stats::{CacheStats, Event};
use super::Cache;

/// Purges kept while Redis is down; beyond this the oldest are dropped (and counted).
const QUEUE_MAX: usize = 10_000;
/// How long the consumer's `XREAD` waits for a new entry.
const BLOCK: Duration = Duration::from_millis(1000);
/// Entries read at once.
const BATCH: usize = 256;
/// How long a cache's start-up waits for Redis while catching up.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(3);
/// The default `purge_stream_max`.
pub(super) const DEFAULT_STREAM_MAX: usize = 100_000;

/// Whether this process is a node (serves and consumes the bus). The
/// in-process pipelines of `cache warm` and `cache purge --soft` are not:
/// they publish what they purge and never consume.
static NODE: AtomicBool = AtomicBool::new(true);

/// Mark this process as not a node (before building any pipeline).
pub(crate) fn not_a_node() {
    NODE.store(false, Ordering::Relaxed);
}

/// The bus keys of one cache section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BusSettings {
    /// `purge_bus`, as given (for log lines).
    pub url: String,
    /// `purge_stream`.
    pub stream: String,
    /// `node_name`.
    pub node_name: String,
    /// `purge_stream_max`.
    pub max: usize,
}

/// The bus keys as read, checked together at the end.
#[derive(Debug, Default)]
pub(super) struct BusKeys {
    url: Option<String>,
    stream: Option<String>,
    node_name: Option<String>,
    max: Option<usize>,
}

impl BusKeys {
    /// Take `key` if it is a bus key (`Ok(false)` when it is not).
    pub(super) fn take(&mut self, key: &str, v: &str) -> Result<bool, String> {
        match key {
            "purge_bus" => {
                if !(v.starts_with("redis://")
                    || v.starts_with("unix://")
                    || v.starts_with("redis+unix://"))
                {
                    return Err(format!("expected redis://HOST:PORT/DB, found `{v}`"));
                }
                redis::Client::open(v).map_err(|e| format!("`{v}`: {e}"))?;
                self.url = Some(v.to_owned());
            }
            "purge_stream" => {
                if v.is_empty() || v.chars().any(char::is_whitespace) {
                    return Err("expected a stream key without spaces".into());
                }
                self.stream = Some(v.to_owned());
            }
            "node_name" => {
                if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c == '/') {
                    return Err("expected a name without spaces or `/`".into());
                }
                self.node_name = Some(v.to_owned());
            }
            "purge_stream_max" => {
                self.max = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| *n >= 100)
                        .ok_or(format!(
                            "expected a number of entries (100 or more), found `{v}`"
                        ))?,
                )
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The settings, or the key that makes sense only with `purge_bus`.
    pub(super) fn finish(self) -> Result<Option<BusSettings>, &'static str> {
        let Some(url) = self.url else {
            for (key, set) in [
                ("purge_stream", self.stream.is_some()),
                ("node_name", self.node_name.is_some()),
                ("purge_stream_max", self.max.is_some()),
            ] {
                if set {
                    return Err(key);
                }
            }
            return Ok(None);
        };
        Ok(Some(BusSettings {
            url,
            stream: self.stream.unwrap_or_else(|| "plughost:purge".into()),
            node_name: self.node_name.unwrap_or_else(host_name),
            max: self.max.unwrap_or(DEFAULT_STREAM_MAX),
        }))
    }
}

fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// What the bus's threads share with the filter.
struct Shared {
    settings: BusSettings,
    client: redis::Client,
    /// This process's name on the stream (`node_name/pid/start`).
    origin: String,
    queue: Mutex<VecDeque<Message>>,
    wake: Condvar,
    stop: AtomicBool,
    /// Whether the outage warning was given (reset when Redis answers again).
    warned: AtomicBool,
    stats: Arc<CacheStats>,
}

/// A cache filter's end of the bus; dropping it stops the threads (the
/// publisher first tries, briefly, to send what is queued).
pub(super) struct Bus {
    shared: Arc<Shared>,
}

/// What applying entries needs from the filter.
struct Node {
    cache: Weak<Cache>,
    dir: Arc<CacheDir>,
    purger: Arc<Purger>,
    rt: Option<Handle>,
}

impl Bus {
    /// The bus of a cache filter: for a node, catch up from the saved position
    /// (before returning, so before the host serves), then start the consumer;
    /// always start the publisher.
    pub(super) fn start(
        settings: BusSettings,
        cache: Weak<Cache>,
        dir: Arc<CacheDir>,
        purger: Arc<Purger>,
        stats: Arc<CacheStats>,
    ) -> Bus {
        let client = redis::Client::open(settings.url.as_str()).expect("checked with the key");
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let shared = Arc::new(Shared {
            origin: format!("{}/{}/{started}", settings.node_name, std::process::id()),
            settings,
            client,
            queue: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            stats,
        });
        shared.stats.bus_active.store(true, Ordering::Relaxed);
        {
            let s = shared.clone();
            let _ = std::thread::Builder::new()
                .name("plughost-bus-out".into())
                .spawn(move || s.publish_loop());
        }
        if NODE.load(Ordering::Relaxed) {
            let node = Node {
                cache,
                dir,
                purger,
                rt: Handle::try_current().ok(),
            };
            let mut link = Link::new(shared.client.clone(), &shared.settings.stream);
            let pos = shared.catch_up(&node, &mut link);
            let s = shared.clone();
            let _ = std::thread::Builder::new()
                .name("plughost-bus-in".into())
                .spawn(move || s.consume_loop(node, link, pos));
        }
        Bus { shared }
    }

    /// Publish a purge this node has applied (never waits for Redis).
    pub(super) fn publish(&self, target: Target, soft: bool) {
        let s = &self.shared;
        let m = Message {
            target,
            soft,
            origin: s.origin.clone(),
        };
        let mut q = s.lock();
        if q.len() >= QUEUE_MAX {
            q.pop_front();
            let n = s.stats.count(Event::BusDropped);
            if n == 1 {
                tracing::error!(bus = %s.settings.url, "cache: the purge bus queue is full ({QUEUE_MAX}); the oldest unpublished purges are dropped and other nodes will miss them");
            }
        }
        q.push_back(m);
        s.stats.bus_queue.store(q.len() as u64, Ordering::Relaxed);
        drop(q);
        s.wake.notify_one();
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
    }
}

/// Publish `targets` now, from a process that is not a node (`plughost cache
/// purge --bus`, and the CLI's own purges); the number published.
pub(super) fn publish_now(
    settings: &BusSettings,
    targets: &[Target],
    soft: bool,
) -> Result<usize, redis::RedisError> {
    let client = redis::Client::open(settings.url.as_str())?;
    let mut link = Link::new(client, &settings.stream);
    let origin = format!("{}/cli/{}", settings.node_name, std::process::id());
    for target in targets {
        let m = Message {
            target: target.clone(),
            soft,
            origin: origin.clone(),
        };
        link.publish(&m, settings.max)?;
    }
    Ok(targets.len())
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Message>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Redis answered.
    fn up(&self) {
        self.stats.bus_up.store(true, Ordering::Relaxed);
        if self.warned.swap(false, Ordering::Relaxed) {
            tracing::info!(bus = %self.settings.url, "cache: the purge bus is reachable again");
        }
    }

    /// Redis did not answer: one warning per outage.
    fn down(&self, e: &redis::RedisError) {
        self.stats.bus_up.store(false, Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                bus = %self.settings.url,
                "cache: the purge bus is unreachable ({e}); purges are applied here and queued until it is back"
            );
        }
    }

    /// Sleep up to `d`, waking early when stopped.
    fn pause(&self, d: Duration) {
        let q = self.lock();
        let _ = self.wake.wait_timeout_while(q, d, |_| !self.stopping());
    }

    fn publish_loop(self: Arc<Self>) {
        let mut link = Link::new(self.client.clone(), &self.settings.stream);
        let mut backoff = Duration::from_millis(50);
        let mut stop_deadline: Option<Instant> = None;
        loop {
            let next = {
                let mut q = self.lock();
                while q.is_empty() && !self.stopping() {
                    q = self.wake.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                q.front().cloned()
            };
            let Some(m) = next else {
                return; // stopped with nothing queued
            };
            if self.stopping() {
                // Flush what is queued, briefly.
                let deadline =
                    *stop_deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(2));
                if Instant::now() > deadline {
                    tracing::warn!(bus = %self.settings.url, left = self.lock().len(), "cache: purges not published before the filter was dropped");
                    return;
                }
            }
            match link.publish(&m, self.settings.max) {
                Ok(_) => {
                    self.up();
                    backoff = Duration::from_millis(50);
                    let mut q = self.lock();
                    q.pop_front();
                    self.stats
                        .bus_queue
                        .store(q.len() as u64, Ordering::Relaxed);
                    drop(q);
                    self.stats.count(Event::BusPublished);
                }
                Err(e) => {
                    self.down(&e);
                    self.pause(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Catch up at start: until the stream has nothing after this node's
    /// position (or Redis stays unreachable for [`CATCH_UP_LIMIT`]). The
    /// position to go on from (`None`: not known yet).
    fn catch_up(&self, node: &Node, link: &mut Link) -> Option<EntryId> {
        let deadline = Instant::now() + CATCH_UP_LIMIT;
        let saved =
            position::load(node.dir.root().as_fd(), &self.settings.stream).unwrap_or_else(|e| {
                tracing::warn!("cache: cannot read the purge bus position: {e}");
                None
            });
        loop {
            match self
                .resume(node, link, saved)
                .and_then(|p| self.drain(node, link, p))
            {
                Ok(p) => return Some(p),
                Err(e) => {
                    self.down(&e);
                    if Instant::now() > deadline {
                        tracing::warn!(bus = %self.settings.url, "cache: serving without catching up on the purge bus; it catches up when Redis is reachable");
                        return saved;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// Where to read from after (re)connecting: a node without a position
    /// starts at the stream's end (its tree predates nothing on it); one whose
    /// position was trimmed away wipes its tree and starts at the end.
    fn resume(
        &self,
        node: &Node,
        link: &mut Link,
        pos: Option<EntryId>,
    ) -> Result<EntryId, redis::RedisError> {
        let state = link.state()?;
        self.up();
        let Some(pos) = pos else {
            self.save(node, state.last);
            return Ok(state.last);
        };
        let kept = state.exists && !pos.is_start() && link.has(pos)?;
        if !state.missed_after(pos, kept) {
            return Ok(pos);
        }
        tracing::warn!(
            bus = %self.settings.url,
            position = %pos,
            "cache: purges this node had not applied were trimmed from the purge stream (purge_stream_max) or lost; wiping this node's tree"
        );
        match node.purger.purge("/", true) {
            Ok(done) => tracing::info!(pages = done.files, "cache: tree wiped"),
            Err(e) => tracing::error!("cache: cannot wipe the tree: {e}"),
        }
        self.stats.count(Event::BusWiped);
        self.save(node, state.last);
        Ok(state.last)
    }

    /// Apply everything after `pos` that is there now; the new position.
    fn drain(
        &self,
        node: &Node,
        link: &mut Link,
        mut pos: EntryId,
    ) -> Result<EntryId, redis::RedisError> {
        loop {
            let batch = link.read(pos, None, BATCH)?;
            if batch.is_empty() {
                return Ok(pos);
            }
            pos = self.apply_batch(node, batch, pos, true);
        }
    }

    fn consume_loop(self: Arc<Self>, node: Node, mut link: Link, mut pos: Option<EntryId>) {
        let mut broken = pos.is_none();
        // Until the filter is dropped (its Bus's Drop sets `stop`); the filter
        // itself is still being made when this thread starts.
        while !self.stopping() {
            if broken {
                match self.resume(&node, &mut link, pos) {
                    Ok(p) => {
                        pos = Some(p);
                        broken = false;
                    }
                    Err(e) => {
                        self.down(&e);
                        self.pause(Duration::from_millis(500));
                        continue;
                    }
                }
            }
            let from = pos.unwrap_or_default();
            match link.read(from, Some(BLOCK), BATCH) {
                Ok(batch) if batch.is_empty() => {}
                Ok(batch) => pos = Some(self.apply_batch(&node, batch, from, false)),
                Err(e) => {
                    self.down(&e);
                    broken = true;
                    self.pause(Duration::from_millis(200));
                }
            }
        }
    }

    /// Apply entries in order, save the new position; `catching_up`: a soft
    /// purge removes the page instead (the filter cannot refresh yet).
    fn apply_batch(
        &self,
        node: &Node,
        batch: Vec<(EntryId, Option<Message>)>,
        mut pos: EntryId,
        catching_up: bool,
    ) -> EntryId {
        for (id, m) in batch {
            pos = id;
            let Some(m) = m else {
                tracing::warn!(entry = %id, "cache: an entry on the purge stream this version does not understand; skipped");
                continue;
            };
            if m.origin == self.origin {
                continue;
            }
            self.apply(node, &m, catching_up);
            self.stats.count(Event::BusApplied);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64;
            self.stats
                .bus_lag_ms
                .store(now.saturating_sub(id.ms), Ordering::Relaxed);
        }
        self.save(node, pos);
        pos
    }

    fn save(&self, node: &Node, pos: EntryId) {
        if let Err(e) = position::save(node.dir.root().as_fd(), &self.settings.stream, pos) {
            tracing::warn!("cache: cannot save the purge bus position: {e}");
        }
    }

    fn apply(&self, node: &Node, m: &Message, catching_up: bool) {
        let p = &node.purger;
        let cache = node.cache.upgrade();
        if m.soft && !catching_up {
            if let (Some(cache), Some(rt)) = (&cache, &node.rt) {
                let pages: Result<Vec<CachePath>, PurgeError> = match &m.target {
                    Target::Page(u) => p.pages(u, false),
                    Target::Prefix(u) => p.pages(u, true),
                    Target::Tags(t) => p
                        .tagged(t)
                        .map(|r| r.into_iter().map(CachePath::from_rel).collect()),
                };
                match pages {
                    Ok(pages) => {
                        let _g = rt.enter();
                        let n = cache.refresher.schedule(cache, pages, &Template::bare());
                        for _ in 0..n {
                            self.stats.count(Event::SoftPurge);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(origin = %m.origin, "cache: a soft purge from the bus: {e}")
                    }
                }
                return;
            }
        }
        let done = match &m.target {
            Target::Page(u) => p.purge(u, false),
            Target::Prefix(u) => p.purge(u, true),
            Target::Tags(t) => p.purge_tags(t),
        };
        match done {
            Ok(d) => {
                for _ in 0..d.files {
                    self.stats.count(Event::Purged);
                }
                tracing::debug!(origin = %m.origin, target = ?m.target, pages = d.files, "cache: purge from the bus");
            }
            Err(PurgeError::NeverCached { .. } | PurgeError::SlashUnderDirs { .. }) => {}
            Err(e) => tracing::warn!(origin = %m.origin, "cache: a purge from the bus failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_need_purge_bus() {
        let mut k = BusKeys::default();
        assert!(k.take("purge_stream", "s").unwrap());
        assert_eq!(k.finish(), Err("purge_stream"));
        let mut k = BusKeys::default();
        assert!(k.take("purge_bus", "http://x").is_err());
        assert!(k.take("purge_bus", "redis://127.0.0.1:6379/2").unwrap());
        assert!(k.take("node_name", "a b").is_err());
        assert!(k.take("purge_stream_max", "10").is_err());
        assert!(!k.take("other", "x").unwrap());
        let s = k.finish().unwrap().unwrap();
        assert_eq!(s.stream, "plughost:purge");
        assert_eq!(s.max, DEFAULT_STREAM_MAX);
        assert!(!s.node_name.is_empty());
        assert_eq!(BusKeys::default().finish(), Ok(None));
    }
}
