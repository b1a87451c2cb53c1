//! In-place restart: a new process takes over the listening sockets and the
//! old one drains, so no connection is refused (SIGUSR2, for a binary
//! upgrade, and under `--reload` a changed Python file, which cannot be
//! reloaded inside one interpreter).
//!
//! The old process starts its own executable again (the path it was started
//! from, so a replaced binary is the one that runs) with the same arguments and
//! `PLUGHOST_HANDOVER` naming a unix socket in a private directory. The new
//! process connects there, receives the listening sockets with `SCM_RIGHTS`
//! (as HAProxy's seamless reload passes them), builds its pipeline, starts
//! accepting and says `ready`; only then does the old process stop accepting
//! and drain its requests in flight. The sockets are the same kernel objects
//! in both processes, so a client waiting in the backlog is accepted by the
//! new one. If the new process fails or is not ready within the timeout, it is
//! killed and the old one keeps serving.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// The environment variable naming the handover socket.
pub const ENV: &str = "PLUGHOST_HANDOVER";
/// Most listening sockets handed over.
const MAX_FDS: usize = 16;
/// How long the new process may take to build its pipeline and serve.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a handover failed (the old process keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("cannot start the new process ({}): {error}", exe.display())]
    Spawn { exe: PathBuf, error: io::Error },
    #[error("the handover socket: {0}")]
    Io(#[from] io::Error),
    #[error("the new process exited ({0}) before it was ready")]
    Exited(std::process::ExitStatus),
    #[error("the new process was not ready within {0:?}")]
    Timeout(Duration),
    #[error("the old process sent {0}")]
    Garbled(String),
}

/// The sockets a new process received from the old one.
pub struct Inherited {
    pub tcp: Vec<std::net::TcpListener>,
    pub unix: Option<std::os::unix::net::UnixListener>,
    conn: UnixStream,
}

impl Inherited {
    /// The sockets (taken out; the connection to the old process stays for [`Inherited::ready`]).
    pub fn sockets(
        &mut self,
    ) -> (
        Vec<std::net::TcpListener>,
        Option<std::os::unix::net::UnixListener>,
    ) {
        (std::mem::take(&mut self.tcp), self.unix.take())
    }

    /// Tell the old process this one accepts now (it stops accepting and drains).
    pub fn ready(mut self) {
        if let Err(e) = self.conn.write_all(b"ready\n") {
            tracing::warn!("handover: cannot tell the old process it may stop: {e}");
        }
    }
}

