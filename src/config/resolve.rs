//! Section lookup, `use =`, `filter-with`, `set`/`get`, DEFAULT and interpolation:
//! the Paste Deploy rules that turn a file into a tree of [`Component`]s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::ini::{IniFile, Section};
use super::interpolate::interpolate;
use super::server::ServerConfig;
use super::{Component, ConfigError, Deployment, ErrorKind, Kind, Node, Source};
use crate::builtins::Builtin;

/// Read `path` and resolve app `app_name` (default `main`) and `[server:main]`.
/// `vars` are command-line variables: they join `global_conf` and fill in
/// `%(name)s` where `[DEFAULT]` does not define the name.
pub fn load(
    path: &Path,
    app_name: Option<&str>,
    vars: &[(String, String)],
) -> Result<Deployment, ConfigError> {
    let path = std::path::absolute(path).map_err(|e| {
        ConfigError::new(ErrorKind::Read, path, format!("cannot resolve path: {e}"))
    })?;
    let mut resolver = Resolver {
        files: HashMap::new(),
        order: Vec::new(),
        stack: Vec::new(),
        warnings: Vec::new(),
    };
    let file = resolver.file(&path, vars)?;
    let globals = file.globals(vars);
    let plugin_dirs = file.plugin_dirs();
    let app = resolver.resolve(&path, Kind::App, app_name.unwrap_or("main"), &globals)?;
    let server = resolver.server(&path, "main")?;
    Ok(Deployment {
        app,
        server,
        files: resolver.order,
        plugin_dirs,
        warnings: resolver.warnings,
    })
}

type Conf = Vec<(String, String)>;

fn set(conf: &mut Conf, key: &str, value: String) {
    match conf.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => conf.push((key.to_owned(), value)),
    }
}

fn get<'a>(conf: &'a Conf, key: &str) -> Option<&'a str> {
    conf.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A parsed file with its interpolated defaults D(F).
struct LoadedFile {
    ini: IniFile,
    dir: PathBuf,
    /// Raw default values (for interpolating other values).
    raw_defaults: Conf,
    /// Interpolated defaults.
    defaults: Conf,
    /// Where each default key came from.
    default_lines: HashMap<String, usize>,
}

