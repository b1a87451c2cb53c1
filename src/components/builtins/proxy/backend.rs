//! The connections to one backend: HTTP/1.1 connections of hyper's low-level
//! client (`hyper::client::conn::http1`), dialled on demand, kept alive in an
//! [`IdleStack`] between requests, at most `max_connections` requests in flight.
//!
//! A connection's future (hyper's dispatcher, which does its reads and writes)
//! is not spawned as a task of its own: whoever holds the connection polls it,
//! the request's own task while it waits for the response head ([`Lease::send`])
//! and while the response body is read ([`Lease::poll_conn`]). A request then
//! wakes only its own task, instead of handing its request and response across
//! two tasks (and two worker threads) through channels as hyper-util's pooled
//! client does; nobody polls an idle connection, so a connection the backend
//! closed while idle is found out when it is taken again (one poll sees the
//! end of the stream) and replaced by another.
//!
//! Only the connection is polled with the task's waker: the response head and
//! body reach their channels only while this task polls the connection, so
//! they are polled with a no-op waker ([`Waker::noop`]), and hyper handing them
//! over does not wake the task once more for nothing. An idle connection is
//! checked with a no-op waker too, so sending on it does not wake whichever
//! task last polled it.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Weak;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::connector::{DialError, Dialer};
use super::pool::IdleStack;
use crate::core::socket::Sock;
use crate::core::Body;

/// Why a request got no response from the backend.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackendError {
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error("handshake failed: {0}")]
    Handshake(#[source] hyper::Error),
    /// The exchange failed (reset, closed before the response, a malformed
    /// response, ...).
    #[error("{}", chain(.0))]
    Http(#[source] hyper::Error),
    /// The connection slots were closed (the proxy is going away).
    #[error("no connection slots left")]
    Closed,
}

impl BackendError {
    /// Whether the backend was too slow (a 504) rather than broken (a 502).
    pub(crate) fn timed_out(&self) -> bool {
        match self {
            BackendError::Dial(DialError::TimedOut(_)) => true,
            BackendError::Dial(DialError::Io(e)) => e.kind() == std::io::ErrorKind::TimedOut,
            BackendError::Handshake(e) | BackendError::Http(e) => e.is_timeout(),
            BackendError::Closed => false,
        }
    }
}

/// `e` and its causes, `a: b: c` (hyper's own message names only the outermost).
fn chain(e: &hyper::Error) -> String {
    let mut text = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(err) = cur {
        text.push_str(": ");
        text.push_str(&err.to_string());
        cur = err.source();
    }
    text
}

/// A failed exchange, with the request when hyper never started writing it
/// (it can be sent again as it is).
#[derive(Debug)]
pub(crate) struct SendFailure {
    pub error: BackendError,
    pub unsent: Option<http::Request<Body>>,
}

/// One open connection: the handle requests are sent with, and the future
/// that does the connection's I/O (polled by whoever holds it).
struct Conn {
    send: SendRequest<Body>,
    io: Connection<TokioIo<Sock>, Body>,
}

impl Conn {
    /// Poll the connection once: whether it can take a request now. Closed by
    /// the backend (its end of stream read), failed, or still busy with an
    /// earlier exchange: not usable. No waker is registered: the request sent
    /// next polls it with one.
    fn usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut self.io).poll(&mut cx) {
            Poll::Ready(_) => false,
            Poll::Pending => self.send.is_ready(),
        }
    }
}

/// The pool of connections to one backend.
pub(crate) struct Backend {
    dialer: Dialer,
    /// Boxed: a connection moves in and out of the stack as one pointer.
    idle: Mutex<IdleStack<Box<Conn>>>,
    /// `max_connections`: one permit per request in flight (an HTTP/1.1
    /// connection carries one at a time), held until its response body ends.
    /// A connection is dialled only when no idle one is left, and returned
    /// before its permit is released, so connections stay within
    /// `max_connections` in practice; the idle stack is capped at it as well.
    slots: Arc<Semaphore>,
    idle_timeout: Duration,
    /// Whether the task closing expired idle connections runs.
    reaping: AtomicBool,
}

impl Backend {
    pub(crate) fn new(dialer: Dialer, max_connections: usize, idle_timeout: Duration) -> Backend {
        Backend {
            dialer,
            idle: Mutex::new(IdleStack::new(idle_timeout, max_connections)),
            slots: Arc::new(Semaphore::new(max_connections)),
            idle_timeout,
            reaping: AtomicBool::new(false),
        }
    }

