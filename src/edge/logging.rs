//! Logging set up from the config file, as pserve does with Python's
//! `logging.config.fileConfig`: `[loggers]`, `[handlers]` and `[formatters]`
//! are mapped onto tracing. Each logger's `qualname` (dots become `::`) is a
//! tracing target prefix with a level; each handler (`StreamHandler` to
//! stderr/stdout, `FileHandler` to a file) is a layer that receives the
//! loggers that name it, plus the root logger's if they propagate; formatters'
//! `format` strings support `%(asctime)s`, `%(levelname)s`, `%(name)s`,
//! `%(message)s`, `%(process)d` and `%(threadName)s`, with `-5.5`-style widths.
//! `RUST_LOG`, when set, replaces every level.

use std::collections::HashMap;
use std::fmt;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::sync::Mutex;

use tracing::level_filters::LevelFilter;
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use super::log_names;
use crate::core::config::ini::Section;
use crate::core::config::level::{parse_level, LogLevel, UnknownLevel};
use crate::core::config::MainFile;
use crate::core::location::Location;
use crate::core::timefmt::Civil;

/// Logging as a config file describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggingSpec {
    root: LoggerSpec,
    loggers: Vec<LoggerSpec>,
    handlers: Vec<HandlerSpec>,
}

#[derive(Debug, Clone, PartialEq)]
struct LoggerSpec {
    /// The logger's qualname, a tracing target prefix ("" for root).
    target: String,
    level: LevelFilter,
    handlers: Vec<String>,
    propagate: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct HandlerSpec {
    name: String,
    output: Output,
    level: LevelFilter,
    format: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Output {
    Stderr,
    Stdout,
    File(PathBuf),
}

/// What went wrong in a logging section.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {message}")]
pub struct LoggingError {
    /// The file and section (with its header's line, when it exists).
    pub at: Location,
    pub message: String,
}

/// Why the log output could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("cannot open log file {}: {error}", path.display())]
    LogFile {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("a log subscriber is already installed: {0}")]
    Installed(#[from] tracing_subscriber::util::TryInitError),
}

/// A `level` key's value as a filter.
fn level(value: &str) -> Result<LevelFilter, UnknownLevel> {
    parse_level(value).map(LogLevel::filter)
}

fn names(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The logging sections of the main config file, as the config model read it
/// (so `%(here)s`, `%(__file__)s`, `[DEFAULT]` keys and command-line variables
/// interpolate as everywhere else); `None` when it has no `[loggers]`.
pub fn from_config(main: &MainFile) -> Result<Option<LoggingSpec>, LoggingError> {
    let path = main.path();
    let err = |section: &str, message: String| {
        let mut at = Location::file(path).in_section(section);
        at.line = main.section(section).map(|s| s.line);
        LoggingError { at, message }
    };
    let Some(loggers) = main.section("loggers") else {
        return Ok(None);
    };
    let dir = main.dir();
    let value = |section: &Section, key: &str| -> Result<Option<String>, LoggingError> {
        main.value(section, key)
            .map_err(|m| err(&section.header, format!("{key}: {m}")))
    };
    let get_section = |header: String| {
        main.section(&header)
            .ok_or_else(|| err(&header, "is listed but missing".into()))
    };

    let mut formats = HashMap::new();
    if let Some(formatters) = main.section("formatters") {
        for name in names(formatters.get("keys").unwrap_or("")) {
            let section = get_section(format!("formatter_{name}"))?;
            // `format` is read raw: it is a Python format string, not interpolation.
            formats.insert(name, section.get("format").map(str::to_owned));
        }
    }
    let mut handlers = Vec::new();
    if let Some(list) = main.section("handlers") {
        for name in names(list.get("keys").unwrap_or("")) {
            let section = get_section(format!("handler_{name}"))?;
            let class = value(section, "class")?.unwrap_or_default();
            let args = value(section, "args")?.unwrap_or_default();
            let output = match class.rsplit('.').next().unwrap_or("") {
                "StreamHandler" => {
                    if args.contains("stdout") {
                        Output::Stdout
                    } else {
                        Output::Stderr
                    }
                }
                "FileHandler"
                | "RotatingFileHandler"
                | "TimedRotatingFileHandler"
                | "WatchedFileHandler" => {
                    let file = first_string_arg(&args).ok_or_else(|| {
                        err(
                            &section.header,
                            format!("args: expected a file name in {args:?}"),
                        )
                    })?;
                    Output::File(dir.join(file))
                }
                other => {
                    return Err(err(
                        &section.header,
                        format!(
                        "class: unsupported handler {other:?}; use StreamHandler or FileHandler"
                    ),
                    ))
                }
            };
            let lvl = match value(section, "level")? {
                Some(v) => level(&v).map_err(|e| err(&section.header, format!("level: {e}")))?,
                None => LevelFilter::TRACE,
            };
            let format = match value(section, "formatter")? {
                Some(f) => formats.get(&f).cloned().ok_or_else(|| {
                    err(&section.header, format!("formatter: no formatter {f:?}"))
                })?,
                None => None,
            };
            handlers.push(HandlerSpec {
                name,
                output,
                level: lvl,
                format,
            });
        }
    }
    let mut root = None;
    let mut others = Vec::new();
    for name in names(loggers.get("keys").unwrap_or("")) {
        let section = get_section(format!("logger_{name}"))?;
        let lvl = match value(section, "level")? {
            Some(v) => level(&v).map_err(|e| err(&section.header, format!("level: {e}")))?,
            None => LevelFilter::TRACE,
        };
        let handler_names = names(&value(section, "handlers")?.unwrap_or_default());
        for h in &handler_names {
            if !handlers.iter().any(|x| x.name == *h) {
                return Err(err(&section.header, format!("handlers: no handler {h:?}")));
            }
        }
        let propagate = value(section, "propagate")?.is_none_or(|p| p.trim() != "0");
        let spec = LoggerSpec {
            target: value(section, "qualname")?.unwrap_or_default(),
            level: lvl,
            handlers: handler_names,
            propagate,
        };
        if name == "root" {
            root = Some(LoggerSpec {
                target: String::new(),
                ..spec
            });
        } else {
            others.push(spec);
        }
    }
    let root = root.ok_or_else(|| err("loggers", "keys: no `root` logger".into()))?;
    Ok(Some(LoggingSpec {
        root,
        loggers: others,
        handlers,
    }))
}

/// The first quoted string of a Python argument tuple: `('app.log', 'a')`.
fn first_string_arg(args: &str) -> Option<String> {
    let start = args.find(['\'', '"'])?;
    let quote = args[start..].chars().next()?;
    let rest = &args[start + 1..];
    let end = rest.find(quote)?;
    Some(rest[..end].to_owned())
}

impl LoggingSpec {
    /// Which levels of which targets handler `h` receives.
    fn targets_for(&self, h: &HandlerSpec) -> Targets {
        let root_has = self.root.handlers.contains(&h.name);
        let root_level = if root_has {
            self.root.level
        } else {
            LevelFilter::OFF
        };
        let mut t = Targets::new().with_default(root_level.min(h.level));
        for l in &self.loggers {
            let lvl = if l.handlers.contains(&h.name) || (l.propagate && root_has) {
                l.level.min(h.level)
            } else {
                LevelFilter::OFF
            };
            // Python names use dots; Rust module paths use `::` and differ
            // from the public names (see `log_names`). Match all.
            for target in log_names::targets(&l.target) {
                t = t.with_target(target, lvl);
            }
        }
        t
    }
}

/// Install the global subscriber: from the spec when given, else stderr with
/// `RUST_LOG` (default `info`). `RUST_LOG` wins over the spec's levels.
pub fn init(spec: Option<&LoggingSpec>) -> Result<(), InitError> {
    let env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let Some(spec) = spec else {
        let filter = EnvFilter::new(env.as_deref().unwrap_or("info"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .finish()
            .try_init()?;
        return Ok(());
    };
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    for h in &spec.handlers {
        let format = PyFormat::new(h.format.as_deref());
        // RUST_LOG replaces the file's levels (the handler's routing stays).
        let filter: Targets = match &env {
            Some(directives) => directives
                .parse::<Targets>()
                .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO)),
            None => spec.targets_for(h),
        };
        let base = tracing_subscriber::fmt::layer()
            .event_format(format)
            .with_ansi(false);
        let layer: Box<dyn Layer<Registry> + Send + Sync> = match &h.output {
            Output::Stderr => base
                .with_writer(std::io::stderr)
                .with_filter(filter)
                .boxed(),
            Output::Stdout => base
                .with_writer(std::io::stdout)
                .with_filter(filter)
                .boxed(),
            Output::File(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|error| InitError::LogFile {
                        path: path.clone(),
                        error,
                    })?;
                base.with_writer(Mutex::new(file))
                    .with_filter(filter)
                    .boxed()
            }
        };
        layers.push(layer);
    }
    tracing_subscriber::registry().with(layers).try_init()?;
    Ok(())
}

/// A Python `logging.Formatter` format string, parsed once.
struct PyFormat {
    parts: Vec<Part>,
}

enum Part {
    Text(String),
    Field {
        name: String,
        width: Option<(bool, usize)>,
        max: Option<usize>,
    },
}

impl PyFormat {
    fn new(format: Option<&str>) -> PyFormat {
        let format = format.unwrap_or("%(asctime)s %(levelname)-5.5s [%(name)s] %(message)s");
        let mut parts = Vec::new();
        let mut rest = format;
        while let Some(start) = rest.find("%(") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].replace("%%", "%")));
            }
            let after = &rest[start + 2..];
            let Some(close) = after.find(')') else { break };
            let name = after[..close].to_owned();
            let spec_and_rest = &after[close + 1..];
            let conv = spec_and_rest
                .find(|c: char| c.is_ascii_alphabetic())
                .unwrap_or(0);
            let spec = &spec_and_rest[..conv];
            let (width, max) = parse_width(spec);
            parts.push(Part::Field { name, width, max });
            rest = &spec_and_rest[(conv + 1).min(spec_and_rest.len())..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.replace("%%", "%")));
        }
        PyFormat { parts }
    }
}

