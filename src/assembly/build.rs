//! Turning a resolved [`Node`] tree into running handlers: load each library,
//! run each factory (filters before what they wrap, as Paste Deploy does), and
//! chain the instances. A rebuild ([`build_reusing`]) carries over the previous
//! pipeline's instances whose factory call would be the same (see
//! [`InstanceKey`]) instead of creating them again.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use plughost_sdk::abi;
use tokio::runtime::Handle;

use super::plugin_node::PluginNode;
use super::WorkerPool;
use crate::components::plugin::{CreateError, Instance, Library, LoadError, Registry};

/// The WSGI bridge plugin (plugins/wsgi), which `egg:NAME` falls back to.
const PYTHON_BRIDGE: &str = "plughost-wsgi";
/// The bridge library, its entry, and the local_conf with `paste` added.
type PythonEgg = (Arc<Library>, &'static str, Vec<(String, String)>);
/// The bridge's entry for a component of `kind`.
fn bridge_entry(kind: Kind) -> &'static str {
    match kind {
        Kind::App => "wsgi",
        Kind::Filter => "wsgi-filter",
    }
}

/// The bridge's local config for Python code named by `call:` or a protocol
/// key: the section's keys (the factory's local_conf), then `paste =
/// call:module:attr` and, from a protocol key, `paste_protocol`.
fn python_call(c: &Component) -> Vec<(String, String)> {
    let Source::Python { spec, protocol } = &c.source else {
        return c.local_conf.clone();
    };
    let mut local_conf = c.local_conf.clone();
    local_conf.push(("paste".to_owned(), format!("call:{spec}")));
    if let Some(p) = protocol {
        local_conf.push(("paste_protocol".to_owned(), (*p).to_owned()));
    }
    local_conf
}

/// What the bridge says when the Python environment has no such distribution.
const PYTHON_DIST_MISSING: &str = "no Python distribution";
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
    #[error("{}#{entry}: {error}", library.display())]
    Create {
        library: PathBuf,
        entry: String,
        error: CreateError,
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
    /// Every plugin instance of the pipeline, in build order.
    pub(crate) instances: Vec<Made>,
}

/// What a plugin instance was made from. Two components with the same key
/// would get the same factory call: the same library contents (the registry's
/// content hash, whatever the path), entry, kind, and `global_conf` and
/// `local_conf` exactly as the factory receives them, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct InstanceKey {
    pub library: u64,
    pub entry: String,
    pub kind: u32,
    pub global_conf: Vec<(String, String)>,
    pub local_conf: Vec<(String, String)>,
}

/// One plugin instance of a built pipeline.
#[derive(Clone)]
pub(crate) struct Made {
    pub key: InstanceKey,
    /// The section it serves (`app:main`).
    pub section: String,
    pub instance: Arc<Instance>,
    /// Whether it was carried over from the previous pipeline rather than created.
    pub kept: bool,
}

/// A plugin instance a later build may carry over. It holds the instance
/// weakly: keeping it for reuse never keeps it alive (it lives as long as a
/// pipeline, request or body holds it).
#[derive(Clone)]
pub(crate) struct Reusable {
    key: InstanceKey,
    section: String,
    instance: Weak<Instance>,
}

impl Pipeline {
    /// This pipeline's instances, for the next [`build_reusing`].
    pub(crate) fn reusable(&self) -> Vec<Reusable> {
        self.instances
            .iter()
            .map(|m| Reusable {
                key: m.key.clone(),
                section: m.section.clone(),
                instance: Arc::downgrade(&m.instance),
            })
            .collect()
    }
}

/// Create every instance of `deployment`'s app tree.
pub fn build(
    deployment: &Deployment,
    registry: &Registry,
    pool: &WorkerPool,
    rt: &Handle,
) -> Result<Pipeline, BuildError> {
    build_reusing(deployment, registry, pool, rt, &[])
}

/// As [`build`], carrying over instances of `previous` (a pipeline built with
/// the same `registry`) instead of running their factories again. A plugin
/// component gets an old instance with the same [`InstanceKey`], at most one
/// component per old instance: the one made for its own section (in build
/// order, when a section is used twice), else one whose section the new
/// configuration no longer has (a renamed section). Everything else is created.
/// Nothing of `previous` changes, so a failed build leaves it as it was.
pub(crate) fn build_reusing(
    deployment: &Deployment,
    registry: &Registry,
    pool: &WorkerPool,
    rt: &Handle,
    previous: &[Reusable],
) -> Result<Pipeline, BuildError> {
    // Built-ins that start background work (the cache's purge bus and
    // refreshes) find the runtime the pipeline will serve on.
    let _in_runtime = rt.enter();
    let mut reuse = Leftovers::new();
    for r in previous {
        if let Some(instance) = r.instance.upgrade() {
            reuse
                .entry(r.key.clone())
                .or_default()
                .push((r.section.clone(), instance));
        }
    }
    let sections = deployment
        .app
        .components()
        .into_iter()
        .map(|c| c.section.clone())
        .collect();
    let builder = Builder {
        deployment,
        registry,
        pool,
        rt,
        libraries: RefCell::new(Vec::new()),
        warnings: RefCell::new(Vec::new()),
        claims: RefCell::new(DirClaims::default()),
        reuse: RefCell::new(reuse),
        sections,
        made: RefCell::new(Vec::new()),
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
        instances: builder.made.into_inner(),
    })
}

