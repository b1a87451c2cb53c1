//! `plughost cache warm`: request pages through the pipeline in-process so the
//! cache stores them before the first visitor asks.
//!
//! `sources` turns arguments, a list, an access log or a sitemap into paths
//! (most important first); [`run`] builds the pipeline once
//! ([`InProcess`](super::in_process::InProcess)), sends every path as a GET
//! asking for the cache's [`Report`], at most `concurrency` at a time and
//! started in order, and sums up what the cache did with each.

pub(crate) mod sources;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

use self::sources::{Item, SourceError};
use super::in_process::{InProcess, RequestError};
use crate::assembly::BuildError;
use crate::components::builtins::cache::report::{Outcome, Report, REPORT};
use crate::components::builtins::cache::BUILTIN as CACHE;
use crate::core::config::{Deployment, Source};

/// What to warm and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// URL paths from the command line (each must be a path without a query).
    pub paths: Vec<String>,
    /// `--from`: a list of paths or an access log.
    pub from: Option<PathBuf>,
    /// `--sitemap`: a sitemap or sitemap index.
    pub sitemap: Option<PathBuf>,
    /// Requests in flight at once (at least 1).
    pub concurrency: usize,
    /// The Host header; default: the server's address.
    pub host: Option<String>,
    /// Print one line per path as it is done.
    pub verbose: bool,
}

/// Why warming could not start.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    /// A path argument or `--host` is malformed (a usage error).
    #[error(transparent)]
    Usage(RequestError),
    /// A `--from` or `--sitemap` file.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Nothing would store the pages.
    #[error("{} has no cache filter (egg:plughost#cache or egg:wsgi_cache#middleware)", .0.display())]
    NoCache(PathBuf),
    /// The pipeline could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
}

impl WarmError {
    /// Whether this is the command line's fault (exit code 2, as clap's).
    pub fn is_usage(&self) -> bool {
        matches!(self, WarmError::Usage(_))
    }
}

/// What happened to one path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Warmed {
    Stored,
    Cached,
    Skipped(String),
    Failed(String),
}

/// The counts at the end (printed with `Display`).
#[derive(Debug, Default)]
pub struct Summary {
    stored: usize,
    cached: usize,
    skipped: BTreeMap<String, usize>,
    /// Each failed path and why, in the order they failed.
    failed: Vec<(String, String)>,
    /// Source entries passed over before any request (access log lines...).
    ignored: BTreeMap<&'static str, usize>,
    /// Stopped by a signal with this many paths not done.
    interrupted: Option<usize>,
}

impl Summary {
    /// How many paths failed (the exit code is 1 if any did).
    pub fn failed(&self) -> usize {
        self.failed.len()
    }

    /// Whether a signal stopped the run before every path was done.
    pub fn interrupted(&self) -> bool {
        self.interrupted.is_some()
    }

    fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }

    fn done(&self) -> usize {
        self.stored + self.cached + self.skipped_total() + self.failed.len()
    }

    fn add(&mut self, path: &str, w: Warmed) {
        match w {
            Warmed::Stored => self.stored += 1,
            Warmed::Cached => self.cached += 1,
            Warmed::Skipped(why) => *self.skipped.entry(why).or_default() += 1,
            Warmed::Failed(why) => self.failed.push((path.to_owned(), why)),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "stored: {}", self.stored)?;
        writeln!(f, "already cached: {}", self.cached)?;
        writeln!(f, "skipped: {}", self.skipped_total())?;
        for (why, n) in &self.skipped {
            writeln!(f, "  {why}: {n}")?;
        }
        writeln!(f, "failed: {}", self.failed.len())?;
        for (path, why) in &self.failed {
            writeln!(f, "  {path}: {why}")?;
        }
        if !self.ignored.is_empty() {
            let n: usize = self.ignored.values().sum();
            let each: Vec<String> = self
                .ignored
                .iter()
                .map(|(why, n)| format!("{why} {n}"))
                .collect();
            writeln!(f, "ignored: {n} ({})", each.join(", "))?;
        }
        if let Some(n) = self.interrupted {
            writeln!(f, "interrupted: {n} paths not done")?;
        }
        Ok(())
    }
}

