//! Paste Deploy's resolution rules: section lookup, `use =` in all its forms,
//! `filter-with`, `[filter-app:]`, `[pipeline:]`, `[composite:]`/urlmap,
//! `set`/`get`, DEFAULT, includes and interpolation. The result is a tree of
//! [`Component`]s with the exact `global_conf`/`local_conf` each factory gets.
//! Nothing here loads a library or runs a factory.
//!
//! Where Paste Deploy crashes or silently drops a setting (the FIX items of the
//! spec), this raises a clear error instead: cycles, an empty pipeline, settings
//! on a section that `use`s a pipeline, `filter-with` on pipelines and
//! filter-apps (which wraps the app here), a `get` of an undefined key.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::conf::{get, overlay, set, Conf};
use super::defaults::Defaults;
use super::ini::{IniFile, Section};
use super::interpolate::{interpolate_within, Budget};
use super::lint;
use super::lookup::{self, SectionType, Want};
use super::reference::{self, Reference};
use super::server::ServerConfig;
use super::urlmap;
use super::{Component, ConfigError, Deployment, ErrorKind, Kind, MainFile, Mount, Node, Source};
use crate::core::builtin::{Builtin, Catalog, Role};
use crate::core::location::{Location, Warning};

/// Read `path` and resolve app `app_name` and server `server_name` (both
/// default `main`). `vars` are command-line variables: they override DEFAULT in
/// every factory's `global_conf`, and fill `%(name)s` where DEFAULT lacks the name.
pub(crate) fn load(
    path: &Path,
    app_name: Option<&str>,
    server_name: Option<&str>,
    vars: &[(String, String)],
    builtins: Catalog,
) -> Result<Deployment, ConfigError> {
    let path = std::path::absolute(path).map_err(|e| {
        ConfigError::new(ErrorKind::Read, path, format!("cannot resolve path: {e}"))
    })?;
    let mut r = Resolver {
        builtins,
        ..Resolver::default()
    };
    let vars: Conf = vars.to_vec();
    let ctx = r.open(&path, &vars)?;
    let main = ctx.main_file();
    let globals = overlay(&ctx.defaults.values, &vars);
    let app = r.app_named(&ctx, app_name.unwrap_or("main"), &globals)?;
    let server = r.server(&ctx, server_name.unwrap_or("main"))?;
    let plugin_dirs = plugin_dirs(&ctx);
    let files: Vec<&IniFile> = r
        .order
        .iter()
        .filter_map(|p| r.files.get(p))
        .map(|f| &**f)
        .collect();
    let mut warnings = lint::lint(&files, &r.used);
    warnings.append(&mut r.warnings);
    Ok(Deployment {
        app,
        server,
        files: r.order,
        plugin_dirs,
        warnings,
        requires: r.requires,
        main,
    })
}

/// Read and parse the main file `path` alone, with its defaults, as [`load`]
/// does before resolving anything (for tests of what reads the main file:
/// logging).
#[cfg(test)]
pub(crate) fn read_main(path: &Path, vars: &[(String, String)]) -> Result<MainFile, ConfigError> {
    let mut r = Resolver::default();
    Ok(r.open(path, &vars.to_vec())?.main_file())
}

/// Largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// A file's text, refusing one over [`MAX_CONFIG_BYTES`] instead of reading it
/// all (`config:/dev/zero` would otherwise read until memory runs out).
fn read_config(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("larger than {MAX_CONFIG_BYTES} bytes (not a configuration file?)"),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| Error::new(ErrorKind::InvalidData, "stream did not contain valid UTF-8"))
}

/// `plugin_path` from `[DEFAULT]`, then `target/release` and `target/debug`.
fn plugin_dirs(ctx: &Ctx) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = get(&ctx.defaults.values, "plugin_path")
        .map(|p| {
            p.split(':')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| ctx.dir.join(s))
                .collect()
        })
        .unwrap_or_default();
    dirs.push(ctx.dir.join("target/release"));
    dirs.push(ctx.dir.join("target/debug"));
    dirs
}

/// One opening of a file: its parse and its defaults D(F).
#[derive(Clone)]
struct Ctx {
    path: PathBuf,
    dir: PathBuf,
    ini: Rc<IniFile>,
    defaults: Rc<Defaults>,
}

