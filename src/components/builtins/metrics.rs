//! `egg:plughost#metrics`: the host's metrics in the Prometheus text format.
//! Mount it anywhere, e.g. with urlmap at `/_metrics`.

use std::fmt::Write;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue};

use super::cache;
use crate::core::builtin::{Builtin, Make, SettingError};
use crate::core::config::Component;
use crate::core::metrics::METRICS;
use crate::core::{body, Handler, Request, ResponseFuture};

struct MetricsApp;

/// `egg:plughost#metrics`.
pub(crate) const BUILTIN: Builtin = Builtin {
    name: "metrics",
    aliases: &[],
    make: Make::App(app),
};

/// Create the metrics app; it takes no keys.
fn app(c: &Component) -> Result<Arc<dyn Handler>, SettingError> {
    if let Some((key, _)) = c.local_conf.first() {
        return Err(SettingError::key(key, "the metrics app takes no settings"));
    }
    Ok(Arc::new(MetricsApp))
}

impl Handler for MetricsApp {
    fn call(&self, _req: Request) -> ResponseFuture<'_> {
        Box::pin(async {
            let mut text = METRICS.render();
            cache_metrics(&mut text);
            let mut resp = http::Response::new(body::full(Bytes::from(text)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        })
    }
}

/// Cache counters: `plughost_cache_events_total{section, event}`, where events are
/// hit, miss, store, `bypass.REASON`, `no_store.REASON` and `store_error.REASON`.
fn cache_metrics(out: &mut String) {
    let all = cache::stats::all();
    if all.is_empty() {
        return;
    }
    out.push_str("# HELP plughost_cache_events_total Disk cache hits, misses, stores and bypasses by reason.\n# TYPE plughost_cache_events_total counter\n");
    for stats in &all {
        for (event, n) in stats.snapshot() {
            let _ = writeln!(
                out,
                "plughost_cache_events_total{{section=\"{}\",event=\"{event}\"}} {n}",
                stats.section.replace('\\', "\\\\").replace('"', "\\\"")
            );
        }
    }
    cache_budget_metrics(out, &all);
    cache_bus_metrics(out, &all);
}

/// The purge bus's gauges, for the cache filters that have one.
fn cache_bus_metrics(out: &mut String, all: &[std::sync::Arc<cache::stats::CacheStats>]) {
    use std::sync::atomic::Ordering::Relaxed;
    let on_bus: Vec<_> = all.iter().filter(|s| s.bus_active.load(Relaxed)).collect();
    if on_bus.is_empty() {
        return;
    }
    type Gauge = fn(&cache::stats::CacheStats) -> String;
    let gauges: [(&str, &str, Gauge); 3] = [
        (
            "plughost_cache_bus_up",
            "Whether Redis answered the purge bus's last request (1) or not (0).",
            |s| u8::from(s.bus_up.load(Relaxed)).to_string(),
        ),
        (
            "plughost_cache_bus_queue",
            "Purges applied here and not yet published (Redis unreachable).",
            |s| s.bus_queue.load(Relaxed).to_string(),
        ),
        (
            "plughost_cache_bus_lag_seconds",
            "From publication to application of the last purge applied from the bus.",
            |s| format!("{:.3}", s.bus_lag_ms.load(Relaxed) as f64 / 1000.0),
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for stats in &on_bus {
            let _ = writeln!(
                out,
                "{name}{{section=\"{}\"}} {}",
                stats.section.replace('\\', "\\\\").replace('"', "\\\""),
                value(stats)
            );
        }
    }
}

/// The disk budget's gauges, for the cache filters that have one.
fn cache_budget_metrics(out: &mut String, all: &[std::sync::Arc<cache::stats::CacheStats>]) {
    use std::sync::atomic::Ordering::Relaxed;
    let budgeted: Vec<_> = all.iter().filter(|s| s.budgeted.load(Relaxed)).collect();
    if budgeted.is_empty() {
        return;
    }
    for (name, help, value) in [
        (
            "plughost_cache_disk_bytes",
            "Bytes of pages in the cache tree (disk budget).",
            0,
        ),
        (
            "plughost_cache_disk_files",
            "Pages in the cache tree (disk budget).",
            1,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for stats in &budgeted {
            let n = if value == 0 {
                &stats.disk_bytes
            } else {
                &stats.disk_files
            };
            let _ = writeln!(
                out,
                "{name}{{section=\"{}\"}} {}",
                stats.section.replace('\\', "\\\\").replace('"', "\\\""),
                n.load(Relaxed)
            );
        }
    }
}
