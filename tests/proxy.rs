//! `egg:plughost#proxy` in front of a real gunicorn (PyPI, in a test venv):
//! what reaches the backend, keep-alive reuse, 502/504, a unix-socket backend,
//! 100 MiB each way with bounded memory, and the page cache in front.

mod support;

use std::io::{BufReader, Read};
use std::time::Duration;

use support::gunicorn::Gunicorn;
use support::*;

fn backend(dir: &std::path::Path) -> Option<Gunicorn> {
    let Some(venv) = gunicorn::venv() else {
        skip_unless_ci("no venv with gunicorn (python3 -m venv, pip from PyPI)");
        return None;
    };
    let port = nginx::free_port();
    Some(Gunicorn::start(&venv, dir, &format!("127.0.0.1:{port}")))
}

#[test]
fn the_backend_sees_the_path_query_and_forwarded_headers_but_no_hop_by_hop_ones() {
    let dir = tempdir();
    let Some(g) = backend(dir.path()) else { return };
    let host = Host::start_in(
        dir.path(),
        &format!(
            "[composite:main]\nuse = egg:Paste#urlmap\n/api = api\n/only-get = strict\n\n\
             [app:api]\nuse = egg:Paste#proxy\naddress = http://127.0.0.1:{p}/base/\n\
             suppress_http_headers = x-internal cookie\n\n\
             [app:strict]\nuse = egg:plughost#proxy\naddress = http://127.0.0.1:{p}\n\
             allowed_request_methods = GET head\n",
            p = g.port()
        ),
    );
    let reply = host.request(
        "POST",
        "/api/a%20b/c?x=1&y=%2F",
        &[
            ("Connection", "close, X-Secret"),
            ("X-Secret", "hop"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("X-Internal", "no"),
            ("Cookie", "a=b"),
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Kept", "yes"),
            ("Content-Type", "text/plain"),
        ],
        b"hello backend",
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["uri"], "/base/a%20b/c?x=1&y=%2F");
    assert_eq!(echo["path"], "/base/a b/c");
    assert_eq!(echo["query"], "x=1&y=%2F");
    assert_eq!(echo["body"], "hello backend");
    assert_eq!(echo["content_length"], "13");
    let h = &echo["headers"];
    assert_eq!(h["host"], format!("127.0.0.1:{}", g.port()));
    assert_eq!(h["x-kept"], "yes");
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "localhost");
    for gone in [
        "x-secret",
        "keep-alive",
        "te",
        "proxy-authorization",
        "x-internal",
        "cookie",
    ] {
        assert!(h.get(gone).is_none(), "{gone} reached the backend: {h}");
    }

    // The backend's status and headers pass through.
    let reply = host.get("/api/status?418");
    assert_eq!(reply.status, 418);
    assert_eq!(reply.header("x-backend"), Some("yes"));
    assert_eq!(reply.text(), "status 418");

    // allowed_request_methods.
    assert_eq!(host.get("/only-get/x").status, 200);
    let head = host.request("HEAD", "/only-get/page", &[], b"");
    assert_eq!(head.status, 200);
    let get = host.get("/only-get/page");
    assert!(get.header("content-length").is_some());
    assert_eq!(head.header("content-length"), get.header("content-length"));
    assert!(head.body.is_empty());
    let refused = host.request("DELETE", "/only-get/x", &[], b"");
    assert_eq!(refused.status, 405);
    assert_eq!(refused.header("allow"), Some("GET, HEAD"));
}

/// A request on a fresh client connection each time; the backend must see
/// the pool's few connections, not one per request.
#[test]
fn pooled_connections_are_reused_across_requests() {
    let dir = tempdir();
    let Some(g) = backend(dir.path()) else { return };
    let host = Host::start_in(
        dir.path(),
        &format!(
            "[app:main]\nuse = egg:plughost#proxy\naddress = http://127.0.0.1:{}\n",
            g.port()
        ),
    );
    for i in 0..60 {
        let reply = host.get(&format!("/echo?{i}"));
        assert_eq!(reply.status, 200);
    }
    let seen = host.get("/connections").json()["connections"]
        .as_u64()
        .unwrap();
    assert!(
        seen <= 3,
        "61 requests came over {seen} backend connections"
    );
}

#[test]
fn a_dead_backend_is_a_502_a_slow_one_a_504_and_the_host_keeps_serving() {
    let dir = tempdir();
    let Some(g) = backend(dir.path()) else { return };
    let dead = nginx::free_port();
    let host = Host::start_in(
        dir.path(),
        &format!(
            "[composite:main]\nuse = egg:Paste#urlmap\n/dead = dead\n/slow = slow\n/ok = ok\n\n\
             [app:dead]\nuse = egg:plughost#proxy\naddress = http://127.0.0.1:{dead}\n\n\
             [app:slow]\nuse = egg:plughost#proxy\naddress = http://127.0.0.1:{p}\ntimeout = 0.5\n\n\
             [app:ok]\nuse = egg:plughost#proxy\naddress = http://127.0.0.1:{p}\n",
            p = g.port()
        ),
    );
    let reply = host.get("/dead/x");
    assert_eq!(reply.status, 502);
    assert!(
        host.wait_log(
            &format!("proxy http://127.0.0.1:{dead}"),
            Duration::from_secs(5)
        ),
        "no log line naming the backend:\n{}",
        host.log()
    );
    let reply = host.get("/slow/slow?3");
    assert_eq!(reply.status, 504);
    assert!(
        host.wait_log("no response within", Duration::from_secs(5)),
        "{}",
        host.log()
    );
    assert_eq!(host.get("/ok/echo").status, 200);
    assert_eq!(host.get("/dead/again").status, 502);
}

