//! Turning a resolved [`Node`] tree into running handlers: load each library,
//! run each factory (filters before what they wrap, as Paste Deploy does), and
//! chain the instances.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;

use plughost_sdk::abi;
use tokio::runtime::Handle;

use super::plugin_node::PluginNode;
use super::WorkerPool;
use crate::components::builtins::urlmap::UrlMap;
use crate::components::builtins::{self, Builtin};
use crate::components::plugin::{Instance, Registry};
use crate::core::config::{Component, Deployment, Kind, Mount, Node, Source};
use crate::core::Handler;

/// A component that could not be created: where, and why.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub struct BuildError {
    /// `file:line: [section] key`.
    pub location: String,
    pub message: String,
}

/// A ready-to-serve chain of handlers.
pub struct Pipeline {
    pub root: Arc<dyn Handler>,
    /// Every plugin library the pipeline uses (for reload watching).
    pub libraries: Vec<PathBuf>,
}

/// Create every instance of `deployment`'s app tree.
pub fn build(
    deployment: &Deployment,
    registry: &Registry,
    pool: &WorkerPool,
    rt: &Handle,
) -> Result<Pipeline, BuildError> {
    let builder = Builder {
        deployment,
        registry,
        pool,
        rt,
        libraries: RefCell::new(Vec::new()),
        caches: RefCell::new(builtins::cache::Claims::default()),
    };
    // `require =`: every named plugin must load before any factory runs.
    for (dist, at) in &deployment.requires {
        registry
            .egg(dist, &deployment.plugin_dirs)
            .map_err(|e| BuildError {
                location: at.clone(),
                message: e.to_string(),
            })?;
    }
    let root = builder.node(&deployment.app)?;
    Ok(Pipeline {
        root,
        libraries: builder.libraries.into_inner(),
    })
}

struct Builder<'a> {
    deployment: &'a Deployment,
    registry: &'a Registry,
    pool: &'a WorkerPool,
    rt: &'a Handle,
    libraries: RefCell<Vec<PathBuf>>,
    /// The cache directories of the caches built so far.
    caches: RefCell<builtins::cache::Claims>,
}

impl Builder<'_> {
    fn node(&self, node: &Node) -> Result<Arc<dyn Handler>, BuildError> {
        match node {
            Node::App(app) => match &app.source {
                Source::Builtin(builtin) => self.builtin(app, *builtin, None),
                _ => {
                    let instance = self.instance(app)?;
                    Ok(Arc::new(PluginNode::new(
                        instance,
                        None,
                        self.pool.clone(),
                        self.rt.clone(),
                    )))
                }
            },
            Node::Filter { filter, inner } => match &filter.source {
                Source::Builtin(builtin) => {
                    let next = self.node(inner)?;
                    self.builtin(filter, *builtin, Some((inner, next)))
                }
                _ => {
                    let instance = self.instance(filter)?;
                    let next = self.node(inner)?;
                    Ok(Arc::new(PluginNode::new(
                        instance,
                        Some(next),
                        self.pool.clone(),
                        self.rt.clone(),
                    )))
                }
            },
            Node::UrlMap {
                mounts, not_found, ..
            } => self.urlmap(mounts, not_found.as_deref()),
        }
    }

    fn urlmap(
        &self,
        mounts: &[Mount],
        not_found: Option<&Node>,
    ) -> Result<Arc<dyn Handler>, BuildError> {
        let mut built = Vec::with_capacity(mounts.len());
        for m in mounts {
            built.push((m.key.clone(), self.node(&m.app)?));
        }
        let not_found = not_found.map(|n| self.node(n)).transpose()?;
        Ok(Arc::new(UrlMap::new(built, not_found)))
    }

    fn builtin(
        &self,
        c: &Component,
        builtin: Builtin,
        next: Option<(&Node, Arc<dyn Handler>)>,
    ) -> Result<Arc<dyn Handler>, BuildError> {
        let made = match (builtin, next) {
            (Builtin::Static, None) => builtins::static_files::app(c),
            (Builtin::Metrics, None) => builtins::metrics::app(c),
            (Builtin::Cache, Some((inner, next))) => {
                builtins::cache::filter(c, inner, next, &mut self.caches.borrow_mut())
            }
            (Builtin::TransLogger, Some((_, next))) => builtins::translogger::filter(c, next),
            (b, _) => Err(format!("{} cannot be used as {}", b.uri(), c.kind.as_str())),
        };
        made.map_err(|message| BuildError {
            location: format!("{}:{}: [{}]", c.file.display(), c.line, c.section),
            message,
        })
    }

    fn instance(&self, c: &Component) -> Result<Instance, BuildError> {
        let at = |key: &str| format!("{}:{}: [{}] {key}", c.file.display(), c.line, c.section);
        let library = match &c.source {
            Source::Egg { dist, .. } => self.registry.egg(dist, &self.deployment.plugin_dirs),
            Source::Lib { path, .. } => self.registry.open(path),
            Source::Builtin(b) => unreachable!("built-in {b:?} is not a plugin"),
        }
        .map_err(|e| BuildError {
            location: at("use"),
            message: e.to_string(),
        })?;
        let mut libraries = self.libraries.borrow_mut();
        if !libraries.contains(&library.path) {
            libraries.push(library.path.clone());
        }
        drop(libraries);
        let kind = match c.kind {
            Kind::App => abi::PH_KIND_APP,
            Kind::Filter => abi::PH_KIND_FILTER,
        };
        let entry = c.source.entry();
        let file_name = library
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let label = format!("[{}] {file_name}#{entry}", c.section);
        Instance::create(
            library.clone(),
            entry,
            kind,
            &c.global_conf,
            &c.local_conf,
            label,
        )
        .map_err(|message| BuildError {
            location: at("use"),
            message: format!("{}#{entry}: {message}", library.path.display()),
        })
    }
}
