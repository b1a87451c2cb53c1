//! A real gunicorn (from a test venv) serving a small WSGI probe app, for the
//! proxy tests: echo of what arrived, counted connections (distinct
//! REMOTE_PORTs), patterned downloads and checked uploads, slow answers, a
//! cacheable page that counts its hits. Killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::python::Venv;

/// The probe app. Byte `i` of every patterned body is `i % 251`.
pub const APP: &str = r#"
import json, threading, time
PAT = bytes(range(251)) * 263
lock = threading.Lock()
ports = set()
hits = {"page": 0}

def app(environ, start_response):
    with lock:
        ports.add((environ.get("REMOTE_ADDR"), environ.get("REMOTE_PORT")))
    path = environ.get("PATH_INFO", "")
    qs = environ.get("QUERY_STRING", "")
    def reply(body, ctype="application/json", extra=()):
        start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))] + list(extra))
        return [body]
    if path.endswith("/connections"):
        with lock:
            return reply(json.dumps({"connections": len(ports)}).encode())
    if path.endswith("/slow"):
        time.sleep(float(qs or "3"))
        return reply(b"late")
    if path.endswith("/big"):
        n = int(qs)
        chunk = PAT[: 251 * 261]
        def gen():
            left = n
            while left > 0:
                take = min(left, len(chunk))
                yield chunk[:take]
                left -= take
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(n))])
        return gen()
    if path.endswith("/upload"):
        inp = environ["wsgi.input"]
        total, ok = 0, True
        while True:
            data = inp.read(65536)
            if not data:
                break
            o = total % 251
            ok = ok and data == PAT[o:o + len(data)]
            total += len(data)
        return reply(json.dumps({"bytes": total, "pattern_ok": ok}).encode())
    if path.endswith("/page"):
        with lock:
            hits["page"] += 1
        return reply(b"<html><body>backend page</body></html>", "text/html; charset=utf-8",
                     [("Cache-Control", "public, max-age=60")])
    if path.endswith("/hits"):
        with lock:
            return reply(json.dumps(hits).encode())
    if path.endswith("/status"):
        code = qs or "404"
        body = b"status " + code.encode()
        start_response(code + " Whatever", [("Content-Type", "text/plain"), ("X-Backend", "yes"),
                                             ("Content-Length", str(len(body)))])
        return [body]
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    body = environ["wsgi.input"].read()
    return reply(json.dumps({
        "method": environ["REQUEST_METHOD"], "path": path, "script": environ.get("SCRIPT_NAME", ""),
        "query": qs, "headers": headers, "content_length": environ.get("CONTENT_LENGTH", ""),
        "body": body.decode("latin-1"), "uri": environ.get("RAW_URI", ""),
    }).encode())
"#;

/// The venv every gunicorn test shares.
pub fn venv() -> Option<Venv> {
    super::python::venv("gunicorn", &["gunicorn==23.0.0"])
}

/// A running gunicorn: one gthread worker (keep-alive), on TCP or a unix socket.
pub struct Gunicorn {
    child: Child,
    pub bind: String,
    pub log: PathBuf,
}

impl Gunicorn {
    /// Serve [`APP`] from `dir` on `bind` (`127.0.0.1:PORT` or `unix:PATH`).
    pub fn start(venv: &Venv, dir: &Path, bind: &str) -> Gunicorn {
        std::fs::write(dir.join("probe_app.py"), APP).unwrap();
        let log = dir.join("gunicorn.log");
        let child = Command::new(venv.bin("gunicorn"))
            .args(["--chdir"])
            .arg(dir)
            .args([
                "--bind",
                bind,
                "--workers",
                "1",
                "--worker-class",
                "gthread",
            ])
            .args(["--threads", "16", "--keep-alive", "30", "--timeout", "120"])
            .args(["--error-logfile"])
            .arg(&log)
            .arg("probe_app:app")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gunicorn starts");
        let g = Gunicorn {
            child,
            bind: bind.to_owned(),
            log,
        };
        g.wait_ready();
        g
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            let up = match self.bind.strip_prefix("unix:") {
                Some(path) => std::os::unix::net::UnixStream::connect(path).is_ok(),
                None => std::net::TcpStream::connect(&self.bind).is_ok(),
            };
            if up {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "gunicorn did not come up on {}: {}",
                self.bind,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The TCP port (for a TCP bind).
    pub fn port(&self) -> u16 {
        self.bind.rsplit(':').next().unwrap().parse().unwrap()
    }
}

impl Drop for Gunicorn {
    fn drop(&mut self) {
        // SIGINT: gunicorn's quick shutdown, which takes its worker along.
        super::signal(self.child.id(), "INT");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
