//! Hostile clients over real sockets: slow headers and bodies, malformed and
//! smuggling requests, pipelining, HTTP/1.0, too many connections, and plugins
//! that block. Every case checks the host keeps serving others.

mod support;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

const ECHO_LIMITS: &str = "[app:main]\nuse = egg:echo\n\n[server:main]\nheader_timeout = 1\nbody_timeout = 1\nrequest_timeout = 2\nthreads = 4\nmax_connections = 40\n";

/// Read whatever the server sends until it closes (or `limit` passes).
fn read_until_close(mut s: TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    (out, start.elapsed())
}

fn raw(port: u16, bytes: &[u8]) -> String {
    let mut s = connect(port).unwrap();
    s.write_all(bytes).unwrap();
    let (out, _) = read_until_close(s, Duration::from_secs(10));
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn slow_headers_are_dropped_while_others_are_served() {
    let (host, _d) = Host::start(ECHO_LIMITS);
    let mut slow = connect(host.port).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    // Others are served while the slow client dawdles.
    for _ in 0..5 {
        assert_eq!(host.get("/").status, 200);
    }
    let (_, waited) = read_until_close(slow, Duration::from_secs(10));
    assert!(
        waited < Duration::from_secs(8),
        "a slowloris client was kept for {waited:?}"
    );
}

#[test]
fn slow_bodies_time_out_with_408_and_free_the_worker() {
    let (host, _d) = Host::start(ECHO_LIMITS);
    let mut slow = connect(host.port).unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a little")
        .unwrap();
    let reply = read_response(&mut BufReader::new(slow), false).unwrap();
    assert_eq!(reply.status, 408);
    assert_eq!(host.get("/").status, 200);
}

#[test]
fn malformed_requests_get_400_and_the_server_goes_on() {
    let (host, _d) = Host::start(ECHO_LIMITS);
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: \x01\x02\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ] {
        let out = raw(host.port, bad);
        assert!(
            out.is_empty() || out.starts_with("HTTP/1.1 400") || out.starts_with("HTTP/1.1 505"),
            "{:?} got {out:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(host.get("/").status, 200);
}

#[test]
fn smuggling_with_both_lengths_never_runs_a_hidden_request() {
    let (host, _d) = Host::start(ECHO_LIMITS);
    // The chunked body ends early; if Content-Length were trusted instead, the
    // rest would be read as a second request to /smuggled.
    let attack = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 46\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let out = raw(host.port, attack);
    assert!(!out.contains("/smuggled"), "a smuggled request ran: {out}");
    let before = host.get("/count").json()["counter"].as_u64().unwrap();
    let _ = raw(
        host.port,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    );
    let after = host.get("/count").json()["counter"].as_u64().unwrap();
    assert!(after - before <= 2, "an ambiguous body ran extra requests");
}

#[test]
fn http10_and_pipelined_requests() {
    let (host, _d) = Host::start(ECHO_LIMITS);
    let out = raw(host.port, b"GET /old HTTP/1.0\r\n\r\n");
    assert!(
        out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
        "{out}"
    );
    assert!(out.contains("\"protocol\": \"HTTP/1.0\""), "{out}");
    // Three requests in one write: three answers, in order.
    let mut s = connect(host.port).unwrap();
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    for i in 1..=3 {
        let reply = read_response(&mut r, false).unwrap();
        assert_eq!(reply.json()["path_info"], format!("/{i}"));
    }
}

#[test]
fn the_connection_limit_holds_extra_clients_until_a_slot_frees() {
    let (host, _d) = Host::start(
        "[app:main]\nuse = egg:echo\n[server:main]\nmax_connections = 10\nheader_timeout = 30\n",
    );
    let idle: Vec<TcpStream> = (0..10).map(|_| connect(host.port).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    // The 11th connects (kernel backlog) but is not served while all slots are taken.
    let mut extra = connect(host.port).unwrap();
    extra
        .write_all(b"GET /late HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    extra
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        extra.read(&mut byte).is_err(),
        "served beyond max_connections"
    );
    drop(idle);
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = Vec::new();
    extra.read_to_end(&mut out).unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
}

#[test]
fn a_plugin_that_blocks_gets_504_and_the_pool_recovers() {
    let (host, _d) = Host::start(ECHO_LIMITS);
    let port = host.port;
    // Four calls that block longer than request_timeout take every worker.
    let stuck: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                request(port, "GET", "/stuck", &[("X-Echo-Sleep-Ms", "3000")], b"")
                    .unwrap()
                    .status
            })
        })
        .collect();
    for s in stuck {
        assert_eq!(s.join().unwrap(), 504);
    }
    assert!(
        host.wait_log("no response within request_timeout", Duration::from_secs(5)),
        "{}",
        host.log()
    );
    // Once the sleeps end, the workers come back.
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..8 {
        assert_eq!(host.get("/").status, 200);
    }
}
