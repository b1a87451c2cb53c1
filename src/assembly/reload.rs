//! Hot reload: rebuild the whole pipeline from the configuration beside the
//! running one and swap it in only when every factory succeeded. Triggered by
//! SIGHUP, and with `serve --reload` by any change to a file the configuration
//! loaded (the main file, every `config:` include, every plugin library).
//! A reload carries over every plugin instance whose library contents, entry,
//! kind and configuration are unchanged (see [`assembly::build_reusing`]), so
//! its in-memory state survives; everything else is created afresh.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::assembly::python_watch;
use crate::assembly::{self, BuildError, Reusable, Swappable, WorkerPool};
use crate::components::builtins;
use crate::components::plugin::{FileStamp, Registry};
use crate::core::config::{self, Deployment, ServerConfig};
use crate::core::metrics::METRICS;

/// How often `--reload` looks at the watched files.
pub(crate) const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// What to load: the config file, the app and server names, the variables.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub path: PathBuf,
    pub app_name: Option<String>,
    pub server_name: Option<String>,
    pub vars: Vec<(String, String)>,
    /// `--host`/`--port` from the command line, which win over the server section.
    pub host: Option<String>,
    pub port: Option<u16>,
}

impl LoadSpec {
    pub fn load(&self) -> Result<Deployment, config::ConfigError> {
        let mut d = config::load(
            &self.path,
            self.app_name.as_deref(),
            self.server_name.as_deref(),
            &self.vars,
            builtins::catalog(),
        )?;
        if self.host.is_some() || self.port.is_some() {
            let (h, p) = d.server.listen.first().cloned().unwrap_or_else(|| {
                // Only a unix socket configured: the command line adds TCP.
                (
                    config::server::DEFAULT_HOST.to_owned(),
                    config::server::DEFAULT_PORT,
                )
            });
            d.server.listen = vec![(self.host.clone().unwrap_or(h), self.port.unwrap_or(p))];
        }
        Ok(d)
    }
}

/// Why the first pipeline could not start, or a reload kept the old one.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Owns the live pipeline and rebuilds it on demand.
pub struct Reloader {
    spec: LoadSpec,
    registry: Registry,
    pool: WorkerPool,
    rt: Handle,
    live: Arc<Swappable>,
    /// The server settings the process listens with.
    server: ServerConfig,
    /// Files whose change triggers a reload, with their stamps when last loaded.
    watched: Mutex<Vec<(PathBuf, Option<FileStamp>)>>,
    /// With the WSGI bridge loaded, the Python files whose change restarts
    /// the process in place (told through `python_changed`).
    python: Mutex<Vec<(PathBuf, Option<FileStamp>)>>,
    python_changed: Arc<Notify>,
    /// The live pipeline's plugin instances, which the next reload may carry
    /// over (held weakly: the pipeline, its requests and bodies keep them alive).
    instances: Mutex<Vec<Reusable>>,
    /// One reload at a time (reloads are counted in `METRICS`).
    busy: Mutex<()>,
}

impl Reloader {
    /// Build the first pipeline from `deployment` (what `spec` loaded).
    pub fn start(
        spec: LoadSpec,
        deployment: &Deployment,
        rt: Handle,
    ) -> Result<Arc<Reloader>, ReloadError> {
        let registry = Registry::new();
        let pool = WorkerPool::new(deployment.server.threads, deployment.server.request_timeout);
        let built = assembly::build(deployment, &registry, &pool, &rt)?;
        for w in &built.warnings {
            tracing::warn!("{w}");
        }
        let watched = watch_list(deployment, &built.libraries);
        let python = if python_watch::runs_python(&built.libraries) {
            python_watch::files(deployment)
        } else {
            Vec::new()
        };
        let instances = built.reusable();
        let reloader = Reloader {
            spec,
            registry,
            pool,
            rt,
            live: Arc::new(Swappable::new(built.root)),
            server: deployment.server.clone(),
            watched: Mutex::new(watched),
            python: Mutex::new(python),
            python_changed: Arc::new(Notify::new()),
            instances: Mutex::new(instances),
            busy: Mutex::new(()),
        };
        Ok(Arc::new(reloader))
    }

    /// The handler the server serves: always the current pipeline.
    pub fn live(&self) -> Arc<Swappable> {
        self.live.clone()
    }

    pub fn pool(&self) -> &WorkerPool {
        &self.pool
    }