impl Ctx {
    /// The main file as logging reads it: its sections and raw defaults.
    fn main_file(&self) -> MainFile {
        MainFile::new(
            self.path.clone(),
            (*self.ini).clone(),
            self.defaults.raw.clone(),
        )
    }
}

/// What a section resolves to before the referencing section wraps it.
struct Resolved {
    core: Core,
    /// `filter-with` filters, innermost first.
    filters: Vec<Component>,
}

enum Core {
    /// One factory: an app, or (resolving a filter) the filter.
    Component(Component),
    /// `[filter-app:]`: its filter chain (innermost first) around `next`.
    FilterApp {
        filters: Vec<Component>,
        next: Box<Node>,
    },
    /// A composition that takes no settings of its own (pipeline, urlmap).
    Tree { node: Node, what: &'static str },
}

impl Resolved {
    fn into_node(self) -> Node {
        let node = match self.core {
            Core::Component(c) => Node::App(c),
            Core::FilterApp { filters, next } => wrap(*next, filters),
            Core::Tree { node, .. } => node,
        };
        wrap(node, self.filters)
    }
}

/// Wrap `node` in `filters` (innermost first).
fn wrap(mut node: Node, filters: Vec<Component>) -> Node {
    for filter in filters {
        node = Node::Filter {
            filter,
            inner: Box::new(node),
        };
    }
    node
}

/// A section's keys after `set`, `get`, DEFAULT and the reserved keys are taken out.
struct Keys {
    /// G with this section's `set`s applied.
    globals: Conf,
    /// The `set`s alone (A), to lay over a `use` target's global config.
    sets: Conf,
    /// L: the local config.
    local: Conf,
    /// Where each key of L was written.
    local_at: Vec<(String, Location)>,
    /// Reserved keys: name → (value, line).
    reserved: HashMap<&'static str, (String, usize)>,
    /// Paste's protocol keys (`paste.app_factory = module:attr`...): (key, value, line).
    protocols: Vec<(String, String, usize)>,
}

const RESERVED: &[&str] = &["use", "filter-with", "next", "pipeline", "require"];

/// Most section resolutions one load may make. Each reference resolves its
/// section again (the tree holds one node per use), so urlmaps whose mounts all
/// name the next urlmap grow exponentially without any cycle.
const MAX_RESOLUTIONS: usize = 10_000;

#[derive(Default)]
struct Resolver {
    /// The built-ins names may refer to.
    builtins: Catalog,
    files: HashMap<PathBuf, Rc<IniFile>>,
    order: Vec<PathBuf>,
    stack: Vec<(PathBuf, String)>,
    warnings: Vec<Warning>,
    requires: Vec<(String, Location)>,
    /// Every (file, section header) resolved, for the unused-section warning.
    used: HashSet<(PathBuf, String)>,
    /// Sections resolved so far (see [`MAX_RESOLUTIONS`]).
    resolutions: usize,
    /// The interpolation work left for this load.
    budget: Budget,
}

impl Resolver {
    /// Open `path` with `injected` keys joining its defaults.
    fn open(&mut self, path: &Path, injected: &Conf) -> Result<Ctx, ConfigError> {
        let ini = match self.files.get(path) {
            Some(ini) => ini.clone(),
            None => {
                let text = read_config(path).map_err(|e| {
                    ConfigError::new(ErrorKind::Read, path, format!("cannot read: {e}"))
                })?;
                let ini = Rc::new(IniFile::parse(path, &text)?);
                self.files.insert(path.to_owned(), ini.clone());
                self.order.push(path.to_owned());
                ini
            }
        };
        let defaults = Rc::new(Defaults::new(&ini, path, injected, &mut self.budget)?);
        Ok(Ctx {
            path: path.to_owned(),
            dir: path.parent().unwrap_or(Path::new("/")).to_owned(),
            ini,
            defaults,
        })
    }

    fn app_named(&mut self, ctx: &Ctx, name: &str, globals: &Conf) -> Result<Node, ConfigError> {
        Ok(self.section(ctx, Want::App, name, globals)?.into_node())
    }

