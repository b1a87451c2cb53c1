//! `egg:plughost#proxy` (= `egg:Paste#proxy`): forwards every request to one
//! HTTP backend (`http://host:port/base` or `unix:/path.sock`) over a pool of
//! keep-alive connections (hyper's client), streaming both bodies with bounded
//! memory. A refused or reset backend is a 502, a slow one a 504, each with a
//! log line naming the backend; trailers from the backend are dropped.

mod connector;
mod forward;
mod settings;

use std::error::Error as _;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use crate::core::builtin::{Builtin, Make, SettingError};
use crate::core::config::Component;
use crate::core::request::error_response;
use crate::core::{Body, BodyError, Handler, Request, Response, ResponseFuture};

use connector::Dialer;
use settings::{Settings, Target};

pub(crate) const BUILTIN: Builtin = Builtin {
    name: "proxy",
    aliases: &[("Paste", "proxy")],
    make: Make::App(app),
};

/// How long an idle pooled connection is kept (backends close theirs too;
/// the client retries a request whose pooled connection was already closed).
const POOL_IDLE: Duration = Duration::from_secs(30);

struct Proxy {
    settings: Settings,
    client: Client<Dialer, Body>,
    /// `max_connections`: one permit per request in flight to the backend (an
    /// HTTP/1.1 connection carries one at a time), held until its body ends.
    slots: Arc<Semaphore>,
    /// The backend's Host header and the authority of the URIs sent to it.
    host: HeaderValue,
    /// The address as configured, for log lines.
    backend: Arc<str>,
}

fn app(c: &Component) -> Result<Arc<dyn Handler>, SettingError> {
    let settings = Settings::from_component(c)?;
    let host = match &settings.target {
        Target::Tcp { authority, .. } => authority.clone(),
        Target::Unix(_) => "localhost".to_owned(),
    };
    let host = HeaderValue::from_str(&host)
        .map_err(|_| SettingError::key("address", format!("not a valid host: {host:?}")))?;
    let client = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(settings.max_connections)
        .build(Dialer::new(&settings.target, settings.connect_timeout));
    Ok(Arc::new(Proxy {
        slots: Arc::new(Semaphore::new(settings.max_connections)),
        backend: settings.address.as_str().into(),
        settings,
        client,
        host,
    }))
}

impl Handler for Proxy {
    fn call(&self, req: Request) -> ResponseFuture<'_> {
        Box::pin(self.forward(req))
    }
}

impl Proxy {
    async fn forward(&self, req: Request) -> Response {
        let allowed = &self.settings.allowed_methods;
        if !allowed.is_empty() && !allowed.contains(&req.method) {
            let mut resp = error_response(StatusCode::METHOD_NOT_ALLOWED);
            let list: Vec<&str> = allowed.iter().map(http::Method::as_str).collect();
            if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
                resp.headers_mut().insert(http::header::ALLOW, v);
            }
            return resp;
        }
        let target = forward::target(&self.settings.base_path, &req.path_info, &req.query_string);
        let absolute = format!(
            "http://{}{target}",
            self.host.to_str().unwrap_or("localhost")
        );
        let uri = match http::Uri::try_from(absolute.as_str()) {
            Ok(uri) => uri,
            Err(e) => {
                tracing::warn!(
                    "proxy {}: cannot form a backend URI for {target:?}: {e}",
                    self.backend
                );
                return error_response(StatusCode::BAD_REQUEST);
            }
        };
        let (req, body) = forward::Origin::split(req);
        // A request that can be sent twice: idempotent and without a body. If its
        // pooled connection was closed by the backend just as it went out (an idle
        // keep-alive timing out on the other side), it is sent once more on a new
        // connection instead of failing the client with a 502. The retry is built
        // again from the client's request, which nothing here changes.
        let retry = req.method.is_idempotent() && http_body::Body::is_end_stream(&body);
        let build = |uri: http::Uri, body: Body| {
            let mut out = http::Request::new(body);
            *out.method_mut() = req.method.clone();
            *out.uri_mut() = uri;
            *out.headers_mut() =
                forward::request_headers(&req, &self.host, &self.settings.suppress);
            out
        };
        let out = build(uri, body);
        let timeout = self.settings.timeout;
        let sent = async {
            let permit = self.slots.clone().acquire_owned().await.ok()?;
            let mut result = self.client.request(out).await;
            if retry {
                if let Err(e) = &result {
                    if !timed_out(e) {
                        tracing::debug!(
                            "proxy {}: retrying once after: {}",
                            self.backend,
                            chain(e)
                        );
                        if let Ok(uri) = http::Uri::try_from(absolute.as_str()) {
                            let again = build(uri, crate::core::body::empty());
                            result = self.client.request(again).await;
                        }
                    }
                }
            }
            Some((result, permit))
        };
        let (result, permit) = match tokio::time::timeout(timeout, sent).await {
            Err(_) => {
                tracing::warn!(
                    "proxy {}: no response within {timeout:?} for {} {target}",
                    self.backend,
                    req.method
                );
                return error_response(StatusCode::GATEWAY_TIMEOUT);
            }
            Ok(None) => return error_response(StatusCode::SERVICE_UNAVAILABLE),
            Ok(Some(pair)) => pair,
        };
        match result {
            Ok(resp) => {
                let (mut parts, incoming) = resp.into_parts();
                forward::strip_hop_by_hop(&mut parts.headers);
                let body = Body::new(Streamed {
                    inner: incoming,
                    idle: Box::pin(tokio::time::sleep(timeout)),
                    timeout,
                    backend: self.backend.clone(),
                    _permit: permit,
                });
                http::Response::from_parts(parts, body)
            }
            Err(e) => {
                let status = if timed_out(&e) {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                };
                tracing::warn!(
                    "proxy {}: {} {target}: {} ({})",
                    self.backend,
                    req.method,
                    chain(&e),
                    status.as_u16()
                );
                error_response(status)
            }
        }
    }
}

/// Whether an I/O timeout (our connect timeout) lies under `e`.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// An error and its causes, `a: b: c`.
fn chain(e: &hyper_util::client::legacy::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        text.push_str(": ");
        text.push_str(&err.to_string());
        cur = err.source();
    }
    text
}

/// The backend's body as it arrives: trailers dropped, a read that waits
/// longer than `timeout` fails the body (the connection is cut), and the
/// connection slot held until the body is done.
struct Streamed {
    inner: Incoming,
    idle: Pin<Box<Sleep>>,
    timeout: Duration,
    backend: Arc<str>,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        loop {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let deadline = tokio::time::Instant::now() + self.timeout;
                        self.idle.as_mut().reset(deadline);
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Err(_trailers) => continue,
                },
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!("proxy {}: response body failed: {e}", self.backend);
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {
                    if self.idle.as_mut().poll(cx).is_ready() {
                        tracing::warn!(
                            "proxy {}: response body stalled for {:?}",
                            self.backend,
                            self.timeout
                        );
                        return Poll::Ready(Some(Err("backend body timed out".into())));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
