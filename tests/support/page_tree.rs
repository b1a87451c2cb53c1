//! Helpers for the page-tree tests (tests/page_tree.rs, tests/nginx_front.rs):
//! requests with a Host of their own, serving with extra environment, waiting
//! for a stored file, and reading a page's `user.mime_type`.

use std::io::{BufReader, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{connect, plugins, read_response, Host, Reply};

/// One request with `Host: host` (instead of the helpers' `localhost`).
pub fn request_host(
    port: u16,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut s = connect(port).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    read_response(&mut BufReader::new(s), method == "HEAD").unwrap()
}

/// Serve `dir/deploy.ini` (written from `config`) with `env` set.
pub fn start_with_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> Host {
    let path = dir.join("deploy.ini");
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_plughost"));
    command
        .arg("serve")
        .arg(&path)
        .args(["--port", "0"])
        .env("PLUGHOST_PLUGIN_PATH", plugins())
        .env("RUST_LOG", "info")
        .envs(env.iter().copied());
    Host::spawn(command, dir).unwrap_or_else(|e| panic!("{e}"))
}

/// Wait (up to 10 s) until `path` exists as a file.
pub fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.is_file() {
        assert!(
            Instant::now() < deadline,
            "{} was not stored",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The page's `user.mime_type` attribute, if it has one.
pub fn mime_xattr(path: &Path) -> Option<String> {
    let mut buf = [0u8; 256];
    let n = rustix::fs::getxattr(path, "user.mime_type", &mut buf[..]).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Each `(line, message)`: `config` with `line` appended is refused at start-up,
/// and the error names `file_line` (`deploy.ini:9: [filter:cache]`) and the message.
pub fn refused_at(config: &str, file_line: &str, cases: &[(&str, &str)]) {
    for (line, want) in cases {
        let dir = super::tempdir();
        let err = Host::try_start_in(dir.path(), &format!("{config}{line}\n"), &[])
            .err()
            .unwrap_or_else(|| panic!("{line} was accepted"));
        assert!(
            err.contains(&format!("{file_line} {want}")),
            "{line}: {err}"
        );
    }
}
