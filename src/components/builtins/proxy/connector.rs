//! Dialling the backend: TCP (`TCP_NODELAY`) or a unix socket, each bounded by
//! `connect_timeout`. A timed-out connect is its own error, which the proxy
//! answers with 504 (a refused one is a 502).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};

use super::settings::Target;
use crate::core::socket::Sock;

/// Why no connection to the backend could be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    #[error("connect failed: {0}")]
    Io(#[from] io::Error),
    #[error("connect timed out after {0:?}")]
    TimedOut(Duration),
}

/// Dials the one backend a proxy forwards to.
#[derive(Debug)]
pub(crate) struct Dialer {
    target: Dial,
    timeout: Duration,
}

#[derive(Debug)]
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
        Dialer { target, timeout }
    }

    /// A new connection to the backend, within the connect timeout.
    pub(crate) async fn dial(&self) -> Result<Sock, DialError> {
        let dial = async {
            match &self.target {
                Dial::Tcp(host, port) => {
                    let s = TcpStream::connect((host.as_str(), *port)).await?;
                    s.set_nodelay(true)?;
                    Ok(Sock::Tcp(s))
                }
                Dial::Unix(path) => Ok(Sock::Unix(UnixStream::connect(path).await?)),
            }
        };
        match tokio::time::timeout(self.timeout, dial).await {
            Ok(result) => result,
            Err(_) => Err(DialError::TimedOut(self.timeout)),
        }
    }
}
