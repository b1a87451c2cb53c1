//! The "bare hyper" baseline: a minimal hyper 1 server (tokio multi-thread,
//! HTTP/1.1, keep-alive) that answers every request with the same bytes from
//! memory. It is set up like plughost's own server (TCP_NODELAY, keep-alive, the
//! same Content-Type as the hello app) so the difference between the two is the
//! cost of the config tree, the worker pool and the plugin ABI.
//!
//!     baseline --port 0 --size 2048
//!     baseline --port 8081 --body-file page.html
//!     baseline --port 0 --body-file page.html --header 'ETag: "x"' --header 'Accept-Ranges: bytes'
//!     baseline --port 0 --body-file page.html --stat cache/page.html
//!
//! Prints `listening on http://ADDR` once it listens; listens on 127.0.0.1 only.

use std::convert::Infallible;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(about = "A bare hyper server answering every request with the same bytes")]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Answer with this file's bytes.
    #[arg(long, value_name = "PATH", conflicts_with = "size")]
    body_file: Option<PathBuf>,
    /// Answer with N bytes (`a`..`z` repeated).
    #[arg(long, value_name = "N")]
    size: Option<usize>,
    /// Content-Type of the answer (the hello app's by default).
    #[arg(long, default_value = "text/plain; charset=utf-8")]
    content_type: String,
    /// One more response header, `Name: value` (repeatable): to answer with
    /// the same head as another server (loadbench gives it a cache hit's).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Stat this file before each answer, as the cache checks a page it holds
    /// in memory: one `statx` for inode, size and times, from the parent of
    /// the file's directory by `DIR/NAME`. What keeping a page in memory exact
    /// under deletion costs the bare stack (loadbench compares the cache hit
    /// with it). A failed stat answers 404.
    #[arg(long, value_name = "PATH")]
    stat: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let body = match (&args.body_file, args.size) {
        (Some(path), _) => Bytes::from(
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        ),
        (None, Some(n)) => Bytes::from((0..n).map(|i| b'a' + (i % 26) as u8).collect::<Vec<_>>()),
        (None, None) => Bytes::from_static(b"Hello, world!"),
    };
    let content_type = http::HeaderValue::from_str(&args.content_type)
        .context("--content-type is not a valid header value")?;
    // Prepared once and cloned per response, as a server answering a prepared
    // page does; hyper adds Date and Content-Length.
    let mut head = http::HeaderMap::new();
    head.insert(http::header::CONTENT_TYPE, content_type);
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("--header {h:?}: expected `Name: value`"))?;
        head.append(
            http::HeaderName::from_bytes(name.trim().as_bytes())
                .with_context(|| format!("--header {h:?}: not a header name"))?,
            http::HeaderValue::from_str(value.trim())
                .with_context(|| format!("--header {h:?}: not a header value"))?,
        );
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?
        .block_on(serve(args.port, body, head, args.stat))
}

async fn serve(port: u16, body: Bytes, head: http::HeaderMap, stat: Option<PathBuf>) -> Result<()> {
    let stat = stat
        .map(|p| Stat::new(&p))
        .transpose()?
        .map(std::sync::Arc::new);
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{}", listener.local_addr()?)?;
        out.flush()?;
    }
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("baseline: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        let head = head.clone();
        let only_type = (head.len() == 1)
            .then(|| head.get(http::header::CONTENT_TYPE).cloned())
            .flatten();
        let stat = stat.clone();
        let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
            let gone = stat.as_ref().is_some_and(|s| !s.exists());
            let mut resp = Response::new(Full::new(if gone { Bytes::new() } else { body.clone() }));
            if gone {
                *resp.status_mut() = http::StatusCode::NOT_FOUND;
            }
            if let Some(ct) = &only_type {
                // Content-Type alone (no --header): one insert into the empty
                // map, the cheapest head hyper can send.
                resp.headers_mut()
                    .insert(http::header::CONTENT_TYPE, ct.clone());
            } else {
                *resp.headers_mut() = head.clone();
            }
            async move { Ok::<_, Infallible>(resp) }
        });
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A file checked the way the cache checks a page in memory.
struct Stat {
    from: std::os::fd::OwnedFd,
    rel: String,
}

impl Stat {
    fn new(path: &std::path::Path) -> Result<Stat> {
        let real = std::fs::canonicalize(path)
            .with_context(|| format!("--stat {}: cannot resolve it", path.display()))?;
        let name = |p: &std::path::Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
        let dir = real.parent().context("--stat: the file has no directory")?;
        let (Some(file), Some(dir_name), Some(from)) = (name(&real), name(dir), dir.parent())
        else {
            anyhow::bail!(
                "--stat {}: needs a file two levels below a directory",
                path.display()
            );
        };
        let from = rustix::fs::open(
            from,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .with_context(|| format!("--stat: cannot open {}", from.display()))?;
        Ok(Stat {
            from,
            rel: format!("{dir_name}/{file}"),
        })
    }

    fn exists(&self) -> bool {
        use rustix::fs::{statx, AtFlags, StatxFlags};
        let wanted = StatxFlags::INO | StatxFlags::SIZE | StatxFlags::MTIME | StatxFlags::CTIME;
        statx(
            &self.from,
            self.rel.as_str(),
            AtFlags::SYMLINK_NOFOLLOW,
            wanted,
        )
        .is_ok()
    }
}
