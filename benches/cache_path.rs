//! How long the disk cache's URL path → file mapping takes, for a typical page
//! path, a deep one, a directory URL, and one that is refused.
//!
//!     cargo bench --bench cache_path

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use plughost::cache::path::map;

fn bench(c: &mut Criterion) {
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "page",
            b"/blog/2026/11/hello-world",
            "/blog/2026/11/hello-world",
        ),
        (
            "deep",
            b"/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/page.html",
            "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/page.html",
        ),
        ("directory", b"/docs/guide/", "/docs/guide/"),
        ("refused", b"/a/../../etc/passwd", "/a/%2e%2e/../etc/passwd"),
    ];
    for (name, path_info, raw) in cases {
        c.bench_function(&format!("cache path map ({name})"), |b| {
            b.iter(|| black_box(map(black_box(path_info), black_box(raw), "__index.html").is_ok()))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