/// Old instances by key, each with its section, in the old build order.
type Leftovers = HashMap<InstanceKey, Vec<(String, Arc<Instance>)>>;

struct Builder<'a> {
    deployment: &'a Deployment,
    registry: &'a Registry,
    pool: &'a WorkerPool,
    rt: &'a Handle,
    libraries: RefCell<Vec<PathBuf>>,
    warnings: RefCell<Vec<Warning>>,
    /// The directories claimed by the built-ins built so far.
    claims: RefCell<DirClaims>,
    /// The previous pipeline's instances not carried over yet, with their sections.
    reuse: RefCell<Leftovers>,
    /// Every section of the new tree.
    sections: HashSet<String>,
    /// The instances of the new pipeline so far.
    made: RefCell<Vec<Made>>,
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

    /// An old instance for `c`, if one may be carried over (see [`build_reusing`]).
    fn take_reusable(&self, key: &InstanceKey, section: &str) -> Option<Arc<Instance>> {
        let mut reuse = self.reuse.borrow_mut();
        let old = reuse.get_mut(key)?;
        let at = old
            .iter()
            .position(|(s, _)| s == section)
            .or_else(|| old.iter().position(|(s, _)| !self.sections.contains(s)))?;
        Some(old.remove(at).1)
    }

    /// `egg:NAME#ENTRY` through the WSGI bridge, as the Python entry point
    /// `paste = egg:NAME#ENTRY`, when the bridge library is on the plugin path.
    fn python_egg(&self, c: &Component) -> Option<PythonEgg> {
        let Source::Egg { dist, entry } = &c.source else {
            return None;
        };
        let library = self
            .registry
            .egg(PYTHON_BRIDGE, &self.deployment.plugin_dirs)
            .ok()?;
        let mut local_conf = c.local_conf.clone();
        local_conf.push(("paste".to_owned(), format!("egg:{dist}#{entry}")));
        Some((library, bridge_entry(c.kind), local_conf))
    }

    fn instance(&self, c: &Component) -> Result<Arc<Instance>, BuildError> {
        let at = || c.location().for_key("use");
        let loaded = match &c.source {
            Source::Egg { dist, .. } => self.registry.egg(dist, &self.deployment.plugin_dirs),
            Source::Lib { path, .. } => self.registry.open(path),
            Source::Python { .. } => self
                .registry
                .egg(PYTHON_BRIDGE, &self.deployment.plugin_dirs),
            Source::Builtin(b) => unreachable!("built-in {b:?} is not a plugin"),
        };
        // No native libNAME.so: a Python distribution NAME may have the entry point.
        let (library, entry, local_conf, native_missing) = match loaded {
            // `call:module:attr` and protocol keys: the bridge calls the factory.
            Ok(library) if matches!(c.source, Source::Python { .. }) => {
                (library, bridge_entry(c.kind), python_call(c), None)
            }
            Ok(library) => (library, c.source.entry(), c.local_conf.clone(), None),
            Err(missing @ LoadError::NotFound { .. }) => match self.python_egg(c) {
                Some((library, entry, local_conf)) => (library, entry, local_conf, Some(missing)),
                None => return Err(BuildError::new(at(), missing)),
            },
            Err(e) => return Err(BuildError::new(at(), e)),
        };
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
        let key = InstanceKey {
            library: library.content_hash,
            entry: entry.to_owned(),
            kind,
            global_conf: c.global_conf.clone(),
            local_conf: local_conf.clone(),
        };
        if let Some(instance) = self.take_reusable(&key, &c.section) {
            tracing::debug!(plugin = instance.label(), section = %c.section, "instance kept");
            self.made.borrow_mut().push(Made {
                key,
                section: c.section.clone(),
                instance: instance.clone(),
                kept: true,
            });
            return Ok(instance);
        }
        let file_name = library
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let label = format!("[{}] {file_name}#{entry}", c.section);
        let instance = Instance::create(
            library.clone(),
            entry,
            kind,
            &c.global_conf,
            &local_conf,
            label,
        )
        .map_err(|error| {
            // Neither a native library nor a Python distribution: the native error.
            if let Some(missing) = native_missing {
                if error.to_string().contains(PYTHON_DIST_MISSING) {
                    return BuildError::new(at(), missing);
                }
            }
            // A factory refusing one of its keys points at that key's own line.
            let at = error
                .unknown_key()
                .map_or_else(at, |key| c.key_location(key));
            BuildError::new(
                at,
                Failure::Create {
                    library: library.path.clone(),
                    entry: entry.to_owned(),
                    error,
                },
            )
        })?;
        let instance = Arc::new(instance);
        self.made.borrow_mut().push(Made {
            key,
            section: c.section.clone(),
            instance: instance.clone(),
            kept: false,
        });
        Ok(instance)
    }
}
