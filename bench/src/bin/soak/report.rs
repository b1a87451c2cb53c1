//! The soak's report: requests by outcome, failures, RSS and descriptors over
//! time, and the verdict.
//!
//! The rule. The first quarter of the run is warm-up (allocator arenas, thread
//! pools, page copies in memory) and is not judged. Resident memory is flat when
//! the mean of the samples in the last quarter is at most 10 % + 2 MiB above the
//! mean of the second quarter: a leak of ~70 bytes per request at 400 req/s
//! over a 5-minute run exceeds that. Descriptors are flat when the last
//! quarter's mean is at most 8 above the second quarter's (the count includes
//! the connections in flight, up to about two per client), and when, with no
//! load, plughost holds at most 2 more descriptors after the run than before
//! it (a descriptor lost per reload or per thousand requests fails this).
//! The run passes when both are flat, no request failed unexpectedly, every
//! reload took effect, every page in the cache tree is whole, no temporary file
//! is left, plughost logged nothing unexpected at WARN/ERROR (nor a panic other
//! than the echo plugin's deliberate ones), and it exited 0 on SIGTERM.

use std::collections::BTreeMap;
use std::fmt;
use std::process::ExitStatus;
use std::time::Duration;

use crate::load::{Errors, Pages, Tally};

const RSS_FACTOR: f64 = 1.10;
const RSS_SLACK_KIB: f64 = 2048.0;
const FD_SLACK: f64 = 8.0;
const FD_REST_SLACK: u64 = 2;

pub struct Sample {
    pub t: Duration,
    pub requests: u64,
    pub reloads: u64,
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
}