impl LoadedFile {
    fn read(path: &Path, injected: &[(String, String)]) -> Result<LoadedFile, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(ErrorKind::Read, path, format!("cannot read: {e}")))?;
        let ini = IniFile::parse(path, &text)?;
        let dir = path.parent().unwrap_or(Path::new("/")).to_owned();
        let mut raw_defaults: Conf = Vec::new();
        let mut default_lines = HashMap::new();
        if let Some(section) = ini.section("DEFAULT") {
            for e in &section.entries {
                raw_defaults.push((e.key.clone(), e.value.clone()));
                default_lines.insert(e.key.clone(), e.line);
            }
        }
        // `%` in a path must not read as interpolation syntax.
        set(
            &mut raw_defaults,
            "here",
            dir.display().to_string().replace('%', "%%"),
        );
        set(
            &mut raw_defaults,
            "__file__",
            path.display().to_string().replace('%', "%%"),
        );
        for (k, v) in injected {
            if get(&raw_defaults, k).is_none() {
                raw_defaults.push((k.clone(), v.replace('%', "%%")));
            }
        }
        let mut defaults = Vec::with_capacity(raw_defaults.len());
        for (key, raw) in &raw_defaults {
            let value = interpolate(raw, &|name| get(&raw_defaults, name).map(str::to_owned))
                .map_err(|m| {
                    let mut e = ConfigError::new(ErrorKind::Interpolation, path, m)
                        .in_section("DEFAULT")
                        .for_key(key);
                    if let Some(line) = default_lines.get(key) {
                        e = e.at(*line);
                    }
                    e
                })?;
            defaults.push((key.clone(), value));
        }
        Ok(LoadedFile {
            ini,
            dir,
            raw_defaults,
            defaults,
            default_lines,
        })
    }

    /// G for a top-level load: D with the caller's variables laid over.
    fn globals(&self, vars: &[(String, String)]) -> Conf {
        let mut g = self.defaults.clone();
        for (k, v) in vars {
            set(&mut g, k, v.clone());
        }
        g
    }

    /// `plugin_path` from `[DEFAULT]`, then `target/release` and `target/debug`.
    fn plugin_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = get(&self.defaults, "plugin_path")
            .map(|p| {
                p.split(':')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| self.dir.join(s.trim()))
                    .collect()
            })
            .unwrap_or_default();
        dirs.push(self.dir.join("target/release"));
        dirs.push(self.dir.join("target/debug"));
        dirs
    }

    /// Find the section for (kind, name), Paste Deploy's lookup rules.
    fn find(&self, path: &Path, kind: Kind, name: &str) -> Result<&Section, ConfigError> {
        let groups: &[&[&str]] = match kind {
            Kind::App => &[&["app", "application"]],
            Kind::Filter => &[&["filter"]],
        };
        let mut searched = Vec::new();
        for group in groups {
            for prefix in *group {
                let matches: Vec<&Section> = self
                    .ini
                    .sections
                    .iter()
                    .filter(|s| section_matches(&s.header, prefix, name))
                    .collect();
                searched.push(format!("[{prefix}:{name}]"));
                match matches.len() {
                    0 => continue,
                    1 => return Ok(matches[0]),
                    _ => {
                        let list: Vec<String> = matches
                            .iter()
                            .map(|s| format!("[{}] (line {})", s.header, s.line))
                            .collect();
                        return Err(ConfigError::new(
                            ErrorKind::Ambiguous,
                            path,
                            format!(
                                "{} `{name}` is ambiguous: {}",
                                kind.as_str(),
                                list.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        Err(ConfigError::new(
            ErrorKind::NoSection,
            path,
            format!(
                "no section for {} `{name}`: looked for {}",
                kind.as_str(),
                searched.join(", ")
            ),
        ))
    }
}

/// `[prefix:name]` (name trimmed), or bare `[prefix]` for `main`.
fn section_matches(header: &str, prefix: &str, name: &str) -> bool {
    if header == prefix {
        return name == "main";
    }
    header
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|rest| rest.trim() == name)
}

/// A `use =` (or `filter-with =`) reference.
#[derive(Debug)]
enum Reference {
    Uri(Source),
    Section(String),
}

fn parse_reference(value: &str, base: &Path) -> Result<Reference, String> {
    let scheme_len = value
        .find(':')
        .filter(|&i| i > 0 && value[..i].chars().all(|c| c.is_ascii_alphabetic()));
    let Some(i) = scheme_len else {
        return Ok(Reference::Section(value.trim().to_owned()));
    };
    let scheme = value[..i].to_ascii_lowercase();
    let rest = &value[i + 1..];
    let (target, entry) = match rest.split_once('#') {
        Some((t, e)) => (t.trim(), e.trim()),
        None => (rest.trim(), "main"),
    };
    let entry = if entry.is_empty() { "main" } else { entry };
    match scheme.as_str() {
        "egg" => {
            let dist = target.split("==").next().unwrap_or(target).trim();
            if dist.is_empty() {
                return Err(format!("`{value}`: expected egg:NAME#ENTRY"));
            }
            if let Some(builtin) = Builtin::lookup(dist, entry) {
                return Ok(Reference::Uri(Source::Builtin(builtin)));
            }
            if Builtin::is_builtin_dist(dist) && dist.eq_ignore_ascii_case("plughost") {
                return Err(format!(
                    "`{value}`: plughost has no built-in `{entry}`; built-ins: {}",
                    Builtin::entries_of(dist).join(", ")
                ));
            }
            Ok(Reference::Uri(Source::Egg {
                dist: dist.to_owned(),
                entry: entry.to_owned(),
            }))
        }
        "lib" => {
            if target.is_empty() {
                return Err(format!("`{value}`: expected lib:PATH#ENTRY"));
            }
            Ok(Reference::Uri(Source::Lib {
                path: base.join(target),
                entry: entry.to_owned(),
            }))
        }
        "call" => Err(format!(
            "`{value}`: call: names Python code, which plughost cannot run; use egg:NAME#ENTRY or lib:PATH#ENTRY"
        )),
        _ => Err(format!("`{value}`: unknown scheme `{scheme}`; known schemes: egg, lib")),
    }
}

/// What resolving one section gives before `filter-with` wraps it.
struct Resolved {
    /// Filters from `filter-with`, innermost first.
    filters: Vec<Component>,
    core: Core,
}

enum Core {
    Component(Component),
}

struct Resolver {
    files: HashMap<PathBuf, LoadedFile>,
    order: Vec<PathBuf>,
    stack: Vec<(PathBuf, String)>,
    warnings: Vec<String>,
}

impl Resolver {
    fn file(
        &mut self,
        path: &Path,
        injected: &[(String, String)],
    ) -> Result<&LoadedFile, ConfigError> {
        if !self.files.contains_key(path) {
            let loaded = LoadedFile::read(path, injected)?;
            self.order.push(path.to_owned());
            self.files.insert(path.to_owned(), loaded);
        }
        Ok(&self.files[path])
    }

    fn resolve(
        &mut self,
        path: &Path,
        kind: Kind,
        name: &str,
        globals: &Conf,
    ) -> Result<Node, ConfigError> {
        let resolved = self.resolve_section(path, kind, name, globals)?;
        let Core::Component(core) = resolved.core;
        let mut node = match kind {
            Kind::App => Node::App(core),
            Kind::Filter => {
                return Err(ConfigError::new(
                    ErrorKind::BadValue,
                    path,
                    "a filter cannot be served on its own",
                ))
            }
        };
        for filter in resolved.filters {
            node = Node::Filter {
                filter,
                inner: Box::new(node),
            };
        }
        Ok(node)
    }

    /// Resolve a filter reference into a chain, innermost first.
    fn resolve_filter(
        &mut self,
        path: &Path,
        value: &str,
        line: usize,
        globals: &Conf,
    ) -> Result<Vec<Component>, String> {
        let dir = self.files[path].dir.clone();
        match parse_reference(value, &dir)? {
            Reference::Uri(source) => Ok(vec![uri_component(
                Kind::Filter,
                path,
                line,
                value,
                source,
                globals,
            )]),
            Reference::Section(name) => {
                let resolved = self
                    .resolve_section(path, Kind::Filter, &name, globals)
                    .map_err(|e| e.to_string())?;
                let Core::Component(core) = resolved.core;
                let mut chain = vec![core];
                chain.extend(resolved.filters);
                Ok(chain)
            }
        }
    }

    fn resolve_section(
        &mut self,
        path: &Path,
        kind: Kind,
        name: &str,
        incoming: &Conf,
    ) -> Result<Resolved, ConfigError> {
        let file = &self.files[path];
        let section = file.find(path, kind, name)?.clone();
        let frame = (path.to_owned(), section.header.clone());
        if self.stack.contains(&frame) {
            let mut chain: Vec<String> = self
                .stack
                .iter()
                .map(|(p, s)| format!("{}[{s}]", p.display()))
                .collect();
            chain.push(format!("{}[{}]", path.display(), section.header));
            return Err(ConfigError::new(
                ErrorKind::Cycle,
                path,
                format!("reference cycle: {}", chain.join(" -> ")),
            )
            .at(section.line)
            .in_section(&section.header));
        }
        self.stack.push(frame);
        let result = self.resolve_entries(path, kind, &section, incoming);
        self.stack.pop();
        result
    }

    fn resolve_entries(
        &mut self,
        path: &Path,
        kind: Kind,
        section: &Section,
        incoming: &Conf,
    ) -> Result<Resolved, ConfigError> {
        let file = &self.files[path];
        let err = |kind: ErrorKind, line: usize, key: &str, message: String| {
            ConfigError::new(kind, path, message)
                .at(line)
                .in_section(&section.header)
                .for_key(key)
        };
        let raw_lookup = |name: &str| {
            section
                .get(name)
                .map(str::to_owned)
                .or_else(|| get(&file.raw_defaults, name).map(str::to_owned))
        };
        let mut globals = incoming.clone();
        let mut sets: Conf = Vec::new();
        let mut local: Conf = Vec::new();
        let mut gets: Vec<(String, String, usize)> = Vec::new();
        let mut use_value = None;
        let mut filter_with = None;
        for entry in &section.entries {
            let value = interpolate(&entry.value, &raw_lookup)
                .map_err(|m| err(ErrorKind::Interpolation, entry.line, &entry.key, m))?;
            if let Some(name) = entry.key.strip_prefix("set ") {
                let name = name.trim();
                set(&mut globals, name, value.clone());
                set(&mut sets, name, value);
            } else if let Some(name) = entry.key.strip_prefix("get ") {
                gets.push((name.trim().to_owned(), value, entry.line));
            } else if entry.key.starts_with("paste.") && entry.key.ends_with("_factory")
                || entry.key == "paste.server_runner"
            {
                return Err(err(
                    ErrorKind::BadUri,
                    entry.line,
                    &entry.key,
                    "names a Python factory, which plughost cannot run; use `use = egg:NAME#ENTRY` or `use = lib:PATH#ENTRY`".into(),
                ));
            } else if entry.key == "use" {
                use_value = Some((value, entry.line));
            } else if entry.key == "filter-with" {
                filter_with = Some((value, entry.line));
            } else if let Some(line) = file.default_lines.get(&entry.key) {
                self.warnings.push(format!(
                    "{}:{}: [{}] key `{}` is dropped from the section's local config because [DEFAULT] defines it \
                     (line {line}); write `set {} = ...` to override the default",
                    path.display(),
                    entry.line,
                    section.header,
                    entry.key,
                    entry.key
                ));
            } else if get(&file.defaults, &entry.key).is_some() {
                // `here`, `__file__` or an injected variable: silently global, as in Paste.
            } else {
                local.push((entry.key.clone(), value));
            }
        }
        for (name, gkey, line) in gets {
            let value = get(&globals, &gkey).ok_or_else(|| {
                err(
                    ErrorKind::MissingKey,
                    line,
                    &format!("get {name}"),
                    format!("global key `{gkey}` is not defined"),
                )
            })?;
            set(&mut local, &name, value.to_owned());
        }

        let Some((use_value, use_line)) = use_value else {
            return Err(ConfigError::new(
                ErrorKind::MissingKey,
                path,
                "no `use =` key: say where the code comes from (egg:NAME#ENTRY, lib:PATH#ENTRY or another section)",
            )
            .at(section.line)
            .in_section(&section.header));
        };
        let dir = file.dir.clone();
        let reference = parse_reference(&use_value, &dir)
            .map_err(|m| err(ErrorKind::BadUri, use_line, "use", m))?;
        let mut resolved = match reference {
            Reference::Uri(source) => Resolved {
                filters: Vec::new(),
                core: Core::Component(Component {
                    kind,
                    section: section.header.clone(),
                    file: path.to_owned(),
                    line: section.line,
                    source,
                    global_conf: globals.clone(),
                    local_conf: local,
                }),
            },
            Reference::Section(target) => {
                let mut inner = self.resolve_section(path, kind, &target, &globals)?;
                let Core::Component(core) = &mut inner.core;
                for (k, v) in &sets {
                    set(&mut core.global_conf, k, v.clone());
                }
                for (k, v) in local {
                    set(&mut core.local_conf, &k, v);
                }
                set(
                    &mut core.global_conf,
                    "__file__",
                    path.display().to_string(),
                );
                inner
            }
        };
        if let Some((value, line)) = filter_with {
            let chain = self
                .resolve_filter(path, &value, line, &globals)
                .map_err(|m| err(ErrorKind::BadUri, line, "filter-with", m))?;
            resolved.filters.extend(chain);
        }
        Ok(resolved)
    }

    fn server(&mut self, path: &Path, name: &str) -> Result<ServerConfig, ConfigError> {
        let file = &self.files[path];
        let Some(section) = file
            .ini
            .sections
            .iter()
            .find(|s| section_matches(&s.header, "server", name))
        else {
            return Ok(ServerConfig::default());
        };
        let raw_lookup = |n: &str| {
            section
                .get(n)
                .map(str::to_owned)
                .or_else(|| get(&file.raw_defaults, n).map(str::to_owned))
        };
        let mut values = Vec::new();
        for e in &section.entries {
            if file.default_lines.contains_key(&e.key)
                || e.key.starts_with("set ")
                || e.key.starts_with("get ")
            {
                continue;
            }
            let v = interpolate(&e.value, &raw_lookup).map_err(|m| {
                ConfigError::new(ErrorKind::Interpolation, path, m)
                    .at(e.line)
                    .in_section(&section.header)
                    .for_key(&e.key)
            })?;
            values.push((e.key.clone(), v, e.line));
        }
        ServerConfig::from_section(path, section, &values)
    }
}

/// A component that comes straight from a URI (`filter-with = egg:...`): no
/// section of its own, so no local config.
fn uri_component(
    kind: Kind,
    path: &Path,
    line: usize,
    value: &str,
    source: Source,
    globals: &Conf,
) -> Component {
    Component {
        kind,
        section: value.to_owned(),
        file: path.to_owned(),
        line,
        source,
        global_conf: globals.clone(),
        local_conf: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_lookup_rules() {
        assert!(section_matches("app:main", "app", "main"));
        assert!(section_matches("app: main ", "app", "main"));
        assert!(section_matches("app", "app", "main"));
        assert!(!section_matches("app", "app", "other"));
        assert!(!section_matches("App:main", "app", "main"));
        assert!(!section_matches("application:main", "app", "main"));
    }

    #[test]
    fn references() {
        let base = Path::new("/etc/x");
        match parse_reference("egg:hello#greet", base).unwrap() {
            Reference::Uri(Source::Egg { dist, entry }) => {
                assert_eq!((dist.as_str(), entry.as_str()), ("hello", "greet"))
            }
            _ => panic!(),
        }
        match parse_reference("EGG:echo", base).unwrap() {
            Reference::Uri(Source::Egg { entry, .. }) => assert_eq!(entry, "main"),
            _ => panic!(),
        }
        match parse_reference("lib:plugins/libx.so#a", base).unwrap() {
            Reference::Uri(Source::Lib { path, entry }) => {
                assert_eq!(path, Path::new("/etc/x/plugins/libx.so"));
                assert_eq!(entry, "a");
            }
            _ => panic!(),
        }
        assert!(
            matches!(parse_reference("other", base).unwrap(), Reference::Section(s) if s == "other")
        );
        assert!(parse_reference("call:foo:bar", base)
            .unwrap_err()
            .contains("use egg:"));
        assert!(parse_reference("app:foo", base)
            .unwrap_err()
            .contains("unknown scheme `app`"));
    }
}
