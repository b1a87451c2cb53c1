//! The diagnostic app the tests use: it reports what it saw, and its behaviour is
//! driven by request headers (see README.md, "The echo plugin").

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use plughost_sdk::{App, Body, Config, Error, Request, Response};
use serde_json::{json, Map, Value};

/// The repeating pattern of `X-Echo-Bytes` bodies.
const PATTERN: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789\n";
const CHUNK: usize = 64 * 1024;

struct Echo {
    config: Config,
    counter: AtomicU64,
}

fn pairs_to_object<S: AsRef<str>>(pairs: &[(S, S)]) -> Value {
    let mut map = Map::new();
    for (k, v) in pairs {
        map.insert(k.as_ref().to_owned(), Value::String(v.as_ref().to_owned()));
    }
    Value::Object(map)
}

fn headers_to_object<S: AsRef<str>>(headers: &[(S, S)]) -> Value {
    let mut map = Map::new();
    for (name, value) in headers {
        let (name, value) = (name.as_ref().to_ascii_lowercase(), value.as_ref());
        let joined = match map.get(&name) {
            Some(Value::String(prev)) => format!("{prev}, {value}"),
            _ => value.to_owned(),
        };
        map.insert(name, Value::String(joined));
    }
    Value::Object(map)
}

/// 64-bit FNV-1a, so tests can check a large upload arrived intact.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// `N` bytes of the pattern in chunks; an error after `fail_after` bytes if set.
fn pattern_body(len: u64, fail_after: Option<u64>) -> Body {
    let mut sent = 0u64;
    Body::from_chunks(std::iter::from_fn(move || {
        if let Some(limit) = fail_after {
            if sent >= limit {
                return Some(Err(io::Error::other("X-Echo-Fail-After reached")));
            }
        }
        if sent >= len {
            return None;
        }
        let mut n = (len - sent).min(CHUNK as u64);
        if let Some(limit) = fail_after {
            n = n.min(limit - sent);
        }
        let start = (sent % PATTERN.len() as u64) as usize;
        let chunk: Vec<u8> = PATTERN
            .iter()
            .cycle()
            .skip(start)
            .take(n as usize)
            .copied()
            .collect();
        sent += n;
        Some(Ok(chunk))
    }))
}

fn parse_status(value: &str) -> Result<(u16, Option<String>), Error> {
    let value = value.trim();
    let (code, reason) = value.split_once(' ').unwrap_or((value, ""));
    let code = code
        .parse::<u16>()
        .map_err(|_| Error::new(format!("X-Echo-Status: not a status code: {value:?}")))?;
    let reason = reason.trim();
    Ok((code, (!reason.is_empty()).then(|| reason.to_owned())))
}

impl App for Echo {
    fn new(config: &Config) -> Result<Self, Error> {
        Ok(Echo {
            config: config.clone(),
            counter: AtomicU64::new(0),
        })
    }

    fn call(&self, mut req: Request) -> Result<Response, Error> {
        let counter = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(ms) = req.header("x-echo-sleep-ms") {
            let ms: u64 = ms
                .trim()
                .parse()
                .map_err(|_| Error::new("X-Echo-Sleep-Ms: not a number"))?;
            std::thread::sleep(Duration::from_millis(ms));
        }
        if req.header("x-echo-panic") == Some("1") {
            panic!("X-Echo-Panic requested a panic");
        }

        // Read the whole request body, streaming, counting and hashing it.
        let mut body_len = 0u64;
        let mut hash = Fnv::new();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = req.body.read(&mut buf)?;
            if n == 0 {
                break;
            }
            body_len += n as u64;
            hash.update(&buf[..n]);
        }

        let (status, reason) = match req.header("x-echo-status") {
            Some(v) => parse_status(v)?,
            None => (200, None),
        };
        let mut resp = Response::new(status);
        resp.reason = reason;
        for spec in req.header_all("x-echo-header") {
            let (name, value) = spec.split_once(':').ok_or_else(|| {
                Error::new(format!(
                    "X-Echo-Header: expected `Name: value`, got {spec:?}"
                ))
            })?;
            resp.headers
                .push((name.trim().to_owned(), value.trim().to_owned()));
        }
        // The report is JSON; a body the request chose is a page (the cache's
        // default type), so tests of the cache get pages it may store.
        if resp.header_value("content-type").is_none() {
            let chosen =
                req.header("x-echo-body").is_some() || req.header("x-echo-bytes").is_some();
            let kind = if chosen {
                "text/html"
            } else {
                "application/json"
            };
            resp.headers.push(("Content-Type".into(), kind.into()));
        }

        let number = |name: &str| -> Result<Option<u64>, Error> {
            req.header(name)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| Error::new(format!("{name}: not a number")))
                })
                .transpose()
        };
        let fail_after = number("x-echo-fail-after")?;
        resp.body = if let Some(text) = req.header("x-echo-body") {
            Body::from(text)
        } else if let Some(n) = number("x-echo-bytes")? {
            pattern_body(n, fail_after)
        } else {
            let report = json!({
                "method": req.method,
                "script_name": req.script_name,
                "path_info": req.path_info,
                "raw_path": req.raw_path,
                "query_string": req.query_string,
                "scheme": req.scheme,
                "protocol": req.protocol,
                "server_name": req.server_name,
                "server_port": req.server_port,
                "remote_addr": req.remote_addr,
                "remote_port": req.remote_port,
                "headers": headers_to_object(&req.headers),
                "content_length": req.content_length,
                "body_len": body_len,
                "body_fnv1a": format!("{:016x}", hash.0),
                "extras": pairs_to_object(&req.extras),
                "global_conf": pairs_to_object(self.config.global_conf()),
                "local_conf": pairs_to_object(self.config.local_conf()),
                "entry": self.config.entry(),
                "counter": counter,
                "thread": thread_name(),
            });
            let mut text =
                serde_json::to_string_pretty(&report).map_err(|e| Error::new(e.to_string()))?;
            text.push('\n');
            match fail_after {
                Some(limit) => pattern_body(u64::MAX, Some(limit)),
                None => Body::from(text),
            }
        };
        Ok(resp)
    }
}

/// The kernel's name for the calling thread (the plugin's own copy of std does not
/// know the names the host gave its threads).
fn thread_name() -> String {
    std::fs::read_to_string("/proc/thread-self/comm")
        .map(|name| name.trim_end().to_owned())
        .unwrap_or_default()
}

/// `egg:echo#inline`: the same app declared non-blocking, so the host answers
/// body-less requests on its event loop (tests check where calls run, and that an
/// app breaking the promise with `X-Echo-Sleep-Ms` is moved to the worker pool).
struct InlineEcho(Echo);

impl App for InlineEcho {
    const NONBLOCKING: bool = true;

    fn new(config: &Config) -> Result<Self, Error> {
        Echo::new(config).map(InlineEcho)
    }

    fn call(&self, req: Request) -> Result<Response, Error> {
        self.0.call(req)
    }
}

plughost_sdk::export_plugin!(name: "echo", apps: { "main" => Echo, "inline" => InlineEcho });
