//! `egg:plughost#proxy` (= `egg:Paste#proxy`): forwards every request to one
//! HTTP backend (`http://host:port/base` or `unix:/path.sock`) over a pool of
//! keep-alive connections (`backend.rs`) speaking HTTP/1.1 through a small
//! client codec of its own (`codec.rs`), streaming both bodies with bounded
//! memory. A refused or reset backend, or a malformed response, is a 502, a
//! slow one a 504, each with a log line naming the backend; trailers from the
//! backend are dropped, interim 1xx responses skipped.

mod backend;
mod codec;
mod connector;
mod forward;
mod pool;
mod settings;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body::{Body as _, Frame, SizeHint};
use tokio::time::Sleep;

use crate::core::builtin::{Builtin, Make, SettingError};
use crate::core::config::Component;
use crate::core::request::error_response;
use crate::core::{Body, BodyError, Handler, Request, Response, ResponseFuture};

use backend::{Backend, BackendError, Lease, BODY_READ};
use codec::{Decoded, Decoder, Framing, RequestFraming, ResponseHead};
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
        // What needs no waiting is done before the future is made, which
        // then holds only what the exchange needs.
        match self.prepare(req) {
            Ok(exchange) => Box::pin(self.forward(exchange)),
            Err(resp) => Box::pin(std::future::ready(*resp)),
        }
    }
}

impl Proxy {
    /// The backend request to make for `req`, or the answer without one.
    fn prepare(&self, req: Request) -> Result<Exchange, Box<Response>> {
        let allowed = &self.settings.allowed_methods;
        if !allowed.is_empty() && !allowed.contains(&req.method) {
            let mut resp = error_response(StatusCode::METHOD_NOT_ALLOWED);
            let list: Vec<&str> = allowed.iter().map(http::Method::as_str).collect();
            if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
                resp.headers_mut().insert(http::header::ALLOW, v);
            }
            return Err(Box::new(resp));
        }
        let target = forward::target(&self.settings.base_path, &req.path_info, &req.query_string);
        if !codec::valid_target(&target) {
            tracing::warn!(
                "proxy {}: cannot form a backend request for {target:?}",
                self.backend
            );
            return Err(Box::new(error_response(StatusCode::BAD_REQUEST)));
        }
        let (origin, body) = Origin::split(req);
        let framing = RequestFraming::of(
            &origin.method,
            body.is_end_stream(),
            body.size_hint().exact(),
        );
        Ok(Exchange {
            // A request that can be sent twice: idempotent and without a body.
            // If its pooled connection was closed by the backend just as it
            // went out (an idle keep-alive timing out on the other side), it is
            // sent once more on a new connection instead of failing the client
            // with a 502.
            retry: origin.method.is_idempotent() && body.is_end_stream(),
            head_request: origin.method == http::Method::HEAD,
            origin,
            target,
            body,
            framing,
        })
    }

    /// Send the request and read the response head, on a pooled connection
    /// or a new one, sending it once more if it may be (see `retry`).
    async fn exchange(&self, x: &mut Exchange) -> Result<(ResponseHead, Lease), BackendError> {
        let (origin, target) = (&x.origin, &x.target);
        // The request head, written straight into the connection's buffer from
        // the client's request (again, for a retry).
        let write_head = |buf: &mut Vec<u8>| {
            codec::request_line(buf, &origin.method, target);
            forward::each_request_header(origin, &self.host, &self.settings.suppress, |n, v| {
                codec::header(buf, n, v)
            });
        };
        // The whole exchange has `timeout`: a wait for a slot or a dial under
        // a timer of its own (rare), the send and response head under the
        // connection's (see `backend.rs`).
        let now = tokio::time::Instant::now();
        let deadline = now + self.settings.timeout;
        let in_time = |r: Result<Result<Lease, BackendError>, _>| match r {
            Ok(lease) => lease,
            Err(_) => Err(BackendError::TimedOut),
        };
        let mut lease = match self.pool.try_checkout(now.into_std()) {
            Ok(lease) => lease,
            Err(Some(permit)) => {
                in_time(tokio::time::timeout_at(deadline, self.pool.checkout_new(permit)).await)?
            }
            Err(None) => in_time(tokio::time::timeout_at(deadline, self.pool.checkout()).await)?,
        };
        // One call site for the send and its retry: a future of its own for
        // each would make this one larger.
        loop {
            let sent = lease.send(deadline, write_head, x.framing, &mut x.body, x.head_request);
            let failure = match sent.await {
                Ok(head) => return Ok((head, lease)),
                Err(failure) => failure,
            };
            // Once only: the retry's connection is a new one.
            if !(x.retry && lease.reused() && failure.retryable) {
                return Err(failure.error);
            }
            tracing::debug!(
                "proxy {}: retrying once after: {}",
                self.backend,
                failure.error
            );
            let Some(permit) = lease.into_permit() else {
                return Err(BackendError::Closed);
            };
            let dialled = tokio::time::timeout_at(deadline, self.pool.checkout_new(permit)).await;
            lease = in_time(dialled)?;
        }
    }

    /// The exchange, under the timeout, and the response made of it. Not an
    /// `async fn`: the block's captured `x` is used where it lies, where an
    /// argument would be moved into a second place in the future first.
    #[allow(clippy::manual_async_fn)]
    fn forward(&self, mut x: Exchange) -> impl Future<Output = Response> + Send + '_ {
        async move {
            let timeout = self.settings.timeout;
            let exchange = self.exchange(&mut x).await;
            let (origin, target) = (&x.origin, &x.target);
            let (head, lease) = match exchange {
                Ok(pair) => pair,
                Err(BackendError::TimedOut) => {
                    tracing::warn!(
                        "proxy {}: no response within {timeout:?} for {} {target}",
                        self.backend,
                        origin.method
                    );
                    return error_response(StatusCode::GATEWAY_TIMEOUT);
                }
                Err(BackendError::Closed) => {
                    return error_response(StatusCode::SERVICE_UNAVAILABLE)
                }
                Err(e) => {
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
            let ResponseHead {
                status,
                version,
                mut headers,
                framing,
                keep_alive,
            } = head;
            forward::strip_hop_by_hop(&mut headers);
            let mut resp = http::Response::new(self.response_body(lease, framing, keep_alive));
            *resp.status_mut() = status;
            *resp.version_mut() = version;
            *resp.headers_mut() = headers;
            resp
        }
    }

    /// The response body. One already read whole (a small page, or none) is
    /// answered from memory, its connection back in the pool at once; any
    /// other is read from the connection as the client takes it.
    fn response_body(&self, mut lease: Lease, framing: Framing, keep_alive: bool) -> Body {
        let decoder = Decoder::new(framing);
        if let Some(conn) = lease.conn() {
            let whole = match framing {
                Framing::Empty => Some(crate::core::body::empty()),
                Framing::Length(n) if conn.rbuf.len() as u64 >= n => Some(crate::core::body::full(
                    conn.rbuf.split_to(n as usize).freeze(),
                )),
                _ => None,
            };
            if let Some(body) = whole {
                // Anything more than the response (never sent by a sound
                // backend) makes the connection unusable.
                let reusable = keep_alive && conn.rbuf.is_empty();
                lease.release(reusable);
                return body;
            }
        }
        Body::new(Streamed {
            lease,
            decoder,
            keep_alive,
            idle: None,
            waiting: false,
            timeout: self.settings.timeout,
            backend: self.backend.clone(),
        })
    }
}

