//! The front rows: plughost's proxy and gzip built-ins against nginx doing
//! the same job. `proxy-2k`: a 2 KiB page from one backend (the baseline
//! hyper server) through `egg:plughost#proxy` vs nginx `proxy_pass` with a
//! keep-alive upstream. `gzip-32k`: a 32 KiB HTML file from the static app
//! under `egg:plughost#gzip` vs nginx `gzip on`, both at level 6.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Result};

use crate::procs::{self, Proc};
use crate::{http, servers, tools, wrk};

/// The scenario keys these rows answer to in `--scenarios`.
pub const KEYS: &[&str] = &["proxy-2k", "gzip-32k"];

/// The wrk settings of the run.
pub struct Settings {
    pub rounds: u32,
    pub duration: u32,
    pub threads: u32,
    pub connections: u32,
    pub server_threads: u32,
}

const LEVEL: u32 = 6;

/// Whether the front rows run for this `--scenarios` list.
pub fn wanted(scenarios: &[String]) -> bool {
    scenarios.is_empty() || scenarios.iter().any(|s| KEYS.contains(&s.as_str()))
}

/// Compressible HTML of exactly `n` bytes: varied words, as real pages are.
fn html(n: usize) -> String {
    let words = [
        "plughost", "cache", "page", "proxy", "nginx", "backend", "request", "header", "stream",
        "body", "gzip", "level", "client", "server", "config",
    ];
    let mut out = String::from("<!doctype html><html><head><title>bench</title></head><body>\n");
    let mut i = 0usize;
    while out.len() < n - 20 {
        out.push_str(&format!(
            "<p class=\"r{}\">{} {} {}</p>\n",
            i % 7,
            words[i % words.len()],
            words[(i * 7 + 3) % words.len()],
            i
        ));
        i += 1;
    }
    out.push_str("</body></html>\n");
    while out.len() < n {
        out.push(' ');
    }
    out.truncate(n);
    out
}

fn nginx_conf(dir: &Path, port: u16, body: &str) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process on;\nworker_processes auto;\npid {d}/front-nginx.pid;\n\
         error_log {d}/front-nginx-error.log warn;\nevents {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 100000000;\n  default_type text/html;\n\
           client_body_temp_path {d}/nginx-tmp/body; proxy_temp_path {d}/nginx-tmp/proxy;\n\
           fastcgi_temp_path {d}/nginx-tmp/fastcgi; uwsgi_temp_path {d}/nginx-tmp/uwsgi;\n\
           scgi_temp_path {d}/nginx-tmp/scgi;\n\
           upstream backend {{ server {body}; keepalive 64; }}\n\
           server {{\n    listen 127.0.0.1:{port};\n    root {d}/site;\n\
             gzip on; gzip_comp_level {LEVEL}; gzip_min_length 256; gzip_vary on;\n\
             location /proxy/ {{\n      proxy_pass http://backend/;\n      proxy_http_version 1.1;\n\
               proxy_set_header Connection \"\";\n      proxy_set_header Host $proxy_host;\n\
               proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
               proxy_set_header X-Forwarded-Proto $scheme;\n      proxy_set_header X-Forwarded-Host $host;\n\
               proxy_buffering on;\n    }}\n  }}\n}}\n"
    )
}

fn plughost_conf(dir: &Path, backend: SocketAddr, threads: u32) -> String {
    format!(
        "[composite:main]\nuse = egg:Paste#urlmap\n/proxy = proxy\n/ = site\n\n\
         [app:proxy]\nuse = egg:plughost#proxy\naddress = http://{backend}/\n\n\
         [app:site]\nuse = egg:plughost#static\ndocument_root = {}\nfilter-with = gz\n\n\
         [filter:gz]\nuse = egg:plughost#gzip\ncompress_level = {LEVEL}\n\n\
         [server:main]\nuse = egg:waitress#main\nthreads = {threads}\n",
        dir.join("site").display()
    )
}

