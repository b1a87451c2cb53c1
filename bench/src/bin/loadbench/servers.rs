//! The servers under test: their configuration files and how they are started.
//! Everything listens on 127.0.0.1 only.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::procs::Proc;

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The page bodies: `n` bytes of printable ASCII that INI values keep verbatim
/// (no `%`, no leading/trailing space, no newline).
pub fn page(n: usize, seed: u8) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.";
    (0..n)
        .map(|i| ALPHABET[(i * 7 + seed as usize + i / 64) % ALPHABET.len()] as char)
        .collect()
}

/// A port on 127.0.0.1 that was free a moment ago (for nginx, which cannot be
/// told to pick one and report it).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

/// Which plughost set-up a config file describes.
pub enum Shape<'a> {
    /// The root deploy.ini's shape: `[app:main] use = egg:hello`,
    /// `filter-with = cache` (for the memory targets).
    Deploy { cache_dir: &'a Path },
    /// The cache filter over an urlmap: hello (2 KiB) at `/`, hello with the
    /// 1 MiB greeting at `/big`.
    CacheWithBig { cache_dir: &'a Path, big: &'a str },
    /// hello alone, no cache (the ABI scenario).
    NoCache,
}

const CACHE_FILTER: &str = "[filter:cache]\nuse = egg:wsgi_cache#middleware\n";

/// The deploy.ini for `shape`, hello answering `small` (the 2 KiB page).
pub fn plughost_config(shape: &Shape, small: &str, threads: u32) -> String {
    let server = format!(
        "[server:main]\nuse = egg:plughost#http\nhost = 127.0.0.1\nport = 0\nthreads = {threads}\n"
    );
    let cache = |dir: &Path| {
        format!(
            "{CACHE_FILTER}cache_dir = {}\nstatus_header = X-Cache\n\n",
            dir.display()
        )
    };
    match shape {
        Shape::Deploy { cache_dir } => format!(
            "# loadbench: the root deploy.ini with the cache filter.\n\
             [app:main]\nuse = egg:hello\nfilter-with = cache\ngreeting = {small}\n\n\
             {}{server}",
            cache(cache_dir)
        ),
        Shape::CacheWithBig { cache_dir, big } => format!(
            "# loadbench: the cache filter over hello (2 KiB) and hello at /big (1 MiB).\n\
             [composite:main]\n\
             use = egg:Paste#urlmap\n\
             filter-with = cache\n\
             / = small\n\
             /big = big\n\n\
             [app:small]\nuse = egg:hello\ngreeting = {small}\n\n\
             [app:big]\nuse = egg:hello\ngreeting = {big}\n\n\
             {}{server}",
            cache(cache_dir)
        ),
        Shape::NoCache => format!(
            "# loadbench: the hello app through the plugin ABI, no cache.\n\
             [app:main]\nuse = egg:hello\ngreeting = {small}\n\n{server}"
        ),
    }
}

/// Start `plughost serve CONFIG --port 0` and wait for its address.
pub fn start_plughost(
    name: &str,
    bin: &Path,
    plugin_dir: &Path,
    config: &Path,
    log: &Path,
) -> Result<(Proc, SocketAddr)> {
    start_plughost_with(name, bin, plugin_dir, config, log, &[], &[])
}

/// As [`start_plughost`], with more arguments for `serve` (e.g. `--reload`) and
/// more environment variables.
pub fn start_plughost_with(
    name: &str,
    bin: &Path,
    plugin_dir: &Path,
    config: &Path,
    log: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Result<(Proc, SocketAddr)> {
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg(config)
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(args)
        .env("PLUGHOST_PLUGIN_PATH", plugin_dir)
        .env("RUST_LOG", "warn")
        .envs(envs.iter().copied());
    let mut p = Proc::spawn(name, cmd, log, true)?;
    let addr = p.wait_listening(START_TIMEOUT)?;
    Ok((p, addr))
}

/// Start the bare hyper baseline answering `body_file`'s bytes.
pub fn start_baseline(bin: &Path, body_file: &Path, log: &Path) -> Result<(Proc, SocketAddr)> {
    start_baseline_with(bin, body_file, None, &[], None, log)
}

/// Start the bare hyper baseline answering `body_file`'s bytes with
/// `content_type` (the baseline's default if `None`) and `headers`.
pub fn start_baseline_with(
    bin: &Path,
    body_file: &Path,
    content_type: Option<&str>,
    headers: &[(String, String)],
    stat: Option<&Path>,
    log: &Path,
) -> Result<(Proc, SocketAddr)> {
    let mut cmd = Command::new(bin);
    cmd.args(["--port", "0", "--body-file"]).arg(body_file);
    if let Some(file) = stat {
        cmd.arg("--stat").arg(file);
    }
    if let Some(ct) = content_type {
        cmd.args(["--content-type", ct]);
    }
    for (name, value) in headers {
        cmd.arg("--header").arg(format!("{name}: {value}"));
    }
    let mut p = Proc::spawn("baseline", cmd, log, true)?;
    let addr = p.wait_listening(START_TIMEOUT)?;
    Ok((p, addr))
}

/// nginx serving `root` the way a front server serves the cache tree.
pub struct NginxSetup<'a> {
    pub dir: &'a Path,
    pub root: &'a Path,
    pub port: u16,
    pub nofile: u64,
    /// Run workers as root (when we are root), so they read the tree whatever its
    /// permissions; the warm-up warns when a stored file is not world-readable.
    pub as_root: bool,
}

