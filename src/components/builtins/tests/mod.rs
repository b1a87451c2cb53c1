//! In-process tests of the built-ins: each one is made through its real
//! constructor (`BUILTIN.make`, as the pipeline builder makes it) around stub
//! handlers, and called directly on a current-thread tokio runtime. No sockets,
//! no binary: the socket-level suite in `tests/` stays the end-to-end check.
//!
//! Shared support lives here: [`Stub`] (a handler that records what it was
//! given and answers a configured response), [`Req`] (a request builder),
//! [`section`] (a component with a given `local_conf`), the `make_*` helpers
//! and [`Rt`] (runs a handler and collects the whole response).

mod cache;
mod metrics;
mod static_files;
mod translogger;
mod urlmap;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use http_body_util::BodyExt;

use super::catalog;
use crate::core::body;
use crate::core::builtin::{DirClaims, FilterSite, Make, Mounted, SettingError};
use crate::core::config::{Component, Kind, Node, Source};
use crate::core::location::Location;
use crate::core::{Handler, Request, Response, ResponseFuture};

/// What a [`Stub`] saw of one request (the body read whole).
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub method: Method,
    pub script_name: Vec<u8>,
    pub path_info: Vec<u8>,
    pub raw_path: String,
    pub query_string: String,
    pub headers: HeaderMap,
    pub extras: Vec<(String, String)>,
    pub body: Bytes,
}

/// A response a [`Stub`] gives: status, headers and a body held in memory.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl Reply {
    /// A 200 with `Content-Type: content_type` and `body`.
    pub(super) fn ok(content_type: &str, body: &str) -> Reply {
        Reply {
            status: StatusCode::OK,
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_str(content_type).unwrap(),
            )],
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    /// A 200 `text/html` page (what the cache stores by default).
    pub(super) fn html(body: &str) -> Reply {
        Reply::ok("text/html; charset=utf-8", body)
    }

    pub(super) fn status(mut self, status: u16) -> Reply {
        self.status = StatusCode::from_u16(status).unwrap();
        self
    }

    /// Add one header line (repeats append).
    pub(super) fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        ));
        self
    }

    fn response(&self) -> Response {
        let mut resp = http::Response::new(body::full(self.body.clone()));
        *resp.status_mut() = self.status;
        for (name, value) in &self.headers {
            resp.headers_mut().append(name.clone(), value.clone());
        }
        resp
    }
}

type Answer = Box<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// A handler that records every request it gets and answers from a closure.
pub(super) struct Stub {
    seen: Mutex<Vec<Seen>>,
    answer: Answer,
}

impl Stub {
    /// A stub that always answers `reply`.
    pub(super) fn new(reply: Reply) -> Arc<Stub> {
        Stub::answering(move |_| reply.clone())
    }

    /// A stub whose answer depends on the request.
    pub(super) fn answering(f: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Arc<Stub> {
        Arc::new(Stub {
            seen: Mutex::new(Vec::new()),
            answer: Box::new(f),
        })
    }

    /// How many requests reached the stub.
    pub(super) fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Every request the stub got, in order.
    pub(super) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The last request the stub got.
    pub(super) fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the stub was never called")
    }
}

impl Handler for Stub {
    fn call(&self, req: Request) -> ResponseFuture<'_> {
        Box::pin(async move {
            let body = req
                .body
                .collect()
                .await
                .expect("the request body reads")
                .to_bytes();
            let seen = Seen {
                method: req.method,
                script_name: req.script_name,
                path_info: req.path_info,
                raw_path: req.raw_path,
                query_string: req.query_string,
                headers: req.headers,
                extras: req.extras,
                body,
            };
            let reply = (self.answer)(&seen);
            self.seen.lock().unwrap().push(seen);
            reply.response()
        })
    }
}

/// A request builder: `Req::get("/a/b?x=1").header("cookie", "s=1").build()`.
/// PATH_INFO is the target's path percent-decoded; SCRIPT_NAME starts empty.
pub(super) struct Req {
    req: Request,
}

impl Req {
    pub(super) fn new(method: &str, target: &str) -> Req {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let path_info: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
        Req {
            req: Request {
                method: Method::from_bytes(method.as_bytes()).unwrap(),
                scheme: "http".into(),
                script_name: Vec::new(),
                path_info,
                raw_path: path.to_owned(),
                query_string: query.to_owned(),
                version: Version::HTTP_11,
                server_name: "localhost".into(),
                server_port: 8080,
                remote_addr: "192.0.2.7".into(),
                remote_port: 40000,
                headers: HeaderMap::new(),
                extras: Vec::new(),
                body: body::empty(),
                on_worker: false,
            },
        }
    }

    pub(super) fn get(target: &str) -> Req {
        Req::new("GET", target)
    }

    pub(super) fn head(target: &str) -> Req {
        Req::new("HEAD", target)
    }

    /// Add one header line (repeats append).
    pub(super) fn header(mut self, name: &str, value: &str) -> Req {
        self.req.headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        self
    }

    pub(super) fn script_name(mut self, s: &str) -> Req {
        self.req.script_name = s.as_bytes().to_vec();
        self
    }

    /// PATH_INFO as given (decoded bytes), independent of the raw path.
    pub(super) fn path_info(mut self, p: &[u8]) -> Req {
        self.req.path_info = p.to_vec();
        self
    }

    pub(super) fn body(mut self, b: &str) -> Req {
        self.req.body = body::full(Bytes::copy_from_slice(b.as_bytes()));
        self
    }

