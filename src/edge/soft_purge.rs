//! `plughost cache purge --soft`: refresh pages instead of deleting them. The
//! pages are found as a purge would find them (paths, `--prefix`, `--tag`),
//! then each is requested through the deployment's pipeline in-process with
//! the cache's refresh key (`plughost.cache.refresh`), so the cache asks the
//! app again and renames a storable answer over the old page (which a front
//! end keeps serving meanwhile), or removes the page. One request per page,
//! a few at a time.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::in_process::InProcess;
use crate::assembly::BuildError;
use crate::components::builtins::cache::purge::{PurgeError, Purger};
use crate::components::builtins::cache::report::{Outcome, REFRESH};
use crate::components::builtins::cache::BUILTIN as CACHE;
use crate::core::config::{Deployment, Source};

/// Refreshes at once.
const CONCURRENCY: usize = 4;

/// Why a soft purge could not run.
#[derive(Debug, thiserror::Error)]
pub enum SoftPurgeError {
    #[error("{} has no cache filter (egg:plughost#cache or egg:wsgi_cache#middleware)", .0.display())]
    NoCache(PathBuf),
    #[error("{0}: {1}")]
    Purge(String, PurgeError),
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// What the refreshes did.
#[derive(Debug, Default)]
pub struct Refreshed {
    stored: usize,
    /// Pages removed because the app's new answer may not be stored: (path, why).
    removed: Vec<(String, String)>,
    /// Pages whose refresh failed (they are removed by the cache): (path, why).
    failed: Vec<(String, String)>,
}

impl Refreshed {
    /// How many refreshes failed (the exit code is 1 if any did).
    pub fn failed(&self) -> usize {
        self.failed.len()
    }
}

impl fmt::Display for Refreshed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "refreshed: {}", self.stored)?;
        writeln!(f, "removed (not storable now): {}", self.removed.len())?;
        for (path, why) in &self.removed {
            writeln!(f, "  {path}: {why}")?;
        }
        writeln!(f, "failed: {}", self.failed.len())?;
        for (path, why) in &self.failed {
            writeln!(f, "  {path}: {why}")?;
        }
        Ok(())
    }
}

/// Refresh the pages of `deployment`'s caches that `urls` (with `prefix`,
/// their subtrees) and `tags` name, on `rt`.
pub fn run(
    deployment: &Deployment,
    urls: &[String],
    prefix: bool,
    tags: &[String],
    rt: &tokio::runtime::Runtime,
) -> Result<Refreshed, SoftPurgeError> {
    let mut targets = Vec::new();
    let mut any = false;
    for c in deployment.app.components() {
        if c.source != Source::Builtin(&CACHE) {
            continue;
        }
        any = true;
        let purger =
            Purger::new(c).map_err(|e| SoftPurgeError::Purge(c.location().to_string(), e))?;
        let Some(purger) = purger else {
            continue;
        };
        let found = purger
            .soft_targets(urls, prefix, tags)
            .map_err(|e| SoftPurgeError::Purge(purger.cache_dir().display().to_string(), e))?;
        targets.extend(found);
    }
    if !any {
        return Err(SoftPurgeError::NoCache(deployment.files[0].clone()));
    }
    targets.sort();
    targets.dedup();
    let pipeline = Arc::new(InProcess::build(deployment, rt.handle())?);
    rt.block_on(async move {
        let gate = Arc::new(Semaphore::new(CONCURRENCY));
        let mut tasks = Vec::new();
        for (host, path) in targets {
            let (pipeline, gate) = (pipeline.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                let host = host.unwrap_or_else(|| pipeline.default_host().to_owned());
                let extras = [(REFRESH.to_owned(), "1".to_owned())];
                let outcome = match pipeline.get(&path, &host, &extras).await {
                    Err(e) => Outcome::Failed(e.to_string()),
                    Ok(f) => match f.report {
                        Some(r) => r.outcome().await,
                        None => Outcome::Failed("no cache answered the request".into()),
                    },
                };
                (path, outcome)
            }));
        }
        let mut done = Refreshed::default();
        for t in tasks {
            let (path, outcome) = match t.await {
                Ok(r) => r,
                Err(e) => (String::new(), Outcome::Failed(e.to_string())),
            };
            match outcome {
                Outcome::Stored => done.stored += 1,
                Outcome::NotStored(why) => done.removed.push((path, why.to_owned())),
                Outcome::Bypass(why) => done
                    .failed
                    .push((path, format!("the cache stays out of it ({why})"))),
                Outcome::Hit => done.failed.push((path, "answered from the cache".into())),
                Outcome::Failed(e) => done.failed.push((path, e)),
            }
        }
        Ok(done)
    })
}
