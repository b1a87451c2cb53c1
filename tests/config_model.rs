//! The Paste Deploy configuration model, rule by rule: each test writes a small
//! INI file and checks the tree `plughost check --json` resolves, the config the
//! `echo` app reports over HTTP, or the exact error (with file and line).

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::*;

/// Write `files` into `dir` (first one is the main config).
fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn run_check(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_plughost"))
        .current_dir(dir)
        .arg("check")
        .args(args)
        .env("PLUGHOST_PLUGIN_PATH", plugins())
        .output()
        .unwrap()
}

/// `check --json` of `files[0]` (plus extra args), which must succeed.
fn tree(files: &[(&str, &str)], args: &[&str]) -> (Value, tempfile::TempDir) {
    let dir = tempdir();
    write(dir.path(), files);
    let mut all = vec![files[0].0, "--json"];
    all.extend_from_slice(args);
    let out = run_check(dir.path(), &all);
    assert!(
        out.status.success(),
        "check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (serde_json::from_slice(&out.stdout).unwrap(), dir)
}

/// `check` of `files[0]`, which must fail; the error line, with the temp dir replaced by `DIR`.
fn error(files: &[(&str, &str)]) -> String {
    let dir = tempdir();
    write(dir.path(), files);
    let out = run_check(dir.path(), &[files[0].0]);
    assert!(
        !out.status.success(),
        "check succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = err
        .lines()
        .find(|l| l.starts_with("plughost: error: "))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    line.trim_start_matches("plughost: error: ")
        .replace(&dir.path().display().to_string(), "DIR")
}

fn conf(v: &Value, which: &str, key: &str) -> Option<String> {
    v[which][key].as_str().map(str::to_owned)
}

// ---------------------------------------------------------------------------
// Section types and lookup.

#[test]
fn app_alias_bare_section_and_hash_name() {
    let (t, _d) = tree(&[("d.ini", "[application:main]\nuse = egg:echo\n")], &[]);
    assert_eq!(t["app"]["section"], "application:main");
    let (t, _d) = tree(&[("d.ini", "[app]\nuse = egg:echo\n")], &[]);
    assert_eq!(t["app"]["section"], "app");
    let (t, _d) = tree(
        &[(
            "d.ini",
            "[app:main]\nuse = egg:echo\n[app: other ]\nuse = egg:hello\n",
        )],
        &[],
    );
    assert_eq!(t["app"]["section"], "app:main");
    let dir = tempdir();
    write(
        dir.path(),
        &[(
            "d.ini",
            "[app:main]\nuse = egg:echo\n[app: other ]\nuse = egg:hello\n",
        )],
    );
    let out = run_check(dir.path(), &["d.ini#other", "--json"]);
    let t: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(t["app"]["section"], "app: other ");
    assert!(t["app"]["plugin"]
        .as_str()
        .unwrap()
        .ends_with("libhello.so"));
}

#[test]
fn no_section_ambiguous_and_cycles_are_errors_with_places() {
    assert_eq!(
        error(&[("d.ini", "[app:other]\nuse = egg:echo\n")]),
        "DIR/d.ini: no app named `main`: looked for [app:main], [application:main], [composite:main], [composit:main], [pipeline:main], [filter-app:main]"
    );
    assert_eq!(
        error(&[(
            "d.ini",
            "[app:main]\nuse = egg:echo\n[pipeline:main]\npipeline = echo\n"
        )]),
        "DIR/d.ini: app `main` is ambiguous: [app:main] (line 1), [pipeline:main] (line 3)"
    );
    assert_eq!(
        error(&[(
            "d.ini",
            "[app]\nuse = egg:echo\n[app:main]\nuse = egg:echo\n"
        )]),
        "DIR/d.ini: app `main` is ambiguous: [app] (line 1), [app:main] (line 3)"
    );
    assert_eq!(
        error(&[("d.ini", "[app:main]\nuse = egg:echo\nfilter-with = f\n[filter:f]\nuse = g\n[filter:g]\nuse = f\n")]),
        "DIR/d.ini:7: [filter:g] use: reference cycle: DIR/d.ini[app:main] -> DIR/d.ini[filter:f] -> DIR/d.ini[filter:g] -> DIR/d.ini[filter:f]"
    );
    assert_eq!(
        error(&[("d.ini", "[app:main]\nuse = egg:echo\nfilter-with = nope\n")]),
        "DIR/d.ini:3: [app:main] filter-with: no filter named `nope`: looked for [filter:nope]"
    );
}

#[test]
fn python_forms_load_through_the_bridge_and_unknown_schemes_are_errors() {
    // `call:` and protocol keys name Python code: the bridge imports it (here
    // a module that does not exist), and the error names the section.
    support::wsgi::bridge();
    let e = error(&[("d.ini", "[app:main]\nuse = call:myapp.wsgi:app\n")]);
    assert!(e.starts_with("DIR/d.ini:1: [app:main]"), "{e}");
    assert!(e.contains("No module named 'myapp'"), "{e}");
    let e = error(&[("d.ini", "[app:main]\npaste.app_factory = myapp:factory\n")]);
    assert!(e.starts_with("DIR/d.ini:1: [app:main]"), "{e}");
    assert!(e.contains("No module named 'myapp'"), "{e}");
    assert_eq!(
        error(&[("d.ini", "[app:main]\nuse = app:foo\n")]),
        "DIR/d.ini:2: [app:main] use: `app:foo`: unknown scheme `app`; known schemes: egg, lib, config"
    );
    assert_eq!(
        error(&[("d.ini", "[app:main]\nx = 1\n")])
            .split(": no `use =`")
            .next()
            .unwrap(),
        "DIR/d.ini:1: [app:main]"
    );
}

// ---------------------------------------------------------------------------
// global_conf and local_conf.

#[test]
fn defaults_here_file_set_get_and_merge_order() {
    let (t, d) = tree(
        &[(
            "d.ini",
            "[DEFAULT]\ncolour = red\nbase = %(here)s/data\n\n[app:main]\nuse = base\nset colour = blue\nget picked = colour\nsize = L\n\n[app:base]\nuse = egg:echo\nsize = S\nshape = round\nset extra = 1\n",
        )],
        &[],
    );
    let app = &t["app"];
    let here = d.path().display().to_string();
    assert_eq!(app["section"], "app:base");
    // S's keys win over T's; T's other keys stay.
    assert_eq!(conf(app, "local_conf", "size").as_deref(), Some("L"));
    assert_eq!(conf(app, "local_conf", "shape").as_deref(), Some("round"));
    // `get` sees the section's own `set`.
    assert_eq!(conf(app, "local_conf", "picked").as_deref(), Some("blue"));
    // S's `set` wins over DEFAULT; T's set is kept.
    assert_eq!(conf(app, "global_conf", "colour").as_deref(), Some("blue"));
    assert_eq!(conf(app, "global_conf", "extra").as_deref(), Some("1"));
    assert_eq!(
        conf(app, "global_conf", "base"),
        Some(format!("{here}/data"))
    );
    assert_eq!(conf(app, "global_conf", "here"), Some(here.clone()));
    assert_eq!(
        conf(app, "global_conf", "__file__"),
        Some(format!("{here}/d.ini"))
    );
}

#[test]
fn default_shadows_local_keys_and_check_warns() {
    let dir = tempdir();
    write(
        dir.path(),
        &[(
            "d.ini",
            "[DEFAULT]\ndebug = false\n\n[app:main]\nuse = egg:echo\ndebug = true\n",
        )],
    );
    let out = run_check(dir.path(), &["d.ini"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("d.ini:6: [app:main] key `debug` is dropped from the section's local config because [DEFAULT] defines it (line 2)"),
        "{text}"
    );
    let (t, _d) = tree(
        &[(
            "d.ini",
            "[DEFAULT]\ndebug = false\n\n[app:main]\nuse = egg:echo\ndebug = true\n",
        )],
        &[],
    );
    assert_eq!(t["app"]["local_conf"].as_object().unwrap().len(), 0);
    assert_eq!(
        conf(&t["app"], "global_conf", "debug").as_deref(),
        Some("false")
    );
    assert_eq!(t["warnings"].as_array().unwrap().len(), 1);
}

#[test]
fn command_line_variables_override_global_conf_but_not_default_interpolation() {
    let (t, _d) = tree(
        &[(
            "d.ini",
            "[DEFAULT]\nname = file\n\n[app:main]\nuse = egg:echo\nseen = %(name)s/%(who)s\n",
        )],
        &["name=cli", "who=me"],
    );
    assert_eq!(
        conf(&t["app"], "global_conf", "name").as_deref(),
        Some("cli")
    );
    assert_eq!(conf(&t["app"], "global_conf", "who").as_deref(), Some("me"));
    // DEFAULT wins in interpolation; the variable fills what DEFAULT lacks.
    assert_eq!(
        conf(&t["app"], "local_conf", "seen").as_deref(),
        Some("file/me")
    );
}

#[test]
fn interpolation_escapes_depth_and_errors_start_with_the_file() {
    let (t, _d) = tree(
        &[("d.ini", "[app:main]\nuse = egg:echo\nrate = 100%%\n")],
        &[],
    );
    assert_eq!(
        conf(&t["app"], "local_conf", "rate").as_deref(),
        Some("100%")
    );
    assert_eq!(
        error(&[("d.ini", "[app:main]\nuse = egg:echo\nrate = 50%\n")]),
        "DIR/d.ini:3: [app:main] rate: a lone `%` in \"50%\": write `%%` for a literal percent sign"
    );
    let e = error(&[(
        "d.ini",
        "[DEFAULT]\na = %(b)s\nb = %(a)s\n[app:main]\nuse = egg:echo\n",
    )]);
    assert!(
        e.starts_with("DIR/d.ini:2: [DEFAULT] a: interpolation nested deeper than 10 levels"),
        "{e}"
    );
    assert_eq!(
        error(&[("d.ini", "[app:main]\nuse = egg:echo\nget x = missing\n")]),
        "DIR/d.ini:3: [app:main] get x: global key `missing` is not defined"
    );
    // `set` does not affect interpolation in its own file.
    let e = error(&[(
        "d.ini",
        "[app:main]\nuse = egg:echo\nset g = G\nv = %(g)s\n",
    )]);
    assert_eq!(
        e,
        "DIR/d.ini:4: [app:main] v: `%(g)s` refers to a key that is not defined"
    );
}

// ---------------------------------------------------------------------------
// Includes.

#[test]
fn config_includes_nest_relative_to_each_file_and_the_includer_wins() {
    let (t, d) = tree(
        &[
            ("d.ini", "[DEFAULT]\ndef = outer\n\n[app:main]\nuse = config:sub/mid.ini#mid\nkey = from-main\n"),
            ("sub/mid.ini", "[DEFAULT]\ndef = mid\nmine = %(here)s\n\n[app:mid]\nuse = config:deeper/leaf.ini\n"),
            ("sub/deeper/leaf.ini", "[app:main]\nuse = egg:echo\nwhere = %(here)s\n"),
        ],
        &[],
    );
    let app = &t["app"];
    let root = d.path().display().to_string();
    assert!(app["file"]
        .as_str()
        .unwrap()
        .ends_with("sub/deeper/leaf.ini"));
    // %(here)s inside an included file is that file's directory...
    assert_eq!(
        conf(app, "local_conf", "where"),
        Some(format!("{root}/sub/deeper"))
    );
    assert_eq!(conf(app, "local_conf", "key").as_deref(), Some("from-main"));
    // ...but the factory sees the outermost file's here and DEFAULT.
    assert_eq!(conf(app, "global_conf", "here"), Some(root.clone()));
    assert_eq!(conf(app, "global_conf", "def").as_deref(), Some("outer"));
    assert_eq!(
        conf(app, "global_conf", "mine"),
        Some(format!("{root}/sub"))
    );
    assert_eq!(
        conf(app, "global_conf", "__file__"),
        Some(format!("{root}/d.ini"))
    );
    let files = t["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
}

#[test]
fn include_errors_name_the_including_line() {
    let e = error(&[("d.ini", "[app:main]\nuse = config:missing.ini\n")]);
    assert!(
        e.starts_with("DIR/d.ini:2: [app:main] use: cannot read: "),
        "{e}"
    );
    let e = error(&[
        ("d.ini", "[app:main]\nuse = config:o.ini#x\n"),
        ("o.ini", "[app:y]\nuse = egg:echo\n"),
    ]);
    assert!(
        e.starts_with("DIR/d.ini:2: [app:main] use: no app named `x`"),
        "{e}"
    );
    assert!(e.ends_with("(in DIR/o.ini)"), "{e}");
}

// ---------------------------------------------------------------------------
// Composition.

#[test]
fn pipeline_first_item_is_outermost_and_errors_are_clear() {
    let files = [(
        "d.ini",
        "[pipeline:main]\npipeline = a\n  # comment lines are dropped\n  b echo\nset shared = yes\n\n[filter:a]\nuse = egg:tag\ntag = a\n\n[filter:b]\nuse = egg:tag\ntag = b\n\n[app:echo]\nuse = egg:echo\n",
    )];
    let (t, _d) = tree(&files, &[]);
    assert_eq!(t["app"]["section"], "filter:a");
    assert_eq!(t["app"]["next"]["section"], "filter:b");
    assert_eq!(t["app"]["next"]["next"]["section"], "app:echo");
    assert_eq!(
        conf(&t["app"]["next"]["next"], "global_conf", "shared").as_deref(),
        Some("yes")
    );
    // A URI item is resolved with the pipeline's global config and no local config.
    let (t, _d) = tree(
        &[("d.ini", "[pipeline:main]\npipeline = egg:echo\nset s = 1\n")],
        &[],
    );
    assert_eq!(t["app"]["section"], "egg:echo");
    assert_eq!(t["app"]["line"], 2);
    assert_eq!(conf(&t["app"], "global_conf", "s").as_deref(), Some("1"));

    assert_eq!(
        error(&[("d.ini", "[pipeline:main]\nx = 1\n")]),
        "DIR/d.ini:1: [pipeline:main]: a [pipeline:] needs `pipeline =` (filters, then the app)"
    );
    assert_eq!(
        error(&[("d.ini", "[pipeline:main]\npipeline =\n")]),
        "DIR/d.ini:2: [pipeline:main] pipeline: empty pipeline: list the filters, then the app"
    );
    assert_eq!(
        error(&[("d.ini", "[pipeline:main]\npipeline = echo\nextra = 1\nget g = here\n[app:echo]\nuse = egg:echo\n")]),
        "DIR/d.ini:1: [pipeline:main]: a [pipeline:] takes only `pipeline` (and `set`); extra settings: extra, g"
    );
    assert_eq!(
        error(&[("d.ini", "[app:main]\nuse = p\nkey = v\n[pipeline:p]\npipeline = egg:echo\n")]),
        "DIR/d.ini:2: [app:main] use: `p` is a pipeline, which takes no settings, but this section sets: key"
    );
}

#[test]
fn pipeline_order_over_http() {
    let (host, _d) = Host::start(
        "[pipeline:main]\npipeline = a b echo\n[filter:a]\nuse = egg:tag\ntag = a\n[filter:b]\nuse = egg:tag\ntag = b\n[app:echo]\nuse = egg:echo\n",
    );
    let r = host.get("/");
    assert_eq!(r.json()["headers"]["x-tag-chain"], "a,b");
    assert_eq!(r.header("x-tag-chain-out"), Some("b,a"));
}

#[test]
fn filter_app_and_filter_with_on_pipelines_wrap_the_app() {
    let config = "\
[filter-app:main]
use = egg:tag
tag = fa
next = pipe
filter-with = outer

[pipeline:pipe]
pipeline = inner echo
filter-with = around

[filter:outer]
use = egg:tag
tag = outer

[filter:around]
use = egg:tag
tag = around

[filter:inner]
use = egg:tag
tag = inner

[app:echo]
use = egg:echo
";
    let (t, _d) = tree(&[("d.ini", config)], &[]);
    let order: Vec<String> = {
        let mut v = Vec::new();
        let mut n = &t["app"];
        while n["kind"] == "filter" {
            v.push(conf(n, "local_conf", "tag").unwrap());
            n = &n["next"];
        }
        v
    };
    assert_eq!(order, vec!["outer", "fa", "around", "inner"]);
    let (host, _d) = Host::start(config);
    assert_eq!(
        host.get("/").json()["headers"]["x-tag-chain"],
        "outer,fa,around,inner"
    );
    assert_eq!(
        error(&[("d.ini", "[filter-app:main]\nuse = egg:tag\ntag = x\n")]),
        "DIR/d.ini:1: [filter-app:main]: a [filter-app:] needs `next =` naming the app it wraps"
    );
}

#[test]
fn echo_reports_the_effective_configuration_over_http() {
    let (host, dir) = Host::start(
        "[DEFAULT]\nd = 1\n[app:main]\nuse = egg:echo#main\nset s = 2\nk = %(d)s%(d)s\n",
    );
    let j = host.get("/").json();
    assert_eq!(j["local_conf"], serde_json::json!({"k": "11"}));
    assert_eq!(j["global_conf"]["d"], "1");
    assert_eq!(j["global_conf"]["s"], "2");
    assert_eq!(j["global_conf"]["here"], dir.path().display().to_string());
    assert_eq!(j["entry"], "main");
}

#[test]
fn composite_urlmap_resolves_names_in_its_own_file() {
    let (t, _d) = tree(
        &[
            ("d.ini", "[app:main]\nuse = config:sites/map.ini#map\n"),
            ("sites/map.ini", "[composite:map]\nuse = egg:Paste#urlmap\n/ = home\n/blog = blog\ndomain example.com /x = home\nnot_found_app = home\n\n[app:home]\nuse = egg:hello\n\n[app:blog]\nuse = egg:echo\n"),
        ],
        &[],
    );
    let m = &t["app"];
    assert_eq!(m["kind"], "urlmap");
    let mounts = m["mounts"].as_array().unwrap();
    let order: Vec<(Value, String)> = mounts
        .iter()
        .map(|x| (x["domain"].clone(), x["path"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        order,
        vec![
            (Value::from("example.com"), "/x".to_owned()),
            (Value::Null, "/blog".to_owned()),
            (Value::Null, "".to_owned())
        ]
    );
    assert!(mounts[1]["app"]["file"]
        .as_str()
        .unwrap()
        .ends_with("sites/map.ini"));
    assert_eq!(m["not_found"]["section"], "app:home");
    assert_eq!(
        error(&[("d.ini", "[composite:main]\nuse = egg:echo\n")]),
        "DIR/d.ini:2: [composite:main] use: `egg:echo` is not a composite factory; plughost's composite is egg:plughost#urlmap (egg:Paste#urlmap)"
    );
    assert_eq!(
        error(&[(
            "d.ini",
            "[composite:main]\nuse = egg:plughost#urlmap\nport 80 /x = a\n"
        )]),
        "DIR/d.ini:3: [composite:main] port 80 /x: `port` needs `domain`"
    );
}

#[test]
fn urlmap_dispatch_over_http() {
    let (host, _d) = Host::start(
        "[composite:main]\nuse = egg:plughost#urlmap\n/ = root\n/blog = blog\n/blog/admin = admin\ndomain other.test /blog = other\n\n\
         [app:root]\nuse = egg:echo\nname = root\n[app:blog]\nuse = egg:echo\nname = blog\n[app:admin]\nuse = egg:echo\nname = admin\n[app:other]\nuse = egg:echo\nname = other\n",
    );
    let get = |path: &str, host_header: Option<&str>| {
        let headers: Vec<(&str, &str)> = host_header.map(|h| vec![("Host", h)]).unwrap_or_default();
        let mut s = connect(host.port).unwrap();
        let mut h = vec![];
        h.extend(headers);
        // write_request adds Host: localhost; send our own line instead when given.
        let req = match host_header {
            Some(hh) => format!("GET {path} HTTP/1.1\r\nHost: {hh}\r\nConnection: close\r\n\r\n"),
            None => format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        };
        use std::io::Write;
        s.write_all(req.as_bytes()).unwrap();
        read_response(&mut std::io::BufReader::new(s), false)
            .unwrap()
            .json()
    };
    let j = get("/blog/post/1", None);
    assert_eq!(
        (
            j["local_conf"]["name"].as_str(),
            j["script_name"].as_str(),
            j["path_info"].as_str()
        ),
        (Some("blog"), Some("/blog"), Some("/post/1"))
    );
    let j = get("/blogx", None);
    assert_eq!(
        (
            j["local_conf"]["name"].as_str(),
            j["script_name"].as_str(),
            j["path_info"].as_str()
        ),
        (Some("root"), Some(""), Some("/blogx"))
    );
    let j = get("/blog/admin/x", None);
    assert_eq!(j["local_conf"]["name"], "admin");
    let j = get("//blog//a", None);
    assert_eq!(
        (j["local_conf"]["name"].as_str(), j["path_info"].as_str()),
        (Some("blog"), Some("/a"))
    );
    let j = get("/blog", Some("other.test:80"));
    assert_eq!(
        (j["local_conf"]["name"].as_str(), j["path_info"].as_str()),
        (Some("other"), Some(""))
    );
}

#[test]
fn urlmap_without_match_or_not_found_app_is_404() {
    let (host, _d) =
        Host::start("[composite:main]\nuse = egg:Paste#urlmap\n/a = a\n[app:a]\nuse = egg:hello\n");
    assert_eq!(host.get("/a/x").status, 200);
    assert_eq!(host.get("/b").status, 404);
}

// ---------------------------------------------------------------------------
// Servers and the command line.

#[test]
fn server_name_and_server_keys() {
    let (t, _d) = tree(
        &[("d.ini", "[app:main]\nuse = egg:echo\n[server:main]\nuse = egg:waitress#main\nlisten = 127.0.0.1:9001 [::1]:9002\n[server:alt]\nuse = egg:Paste#http\nport = 9100\nthreads = 3\n")],
        &["--server-name", "alt"],
    );
    assert_eq!(t["server"]["listen"], serde_json::json!(["127.0.0.1:9100"]));
    assert_eq!(t["server"]["threads"], 3);
    assert_eq!(
        error(&[("d.ini", "[app:main]\nuse = egg:echo\n[server:main]\nuse = egg:uvicorn#main\n")]),
        "DIR/d.ini:4: [server:main] use: unknown server \"egg:uvicorn#main\"; plughost serves HTTP itself: use one of egg:plughost#http, egg:plughost, egg:Paste#http, egg:waitress#main, egg:waitress, egg:gunicorn#main, egg:gunicorn, egg:pyramid#wsgiref"
    );
}

#[test]
fn require_names_plugins_that_must_load() {
    assert!(error(&[(
        "d.ini",
        "[app:main]\nuse = egg:echo\nrequire = echo missing-thing\n"
    )])
    .starts_with("DIR/d.ini:3: [app:main] require: plugin `missing-thing` not found"));
}

#[test]
fn serve_picks_the_app_by_hash_name_and_takes_variables() {
    let dir = tempdir();
    write(
        dir.path(),
        &[(
            "site.ini",
            "[app:main]\nuse = egg:hello\n[app:diag]\nuse = egg:echo\ngreeting = %(who)s\n",
        )],
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_plughost"))
        .arg("serve")
        .arg(format!("{}#diag", dir.path().join("site.ini").display()))
        .arg("who=cli")
        .args(["--port", "0"])
        .env("PLUGHOST_PLUGIN_PATH", plugins())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    let j = request(port, "GET", "/", &[], b"").unwrap().json();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(j["local_conf"]["greeting"], "cli");
    assert_eq!(j["global_conf"]["who"], "cli");
}