fn clock(t: Duration) -> String {
    let s = t.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

impl Sample {
    pub fn line(&self) -> String {
        format!(
            "{:>6}  {:>9} requests  {:>3} reloads  RSS {:>9}  fds {:>4}  threads {:>4}",
            clock(self.t),
            self.requests,
            self.reloads,
            mib(self.rss_kib as f64),
            self.fds,
            self.threads
        )
    }
}

/// WARN and ERROR lines of plughost's log, grouped (timestamps dropped, numbers
/// as `#`), split into the ones the soak provokes and the rest.
#[derive(Default)]
pub struct LogSummary {
    pub expected: BTreeMap<String, u64>,
    pub unexpected: BTreeMap<String, u64>,
}

/// What the soak provokes on purpose.
const EXPECTED: &[&str] = &[
    "X-Echo-Panic requested a panic",
    "plugin response body failed midway",
    "response body failed: X-Echo-Fail-After reached",
];

/// From the level on (lines written at the same moment by several threads may
/// arrive joined), numbers as `#`.
fn normalize(line: &str) -> String {
    let at = [" ERROR ", " WARN "]
        .iter()
        .filter_map(|l| line.find(l))
        .min()
        .map_or(0, |i| i + 1);
    let rest = &line[at..];
    let mut out = String::new();
    let mut digits = false;
    for c in rest.chars().take(140) {
        if c.is_ascii_digit() {
            if !digits {
                out.push('#');
            }
            digits = true;
        } else {
            digits = false;
            out.push(c);
        }
    }
    out
}

impl LogSummary {
    pub fn of(log: &str) -> LogSummary {
        let mut s = LogSummary::default();
        for line in log.lines() {
            let leveled = line.contains(" WARN ") || line.contains(" ERROR ");
            // A panic anywhere but in the echo plugin's deliberate ones.
            let foreign_panic =
                line.contains("panicked at") && !line.contains("plugins/echo/src/lib.rs");
            if !leveled && !foreign_panic {
                continue;
            }
            let key = normalize(line);
            let bucket = if !foreign_panic && EXPECTED.iter().any(|e| line.contains(e)) {
                &mut s.expected
            } else {
                &mut s.unexpected
            };
            *bucket.entry(key).or_default() += 1;
        }
        s
    }
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// The samples taken in quarter `q` (0-based) of `total`.
fn quarter(samples: &[Sample], total: Duration, q: u32, f: impl Fn(&Sample) -> f64) -> Option<f64> {
    let (from, to) = (total * q / 4, total * (q + 1) / 4);
    let xs: Vec<f64> = samples
        .iter()
        .filter(|s| s.t >= from && (s.t < to || (q == 3 && s.t <= total + Duration::from_secs(5))))
        .map(f)
        .collect();
    mean(&xs)
}

pub struct Verdict {
    pub rss: Option<(f64, f64)>,
    /// Informational: glibc gives each busy thread its own malloc arena, so RSS
    /// rises with the thread count (e.g. cache writes waiting on a slow disk).
    pub threads: Option<(f64, f64)>,
    pub fds: Option<(f64, f64)>,
    pub rss_flat: bool,
    pub fds_flat: bool,
    pub rest_flat: bool,
}

pub fn verdict(
    samples: &[Sample],
    total: Duration,
    quiet_before: u64,
    quiet_after: u64,
) -> Verdict {
    let rss =
        quarter(samples, total, 1, |s| s.rss_kib as f64)
            .zip(quarter(samples, total, 3, |s| s.rss_kib as f64));
    let fds = quarter(samples, total, 1, |s| s.fds as f64)
        .zip(quarter(samples, total, 3, |s| s.fds as f64));
    let threads =
        quarter(samples, total, 1, |s| s.threads as f64)
            .zip(quarter(samples, total, 3, |s| s.threads as f64));
    Verdict {
        threads,
        rss_flat: rss.is_some_and(|(q2, q4)| q4 <= q2 * RSS_FACTOR + RSS_SLACK_KIB),
        fds_flat: fds.is_some_and(|(q2, q4)| q4 <= q2 + FD_SLACK),
        rest_flat: quiet_after <= quiet_before + FD_REST_SLACK,
        rss,
        fds,
    }
}

pub struct Report {
    pub minutes: f64,
    pub clients: usize,
    pub rate: u32,
    pub elapsed: Duration,
    pub tally: Tally,
    pub errors: Errors,
    pub samples: Vec<Sample>,
    pub quiet_before: u64,
    pub quiet_after: u64,
    pub metrics: String,
    pub pages: Pages,
    pub temps_left: u64,
    /// plughost's exit on SIGTERM, and whether it came within the grace period.
    pub exit: Option<(ExitStatus, bool)>,
    pub log: LogSummary,
    pub reload_failures: u64,
}

impl Report {
    fn verdict(&self) -> Verdict {
        let total = self.samples.last().map_or(self.elapsed, |s| s.t);
        verdict(&self.samples, total, self.quiet_before, self.quiet_after)
    }

    fn reloads(&self) -> u64 {
        self.samples.last().map_or(0, |s| s.reloads)
    }

    fn exited_cleanly(&self) -> bool {
        self.exit
            .is_some_and(|(status, in_time)| status.success() && in_time)
    }

    pub fn pass(&self) -> bool {
        let v = self.verdict();
        v.rss_flat
            && v.fds_flat
            && v.rest_flat
            && self.errors.total == 0
            && self.reload_failures == 0
            && self.reloads() > 0
            && self.pages.bad_total == 0
            && self.temps_left == 0
            && self.log.unexpected.is_empty()
            && self.exited_cleanly()
    }

    /// `name{labels} value` lines of the scraped metrics whose name starts with `prefix`.
    fn metric_lines(&self, prefix: &str) -> Vec<(String, String)> {
        self.metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                (v != "0").then(|| (k[prefix.len()..].to_owned(), v.to_owned()))
            })
            .collect()
    }
}