    /// Resolve an APP reference (`next`, a pipeline's last item, an urlmap value).
    fn app_ref(
        &mut self,
        ctx: &Ctx,
        value: &str,
        globals: &Conf,
        at: &At,
    ) -> Result<Node, ConfigError> {
        match reference::parse(value, &ctx.dir, self.builtins)
            .map_err(|m| at.error(ErrorKind::BadUri, m))?
        {
            Reference::Code(source) => {
                let c = code_component(Kind::App, &source, value, globals, at)?;
                if source.role() == Some(Role::Composite) {
                    return Err(at.error(
                        ErrorKind::BadUri,
                        format!("`{value}`: an urlmap needs its mounts; define it in a [composite:] section and name that"),
                    ));
                }
                Ok(Node::App(c))
            }
            Reference::Config { path, name } => {
                let (inner, g) = self.include(&path, globals, at)?;
                Ok(self
                    .section(&inner, Want::App, &name, &g)
                    .map_err(|e| at.locate(e))?
                    .into_node())
            }
            Reference::Section(name) => Ok(self
                .section(ctx, Want::App, &name, globals)
                .map_err(|e| at.locate(e))?
                .into_node()),
        }
    }

    /// Resolve a FILTER reference into a chain, innermost first.
    fn filter_ref(
        &mut self,
        ctx: &Ctx,
        value: &str,
        globals: &Conf,
        at: &At,
    ) -> Result<Vec<Component>, ConfigError> {
        let resolved = match reference::parse(value, &ctx.dir, self.builtins)
            .map_err(|m| at.error(ErrorKind::BadUri, m))?
        {
            Reference::Code(source) => {
                return Ok(vec![code_component(
                    Kind::Filter,
                    &source,
                    value,
                    globals,
                    at,
                )?])
            }
            Reference::Config { path, name } => {
                let (inner, g) = self.include(&path, globals, at)?;
                self.section(&inner, Want::Filter, &name, &g)
                    .map_err(|e| at.locate(e))?
            }
            Reference::Section(name) => self
                .section(ctx, Want::Filter, &name, globals)
                .map_err(|e| at.locate(e))?,
        };
        let Core::Component(core) = resolved.core else {
            unreachable!("filter sections resolve to one component")
        };
        let mut chain = vec![core];
        chain.extend(resolved.filters);
        Ok(chain)
    }

    /// Open an included file: its D' gets the includer's G where it lacks a key,
    /// and its G' is D' with the includer's G laid over (the includer wins).
    fn include(
        &mut self,
        path: &Path,
        globals: &Conf,
        at: &At,
    ) -> Result<(Ctx, Conf), ConfigError> {
        let inner = self.open(path, globals).map_err(|e| at.locate(e))?;
        let g = overlay(&inner.defaults.values, globals);
        Ok((inner, g))
    }

    fn section(
        &mut self,
        ctx: &Ctx,
        want: Want,
        name: &str,
        incoming: &Conf,
    ) -> Result<Resolved, ConfigError> {
        let (section, ty) = lookup::find(&ctx.ini, &ctx.path, want, name)?;
        let frame = (ctx.path.clone(), section.header.clone());
        self.used.insert(frame.clone());
        if self.stack.contains(&frame) {
            let mut chain: Vec<String> = self
                .stack
                .iter()
                .map(|(p, s)| format!("{}[{s}]", p.display()))
                .collect();
            chain.push(format!("{}[{}]", ctx.path.display(), section.header));
            // No line here: the caller's `locate` points at the reference that closed the loop.
            return Err(ConfigError::new(
                ErrorKind::Cycle,
                &ctx.path,
                format!("reference cycle: {}", chain.join(" -> ")),
            ));
        }
        self.resolutions += 1;
        if self.resolutions > MAX_RESOLUTIONS {
            // No line here either: `locate` points at the reference.
            return Err(ConfigError::new(
                ErrorKind::BadValue,
                &ctx.path,
                format!(
                    "resolving [{}] makes the tree larger than {MAX_RESOLUTIONS} sections: \
                     do sections name the next ones several times over?",
                    section.header
                ),
            ));
        }
        self.stack.push(frame);
        let section = section.clone();
        let result = self.section_body(ctx, ty, &section, incoming);
        self.stack.pop();
        result
    }

