//! Shared test support: build the plugins, start the real `plughost` binary on a
//! config written to a temporary directory, and talk HTTP/1.1 to it over raw
//! sockets (so tests can see exactly what went over the wire, including a
//! response cut short).

#![allow(dead_code)]

pub mod cluster;
pub mod gunicorn;
pub mod load;
pub mod nginx;
pub mod page_tree;
pub mod python;
pub mod redis;
pub mod wsgi;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The directory cargo puts the workspace's libraries in (target/debug).
pub fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_plughost"))
        .parent()
        .unwrap()
        .to_owned()
}

pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Build the Rust example plugins once per test process (a no-op when fresh).
pub fn plugins() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .current_dir(repo_dir())
                .args(["build", "--quiet", "-p", "hello", "-p", "echo", "-p", "tag"])
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building the example plugins failed");
            target_dir()
        })
        .clone()
}

/// Compile a C plugin with the system compiler into `dir`, as `lib{name}.so`.
pub fn compile_c(source: &Path, name: &str, dir: &Path, extra: &[&str]) -> PathBuf {
    let out = dir.join(format!("lib{}.so", name.replace('-', "_")));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(cc)
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-I"])
        .arg(repo_dir().join("plugins/sdk/include"))
        .args(extra)
        .arg("-o")
        .arg(&out)
        .arg(source)
        .status()
        .expect("a C compiler (cc) is needed");
    assert!(status.success(), "compiling {} failed", source.display());
    out
}

/// A scratch directory removed at drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("plughost-test")
        .tempdir()
        .unwrap()
}

/// A running `plughost serve`.
pub struct Host {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
    stderr: Arc<Mutex<String>>,
}

impl Host {
    /// Write `config` as `deploy.ini` in `dir` and serve it on a free port.
    pub fn start_in(dir: &Path, config: &str) -> Host {
        Host::try_start_in(dir, config, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Serve a config in a fresh temporary directory (kept alive by the returned guard).
    pub fn start(config: &str) -> (Host, tempfile::TempDir) {
        let dir = tempdir();
        (Host::start_in(dir.path(), config), dir)
    }

    /// Start, or return everything it printed if it exits instead of listening.
    pub fn try_start_in(dir: &Path, config: &str, args: &[&str]) -> Result<Host, String> {
        let path = dir.join("deploy.ini");
        std::fs::write(&path, config).unwrap();
        Host::serve_path(&path, args)
    }

    /// Serve an existing config file (the directory of the file is `dir`).
    pub fn serve_path(path: &Path, args: &[&str]) -> Result<Host, String> {
        let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        Host::serve_path_logging(path, args, Some(&level))
    }

    /// As [`Host::serve_path`], with `RUST_LOG` set to `rust_log`, or unset.
    pub fn serve_path_logging(
        path: &Path,
        args: &[&str],
        rust_log: Option<&str>,
    ) -> Result<Host, String> {
        let plugin_dir = plugins();
        let mut command = Command::new(env!("CARGO_BIN_EXE_plughost"));
        command
            .arg("serve")
            .arg(path)
            .args(["--port", "0"])
            .args(args)
            .env("PLUGHOST_PLUGIN_PATH", &plugin_dir)
            .env_remove("RUST_LOG")
            .envs(rust_log.map(|level| ("RUST_LOG", level)));
        Host::spawn(command, path.parent().unwrap())
    }

    /// Run `plughost ARGS` exactly as a user would from the repository root:
    /// no `PLUGHOST_PLUGIN_PATH`, so plugins are found the way the binary
    /// finds them on its own (beside itself, in a built checkout). `--port 0`
    /// is added so tests do not collide.
    pub fn serve_as_documented(args: &[&str]) -> Result<Host, String> {
        plugins();
        let mut command = Command::new(env!("CARGO_BIN_EXE_plughost"));
        command
            .current_dir(repo_dir())
            .args(args)
            .args(["--port", "0"])
            .env_remove("PLUGHOST_PLUGIN_PATH")
            .env("RUST_LOG", "info");
        Host::spawn(command, &repo_dir())
    }

    fn spawn(mut command: Command, dir: &Path) -> Result<Host, String> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut err_pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = out.read_to_string(&mut rest);
        });
        let Some(port) = line.trim().rsplit(':').next().and_then(|p| p.parse().ok()) else {
            let status = child.wait().unwrap();
            std::thread::sleep(Duration::from_millis(50));
            let err = stderr.lock().unwrap().clone();
            return Err(format!(
                "plughost exited ({status}) instead of listening:\n{line}{err}"
            ));
        };
        Ok(Host {
            child,
            port,
            dir: dir.to_owned(),
            stderr,
        })
    }

    /// Everything the host logged so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `/proc/PID/status` field in KiB (VmRSS, VmHWM).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], b"")
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        request(self.port, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\nlog:\n{}", self.log()))
    }

    /// Send SIGTERM and wait for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        signal(self.pid(), "TERM");
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, sig: &str) {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub reason: String,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub fn connect(port: u16) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    Ok(s)
}

