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
use tokio::net::{TcpStream, UnixStream};

use super::settings::Target;
use crate::core::socket::Sock;

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
    type Response = TokioIo<Sock>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Sock>>> + Send>>;

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
                        Ok(Sock::Tcp(s))
                    }
                    Dial::Unix(path) => Ok(Sock::Unix(UnixStream::connect(path).await?)),
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

impl Connection for Sock {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}
