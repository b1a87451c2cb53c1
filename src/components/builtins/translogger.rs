//! `egg:plughost#translogger` (= `egg:Paste#translogger`): one line per request
//! in Apache's combined log format, logged when the response body has been sent
//! (so the byte count is what went out), through the `log` facade with
//! `logger_name` as the target, which the host's tracing subscriber routes.
//! Placed outside the cache filter, it logs cache hits too.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::core::builtin::{Builtin, FilterSite, Make, SettingError};
use crate::core::config::level::{self, UnknownLevel};
use crate::core::timefmt::Civil;
use crate::core::{Body, BodyError, Handler, Request, ResponseFuture};

struct TransLogger {
    next: Arc<dyn Handler>,
    logger: Arc<str>,
    level: log::Level,
}

/// Create the filter. Keys: `logger_name` (default `wsgi`), `logging_level`
/// (a name or Python's number, default INFO), `setup_console_handler` (accepted
/// for compatibility; output goes wherever the host's logging sends it).
pub(crate) const BUILTIN: Builtin = Builtin {
    name: "translogger",
    aliases: &[("Paste", "translogger")],
    make: Make::Filter(filter),
};

fn filter(site: FilterSite<'_>) -> Result<Arc<dyn Handler>, SettingError> {
    let (c, next) = (site.component, site.next);
    let mut logger = "wsgi".to_owned();
    let mut level = log::Level::Info;
    for (key, value) in &c.local_conf {
        match key.as_str() {
            "logger_name" => logger = value.clone(),
            "logging_level" => level = parse_level(value).map_err(|e| SettingError::key("logging_level", e.to_string()))?,
            "setup_console_handler" | "set_logger_level" => {}
            other => {
                return Err(SettingError::key(
                    other,
                    "unknown translogger key; known keys: logger_name, logging_level, setup_console_handler",
                ))
            }
        }
    }
    Ok(Arc::new(TransLogger {
        next,
        logger: logger.into(),
        level,
    }))
}

/// Python's level names and numbers; `OFF` is no level a line can have.
fn parse_level(value: &str) -> Result<log::Level, UnknownLevel> {
    level::parse_level(value)?
        .record_level()
        .ok_or_else(|| UnknownLevel(value.to_owned()))
}

impl Handler for TransLogger {
    fn call(&self, req: Request) -> ResponseFuture<'_> {
        let header = |name: http::HeaderName| {
            req.headers
                .get(name)
                .map(|v| escape(&String::from_utf8_lossy(v.as_bytes())))
                .unwrap_or_else(|| "-".into())
        };
        let query = if req.query_string.is_empty() {
            String::new()
        } else {
            format!("?{}", req.query_string)
        };
        let user = req
            .extras
            .iter()
            .find(|(k, _)| k == "REMOTE_USER")
            .map_or("-".to_owned(), |(_, v)| escape(v));
        let head = format!(
            "{} - {user} [{}] \"{} {} {}\"",
            req.remote_addr,
            Civil::from(SystemTime::now()).apache(),
            escape(req.method.as_str()),
            escape(&format!("{}{query}", req.raw_path)),
            req.protocol()
        );
        let tail = format!(
            "\"{}\" \"{}\"",
            header(http::header::REFERER),
            header(http::header::USER_AGENT)
        );
        Box::pin(async move {
            let resp = self.next.call(req).await;
            let status = resp.status().as_u16();
            resp.map(|inner| {
                Body::new(LoggedBody {
                    inner,
                    sent: 0,
                    line: Some((format!("{head} {status}"), tail)),
                    logger: self.logger.clone(),
                    level: self.level,
                })
            })
        })
    }
}

/// A field of the log line as Apache writes it: `"` and `\` escaped with a
/// backslash and control bytes as `\xHH`, so no request can forge the fields
/// around its own (the `http` crate accepts `"` in paths and queries).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Counts the bytes sent and writes the log line when the response is done.
struct LoggedBody {
    inner: Body,
    sent: u64,
    line: Option<(String, String)>,
    logger: Arc<str>,
    level: log::Level,
}

impl LoggedBody {
    fn log(&mut self) {
        if let Some((head, tail)) = self.line.take() {
            let bytes = if self.sent == 0 {
                "-".to_owned()
            } else {
                self.sent.to_string()
            };
            log::log!(target: &self.logger, self.level, "{head} {bytes} {tail}");
        }
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
            }
            Poll::Ready(None) => self.log(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.log();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_levels() {
        assert_eq!(parse_level("warning").ok(), Some(log::Level::Warn));
        assert_eq!(parse_level("20").ok(), Some(log::Level::Info));
        assert_eq!(parse_level("loud").ok(), None);
    }
}
