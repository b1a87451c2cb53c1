//! A real nginx for tests that put it in front of (or behind) plughost: found on
//! PATH or at /usr/sbin/nginx, run in the foreground on a config the test wrote,
//! killed by its PID when dropped.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nginx binary, if one is installed.
pub fn binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nginx"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
}

/// A free loopback port (bound and released; the caller binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A foreground nginx (no daemon, no master process), killed on drop.
pub struct Nginx {
    child: Child,
    pub port: u16,
    pub logs: PathBuf,
}

impl Nginx {
    /// Run `conf` (a whole nginx.conf; `{logs}` in it is replaced by the log
    /// directory) from `dir`, and wait until it listens on `port`.
    pub fn start(bin: &Path, dir: &Path, conf: &str, port: u16) -> Nginx {
        let logs = dir.join("nginx-logs");
        std::fs::create_dir_all(&logs).unwrap();
        let conf = conf.replace("{logs}", &logs.display().to_string());
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let globals = format!(
            "daemon off; master_process off; pid {0}/nginx.pid; error_log {0}/error.log;",
            logs.display()
        );
        let mut child = Command::new(bin)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", &globals])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nginx starts");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                let log = std::fs::read_to_string(logs.join("error.log")).unwrap_or_default();
                panic!("nginx exited ({status}): {err}{log}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nginx did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { child, port, logs }
    }

    /// The nginx process's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A whole nginx.conf around `servers` (the `server { }` blocks): no access log,
/// and every temp path under the log directory, so a test's nginx writes only
/// inside its own directory.
pub fn http_conf(servers: &str) -> String {
    format!(
        "events {{ worker_connections 64; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {{logs}}/body; proxy_temp_path {{logs}}/proxy;\n\
           fastcgi_temp_path {{logs}}/fcgi; uwsgi_temp_path {{logs}}/uwsgi; scgi_temp_path {{logs}}/scgi;\n\
           {servers}\n\
         }}\n"
    )
}
