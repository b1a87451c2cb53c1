//! The `plughost` command line.
#![deny(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use plughost::config::{Deployment, MainFile};
use plughost::logging::LoggingError;
use plughost::{check, server};
use plughost::{LoadSpec, Location, Registry, Reloader, Warning, WorkerPool};

#[derive(Parser)]
#[command(
    name = "plughost",
    version,
    about = "Serve WSGI-style apps and filters from plugin libraries, configured by a Paste Deploy INI file"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the configuration and serve it over HTTP.
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        /// Use [server:NAME] instead of [server:main].
        #[arg(long, value_name = "NAME")]
        server_name: Option<String>,
        /// Listen on this host instead of the server section's.
        #[arg(long)]
        host: Option<String>,
        /// Listen on this port instead of the server section's (0 picks a free one).
        #[arg(long)]
        port: Option<u16>,
        /// Reload when the config, an included file or a plugin library changes
        /// (SIGHUP reloads with or without this).
        #[arg(long)]
        reload: bool,
    },
    /// Resolve the configuration, load every plugin and run every factory,
    /// without listening; print the tree and any warnings.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
        /// Check [server:NAME] instead of [server:main].
        #[arg(long, value_name = "NAME")]
        server_name: Option<String>,
        /// Print the tree as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Work with the disk cache of a configuration.
    #[command(subcommand)]
    Cache(CacheCommand),
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Delete cached pages, through the same URL → file mapping the cache filter
    /// uses (symlinks are never followed). PATH is the URL path as the cache
    /// filter sees it (its PATH_INFO).
    Purge {
        /// The config file, optionally with `#NAME` to pick the app.
        #[arg(value_name = "CONFIG[#NAME]")]
        config: String,
        /// URL paths to purge, e.g. `/about` or `/blog/`.
        #[arg(required_unless_present = "tag", value_name = "PATH")]
        paths: Vec<String>,
        /// Purge every page at or below each PATH.
        #[arg(long)]
        prefix: bool,
        /// Purge every page stored with this tag (its `Surrogate-Key` or
        /// `Cache-Tag`); may be repeated.
        #[arg(long, value_name = "TAG")]
        tag: Vec<String>,
        /// Refresh the pages instead of deleting them: each is requested
        /// through the pipeline again, the new answer replaces the old file
        /// (served until then), a page that may not be stored now is removed.
        #[arg(long)]
        soft: bool,
        /// Only publish the purges to the section's `purge_bus` (every node
        /// applies them); nothing is deleted here.
        #[arg(long)]
        bus: bool,
    },
    /// Request pages through the pipeline in-process (nothing listens) so the
    /// cache stores them before the first visitor asks; prints what was stored,
    /// already cached, skipped (and why) and failed. Exit code 1 if any failed.
    #[command(
        group(clap::ArgGroup::new("what").required(true).multiple(true).args(["paths", "from", "sitemap"])),
        override_usage = "plughost cache warm CONFIG[#NAME] [PATH...] [--from FILE] [--sitemap FILE] [OPTIONS]"
    )]
    Warm {
        /// The config file, optionally with `#NAME` to pick the app.
        #[arg(value_name = "CONFIG[#NAME]")]
        config: String,
        /// URL paths to warm, e.g. `/about` or `/blog/`.
        #[arg(value_name = "PATH")]
        paths: Vec<String>,
        /// A file of URL paths (one a line) or an Apache/nginx access log
        /// (its GETs answered 2xx/3xx, most requested first); `-` reads stdin.
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        /// A sitemap.xml (or a sitemap index of local files): every <loc>'s path.
        #[arg(long, value_name = "FILE")]
        sitemap: Option<PathBuf>,
        /// Requests in flight at once.
        #[arg(long, value_name = "N", default_value = "4")]
        concurrency: std::num::NonZeroUsize,
        /// The Host header to send (default: the server section's host:port).
        #[arg(long)]
        host: Option<String>,
        /// Print each path's outcome as it is done.
        #[arg(long, short)]
        verbose: bool,
    },
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// The config file, optionally with `#NAME` to pick the app (default: main).
    #[arg(default_value = "deploy.ini", value_name = "CONFIG[#NAME]")]
    config: String,
    /// Variables (`name=value`) for global_conf and `%(name)s`.
    #[arg(value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// The Python environment of WSGI apps (a virtualenv or an interpreter),
    /// when `$VIRTUAL_ENV` is not set; the same as `PLUGHOST_PYTHON`.
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
}

/// `--python`: the WSGI bridge plugin reads it from the environment.
fn set_python(command: &Command) {
    if let Command::Serve { config, .. } | Command::Check { config, .. } = command {
        if let Some(python) = &config.python {
            // Before any thread exists: nothing reads the environment concurrently.
            std::env::set_var("PLUGHOST_PYTHON", python);
        }
    }
}

