//! The WSGI benchmark: one hello app (a 2 KiB page) under plughost's WSGI
//! bridge, gunicorn (sync and gthread), waitress and Granian, plus a cache hit
//! in front of the Python app, all in one run with wrk: every server started
//! once, then `--rounds` rounds in which the servers take turns (so a noisy
//! neighbour hits all of them alike). Prints the median, min and max
//! requests per second of each and the ratios of the medians; no target is
//! asserted (numbers, not tests). loadbench's `wsgi` scenario runs it.
//!
//! `cargo build --release -p plughost -p plughost-wsgi && cargo run --release -p plughost-bench --bin wsgibench`
//! (needs wrk and python3 with venv/pip; the servers are installed from PyPI
//! into target/bench-venvs/wsgi on first use).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Seconds of load per server and round.
    #[arg(long, default_value_t = 5)]
    duration: u32,
    /// Rounds; the servers alternate within each.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// wrk connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Worker threads for the threaded servers (plughost, gthread, waitress).
    #[arg(long, default_value_t = 8)]
    threads: u32,
}

const APP: &str = r#"BODY = b"<p>" + b"x" * 2041 + b"</p>"
assert len(BODY) == 2048

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", "2048")])
    return [BODY]
"#;

/// A child process killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_port(port: u16, child: &mut Child) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("the server exited ({status}) before listening");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listened on {port} within 30 s")
}

fn venv(root: &Path) -> Result<PathBuf> {
    let dir = root.join("bench-venvs/wsgi");
    if !dir.join(".ready").exists() {
        let python = std::env::var("PLUGHOST_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let ok = Command::new(python)
            .args(["-m", "venv"])
            .arg(&dir)
            .status()?;
        anyhow::ensure!(ok.success(), "python3 -m venv failed");
        let ok = Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", "gunicorn", "waitress", "granian"])
            .status()?;
        anyhow::ensure!(ok.success(), "pip install gunicorn waitress granian failed");
        std::fs::write(dir.join(".ready"), "")?;
    }
    Ok(dir)
}

fn wrk(port: u16, args: &Args) -> Result<(f64, String)> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{}", args.connections),
            &format!("-d{}s", args.duration),
        ])
        .arg(format!("http://127.0.0.1:{port}/hello"))
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    let errors = text
        .lines()
        .filter(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    Ok((rps, errors))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"));
    let release = target.join("release");
    anyhow::ensure!(
        release.join("plughost").is_file() && release.join("libplughost_wsgi.so").is_file(),
        "build first: cargo build --release -p plughost -p plughost-wsgi"
    );
    let venv = venv(&target)?;
    let work = tempfile::tempdir()?;
    let dir = work.path();
    std::fs::write(dir.join("hello_app.py"), APP)?;
    let threads = args.threads.to_string();

    let plughost = |cache: bool| -> Result<(Command, u16)> {
        let port = free_port();
        let filter = if cache {
            "filter-with = cache\n\n[filter:cache]\nuse = egg:plughost#cache\ncache_dir = cache\n"
        } else {
            ""
        };
        let name = if cache { "cache.ini" } else { "wsgi.ini" };
        std::fs::write(
            dir.join(name),
            format!(
                "[app:main]\nuse = egg:plughost#wsgi\napp = hello_app:app\npython_path = .\n{filter}\n\
                 [server:main]\nuse = egg:plughost#http\nhost = 127.0.0.1\nport = {port}\nthreads = {threads}\n"
            ),
        )?;
        let mut c = Command::new(release.join("plughost"));
        c.arg("serve")
            .arg(dir.join(name))
            .env("VIRTUAL_ENV", &venv)
            .env("PLUGHOST_PLUGIN_PATH", &release);
        Ok((c, port))
    };
    let gunicorn = |class: &str| -> (Command, u16) {
        let port = free_port();
        let mut c = Command::new(venv.join("bin/gunicorn"));
        c.args(["-w", "1", "-k", class, "-b"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--chdir"])
            .arg(dir)
            .arg("hello_app:app");
        // gunicorn turns sync into gthread when given threads.
        if class == "gthread" {
            c.args(["--threads", &threads]);
        }
        (c, port)
    };
    let waitress = || -> (Command, u16) {
        let port = free_port();
        let mut c = Command::new(venv.join("bin/waitress-serve"));
        c.arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--threads={threads}"))
            .arg("hello_app:app")
            .current_dir(dir);
        (c, port)
    };
    let granian = || -> (Command, u16) {
        let port = free_port();
        let mut c = Command::new(venv.join("bin/granian"));
        c.args([
            "--interface",
            "wsgi",
            "--workers",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
        ])
        .arg(port.to_string())
        .arg("hello_app:app")
        .current_dir(dir);
        (c, port)
    };

    let runs: Vec<(&str, (Command, u16))> = vec![
        ("plughost wsgi", plughost(false)?),
        ("plughost cache hit in front of wsgi", plughost(true)?),
        ("granian wsgi (1 worker)", granian()),
        ("gunicorn sync (1 worker)", gunicorn("sync")),
        ("gunicorn gthread (1 worker)", gunicorn("gthread")),
        ("waitress", waitress()),
    ];
    anyhow::ensure!(args.rounds >= 1, "--rounds must be at least 1");
    println!(
        "WSGI hello app, 2 KiB page; wrk -t2 -c{} -d{}s, {} rounds, servers alternating; {} threads where threaded",
        args.connections, args.duration, args.rounds, args.threads
    );
    let mut servers = Vec::new();
    for (name, (mut command, port)) in runs {
        command
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut server = Server(
            command
                .spawn()
                .with_context(|| format!("starting {name}"))?,
        );
        wait_port(port, &mut server.0).with_context(|| name.to_owned())?;
        // Warm up (and fill the cache) before any measurement.
        let _ = Command::new("curl")
            .args(["-s", "-o", "/dev/null"])
            .arg(format!("http://127.0.0.1:{port}/hello"))
            .status();
        servers.push((name, port, server, Vec::new(), Vec::new()));
    }
    for round in 1..=args.rounds {
        for (name, port, _, rates, errors) in &mut servers {
            let (rps, errs) = wrk(*port, &args).with_context(|| name.to_owned())?;
            eprintln!("round {round}: {name:<40} {rps:>10.0} req/s  {errs}");
            rates.push(rps);
            if !errs.is_empty() {
                errors.push(errs);
            }
        }
    }
    println!(
        "| WSGI hello 2 KiB (c={}) | req/s median | min | max | errors |\n|---|---:|---:|---:|---|",
        args.connections
    );
    let mut medians = Vec::new();
    for (name, _, _, rates, errors) in &mut servers {
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        println!(
            "| {name} | {median:.0} | {:.0} | {:.0} | {} |",
            rates[0],
            rates[rates.len() - 1],
            if errors.is_empty() {
                "0".to_owned()
            } else {
                errors.join("; ")
            }
        );
        medians.push((*name, median));
    }
    drop(servers);
    let rps = |n: &str| {
        medians
            .iter()
            .find(|(k, _)| k.starts_with(n))
            .map(|(_, r)| *r)
            .unwrap_or(f64::NAN)
    };
    let ours = rps("plughost wsgi");
    println!(
        "plughost wsgi / granian: {:.2}x (target 1.0x); / gunicorn sync: {:.2}x (target 5x); / gunicorn gthread: {:.2}x; cache hit in front / plughost wsgi: {:.2}x",
        ours / rps("granian"),
        ours / rps("gunicorn sync"),
        ours / rps("gunicorn gthread"),
        rps("plughost cache hit") / ours
    );
    Ok(())
}
