//! A real `redis-server` for the cluster tests: found on PATH or at
//! /usr/bin/redis-server, run in the foreground on a free loopback port with an
//! append-only file fsynced on every write (so a stopped and restarted server
//! still has the purge stream), stopped and restarted by its PID on the same
//! port and directory, killed when dropped. The tests talk to it with a few
//! lines of RESP over a `TcpStream` (PING, XLEN, XRANGE), not a client crate.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::nginx::free_port;
use super::signal;

/// The redis-server binary, if one is installed.
pub fn binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("redis-server"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from("/usr/bin/redis-server")).filter(|p| p.is_file()))
}

/// A free loopback port outside the kernel's ephemeral range, for a server
/// that is stopped and started again on it: while it is down, no client
/// socket (the load tests make thousands) can be given that port.
pub fn stable_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = if low > 12000 {
        (10000, low)
    } else {
        (61000, 65535)
    };
    for _ in 0..200 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = from + (h.finish() % u64::from(to - from)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    free_port()
}

/// One RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    pub fn int(&self) -> i64 {
        match self {
            Resp::Int(n) => *n,
            other => panic!("not an integer reply: {other:?}"),
        }
    }

    pub fn array(&self) -> &[Resp] {
        match self {
            Resp::Array(Some(items)) => items,
            Resp::Array(None) => &[],
            other => panic!("not an array reply: {other:?}"),
        }
    }

    pub fn text(&self) -> String {
        match self {
            Resp::Simple(s) | Resp::Error(s) => s.clone(),
            Resp::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("not a string reply: {other:?}"),
        }
    }
}

/// Send one command on `s` and read its reply.
pub fn command_on(s: &mut TcpStream, args: &[&str]) -> std::io::Result<Resp> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    s.write_all(&out)?;
    s.flush()?;
    read_reply(&mut BufReader::new(s))
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<Resp> {
    use std::io::{Error, ErrorKind};
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(Error::new(ErrorKind::UnexpectedEof, "redis closed"));
    }
    let line = line.trim_end_matches("\r\n");
    let bad = || Error::new(ErrorKind::InvalidData, format!("bad RESP line {line:?}"));
    let (kind, rest) = line.split_at(line.len().min(1));
    let number = || rest.parse::<i64>().map_err(|_| bad());
    Ok(match kind {
        "+" => Resp::Simple(rest.to_owned()),
        "-" => Resp::Error(rest.to_owned()),
        ":" => Resp::Int(number()?),
        "$" => match number()? {
            n if n < 0 => Resp::Bulk(None),
            n => {
                let mut buf = vec![0u8; n as usize + 2];
                std::io::Read::read_exact(r, &mut buf)?;
                buf.truncate(n as usize);
                Resp::Bulk(Some(buf))
            }
        },
        "*" => match number()? {
            n if n < 0 => Resp::Array(None),
            n => Resp::Array(Some(
                (0..n).map(|_| read_reply(r)).collect::<Result<_, _>>()?,
            )),
        },
        _ => return Err(bad()),
    })
}

/// A foreground redis-server, killed on drop.
pub struct Redis {
    bin: PathBuf,
    child: Option<Child>,
    pub port: u16,
    /// Its working directory: the append-only file and `redis.log`.
    pub dir: PathBuf,
}

impl Redis {
    /// Start redis-server with its data in `dir` (created), on a free port.
    pub fn start(bin: &Path, dir: &Path) -> Redis {
        std::fs::create_dir_all(dir).unwrap();
        let mut redis = Redis {
            bin: bin.to_owned(),
            child: None,
            port: stable_port(),
            dir: dir.to_owned(),
        };
        // Another port while the one picked was taken meanwhile.
        for _ in 0..5 {
            match redis.try_spawn() {
                Ok(()) => return redis,
                Err(e) if e.contains("Address already in use") => {
                    let _ = std::fs::remove_file(dir.join("redis.log"));
                    redis.port = stable_port();
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("redis-server: no free port in 5 tries");
    }

    /// `redis://127.0.0.1:PORT/0`, the `purge_bus` value.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn spawn(&mut self) {
        self.try_spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "redis-server is already running");
        let port = self.port.to_string();
        let mut child = Command::new(&self.bin)
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--daemonize", "no", "--logfile", "redis.log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let start = Instant::now();
        loop {
            if self.ping() {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!("redis-server exited ({status}):\n{}", self.log()));
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("redis-server did not answer PING:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
        Ok(())
    }

    /// Does the server answer `PING` with `+PONG` (not `-LOADING`)?
    pub fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        matches!(command_on(&mut s, &["PING"]), Ok(Resp::Simple(p)) if p == "PONG")
    }

    /// One command on a fresh connection.
    pub fn command(&self, args: &[&str]) -> Resp {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("redis on {}: {e}", self.port));
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        command_on(&mut s, args).unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// SIGTERM, then wait for it to exit (it fsyncs the append-only file).
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("redis-server is running");
        signal(child.id(), "TERM");
        let status = child.wait().unwrap();
        assert!(status.success(), "redis-server exited {status}");
    }

    /// Start again on the same port and directory (the stream is kept).
    pub fn restart(&mut self) {
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
