//! 100 MiB through the plugin ABI in each direction, with the host's memory
//! staying bounded (measured from /proc while the host runs).

mod support;

use std::io::{BufReader, Write};

use support::*;

const SIZE: u64 = 100 * 1024 * 1024;
/// The host may not grow by more than this while streaming 100 MiB.
const MAX_GROWTH_KIB: u64 = 32 * 1024;

/// 64-bit FNV-1a, as the echo plugin reports it.
fn fnv1a(hash: &mut u64, data: &[u8]) {
    for &b in data {
        *hash ^= u64::from(b);
        *hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
}

#[test]
fn a_hundred_mebibytes_each_way_with_bounded_memory() {
    let (host, _d) = Host::start("[app:main]\nuse = egg:echo\n");
    assert_eq!(host.get("/warm").status, 200);
    let baseline = host.memory_kib("VmRSS");

    // Upload: the app reads the body as a stream and reports its length and hash.
    let mut s = connect(host.port).unwrap();
    let head = format!(
        "PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {SIZE}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    for _ in 0..SIZE / chunk.len() as u64 {
        s.write_all(&chunk).unwrap();
        fnv1a(&mut hash, &chunk);
    }
    let reply = read_response(&mut BufReader::new(s), false).unwrap();
    assert_eq!(reply.status, 200);
    let j = reply.json();
    assert_eq!(j["body_len"], SIZE);
    assert_eq!(j["body_fnv1a"], format!("{hash:016x}"));

    // Download: the app streams the body in chunks; count it without keeping it.
    let mut s = connect(host.port).unwrap();
    write_request(
        &mut s,
        "GET",
        "/download",
        &[("X-Echo-Bytes", &SIZE.to_string())],
        None,
        true,
    )
    .unwrap();
    let mut received = 0u64;
    let mut expect_hash = 0xcbf2_9ce4_8422_2325u64;
    let mut got_hash = 0xcbf2_9ce4_8422_2325u64;
    let pattern = b"abcdefghijklmnopqrstuvwxyz0123456789\n";
    let reply = read_response_with(&mut BufReader::new(s), false, &mut |piece: &[u8], _| {
        let start = (received % pattern.len() as u64) as usize;
        let expected: Vec<u8> = pattern
            .iter()
            .cycle()
            .skip(start)
            .take(piece.len())
            .copied()
            .collect();
        fnv1a(&mut expect_hash, &expected);
        fnv1a(&mut got_hash, piece);
        received += piece.len() as u64;
    })
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(received, SIZE);
    assert_eq!(
        got_hash, expect_hash,
        "the streamed body differs from the pattern"
    );

    let peak = host.memory_kib("VmHWM");
    eprintln!("host RSS: baseline {baseline} KiB, peak {peak} KiB after 2 x 100 MiB");
    assert!(
        peak < baseline + MAX_GROWTH_KIB,
        "host memory grew from {baseline} KiB to a peak of {peak} KiB while streaming"
    );
}
