//! Clients looping requests on fresh connections while a test changes the
//! server under them, collecting every failure.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::request;

/// `n` client threads GETting paths from `port` until stopped (thread `i`
/// asks for `paths[i % paths.len()]`).
pub struct Load {
    stop: Arc<AtomicBool>,
    pub ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    pub fn start(port: u16, path: &'static str, n: usize) -> Load {
        Load::start_paths(port, &[path], n)
    }

    pub fn start_paths(port: u16, paths: &[&'static str], n: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..n)
            .map(|i| {
                let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
                let path = paths[i % paths.len()];
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match request(port, "GET", path, &[], b"") {
                            Ok(r) if r.status == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => failures
                                .lock()
                                .unwrap()
                                .push(format!("{path}: status {}", r.status)),
                            Err(e) => failures.lock().unwrap().push(format!("{path}: {e}")),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failures,
            threads,
        }
    }

    /// Stop the clients: (requests answered 200, failures).
    pub fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

/// The PID an in-place restart handed the sockets to, from the old process's log.
pub fn handed_to(log: &str) -> Option<u32> {
    let at = log.rfind("handed the listening sockets to PID ")?;
    log[at..]
        .trim_start_matches("handed the listening sockets to PID ")
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A process this test did not start itself (the one a handover started),
/// stopped with SIGTERM when dropped, also when the test fails.
pub struct Adopted(pub u32);

impl Drop for Adopted {
    fn drop(&mut self) {
        super::signal(self.0, "TERM");
    }
}
