//! `plughost check`: describe a resolved configuration as a tree, in text or JSON.

use std::path::PathBuf;

use serde_json::{json, Map, Value};

use crate::components::plugin::search;
use crate::core::config::{Component, Deployment, Node, Source};
use crate::core::location::{Location, Warning};

fn conf(pairs: &[(String, String)]) -> Value {
    let mut map = Map::new();
    for (k, v) in pairs {
        map.insert(k.clone(), Value::String(v.clone()));
    }
    Value::Object(map)
}

/// Where a component's code comes from: the library file, or "built-in".
fn code(c: &Component, plugin_dirs: &[PathBuf]) -> (String, Value) {
    match &c.source {
        Source::Egg { dist, entry } => {
            let dirs = search::search_dirs(plugin_dirs);
            let file = search::find_library(dist, &dirs)
                .map(|p| Value::String(p.display().to_string()))
                .unwrap_or(Value::Null);
            (entry.clone(), file)
        }
        Source::Lib { path, entry } => (entry.clone(), Value::String(path.display().to_string())),
        Source::Builtin(b) => (
            b.name.to_owned(),
            Value::String("built-in egg:plughost".into()),
        ),
        // Python code through the WSGI bridge: the entry is the Python object.
        Source::Python { spec, protocol } => {
            let dirs = search::search_dirs(plugin_dirs);
            let file = search::find_library("plughost-wsgi", &dirs)
                .map(|p| Value::String(p.display().to_string()))
                .unwrap_or(Value::Null);
            let how = protocol.unwrap_or("call");
            (format!("{how}:{spec}"), file)
        }
    }
}

fn component(kind: &str, c: &Component, plugin_dirs: &[PathBuf]) -> Map<String, Value> {
    let (entry, plugin) = code(c, plugin_dirs);
    let mut m = Map::new();
    m.insert("kind".into(), json!(kind));
    m.insert("section".into(), json!(c.section));
    m.insert("file".into(), json!(c.file.display().to_string()));
    m.insert("line".into(), json!(c.line));
    m.insert("entry".into(), json!(entry));
    // No native library: a Python entry point, through the WSGI bridge.
    let mut plugin = plugin;
    let mut python = None;
    if let (Value::Null, Source::Egg { dist, entry }) = (&plugin, &c.source) {
        let filter = c.kind == crate::core::config::Kind::Filter;
        if let Some(origin) = super::python_origin::origin(dist, entry, filter) {
            let dirs = search::search_dirs(plugin_dirs);
            plugin = search::find_library("plughost-wsgi", &dirs)
                .map(|p| Value::String(p.display().to_string()))
                .unwrap_or(Value::Null);
            python = Some(origin);
        }
    }
    m.insert("plugin".into(), plugin);
    if let Some(origin) = python {
        m.insert("python".into(), origin);
    }
    m.insert("global_conf".into(), conf(&c.global_conf));
    m.insert("local_conf".into(), conf(&c.local_conf));
    m
}

/// The app tree as JSON: filters outermost first, each holding `next`.
pub fn node_json(node: &Node, plugin_dirs: &[PathBuf]) -> Value {
    match node {
        Node::App(c) => Value::Object(component("app", c, plugin_dirs)),
        Node::Filter { filter, inner } => {
            let mut m = component("filter", filter, plugin_dirs);
            m.insert("next".into(), node_json(inner, plugin_dirs));
            Value::Object(m)
        }
        Node::UrlMap {
            map,
            mounts,
            not_found,
        } => {
            let mut m = component("urlmap", map, plugin_dirs);
            let mounts: Vec<Value> = mounts
                .iter()
                .map(|mount| {
                    json!({
                        "domain": mount.key.domain,
                        "port": mount.key.port,
                        "path": mount.key.path,
                        "line": mount.line,
                        "app": node_json(&mount.app, plugin_dirs),
                    })
                })
                .collect();
            m.insert("mounts".into(), Value::Array(mounts));
            m.insert(
                "not_found".into(),
                not_found
                    .as_ref()
                    .map_or(Value::Null, |n| node_json(n, plugin_dirs)),
            );
            Value::Object(m)
        }
    }
}