/// `file.ini#name` into its parts.
fn split_config(spec: &str) -> (PathBuf, Option<String>) {
    match spec.rsplit_once('#') {
        Some((file, name)) if !name.is_empty() => (PathBuf::from(file), Some(name.to_owned())),
        _ => (PathBuf::from(spec.trim_end_matches('#')), None),
    }
}

fn parse_vars(vars: &[String]) -> Result<Vec<(String, String)>> {
    vars.iter()
        .map(|v| match v.split_once('=') {
            Some((k, val)) if !k.is_empty() => Ok((k.to_owned(), val.to_owned())),
            _ => bail!("expected a variable as name=value, found {v:?}"),
        })
        .collect()
}

fn main() {
    let cli = Cli::parse();
    set_python(&cli.command);
    let result = match cli.command {
        Command::Serve {
            config,
            server_name,
            host,
            port,
            reload,
        } => serve(&config, server_name.as_deref(), host, port, reload),
        Command::Check {
            config,
            server_name,
            json,
        } => check(&config, server_name.as_deref(), json),
        Command::Cache(CacheCommand::Purge {
            config,
            paths,
            prefix,
            tag,
            soft,
            bus,
        }) => purge(&config, &paths, prefix, &tag, soft, bus),
        Command::Cache(CacheCommand::Warm {
            config,
            paths,
            from,
            sitemap,
            concurrency,
            host,
            verbose,
        }) => {
            let options = plughost::warm::Options {
                paths,
                from,
                sitemap,
                concurrency: concurrency.get(),
                host,
                verbose,
            };
            warm(&config, &options)
        }
    };
    if let Err(e) = result {
        eprintln!("plughost: error: {e:#}");
        std::process::exit(1);
    }
}