/// One row's runs.
struct Row {
    key: &'static str,
    server: &'static str,
    rps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    errors: u64,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Run the front rows; the lines to print.
pub fn run(
    s: &Settings,
    tools: &tools::Tools,
    bins: &tools::Binaries,
    dir: &Path,
    scenarios: &[String],
) -> Result<String> {
    let dir = dir.join("front");
    fs::create_dir_all(dir.join("site"))?;
    fs::create_dir_all(dir.join("nginx-tmp"))?;
    let small = servers::page(2048, 3);
    fs::write(dir.join("backend.body"), &small)?;
    let page = html(32 * 1024);
    fs::write(dir.join("site/page.html"), &page)?;

    let (_backend, backend) = servers::start_baseline(
        &bins.baseline,
        &dir.join("backend.body"),
        &dir.join("backend.log"),
    )?;
    let ini = dir.join("front.ini");
    fs::write(&ini, plughost_conf(&dir, backend, s.server_threads))?;
    let (mut plughost, p_addr) = servers::start_plughost(
        "plughost (front)",
        &bins.plughost,
        &bins.plugin_dir,
        &ini,
        &dir.join("plughost.log"),
    )?;
    let port = servers::free_port()?;
    let conf = dir.join("nginx.conf");
    fs::write(&conf, nginx_conf(&dir, port, &backend.to_string()))?;
    let mut cmd = std::process::Command::new(&tools.nginx);
    cmd.arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("front-nginx-error.log"))
        .arg("-c")
        .arg(&conf);
    let mut nginx = Proc::spawn("nginx (front)", cmd, &dir.join("nginx-stderr.log"), false)?;
    let n_addr = SocketAddr::from(([127, 0, 0, 1], port));
    nginx.wait_port(n_addr, std::time::Duration::from_secs(20))?;

    // Both must answer the same bytes before they are timed.
    for addr in [p_addr, n_addr] {
        let r = http::get(addr, "/proxy/")?;
        if r.status != 200 || r.body != small.as_bytes() {
            bail!(
                "{addr} /proxy/: status {} and {} bytes, not the backend's page",
                r.status,
                r.body.len()
            );
        }
        let mut c = http::Conn::open(addr)?;
        let r = c.request("GET", "/page.html", &[("Accept-Encoding", "gzip")])?;
        if r.header("content-encoding") != Some("gzip") {
            bail!("{addr} /page.html was not gzipped");
        }
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&r.body[..]), &mut plain)?;
        if plain != page.as_bytes() {
            bail!("{addr} /page.html gzip decodes to other bytes");
        }
    }

    let script = dir.join("gzip.lua");
    fs::write(&script, "wrk.headers[\"Accept-Encoding\"] = \"gzip\"\n")?;
    let mut rows = Vec::new();
    for (key, path, gz) in [
        ("proxy-2k", "/proxy/", false),
        ("gzip-32k", "/page.html", true),
    ] {
        if !scenarios.is_empty() && !scenarios.iter().any(|k| k == key) {
            continue;
        }
        let mut pair = [("plughost", p_addr), ("nginx", n_addr)].map(|(server, addr)| {
            (
                Row {
                    key,
                    server,
                    rps: vec![],
                    p50: vec![],
                    p99: vec![],
                    errors: 0,
                },
                addr,
            )
        });
        for round in 0..s.rounds {
            let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                plughost.check_running()?;
                nginx.check_running()?;
                let (row, addr) = &mut pair[i];
                let load = wrk::Load {
                    threads: s.threads,
                    connections: s.connections,
                    duration_secs: s.duration,
                    script: gz.then(|| (script.clone(), vec![])),
                };
                let o = wrk::run(&tools.wrk, &format!("http://{addr}{path}"), &load)?;
                eprintln!(
                    "  round {}/{} {key:<10} {:<10} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
                    round + 1,
                    s.rounds,
                    row.server,
                    o.rps,
                    o.p50_ms,
                    o.p99_ms,
                    o.errors()
                );
                row.rps.push(o.rps);
                row.p50.push(o.p50_ms);
                row.p99.push(o.p99_ms);
                row.errors += o.errors();
            }
        }
        rows.extend(pair.map(|(r, _)| r));
    }
    let peak = procs::sum_kib(&plughost.pids(), "VmHWM").unwrap_or(0);
    let mut out = String::from(
        "front rows (issue 16): plughost's proxy and gzip vs nginx\n\
         | scenario | server   | req/s median | p50 ms | p99 ms | errors | ratio (plughost/nginx) |\n\
         |----------|----------|-------------:|-------:|-------:|-------:|-----------------------:|\n",
    );
    for pair in rows.chunks(2) {
        let ratio = median(&pair[0].rps) / median(&pair[1].rps).max(1.0);
        for (i, r) in pair.iter().enumerate() {
            out.push_str(&format!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {} |\n",
                r.key,
                r.server,
                median(&r.rps),
                median(&r.p50),
                median(&r.p99),
                r.errors,
                if i == 0 {
                    format!(
                        "{ratio:.2}x (target >= 1.0x: {})",
                        if ratio >= 1.0 { "PASS" } else { "MISS" }
                    )
                } else {
                    String::new()
                }
            ));
        }
    }
    out.push_str(&format!("plughost (front) peak RSS {} MiB\n", peak / 1024));
    Ok(out)
}