pub fn nginx_config(s: &NginxSetup) -> String {
    let d = s.dir.display();
    let user = if s.as_root { "user root;\n" } else { "" };
    format!(
        "# loadbench: nginx serving the cache tree.\n\
         daemon off;\n\
         master_process on;\n\
         worker_processes auto;\n\
         worker_rlimit_nofile {nofile};\n\
         {user}\
         pid {d}/nginx.pid;\n\
         error_log {d}/nginx-error.log warn;\n\
         events {{\n    worker_connections 4096;\n}}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   sendfile on;\n\
         \x20   default_type text/html;\n\
         \x20   # nginx closes a keep-alive connection after 1000 requests by default;\n\
         \x20   # plughost does not, so neither does this nginx.\n\
         \x20   keepalive_requests 100000000;\n\
         \x20   client_body_temp_path {d}/nginx-tmp/body;\n\
         \x20   proxy_temp_path {d}/nginx-tmp/proxy;\n\
         \x20   fastcgi_temp_path {d}/nginx-tmp/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/nginx-tmp/uwsgi;\n\
         \x20   scgi_temp_path {d}/nginx-tmp/scgi;\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{port};\n\
         \x20       root {root};\n\
         \x20       location / {{\n\
         \x20           try_files $uri $uri/__index.html =404;\n\
         \x20       }}\n\
         \x20   }}\n\
         }}\n",
        nofile = s.nofile,
        port = s.port,
        root = s.root.display(),
    )
}

/// Start nginx with the config above (written into `setup.dir`).
pub fn start_nginx(bin: &Path, setup: &NginxSetup) -> Result<(Proc, SocketAddr)> {
    fs::create_dir_all(setup.dir.join("nginx-tmp"))?;
    let conf: PathBuf = setup.dir.join("nginx.conf");
    fs::write(&conf, nginx_config(setup))?;
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(setup.dir)
        .arg("-e")
        .arg(setup.dir.join("nginx-error.log"))
        .arg("-c")
        .arg(&conf);
    let mut p = Proc::spawn("nginx", cmd, &setup.dir.join("nginx-stderr.log"), false)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], setup.port));
    p.wait_port(addr, START_TIMEOUT)?;
    Ok((p, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_ini_safe_and_sized() {
        let p = page(2048, 1);
        assert_eq!(p.len(), 2048);
        assert!(!p.contains('%') && !p.contains(' ') && !p.contains('\n'));
        assert_ne!(page(64, 1), page(64, 2));
    }

    #[test]
    fn configs_have_the_deploy_ini_shape() {
        let dir = Path::new("/tmp/x/cache");
        let c = plughost_config(&Shape::Deploy { cache_dir: dir }, "s", 8);
        assert!(c.contains("[app:main]\nuse = egg:hello\nfilter-with = cache\ngreeting = s\n"));
        assert!(c.contains(
            "use = egg:wsgi_cache#middleware\ncache_dir = /tmp/x/cache\nstatus_header = X-Cache\n"
        ));
        assert!(c.contains("threads = 8\n") && c.contains("host = 127.0.0.1\n"));
        let c = plughost_config(
            &Shape::CacheWithBig {
                cache_dir: dir,
                big: "b",
            },
            "s",
            4,
        );
        assert!(c.contains("filter-with = cache\n/ = small\n/big = big\n"));
        assert!(c.contains("[app:big]\nuse = egg:hello\ngreeting = b\n"));
        let c = plughost_config(&Shape::NoCache, "s", 8);
        assert!(!c.contains("filter-with") && !c.contains("[filter:"));
    }
}