    /// A connection for one request: a free slot first (waiting for one if
    /// `max_connections` requests are in flight), then the most recently used
    /// idle connection that is still usable, or a new one.
    pub(crate) async fn checkout(self: &Arc<Self>) -> Result<Lease, BackendError> {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BackendError::Closed)?;
        while let Some(mut conn) = self.take_idle() {
            if conn.usable() {
                return Ok(self.lease(conn, true, permit));
            }
            tracing::debug!("proxy: an idle backend connection was closed; not reused");
        }
        let conn = self.dial().await?;
        Ok(self.lease(conn, false, permit))
    }

    /// A lease on a new connection, for a request sent again after its
    /// pooled connection failed: a new connection, not another pooled one
    /// (which may have been closed by the same backend restart or timeout).
    pub(crate) async fn checkout_new(
        self: &Arc<Self>,
        permit: OwnedSemaphorePermit,
    ) -> Result<Lease, BackendError> {
        let conn = self.dial().await?;
        Ok(self.lease(conn, false, permit))
    }

    fn lease(
        self: &Arc<Self>,
        conn: Box<Conn>,
        reused: bool,
        permit: OwnedSemaphorePermit,
    ) -> Lease {
        Lease {
            conn: Some(conn),
            reused,
            reusable: false,
            backend: self.clone(),
            permit: Some(permit),
        }
    }

    async fn dial(&self) -> Result<Box<Conn>, BackendError> {
        let sock = self.dialer.dial().await?;
        let (send, io) = http1::handshake(TokioIo::new(sock))
            .await
            .map_err(BackendError::Handshake)?;
        Ok(Box::new(Conn { send, io }))
    }

    fn take_idle(&self) -> Option<Box<Conn>> {
        let mut expired = Vec::new();
        let conn = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop(Instant::now(), &mut expired);
        drop(expired); // closed outside the lock
        conn
    }

    fn put_idle(self: &Arc<Self>, conn: Box<Conn>) {
        let mut expired = Vec::new();
        let now = Instant::now();
        let refused = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            idle.expire(now, &mut expired);
            idle.push(conn, now).err()
        };
        drop((expired, refused));
        if !self.reaping.load(Ordering::Relaxed) {
            self.start_reaper();
        }
    }

    /// Close idle connections once they have been idle for the idle timeout
    /// even when no request comes to take them (taking and returning
    /// connections expires them too): a task per backend, started with its
    /// first idle connection, ending with the backend.
    fn start_reaper(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.reaping.swap(true, Ordering::AcqRel) {
            return;
        }
        let backend: Weak<Backend> = Arc::downgrade(self);
        let period = self.idle_timeout / 4;
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(backend) = backend.upgrade() else {
                    return;
                };
                let mut expired = Vec::new();
                backend
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .expire(Instant::now(), &mut expired);
            }
        });
    }

    /// Idle connections now (for tests).
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// A connection held for one request, from checkout until its response body
/// has been read (or dropped). It goes back to the pool when dropped only if
/// [`Lease::finish`] said the exchange ended cleanly.
pub(crate) struct Lease {
    /// `None` once the connection's future has finished (it is closed).
    conn: Option<Box<Conn>>,
    reused: bool,
    reusable: bool,
    backend: Arc<Backend>,
    /// Released after the connection is back in the pool (see `Drop`).
    permit: Option<OwnedSemaphorePermit>,
}

impl Lease {
    /// Whether the connection had carried an earlier request.
    pub(crate) fn reused(&self) -> bool {
        self.reused
    }

    /// Give up this connection but keep the slot, for a retry.
    pub(crate) fn into_permit(mut self) -> Option<OwnedSemaphorePermit> {
        self.permit.take()
    }

