//! The HTTP/1.1 server: listening, per-connection limits, the request limits the
//! pipeline relies on, and graceful shutdown.

pub mod environ;
mod framing;
mod head;
mod limit;
mod proxy_headers;
mod request_body;
pub(crate) mod sendfile;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub(crate) use environ::{Peer, ServerEnv};

use crate::core::config::ServerConfig;
use crate::core::metrics::METRICS;
use crate::core::{error_response, Handler, Response};

/// Bind every `listen` address of the config.
pub async fn bind(cfg: &ServerConfig) -> std::io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    for (host, port) in &cfg.listen {
        let listener = TcpListener::bind((host.as_str(), *port))
            .await
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {host}:{port}: {e}"))
            })?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Serve `handler` on `listeners` until `shutdown` resolves, then drain requests
/// in flight for up to the configured shutdown timeout.
pub async fn serve(
    listeners: Vec<TcpListener>,
    handler: Arc<dyn Handler>,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = Arc::new(GracefulShutdown::new());
    let cfg = Arc::new(cfg);
    let mut accept_loops = tokio::task::JoinSet::new();
    let connections = Arc::new(Semaphore::new(cfg.max_connections));
    for listener in listeners {
        let local = listener
            .local_addr()
            .expect("a bound listener has an address");
        let env = Arc::new(ServerEnv {
            url_scheme: cfg.url_scheme.as_str().into(),
            url_prefix: cfg.url_prefix.clone(),
            local,
        });
        accept_loops.spawn(accept_loop(
            listener,
            handler.clone(),
            cfg.clone(),
            env,
            graceful.clone(),
            connections.clone(),
        ));
    }
    shutdown.await;
    accept_loops.abort_all();
    while accept_loops.join_next().await.is_some() {}
    tracing::info!(
        "shutting down: waiting up to {:?} for requests in flight",
        cfg.shutdown_timeout
    );
    let graceful = Arc::into_inner(graceful).expect("accept loops have ended");
    match tokio::time::timeout(cfg.shutdown_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!("shutdown timeout reached; closing remaining connections"),
    }
}

async fn accept_loop(
    listener: TcpListener,
    handler: Arc<dyn Handler>,
    cfg: Arc<ServerConfig>,
    env: Arc<ServerEnv>,
    graceful: Arc<GracefulShutdown>,
    connections: Arc<Semaphore>,
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
        let _ = stream.set_nodelay(true);
        let offers = sendfile::Offers::default();
        let shared = Arc::new(Connection {
            handler: handler.clone(),
            cfg: cfg.clone(),
            env: env.clone(),
            peer: Peer::new(peer),
            offers: offers.clone(),
        });
        let per_request = shared.clone();
        let service = service_fn(move |req: hyper::Request<Incoming>| {
            let conn = per_request.clone();
            async move {
                let head_request = req.method() == http::Method::HEAD;
                let mut resp = framing::frame(handle(req, &conn).await, head_request);
                // A file-backed body that reached the edge as it left the cache:
                // let the connection send its bytes from the file.
                if let Some((bytes, file)) = resp.body_mut().take_file() {
                    conn.offers.offer(bytes, file);
                }
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(cfg.header_timeout)
            .max_buf_size(cfg.max_header_bytes)
            // Exact, unlike max_buf_size: the parsed head's length is compared too.
            .max_header_size(cfg.max_header_bytes)
            // A client that shuts down its side after the request still gets the answer.
            .half_close(true)
            .keep_alive(true)
            .serve_connection(
                TokioIo::new(sendfile::ConnStream::new(stream, offers, cfg.send_timeout)),
                service,
            );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            match conn.await {
                Err(e) if e.is_parse() => head::malformed(&shared.peer.addr, &e),
                Err(e) => tracing::debug!(peer = %shared.peer.addr, "connection ended: {e}"),
                Ok(()) => {}
            }
            drop(permit);
        });
    }
}

/// What every request of one connection shares (one `Arc` clone per request).
struct Connection {
    handler: Arc<dyn Handler>,
    cfg: Arc<ServerConfig>,
    env: Arc<ServerEnv>,
    peer: Peer,
    offers: sendfile::Offers,
}

async fn handle(mut req: hyper::Request<Incoming>, conn: &Connection) -> Response {
    let started = Instant::now();
    let _in_flight = METRICS.request_started();
    let logged = tracing::enabled!(tracing::Level::DEBUG)
        .then(|| (req.method().clone(), req.uri().path().to_owned()));
    let resp = match head::check(&mut req) {
        Ok(()) => respond(req, conn).await,
        Err(e) => {
            head::malformed(&conn.peer.addr, &e);
            let mut resp = error_response(StatusCode::BAD_REQUEST);
            resp.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            resp
        }
    };
    let elapsed = started.elapsed();
    METRICS.responded(resp.status().as_u16(), elapsed);
    if let Some((method, path)) = logged {
        tracing::debug!(peer = %conn.peer.addr, %method, path, status = resp.status().as_u16(), elapsed_us = elapsed.as_micros() as u64, "request");
    }
    resp
}

async fn respond(req: hyper::Request<Incoming>, conn: &Connection) -> Response {
    let Connection {
        handler,
        cfg,
        env,
        peer,
        ..
    } = conn;
    let declared = crate::core::headers::content_length(req.headers())
        .ok()
        .flatten();
    if declared.is_some_and(|n| n > cfg.max_body_bytes) {
        tracing::info!(peer = %peer.addr, "request body of {} bytes is over max_body_bytes ({})", declared.unwrap_or(0), cfg.max_body_bytes);
        return error_response(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let (parts, incoming) = req.into_parts();
    if http_body::Body::is_end_stream(&incoming) {
        // No body (most GETs): nothing to limit or time, no allocation.
        let request = environ::environ(parts, crate::core::body::empty(), peer, env);
        return call(handler, request, cfg, peer).await;
    }
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
async fn call(handler: &Arc<dyn Handler>, mut request: crate::core::Request, cfg: &ServerConfig, peer: &Peer) -> Response {
    if let Err(e) = proxy_headers::apply(&mut request, &cfg.trusted_proxy, &peer.ip) {
        tracing::info!(peer = %peer.addr, "{e}");
        return error_response(StatusCode::BAD_REQUEST);
    }
    handler.call(request).await
}