#[test]
fn a_unix_socket_backend() {
    let dir = tempdir();
    let Some(venv) = gunicorn::venv() else {
        skip_unless_ci("no venv with gunicorn (python3 -m venv, pip from PyPI)");
        return;
    };
    let sock = dir.path().join("app.sock");
    let _g = Gunicorn::start(&venv, dir.path(), &format!("unix:{}", sock.display()));
    let host = Host::start_in(
        dir.path(),
        &format!(
            "[app:main]\nuse = egg:plughost#proxy\naddress = unix:{}\n",
            sock.display()
        ),
    );
    let echo = host.get("/over/unix?q").json();
    assert_eq!(echo["path"], "/over/unix");
    assert_eq!(echo["headers"]["host"], "localhost");
    for _ in 0..10 {
        assert_eq!(host.get("/again").status, 200);
    }
    assert_eq!(host.get("/connections").json()["connections"], 1);
}

const BIG: usize = 100 * 1024 * 1024;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn a_hundred_mib_each_way_streams_with_bounded_memory() {
    let dir = tempdir();
    let Some(g) = backend(dir.path()) else { return };
    let host = Host::start_in(
        dir.path(),
        &format!(
            "[app:main]\nuse = egg:plughost#proxy\naddress = http://127.0.0.1:{}\n\n\
             [server:main]\nuse = egg:waitress#main\nmax_body_bytes = 200000000\n",
            g.port()
        ),
    );
    let before = host.memory_kib("VmRSS");

    // Download: read and check it as it comes, never holding it all.
    let mut s = connect(host.port).unwrap();
    write_request(&mut s, "GET", &format!("/big?{BIG}"), &[], None, true).unwrap();
    let mut r = BufReader::with_capacity(1 << 16, s);
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        r.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {BIG}")),
        "{head}"
    );
    let (mut got, mut buf) = (0usize, vec![0u8; 1 << 16]);
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        for (k, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, ((got + k) % 251) as u8, "byte {} differs", got + k);
        }
        got += n;
    }
    assert_eq!(got, BIG);

    // Upload: the backend checks every byte.
    let body = pattern(BIG);
    let reply = host.request("PUT", "/upload", &[], &body);
    drop(body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let up = reply.json();
    assert_eq!(up["bytes"], BIG as u64);
    assert_eq!(up["pattern_ok"], true);

    let peak = host.memory_kib("VmHWM");
    eprintln!("host RSS before {before} KiB, peak {peak} KiB over 2 x 100 MiB");
    assert!(
        peak < before + 32 * 1024,
        "peak RSS {peak} KiB vs {before} KiB before: bodies were buffered"
    );
}

#[test]
fn the_cache_in_front_of_the_proxy_stores_the_backend_pages() {
    let dir = tempdir();
    let Some(g) = backend(dir.path()) else { return };
    let host = Host::start_in(
        dir.path(),
        &format!(
            "[app:main]\nuse = egg:plughost#proxy\naddress = http://127.0.0.1:{}\nfilter-with = cache\n\n\
             [filter:cache]\nuse = egg:plughost#cache\ncache_dir = cache\nstatus_header = X-Cache\n",
            g.port()
        ),
    );
    let first = host.get("/page");
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let second = host.get("/page");
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(second.body, first.body);
    let stored = std::fs::read_to_string(dir.path().join("cache/page")).unwrap();
    assert_eq!(stored, "<html><body>backend page</body></html>");
    let hits = request(g.port(), "GET", "/hits", &[], b"").unwrap().json();
    assert_eq!(hits["page"], 1, "the backend answered a cached page again");
}

/// A real nginx as the backend: its chunked, gzipped answer passes through
/// as it was sent (the client's Accept-Encoding reached it), and so do its
/// 404s.
#[test]
fn an_nginx_backend_and_its_chunked_gzipped_pages() {
    let Some(bin) = nginx::binary() else {
        skip_unless_ci("nginx not installed");
        return;
    };
    let dir = tempdir();
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    let page: String = (0..3000).map(|i| format!("<p>line {i}</p>\n")).collect();
    std::fs::write(site.join("page.html"), &page).unwrap();
    let port = nginx::free_port();
    let conf = nginx::http_conf(&format!(
        "types {{ text/html html; }}\n\
         server {{\n\
           listen 127.0.0.1:{port};\n\
           root {};\n\
           gzip on; gzip_types text/html;\n\
         }}",
        site.display()
    ));
    let _nginx = nginx::Nginx::start(&bin, dir.path(), &conf, port);
    let host = Host::start_in(
        dir.path(),
        &format!("[app:main]\nuse = egg:plughost#proxy\naddress = http://127.0.0.1:{port}/\n"),
    );
    let gz = host.request("GET", "/page.html", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("transfer-encoding"), Some("chunked"));
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz.body[..]), &mut plain)
        .unwrap();
    assert!(
        plain == page.as_bytes(),
        "the gzipped page decodes differently"
    );
    let identity = host.get("/page.html");
    assert_eq!(
        identity.header("content-length"),
        Some(&*page.len().to_string())
    );
    assert!(identity.body == page.as_bytes());
    assert_eq!(host.get("/missing.html").status, 404);
}

