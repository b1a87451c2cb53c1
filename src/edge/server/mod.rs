//! The HTTP/1.1 server: listening, per-connection limits, the request limits the
//! pipeline relies on, and graceful shutdown.

pub mod environ;
mod framing;
pub(crate) mod head;
mod head_timeout;
mod limit;
mod proxy_headers;
mod request_body;
pub(crate) mod sendfile;
mod unix;

use std::convert::Infallible;
use std::future::Future;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub(crate) use environ::{Peer, ServerEnv};

use crate::core::config::ServerConfig;
use crate::core::metrics::METRICS;
use crate::core::socket::Sock;
use crate::core::{error_response, Handler, Head, Response, ResponseFuture};

/// Every socket the server listens on.
pub struct Listeners {
    tcp: Vec<TcpListener>,
    unix: Option<unix::Listener>,
}

impl Listeners {
    /// What the host announces: `http://ADDR` per TCP listener, `unix:PATH`.
    pub fn addresses(&self) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        for l in &self.tcp {
            out.push(format!("http://{}", l.local_addr()?));
        }
        if let Some(u) = &self.unix {
            out.push(format!("unix:{}", u.path.display()));
        }
        Ok(out)
    }
}

impl Listeners {
    /// Copies of the listening sockets (TCP ones, then the unix one), for
    /// handing them to a new process (`handover`).
    pub fn copies(&self) -> std::io::Result<(Vec<OwnedFd>, Option<OwnedFd>)> {
        let tcp = self
            .tcp
            .iter()
            .map(|l| l.as_fd().try_clone_to_owned())
            .collect::<std::io::Result<_>>()?;
        let unix = self.unix.as_ref().map(|u| u.copy()).transpose()?;
        Ok((tcp, unix))
    }
}

/// Leave the unix socket's file in place when this process stops (a new
/// process listens on it now).
pub fn keep_unix_socket_file() {
    unix::keep_file();
}

/// The config's listening sockets from sockets a previous process handed
/// over, in order (with `port = 0`, any port), binding those it did not have.
pub async fn adopt(
    cfg: &ServerConfig,
    tcp: Vec<std::net::TcpListener>,
    unix_inherited: Option<std::os::unix::net::UnixListener>,
) -> std::io::Result<Listeners> {
    let mut inherited = tcp.into_iter().map(Some).collect::<Vec<_>>();
    let mut tcp = Vec::new();
    for (i, (host, port)) in cfg.listen.iter().enumerate() {
        let fits = inherited.get(i).and_then(Option::as_ref).is_some_and(|l| {
            l.local_addr()
                .is_ok_and(|a| *port == 0 || a.port() == *port)
        });
        if fits {
            let l = inherited[i].take().expect("checked");
            l.set_nonblocking(true)?;
            tcp.push(TcpListener::from_std(l)?);
        } else {
            tcp.push(listen(host, *port).await?);
        }
    }
    let unix = match (&cfg.unix_socket, unix_inherited) {
        (Some(path), Some(l)) => Some(unix::Listener::adopt(l, path)?),
        (Some(path), None) => Some(unix::Listener::bind(path, cfg.unix_socket_perms)?),
        (None, _) => None,
    };
    Ok(Listeners { tcp, unix })
}

/// Listen on `host:port` (the error names the address).
async fn listen(host: &str, port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind((host, port))
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {host}:{port}: {e}")))
}

/// Bind every `listen` address of the config, and its `unix_socket`.
pub async fn bind(cfg: &ServerConfig) -> std::io::Result<Listeners> {
    let mut tcp = Vec::new();
    for (host, port) in &cfg.listen {
        tcp.push(listen(host, *port).await?);
    }
    let unix = match &cfg.unix_socket {
        Some(path) => Some(unix::Listener::bind(path, cfg.unix_socket_perms)?),
        None => None,
    };
    Ok(Listeners { tcp, unix })
}