/// A place and a message as JSON: `{"file", "line", "section", "key", "message"}`
/// (unknown parts are null).
pub fn located_json(at: &Location, message: &str) -> Value {
    json!({
        "file": at.file.display().to_string(),
        "line": at.line,
        "section": at.section,
        "key": at.key,
        "message": message,
    })
}

fn warnings_json(warnings: &[&Warning]) -> Value {
    Value::Array(
        warnings
            .iter()
            .map(|w| located_json(&w.at, &w.message))
            .collect(),
    )
}

/// What `check --json` prints when the configuration does not load.
pub fn failure_json(errors: &[(Location, String)], warnings: &[&Warning]) -> Value {
    json!({
        "ok": false,
        "errors": errors.iter().map(|(at, m)| located_json(at, m)).collect::<Vec<_>>(),
        "warnings": warnings_json(warnings),
    })
}

/// The whole deployment as JSON, with every warning: the configuration's and
/// `more` (those found while loading its code).
pub fn deployment_json(d: &Deployment, more: &[Warning]) -> Value {
    let warnings: Vec<&Warning> = d.warnings.iter().chain(more).collect();
    let mut listen: Vec<String> = d
        .server
        .listen
        .iter()
        .map(|(h, p)| format!("{h}:{p}"))
        .collect();
    listen.extend(
        d.server
            .unix_socket
            .iter()
            .map(|p| format!("unix:{}", p.display())),
    );
    json!({
        "ok": true,
        "files": d.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "app": node_json(&d.app, &d.plugin_dirs),
        "server": {
            "listen": listen,
            "threads": d.server.threads,
            "url_scheme": d.server.url_scheme,
            "url_prefix": d.server.url_prefix,
        },
        "warnings": warnings_json(&warnings),
    })
}

/// The tree as indented text.
pub fn deployment_text(d: &Deployment) -> String {
    let mut out = String::new();
    text(&node_json(&d.app, &d.plugin_dirs), 0, &mut out);
    let mut listen: Vec<String> = d
        .server
        .listen
        .iter()
        .map(|(h, p)| format!("{h}:{p}"))
        .collect();
    listen.extend(
        d.server
            .unix_socket
            .iter()
            .map(|p| format!("unix:{}", p.display())),
    );
    out.push_str(&format!(
        "server: listen {} threads {}\n",
        listen.join(" "),
        d.server.threads
    ));
    out
}

fn text(v: &Value, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    out.push_str(&format!(
        "{pad}{} [{}] {}:{} -> {}#{}\n",
        s("kind"),
        s("section"),
        s("file"),
        v["line"],
        v["plugin"].as_str().unwrap_or("(not found)"),
        s("entry")
    ));
    if let Some(py) = v.get("python") {
        let p = |k: &str| py[k].as_str().unwrap_or("?").to_owned();
        out.push_str(&format!(
            "{pad}  python: {} {} {} {} from {}\n",
            p("distribution"),
            p("version"),
            p("group"),
            p("object"),
            p("file")
        ));
    }
    for (label, key) in [("local_conf", "local_conf"), ("global_conf", "global_conf")] {
        if let Some(map) = v[key].as_object() {
            let items: Vec<String> = map
                .iter()
                .map(|(k, val)| format!("{k}={}", val.as_str().unwrap_or("")))
                .collect();
            out.push_str(&format!("{pad}  {label}: {}\n", items.join(", ")));
        }
    }
    if let Some(next) = v.get("next") {
        text(next, depth + 1, out);
    }
    if let Some(mounts) = v.get("mounts").and_then(Value::as_array) {
        for m in mounts {
            let domain = m["domain"]
                .as_str()
                .map(|d| format!("domain {d} "))
                .unwrap_or_default();
            let path = m["path"].as_str().unwrap_or("");
            out.push_str(&format!(
                "{pad}  mount {domain}{}:\n",
                if path.is_empty() { "/" } else { path }
            ));
            text(&m["app"], depth + 2, out);
        }
        if !v["not_found"].is_null() {
            out.push_str(&format!("{pad}  not found:\n"));
            text(&v["not_found"], depth + 2, out);
        }
    }
}
