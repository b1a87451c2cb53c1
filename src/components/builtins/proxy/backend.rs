//! The connections to one backend: sockets speaking HTTP/1.1 through the
//! proxy's own client codec (`codec.rs`), dialled on demand, kept alive in an
//! [`IdleStack`] between requests, at most `max_connections` requests in flight.
//!
//! There is no connection task and no channel: the request's own task writes
//! the request head and body ([`Lease::send`]), reads the response head, and
//! then (in `mod.rs`'s response body) reads the body straight from the socket
//! through the connection's read buffer. A request then wakes only its own
//! task. Each connection keeps its read and write buffers from one request to
//! the next. Nobody polls an idle connection, so a connection the backend
//! closed while idle is found out when it is taken again (a non-blocking
//! peek sees the end of the stream) and replaced by another.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Weak;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http_body::Body as _;
use rustix::net::RecvFlags;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use super::codec::{self, Malformed, RequestFraming, ResponseHead};
use super::connector::{DialError, Dialer};
use super::pool::IdleStack;
use crate::core::socket::Sock;
use crate::core::{Body, BodyError};

/// What a response head read asks for at least (a small page arrives with
/// its head in one read).
const HEAD_READ: usize = 16 * 1024;
/// What each read of a response body asks for at least.
pub(crate) const BODY_READ: usize = 64 * 1024;
/// Request body pieces at least this large are written as they are, not
/// copied into the write buffer first.
const DIRECT_WRITE: usize = 16 * 1024;
/// The write buffer is sent once it holds this much.
const WRITE_HIGH: usize = 64 * 1024;