/// The sockets handed over by the process that started this one, if any.
pub fn inherited() -> Result<Option<Inherited>, HandoverError> {
    let Some(path) = std::env::var_os(ENV) else {
        return Ok(None);
    };
    // Not for this process's own children.
    std::env::remove_var(ENV);
    let conn = UnixStream::connect(&path)?;
    let mut text = [0u8; 256];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = recvmsg(
        &conn,
        &mut [IoSliceMut::new(&mut text)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = msg {
            fds.extend(received);
        }
    }
    let header = String::from_utf8_lossy(&text[..got.bytes]).into_owned();
    let (tcp_n, unix_n) =
        parse_header(&header).ok_or_else(|| HandoverError::Garbled(header.clone()))?;
    if fds.len() != tcp_n + unix_n {
        return Err(HandoverError::Garbled(format!(
            "{header} with {} sockets",
            fds.len()
        )));
    }
    let unix = (unix_n == 1).then(|| fds.pop()).flatten();
    Ok(Some(Inherited {
        tcp: fds.into_iter().map(std::net::TcpListener::from).collect(),
        unix: unix.map(std::os::unix::net::UnixListener::from),
        conn,
    }))
}

fn header(tcp: usize, unix: bool) -> String {
    format!("plughost-handover 1 tcp={tcp} unix={}\n", u8::from(unix))
}

fn parse_header(h: &str) -> Option<(usize, usize)> {
    let mut parts = h.trim_end().split(' ');
    if parts.next()? != "plughost-handover" || parts.next()? != "1" {
        return None;
    }
    let tcp = parts.next()?.strip_prefix("tcp=")?.parse().ok()?;
    let unix = parts.next()?.strip_prefix("unix=")?.parse().ok()?;
    (unix <= 1).then_some((tcp, unix))
}

/// What the running process needs to hand its sockets to a new one.
pub struct Handover {
    tcp: Vec<OwnedFd>,
    unix: Option<OwnedFd>,
    exe: PathBuf,
    args: Vec<OsString>,
}

impl Handover {
    /// Copies of the listening sockets (`tcp`, then the unix one), and how
    /// this process was started (taken now: a later rename of the binary is
    /// what runs next).
    pub fn new(tcp: Vec<OwnedFd>, unix: Option<OwnedFd>) -> io::Result<Handover> {
        let exe = std::env::args_os()
            .next()
            .map(PathBuf::from)
            .filter(|p| p.components().count() > 1)
            .map_or_else(std::env::current_exe, std::path::absolute)?;
        Ok(Handover {
            tcp,
            unix,
            exe,
            args: std::env::args_os().skip(1).collect(),
        })
    }

    /// Start the new process and hand it the sockets; its PID once it serves.
    /// Blocking (run it on a blocking thread).
    pub fn run(&self) -> Result<u32, HandoverError> {
        let dir = tempfile::Builder::new()
            .prefix("plughost-handover-")
            .tempdir()?;
        let path = dir.path().join("handover.sock");
        let listener = UnixListener::bind(&path)?;
        listener.set_nonblocking(true)?;
        let mut child = Command::new(&self.exe)
            .args(&self.args)
            .env(ENV, &path)
            .spawn()
            .map_err(|error| HandoverError::Spawn {
                exe: self.exe.clone(),
                error,
            })?;
        let pid = child.id();
        match self.hand_to(&listener, &mut child) {
            Ok(()) => Ok(pid),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    fn hand_to(&self, listener: &UnixListener, child: &mut Child) -> Result<(), HandoverError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let wait = |child: &mut Child| -> Result<(), HandoverError> {
            if let Some(status) = child.try_wait()? {
                return Err(HandoverError::Exited(status));
            }
            if Instant::now() > deadline {
                return Err(HandoverError::Timeout(READY_TIMEOUT));
            }
            std::thread::sleep(Duration::from_millis(20));
            Ok(())
        };
        let conn = loop {
            match listener.accept() {
                Ok((conn, _)) => break conn,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(child)?,
                Err(e) => return Err(e.into()),
            }
        };
        conn.set_nonblocking(false)?;
        let mut fds: Vec<_> = self.tcp.iter().map(AsFd::as_fd).collect();
        fds.extend(self.unix.as_ref().map(AsFd::as_fd));
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(HandoverError::Garbled(format!(
                "{} sockets: too many",
                fds.len()
            )));
        }
        let text = header(self.tcp.len(), self.unix.is_some());
        sendmsg(
            &conn,
            &[IoSlice::new(text.as_bytes())],
            &mut control,
            SendFlags::empty(),
        )
        .map_err(io::Error::from)?;
        // The new process says `ready` once it accepts.
        conn.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut reader = BufReader::new(conn);
        let mut line = String::new();
        loop {
            match reader.read_line(&mut line) {
                Ok(0) => {
                    // Closed without a word: it failed (the exit status says how).
                    wait(child)?;
                    let status = child.wait()?;
                    return Err(HandoverError::Exited(status));
                }
                Ok(_) if line.trim_end() == "ready" => return Ok(()),
                Ok(_) => return Err(HandoverError::Garbled(line)),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    wait(child)?
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        assert_eq!(parse_header(&header(2, true)), Some((2, 1)));
        assert_eq!(parse_header(&header(0, false)), Some((0, 0)));
        assert_eq!(parse_header("plughost-handover 2 tcp=1 unix=0"), None);
        assert_eq!(parse_header("nonsense"), None);
    }
}
