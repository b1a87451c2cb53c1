//! Running wrk and reading its report.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::procs;

/// One wrk run's settings.
#[derive(Debug, Clone)]
pub struct Load {
    pub threads: u32,
    pub connections: u32,
    pub duration_secs: u32,
    /// A Lua script and its arguments (after `--`).
    pub script: Option<(PathBuf, Vec<String>)>,
}

/// What one wrk run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub requests: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Responses with status >= 400 (wrk's "Non-2xx or 3xx responses").
    pub non2xx: u64,
    /// connect + read + write + timeout errors.
    pub socket_errors: u64,
}

impl Outcome {
    pub fn errors(&self) -> u64 {
        self.non2xx + self.socket_errors
    }
}

/// Run wrk against `url`.
pub fn run(wrk: &Path, url: &str, load: &Load) -> Result<Outcome> {
    let mut cmd = Command::new(wrk);
    cmd.arg("-t")
        .arg(load.threads.min(load.connections).to_string())
        .arg("-c")
        .arg(load.connections.to_string())
        .arg("-d")
        .arg(format!("{}s", load.duration_secs))
        .arg("--latency");
    if let Some((script, _)) = &load.script {
        cmd.arg("-s").arg(script);
    }
    cmd.arg(url);
    if let Some((_, args)) = &load.script {
        cmd.arg("--").args(args);
    }
    let out = procs::run_captured("wrk", cmd)?;
    parse(&out).with_context(|| format!("reading wrk's report for {url}:\n{out}"))
}

/// A wrk duration (`812.00us`, `1.25ms`, `2.00s`, `1.00m`) in milliseconds.
fn millis(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        "h" => n * 3_600_000.0,
        _ => return None,
    })
}

/// Read wrk's text report (run with `--latency`).
pub fn parse(out: &str) -> Result<Outcome> {
    let mut o = Outcome::default();
    let (mut have_rps, mut have_p50, mut have_p99) = (false, false, false);
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            o.rps = v.trim().parse().context("Requests/sec")?;
            have_rps = true;
        } else if let Some(v) = line.strip_prefix("50%") {
            o.p50_ms = millis(v.trim()).context("50% latency")?;
            have_p50 = true;
        } else if let Some(v) = line.strip_prefix("99%") {
            o.p99_ms = millis(v.trim()).context("99% latency")?;
            have_p99 = true;
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            o.non2xx = v.trim().parse().context("Non-2xx")?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // connect 0, read 0, write 0, timeout 0
            for part in v.split(',') {
                if let Some(n) = part.split_whitespace().nth(1) {
                    o.socket_errors += n.parse::<u64>().context("Socket errors")?;
                }
            }
        } else if line.contains(" requests in ") {
            o.requests = line
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .context("request count")?;
        }
    }
    if !(have_rps && have_p50 && have_p99) {
        bail!("no Requests/sec or latency distribution in wrk's output");
    }
    Ok(o)
}

/// A wrk script requesting a new path every time: `/miss/<prefix>-<thread>-<n>`,
/// so each request misses and makes the cache store a file.
pub const MISS_SCRIPT: &str = r#"-- loadbench: every request is a new path (a cache miss and a store).
local counter = 0
local next_id = 0
local prefix = "r"

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  if args[1] ~= nil then prefix = args[1] end
end

function request()
  counter = counter + 1
  return wrk.format("GET", "/miss/" .. prefix .. "-" .. id .. "-" .. counter)
end
"#;

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 5s test @ http://127.0.0.1:8080/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   1.07ms  483.50us   9.66ms   79.19%
    Req/Sec    15.11k     1.23k   18.02k    71.00%
  Latency Distribution
     50%  812.00us
     75%    1.30ms
     90%    1.65ms
     99%    2.63ms
  150349 requests in 5.00s, 326.52MB read
  Socket errors: connect 1, read 2, write 0, timeout 4
  Non-2xx or 3xx responses: 12
Requests/sec:  30069.78
Transfer/sec:     65.30MB
";

    #[test]
    fn parses_a_report() {
        let o = parse(SAMPLE).unwrap();
        assert_eq!(o.requests, 150349);
        assert!((o.rps - 30069.78).abs() < 1e-6);
        assert!((o.p50_ms - 0.812).abs() < 1e-9);
        assert!((o.p99_ms - 2.63).abs() < 1e-9);
        assert_eq!((o.non2xx, o.socket_errors), (12, 7));
        assert_eq!(o.errors(), 19);
    }

    #[test]
    fn units() {
        assert_eq!(millis("2.00s"), Some(2000.0));
        assert_eq!(millis("1.50m"), Some(90_000.0));
        assert_eq!(millis("x"), None);
    }

    #[test]
    fn a_report_without_numbers_is_an_error() {
        assert!(parse("unable to connect to 127.0.0.1:1 Connection refused").is_err());
    }
}