    fn keys(
        &mut self,
        ctx: &Ctx,
        section: &Section,
        incoming: &Conf,
        reserved_here: &[&'static str],
    ) -> Result<Keys, ConfigError> {
        let at = |line: usize, key: &str| At {
            file: ctx.path.clone(),
            line,
            section: section.header.clone(),
            key: key.to_owned(),
        };
        let raw_lookup = |name: &str| {
            section
                .get(name)
                .map(str::to_owned)
                .or_else(|| get(&ctx.defaults.raw, name).map(str::to_owned))
        };
        let mut keys = Keys {
            globals: incoming.clone(),
            sets: Vec::new(),
            local: Vec::new(),
            local_at: Vec::new(),
            reserved: HashMap::new(),
            protocols: Vec::new(),
        };
        let mut gets = Vec::new();
        for entry in &section.entries {
            let here = at(entry.line, &entry.key);
            let value = interpolate_within(&entry.value, &raw_lookup, &mut self.budget)
                .map_err(|m| here.error(ErrorKind::Interpolation, m.to_string()))?;
            if let Some(name) = entry.key.strip_prefix("set ") {
                let name = name.trim();
                set(&mut keys.globals, name, value.clone());
                set(&mut keys.sets, name, value);
            } else if let Some(name) = entry.key.strip_prefix("get ") {
                gets.push((name.trim().to_owned(), value, here));
            } else if entry.key.starts_with("paste.")
                && (entry.key.ends_with("_factory") || entry.key.ends_with("_runner"))
            {
                keys.protocols.push((entry.key.clone(), value, entry.line));
            } else if let Some(&key) = reserved_here.iter().find(|k| **k == entry.key) {
                keys.reserved.insert(key, (value, entry.line));
            } else if ctx.defaults.contains(&entry.key) {
                let origin = match ctx.defaults.lines.get(&entry.key) {
                    Some(line) => format!("[DEFAULT] defines it (line {line})"),
                    None => "the including file or the command line defines it".to_owned(),
                };
                self.warnings.push(Warning::new(
                    Location::section(&ctx.path, entry.line, &section.header).for_key(&entry.key),
                    format!(
                        "is dropped from the section's local config because {origin}; \
                         the factory sees that value in global_conf (the SDK's Config::setting \
                         reads it there); write `set {} = ...` to give this section its own",
                        entry.key
                    ),
                ));
            } else {
                keys.local.push((entry.key.clone(), value));
                keys.local_at
                    .push((entry.key.clone(), at(entry.line, &entry.key).location()));
            }
        }
        for (name, gkey, here) in gets {
            let value = get(&keys.globals, &gkey)
                .ok_or_else(|| {
                    here.error(
                        ErrorKind::MissingKey,
                        format!("global key `{gkey}` is not defined"),
                    )
                })?
                .to_owned();
            set(&mut keys.local, &name, value);
            set_at(&mut keys.local_at, &name, here.location());
        }
        if let Some((value, line)) = keys.reserved.get("require").cloned() {
            for dist in value.split_whitespace() {
                self.requires
                    .push((dist.to_owned(), at(line, "require").location()));
            }
        }
        Ok(keys)
    }

    fn section_body(
        &mut self,
        ctx: &Ctx,
        ty: SectionType,
        section: &Section,
        incoming: &Conf,
    ) -> Result<Resolved, ConfigError> {
        let at_section = || At {
            file: ctx.path.clone(),
            line: section.line,
            section: section.header.clone(),
            key: String::new(),
        };
        let reserved: &[&'static str] = match ty {
            SectionType::Pipeline => &["use", "filter-with", "pipeline", "require"],
            SectionType::FilterApp => &["use", "filter-with", "next", "require"],
            _ => &["use", "filter-with", "require"],
        };
        debug_assert!(reserved.iter().all(|k| RESERVED.contains(k)));
        let keys = self.keys(ctx, section, incoming, reserved)?;
        let key_at = |key: &str| -> At {
            let line = keys.reserved.get(key).map_or(section.line, |(_, l)| *l);
            At {
                file: ctx.path.clone(),
                line,
                section: section.header.clone(),
                key: key.to_owned(),
            }
        };
        let mut resolved = match ty {
            SectionType::Pipeline => self.pipeline(ctx, section, &keys, &at_section())?,
            SectionType::FilterApp => {
                let Some((next, _)) = keys.reserved.get("next").cloned() else {
                    return Err(at_section().error(
                        ErrorKind::MissingKey,
                        "a [filter-app:] needs `next =` naming the app it wraps",
                    ));
                };
                let Some((use_value, _)) = keys.reserved.get("use").cloned() else {
                    return Err(at_section()
                        .error(ErrorKind::MissingKey, "no `use =` key naming the filter"));
                };
                let next = self.app_ref(ctx, &next, &keys.globals, &key_at("next"))?;
                let mut filters =
                    self.filter_ref(ctx, &use_value, &keys.globals, &key_at("use"))?;
                if filters[0].section == use_value.trim() {
                    // `use = egg:...` names code, not a section: the filter is this section.
                    filters[0].section = section.header.clone();
                    filters[0].line = section.line;
                }
                merge_into(&mut filters[0], &keys, ctx);
                Resolved {
                    core: Core::FilterApp {
                        filters,
                        next: Box::new(next),
                    },
                    filters: Vec::new(),
                }
            }
            SectionType::App | SectionType::Composite | SectionType::Filter => {
                let kind = if ty == SectionType::Filter {
                    Kind::Filter
                } else {
                    Kind::App
                };
                if let Some((key, _, line)) = keys.protocols.first() {
                    if keys.reserved.contains_key("use") {
                        return Err(at_key(ctx, section, *line, key).error(
                            ErrorKind::BadValue,
                            "names the code a second time: the section has `use =` too; keep one",
                        ));
                    }
                    python_protocol(ctx, ty, section, &keys)?
                } else {
                    let Some((use_value, _)) = keys.reserved.get("use").cloned() else {
                        return Err(at_section().error(
                            ErrorKind::MissingKey,
                            "no `use =` key: say where the code comes from (egg:NAME#ENTRY, lib:PATH#ENTRY, config:FILE#NAME, call:MODULE:FUNCTION, a paste.app_factory key or another section)",
                        ));
                    };
                    self.use_target(ctx, ty, kind, section, &use_value, &keys, &key_at("use"))?
                }
            }
            SectionType::Server => unreachable!("servers are resolved by `server`"),
        };
        if let Some((value, _)) = keys.reserved.get("filter-with").cloned() {
            let chain = self.filter_ref(ctx, &value, &keys.globals, &key_at("filter-with"))?;
            resolved.filters.extend(chain);
        }
        Ok(resolved)
    }

    /// `use =` in an app, composite or filter section.
    #[allow(clippy::too_many_arguments)]
    fn use_target(
        &mut self,
        ctx: &Ctx,
        ty: SectionType,
        kind: Kind,
        section: &Section,
        value: &str,
        keys: &Keys,
        at: &At,
    ) -> Result<Resolved, ConfigError> {
        let want = if kind == Kind::Filter {
            Want::Filter
        } else {
            Want::App
        };
        let mut target = match reference::parse(value, &ctx.dir, self.builtins)
            .map_err(|m| at.error(ErrorKind::BadUri, m))?
        {
            Reference::Code(Source::Builtin(b))
                if b.role() == Role::Composite && kind == Kind::App =>
            {
                return Ok(Resolved {
                    core: Core::Tree {
                        node: self.urlmap(ctx, b, section, keys, at)?,
                        what: "urlmap",
                    },
                    filters: Vec::new(),
                });
            }
            Reference::Code(source) => {
                if ty == SectionType::Composite {
                    return Err(at.error(
                        ErrorKind::BadUri,
                        format!("`{value}` is not a composite factory; plughost's composite is egg:plughost#urlmap (egg:Paste#urlmap)"),
                    ));
                }
                let mut c = code_component(kind, &source, value, &keys.globals, at)?;
                c.section = section.header.clone();
                c.line = section.line;
                c.local_conf = keys.local.clone();
                c.local_at = keys.local_at.clone();
                return Ok(Resolved {
                    core: Core::Component(c),
                    filters: Vec::new(),
                });
            }
            Reference::Config { path, name } => {
                let (inner, g) = self.include(&path, &keys.globals, at)?;
                self.section(&inner, want, &name, &g)
                    .map_err(|e| at.locate(e))?
            }
            Reference::Section(name) => self
                .section(ctx, want, &name, &keys.globals)
                .map_err(|e| at.locate(e))?,
        };
        // S's keys and `set`s win over T's; T's filter-with stays inside S's.
        match &mut target.core {
            Core::Component(c) => merge_into(c, keys, ctx),
            Core::FilterApp { filters, .. } => merge_into(&mut filters[0], keys, ctx),
            Core::Tree { node, what } => {
                if !keys.local.is_empty() {
                    let names: Vec<&str> = keys.local.iter().map(|(k, _)| k.as_str()).collect();
                    return Err(at.error(
                        ErrorKind::BadValue,
                        format!("`{value}` is a {what}, which takes no settings, but this section sets: {}", names.join(", ")),
                    ));
                }
                node.for_each_mut(&mut |c| {
                    for (k, v) in &keys.sets {
                        set(&mut c.global_conf, k, v.clone());
                    }
                });
            }
        }
        Ok(target)
    }

    fn pipeline(
        &mut self,
        ctx: &Ctx,
        section: &Section,
        keys: &Keys,
        at: &At,
    ) -> Result<Resolved, ConfigError> {
        let Some((value, line)) = keys.reserved.get("pipeline").cloned() else {
            return Err(at.error(
                ErrorKind::MissingKey,
                "a [pipeline:] needs `pipeline =` (filters, then the app)",
            ));
        };
        let key_at = |key: &str, line: usize| At {
            file: ctx.path.clone(),
            line,
            section: section.header.clone(),
            key: key.to_owned(),
        };
        if let Some((_, line)) = keys.reserved.get("use") {
            return Err(key_at("use", *line).error(
                ErrorKind::UnknownKey,
                "a [pipeline:] takes no `use`; list its items in `pipeline =`",
            ));
        }
        if !keys.local.is_empty() {
            let names: Vec<&str> = keys.local.iter().map(|(k, _)| k.as_str()).collect();
            return Err(at.error(
                ErrorKind::UnknownKey,
                format!(
                    "a [pipeline:] takes only `pipeline` (and `set`); extra settings: {}",
                    names.join(", ")
                ),
            ));
        }
        let items: Vec<&str> = value.split_whitespace().collect();
        let Some((app, filters)) = items.split_last() else {
            return Err(key_at("pipeline", line).error(
                ErrorKind::BadValue,
                "empty pipeline: list the filters, then the app",
            ));
        };
        let here = key_at("pipeline", line);
        let mut node = self.app_ref(ctx, app, &keys.globals, &here)?;
        for item in filters.iter().rev() {
            let chain = self.filter_ref(ctx, item, &keys.globals, &here)?;
            node = wrap(node, chain);
        }
        Ok(Resolved {
            core: Core::Tree {
                node,
                what: "pipeline",
            },
            filters: Vec::new(),
        })
    }

    fn urlmap(
        &mut self,
        ctx: &Ctx,
        builtin: &'static Builtin,
        section: &Section,
        keys: &Keys,
        at: &At,
    ) -> Result<Node, ConfigError> {
        let mut entries: Vec<Mount> = Vec::new();
        let mut not_found_value = None;
        for (key, value) in &keys.local {
            let line = section.entry(key).map_or(section.line, |e| e.line);
            let here = At {
                file: ctx.path.clone(),
                line,
                section: section.header.clone(),
                key: key.clone(),
            };
            if key == "not_found_app" {
                not_found_value = Some((value.clone(), here));
                continue;
            }
            let mount_key =
                urlmap::parse_key(key).map_err(|m| here.error(ErrorKind::BadValue, m))?;
            let app = self.app_ref(ctx, value, &keys.globals, &here)?;
            // A later duplicate replaces an earlier one, as in Paste.
            entries.retain(|m| m.key != mount_key);
            entries.push(Mount {
                key: mount_key,
                line,
                app,
            });
        }
        if not_found_value.is_none() {
            if let Some(v) = get(&keys.globals, "not_found_app") {
                not_found_value = Some((v.to_owned(), at.clone()));
            }
        }
        let not_found = match not_found_value {
            Some((value, here)) => {
                Some(Box::new(self.app_ref(ctx, &value, &keys.globals, &here)?))
            }
            None => None,
        };
        entries.sort_by_key(|m| urlmap::sort_key(&m.key));
        let map = Component {
            kind: Kind::App,
            section: section.header.clone(),
            file: ctx.path.clone(),
            line: section.line,
            source: Source::Builtin(builtin),
            global_conf: keys.globals.clone(),
            local_conf: keys.local.clone(),
            local_at: keys.local_at.clone(),
        };
        Ok(Node::UrlMap {
            map,
            mounts: entries,
            not_found,
        })
    }

    fn server(&mut self, ctx: &Ctx, name: &str) -> Result<ServerConfig, ConfigError> {
        let (section, _) = match lookup::find(&ctx.ini, &ctx.path, Want::Server, name) {
            Ok(found) => found,
            Err(e) if e.kind == ErrorKind::NoSection && name == "main" => {
                return Ok(ServerConfig::default())
            }
            Err(e) => return Err(e),
        };
        let raw_lookup = |n: &str| {
            section
                .get(n)
                .map(str::to_owned)
                .or_else(|| get(&ctx.defaults.raw, n).map(str::to_owned))
        };
        let mut values = Vec::new();
        for e in &section.entries {
            if e.key.starts_with("set ") || e.key.starts_with("get ") {
                continue;
            }
            if ctx.defaults.contains(&e.key) {
                self.warnings.push(Warning::new(
                    Location::section(&ctx.path, e.line, &section.header).for_key(&e.key),
                    "is ignored because [DEFAULT] (or the command line) defines it",
                ));
                continue;
            }
            let v = interpolate_within(&e.value, &raw_lookup, &mut self.budget).map_err(|m| {
                ConfigError::new(ErrorKind::Interpolation, &ctx.path, m.to_string())
                    .at(e.line)
                    .in_section(&section.header)
                    .for_key(&e.key)
            })?;
            values.push((e.key.clone(), v, e.line));
        }
        let (values, mut notes) = super::server_alias::translate(&ctx.path, section, values)?;
        self.warnings.append(&mut notes);
        ServerConfig::from_section(&ctx.path, section, &values)
    }
}

/// Record where `key` was written, replacing an earlier place.
fn set_at(places: &mut Vec<(String, Location)>, key: &str, at: Location) {
    match places.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = at,
        None => places.push((key.to_owned(), at)),
    }
}

/// Apply the referencing section's `set`s and keys to a `use` target's factory.
fn merge_into(c: &mut Component, keys: &Keys, ctx: &Ctx) {
    for (k, v) in &keys.sets {
        set(&mut c.global_conf, k, v.clone());
    }
    for (k, v) in &keys.local {
        set(&mut c.local_conf, k, v.clone());
    }
    for (k, at) in &keys.local_at {
        set_at(&mut c.local_at, k, at.clone());
    }
    set(
        &mut c.global_conf,
        "__file__",
        ctx.path.display().to_string(),
    );
}

/// A component that comes straight from a URI (no section of its own, so no local config).
fn code_component(
    kind: Kind,
    source: &Source,
    value: &str,
    globals: &Conf,
    at: &At,
) -> Result<Component, ConfigError> {
    if let Source::Builtin(b) = source {
        let fits = match kind {
            Kind::App => matches!(b.role(), Role::App | Role::Composite),
            Kind::Filter => b.role() == Role::Filter,
        };
        if !fits {
            let what = match b.role() {
                Role::Filter => "a filter: use it with filter-with, in a [filter:] section or as a pipeline filter",
                Role::Server => "a server: use it in [server:main]",
                Role::App | Role::Composite => "an app",
            };
            return Err(at.error(ErrorKind::BadUri, format!("`{value}` is {what}")));
        }
    }
    Ok(Component {
        kind,
        section: value.to_owned(),
        file: at.file.clone(),
        line: at.line,
        source: source.clone(),
        global_conf: globals.clone(),
        local_conf: Vec::new(),
        local_at: Vec::new(),
    })
}

fn at_key(ctx: &Ctx, section: &Section, line: usize, key: &str) -> At {
    At {
        file: ctx.path.clone(),
        line,
        section: section.header.clone(),
        key: key.to_owned(),
    }
}

/// An app or filter section named by a protocol key (`paste.app_factory =
/// module:attr`) instead of `use`: Python code through the WSGI bridge, with
/// Paste's rules (an app with two app protocols is an error; a filter takes
/// the first of filter_factory, filter_app_factory). Python composite and
/// server factories are refused: plughost's urlmap and server are built in.
fn python_protocol(
    ctx: &Ctx,
    ty: SectionType,
    section: &Section,
    keys: &Keys,
) -> Result<Resolved, ConfigError> {
    let allowed: &[&'static str] = match ty {
        SectionType::Filter => &["paste.filter_factory", "paste.filter_app_factory"],
        _ => &["paste.app_factory"],
    };
    for (key, _, line) in &keys.protocols {
        let here = at_key(ctx, section, *line, key);
        if key == "paste.composite_factory" || key == "paste.composit_factory" {
            return Err(here.error(
                ErrorKind::BadUri,
                "Python composite factories are not supported; plughost's composite is egg:plughost#urlmap (egg:Paste#urlmap)",
            ));
        }
        if !allowed.contains(&key.as_str()) {
            return Err(here.error(
                ErrorKind::BadUri,
                format!(
                    "is not a protocol of this section's kind (expected {})",
                    allowed.join(" or ")
                ),
            ));
        }
    }
    if ty != SectionType::Filter && keys.protocols.len() > 1 {
        let (key, _, line) = &keys.protocols[1];
        return Err(at_key(ctx, section, *line, key).error(
            ErrorKind::BadValue,
            "a second app protocol in one section (Paste's MultipleProtocols); keep one",
        ));
    }
    let (key, value, line) = allowed
        .iter()
        .find_map(|p| keys.protocols.iter().find(|(k, _, _)| k == p))
        .expect("checked above");
    let here = at_key(ctx, section, *line, key);
    if !value
        .split_once(':')
        .is_some_and(|(m, a)| !m.trim().is_empty() && !a.trim().is_empty())
    {
        return Err(here.error(
            ErrorKind::BadUri,
            format!("`{value}`: expected module:function"),
        ));
    }
    let protocol = *allowed
        .iter()
        .find(|p| **p == key.as_str())
        .expect("allowed");
    let kind = if ty == SectionType::Filter {
        Kind::Filter
    } else {
        Kind::App
    };
    let source = Source::Python {
        spec: value.trim().to_owned(),
        protocol: Some(protocol),
    };
    let mut c = code_component(kind, &source, value, &keys.globals, &here)?;
    c.section = section.header.clone();
    c.line = section.line;
    c.local_conf = keys.local.clone();
    c.local_at = keys.local_at.clone();
    Ok(Resolved {
        core: Core::Component(c),
        filters: Vec::new(),
    })
}

/// Where a reference was written, for errors.
#[derive(Clone)]
struct At {
    file: PathBuf,
    line: usize,
    section: String,
    key: String,
}

impl At {
    fn error(&self, kind: ErrorKind, message: impl ToString) -> ConfigError {
        let mut e = ConfigError::new(kind, &self.file, message.to_string())
            .at(self.line)
            .in_section(&self.section);
        if !self.key.is_empty() {
            e = e.for_key(&self.key);
        }
        e
    }

    /// Give a lookup error (which knows only the file searched) the place of the reference.
    fn locate(&self, e: ConfigError) -> ConfigError {
        if e.at.line.is_some() {
            return e;
        }
        let searched = if e.at.file == self.file {
            String::new()
        } else {
            format!(" (in {})", e.at.file.display())
        };
        ConfigError {
            message: format!("{}{searched}", e.message),
            ..self.error(e.kind, String::new())
        }
    }
}

impl At {
    /// The one location format.
    fn location(&self) -> Location {
        let at = Location::section(&self.file, self.line, &self.section);
        if self.key.is_empty() {
            at
        } else {
            at.for_key(&self.key)
        }
    }
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.location().fmt(f)
    }
}
