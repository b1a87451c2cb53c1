//! Child processes that are always cleaned up, and their memory use.
//!
//! Every process the benchmark starts is a [`Proc`]: dropping it (normal exit, an
//! error, a panic) stops the process and any children it forked (nginx's
//! workers); a SIGINT/SIGTERM handler does the same for whatever is still running
//! and removes the temporary directory. Signals go through rustix (no `unsafe`).

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::process::{kill_process, Pid, Signal};

/// Processes alive right now (pid, comm), for the signal handler.
static LIVE: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());
/// The temporary directory, for the signal handler.
static TEMP: Mutex<Option<PathBuf>> = Mutex::new(None);

fn live() -> std::sync::MutexGuard<'static, Vec<(u32, String)>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// On SIGINT/SIGTERM: stop every child, remove the temp dir, exit 130.
pub fn install_signal_handler() -> Result<()> {
    ctrlc::set_handler(|| {
        eprintln!(
            "\n{}: interrupted; stopping servers",
            env!("CARGO_BIN_NAME")
        );
        let procs: Vec<(u32, String)> = live().clone();
        for (pid, comm) in &procs {
            terminate_tree(*pid, comm, Duration::from_secs(2));
        }
        if let Some(dir) = TEMP.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = fs::remove_dir_all(dir);
        }
        std::process::exit(130);
    })
    .context("cannot install the Ctrl-C handler")
}

/// Remember the temp dir so an interrupt removes it (normal exits drop the TempDir).
pub fn set_temp_dir(dir: Option<&Path>) {
    *TEMP.lock().unwrap_or_else(|e| e.into_inner()) = dir.map(Path::to_owned);
}

fn register(pid: u32) {
    let comm = comm_of(pid).unwrap_or_default();
    live().push((pid, comm));
}

fn unregister(pid: u32) {
    live().retain(|(p, _)| *p != pid);
}

/// The process name of `pid`, from /proc.
fn comm_of(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; its state is `Z`.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, sig);
    }
}

/// The direct children of `pid` (nginx's workers), from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    // pid (comm) state ppid ...
                    let rest = stat.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// SIGTERM `pid` and its children, wait up to `grace`, then SIGKILL what is left.
/// Only used from the signal handler, which cannot reap; [`Proc`]'s Drop reaps.
fn terminate_tree(pid: u32, comm: &str, grace: Duration) {
    if comm_of(pid).as_deref() != Some(comm) {
        return; // gone, or the pid was reused
    }
    let kids: Vec<(u32, String)> = children_of(pid)
        .into_iter()
        .filter_map(|k| Some((k, comm_of(k)?)))
        .collect();
    signal(pid, Signal::TERM);
    let deadline = Instant::now() + grace;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if alive(pid) {
        signal(pid, Signal::KILL);
    }
    for (kid, kid_comm) in kids {
        if alive(kid) && comm_of(kid).as_deref() == Some(kid_comm.as_str()) {
            signal(kid, Signal::KILL);
        }
    }
}

/// A started process, stopped (with its children) when dropped.
pub struct Proc {
    pub name: String,
    pub pid: u32,
    child: Child,
    /// Where its stderr (and stdout, if not read) goes.
    pub log: PathBuf,
}

impl Proc {
    /// Start `cmd` with stderr (and stdout unless `read_stdout`) into `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path, read_stdout: bool) -> Result<Proc> {
        let err =
            fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let out: Stdio = if read_stdout {
            Stdio::piped()
        } else {
            err.try_clone()?.into()
        };
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
        let pid = child.id();
        register(pid);
        Ok(Proc {
            name: name.to_owned(),
            pid,
            child,
            log: log.to_owned(),
        })
    }

    /// Wait for a stdout line containing `listening on http://ADDR` and return ADDR;
    /// stdout is drained in the background afterwards.
    pub fn wait_listening(&mut self, timeout: Duration) -> Result<SocketAddr> {
        let stdout = self
            .child
            .stdout
            .take()
            .context("stdout was not captured")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some((_, addr)) = line.split_once("listening on http://") {
                        let _ = tx.send(addr.trim().to_owned());
                        sent = true;
                    }
                }
            }
        });
        let deadline = Instant::now() + timeout;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(addr) => {
                    return addr
                        .parse()
                        .with_context(|| format!("{} printed a bad address {addr:?}", self.name))
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    self.still_running()?
                }
                Err(_) => bail!(
                    "{} did not print `listening on` within {timeout:?}; its log {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log)
                ),
            }
        }
    }

    /// An error, with the tail of its log, if the server has already exited.
    fn still_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}) before listening; its log {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log)
            );
        }
        Ok(())
    }

    /// Wait until `addr` accepts connections (for nginx, which prints nothing).
    pub fn wait_port(&mut self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            self.still_running()?;
            if Instant::now() > deadline {
                bail!("{} is not listening on {addr} after {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process and its direct children (nginx master + workers).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.pid];
        pids.extend(children_of(self.pid));
        pids
    }

    /// Fail if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); its log {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log)
            );
        }
        Ok(())
    }
}

impl Proc {
    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns how it exited, and
    /// whether it exited on its own within `grace` (None if it could not be reaped).
    pub fn stop(&mut self, grace: Duration) -> Option<(std::process::ExitStatus, bool)> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some((status, true));
        }
        signal(self.pid, Signal::TERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some((status, true)),
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        let _ = self.child.kill();
        self.child.wait().ok().map(|status| (status, false))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let kids: Vec<(u32, Option<String>)> = children_of(self.pid)
            .into_iter()
            .map(|k| (k, comm_of(k)))
            .collect();
        self.stop(Duration::from_secs(5));
        // Orphaned children (if the parent was killed) get no second chance.
        for (kid, comm) in kids {
            if alive(kid) && comm.is_some() && comm_of(kid) == comm {
                signal(kid, Signal::KILL);
            }
        }
        unregister(self.pid);
    }
}

/// Run a short-lived command to completion (registered so an interrupt stops it),
/// returning its stdout; fails with its stderr on a non-zero exit.
pub fn run_captured(name: &str, mut cmd: Command) -> Result<String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
    let pid = child.id();
    register(pid);
    let out = child.wait_with_output();
    unregister(pid);
    let out = out.with_context(|| format!("waiting for {name}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{name} failed ({}):\n{}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// The last lines of a log file, for error messages.
pub fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Sum of a status field over `pids`, in KiB.
pub fn sum_kib(pids: &[u32], field: &str) -> Option<u64> {
    let mut total = 0;
    for pid in pids {
        total += status_kib(*pid, field)?;
    }
    Some(total)
}

/// Reset the peak RSS (VmHWM) of `pids` to their current RSS (`clear_refs` 5).
/// Returns false where the kernel does not allow it (peaks are then cumulative).
pub fn reset_peak(pids: &[u32]) -> bool {
    pids.iter()
        .all(|pid| fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok())
}

/// Raise this process's open-file limit (children inherit it) to `want`, or as far
/// as the hard limit allows. Returns the soft limit in force.
pub fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    let hard = cur.maximum.unwrap_or(u64::MAX);
    // Root may raise the hard limit too; anyone may raise the soft one to it.
    if hard < want
        && setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(want),
                maximum: Some(want),
            },
        )
        .is_ok()
    {
        return want;
    }
    let soft = want.min(hard);
    if cur.current.is_some_and(|c| c >= soft) {
        return cur.current.unwrap_or(soft);
    }
    match setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(soft),
            maximum: cur.maximum,
        },
    ) {
        Ok(()) => soft,
        Err(_) => cur.current.unwrap_or(0),
    }
}
