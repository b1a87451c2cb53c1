//! The metrics app (`egg:plughost#metrics`), made by its `Make::App` constructor.

use std::time::Duration;

use super::{call, ini_in, make_app, make_filter, refused, section, Reply, Req, Rt, Stub};
use crate::core::config::Kind;
use crate::core::metrics::METRICS;

fn metrics_app() -> std::sync::Arc<dyn crate::core::Handler> {
    let c = section(
        Kind::App,
        "metrics",
        "metrics",
        &ini_in("/srv/site".as_ref()),
        &[],
    );
    make_app(&c).expect("the metrics app is made")
}

#[test]
fn answers_prometheus_text_with_the_host_metrics() {
    let r = call(&*metrics_app(), Req::get("/_metrics").build());
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let text = r.text();
    for line in [
        "# TYPE plughost_requests_total counter",
        "# TYPE plughost_request_duration_seconds histogram",
        "plughost_request_duration_seconds_bucket{le=\"0.0005\"} ",
        "plughost_request_duration_seconds_bucket{le=\"+Inf\"} ",
        "plughost_request_duration_seconds_sum ",
        "plughost_request_duration_seconds_count ",
        "# TYPE plughost_requests_in_flight gauge",
        "# TYPE plughost_worker_pool_size gauge",
        "# TYPE plughost_worker_pool_busy gauge",
        "# TYPE plughost_worker_pool_queue gauge",
        "plughost_reloads_total{result=\"success\"} ",
        "plughost_reloads_total{result=\"failure\"} ",
        "# TYPE plughost_sendfile_bytes_total counter",
        "# TYPE plughost_malformed_requests_total counter",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    // Every line is a comment or `name{labels} value` with a numeric value.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line:?}");
        assert!(line.starts_with("plughost_"), "{line:?}");
    }
}

#[test]
fn recorded_responses_appear_by_status() {
    // 418 is answered by nothing else in this process.
    METRICS.responded(418, Duration::from_millis(3));
    let text = call(&*metrics_app(), Req::get("/").build())
        .text()
        .to_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("plughost_requests_total{status=\"418\"} "))
        .unwrap_or_else(|| panic!("no 418 line in:\n{text}"));
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 1, "{line}");
}

#[test]
fn a_live_cache_filter_reports_its_events() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let c = section(
        Kind::Filter,
        "metrics-probe \"quoted\"",
        "cache",
        &ini_in(tmp.path()),
        &[("cache_dir", dir.to_str().unwrap())],
    );
    let cache = make_filter(&c, Stub::new(Reply::html("x"))).unwrap();
    let rt = Rt::new();
    rt.call(&*cache, Req::get("/q?x=1").build());
    let text = rt
        .call(&*metrics_app(), Req::get("/").build())
        .text()
        .to_owned();
    assert!(
        text.contains("# TYPE plughost_cache_events_total counter"),
        "{text}"
    );
    // The section's quotes are escaped in the label.
    let section = "section=\"filter:metrics-probe \\\"quoted\\\"\"";
    for (event, n) in [("bypass.query", 1), ("hit", 0), ("store", 0)] {
        let line = format!("plughost_cache_events_total{{{section},event=\"{event}\"}} {n}");
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    drop(cache);
}

#[test]
fn any_setting_is_refused_naming_the_key() {
    for key in ["path", "format"] {
        let c = section(
            Kind::App,
            "metrics",
            "metrics",
            &ini_in("/srv/site".as_ref()),
            &[(key, "x")],
        );
        let e = refused(make_app(&c));
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert!(e.message.contains("takes no settings"), "{e}");
    }
}
