//! Process-wide request metrics, and their Prometheus text rendering (served
//! by the built-in `egg:plughost#metrics` app). Recording is a few relaxed
//! atomic operations per request.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Every counter and gauge the host keeps.
pub(crate) struct Metrics {
    /// Responses by status code (index = code - 100).
    status: [AtomicU64; 500],
    /// Latency to the response head, per bucket (cumulative when rendered), plus +Inf.
    latency: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    in_flight: AtomicI64,
    /// Plugin calls waiting for a worker, and running on one.
    pool_waiting: AtomicI64,
    pool_busy: AtomicI64,
    pool_size: AtomicI64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    sendfile_bytes: AtomicU64,
    /// Requests refused as malformed (parse errors, bad Host, over-long heads).
    malformed: AtomicU64,
}

/// The one instance.
pub(crate) static METRICS: Metrics = Metrics {
    status: [const { AtomicU64::new(0) }; 500],
    latency: [const { AtomicU64::new(0) }; BUCKETS.len() + 1],
    latency_sum_us: AtomicU64::new(0),
    in_flight: AtomicI64::new(0),
    pool_waiting: AtomicI64::new(0),
    pool_busy: AtomicI64::new(0),
    pool_size: AtomicI64::new(0),
    reloads_ok: AtomicU64::new(0),
    reloads_failed: AtomicU64::new(0),
    sendfile_bytes: AtomicU64::new(0),
    malformed: AtomicU64::new(0),
};

/// Decrements a gauge when dropped.
pub(crate) struct GaugeGuard(&'static AtomicI64);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Metrics {
    /// A request started; the guard ends it.
    pub(crate) fn request_started(&'static self) -> GaugeGuard {
        self.in_flight.fetch_add(1, Relaxed);
        GaugeGuard(&self.in_flight)
    }

    /// A response answered at once from the request's head (a cache hit
    /// from memory): it counts in the lowest latency bucket, as taking no
    /// time, since reading the clock twice would cost more than the answer.
    pub(crate) fn answered_at_once(&self, status: u16) {
        if let Some(slot) = self.status.get(usize::from(status).wrapping_sub(100)) {
            slot.fetch_add(1, Relaxed);
        }
        self.latency[0].fetch_add(1, Relaxed);
    }

    /// A response head was produced after `elapsed`.
    pub(crate) fn responded(&self, status: u16, elapsed: Duration) {
        if let Some(slot) = self.status.get(usize::from(status).wrapping_sub(100)) {
            slot.fetch_add(1, Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.latency[bucket].fetch_add(1, Relaxed);
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    /// A plugin call is waiting for a worker.
    pub(crate) fn pool_wait(&'static self) -> GaugeGuard {
        self.pool_waiting.fetch_add(1, Relaxed);
        GaugeGuard(&self.pool_waiting)
    }

    /// A plugin call is running on a worker.
    pub(crate) fn pool_run(&'static self) -> GaugeGuard {
        self.pool_busy.fetch_add(1, Relaxed);
        GaugeGuard(&self.pool_busy)
    }

    /// The worker pool's configured size.
    pub(crate) fn set_pool_size(&self, size: usize) {
        self.pool_size.store(size as i64, Relaxed);
    }

    pub(crate) fn reloaded(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Relaxed);
        }
    }

    /// Body bytes the kernel sent straight from a file (see `server::sendfile`).
    pub(crate) fn sent_from_file(&self, bytes: usize) {
        self.sendfile_bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// A request was refused as malformed (see `server::head`).
    pub(crate) fn malformed_request(&self) {
        self.malformed.fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP plughost_requests_total Responses sent, by status code.\n# TYPE plughost_requests_total counter\n");
        for (i, n) in self.status.iter().enumerate() {
            let n = n.load(Relaxed);
            if n > 0 {
                let _ = writeln!(out, "plughost_requests_total{{status=\"{}\"}} {n}", i + 100);
            }
        }
        out.push_str("# HELP plughost_request_duration_seconds Time to the response head.\n# TYPE plughost_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.latency[i].load(Relaxed);
            let _ = writeln!(
                out,
                "plughost_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.latency[BUCKETS.len()].load(Relaxed);
        let _ = writeln!(
            out,
            "plughost_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "plughost_request_duration_seconds_sum {}",
            self.latency_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "plughost_request_duration_seconds_count {cumulative}");
        gauge(
            &mut out,
            "plughost_requests_in_flight",
            "Requests being handled.",
            self.in_flight.load(Relaxed),
        );
        gauge(
            &mut out,
            "plughost_worker_pool_size",
            "Plugin worker threads (`threads`).",
            self.pool_size.load(Relaxed),
        );
        gauge(
            &mut out,
            "plughost_worker_pool_busy",
            "Plugin calls running.",
            self.pool_busy.load(Relaxed),
        );
        gauge(
            &mut out,
            "plughost_worker_pool_queue",
            "Plugin calls waiting for a worker.",
            self.pool_waiting.load(Relaxed),
        );
        out.push_str("# HELP plughost_reloads_total Configuration reloads, by result.\n# TYPE plughost_reloads_total counter\n");
        let _ = writeln!(
            out,
            "plughost_reloads_total{{result=\"success\"}} {}",
            self.reloads_ok.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "plughost_reloads_total{{result=\"failure\"}} {}",
            self.reloads_failed.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP plughost_sendfile_bytes_total Response body bytes sent with sendfile from cached files.\n\
             # TYPE plughost_sendfile_bytes_total counter\nplughost_sendfile_bytes_total {}",
            self.sendfile_bytes.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP plughost_malformed_requests_total Requests refused as malformed (unparseable, bad Host, head over max_header_bytes).\n\
             # TYPE plughost_malformed_requests_total counter\nplughost_malformed_requests_total {}",
            self.malformed.load(Relaxed)
        );
        out
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: i64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}
