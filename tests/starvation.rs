//! Clients that starve the host of threads by being slow: uploads that trickle,
//! and clients that ask for a big response and never read it. Each test sends
//! what such a client sends over a real socket and checks the host still serves
//! others and holds no worker or OS thread for the client.

mod support;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

/// `X-Echo-Bytes` for responses far larger than the kernel's socket buffers.
const HUGE: &str = "67108864";

/// Threads of the host process (`/proc/PID/task`).
fn thread_count(host: &Host) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", host.pid()))
        .unwrap()
        .count()
}

/// Poll `cond` until it holds or `limit` passes; whether it held.
fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// Open a POST with `Content-Length: len` and send its first `first` bytes.
fn start_upload(port: u16, len: usize, first: usize) -> TcpStream {
    let mut s = connect(port).unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&vec![b'u'; first]).unwrap();
    s
}

/// Ask for a huge echo response and read only its status line.
fn start_unread_download(port: u16) -> TcpStream {
    let mut s = connect(port).unwrap();
    write_request(&mut s, "GET", "/big", &[("X-Echo-Bytes", HUGE)], None, true).unwrap();
    let mut status = [0u8; 12];
    s.read_exact(&mut status).unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");
    s
}

#[test]
fn slow_uploads_never_starve_the_worker_pool() {
    let (host, _d) = Host::start(
        "[app:main]\nuse = egg:echo\n\n[server:main]\nthreads = 8\nrequest_timeout = 2\n\
         body_timeout = 30\nrequest_buffer_bytes = 4096\nmin_body_rate = 1\n",
    );
    // Eight uploads that stall partway: four within the memory buffer, four
    // larger (spooled to a file). Each would hold a worker while it waits.
    let sizes = [1000, 1000, 1000, 1000, 300_000, 300_000, 300_000, 300_000];
    let mut uploads: Vec<(TcpStream, usize)> = sizes
        .iter()
        .map(|&len| (start_upload(host.port, len, 500), len))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..3 {
        let started = Instant::now();
        let reply = host.get(&format!("/dynamic/{i}"));
        eprintln!(
            "dynamic request {i}: {} in {:?}",
            reply.status,
            started.elapsed()
        );
        assert_eq!(
            reply.status,
            200,
            "a dynamic request behind 8 slow uploads got {} after {:?}",
            reply.status,
            started.elapsed()
        );
    }
    // The uploads were only slow: once their bytes come, each is answered in full.
    for (s, len) in &mut uploads {
        s.write_all(&vec![b'u'; *len - 500]).unwrap();
    }
    for (s, len) in uploads {
        let reply = read_response(&mut BufReader::new(s), false).unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["body_len"], len);
    }
}

#[test]
fn trickling_upload_over_buffer_gets_408() {
    let (host, _d) = Host::start(
        "[app:main]\nuse = egg:echo\n\n[server:main]\nbody_timeout = 30\n\
         request_buffer_bytes = 1024\nmin_body_rate = 10000\n",
    );
    // 100 bytes every 200 ms (500 B/s) of a 1 MB body: never a gap long enough
    // for body_timeout, far below min_body_rate. The rate applies after 10 s.
    let mut s = start_upload(host.port, 1_000_000, 2000);
    let mut writer = s.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(45) {
            std::thread::sleep(Duration::from_millis(200));
            if writer.write_all(&[b't'; 100]).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    let reply = read_response(&mut BufReader::new(&mut s), false);
    let waited = started.elapsed();
    let reply = reply.unwrap_or_else(|e| panic!("no answer after {waited:?}: {e}"));
    assert_eq!(reply.status, 408, "after {waited:?}");
    eprintln!("trickling upload: 408 after {waited:?}");
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(30),
        "408 after {waited:?}, expected shortly after the 10 s grace"
    );
    drop(s);
    trickle.join().unwrap();
    // A body that keeps up with min_body_rate is not affected.
    let body = vec![b'x'; 200_000];
    let reply = host.request("POST", "/fast", &[], &body);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body_len"], 200_000);
}

#[test]
fn non_reading_client_is_closed_after_send_timeout() {
    let (host, _d) = Host::start("[app:main]\nuse = egg:echo\n\n[server:main]\nsend_timeout = 1\n");
    let s = start_unread_download(host.port);
    // Never read for several send_timeouts, then read what is left.
    std::thread::sleep(Duration::from_secs(5));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut received = 12u64;
    let mut buf = vec![0u8; 1 << 16];
    let mut r = &s;
    let ended = loop {
        match r.read(&mut buf) {
            Ok(0) => break "closed",
            Ok(n) => received += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break "still open",
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break "still open",
            Err(_) => break "reset",
        }
    };
    let whole: u64 = HUGE.parse().unwrap();
    eprintln!("non-reading client: connection {ended} after {received} of {whole} bytes");
    assert!(
        ended != "still open" && received < whole,
        "connection {ended} after {received} bytes of a {whole}-byte response"
    );
    // Other clients are served as usual.
    assert_eq!(host.get("/").status, 200);
}

#[test]
fn non_reading_clients_hold_no_os_thread() {
    let (host, _d) = Host::start(
        "[app:main]\nuse = egg:echo\n\n[server:main]\nthreads = 4\nmax_connections = 100\n",
    );
    assert_eq!(host.get("/warm").status, 200);
    let baseline = thread_count(&host);
    let clients: Vec<TcpStream> = (0..20).map(|_| start_unread_download(host.port)).collect();
    let peak = thread_count(&host);
    // Threads that only read a chunk ahead go idle and end (tokio keeps an idle
    // blocking thread 10 s); a thread per stalled client would stay.
    let mut now = peak;
    let settled = eventually(Duration::from_secs(30), || {
        now = thread_count(&host);
        now <= baseline + 6
    });
    assert!(
        settled,
        "20 non-reading clients: {baseline} threads before, {peak} at the start, {now} after 30 s"
    );
    eprintln!("threads: {baseline} before, {peak} with 20 stalled clients, {now} settled");
    // They are still connected, and others are served.
    assert_eq!(host.get("/").status, 200);
    drop(clients);
}

/// 64-bit FNV-1a, as the echo plugin reports it.
fn fnv1a(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[test]
fn uploads_over_the_buffer_arrive_intact_from_the_spool() {
    let (host, _d) = Host::start(
        "[app:main]\nuse = egg:echo\n\n[server:main]\nrequest_buffer_bytes = 70000\nmax_body_bytes = 3000000\n",
    );
    let body: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    let reply = host.request("POST", "/spooled", &[], &body);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body_len"], body.len());
    assert_eq!(reply.json()["body_fnv1a"], fnv1a(&body));
    // Chunked, with 100-continue: read before dispatch, the same bytes arrive.
    let mut s = connect(host.port).unwrap();
    s.write_all(b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let cont = read_response(&mut r, true).unwrap();
    assert_eq!(cont.status, 100);
    for piece in body.chunks(300_000) {
        s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .unwrap();
        s.write_all(piece).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    s.write_all(b"0\r\n\r\n").unwrap();
    let reply = read_response(&mut r, false).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body_fnv1a"], fnv1a(&body));
    // Over max_body_bytes without a declared length: still 413.
    let mut s = connect(host.port).unwrap();
    s.write_all(
        b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    // One byte over, then nothing: the host has read everything when it answers.
    s.write_all(b"2dc6c1\r\n").unwrap();
    s.write_all(&vec![b'z'; 3_000_001]).unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(read_response(&mut r, false).unwrap().status, 413);
}