/// Logging from the loaded config's `[loggers]` sections when it has them (as
/// pserve does), else stderr filtered by `RUST_LOG` (default `info`). Set up
/// right after the load (which logs nothing), from the file the load read.
fn setup_logging(main: &MainFile) -> std::result::Result<(), LoggingSetup> {
    let spec = plughost::logging::from_config(main)?;
    plughost::logging::init(spec.as_ref()).map_err(LoggingSetup::Init)
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
enum LoggingSetup {
    #[error(transparent)]
    Config(#[from] LoggingError),
    #[error("cannot set up logging: {0}")]
    Init(plughost::logging::InitError),
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Plugin calls run on the worker pool's own threads; blocking threads
        // read files, spooled request bodies and plugin body chunks, one at a time.
        .thread_name("plughost")
        .build()
        .context("cannot start the async runtime")
}

fn serve(
    args: &ConfigArgs,
    server_name: Option<&str>,
    host: Option<String>,
    port: Option<u16>,
    watch: bool,
) -> Result<()> {
    let (path, app_name) = split_config(&args.config);
    let spec = LoadSpec {
        path,
        app_name,
        server_name: server_name.map(str::to_owned),
        vars: parse_vars(&args.vars)?,
        host,
        port,
    };
    let deployment = spec.load()?;
    setup_logging(&deployment.main)?;
    let rt = runtime()?;
    let reloader = Reloader::start(spec, &deployment, rt.handle().clone())?;
    for w in &deployment.warnings {
        tracing::warn!("{w}");
    }
    // Started by `plughost` itself for an in-place restart: the old process's sockets.
    let mut inherited = plughost::handover::inherited()?;
    rt.block_on(async move {
        let listeners = match &mut inherited {
            Some(i) => {
                let (tcp, unix) = i.sockets();
                server::adopt(&deployment.server, tcp, unix).await?
            }
            None => server::bind(&deployment.server).await?,
        };
        let (tcp, unix) = listeners.copies()?;
        let handover = std::sync::Arc::new(plughost::handover::Handover::new(tcp, unix)?);
        // Take over SIGINT, SIGTERM, SIGHUP and SIGUSR2 before saying we
        // listen: a signal sent as soon as that line appears must drain,
        // reload or restart, not meet the default action (which ends the process).
        let shutdown = shutdown_signal();
        let hup = reloader.clone().on_sighup();
        let restarted = std::sync::Arc::new(tokio::sync::Notify::new());
        let restart = restart_in_place(handover, reloader.python_changed(), restarted.clone())?;
        let mut out = std::io::stdout().lock();
        for address in listeners.addresses()? {
            writeln!(out, "plughost: listening on {address}")?;
        }
        out.flush()?;
        drop(out);
        tracing::info!(config = %deployment.files[0].display(), threads = reloader.pool().size(), reload = watch, "serving");
        tokio::spawn(hup);
        tokio::spawn(restart);
        if watch {
            tokio::spawn(reloader.clone().watch());
        }
        if let Some(i) = inherited {
            tracing::info!("took over the listening sockets from the previous process");
            i.ready();
        }
        let stop = async move {
            tokio::select! {
                () = shutdown => {}
                () = restarted.notified() => {}
            }
        };
        server::serve(listeners, reloader.live(), deployment.server.clone(), stop).await;
        Ok(())
    })
}

/// On SIGUSR2 (a binary upgrade) or a changed Python file (`--reload`): start
/// a new process on the same sockets, and once it serves, tell `restarted`
/// (this process then drains and exits). A failed attempt keeps this process
/// serving.
fn restart_in_place(
    handover: std::sync::Arc<plughost::handover::Handover>,
    python_changed: std::sync::Arc<tokio::sync::Notify>,
    restarted: std::sync::Arc<tokio::sync::Notify>,
) -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut usr2 = signal(SignalKind::user_defined2()).context("cannot listen for SIGUSR2")?;
    Ok(async move {
        loop {
            tokio::select! {
                _ = usr2.recv() => tracing::info!("SIGUSR2 received: restarting in place"),
                () = python_changed.notified() => {}
            }
            let h = handover.clone();
            match tokio::task::spawn_blocking(move || h.run()).await {
                Ok(Ok(pid)) => {
                    tracing::info!("handed the listening sockets to PID {pid}; draining");
                    server::keep_unix_socket_file();
                    restarted.notify_one();
                    return;
                }
                Ok(Err(e)) => tracing::error!("in-place restart failed, still serving: {e}"),
                Err(e) => tracing::error!("in-place restart failed, still serving: {e}"),
            }
        }
    })
}

fn check(args: &ConfigArgs, server_name: Option<&str>, json: bool) -> Result<()> {
    let checked = run_check(args, server_name);
    let out = match (&checked, json) {
        (Ok((deployment, more)), true) => {
            format!("{:#}\n", check::deployment_json(deployment, more))
        }
        (Err(failure), true) => {
            let (path, _) = split_config(&args.config);
            let at = failure
                .at
                .clone()
                .unwrap_or_else(|| Location::file(std::path::absolute(&path).unwrap_or(path)));
            let warnings: Vec<&Warning> = failure.warnings.iter().collect();
            format!(
                "{:#}\n",
                check::failure_json(&[(at, failure.message.clone())], &warnings)
            )
        }
        (Ok((deployment, more)), false) => {
            let mut out = check::deployment_text(deployment);
            for w in deployment.warnings.iter().chain(more) {
                out.push_str(&format!("warning: {w}\n"));
            }
            out.push_str(&format!("{}: OK\n", deployment.files[0].display()));
            out
        }
        (Err(failure), false) => match &failure.at {
            Some(at) => bail!("{at}: {}", failure.message),
            None => bail!("{}", failure.message),
        },
    };
    write_stdout(&out)?;
    if checked.is_err() {
        std::process::exit(1);
    }
    Ok(())
}

/// Why `check` failed: where, when a config file is to blame, and the
/// warnings found before it.
struct CheckFailure {
    at: Option<Location>,
    message: String,
    warnings: Vec<Warning>,
}

impl CheckFailure {
    fn new(at: Option<Location>, message: String, warnings: &[Warning]) -> Box<CheckFailure> {
        Box::new(CheckFailure {
            at,
            message,
            warnings: warnings.to_vec(),
        })
    }
}

/// `check`'s work, whatever it prints: resolve the file, load every plugin and
/// run every factory without listening. On success, the deployment and the
/// warnings loading found.
fn run_check(
    args: &ConfigArgs,
    server_name: Option<&str>,
) -> std::result::Result<(Deployment, Vec<Warning>), Box<CheckFailure>> {
    let (path, name) = split_config(&args.config);
    let vars = parse_vars(&args.vars).map_err(|e| CheckFailure::new(None, e.to_string(), &[]))?;
    let deployment = plughost::load(&path, name.as_deref(), server_name, &vars)
        .map_err(|e| CheckFailure::new(Some(e.at), e.message, &[]))?;
    setup_logging(&deployment.main).map_err(|e| match e {
        // Even a broken [loggers] section is one JSON document for --json.
        LoggingSetup::Config(e) => CheckFailure::new(Some(e.at), e.message, &deployment.warnings),
        e => CheckFailure::new(None, e.to_string(), &deployment.warnings),
    })?;
    let rt =
        runtime().map_err(|e| CheckFailure::new(None, format!("{e:#}"), &deployment.warnings))?;
    let registry = Registry::new();
    let pool = WorkerPool::new(1, deployment.server.request_timeout);
    match plughost::build(&deployment, &registry, &pool, rt.handle()) {
        Ok(built) => Ok((deployment, built.warnings)),
        Err(e) => Err(CheckFailure::new(
            Some(e.at),
            e.failure.to_string(),
            &deployment.warnings,
        )),
    }
}

/// Write to stdout; a reader that went away (`check | head`) ends the
/// command quietly instead of with a panic or an error line.
fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn purge(
    config: &str,
    paths: &[String],
    prefix: bool,
    tags: &[String],
    soft: bool,
    bus: bool,
) -> Result<()> {
    use plughost::cache::{Purger, BUILTIN as CACHE};
    use plughost::config::Source;

    for url in paths {
        if url.is_empty() || url.contains('?') {
            // A usage error, as clap's are.
            eprintln!(
                "plughost: error: {url:?}: expected a URL path such as `/about` (not empty, no query string)"
            );
            std::process::exit(2);
        }
    }
    if let Some(bad) = tags.iter().find(|t| !plughost::cache::valid_tag(t)) {
        eprintln!(
            "plughost: error: {bad:?}: not a tag (visible ASCII, no commas, at most 128 bytes)"
        );
        std::process::exit(2);
    }
    let (path, name) = split_config(config);
    let deployment = plughost::load(&path, name.as_deref(), None, &[])?;
    setup_logging(&deployment.main)?;
    let caches: Vec<_> = deployment
        .app
        .components()
        .into_iter()
        .filter(|c| c.source == Source::Builtin(&CACHE))
        .collect();
    if caches.is_empty() {
        bail!(
            "{} has no cache filter (egg:plughost#cache or egg:wsgi_cache#middleware)",
            path.display()
        );
    }
    // With a purge bus, every node applies what is published (a soft purge
    // too: each node refreshes its own copy); --bus publishes only.
    let mut published = false;
    for c in &caches {
        match plughost::cache::publish(c, paths, prefix, tags, soft) {
            Ok(Some((n, url))) => {
                println!("published {n} purge(s) to {url}");
                published = true;
            }
            Ok(None) if bus => bail!("{}: {}", c.location(), plughost::cache::PurgeError::NoBus),
            Ok(None) => {}
            Err(e) if bus => bail!("{e}"),
            Err(e) => {
                eprintln!("plughost: error: {e} (applied here only)");
            }
        }
    }
    if bus || (soft && published) {
        return Ok(());
    }
    if soft {
        let rt = runtime()?;
        let done = plughost::soft_purge::run(&deployment, paths, prefix, tags, &rt)?;
        drop(rt);
        write_stdout(&done.to_string())?;
        if done.failed() > 0 {
            std::process::exit(1);
        }
        return Ok(());
    }
    let mut failed = false;
    for c in caches {
        let Some(purger) = Purger::new(c).map_err(|e| anyhow::anyhow!("{}: {e}", c.location()))?
        else {
            continue;
        };
        for url in paths {
            match purger.purge(url, prefix) {
                Ok(done) => println!(
                    "{url}: purged {} page(s) from {}",
                    done.files,
                    purger.cache_dir().display()
                ),
                Err(e) => {
                    eprintln!("plughost: error: {e}");
                    failed = true;
                }
            }
        }
        if !tags.is_empty() {
            match purger.purge_tags(tags) {
                Ok(done) => println!(
                    "tag {}: purged {} page(s) from {}",
                    tags.join(", "),
                    done.files,
                    purger.cache_dir().display()
                ),
                Err(e) => {
                    eprintln!("plughost: error: {e}");
                    failed = true;
                }
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

fn warm(config: &str, options: &plughost::warm::Options) -> Result<()> {
    let (path, name) = split_config(config);
    let deployment = plughost::load(&path, name.as_deref(), None, &[])?;
    setup_logging(&deployment.main)?;
    let rt = runtime()?;
    let summary = match plughost::warm::run(&deployment, options, &rt) {
        Ok(summary) => summary,
        Err(e) if e.is_usage() => {
            // A usage error, as clap's are.
            eprintln!("plughost: error: {e}");
            std::process::exit(2);
        }
        Err(e) => return Err(e.into()),
    };
    // Work the cache started on blocking threads after a page was stored (its
    // compressed twins) finishes before the process exits; an interrupted run
    // waits for it only briefly.
    if summary.interrupted() {
        rt.shutdown_timeout(std::time::Duration::from_secs(2));
    } else {
        drop(rt);
    }
    write_stdout(&summary.to_string())?;
    if summary.interrupted() {
        // As a shell reports a command ended by SIGINT.
        std::process::exit(130);
    }
    if summary.failed() > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called (not when the future is first polled).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    async fn recv(s: std::io::Result<Signal>) {
        match s {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    }
    let (int, term) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        tokio::select! {
            _ = recv(int) => tracing::info!("SIGINT received"),
            _ = recv(term) => tracing::info!("SIGTERM received"),
        }
    }
}