/// One request to forward, as [`Proxy::prepare`] made it.
struct Exchange {
    origin: Origin,
    /// The backend's request target (origin form).
    target: String,
    body: Body,
    framing: RequestFraming,
    retry: bool,
    head_request: bool,
}

/// The backend's body as it arrives, decoded from its connection (trailers
/// dropped); a read that waits longer than `timeout` fails the body (the
/// connection is cut). Holds the connection slot, and hands the connection
/// back to the pool as soon as the body has been read to its end.
struct Streamed {
    lease: Lease,
    decoder: Decoder,
    /// Whether the connection may be reused once the body is read.
    keep_alive: bool,
    /// The read timeout, made on the first wait.
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

    /// The body was read to its end: the connection goes back (unless more
    /// than the body arrived, or the backend asked to close).
    fn done(&mut self) {
        let reusable = self.keep_alive && self.lease.conn().is_some_and(|c| c.rbuf.is_empty());
        self.lease.release(reusable);
    }

    fn fail(&mut self, why: impl std::fmt::Display) -> BodyError {
        tracing::warn!("proxy {}: response body failed: {why}", self.backend);
        self.lease.release(false);
        self.decoder = Decoder::Done;
        format!("backend body failed: {why}").into()
    }
}

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.lease.conn() else {
                // Released (the body ended) or failed.
                return Poll::Ready(None);
            };
            match this.decoder.decode(&mut conn.rbuf) {
                Ok(Decoded::Data(data)) => {
                    this.waiting = false;
                    if this.decoder.is_done() {
                        this.done();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::End) => {
                    this.done();
                    return Poll::Ready(None);
                }
                Ok(Decoded::More) => {}
                Err(e) => return Poll::Ready(Some(Err(this.fail(e)))),
            }
            match conn.poll_fill(cx, BODY_READ) {
                Poll::Ready(Ok(0)) => match this.decoder.eof() {
                    Ok(()) => {
                        // A body that ends with its connection.
                        this.lease.release(false);
                        return Poll::Ready(None);
                    }
                    Err(e) => return Poll::Ready(Some(Err(this.fail(e)))),
                },
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(this.fail(e)))),
                Poll::Pending => {
                    this.arm();
                    let stalled = this
                        .idle
                        .as_mut()
                        .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
                    if stalled {
                        tracing::warn!(
                            "proxy {}: response body stalled for {:?}",
                            this.backend,
                            this.timeout
                        );
                        this.lease.release(false);
                        this.decoder = Decoder::Done;
                        return Poll::Ready(Some(Err("backend body timed out".into())));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
