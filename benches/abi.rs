//! The cost of one call through the plugin ABI: the hello app (libhello.so,
//! built by `cargo build --release -p hello` or the debug build), called
//!
//! - directly on this thread (`Instance::call`: request view, C call, response
//!   copied back), and
//! - as the server calls it (`Handler::call` of the built pipeline): a request
//!   without a body runs on the calling thread (hello declares itself
//!   non-blocking), one with a body hops to a pool worker and back.
//!
//!     cargo build --release -p hello && cargo bench --bench abi

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, Method, Version};
use http_body_util::BodyExt;

use plughost::WorkerPool;
use plughost::{body, Handler, Request};
use plughost::{Instance, Registry};

/// libhello.so from target/release, else target/debug.
fn hello_library() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile).join("libhello.so"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "libhello.so is not built in {}/release or debug: run `cargo build --release -p hello` first",
                target.display()
            )
        })
}

fn request() -> Request {
    request_with(body::empty())
}

fn request_with(body: plughost::Body) -> Request {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::HOST, "127.0.0.1:8080".parse().unwrap());
    Request {
        method: Method::GET,
        scheme: "http".into(),
        script_name: Vec::new(),
        path_info: b"/".to_vec(),
        raw_path: "/".into(),
        query_string: String::new(),
        version: Version::HTTP_11,
        server_name: "127.0.0.1".into(),
        server_port: 8080,
        remote_addr: "127.0.0.1".into(),
        remote_port: 40000,
        headers,
        extras: Vec::new(),
        body,
        on_worker: false,
    }
}

fn bench(c: &mut Criterion) {
    let lib_path = hello_library();
    eprintln!("abi bench: {}", lib_path.display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");

    // Directly: one Instance::call on this thread.
    let registry = Registry::new();
    let lib = registry.open(&lib_path).expect("libhello.so loads");
    let instance = Arc::new(
        Instance::create(
            lib,
            "main",
            plughost_sdk::abi::PH_KIND_APP,
            &[],
            &[],
            "[app:main] libhello.so#main".into(),
        )
        .expect("hello's factory runs"),
    );
    let handle = rt.handle().clone();
    let resp = instance
        .call(request(), None, &handle)
        .expect("hello answers");
    assert_eq!(resp.status(), 200);
    c.bench_function("Instance::call hello (direct, this thread)", |b| {
        b.iter(|| {
            let resp = instance
                .call(black_box(request()), None, &handle)
                .expect("hello answers");
            black_box(resp)
        })
    });

    // As the server does it: the pipeline's root handler, through the worker pool.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ini = dir.path().join("deploy.ini");
    std::fs::write(
        &ini,
        format!(
            "[app:main]\nuse = lib:{}\n\n[server:main]\nthreads = 8\n",
            lib_path.display()
        ),
    )
    .expect("writing the config");
    let deployment = plughost::load(&ini, None, None, &[]).expect("config resolves");
    let pool = WorkerPool::new(deployment.server.threads, deployment.server.request_timeout);
    let built = plughost::build(&deployment, &registry, &pool, rt.handle()).expect("pipeline");
    let root: Arc<dyn Handler> = built.root.clone();
    let body = rt.block_on(async {
        let resp = root.call(request()).await;
        resp.into_body().collect().await.expect("body").to_bytes()
    });
    assert_eq!(&body[..], b"Hello, world!");
    let cases = [
        (
            "Handler::call hello, no request body (event loop + ABI)",
            false,
        ),
        (
            "Handler::call hello, request body (worker pool + ABI)",
            true,
        ),
    ];
    for (name, with_body) in cases {
        c.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let root = root.clone();
                async move {
                    let req = if with_body {
                        request_with(body::full(bytes::Bytes::from_static(b"x")))
                    } else {
                        request()
                    };
                    let resp = root.call(black_box(req)).await;
                    black_box(resp.into_body().collect().await.expect("body").to_bytes())
                }
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