/// `-5.5` → left-aligned width 5, at most 5 characters.
fn parse_width(spec: &str) -> (Option<(bool, usize)>, Option<usize>) {
    let (left, spec) = match spec.strip_prefix('-') {
        Some(s) => (true, s),
        None => (false, spec),
    };
    let (w, m) = spec.split_once('.').unwrap_or((spec, ""));
    (w.parse().ok().map(|w| (left, w)), m.parse().ok())
}

fn pad(out: &mut String, value: &str, width: Option<(bool, usize)>, max: Option<usize>) {
    let value: String = match max {
        Some(m) => value.chars().take(m).collect(),
        None => value.to_owned(),
    };
    match width {
        Some((true, w)) => out.push_str(&format!("{value:<w$}")),
        Some((false, w)) => out.push_str(&format!("{value:>w$}")),
        None => out.push_str(&value),
    }
}

fn python_level(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::ERROR => "ERROR",
        tracing::Level::WARN => "WARNING",
        tracing::Level::INFO => "INFO",
        tracing::Level::DEBUG => "DEBUG",
        tracing::Level::TRACE => "TRACE",
    }
}

impl<S, N> FormatEvent<S, N> for PyFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Lines from the `log` facade (the access log) carry their real target here.
        let normalized = tracing_log::NormalizeEvent::normalized_metadata(event);
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field { name, width, max } => {
                    let value = match name.as_str() {
                        "asctime" => Civil::from(std::time::SystemTime::now()).asctime(),
                        "levelname" => python_level(meta.level()).to_owned(),
                        "name" => log_names::public(meta.target()),
                        "process" => std::process::id().to_string(),
                        "threadName" => {
                            std::thread::current().name().unwrap_or("thread").to_owned()
                        }
                        "message" => {
                            let mut message = String::new();
                            ctx.format_fields(Writer::new(&mut message), event)?;
                            message
                        }
                        other => format!("%({other})"),
                    };
                    pad(&mut out, &value, *width, *max);
                }
            }
        }
        writeln!(writer, "{out}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_pserve_style_logging_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.ini");
        std::fs::write(
            &path,
            "[loggers]\nkeys = root, wsgi\n[handlers]\nkeys = console, accesslog\n[formatters]\nkeys = generic\n\
             [logger_root]\nlevel = WARN\nhandlers = console\n\
             [logger_wsgi]\nlevel = INFO\nhandlers = accesslog\nqualname = wsgi.access\npropagate = 0\n\
             [handler_console]\nclass = StreamHandler\nargs = (sys.stderr,)\nlevel = NOTSET\nformatter = generic\n\
             [handler_accesslog]\nclass = FileHandler\nargs = ('%(here)s/access.log', 'a')\nlevel = INFO\nformatter = generic\n\
             [formatter_generic]\nformat = %(levelname)-5.5s [%(name)s] %(message)s\n",
        )
        .unwrap();
        let main = crate::core::config::read_main(&path, &[]).unwrap();
        let spec = from_config(&main).unwrap().unwrap();
        assert_eq!(spec.root.level, LevelFilter::WARN);
        assert_eq!(spec.loggers[0].target, "wsgi.access");
        assert!(!spec.loggers[0].propagate);
        assert_eq!(
            spec.handlers[1].output,
            Output::File(dir.path().join(dir.path().join("access.log")))
        );
        assert_eq!(
            spec.handlers[1].format.as_deref(),
            Some("%(levelname)-5.5s [%(name)s] %(message)s")
        );
    }

    #[test]
    fn widths_and_quoted_args() {
        assert_eq!(parse_width("-5.5"), (Some((true, 5)), Some(5)));
        assert_eq!(parse_width(""), (None, None));
        let mut s = String::new();
        pad(&mut s, "WARNING", Some((true, 5)), Some(5));
        assert_eq!(s, "WARNI");
        assert_eq!(first_string_arg("('x.log', 'a')").as_deref(), Some("x.log"));
        assert_eq!(first_string_arg("(sys.stderr,)"), None);
    }
}
