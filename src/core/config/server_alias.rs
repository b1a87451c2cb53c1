//! `[server:]` sections written for other servers that real deploy files name:
//! `egg:gunicorn#main` (`bind`, `workers` × `threads` → `threads`; gunicorn's
//! other settings accepted with a warning that they have no effect) and
//! `egg:pyramid#wsgiref` (`host`, `port`). Their keys are translated into the
//! built-in server's before it reads them.

use std::path::Path;

use super::ini::Section;
use super::{ConfigError, ErrorKind};
use crate::core::location::{Location, Warning};

/// `(key, value, line)`, as the server section reader takes them.
pub(crate) type Values = Vec<(String, String, usize)>;

/// The `use =` values of the aliases.
pub(crate) const USES: &[&str] = &["egg:gunicorn#main", "egg:gunicorn", "egg:pyramid#wsgiref"];

/// gunicorn's settings (its config file and paste names) that plughost has
/// no use for: accepted, with a warning.
const GUNICORN_IGNORED: &[&str] = &[
    "worker_class",
    "worker_connections",
    "max_requests",
    "max_requests_jitter",
    "timeout",
    "graceful_timeout",
    "keepalive",
    "limit_request_line",
    "limit_request_fields",
    "limit_request_field_size",
    "reload",
    "reload_engine",
    "reload_extra_files",
    "spew",
    "check_config",
    "print_config",
    "preload_app",
    "preload",
    "sendfile",
    "reuse_port",
    "chdir",
    "daemon",
    "raw_env",
    "pidfile",
    "worker_tmp_dir",
    "user",
    "group",
    "umask",
    "initgroups",
    "tmp_upload_dir",
    "secure_scheme_headers",
    "forwarded_allow_ips",
    "accesslog",
    "disable_redirect_access_to_syslog",
    "access_log_format",
    "errorlog",
    "loglevel",
    "capture_output",
    "logger_class",
    "logconfig",
    "logconfig_dict",
    "logconfig_json",
    "syslog_addr",
    "syslog",
    "syslog_prefix",
    "syslog_facility",
    "enable_stdio_inheritance",
    "statsd_host",
    "dogstatsd_tags",
    "statsd_prefix",
    "proc_name",
    "default_proc_name",
    "pythonpath",
    "paste",
    "proxy_protocol",
    "proxy_allow_ips",
    "keyfile",
    "certfile",
    "ssl_version",
    "cert_reqs",
    "ca_certs",
    "suppress_ragged_eofs",
    "do_handshake_on_connect",
    "ciphers",
    "raw_paste_global_conf",
    "strip_header_spaces",
    "backlog",
    "wsgi_app",
    "worker_int",
    "worker_abort",
    "on_starting",
    "on_reload",
    "when_ready",
    "pre_fork",
    "post_fork",
    "post_worker_init",
    "pre_exec",
    "pre_request",
    "post_request",
    "child_exit",
    "worker_exit",
    "nworkers_changed",
    "on_exit",
    "ssl_context",
    "header_map",
    "permit_obsolete_folding",
    "casefold_http_method",
    "forwarder_headers",
];

/// Translate an alias section's keys; other sections pass through unchanged.
pub(crate) fn translate(
    file: &Path,
    section: &Section,
    values: Values,
) -> Result<(Values, Vec<Warning>), ConfigError> {
    let used = values
        .iter()
        .find(|(k, _, _)| k == "use")
        .map(|(_, v, _)| v.to_ascii_lowercase());
    match used.as_deref() {
        Some("egg:gunicorn#main" | "egg:gunicorn") => gunicorn(file, section, values),
        // pyramid's wsgiref runner takes `host` and `port`, as the built-in does.
        _ => Ok((values, Vec::new())),
    }
}

fn gunicorn(
    file: &Path,
    section: &Section,
    values: Values,
) -> Result<(Values, Vec<Warning>), ConfigError> {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let mut listen: Vec<String> = Vec::new();
    let mut listen_line = section.line;
    let (mut workers, mut threads) = (1usize, 1usize);
    let mut threads_line = None;
    let mut bound = false;
    for (key, value, line) in values {
        let number = |what: &str| {
            value
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    ConfigError::new(
                        ErrorKind::BadValue,
                        file,
                        format!("expected a positive number of {what}, found {value:?}"),
                    )
                    .at(line)
                    .in_section(&section.header)
                    .for_key(&key)
                })
        };
        match key.as_str() {
            "bind" => {
                bound = true;
                for item in value.split_whitespace() {
                    match item.strip_prefix("unix:") {
                        Some(path) => out.push(("unix_socket".to_owned(), path.to_owned(), line)),
                        None => {
                            listen.push(item.to_owned());
                            listen_line = line;
                        }
                    }
                }
            }
            "workers" => {
                workers = number("workers")?;
                threads_line.get_or_insert(line);
            }
            "threads" => {
                threads = number("threads")?;
                threads_line = Some(line);
            }
            "host" | "port" => {
                bound = true;
                out.push((key, value, line));
            }
            k if GUNICORN_IGNORED.contains(&k) => warnings.push(Warning::new(
                Location::section(file, line, &section.header).for_key(k),
                "is a gunicorn setting with no effect on plughost",
            )),
            _ => out.push((key, value, line)),
        }
    }
    if !listen.is_empty() {
        out.push(("listen".to_owned(), listen.join(" "), listen_line));
    } else if !bound {
        // gunicorn's default bind.
        out.push((
            "listen".to_owned(),
            "127.0.0.1:8000".to_owned(),
            section.line,
        ));
    }
    if let Some(line) = threads_line {
        out.push(("threads".to_owned(), (workers * threads).to_string(), line));
    }
    Ok((out, warnings))
}
