//! Logger names are a public contract (`qualname = plughost.server` in a
//! deploy.ini, `%(name)s` in a format), so they must not follow the source
//! tree: moving a module between floors would rename its logger. This table
//! maps each public name to the module paths whose log lines it covers.

/// (public logger name, module path prefix), most specific first.
const NAMES: &[(&str, &str)] = &[
    ("plughost.reload", "plughost::assembly::reload"),
    ("plughost.pipeline", "plughost::assembly"),
    ("plughost.pipeline", "plughost::core::body"),
    ("plughost.pipeline", "plughost::core::blocking"),
    ("plughost.pipeline", "plughost::core::request"),
    ("plughost.config", "plughost::core::config"),
    ("plughost.metrics", "plughost::core::metrics"),
    ("plughost.builtins", "plughost::components::builtins"),
    ("plughost.plugin", "plughost::components::plugin"),
    ("plughost.server", "plughost::edge::server"),
    ("plughost.logging", "plughost::edge::logging"),
    ("plughost.check", "plughost::edge::check"),
];

/// The public, dotted name of a log line's target (a module path or an
/// explicit target such as `plughost::cache` or a plugin's name).
pub(crate) fn public(target: &str) -> String {
    for (name, module) in NAMES {
        if let Some(rest) = strip_module(target, module) {
            return format!("{name}{}", rest.replace("::", "."));
        }
    }
    target.replace("::", ".")
}

/// The targets a configured logger name covers: the name itself, its `::`
/// form (which covers every module when the name is `plughost`), and the
/// module paths that the name or a name below it is public for.
pub(crate) fn targets(name: &str) -> Vec<String> {
    let mut out = vec![name.to_owned(), name.replace('.', "::")];
    for (public, module) in NAMES {
        if let Some(rest) = strip_module(name, public) {
            out.push(format!("{module}{}", rest.replace('.', "::")));
        }
    }
    out.dedup();
    out
}

/// `rest` if `path` is `prefix` or `prefix` followed by a separator and `rest`
/// (the separator kept, so `a::b` under `a` gives `::b`).
fn strip_module<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with("::") || rest.starts_with('.')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths_get_their_public_names() {
        assert_eq!(
            public("plughost::edge::server::head"),
            "plughost.server.head"
        );
        assert_eq!(public("plughost::assembly::reload"), "plughost.reload");
        assert_eq!(
            public("plughost::assembly::plugin_node"),
            "plughost.pipeline.plugin_node"
        );
        assert_eq!(
            public("plughost::components::builtins::cache"),
            "plughost.builtins.cache"
        );
        assert_eq!(public("plughost::cache"), "plughost.cache");
        assert_eq!(public("plugin"), "plugin");
        assert_eq!(public("plughost"), "plughost");
    }

    #[test]
    fn a_logger_name_covers_its_modules() {
        let t = targets("plughost.server");
        assert!(t.contains(&"plughost::edge::server".to_owned()), "{t:?}");
        let t = targets("plughost.reload");
        assert!(
            t.contains(&"plughost::assembly::reload".to_owned()),
            "{t:?}"
        );
        let t = targets("plughost.builtins.cache");
        assert!(
            t.contains(&"plughost::components::builtins::cache".to_owned()),
            "{t:?}"
        );
        let t = targets("plughost");
        assert_eq!(t, vec!["plughost".to_owned()]);
        let t = targets("wsgi");
        assert_eq!(t, vec!["wsgi".to_owned()]);
    }
}