    pub(super) fn extra(mut self, key: &str, value: &str) -> Req {
        self.req.extras.push((key.into(), value.into()));
        self
    }

    pub(super) fn build(self) -> Request {
        self.req
    }
}

/// A section `kind:name` using built-in `builtin`, defined in `file`, with
/// `local_conf` as given.
pub(super) fn section(
    kind: Kind,
    name: &str,
    builtin: &str,
    file: &Path,
    conf: &[(&str, &str)],
) -> Component {
    let b = catalog()
        .named(builtin)
        .unwrap_or_else(|| panic!("no built-in {builtin}"));
    let section = format!("{}:{name}", kind.as_str());
    // The section header on line 1, then one key per line, as the loader records them.
    let local_at = conf
        .iter()
        .enumerate()
        .map(|(i, (k, _))| {
            let at = Location::section(file, 2 + i, &section).for_key(k);
            ((*k).to_owned(), at)
        })
        .collect();
    Component {
        kind,
        section,
        file: file.to_owned(),
        line: 1,
        source: Source::Builtin(b),
        global_conf: Vec::new(),
        local_conf: conf
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        local_at,
    }
}

/// The config file a test's sections say they come from: `dir/deploy.ini`.
pub(super) fn ini_in(dir: &Path) -> PathBuf {
    dir.join("deploy.ini")
}

/// Make an app section through its built-in's constructor.
pub(super) fn make_app(c: &Component) -> Result<Arc<dyn Handler>, SettingError> {
    match builtin_of(c).make {
        Make::App(make) => make(c),
        _ => panic!("{} is not an app", c.section),
    }
}

/// A plain plugin app node, for what a filter wraps.
pub(super) fn app_node(dir: &Path) -> Node {
    Node::App(Component {
        kind: Kind::App,
        section: "app:stub".into(),
        file: ini_in(dir),
        line: 1,
        source: Source::Egg {
            dist: "stub".into(),
            entry: "main".into(),
        },
        global_conf: Vec::new(),
        local_conf: Vec::new(),
        local_at: Vec::new(),
    })
}

/// Make a filter section through its built-in's constructor, wrapping `next`
/// (built from `inner`), recording directory claims in `claims`.
pub(super) fn make_filter_in(
    c: &Component,
    inner: &Node,
    next: Arc<dyn Handler>,
    claims: &mut DirClaims,
) -> Result<Arc<dyn Handler>, SettingError> {
    match builtin_of(c).make {
        Make::Filter(make) => make(FilterSite {
            component: c,
            inner,
            next,
            claims,
        }),
        _ => panic!("{} is not a filter", c.section),
    }
}

/// Make a filter around `next` (a plain app node) with claims of its own.
pub(super) fn make_filter(
    c: &Component,
    next: Arc<dyn Handler>,
) -> Result<Arc<dyn Handler>, SettingError> {
    make_filter_in(c, &app_node(c.dir()), next, &mut DirClaims::default())
}

/// Make a composite (urlmap) from its built mounts, as the pipeline builder
/// does: the mounts in the configuration model's order (`sort_key`).
pub(super) fn make_composite(
    builtin: &str,
    mut mounts: Vec<Mounted>,
    not_found: Option<Arc<dyn Handler>>,
) -> Arc<dyn Handler> {
    mounts.sort_by_key(|(key, _)| crate::core::config::urlmap::sort_key(key));
    match catalog().named(builtin).expect("a built-in").make {
        Make::Composite(make) => make(mounts, not_found),
        _ => panic!("{builtin} is not a composite"),
    }
}

fn builtin_of(c: &Component) -> &'static crate::core::builtin::Builtin {
    match &c.source {
        Source::Builtin(b) => b,
        _ => panic!("{} is not a built-in", c.section),
    }
}

/// The error of a constructor that must fail.
pub(super) fn refused(made: Result<Arc<dyn Handler>, SettingError>) -> SettingError {
    match made {
        Ok(_) => panic!("the constructor accepted a bad section"),
        Err(e) => e,
    }
}

/// A response read whole.
#[derive(Debug)]
pub(super) struct Got {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    /// A header's value as text, if present.
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub(super) fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// Read a response whole.
pub(super) async fn read(resp: Response) -> Got {
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .expect("the response body reads")
        .to_bytes();
    Got {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// A current-thread tokio runtime (with the blocking pool and timers the
/// built-ins use) that calls handlers and reads their responses whole.
pub(super) struct Rt(tokio::runtime::Runtime);

impl Rt {
    pub(super) fn new() -> Rt {
        Rt(tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime"))
    }

    pub(super) fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.0.block_on(f)
    }

    /// Call `handler` with `req` and collect the response body.
    pub(super) fn call(&self, handler: &dyn Handler, req: Request) -> Got {
        self.block_on(async { read(handler.call(req).await).await })
    }

    /// Drive the runtime (tasks the handler spawned included) until `cond`
    /// holds; panic after five seconds.
    pub(super) fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        self.block_on(async {
            while !cond() {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    }

    /// Drive the runtime for a short while (to let spawned tasks finish when
    /// a test checks that something did *not* happen).
    pub(super) fn settle(&self) {
        self.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    }
}

/// Call `handler` once on a fresh runtime.
pub(super) fn call(handler: &dyn Handler, req: Request) -> Got {
    Rt::new().call(handler, req)
}