/// Warm the cache of `deployment` (loaded, logging set up) on `rt`.
pub fn run(
    deployment: &Deployment,
    options: &Options,
    rt: &tokio::runtime::Runtime,
) -> Result<Summary, WarmError> {
    let host_given = options.host.clone();
    if let Some(host) = &host_given {
        InProcess::check("/", host).map_err(WarmError::Usage)?;
    }
    let mut items = Vec::new();
    for p in &options.paths {
        InProcess::check(p, "localhost").map_err(WarmError::Usage)?;
        items.push(Item::Path(p.clone()));
    }
    let has_cache = deployment
        .app
        .components()
        .iter()
        .any(|c| c.source == Source::Builtin(&CACHE));
    if !has_cache {
        return Err(WarmError::NoCache(deployment.files[0].clone()));
    }
    // Sources after the cheap checks: an access log may be large.
    let mut summary = Summary::default();
    let found = [
        options.from.as_deref().map(sources::from_file),
        options.sitemap.as_deref().map(sources::sitemap),
    ];
    for f in found.into_iter().flatten() {
        let f = f?;
        items.extend(f.items);
        for (n, why) in f.ignored {
            *summary.ignored.entry(why).or_default() += n;
        }
    }
    let mut seen = HashSet::new();
    items.retain(|i| seen.insert(i.clone()));

    let pipeline = Arc::new(InProcess::build(deployment, rt.handle())?);
    let host = host_given.unwrap_or_else(|| pipeline.default_host().to_owned());
    let concurrency = options.concurrency.max(1);
    let verbose = options.verbose;
    rt.block_on(async move {
        let mut progress = Progress::new(items.len(), std::io::stderr().is_terminal());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let gate = Arc::new(Semaphore::new(concurrency));
        let warned = Arc::new(AtomicBool::new(false));
        let producer = tokio::spawn(async move {
            for item in items {
                let path = match item {
                    Item::Path(p) => p,
                    Item::Skip(what, why) => {
                        let _ = tx.send((what, Warmed::Skipped(why.to_owned())));
                        continue;
                    }
                };
                let Ok(permit) = gate.clone().acquire_owned().await else {
                    break;
                };
                let (pipeline, host, tx, warned) =
                    (pipeline.clone(), host.clone(), tx.clone(), warned.clone());
                tokio::spawn(async move {
                    let w = warm_one(&pipeline, &path, &host, &warned).await;
                    drop(permit);
                    let _ = tx.send((path, w));
                });
            }
        });
        let mut interrupt = interrupted();
        loop {
            let (path, w) = tokio::select! {
                got = rx.recv() => match got {
                    Some(got) => got,
                    // Every sender is gone: the producer ended and every request is done.
                    None => break,
                },
                () = &mut interrupt => {
                    // Start nothing more; requests in flight end with the process
                    // (a store cut short leaves only a temp file, swept at the
                    // next start).
                    producer.abort();
                    summary.interrupted = Some(progress.total - summary.done());
                    break;
                }
            };
            if verbose {
                progress.clear();
                let line = match &w {
                    Warmed::Stored => format!("stored {path}"),
                    Warmed::Cached => format!("cached {path}"),
                    Warmed::Skipped(why) => format!("skipped {path} {why}"),
                    Warmed::Failed(why) => format!("failed {path}: {why}"),
                };
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}").and_then(|()| out.flush());
            }
            summary.add(&path, w);
            progress.draw(&summary);
        }
        progress.clear();
        Ok(summary)
    })
}

/// Resolves on the first SIGINT or SIGTERM (handlers installed now).
fn interrupted() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    async fn recv(s: std::io::Result<Signal>) {
        match s {
            Ok(mut s) => drop(s.recv().await),
            Err(_) => std::future::pending::<()>().await,
        }
    }
    let (int, term) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    Box::pin(async move {
        tokio::select! {
            () = recv(int) => {}
            () = recv(term) => {}
        }
    })
}

/// One path through the pipeline, and what the cache made of it.
async fn warm_one(pipeline: &InProcess, path: &str, host: &str, warned: &AtomicBool) -> Warmed {
    let extras = [(REPORT.to_owned(), "1".to_owned())];
    let fetched = match pipeline.get(path, host, &extras).await {
        Ok(f) => f,
        Err(RequestError::Path(..)) => return Warmed::Skipped(sources::NOT_A_PATH.to_owned()),
        Err(e) => return Warmed::Failed(e.to_string()),
    };
    if fetched.status.is_server_error() {
        return Warmed::Failed(format!("the app answered {}", fetched.status));
    }
    if let Err(e) = fetched.body {
        return Warmed::Failed(format!("the response body failed: {e}"));
    }
    match fetched.report {
        Some(report) => judge(report).await,
        None => {
            if !warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "cache warm: no cache filter answered {path} (is it outside the cache's part of the pipeline?)"
                );
            }
            Warmed::Skipped("no-cache-filter-answered".to_owned())
        }
    }
}

async fn judge(report: Report) -> Warmed {
    match report.outcome().await {
        Outcome::Hit => Warmed::Cached,
        Outcome::Stored => Warmed::Stored,
        Outcome::NotStored(why) => Warmed::Skipped(format!("NotStored({why})")),
        Outcome::Bypass(why) => Warmed::Skipped(format!("Bypass({why})")),
        Outcome::Failed(e) => Warmed::Failed(format!("storing failed: {e}")),
    }
}

/// The progress line on stderr (a terminal only), redrawn in place.
struct Progress {
    on: bool,
    total: usize,
    drawn: bool,
    /// When it was last drawn: at most ten redraws a second.
    last: Option<std::time::Instant>,
}

impl Progress {
    fn new(total: usize, on: bool) -> Progress {
        Progress {
            on,
            total,
            drawn: false,
            last: None,
        }
    }

    fn draw(&mut self, s: &Summary) {
        if !self.on {
            return;
        }
        let now = std::time::Instant::now();
        let due = self
            .last
            .is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_millis(100));
        if !due && s.done() < self.total {
            return;
        }
        self.last = Some(now);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2Kwarm: {}/{} stored {} cached {} skipped {} failed {}",
            s.done(),
            self.total,
            s.stored,
            s.cached,
            s.skipped_total(),
            s.failed.len()
        )
        .and_then(|()| err.flush());
        self.drawn = true;
    }

    fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K").and_then(|()| err.flush());
            self.drawn = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_each_reason() {
        let mut s = Summary::default();
        s.add("/a", Warmed::Stored);
        s.add("/b", Warmed::Cached);
        s.add("/c", Warmed::Skipped("NotStored(no_store.status)".into()));
        s.add("/d", Warmed::Skipped("NotStored(no_store.status)".into()));
        s.add("/e", Warmed::Skipped("Bypass(bypass.query)".into()));
        s.add(
            "/f",
            Warmed::Failed("the app answered 502 Bad Gateway".into()),
        );
        s.ignored.insert("not-get", 2);
        assert_eq!(s.failed(), 1);
        assert_eq!(s.done(), 6);
        assert_eq!(
            s.to_string(),
            "stored: 1\nalready cached: 1\nskipped: 3\n  Bypass(bypass.query): 1\n  \
             NotStored(no_store.status): 2\nfailed: 1\n  /f: the app answered 502 Bad Gateway\n\
             ignored: 2 (not-get 2)\n"
        );
    }
}
