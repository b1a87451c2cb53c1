//! Framing and HTTP correctness over real sockets: the host, not the handler,
//! decides how a response is delimited; requests without a sound Host, with an
//! over-long head, or half-closed by the client are answered definitely; and
//! malformed requests are counted instead of logged one line each.

mod support;

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use support::*;

const ECHO: &str = "[app:main]\nuse = egg:echo\n\n[server:main]\nthreads = 2\nheader_timeout = 5\n";

/// Everything the server sends until it closes (or `limit` passes), keeping
/// what arrived before a reset.
fn read_until_close(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    s.set_read_timeout(Some(limit)).unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// Send raw bytes on a new connection and return all the server answers.
fn exchange(port: u16, bytes: &[u8]) -> String {
    let mut s = connect(port).unwrap();
    s.write_all(bytes).unwrap();
    String::from_utf8_lossy(&read_until_close(&mut s, Duration::from_secs(10))).into_owned()
}

/// The status of the first response in `out`, if any.
fn status_of(out: &str) -> Option<u16> {
    out.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

/// A value from the Prometheus text (0 when absent).
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[test]
fn declared_length_never_desynchronises_keepalive() {
    let (host, _d) = Host::start(ECHO);
    let mut s = connect(host.port).unwrap();
    // A whole in-memory body declared shorter, then longer, than it is; each
    // followed on the same connection by a request whose answer must be its own.
    for declared in ["3", "50"] {
        let header = format!("Content-Length: {declared}");
        write_request(
            &mut s,
            "GET",
            "/wrong",
            &[("X-Echo-Body", "hello world"), ("X-Echo-Header", &header)],
            None,
            false,
        )
        .unwrap();
        write_request(&mut s, "GET", "/next", &[], None, false).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let first = read_response(&mut r, false).unwrap();
        assert_eq!(first.status, 200);
        assert_eq!(
            first.header("content-length"),
            Some("11"),
            "declared {declared}"
        );
        assert_eq!(first.text(), "hello world");
        let next = read_response(&mut r, false).unwrap();
        assert_eq!(next.json()["path_info"], "/next", "declared {declared}");
    }
}

#[test]
fn streamed_body_with_wrong_length_closes_the_connection() {
    let (host, _d) = Host::start(ECHO);
    // Streamed bodies (past the plugin pre-read) longer and shorter than declared,
    // and longer with the declared length ending where a 64 KiB chunk does.
    for (bytes, declared) in [
        (300_000u64, 100_000u64),
        (100_000, 300_000),
        (3 * 65_536, 2 * 65_536),
    ] {
        let mut s = connect(host.port).unwrap();
        let n = bytes.to_string();
        let header = format!("Content-Length: {declared}");
        write_request(
            &mut s,
            "GET",
            "/stream",
            &[("X-Echo-Bytes", &n), ("X-Echo-Header", &header)],
            None,
            false,
        )
        .unwrap();
        write_request(&mut s, "GET", "/next", &[], None, false).unwrap();
        let out = read_until_close(&mut s, Duration::from_secs(10));
        let text = String::from_utf8_lossy(&out);
        let head_end = text.find("\r\n\r\n").expect("a response head") + 4;
        assert!(
            out.len() - head_end <= declared as usize,
            "{bytes} bytes declared as {declared}: {} body bytes sent",
            out.len() - head_end
        );
        assert!(
            out.len() - head_end < declared as usize || bytes == declared,
            "a wrong body looked complete"
        );
        assert_eq!(
            text.matches("HTTP/1.1 ").count(),
            1,
            "{bytes} bytes declared as {declared}: the connection went on after it"
        );
        assert!(!text.contains("\"/next\""), "the next request was answered");
    }
    assert_eq!(host.get("/").status, 200);
}

#[test]
fn plugin_status_outside_100_to_599_becomes_500() {
    let (host, _d) = Host::start(ECHO);
    for status in ["600", "999"] {
        let reply = host.request("GET", "/", &[("X-Echo-Status", status)], b"");
        assert_eq!(reply.status, 500, "plugin status {status}");
    }
    let reply = host.request("GET", "/", &[("X-Echo-Status", "599")], b"");
    assert_eq!(reply.status, 599);
}

#[test]
fn missing_duplicate_or_invalid_host_is_400() {
    let (host, _d) = Host::start(ECHO);
    for bad in [
        &b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: user@a.example\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.example/path\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.example:port\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
    ] {
        let out = exchange(host.port, bad);
        assert_eq!(
            status_of(&out),
            Some(400),
            "{:?} got {out:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // HTTP/1.0 may omit Host; an empty Host and IPv6 literals are valid.
    for good in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n",
    ] {
        let out = exchange(host.port, good);
        assert_eq!(
            status_of(&out),
            Some(200),
            "{:?} got {out:?}",
            String::from_utf8_lossy(good)
        );
    }
}

#[test]
fn absolute_form_target_authority_wins_over_host() {
    let (host, _d) = Host::start(ECHO);
    let out = exchange(
        host.port,
        b"GET http://target.example:8080/p HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    );
    let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["server_name"], "target.example", "{json}");
    assert_eq!(json["headers"]["host"], "target.example:8080", "{json}");
    assert_eq!(json["path_info"], "/p");
}

#[test]
fn half_closed_client_still_gets_its_response() {
    let (host, _d) = Host::start(ECHO);
    let mut s = connect(host.port).unwrap();
    write_request(
        &mut s,
        "POST",
        "/half",
        &[("X-Echo-Sleep-Ms", "100")],
        Some(b"body"),
        false,
    )
    .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let reply = read_response(&mut BufReader::new(s), false)
        .unwrap_or_else(|e| panic!("no answer after a half-close: {e}"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body_len"], 4);
}

/// A request head of exactly `len` bytes (request line to the empty line).
fn head_of(len: usize) -> Vec<u8> {
    let start = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: ";
    let end = "\r\n\r\n";
    let pad = len - start.len() - end.len();
    format!("{start}{}{end}", "p".repeat(pad)).into_bytes()
}

/// Send `head` in one write or byte by byte; the status answered.
fn send_head(port: u16, head: &[u8], byte_by_byte: bool) -> Option<u16> {
    let mut s = connect(port).unwrap();
    let mut reader = s.try_clone().unwrap();
    // Read concurrently, so an answer sent before our last bytes is kept even if
    // those bytes then reset the connection.
    let got = std::thread::spawn(move || read_until_close(&mut reader, Duration::from_secs(20)));
    if byte_by_byte {
        for b in head {
            if s.write_all(std::slice::from_ref(b)).is_err() {
                break;
            }
        }
    } else {
        let _ = s.write_all(head);
    }
    status_of(&String::from_utf8_lossy(&got.join().unwrap()))
}

#[test]
fn max_header_bytes_is_exact_in_one_write_and_byte_by_byte() {
    let (host, _d) = Host::start(
        "[app:main]\nuse = egg:echo\n\n[server:main]\nmax_header_bytes = 10000\nheader_timeout = 20\n",
    );
    for byte_by_byte in [false, true] {
        assert_eq!(
            send_head(host.port, &head_of(10_000), byte_by_byte),
            Some(200),
            "a head of exactly max_header_bytes (byte by byte: {byte_by_byte})"
        );
        assert_eq!(
            send_head(host.port, &head_of(10_001), byte_by_byte),
            Some(431),
            "a head one byte over max_header_bytes (byte by byte: {byte_by_byte})"
        );
    }
}

#[test]
fn malformed_requests_are_counted_not_logged_one_line_each() {
    let (host, _d) = Host::start(
        "[composite:main]\nuse = egg:plughost#urlmap\n/ = echo\n/_metrics = metrics\n\n\
         [app:echo]\nuse = egg:echo\n\n[app:metrics]\nuse = egg:plughost#metrics\n\n\
         [server:main]\nmax_header_bytes = 8192\n",
    );
    let before = host.get("/_metrics").text();
    let counted_before = metric(&before, "plughost_malformed_requests_total").unwrap_or(0);
    std::thread::sleep(Duration::from_millis(200));
    let lines_before = host.log().lines().count();
    let long = head_of(9000);
    let kinds: [&[u8]; 4] = [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a@b\r\nConnection: close\r\n\r\n",
        &long,
    ];
    for i in 0..200 {
        let out = exchange(host.port, kinds[i % kinds.len()]);
        assert!(
            matches!(status_of(&out), Some(400 | 431)),
            "request {i} got {out:?}"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let grown = host.log().lines().count() - lines_before;
    assert!(
        grown < 20,
        "200 malformed requests logged {grown} lines:\n{}",
        host.log()
    );
    let after = host.get("/_metrics").text();
    let counted = metric(&after, "plughost_malformed_requests_total")
        .unwrap_or_else(|| panic!("no plughost_malformed_requests_total in:\n{after}"));
    assert_eq!(counted - counted_before, 200, "{after}");
}
