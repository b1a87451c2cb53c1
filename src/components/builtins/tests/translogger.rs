//! The translogger filter (`egg:plughost#translogger`), made by its
//! `Make::Filter` constructor around a stub, with its log lines captured
//! through the `log` facade.

use std::sync::{Arc, Mutex, Once};

use super::{call, ini_in, make_filter, refused, section, Reply, Req, Stub};
use crate::core::builtin::SettingError;
use crate::core::config::Kind;
use crate::core::Handler;

/// Log records whose target starts with `inproc-translogger`, as (level, line).
static LINES: Mutex<Vec<(String, log::Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.target().starts_with("inproc-translogger")
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let line = (r.target().to_owned(), r.level(), r.args().to_string());
            LINES.lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

/// Install the capturing logger (once per process; the library's tests install no other).
fn capture() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&Capture).expect("no other logger in the library's tests");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// The lines logged under `target`.
fn lines(target: &str) -> Vec<(log::Level, String)> {
    LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _, _)| t == target)
        .map(|(_, l, s)| (*l, s.clone()))
        .collect()
}

fn translogger(conf: &[(&str, &str)], next: Arc<Stub>) -> Result<Arc<dyn Handler>, SettingError> {
    let tmp = tempfile::tempdir().unwrap();
    let c = section(
        Kind::Filter,
        "log",
        "translogger",
        &ini_in(tmp.path()),
        conf,
    );
    make_filter(&c, next)
}

#[test]
fn the_request_and_the_response_pass_through_unchanged() {
    let stub = Stub::new(
        Reply::ok("application/json", "{\"ok\":true}")
            .status(201)
            .header("x-app", "1")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2"),
    );
    let log = translogger(&[("logger_name", "inproc-translogger-pass")], stub.clone()).unwrap();
    let r = call(
        &*log,
        Req::new("PUT", "/items/7?v=2")
            .script_name("/api")
            .header("content-type", "application/json")
            .header("x-trace", "abc")
            .extra("REMOTE_USER", "alice")
            .body("{\"n\":7}")
            .build(),
    );
    assert_eq!((r.status, r.text()), (201, "{\"ok\":true}"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-app"), Some("1"));
    let cookies: Vec<_> = r.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);

    assert_eq!(stub.calls(), 1);
    let seen = stub.last();
    assert_eq!(seen.method.as_str(), "PUT");
    assert_eq!(
        (&seen.script_name[..], &seen.path_info[..]),
        (&b"/api"[..], &b"/items/7"[..])
    );
    assert_eq!(
        (seen.raw_path.as_str(), seen.query_string.as_str()),
        ("/items/7", "v=2")
    );
    assert_eq!(seen.headers["x-trace"], "abc");
    assert_eq!(seen.headers.len(), 2);
    assert_eq!(
        seen.extras,
        [("REMOTE_USER".to_owned(), "alice".to_owned())]
    );
    assert_eq!(&seen.body[..], b"{\"n\":7}");
}

#[test]
fn one_combined_log_line_per_request_after_the_body() {
    capture();
    let target = "inproc-translogger-line";
    let stub = Stub::new(Reply::html("12345"));
    let log = translogger(
        &[("logger_name", target), ("logging_level", "warning")],
        stub,
    )
    .unwrap();
    call(
        &*log,
        Req::get("/p?q=1")
            .header("referer", "http://ref.example/")
            .header("user-agent", "tester \"1\"")
            .extra("REMOTE_USER", "alice")
            .build(),
    );
    let got = lines(target);
    assert_eq!(got.len(), 1, "{got:?}");
    let (level, line) = &got[0];
    assert_eq!(*level, log::Level::Warn);
    assert!(line.starts_with("192.0.2.7 - alice ["), "{line}");
    assert!(
        line.ends_with(
            "] \"GET /p?q=1 HTTP/1.1\" 200 5 \"http://ref.example/\" \"tester \\\"1\\\"\""
        ),
        "{line}"
    );
}

#[test]
fn an_empty_body_logs_a_dash_and_missing_headers_too() {
    capture();
    let target = "inproc-translogger-empty";
    let stub = Stub::new(Reply::html("").status(204));
    let log = translogger(&[("logger_name", target)], stub).unwrap();
    call(&*log, Req::new("DELETE", "/x").build());
    let got = lines(target);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, log::Level::Info, "INFO by default");
    assert!(got[0].1.starts_with("192.0.2.7 - - ["), "{}", got[0].1);
    assert!(
        got[0]
            .1
            .ends_with("\"DELETE /x HTTP/1.1\" 204 - \"-\" \"-\""),
        "{}",
        got[0].1
    );
}

#[test]
fn python_level_names_and_numbers_are_accepted() {
    for level in [
        "DEBUG", "info", "Warning", "ERROR", "critical", "10", "50", "NOTSET",
    ] {
        let stub = Stub::new(Reply::html("x"));
        assert!(
            translogger(&[("logging_level", level)], stub).is_ok(),
            "{level}"
        );
    }
    let ok = translogger(
        &[
            ("setup_console_handler", "False"),
            ("set_logger_level", "DEBUG"),
        ],
        Stub::new(Reply::html("x")),
    );
    assert!(ok.is_ok(), "accepted for compatibility");
}

#[test]
fn a_bad_level_or_key_is_refused_naming_the_key() {
    let e = refused(translogger(
        &[("logging_level", "loud")],
        Stub::new(Reply::html("x")),
    ));
    assert_eq!(e.key.as_deref(), Some("logging_level"), "{e}");
    assert!(e.message.contains("\"loud\""), "{e}");

    let e = refused(translogger(
        &[("logger", "wsgi")],
        Stub::new(Reply::html("x")),
    ));
    assert_eq!(e.key.as_deref(), Some("logger"), "{e}");
    assert!(e.message.contains("known keys"), "{e}");
}

/// The `http` crate accepts `"` in a path and a query (for clients that send
/// JSON unescaped), so without escaping a request such as
/// `GET /x"%20200%205%20"-` would forge fields of its own log line; Apache
/// writes `\"` there, and so does the translogger.
#[test]
fn quotes_in_the_request_line_are_escaped() {
    capture();
    let target = "inproc-translogger-quote";
    let log = translogger(&[("logger_name", target)], Stub::new(Reply::html("x"))).unwrap();
    call(&*log, Req::get("/a\"b?q=\"1\"").build());
    let got = lines(target);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].1.contains("\"GET /a\\\"b?q=\\\"1\\\" HTTP/1.1\""),
        "{}",
        got[0].1
    );
}
