//! Dialling the backend for hyper's pooled client: TCP (`TCP_NODELAY`) or a
//! unix socket, each bounded by `connect_timeout`. A timed-out connect is an
//! `io::ErrorKind::TimedOut`, which the proxy answers with 504.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::settings::Target;

/// Dials the one backend a proxy forwards to, whatever URI the client asks for.
#[derive(Clone)]
pub(crate) struct Dialer {
    target: Arc<Dial>,
    timeout: Duration,
}

enum Dial {
    Tcp(String, u16),
    Unix(PathBuf),
}

impl Dialer {
    pub(crate) fn new(target: &Target, timeout: Duration) -> Dialer {
        let target = match target {
            Target::Tcp { host, port, .. } => Dial::Tcp(host.clone(), *port),
            Target::Unix(path) => Dial::Unix(path.clone()),
        };
        Dialer {
            target: Arc::new(target),
            timeout,
        }
    }
}

impl tower_service::Service<http::Uri> for Dialer {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Stream>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let (target, timeout) = (self.target.clone(), self.timeout);
        Box::pin(async move {
            let dial = async {
                match &*target {
                    Dial::Tcp(host, port) => {
                        let s = TcpStream::connect((host.as_str(), *port)).await?;
                        s.set_nodelay(true)?;
                        Ok(Stream::Tcp(s))
                    }
                    Dial::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
                }
            };
            match tokio::time::timeout(timeout, dial).await {
                Ok(result) => result.map(TokioIo::new),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect timed out after {timeout:?}"),
                )),
            }
        })
    }
}

/// A connection to the backend.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Unix($s) => {
                let $s = Pin::new($s);
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_shutdown(cx))
    }
}