/// One request on a new connection (`Connection: close`).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Reply> {
    let mut s = connect(port)?;
    write_request(&mut s, method, path, headers, Some(body), true)?;
    let mut r = BufReader::new(s);
    read_response(&mut r, method == "HEAD")
}

/// Write a request head (and a fixed body if given).
pub fn write_request(
    s: &mut impl Write,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    close: bool,
) -> std::io::Result<()> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    if let Some(body) = body {
        if !body.is_empty() || method == "POST" || method == "PUT" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    if let Some(body) = body {
        s.write_all(body)?;
    }
    s.flush()
}

/// Read one response. A body cut short (fewer bytes than declared, or a chunked
/// body without its last chunk) is an error.
pub fn read_response(r: &mut impl BufRead, head_only: bool) -> std::io::Result<Reply> {
    read_response_with(r, head_only, &mut |chunk: &[u8], body: &mut Vec<u8>| {
        body.extend_from_slice(chunk)
    })
}

/// As [`read_response`], handing each body piece to `sink` (to count huge bodies
/// without keeping them).
pub fn read_response_with(
    r: &mut impl BufRead,
    head_only: bool,
    sink: &mut dyn FnMut(&[u8], &mut Vec<u8>),
) -> std::io::Result<Reply> {
    use std::io::{Error, ErrorKind};
    let bad = |m: String| Error::new(ErrorKind::InvalidData, m);
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(Error::new(
            ErrorKind::UnexpectedEof,
            "connection closed before a response",
        ));
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let reason = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header {l:?}")))?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let mut reply = Reply {
        status,
        reason,
        headers,
        body: Vec::new(),
    };
    if head_only || status == 204 || status == 304 {
        return Ok(reply);
    }
    let mut body = Vec::new();
    if reply
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(Error::new(
                    ErrorKind::UnexpectedEof,
                    "chunked body cut short",
                ));
            }
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                line.clear();
                r.read_line(&mut line)?;
                break;
            }
            let mut chunk = vec![0u8; size];
            r.read_exact(&mut chunk)?;
            sink(&chunk, &mut body);
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(len) = reply
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    {
        let mut left = len;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let n = r.read(&mut buf[..left.min(65536) as usize])?;
            if n == 0 {
                return Err(Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("body cut short: {left} of {len} bytes missing"),
                ));
            }
            sink(&buf[..n], &mut body);
            left -= n as u64;
        }
    } else {
        let mut rest = Vec::new();
        r.read_to_end(&mut rest)?;
        sink(&rest, &mut body);
    }
    reply.body = body;
    Ok(reply)
}

/// `plughost cache purge DIR/deploy.ini ARGS`, as an operator runs it.
pub fn cache_purge(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_plughost"))
        .args(["cache", "purge"])
        .arg(dir.join("deploy.ini"))
        .args(args)
        .output()
        .unwrap()
}

/// A test whose real component (nginx, a mount, …) is missing: skipped on a
/// developer's machine, but a failure under `CI=true`, where a skip would hide
/// a missing install step in `.ci/run`.
pub fn skip_unless_ci(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and a real component is missing: {why}");
    }
    eprintln!("skipped: {why}");
}
