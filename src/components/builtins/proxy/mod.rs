//! `egg:plughost#proxy` (= `egg:Paste#proxy`): forwards every request to one
//! HTTP backend (`http://host:port/base` or `unix:/path.sock`) over a pool of
//! keep-alive connections (`backend.rs`), streaming both bodies with bounded
//! memory. A refused or reset backend is a 502, a slow one a 504, each with a
//! log line naming the backend; trailers from the backend are dropped.

mod backend;
mod connector;
mod forward;
mod pool;
mod settings;

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use crate::core::builtin::{Builtin, Make, SettingError};
use crate::core::config::Component;
use crate::core::request::error_response;
use crate::core::{Body, BodyError, Handler, Request, Response, ResponseFuture};

use backend::{Backend, BackendError, Lease};
use connector::Dialer;
use forward::Origin;
use settings::{Settings, Target};

pub(crate) const BUILTIN: Builtin = Builtin {
    name: "proxy",
    aliases: &[("Paste", "proxy")],
    make: Make::App(app),
};

/// How long an idle pooled connection is kept (backends close theirs too; a
/// request whose pooled connection was already closed is sent again).
const POOL_IDLE: Duration = Duration::from_secs(30);

struct Proxy {
    settings: Settings,
    /// The pooled connections, at most `max_connections` in use.
    pool: Arc<Backend>,
    /// The backend's Host header.
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
    let dialer = Dialer::new(&settings.target, settings.connect_timeout);
    Ok(Arc::new(Proxy {
        pool: Arc::new(Backend::new(dialer, settings.max_connections, POOL_IDLE)),
        backend: settings.address.as_str().into(),
        settings,
        host,
    }))
}

impl Handler for Proxy {
    fn call(&self, req: Request) -> ResponseFuture<'_> {
        Box::pin(self.forward(req))
    }
}

impl Proxy {
    /// The backend request for `origin`: its method, the joined path (origin
    /// form: the connection is the backend's already) and the forwarded
    /// headers. Built again, not copied, when a request is retried.
    fn backend_request(
        &self,
        origin: &Origin,
        target: &str,
        body: Body,
    ) -> Result<http::Request<Body>, http::Error> {
        let mut out = http::Request::new(body);
        *out.method_mut() = origin.method.clone();
        *out.uri_mut() = http::Uri::try_from(target)?;
        *out.headers_mut() = forward::request_headers(origin, &self.host, &self.settings.suppress);
        Ok(out)
    }

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
        let (origin, body) = Origin::split(req);
        // A request that can be sent twice: idempotent and without a body. If its
        // pooled connection was closed by the backend just as it went out (an idle
        // keep-alive timing out on the other side), it is sent once more on a new
        // connection instead of failing the client with a 502.
        let retry = origin.method.is_idempotent() && http_body::Body::is_end_stream(&body);
        let out = match self.backend_request(&origin, &target, body) {
            Ok(out) => out,
            Err(e) => {
                tracing::warn!(
                    "proxy {}: cannot form a backend request for {target:?}: {e}",
                    self.backend
                );
                return error_response(StatusCode::BAD_REQUEST);
            }
        };
        let timeout = self.settings.timeout;
        let exchange = async {
            let mut lease = self.pool.checkout().await?;
            let failure = match lease.send(out).await {
                Ok(resp) => return Ok((resp, lease)),
                Err(failure) => failure,
            };
            if !lease.reused() || failure.error.timed_out() {
                return Err(failure.error);
            }
            // Never written (hyper hands it back): sent again as it is, body and
            // all. Written: only a request that can be sent twice, built again.
            let again = match failure.unsent {
                Some(req) => req,
                None if retry => {
                    match self.backend_request(&origin, &target, crate::core::body::empty()) {
                        Ok(req) => req,
                        Err(_) => return Err(failure.error),
                    }
                }
                None => return Err(failure.error),
            };
            tracing::debug!(
                "proxy {}: retrying once after: {}",
                self.backend,
                failure.error
            );
            let Some(permit) = lease.into_permit() else {
                return Err(BackendError::Closed);
            };
            let mut lease = self.pool.checkout_new(permit).await?;
            match lease.send(again).await {
                Ok(resp) => Ok((resp, lease)),
                Err(failure) => Err(failure.error),
            }
        };
        let (resp, lease) = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(pair)) => pair,
            Err(_) => {
                tracing::warn!(
                    "proxy {}: no response within {timeout:?} for {} {target}",
                    self.backend,
                    origin.method
                );
                return error_response(StatusCode::GATEWAY_TIMEOUT);
            }
            Ok(Err(BackendError::Closed)) => {
                return error_response(StatusCode::SERVICE_UNAVAILABLE)
            }
            Ok(Err(e)) => {
                let status = if e.timed_out() {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                };
                tracing::warn!(
                    "proxy {}: {} {target}: {e} ({})",
                    self.backend,
                    origin.method,
                    status.as_u16()
                );
                return error_response(status);
            }
        };
        let (mut parts, incoming) = resp.into_parts();
        forward::strip_hop_by_hop(&mut parts.headers);
        let body = Body::new(Streamed {
            inner: incoming,
            lease,
            idle: None,
            waiting: false,
            timeout,
            backend: self.backend.clone(),
        });
        http::Response::from_parts(parts, body)
    }
}

/// The backend's body as it arrives: trailers dropped, a read that waits
/// longer than `timeout` fails the body (the connection is cut). It drives its
/// connection (see `backend.rs`), which holds the connection slot, and hands
/// the connection back to the pool once the body has been read to its end.
struct Streamed {
    inner: Incoming,
    lease: Lease,
    /// The read timeout, made on the first wait (a body that is already
    /// there, as a small page is, never needs one).
    idle: Option<Pin<Box<Sleep>>>,
    /// Whether `idle` runs from the current wait (false after each frame).
    waiting: bool,
    timeout: Duration,
    backend: Arc<str>,
}

impl Streamed {
    /// Start the read timeout for a wait, unless it already runs for it.
    fn arm(&mut self) {
        if self.waiting {
            return;
        }
        self.waiting = true;
        let deadline = tokio::time::Instant::now() + self.timeout;
        match self.idle.as_mut() {
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => self.idle = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }
}

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut drove = false;
        loop {
            let this = &mut *self;
            let mut quiet = this.lease.quiet(cx);
            match Pin::new(&mut this.inner).poll_frame(&mut quiet) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        self.waiting = false;
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Err(_trailers) => continue,
                },
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!("proxy {}: response body failed: {e}", self.backend);
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Poll::Ready(None) => {
                    self.lease.finish();
                    return Poll::Ready(None);
                }
                Poll::Pending if !drove => {
                    // Nothing buffered: let the connection read (and write what is
                    // left of the request body), then look again.
                    self.lease.poll_conn(cx);
                    drove = true;
                }
                Poll::Pending => {
                    self.arm();
                    let stalled = self
                        .idle
                        .as_mut()
                        .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
                    if stalled {
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

impl Drop for Streamed {
    fn drop(&mut self) {
        // The server stops at the declared length without asking for the end.
        if http_body::Body::is_end_stream(&self.inner) {
            self.lease.finish();
        }
    }
}