fn ok(b: bool) -> &'static str {
    if b {
        "ok"
    } else {
        "FAIL"
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.verdict();
        writeln!(
            f,
            "\n== plughost soak: {:.1} min of load ({} client threads, {} req/s target), {} reloads",
            self.minutes,
            self.clients,
            self.rate,
            self.reloads()
        )?;
        writeln!(
            f,
            "\nrequests by outcome (client side, each checked in full):"
        )?;
        for (outcome, n) in &self.tally.0 {
            writeln!(f, "  {outcome:<40} {n:>9}")?;
        }
        let total = self.tally.total() + self.errors.total;
        writeln!(
            f,
            "  {:<40} {:>9}",
            "unexpected failures", self.errors.total
        )?;
        writeln!(
            f,
            "  {:<40} {:>9}  ({:.0} req/s)",
            "total",
            total,
            total as f64 / self.elapsed.as_secs_f64().max(1.0)
        )?;
        for (kind, (n, example)) in &self.errors.by_kind {
            writeln!(f, "    {n} x {kind}: first: {example}")?;
        }

        writeln!(f, "\nplughost's own counters (/_metrics):")?;
        let join = |lines: Vec<(String, String)>| {
            lines
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        writeln!(
            f,
            "  requests_total {}",
            join(self.metric_lines("plughost_requests_total"))
        )?;
        writeln!(
            f,
            "  reloads_total  {}",
            join(self.metric_lines("plughost_reloads_total"))
        )?;
        let cache: Vec<(String, String)> = self
            .metric_lines("plughost_cache_events_total")
            .into_iter()
            .map(|(k, v)| {
                let event = k
                    .split("event=\"")
                    .nth(1)
                    .unwrap_or(&k)
                    .trim_end_matches("\"}");
                (event.to_owned(), v)
            })
            .collect();
        writeln!(f, "  cache events   {}", join(cache))?;

        writeln!(f, "\nplughost's log (WARN/ERROR lines, grouped):")?;
        for (line, n) in &self.log.expected {
            writeln!(f, "  expected   {n:>6} x {line}")?;
        }
        for (line, n) in &self.log.unexpected {
            writeln!(f, "  UNEXPECTED {n:>6} x {line}")?;
        }
        if self.log.expected.is_empty() && self.log.unexpected.is_empty() {
            writeln!(f, "  (none)")?;
        }

        writeln!(f, "\nRSS and open file descriptors of plughost over time:")?;
        writeln!(
            f,
            "  {:>6} {:>10} {:>8} {:>10} {:>5} {:>8}",
            "time", "requests", "reloads", "RSS MiB", "fds", "threads"
        )?;
        for s in &self.samples {
            writeln!(
                f,
                "  {:>6} {:>10} {:>8} {:>10.1} {:>5} {:>8}",
                clock(s.t),
                s.requests,
                s.reloads,
                s.rss_kib as f64 / 1024.0,
                s.fds,
                s.threads
            )?;
        }

        writeln!(f, "\nchecks:")?;
        match v.rss {
            Some((q2, q4)) => writeln!(
                f,
                "  RSS: second-quarter mean {}, last-quarter mean {} ({:+.1} %); limit {} (x{RSS_FACTOR:.2} + 2 MiB): {}",
                mib(q2),
                mib(q4),
                (q4 / q2 - 1.0) * 100.0,
                mib(q2 * RSS_FACTOR + RSS_SLACK_KIB),
                ok(v.rss_flat)
            )?,
            None => writeln!(f, "  RSS: too few samples to judge: FAIL")?,
        }
        if let Some((q2, q4)) = v.threads {
            writeln!(
                f,
                "  threads (not judged): second-quarter mean {q2:.1}, last-quarter mean {q4:.1}{}",
                if q4 > q2 + 4.0 {
                    "; RSS follows the thread count (a malloc arena per busy thread), \
                     so a rise in both after a thread spike is no leak by itself"
                } else {
                    ""
                }
            )?;
        }
        match v.fds {
            Some((q2, q4)) => writeln!(
                f,
                "  fds under load: second-quarter mean {q2:.1}, last-quarter mean {q4:.1}; limit +{FD_SLACK}: {}",
                ok(v.fds_flat)
            )?,
            None => writeln!(f, "  fds: too few samples to judge: FAIL")?,
        }
        writeln!(
            f,
            "  fds at rest: {} before the load, {} after; limit +{FD_REST_SLACK}: {}",
            self.quiet_before,
            self.quiet_after,
            ok(v.rest_flat)
        )?;
        writeln!(
            f,
            "  reloads: {} took effect, {} did not: {}",
            self.reloads(),
            self.reload_failures,
            ok(self.reload_failures == 0 && self.reloads() > 0)
        )?;
        writeln!(
            f,
            "  cache tree: {} pages whole, {} not: {}",
            self.pages.whole,
            self.pages.bad_total,
            ok(self.pages.bad_total == 0)
        )?;
        for bad in &self.pages.bad {
            writeln!(f, "    not whole: {bad}")?;
        }
        writeln!(
            f,
            "  temporary files left after the stop: {}: {}",
            self.temps_left,
            ok(self.temps_left == 0)
        )?;
        writeln!(
            f,
            "  unexpected failures: {}: {}",
            self.errors.total,
            ok(self.errors.total == 0)
        )?;
        writeln!(
            f,
            "  unexpected log lines: {}: {}",
            self.log.unexpected.values().sum::<u64>(),
            ok(self.log.unexpected.is_empty())
        )?;
        writeln!(
            f,
            "  SIGTERM: {}: {}",
            match self.exit {
                Some((status, true)) => format!("{status}"),
                Some((status, false)) => format!("{status} (killed after the grace period)"),
                None => "could not be reaped".into(),
            },
            ok(self.exited_cleanly())
        )?;
        writeln!(
            f,
            "\nVERDICT: {}",
            if self.pass() { "PASS" } else { "FAIL" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: u64, rss_kib: u64, fds: u64) -> Sample {
        Sample {
            t: Duration::from_secs(t),
            requests: 0,
            reloads: 0,
            rss_kib,
            fds,
            threads: 0,
        }
    }

    #[test]
    fn flat_and_growing_series() {
        let total = Duration::from_secs(100);
        let flat: Vec<_> = (0..=20)
            .map(|i| s(i * 5, 30_000 + (i % 3) * 100, 20 + i % 4))
            .collect();
        let v = verdict(&flat, total, 12, 12);
        assert!(v.rss_flat && v.fds_flat && v.rest_flat);
        // 1 MiB more every sample: 10 MiB between the quarters.
        let leak: Vec<_> = (0..=20).map(|i| s(i * 5, 30_000 + i * 1024, 20)).collect();
        assert!(!verdict(&leak, total, 12, 12).rss_flat);
        let fd_leak: Vec<_> = (0..=20).map(|i| s(i * 5, 30_000, 20 + i)).collect();
        assert!(!verdict(&fd_leak, total, 12, 12).fds_flat);
        assert!(!verdict(&flat, total, 12, 15).rest_flat);
        assert!(
            !verdict(&flat[..2], total, 12, 12).rss_flat,
            "too few samples"
        );
    }

    #[test]
    fn log_lines_are_grouped_and_sorted_by_expectation() {
        let log = "2026-11-27T13:57:51.760484Z ERROR plughost::pipeline::plugin_node: plugin panicked: panicked: X-Echo-Panic requested a panic plugin=\"x\"\n\
                   2026-11-27T13:57:52.760484Z ERROR plughost::pipeline::plugin_node: plugin panicked: panicked: X-Echo-Panic requested a panic plugin=\"x\"\n\
                   thread '<unnamed>' panicked at plugins/echo/src/lib.rs:113:13:\n\
                   2026-11-27T13:57:53.1Z  WARN plughost::cache: cannot store /a (store_error.io: 5)\n\
                   thread 'tokio-runtime-worker' panicked at src/server/mod.rs:10:5:\n";
        let s = LogSummary::of(log);
        assert_eq!(s.expected.values().sum::<u64>(), 2);
        assert_eq!(s.expected.len(), 1);
        assert_eq!(s.unexpected.len(), 2, "{:?}", s.unexpected);
    }
}