/// Why a request got no response from the backend.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackendError {
    #[error(transparent)]
    Dial(#[from] DialError),
    /// Reading or writing the connection failed (reset, ...).
    #[error("connection failed: {0}")]
    Io(#[source] io::Error),
    /// The backend closed the connection before any byte of a response.
    #[error("connection closed before the response")]
    ClosedEarly,
    #[error(transparent)]
    Malformed(#[from] Malformed),
    /// The client's request body failed (or did not match its length).
    #[error("request body failed: {0}")]
    RequestBody(#[source] BodyError),
    /// The connection slots were closed (the proxy is going away).
    #[error("no connection slots left")]
    Closed,
    /// No response head by the deadline (`timeout`).
    #[error("no response in time")]
    TimedOut,
}

impl BackendError {
    /// Whether the backend was too slow (a 504) rather than broken (a 502).
    pub(crate) fn timed_out(&self) -> bool {
        match self {
            BackendError::Dial(DialError::TimedOut(_)) | BackendError::TimedOut => true,
            BackendError::Dial(DialError::Io(e)) | BackendError::Io(e) => {
                e.kind() == io::ErrorKind::TimedOut
            }
            _ => false,
        }
    }
}

/// A failed exchange, and whether it may be sent again on another
/// connection: it failed writing or reading with nothing of a response
/// received (the backend closed a pooled connection as it was reused).
#[derive(Debug)]
pub(crate) struct SendFailure {
    pub error: BackendError,
    pub retryable: bool,
}

/// One open connection: its socket and buffers, and a timer for the
/// exchanges on it, all kept across requests.
struct Conn {
    io: Io,
    /// The deadline of the exchange under way. One timer for every request
    /// on the connection: moving it to a later deadline only updates it
    /// (tokio's timer wheel is not touched unless it fires first), where a
    /// timer of each request's own is registered and removed again.
    timer: Pin<Box<Sleep>>,
}

impl Conn {
    fn new(sock: Sock) -> Conn {
        Conn {
            io: Io::new(sock),
            timer: Box::pin(tokio::time::sleep(Duration::from_secs(86400))),
        }
    }
}

/// A connection's socket and buffers.
pub(crate) struct Io {
    sock: Sock,
    /// Read from the backend and not yet taken: the response head, then the
    /// body's bytes. Response headers and body pieces share its storage, which
    /// it takes back once they are dropped.
    pub(crate) rbuf: BytesMut,
    /// The request head as written, and small request body pieces.
    wbuf: Vec<u8>,
}

impl Io {
    fn new(sock: Sock) -> Io {
        Io {
            sock,
            rbuf: BytesMut::new(),
            wbuf: Vec::new(),
        }
    }

    /// Whether an idle connection can take a request now: nothing unread
    /// and nothing arriving, not even the end of the stream (the backend
    /// closed it). A peek, made only when the socket may be readable (once
    /// a response was read to its end the readiness is still set; the peek's
    /// `EWOULDBLOCK` clears it), and no waker registered: the request sent
    /// next registers its own.
    fn usable(&mut self) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        let sock = &self.sock;
        let peek = sock.try_io(Interest::READABLE, || {
            let mut byte = [0u8; 1];
            let flags = RecvFlags::PEEK | RecvFlags::DONTWAIT;
            Ok(rustix::net::recv(sock, &mut byte[..], flags)?.0)
        });
        // Closed (0), bytes nobody asked for, or failed: not usable.
        matches!(peek, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Read what has arrived into `rbuf` (room for `want` bytes at least):
    /// the number of bytes read, 0 at the end of the stream.
    pub(crate) fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        want: usize,
    ) -> Poll<io::Result<usize>> {
        self.rbuf.reserve(want);
        pin!(self.sock.read_buf(&mut self.rbuf)).poll(cx)
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.sock.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Write the request head (in `wbuf`) and body.
    async fn write_request(
        &mut self,
        framing: RequestFraming,
        body: &mut Body,
    ) -> Result<(), BackendError> {
        if framing == RequestFraming::None {
            return self.flush().await.map_err(BackendError::Io);
        }
        let chunked = framing == RequestFraming::Chunked;
        let mut sent = 0u64;
        loop {
            // A piece the body has ready goes out with what is buffered; before
            // waiting for the next, what is buffered is sent.
            let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    self.flush().await.map_err(BackendError::Io)?;
                    poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
                }
            };
            let data = match frame {
                None => break,
                Some(Err(e)) => return Err(BackendError::RequestBody(e)),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => data,
                    _ => continue, // trailers, empty pieces
                },
            };
            sent += data.len() as u64;
            if let RequestFraming::Length(n) = framing {
                if sent > n {
                    return Err(BackendError::RequestBody(
                        "longer than its Content-Length".into(),
                    ));
                }
            }
            if chunked {
                codec::chunk_start(&mut self.wbuf, data.len());
            }
            if data.len() >= DIRECT_WRITE {
                self.flush().await.map_err(BackendError::Io)?;
                self.sock.write_all(&data).await.map_err(BackendError::Io)?;
            } else {
                self.wbuf.extend_from_slice(&data);
            }
            if chunked {
                self.wbuf.extend_from_slice(codec::CHUNK_END);
            }
            if self.wbuf.len() >= WRITE_HIGH {
                self.flush().await.map_err(BackendError::Io)?;
            }
        }
        match framing {
            RequestFraming::Length(n) if sent != n => {
                return Err(BackendError::RequestBody(
                    "shorter than its Content-Length".into(),
                ))
            }
            RequestFraming::Chunked => self.wbuf.extend_from_slice(codec::LAST_CHUNK),
            _ => {}
        }
        self.flush().await.map_err(BackendError::Io)
    }

    /// Write the request (its head already in `wbuf`) and read the response
    /// head.
    async fn exchange(
        &mut self,
        framing: RequestFraming,
        body: &mut Body,
        head_request: bool,
    ) -> Result<ResponseHead, SendFailure> {
        let unwritten = match self.write_request(framing, body).await {
            Ok(()) => None,
            Err(BackendError::Io(e)) => Some(e),
            Err(error) => {
                return Err(SendFailure {
                    error,
                    retryable: false,
                })
            }
        };
        match self.read_head(head_request).await {
            Ok(mut head) => {
                // Answered early: the rest of the request is still unsent.
                head.keep_alive &= unwritten.is_none();
                Ok(head)
            }
            Err((error, responded)) => {
                let error = unwritten.map_or(error, BackendError::Io);
                let retryable =
                    !responded && matches!(error, BackendError::Io(_) | BackendError::ClosedEarly);
                Err(SendFailure { error, retryable })
            }
        }
    }

    /// Read the (final) response head. The error says too whether any byte
    /// of a response had arrived.
    async fn read_head(
        &mut self,
        head_request: bool,
    ) -> Result<ResponseHead, (BackendError, bool)> {
        let mut responded = false;
        loop {
            if !self.rbuf.is_empty() {
                responded = true;
                match codec::parse_head(&mut self.rbuf, head_request) {
                    Ok(Some(head)) => return Ok(head),
                    Ok(None) => {}
                    Err(e) => return Err((e.into(), true)),
                }
            }
            match poll_fn(|cx| self.poll_fill(cx, HEAD_READ)).await {
                Ok(0) if responded => {
                    return Err((
                        Malformed("connection closed within the response head").into(),
                        true,
                    ))
                }
                Ok(0) => return Err((BackendError::ClosedEarly, false)),
                Ok(_) => {}
                Err(e) => return Err((BackendError::Io(e), responded)),
            }
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
        match self.reuse_idle(permit, Instant::now()) {
            Ok(lease) => Ok(lease),
            Err(permit) => self.checkout_new(permit).await,
        }
    }

    /// A connection without waiting, when a slot is free and an idle
    /// connection is usable: the common case, with no future to make. Else
    /// the free slot if there is one (a connection is to be dialled with
    /// [`Backend::checkout_new`]), or nothing ([`Backend::checkout`] waits).
    /// `now` is the time already read for the request's deadline.
    pub(crate) fn try_checkout(
        self: &Arc<Self>,
        now: Instant,
    ) -> Result<Lease, Option<OwnedSemaphorePermit>> {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            return Err(None);
        };
        self.reuse_idle(permit, now).map_err(Some)
    }

    /// A lease with `permit` on the most recently used idle connection that
    /// is still usable (those the backend closed are dropped on the way), or
    /// the permit back when none is.
    fn reuse_idle(
        self: &Arc<Self>,
        permit: OwnedSemaphorePermit,
        now: Instant,
    ) -> Result<Lease, OwnedSemaphorePermit> {
        while let Some(mut conn) = self.take_idle(now) {
            if conn.io.usable() {
                return Ok(self.lease(conn, true, permit));
            }
            tracing::debug!("proxy: an idle backend connection was closed; not reused");
        }
        Err(permit)
    }

    /// A lease on a new connection, for a request sent again after its
    /// pooled connection failed: a new connection, not another pooled one
    /// (which may have been closed by the same backend restart or timeout).
    pub(crate) async fn checkout_new(
        self: &Arc<Self>,
        permit: OwnedSemaphorePermit,
    ) -> Result<Lease, BackendError> {
        // Boxed: the dial's future is large, and only a new connection needs it.
        let conn = Box::pin(self.dial()).await?;
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
            backend: self.clone(),
            permit: Some(permit),
        }
    }

    async fn dial(&self) -> Result<Box<Conn>, BackendError> {
        Ok(Box::new(Conn::new(self.dialer.dial().await?)))
    }

    /// The most recent idle connection not idle too long at `now`.
    fn take_idle(&self, now: Instant) -> Option<Box<Conn>> {
        let mut expired = Vec::new();
        let conn = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop(now, &mut expired);
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
/// has been read (or dropped). [`Lease::release`] hands it back to the pool
/// once the exchange ended cleanly; dropped otherwise, it is closed.
pub(crate) struct Lease {
    /// `None` once released or given up.
    conn: Option<Box<Conn>>,
    reused: bool,
    backend: Arc<Backend>,
    /// Released after the connection is back in the pool.
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

    /// The connection, until it is released.
    pub(crate) fn conn(&mut self) -> Option<&mut Io> {
        self.conn.as_deref_mut().map(|c| &mut c.io)
    }

    /// Send a request and read its response head by `deadline`: the head
    /// `write_head` writes (the request line and headers; the framing header
    /// is added here), then `body` framed as `framing`. A backend that
    /// answers before reading the whole body (and then fails the write) has
    /// its answer read all the same, on a connection that is not reused.
    pub(crate) async fn send(
        &mut self,
        deadline: tokio::time::Instant,
        write_head: impl Fn(&mut Vec<u8>),
        framing: RequestFraming,
        body: &mut Body,
        head_request: bool,
    ) -> Result<ResponseHead, SendFailure> {
        let Some(conn) = self.conn.as_deref_mut() else {
            return Err(SendFailure {
                error: BackendError::Closed,
                retryable: false,
            });
        };
        let Conn { io, timer } = conn;
        io.wbuf.clear();
        write_head(&mut io.wbuf);
        codec::end_head(&mut io.wbuf, framing);
        timer.as_mut().reset(deadline);
        let mut exchange = pin!(io.exchange(framing, body, head_request));
        poll_fn(|cx| {
            if let Poll::Ready(done) = exchange.as_mut().poll(cx) {
                return Poll::Ready(done);
            }
            match timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(SendFailure {
                    error: BackendError::TimedOut,
                    retryable: false,
                })),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// The exchange is over: the connection goes back to the pool if
    /// `reusable` (the whole response was read and it may carry another),
    /// else it is closed; then the slot is freed.
    pub(crate) fn release(&mut self, reusable: bool) {
        if let Some(conn) = self.conn.take() {
            if reusable {
                self.backend.put_idle(conn);
            }
        }
        // Only now is the slot free, so whoever takes it finds this connection.
        self.permit.take();
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // An exchange cut short: the connection is closed, never reused.
        self.conn.take();
        self.permit.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::builtins::proxy::codec::{Decoded, Decoder, Framing};
    use crate::components::builtins::proxy::settings::Target;
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

    fn get_head(buf: &mut Vec<u8>) {
        codec::request_line(buf, &http::Method::GET, "/");
        codec::header(buf, b"host", b"backend");
    }

    async fn send_get(lease: &mut Lease) -> ResponseHead {
        let mut body = crate::core::body::empty();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        lease
            .send(deadline, get_head, RequestFraming::None, &mut body, false)
            .await
            .unwrap()
    }

    /// One whole exchange on a checked-out connection, as the proxy does it.
    async fn exchange(b: &Arc<Backend>) -> (bool, Vec<u8>) {
        let lease = b.checkout().await.unwrap();
        let reused = lease.reused();
        (reused, read_to_end(lease).await)
    }

    /// Send a GET on `lease` and read its response body to the end, as the
    /// proxy's response body does; the lease then goes back.
    async fn read_to_end(mut lease: Lease) -> Vec<u8> {
        let head = send_get(&mut lease).await;
        let mut decoder = Decoder::new(head.framing);
        let mut got = Vec::new();
        loop {
            let conn = lease.conn().unwrap();
            match decoder.decode(&mut conn.rbuf).unwrap() {
                Decoded::Data(d) => got.extend_from_slice(&d),
                Decoded::End => break,
                Decoded::More => {
                    let n = poll_fn(|cx| conn.poll_fill(cx, BODY_READ)).await.unwrap();
                    assert!(n > 0, "closed within the body");
                }
            }
        }
        let reusable = head.keep_alive && lease.conn().unwrap().rbuf.is_empty();
        lease.release(reusable);
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
        let _head = send_get(&mut lease).await;
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

    /// A backend that reads requests and never answers.
    async fn silent() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn no_response_by_the_deadline_is_a_timeout() {
        let b = pool(silent().await, 4, Duration::from_secs(30));
        let mut lease = b.checkout().await.unwrap();
        let mut body = crate::core::body::empty();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        let started = Instant::now();
        let failure = lease
            .send(deadline, get_head, RequestFraming::None, &mut body, false)
            .await
            .unwrap_err();
        assert!(
            matches!(failure.error, BackendError::TimedOut),
            "{failure:?}"
        );
        assert!(failure.error.timed_out());
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_connection_timer_that_fired_while_idle_times_the_next_request_afresh() {
        let (port, accepted) = backend(usize::MAX).await;
        let b = pool(port, 4, Duration::from_secs(30));
        // A short deadline, met; then idle past it (the timer fires).
        let mut lease = b.checkout().await.unwrap();
        let mut body = crate::core::body::empty();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(30);
        let head = lease
            .send(deadline, get_head, RequestFraming::None, &mut body, false)
            .await
            .unwrap();
        assert_eq!(head.framing, Framing::Length(2));
        lease.conn().unwrap().rbuf.clear();
        lease.release(true);
        tokio::time::sleep(Duration::from_millis(80)).await;
        // The same connection, a later deadline: answered, not timed out.
        let (reused, got) = exchange(&b).await;
        assert_eq!((reused, got.as_slice()), (true, &b"ok"[..]));
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }
}