/// Read one request head from a raw backend's connection: its target (`None`
/// once the client has closed the connection).
fn read_head(reader: &mut impl std::io::BufRead) -> Option<String> {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let target = line.split(' ').nth(1).unwrap_or("/").to_owned();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        if line == "\r\n" {
            return Some(target);
        }
    }
}

/// A backend that keeps each connection open after its first answer (keep-alive)
/// and then closes it when the next request arrives, unanswered: the race of a
/// backend's keep-alive timeout firing just as a pooled connection is reused.
/// Returns the port and the number of connections accepted so far.
fn closes_reused_connections() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                for answered in 0.. {
                    // One request head (these requests have no body).
                    if read_head(&mut reader).is_none() {
                        return;
                    }
                    if answered == 1 {
                        return; // the second request: close without an answer
                    }
                    let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
                    );
                }
            });
        }
    });
    (port, accepted)
}

#[test]
fn a_reused_connection_the_backend_closed_is_retried_for_idempotent_requests() {
    let (port, accepted) = closes_reused_connections();
    let (host, _dir) = Host::start(&format!(
        "[app:main]\nuse = egg:plughost#proxy\naddress = http://127.0.0.1:{port}\n"
    ));
    for i in 0..5 {
        let r = host.get(&format!("/again/{i}"));
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "ok"),
            "GET {i}\n{}",
            host.log()
        );
    }
    // Each GET after the first found its pooled connection closed and went out
    // again on a new one.
    assert!(
        accepted.load(std::sync::atomic::Ordering::SeqCst) >= 5,
        "the pooled connections were not reused"
    );
    // A request with a body is not sent twice: the client sees the failure.
    let warm = host.get("/warm");
    assert_eq!(warm.status, 200);
    let post = host.request("POST", "/once", &[], b"payload");
    assert_eq!(post.status, 502, "{}", host.log());
}

/// A raw backend answering every request on a connection with `reply(path)`
/// (closing the connection after it when `close` says so). Returns its port.
fn raw_backend(reply: fn(&str) -> (Vec<u8>, bool)) -> u16 {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let Some(path) = read_head(&mut reader) else {
                        return;
                    };
                    let (bytes, close) = reply(&path);
                    // In small pieces, so bodies cross reads.
                    for piece in bytes.chunks(7) {
                        if conn.write_all(piece).is_err() {
                            return;
                        }
                        let _ = conn.flush();
                    }
                    if close {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Bodies delimited by the connection's end, chunked ones with trailers after
/// an interim 100, and malformed answers (a 502) all pass through the proxy's
/// codec, and the host keeps serving.
#[test]
fn close_delimited_chunked_and_malformed_backend_answers() {
    let port = raw_backend(|path| match path {
        "/close" => (
            b"HTTP/1.0 200 OK\r\nX-Kind: close\r\n\r\nuntil the end".to_vec(),
            true,
        ),
        "/chunked" => (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\
              Trailer: X-T\r\n\r\n6\r\nchunk \r\n4;x=y\r\nsent\r\n0\r\nX-T: 1\r\n\r\n"
                .to_vec(),
            false,
        ),
        "/bad" => (b"HTTP/1.1 2xx Nope\r\n\r\n".to_vec(), true),
        "/short" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec(),
            true,
        ),
        _ => (b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(), false),
    });
    let (host, _dir) = Host::start(&format!(
        "[app:main]\nuse = egg:plughost#proxy\naddress = http://127.0.0.1:{port}\n"
    ));
    for _ in 0..2 {
        let r = host.get("/close");
        assert_eq!((r.status, r.text().as_str()), (200, "until the end"));
        assert_eq!(r.header("x-kind"), Some("close"));
        let r = host.get("/chunked");
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "chunk sent"),
            "{}",
            host.log()
        );
        assert_eq!(r.header("trailer"), None);
        assert_eq!(host.get("/none").status, 204);
    }
    assert_eq!(host.get("/bad").status, 502);
    assert!(
        host.wait_log("malformed response", Duration::from_secs(5)),
        "{}",
        host.log()
    );
    // Cut short after its head: the client's connection is cut, not a full page.
    let short = request(host.port, "GET", "/short", &[], b"");
    assert!(short.map_or(true, |r| r.body.len() < 10));
    assert_eq!(host.get("/chunked").text(), "chunk sent");
}
