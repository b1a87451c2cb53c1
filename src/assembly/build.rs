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
use crate::components::plugin::{Instance, LoadError, Registry};
use crate::core::builtin::{Builtin, DirClaims, FilterSite, Make, SettingError};
use crate::core::config::{Component, Deployment, Kind, Mount, Node, Source};
use crate::core::location::{Location, Warning};
use crate::core::Handler;

/// A component that could not be created: where, and why.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {failure}")]
pub struct BuildError {
    /// The section (and key) at fault.
    pub at: Location,
    /// Why (shown after the location; not a separate `source`, so a chain
    /// printed with `{:#}` says it once).
    pub failure: Box<Failure>,
}

/// Why a component could not be created.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Its library could not be found or opened.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Its factory refused (or the library lacks the entry).
    #[error("{}#{entry}: {message}", library.display())]
    Create {
        library: PathBuf,
        entry: String,
        message: String,
    },
    /// A built-in refused a setting.
    #[error("{0}")]
    Setting(SettingError),
    /// A built-in used where it does not fit.
    #[error("{uri} cannot be used as {kind}")]
    Misplaced { uri: String, kind: &'static str },
}

impl BuildError {
    fn new(at: Location, failure: impl Into<Failure>) -> BuildError {
        BuildError {
            at,
            failure: Box::new(failure.into()),
        }
    }

    /// A built-in's setting error, located at its key when it names one.
    fn setting(c: &Component, e: SettingError) -> BuildError {
        match e.key.clone() {
            Some(key) => BuildError::new(
                c.key_location(&key),
                Failure::Setting(SettingError::new(e.message)),
            ),
            None => BuildError::new(c.location(), Failure::Setting(e)),
        }
    }
}

/// A ready-to-serve chain of handlers.
pub struct Pipeline {
    pub root: Arc<dyn Handler>,
    /// Every plugin library the pipeline uses (for reload watching).
    pub libraries: Vec<PathBuf>,
    /// What loading found questionable (e.g. a plugin that aborts on panic).
    pub warnings: Vec<Warning>,
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
        warnings: RefCell::new(Vec::new()),
        claims: RefCell::new(DirClaims::default()),
    };
    // `require =`: every named plugin must load before any factory runs.
    for (dist, at) in &deployment.requires {
        registry
            .egg(dist, &deployment.plugin_dirs)
            .map_err(|e| BuildError::new(at.clone(), e))?;
    }
    let root = builder.node(&deployment.app)?;
    Ok(Pipeline {
        root,
        libraries: builder.libraries.into_inner(),
        warnings: builder.warnings.into_inner(),
    })
}

struct Builder<'a> {
    deployment: &'a Deployment,
    registry: &'a Registry,
    pool: &'a WorkerPool,
    rt: &'a Handle,
    libraries: RefCell<Vec<PathBuf>>,
    warnings: RefCell<Vec<Warning>>,
    /// The directories claimed by the built-ins built so far.
    claims: RefCell<DirClaims>,
}

impl Builder<'_> {
    fn node(&self, node: &Node) -> Result<Arc<dyn Handler>, BuildError> {
        match node {
            Node::App(app) => match &app.source {
                Source::Builtin(builtin) => self.builtin(app, builtin, None),
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
                    self.builtin(filter, builtin, Some((inner, next)))
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
                map,
                mounts,
                not_found,
            } => self.urlmap(map, mounts, not_found.as_deref()),
        }
    }

    fn urlmap(
        &self,
        map: &Component,
        mounts: &[Mount],
        not_found: Option<&Node>,
    ) -> Result<Arc<dyn Handler>, BuildError> {
        let mut built = Vec::with_capacity(mounts.len());
        for m in mounts {
            built.push((m.key.clone(), self.node(&m.app)?));
        }
        let not_found = not_found.map(|n| self.node(n)).transpose()?;
        match &map.source {
            Source::Builtin(Builtin {
                make: Make::Composite(make),
                ..
            }) => Ok(make(built, not_found)),
            _ => Err(self.misplaced(map)),
        }
    }

    fn builtin(
        &self,
        c: &Component,
        builtin: &Builtin,
        next: Option<(&Node, Arc<dyn Handler>)>,
    ) -> Result<Arc<dyn Handler>, BuildError> {
        let made = match (builtin.make, next) {
            (Make::App(make), None) => make(c),
            (Make::Filter(make), Some((inner, next))) => make(FilterSite {
                component: c,
                inner,
                next,
                claims: &mut self.claims.borrow_mut(),
            }),
            _ => return Err(self.misplaced(c)),
        };
        made.map_err(|e| BuildError::setting(c, e))
    }

    fn misplaced(&self, c: &Component) -> BuildError {
        let uri = match &c.source {
            Source::Builtin(b) => b.uri(),
            other => other.entry().to_owned(),
        };
        BuildError::new(
            c.location(),
            Failure::Misplaced {
                uri,
                kind: c.kind.as_str(),
            },
        )
    }

    fn instance(&self, c: &Component) -> Result<Instance, BuildError> {
        let at = || c.location().for_key("use");
        let library = match &c.source {
            Source::Egg { dist, .. } => self.registry.egg(dist, &self.deployment.plugin_dirs),
            Source::Lib { path, .. } => self.registry.open(path),
            Source::Builtin(b) => unreachable!("built-in {b:?} is not a plugin"),
        }
        .map_err(|e| BuildError::new(at(), e))?;
        let mut libraries = self.libraries.borrow_mut();
        if !libraries.contains(&library.path) {
            libraries.push(library.path.clone());
            if !library.panic_unwind && library.build_info.starts_with("plughost-sdk") {
                self.warnings.borrow_mut().push(Warning::new(
                    c.location(),
                    format!(
                        "{} was built without panic=unwind: a panic in it will abort the whole process",
                        library.path.display()
                    ),
                ));
            }
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
        .map_err(|message| {
            let message = message.to_string();
            // A factory refusing one of its keys (the SDK's `expect_keys` says
            // "unknown key `K`"): point at that key's own line.
            let at = unknown_key(&message).map_or_else(at, |key| c.key_location(key));
            BuildError::new(
                at,
                Failure::Create {
                    library: library.path.clone(),
                    entry: entry.to_owned(),
                    message,
                },
            )
        })
    }
}

/// The key named by a factory's "unknown key `KEY`…" message, if it starts so.
fn unknown_key(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown key `")?;
    rest.split_once('`').map(|(key, _)| key)
}