    /// Rebuild from the configuration and swap; on any error keep the running
    /// pipeline. Blocks (it runs factories): call it off the async runtime.
    pub fn reload(&self) -> Result<(), ReloadError> {
        let _one = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        // Stamps taken before reading, so a write that lands during the load
        // triggers another reload.
        let before = self.stamps_now();
        let result = self
            .spec
            .load()
            .map_err(ReloadError::from)
            .and_then(|deployment| {
                let previous = self
                    .instances
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let built = assembly::build_reusing(
                    &deployment,
                    &self.registry,
                    &self.pool,
                    &self.rt,
                    &previous,
                )?;
                Ok((deployment, built))
            });
        match result {
            Ok((deployment, built)) => {
                for w in deployment.warnings.iter().chain(&built.warnings) {
                    tracing::warn!("{w}");
                }
                if deployment.server.listen != self.server.listen
                    || deployment.server.threads != self.server.threads
                    || deployment.server.request_timeout != self.server.request_timeout
                {
                    tracing::warn!("[server] listen, threads or request_timeout changed: restart plughost to apply them");
                }
                let mut watched = watch_list(&deployment, &built.libraries);
                for (path, stamp) in &mut watched {
                    if let Some((_, s)) = before.iter().find(|(p, _)| p == path) {
                        *stamp = *s;
                    }
                }
                let kept = built.instances.iter().filter(|m| m.kept).count();
                let total = built.instances.len();
                *self.instances.lock().unwrap_or_else(|e| e.into_inner()) = built.reusable();
                self.live.swap(built.root);
                *self.watched.lock().unwrap_or_else(|e| e.into_inner()) = watched;
                METRICS.reloaded(true);
                tracing::info!(
                    "reloaded {} (kept {kept} of {total} plugin instances)",
                    self.spec.path.display()
                );
                Ok(())
            }
            Err(error) => {
                // Remember what we saw, so the same broken state is not retried
                // until a file changes again.
                *self.watched.lock().unwrap_or_else(|e| e.into_inner()) = before;
                METRICS.reloaded(false);
                tracing::error!("reload failed, still serving the previous configuration: {error}");
                Err(error)
            }
        }
    }

    fn stamps_now(&self) -> Vec<(PathBuf, Option<FileStamp>)> {
        let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        watched
            .iter()
            .map(|(p, _)| (p.clone(), FileStamp::of(p)))
            .collect()
    }

    /// Whether any watched file differs from when it was last loaded.
    fn changed(&self) -> bool {
        let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        watched.iter().any(|(p, stamp)| FileStamp::of(p) != *stamp)
    }

    /// Notified when a watched Python file changed (`serve --reload`): the
    /// edge restarts the process in place.
    pub fn python_changed(&self) -> Arc<Notify> {
        self.python_changed.clone()
    }

    /// Whether a watched Python file differs from when it was last seen
    /// (the stamps are updated, so one change is told once).
    fn python_touched(&self) -> bool {
        let mut python = self.python.lock().unwrap_or_else(|e| e.into_inner());
        let mut touched = false;
        for (p, stamp) in python.iter_mut() {
            let now = FileStamp::of(p);
            if now != *stamp {
                *stamp = now;
                touched = true;
            }
        }
        touched
    }

    /// Poll the watched files and reload on change (`serve --reload`); a
    /// changed Python file is told through [`Reloader::python_changed`].
    pub async fn watch(self: Arc<Self>) {
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            if self.python_touched() {
                tracing::info!("a Python file changed: restarting in place");
                self.python_changed.notify_one();
                continue;
            }
            if !self.changed() {
                continue;
            }
            // Let a write in progress settle before reading.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.reload()).await;
        }
    }

    /// Reload on every SIGHUP. The handler is installed when this is called
    /// (inside the runtime), not when the returned future first runs, so a
    /// SIGHUP right after start-up reloads instead of ending the process.
    pub fn on_sighup(self: Arc<Self>) -> impl std::future::Future<Output = ()> {
        use tokio::signal::unix::{signal, SignalKind};
        let hup = signal(SignalKind::hangup());
        async move {
            let Ok(mut hup) = hup else {
                tracing::warn!("cannot listen for SIGHUP; reload with --reload instead");
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP received: reloading");
                let me = self.clone();
                let _ = tokio::task::spawn_blocking(move || me.reload()).await;
            }
        }
    }
}

fn watch_list(deployment: &Deployment, libraries: &[PathBuf]) -> Vec<(PathBuf, Option<FileStamp>)> {
    deployment
        .files
        .iter()
        .chain(libraries)
        .map(|p| (p.clone(), FileStamp::of(p)))
        .collect()
}