    /// Send `req` and wait for the response head, driving the connection in
    /// this task meanwhile (it writes the request and its body, then reads).
    pub(crate) async fn send(
        &mut self,
        req: http::Request<Body>,
    ) -> Result<http::Response<Incoming>, SendFailure> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(SendFailure {
                error: BackendError::Closed,
                unsent: Some(req),
            });
        };
        let mut response = pin!(conn.send.try_send_request(req));
        poll_fn(|cx| {
            self.poll_conn(cx);
            response.as_mut().poll(&mut self.quiet(cx))
        })
        .await
        .map_err(|mut e| SendFailure {
            unsent: e.take_message(),
            error: BackendError::Http(e.into_error()),
        })
    }

    /// The context to poll what the connection feeds (the response head, the
    /// body) with: a no-op waker while the connection is open, since only
    /// polling it (which registers `cx`) makes them progress; `cx` itself once
    /// it has finished.
    pub(crate) fn quiet<'a>(&self, cx: &Context<'a>) -> Context<'a> {
        match self.conn {
            Some(_) => Context::from_waker(Waker::noop()),
            None => Context::from_waker(cx.waker()),
        }
    }

    /// Let the connection make progress (read more of the response body,
    /// write the rest of the request body). Once it has finished (closed, or
    /// failed: the response and its body learn why from hyper), it is dropped.
    pub(crate) fn poll_conn(&mut self, cx: &mut Context<'_>) {
        if let Some(conn) = self.conn.as_mut() {
            if let Poll::Ready(result) = Pin::new(&mut conn.io).poll(cx) {
                if let Err(e) = result {
                    tracing::debug!("proxy: backend connection failed: {e}");
                }
                self.conn = None;
            }
        }
    }

    /// The exchange is over and the whole response was read: the connection
    /// may carry the next request.
    pub(crate) fn finish(&mut self) {
        self.reusable = true;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // An exchange cut short leaves a connection hyper is still using for
            // it: closed by dropping it, never reused.
            if self.reusable && !conn.send.is_closed() {
                self.backend.put_idle(conn);
            }
        }
        // Only now is the slot free, so whoever takes it finds this connection.
        self.permit.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::builtins::proxy::settings::Target;
    use http_body::Body as _;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A backend answering each request head with `ok` on keep-alive
    /// connections; a connection is closed after `per_conn` answers. Returns
    /// its port and the number of connections accepted.
    async fn backend(per_conn: usize) -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for _ in 0..per_conn {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            let mut chunk = [0u8; 1024];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                        buf.drain(..end + 4);
                        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (port, accepted)
    }

    fn pool(port: u16, max: usize, idle: Duration) -> Arc<Backend> {
        let target = Target::Tcp {
            host: "127.0.0.1".into(),
            port,
            authority: format!("127.0.0.1:{port}"),
        };
        Arc::new(Backend::new(
            Dialer::new(&target, Duration::from_secs(5)),
            max,
            idle,
        ))
    }

    fn get() -> http::Request<Body> {
        let mut req = http::Request::new(crate::core::body::empty());
        *req.uri_mut() = http::Uri::from_static("/");
        req.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_static("backend"),
        );
        req
    }

    /// One whole exchange on a checked-out connection, as the proxy does it.
    async fn exchange(b: &Arc<Backend>) -> (bool, Vec<u8>) {
        let lease = b.checkout().await.unwrap();
        let reused = lease.reused();
        (reused, read_to_end(lease).await)
    }

    /// Send a GET on `lease` and read its response body to the end, driving
    /// the connection as `Streamed` does; the lease then goes back.
    async fn read_to_end(mut lease: Lease) -> Vec<u8> {
        let resp = lease.send(get()).await.unwrap();
        let mut body = resp.into_body();
        let mut got = Vec::new();
        loop {
            let frame = poll_fn(|cx| {
                lease.poll_conn(cx);
                Pin::new(&mut body).poll_frame(&mut lease.quiet(cx))
            })
            .await;
            match frame {
                Some(f) => got.extend_from_slice(&f.unwrap().into_data().unwrap()),
                None => break,
            }
        }
        lease.finish();
        got
    }

    #[tokio::test]
    async fn a_connection_is_reused_after_its_exchange() {
        let (port, accepted) = backend(usize::MAX).await;
        let b = pool(port, 4, Duration::from_secs(30));
        assert_eq!(exchange(&b).await, (false, b"ok".to_vec()));
        assert_eq!(b.idle_count(), 1);
        for _ in 0..5 {
            assert_eq!(exchange(&b).await, (true, b"ok".to_vec()));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_backend_closed_is_not_reused() {
        // The backend answers once per connection, then closes it.
        let (port, accepted) = backend(1).await;
        let b = pool(port, 4, Duration::from_secs(30));
        assert!(!exchange(&b).await.0);
        // Give the backend's close time to arrive.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(exchange(&b).await, (false, b"ok".to_vec()));
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_idle_connection_past_the_idle_timeout_is_closed_not_reused() {
        let (port, accepted) = backend(usize::MAX).await;
        let b = pool(port, 4, Duration::from_millis(50));
        exchange(&b).await;
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(!exchange(&b).await.0);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_response_not_read_to_its_end_does_not_return_its_connection() {
        let (port, _) = backend(usize::MAX).await;
        let b = pool(port, 4, Duration::from_secs(30));
        let mut lease = b.checkout().await.unwrap();
        let _resp = lease.send(get()).await.unwrap();
        drop(lease);
        assert_eq!(b.idle_count(), 0);
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout_without_new_requests() {
        let (port, _) = backend(usize::MAX).await;
        let b = pool(port, 4, Duration::from_millis(40));
        exchange(&b).await;
        assert_eq!(b.idle_count(), 1);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(b.idle_count(), 0);
    }

    #[tokio::test]
    async fn no_more_than_max_connections_requests_are_in_flight() {
        let (port, accepted) = backend(usize::MAX).await;
        let b = pool(port, 2, Duration::from_secs(30));
        let first = b.checkout().await.unwrap();
        let _second = b.checkout().await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(50), b.checkout()).await;
        assert!(third.is_err(), "a third request got a connection");
        // A finished request frees its slot (and leaves its connection idle).
        read_to_end(first).await;
        assert_eq!(b.idle_count(), 1);
        let third = tokio::time::timeout(Duration::from_secs(5), b.checkout()).await;
        assert!(third.unwrap().unwrap().reused());
        assert!(accepted.load(Ordering::SeqCst) <= 2);
    }
}