/// Serve `handler` on `listeners` until `shutdown` resolves, then drain requests
/// in flight for up to the configured shutdown timeout.
pub async fn serve(
    listeners: Listeners,
    handler: Arc<dyn Handler>,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = Arc::new(GracefulShutdown::new());
    let cfg = Arc::new(cfg);
    let mut accept_loops = tokio::task::JoinSet::new();
    let connections = Arc::new(Semaphore::new(cfg.max_connections));
    let draining = Arc::new(head_timeout::Draining::default());
    let env_of = |local| {
        Arc::new(ServerEnv {
            url_scheme: cfg.url_scheme.as_str().into(),
            url_prefix: cfg.url_prefix.clone(),
            local,
        })
    };
    let Listeners { tcp, unix } = listeners;
    if let Some(unix) = unix {
        // waitress's environ for a unix socket: SERVER_NAME localhost, no port.
        let env = env_of(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        accept_loops.spawn(accept_loop(
            Accept::Unix(unix),
            handler.clone(),
            cfg.clone(),
            env,
            graceful.clone(),
            connections.clone(),
            draining.clone(),
        ));
    }
    for listener in tcp {
        let local = listener
            .local_addr()
            .expect("a bound listener has an address");
        let env = env_of(local);
        accept_loops.spawn(accept_loop(
            Accept::Tcp(listener),
            handler.clone(),
            cfg.clone(),
            env,
            graceful.clone(),
            connections.clone(),
            draining.clone(),
        ));
    }
    shutdown.await;
    accept_loops.abort_all();
    while accept_loops.join_next().await.is_some() {}
    tracing::info!(
        "shutting down: waiting up to {:?} for requests in flight",
        cfg.shutdown_timeout
    );
    // Connections close after their next answer (`Connection: close`), or
    // once quiet; then whatever is left is shut down gracefully.
    draining.start();
    let deadline = tokio::time::Instant::now() + cfg.shutdown_timeout;
    // Every connection holds one permit: all of them back means all closed.
    let all = u32::try_from(cfg.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout_at(deadline, connections.acquire_many(all)).await;
    let graceful = Arc::into_inner(graceful).expect("accept loops have ended");
    match tokio::time::timeout_at(deadline, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!("shutdown timeout reached; closing remaining connections"),
    }
}

/// A listening socket of either kind.
enum Accept {
    Tcp(TcpListener),
    Unix(unix::Listener),
}

impl Accept {
    /// The next client: its socket and its peer as the environ shows it.
    async fn accept(&self) -> std::io::Result<(Sock, Peer)> {
        match self {
            Accept::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok((stream.into(), Peer::new(peer)))
            }
            Accept::Unix(l) => {
                let stream = l.accept().await?;
                Ok((stream.into(), Peer::unix()))
            }
        }
    }
}

async fn accept_loop(
    listener: Accept,
    handler: Arc<dyn Handler>,
    cfg: Arc<ServerConfig>,
    env: Arc<ServerEnv>,
    graceful: Arc<GracefulShutdown>,
    connections: Arc<Semaphore>,
    draining: Arc<head_timeout::Draining>,
) {
    loop {
        // At `max_connections`, stop accepting: further clients wait in the
        // kernel's backlog until a connection closes.
        let permit = connections
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let offers = sendfile::Offers::default();
        let activity = Arc::new(head_timeout::Activity::default());
        // Ready answers skip the environ: only where it would hold nothing
        // the head does not (see `Handler::answer_now`).
        let ready_answers = env.url_prefix.is_empty() && !cfg.trusted_proxy.trusts(&peer.ip);
        let shared = Arc::new(Connection {
            handler: handler.clone(),
            cfg: cfg.clone(),
            env: env.clone(),
            peer,
            offers: offers.clone(),
            activity: activity.clone(),
            draining: draining.clone(),
            ready_answers,
        });
        let per_request = shared.clone();
        let service = service_fn(move |req: hyper::Request<Incoming>| handle(req, &per_request));
        // No hyper timer: `header_timeout` is kept per connection (see `head_timeout`).
        let conn = http1::Builder::new()
            .max_buf_size(cfg.max_header_bytes)
            // Exact, unlike max_buf_size: the parsed head's length is compared too.
            .max_header_size(cfg.max_header_bytes)
            // A client that shuts down its side after the request still gets the answer.
            .half_close(true)
            .keep_alive(true)
            .serve_connection(
                TokioIo::new(sendfile::ConnStream::new(
                    stream,
                    offers,
                    activity.clone(),
                    cfg.send_timeout,
                )),
                service,
            );
        let conn = graceful.watch(conn);
        let ended = activity.clone();
        let peer = shared.peer.addr;
        let task = tokio::spawn(async move {
            match conn.await {
                Err(e) if e.is_parse() => head::malformed(&shared.peer.addr, &e),
                Err(e) => tracing::debug!(peer = %shared.peer.addr, "connection ended: {e}"),
                Ok(()) => {}
            }
            ended.end();
            drop(permit);
        });
        let header_timeout = cfg.header_timeout;
        let draining = draining.clone();
        tokio::spawn(async move {
            if head_timeout::watchdog(task.abort_handle(), activity, header_timeout, draining).await
            {
                tracing::debug!(%peer, "connection closed: no request within header_timeout ({header_timeout:?})");
            }
        });
    }
}

/// What every request of one connection shares (one `Arc` clone per request
/// that is not answered at once).
struct Connection {
    handler: Arc<dyn Handler>,
    cfg: Arc<ServerConfig>,
    env: Arc<ServerEnv>,
    peer: Peer,
    offers: sendfile::Offers,
    activity: Arc<head_timeout::Activity>,
    /// The server is shutting down: every answer closes its connection.
    draining: Arc<head_timeout::Draining>,
    /// Whether the pipeline may answer from the head alone.
    ready_answers: bool,
}

/// Answer one request: at once if its head is bad or the pipeline has the
/// answer ready (a cache hit from memory: no environ, no task state, no
/// clock read, no allocation but the response's), else through the pipeline.
fn handle(
    mut req: hyper::Request<Incoming>,
    conn: &Arc<Connection>,
) -> Answer<impl Future<Output = Response> + Send> {
    if let Err(e) = head::check(&mut req) {
        let done = Done::start(&req, conn);
        head::malformed(&conn.peer.addr, &e);
        let mut resp = error_response(StatusCode::BAD_REQUEST);
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        return Answer::Ready {
            resp: Some(done.finish(resp, conn)),
        };
    }
    if conn.ready_answers && http_body::Body::is_end_stream(req.body()) {
        let head = Head {
            method: req.method(),
            raw_path: req.uri().path(),
            query: req.uri().query(),
            headers: req.headers(),
        };
        if let Some(mut resp) = conn.handler.answer_now(&head) {
            // Framed by its maker: Content-Length is the body's (empty for HEAD).
            conn.activity.tick();
            close_if_draining(&mut resp, conn);
            METRICS.answered_at_once(resp.status().as_u16());
            if tracing::enabled!(tracing::Level::DEBUG) {
                tracing::debug!(peer = %conn.peer.addr, method = %req.method(), path = req.uri().path(), status = resp.status().as_u16(), elapsed_us = 0, "request");
            }
            return Answer::Ready { resp: Some(resp) };
        }
    }
    let done = Done::start(&req, conn);
    let conn = conn.clone();
    Answer::Later {
        fut: async move {
            let resp = respond(req, &conn).await;
            done.finish(resp, &conn)
        },
    }
}

pin_project_lite::pin_project! {
    /// The response future hyper holds per request: a ready answer, or the
    /// pipeline's future held in place (no allocation of its own).
    #[project = AnswerProj]
    enum Answer<F> {
        Ready { resp: Option<Response> },
        Later { #[pin] fut: F },
    }
}

impl<F: Future<Output = Response>> Future for Answer<F> {
    type Output = Result<Response, Infallible>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.project() {
            AnswerProj::Ready { resp } => std::task::Poll::Ready(Ok(resp
                .take()
                .expect("an answer is polled to completion once"))),
            AnswerProj::Later { fut } => fut.poll(cx).map(Ok),
        }
    }
}

/// While the server drains, an answer tells its client to reconnect (hyper
/// then closes the connection after it): the next request reaches whoever
/// listens now.
fn close_if_draining(resp: &mut Response, conn: &Connection) {
    if conn.draining.is_on() {
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
}

/// What is measured and logged of a request the pipeline answers, from its
/// head's arrival; it keeps the connection busy (see `head_timeout`).
struct Done {
    started: Instant,
    _in_flight: crate::core::metrics::GaugeGuard,
    busy: head_timeout::Busy,
    head_request: bool,
    logged: Option<(http::Method, String)>,
}

impl Done {
    fn start(req: &hyper::Request<Incoming>, conn: &Connection) -> Done {
        Done {
            started: Instant::now(),
            _in_flight: METRICS.request_started(),
            busy: conn.activity.busy(),
            head_request: req.method() == http::Method::HEAD,
            logged: tracing::enabled!(tracing::Level::DEBUG)
                .then(|| (req.method().clone(), req.uri().path().to_owned())),
        }
    }

    /// Frame `resp` for the wire (a file-backed body is offered to the
    /// connection to send from its file), then count and log it. A streamed
    /// body keeps the connection busy until it is dropped.
    fn finish(self, resp: Response, conn: &Connection) -> Response {
        let mut resp = framing::frame(resp, self.head_request);
        close_if_draining(&mut resp, conn);
        // A file-backed body that reached the edge as it left the cache:
        // let the connection send its bytes from the file.
        if let Some((bytes, file)) = resp.body_mut().take_file() {
            conn.offers.offer(bytes, file);
        }
        let elapsed = self.started.elapsed();
        METRICS.responded(resp.status().as_u16(), elapsed);
        if let Some((method, path)) = self.logged {
            tracing::debug!(peer = %conn.peer.addr, %method, path, status = resp.status().as_u16(), elapsed_us = elapsed.as_micros() as u64, "request");
        }
        if http_body::Body::size_hint(resp.body()).exact().is_some() {
            // In memory: what is left is writing it, which is progress of its own.
            resp
        } else {
            let busy = self.busy;
            resp.map(|body| body.keep_alive(busy))
        }
    }
}

async fn respond(req: hyper::Request<Incoming>, conn: &Connection) -> Response {
    let Connection {
        handler,
        cfg,
        env,
        peer,
        ..
    } = conn;
    if http_body::Body::is_end_stream(req.body()) {
        // No body (most GETs): nothing to limit or time, no allocation, and no
        // length to check (hyper ends a body at once only when it is 0 or absent).
        let (parts, _) = req.into_parts();
        let request = environ::environ(parts, crate::core::body::empty(), peer, env);
        return call(handler, request, cfg, peer).await;
    }
    let declared = crate::core::headers::content_length(req.headers())
        .ok()
        .flatten();
    if declared.is_some_and(|n| n > cfg.max_body_bytes) {
        tracing::info!(peer = %peer.addr, "request body of {} bytes is over max_body_bytes ({})", declared.unwrap_or(0), cfg.max_body_bytes);
        return error_response(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let (parts, incoming) = req.into_parts();
    let (body, overflow) = limit::LimitedBody::new(incoming, cfg.max_body_bytes, cfg.body_timeout);
    // Read the whole body first: no plugin worker waits on a client's bytes.
    let body = match request_body::read(body, &overflow, declared, cfg).await {
        Ok(body) => body,
        Err(e) => {
            tracing::info!(peer = %peer.addr, "{e}");
            return error_response(e.status());
        }
    };
    let request = environ::environ(parts, body, peer, env);
    call(handler, request, cfg, peer).await
}

/// Apply the trusted proxy headers, then hand the request to the pipeline.
/// Not `async`: the request goes straight into the pipeline's future instead of
/// being moved into one of its own first (it is several hundred bytes).
fn call<'a>(
    handler: &'a Arc<dyn Handler>,
    mut request: crate::core::Request,
    cfg: &ServerConfig,
    peer: &Peer,
) -> ResponseFuture<'a> {
    if let Err(e) = proxy_headers::apply(&mut request, &cfg.trusted_proxy, &peer.ip) {
        tracing::info!(peer = %peer.addr, "{e}");
        return Box::pin(std::future::ready(error_response(StatusCode::BAD_REQUEST)));
    }
    handler.call(request)
}
