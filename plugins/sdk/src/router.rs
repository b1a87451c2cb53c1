//! A small request router: method + path patterns with `{param}` captures.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::{Error, Request, Response};

/// A route's handler, shared between the methods it was registered for.
type Handler<S> = Arc<dyn Fn(&S, Request<'_>, &Params) -> Result<Response, Error> + Send + Sync>;

/// Dispatches requests to handlers by method and path, with shared state `S`.
///
/// Build one in [`App::new`](crate::App::new), keep it in the app beside the state
/// its handlers share, and forward every request to [`Router::call`]:
///
/// ```
/// use std::sync::Mutex;
/// use plughost_sdk::{App, Config, Error, Params, Request, Response, Router};
///
/// /// The shared state: item names; an item's id is its position plus one.
/// #[derive(Default)]
/// struct Store {
///     items: Mutex<Vec<String>>,
/// }
///
/// impl Store {
///     fn items(&self) -> Result<std::sync::MutexGuard<'_, Vec<String>>, Error> {
///         self.items.lock().map_err(|_| Error::new("items store poisoned"))
///     }
/// }
///
/// fn text(status: u16, body: String) -> Response {
///     Response::new(status)
///         .header("Content-Type", "text/plain; charset=utf-8")
///         .body(body)
/// }
///
/// /// `GET /items`: one `ID NAME` line per item.
/// fn list(store: &Store, _req: Request, _params: &Params) -> Result<Response, Error> {
///     let items = store.items()?;
///     let mut lines = String::new();
///     for (i, name) in items.iter().enumerate() {
///         lines.push_str(&format!("{} {name}\n", i + 1));
///     }
///     Ok(text(200, lines))
/// }
///
/// /// `POST /items` with the name as the body: 201 and the new item's URL.
/// fn create(store: &Store, mut req: Request, _params: &Params) -> Result<Response, Error> {
///     let body = req.body.read_all()?;
///     let name = String::from_utf8_lossy(&body).trim().to_owned();
///     if name.is_empty() {
///         return Ok(text(400, "an item needs a name\n".into()));
///     }
///     let mut items = store.items()?;
///     items.push(name);
///     let id = items.len();
///     // SCRIPT_NAME is where the app is mounted: links must include it.
///     let location = format!("{}/items/{id}", req.script_name);
///     Ok(text(201, format!("{id}\n")).header("Location", location))
/// }
///
/// /// `GET /items/{id}`: the item's name, or 404.
/// fn show(store: &Store, _req: Request, params: &Params) -> Result<Response, Error> {
///     let items = store.items()?;
///     let item = params.parse::<usize>("id").and_then(|id| items.get(id.checked_sub(1)?));
///     match item {
///         Some(name) => Ok(text(200, format!("{name}\n"))),
///         None => Ok(text(404, "no such item\n".into())),
///     }
/// }
///
/// struct Items {
///     store: Store,
///     router: Router<Store>,
/// }
///
/// impl App for Items {
///     fn new(_config: &Config) -> Result<Self, Error> {
///         let router = Router::new()
///             .get("/items", list)
///             .post("/items", create)
///             .get("/items/{id}", show);
///         Ok(Items { store: Store::default(), router })
///     }
///     fn call(&self, req: Request) -> Result<Response, Error> {
///         self.router.call(&self.store, req)
///     }
/// }
///
/// plughost_sdk::export_plugin!(name: "items", apps: { "main" => Items });
/// # fn main() {
/// let app = Items::new(&Config::default()).unwrap();
/// let send = |method: &str, path: &str, body: &str| {
///     let req = Request::builder().method(method).script_name("/api").path(path).body(body).build();
///     app.call(req).unwrap()
/// };
/// let body = |resp: Response| String::from_utf8(resp.body.into_bytes().unwrap()).unwrap();
///
/// let resp = send("POST", "/items", "apple");
/// assert_eq!((resp.status, resp.header_value("location")), (201, Some("/api/items/1")));
/// send("POST", "/items", "pear");
/// assert_eq!(body(send("GET", "/items", "")), "1 apple\n2 pear\n");
/// assert_eq!(body(send("GET", "/items/2", "")), "pear\n");
/// assert_eq!(send("GET", "/items/3", "").status, 404); // the handler's own 404
/// assert_eq!(send("GET", "/items/x", "").status, 404);
/// assert_eq!(send("POST", "/items", "  ").status, 400);
///
/// // The router's own answers: no route for the path, or not for this method.
/// let resp = send("GET", "/nothing", "");
/// assert_eq!((resp.status, resp.header_value("content-type")), (404, Some("text/plain; charset=utf-8")));
/// let resp = send("DELETE", "/items/1", "");
/// assert_eq!((resp.status, resp.header_value("allow")), (405, Some("GET, HEAD")));
/// # }
/// ```
///
/// # Patterns
/// A pattern is matched against [`Request::path_info`] (the path below the app's
/// mount point), one `/`-separated segment at a time:
/// - a literal segment (`items`) matches exactly that text (case-sensitive);
/// - `{name}` captures one non-empty segment, available as
///   [`Params::get`]`("name")`. PATH_INFO is already percent-decoded, so
///   `/items/caf%C3%A9` captures `café` (and a `%2F` in the URL has become a `/`
///   that separates segments);
/// - a last segment `{*name}` captures the rest of the path, slashes included and
///   possibly empty: `/files/{*path}` matches `/files/a/b.txt` (`path` = `a/b.txt`)
///   and `/files/` (`path` empty), but not `/files`.
///
/// **Trailing slashes are significant**: `/items` and `/items/` are different
/// paths; a pattern matches only the one it spells, and the router does not
/// redirect between them. An empty PATH_INFO (a request for the mount point itself,
/// `/app` for an app mounted at `/app`) is matched as `/`.
///
/// # Which route answers
/// When several patterns match a path, the most specific one that accepts the
/// request's method wins, whatever the order of registration: segment by segment
/// from the left, a literal beats `{name}`, which beats `{*name}`. So with
/// `/items/new` and `/items/{id}`, `GET /items/new` goes to the first; and with
/// only `GET /items/new` and `DELETE /items/{id}`, `DELETE /items/new` goes to the
/// second.
///
/// Methods are matched exactly, as HTTP defines them (case-sensitive: a request
/// with method `get` is not a `GET`). A route for `GET` also answers `HEAD`, unless
/// `HEAD` has a route of its own on that pattern; its handler sees
/// `req.method == "HEAD"`, and the host sends the headers without the body.
///
/// If no pattern matches the path, the answer is `404 Not Found` (or the
/// [`fallback`](Router::fallback)'s). If some match but none for this method, it
/// is `405 Method Not Allowed` with an `Allow` header listing, sorted, every method
/// those patterns accept (`HEAD` included where `GET` is). Both have a short
/// `text/plain; charset=utf-8` body.
///
/// # Panics
/// Registering a route panics (a programming error, found the first time the app
/// starts) if the pattern does not start with `/`, has a `{` or `}` that is not a
/// whole `{name}` segment, repeats a capture name, has `{*name}` anywhere but last,
/// or has an empty or invalid method; if a method is registered twice for the same
/// pattern; and if a pattern has the same shape as an earlier one with other
/// capture names (`/items/{id}` and `/items/{name}`), which could never both match.
pub struct Router<S = ()> {
    /// Sorted most specific first; patterns are distinct in shape.
    routes: Vec<Route<S>>,
    fallback: Option<Handler<S>>,
}

/// One pattern and the handlers of the methods it accepts.
struct Route<S> {
    pattern: String,
    segments: Vec<Segment>,
    /// In registration order; method names are unique.
    methods: Vec<(String, Handler<S>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Rest(String),
}

impl Segment {
    /// Lower is more specific.
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 0,
            Segment::Param(_) => 1,
            Segment::Rest(_) => 2,
        }
    }

    /// Equal in what it matches (capture names aside).
    fn same_shape(&self, other: &Segment) -> bool {
        match (self, other) {
            (Segment::Literal(a), Segment::Literal(b)) => a == b,
            (Segment::Param(_), Segment::Param(_)) | (Segment::Rest(_), Segment::Rest(_)) => true,
            _ => false,
        }
    }
}

/// Segment by segment, more specific first; a pattern that ends first (only
/// possible against one ending in `{*rest}`) is the more specific.
fn specificity(a: &[Segment], b: &[Segment]) -> Ordering {
    let ranks = |s: &[Segment]| s.iter().map(Segment::rank).collect::<Vec<_>>();
    ranks(a).cmp(&ranks(b))
}

fn parse_pattern(pattern: &str) -> Vec<Segment> {
    let Some(rest) = pattern.strip_prefix('/') else {
        panic!("route pattern {pattern:?} must start with `/`");
    };
    let mut segments = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    let parts: Vec<&str> = rest.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(inner) => {
                let (name, is_rest) = match inner.strip_prefix('*') {
                    Some(name) => (name, true),
                    None => (inner, false),
                };
                if name.is_empty() || name.contains(['{', '}', '*']) {
                    panic!("route pattern {pattern:?}: bad capture `{part}`");
                }
                if names.contains(&name) {
                    panic!("route pattern {pattern:?}: capture `{name}` appears twice");
                }
                names.push(name);
                if is_rest {
                    if i + 1 != parts.len() {
                        panic!("route pattern {pattern:?}: `{part}` must be the last segment");
                    }
                    Segment::Rest(name.to_owned())
                } else {
                    Segment::Param(name.to_owned())
                }
            }
            None if part.contains(['{', '}']) => {
                panic!("route pattern {pattern:?}: a capture must be a whole segment, not `{part}`")
            }
            None => Segment::Literal((*part).to_owned()),
        };
        segments.push(segment);
    }
    segments
}

/// A method is an HTTP token (RFC 9110 §5.6.2).
fn check_method(method: &str) {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if method.is_empty() || !method.chars().all(token) {
        panic!("route method {method:?} is not a valid HTTP method");
    }
}

impl<S> Route<S> {
    /// The captures, if `path` (split at `/`, after the leading one) matches.
    fn matches(&self, path: &[&str]) -> Option<Vec<(String, String)>> {
        let mut captures = Vec::new();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Rest(name) => {
                    // At least the slash before it: `/files/{*p}` wants `/files/…`.
                    if i >= path.len() {
                        return None;
                    }
                    captures.push((name.clone(), path[i..].join("/")));
                    return Some(captures);
                }
                Segment::Literal(lit) => {
                    if path.get(i) != Some(&lit.as_str()) {
                        return None;
                    }
                }
                Segment::Param(name) => match path.get(i) {
                    Some(value) if !value.is_empty() => {
                        captures.push((name.clone(), (*value).to_owned()))
                    }
                    _ => return None,
                },
            }
        }
        (path.len() == self.segments.len()).then_some(captures)
    }

    fn handler(&self, method: &str) -> Option<&Handler<S>> {
        let find = |m: &str| self.methods.iter().find(|(n, _)| n == m).map(|(_, h)| h);
        find(method).or_else(|| if method == "HEAD" { find("GET") } else { None })
    }
}

impl<S> Router<S> {
    /// A router without routes (every request gets a 404).
    pub fn new() -> Router<S> {
        Router {
            routes: Vec::new(),
            fallback: None,
        }
    }

    /// Route requests with any of `methods` whose path matches `pattern` to
    /// `handler` (see [Patterns](Router#patterns); panics as described
    /// [there](Router#panics)).
    pub fn route<H>(mut self, methods: &[&str], pattern: &str, handler: H) -> Router<S>
    where
        H: Fn(&S, Request<'_>, &Params) -> Result<Response, Error> + Send + Sync + 'static,
    {
        if methods.is_empty() {
            panic!("route {pattern:?} has no methods");
        }
        let handler: Handler<S> = Arc::new(handler);
        let segments = parse_pattern(pattern);
        let index = match self.routes.iter().position(|r| {
            r.segments.len() == segments.len()
                && r.segments
                    .iter()
                    .zip(&segments)
                    .all(|(a, b)| a.same_shape(b))
        }) {
            Some(i) if self.routes[i].segments == segments => i,
            Some(i) => panic!(
                "route pattern {pattern:?} conflicts with {:?}: same paths, other capture names",
                self.routes[i].pattern
            ),
            None => {
                // Keep the list sorted, most specific first.
                let at = self
                    .routes
                    .partition_point(|r| specificity(&r.segments, &segments) != Ordering::Greater);
                self.routes.insert(
                    at,
                    Route {
                        pattern: pattern.to_owned(),
                        segments,
                        methods: Vec::new(),
                    },
                );
                at
            }
        };
        let route = &mut self.routes[index];
        for &method in methods {
            check_method(method);
            if route.methods.iter().any(|(m, _)| m == method) {
                panic!("route {method} {pattern:?} is registered twice");
            }
            route.methods.push((method.to_owned(), handler.clone()));
        }
        self
    }

    /// Route `GET` (and so `HEAD`) requests for `pattern` to `handler`.
    pub fn get<H>(self, pattern: &str, handler: H) -> Router<S>
    where
        H: Fn(&S, Request<'_>, &Params) -> Result<Response, Error> + Send + Sync + 'static,
    {
        self.route(&["GET"], pattern, handler)
    }

    /// Route `POST` requests for `pattern` to `handler`.
    pub fn post<H>(self, pattern: &str, handler: H) -> Router<S>
    where
        H: Fn(&S, Request<'_>, &Params) -> Result<Response, Error> + Send + Sync + 'static,
    {
        self.route(&["POST"], pattern, handler)
    }

    /// Route `PUT` requests for `pattern` to `handler`.
    pub fn put<H>(self, pattern: &str, handler: H) -> Router<S>
    where
        H: Fn(&S, Request<'_>, &Params) -> Result<Response, Error> + Send + Sync + 'static,
    {
        self.route(&["PUT"], pattern, handler)
    }

    /// Route `PATCH` requests for `pattern` to `handler`.
    pub fn patch<H>(self, pattern: &str, handler: H) -> Router<S>
    where
        H: Fn(&S, Request<'_>, &Params) -> Result<Response, Error> + Send + Sync + 'static,
    {
        self.route(&["PATCH"], pattern, handler)
    }

    /// Route `DELETE` requests for `pattern` to `handler`.
    pub fn delete<H>(self, pattern: &str, handler: H) -> Router<S>
    where
        H: Fn(&S, Request<'_>, &Params) -> Result<Response, Error> + Send + Sync + 'static,
    {
        self.route(&["DELETE"], pattern, handler)
    }

    /// Answer requests whose path no pattern matches with `handler` (it gets empty
    /// [`Params`]) instead of the router's 404. A path that matches a pattern, but
    /// not for the request's method, still gets the 405.
    pub fn fallback<H>(mut self, handler: H) -> Router<S>
    where
        H: Fn(&S, Request<'_>, &Params) -> Result<Response, Error> + Send + Sync + 'static,
    {
        self.fallback = Some(Arc::new(handler));
        self
    }

    /// Answer `req` with the handler of the route it matches, giving it `state`;
    /// or with a 404 or 405 (see [which route answers](Router#which-route-answers)).
    /// The handler's `Err` is returned as is.
    pub fn call(&self, state: &S, req: Request<'_>) -> Result<Response, Error> {
        let path = match &*req.path_info {
            "" => "/",
            p => p,
        };
        let segments: Vec<&str> = match path.strip_prefix('/') {
            Some(rest) => rest.split('/').collect(),
            None => Vec::new(), // not a path: matches nothing
        };
        let mut allow: Vec<&str> = Vec::new();
        let mut found = None;
        if !segments.is_empty() {
            for route in &self.routes {
                let Some(captures) = route.matches(&segments) else {
                    continue;
                };
                if let Some(handler) = route.handler(&req.method) {
                    found = Some((
                        handler,
                        Params {
                            route: route.pattern.clone(),
                            captures,
                        },
                    ));
                    break;
                }
                for (method, _) in &route.methods {
                    allow.push(method);
                    if method == "GET" {
                        allow.push("HEAD");
                    }
                }
            }
        }
        if let Some((handler, params)) = found {
            return handler(state, req, &params);
        }
        if allow.is_empty() {
            return match &self.fallback {
                Some(handler) => handler(state, req, &Params::default()),
                None => Ok(plain(404, "Not Found\n")),
            };
        }
        allow.sort_unstable();
        allow.dedup();
        Ok(plain(405, "Method Not Allowed\n").header("Allow", allow.join(", ")))
    }
}

fn plain(status: u16, body: &'static str) -> Response {
    Response::new(status)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(body)
}

impl<S> Default for Router<S> {
    fn default() -> Router<S> {
        Router::new()
    }
}

/// Lists the patterns, most specific first, with their methods.
impl<S> fmt::Debug for Router<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for route in &self.routes {
            let methods: Vec<&str> = route.methods.iter().map(|(m, _)| m.as_str()).collect();
            list.entry(&format_args!("{} {}", methods.join(","), route.pattern));
        }
        list.finish()
    }
}

/// The captures of the route that matched, by name, and its pattern.
///
/// ```
/// use plughost_sdk::{Params, Request, Response, Router};
///
/// let router = Router::new().get("/users/{id}/files/{*path}", |_: &(), _req: Request, p: &Params| {
///     let id: u32 = p.parse("id").unwrap_or(0);
///     Ok(Response::new(200).body(format!("{} {id} {}", p.route(), p.get("path").unwrap_or("-"))))
/// });
/// let resp = router.call(&(), Request::builder().path("/users/7/files/a/b.txt").build()).unwrap();
/// assert_eq!(resp.body.into_bytes().unwrap(), b"/users/{id}/files/{*path} 7 a/b.txt");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    route: String,
    captures: Vec<(String, String)>,
}

impl Params {
    /// The value captured as `{name}` or `{*name}`, percent-decoded (as PATH_INFO is).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.captures
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value captured as `name`, parsed; `None` if there is none or it does not
    /// parse (a handler would usually answer 404 then: `/items/abc` names no item).
    pub fn parse<T: FromStr>(&self, name: &str) -> Option<T> {
        self.get(name)?.parse().ok()
    }

    /// Every capture, `(name, value)`, in the pattern's order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.captures.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The pattern of the route that matched, as registered (e.g. `/items/{id}`;
    /// empty for the fallback). Handy as a low-cardinality label in logs.
    pub fn route(&self) -> &str {
        &self.route
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler that answers `NAME k=v k=v` (its name and the captures).
    fn tag(name: &'static str) -> impl Fn(&(), Request, &Params) -> Result<Response, Error> {
        move |_, req, params| {
            let mut out = name.to_string();
            for (k, v) in params.iter() {
                out.push_str(&format!(" {k}={v}"));
            }
            Ok(Response::new(200).header("X-Method", req.method).body(out))
        }
    }

    fn send(router: &Router, method: &str, path: &str) -> (u16, Option<String>, String) {
        let req = Request::builder().method(method).path(path).build();
        let resp = router.call(&(), req).unwrap();
        let allow = resp.header_value("allow").map(str::to_owned);
        let body = String::from_utf8(resp.body.into_bytes().unwrap()).unwrap();
        (resp.status, allow, body)
    }

    fn body(router: &Router, method: &str, path: &str) -> String {
        let (status, _, body) = send(router, method, path);
        assert_eq!(status, 200, "{method} {path}: {body}");
        body
    }

    fn items() -> Router {
        Router::new()
            .get("/items", tag("list"))
            .post("/items", tag("create"))
            .get("/items/{id}", tag("show"))
            .delete("/items/{id}", tag("remove"))
            .route(&["PUT", "PATCH"], "/items/{id}", tag("update"))
            .get("/items/new", tag("form"))
    }

    #[test]
    fn dispatches_by_method_and_path() {
        let r = items();
        assert_eq!(body(&r, "GET", "/items"), "list");
        assert_eq!(body(&r, "POST", "/items"), "create");
        assert_eq!(body(&r, "GET", "/items/42"), "show id=42");
        assert_eq!(body(&r, "DELETE", "/items/42"), "remove id=42");
        assert_eq!(body(&r, "PUT", "/items/42"), "update id=42");
        assert_eq!(body(&r, "PATCH", "/items/42"), "update id=42");
    }

    #[test]
    fn literal_beats_capture_whatever_the_order() {
        let r = items(); // /items/new registered last
        assert_eq!(body(&r, "GET", "/items/new"), "form");
        let r: Router = Router::new()
            .get("/items/new", tag("form"))
            .get("/items/{id}", tag("show"));
        assert_eq!(body(&r, "GET", "/items/new"), "form");
        assert_eq!(body(&r, "GET", "/items/newer"), "show id=newer");
    }

    #[test]
    fn more_specific_earlier_segment_wins_and_backtracks() {
        let r: Router = Router::new()
            .get("/{a}/b/{c}", tag("capture-first"))
            .get("/a/{b}/c", tag("literal-first"))
            .get("/{*rest}", tag("rest"));
        assert_eq!(body(&r, "GET", "/a/b/c"), "literal-first b=b");
        // The literal-first route fails at its last segment: the next one answers.
        assert_eq!(body(&r, "GET", "/a/b/d"), "capture-first a=a c=d");
        assert_eq!(body(&r, "GET", "/x/y/z/w"), "rest rest=x/y/z/w");
        assert_eq!(body(&r, "GET", "/"), "rest rest=");
    }

    #[test]
    fn capture_beats_rest_and_longer_literal_prefix_beats_rest() {
        let r: Router = Router::new()
            .get("/f/{*path}", tag("rest"))
            .get("/f/{name}", tag("one"))
            .get("/f/special/{*path}", tag("special"));
        assert_eq!(body(&r, "GET", "/f/x"), "one name=x");
        assert_eq!(body(&r, "GET", "/f/x/y"), "rest path=x/y");
        assert_eq!(body(&r, "GET", "/f/special/y"), "special path=y");
        assert_eq!(body(&r, "GET", "/f/special"), "one name=special");
        assert_eq!(body(&r, "GET", "/f/"), "rest path=");
        assert_eq!(send(&r, "GET", "/f").0, 404);
    }

    #[test]
    fn method_decides_between_matching_patterns() {
        let r: Router = Router::new()
            .get("/items/new", tag("form"))
            .delete("/items/{id}", tag("remove"));
        assert_eq!(body(&r, "DELETE", "/items/new"), "remove id=new");
        let (status, allow, _) = send(&r, "POST", "/items/new");
        assert_eq!((status, allow.as_deref()), (405, Some("DELETE, GET, HEAD")));
    }

    #[test]
    fn not_found() {
        let r = items();
        for path in ["/", "/nothing", "/items/1/more", "/Items", "items", ""] {
            let req = Request::builder().path(path).build();
            let resp = r.call(&(), req).unwrap();
            assert_eq!(resp.status, 404, "{path:?}");
            assert_eq!(
                resp.header_value("content-type"),
                Some("text/plain; charset=utf-8")
            );
            assert_eq!(resp.header_value("allow"), None);
            assert_eq!(resp.body.into_bytes().unwrap(), b"Not Found\n");
        }
        assert_eq!(send(&Router::new(), "GET", "/").0, 404);
    }

    #[test]
    fn method_not_allowed_lists_sorted_methods_with_head() {
        let r = items();
        let req = Request::builder().method("DELETE").path("/items").build();
        let resp = r.call(&(), req).unwrap();
        assert_eq!(resp.status, 405);
        assert_eq!(resp.header_value("allow"), Some("GET, HEAD, POST"));
        assert_eq!(
            resp.header_value("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(resp.body.into_bytes().unwrap(), b"Method Not Allowed\n");

        let (status, allow, _) = send(&r, "POST", "/items/1");
        assert_eq!(status, 405);
        assert_eq!(
            allow.as_deref(),
            Some("DELETE, GET, HEAD, PATCH, PUT"),
            "sorted, no duplicates"
        );
        // /items/new and /items/{id} both match: the union of their methods.
        let (status, allow, _) = send(&r, "POST", "/items/new");
        assert_eq!(status, 405);
        assert_eq!(allow.as_deref(), Some("DELETE, GET, HEAD, PATCH, PUT"));
    }

    #[test]
    fn head_runs_get_unless_it_has_its_own_route() {
        let r = items();
        let req = Request::builder().method("HEAD").path("/items/5").build();
        let resp = r.call(&(), req).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header_value("x-method"), Some("HEAD"));

        let r: Router = Router::new()
            .get("/a", tag("get"))
            .route(&["HEAD"], "/a", tag("head"))
            .post("/b", tag("post"));
        assert_eq!(body(&r, "HEAD", "/a"), "head");
        assert_eq!(body(&r, "GET", "/a"), "get");
        let (status, allow, _) = send(&r, "PUT", "/a");
        assert_eq!((status, allow.as_deref()), (405, Some("GET, HEAD")));
        // No GET, no HEAD.
        let (status, allow, _) = send(&r, "HEAD", "/b");
        assert_eq!((status, allow.as_deref()), (405, Some("POST")));
    }

    #[test]
    fn methods_are_case_sensitive() {
        let r = items();
        let (status, allow, _) = send(&r, "get", "/items");
        assert_eq!((status, allow.as_deref()), (405, Some("GET, HEAD, POST")));
        let r: Router = Router::new().route(&["PURGE"], "/cache", tag("purge"));
        assert_eq!(body(&r, "PURGE", "/cache"), "purge");
        assert_eq!(send(&r, "Purge", "/cache").0, 405);
    }

    #[test]
    fn captures_are_percent_decoded_path_info() {
        let r = items();
        // PATH_INFO arrives decoded from the host: `/items/caf%C3%A9%20au%20lait`.
        assert_eq!(
            body(&r, "GET", "/items/caf\u{e9} au lait"),
            "show id=caf\u{e9} au lait"
        );
        assert_eq!(body(&r, "GET", "/items/a%2"), "show id=a%2");
        let req = Request::builder().path("/items/%41").build();
        let resp = r.call(&(), req).unwrap();
        assert_eq!(
            resp.body.into_bytes().unwrap(),
            b"show id=%41",
            "not decoded twice"
        );
    }

    #[test]
    fn captures_are_one_non_empty_segment() {
        let r = items();
        assert_eq!(send(&r, "GET", "/items/").0, 404);
        assert_eq!(send(&r, "GET", "/items//").0, 404);
        assert_eq!(send(&r, "GET", "/items/a/b").0, 404);
    }

    #[test]
    fn trailing_slash_is_significant() {
        let r: Router = Router::new()
            .get("/items", tag("no-slash"))
            .get("/dir/", tag("slash"))
            .get("/", tag("root"));
        assert_eq!(body(&r, "GET", "/items"), "no-slash");
        assert_eq!(send(&r, "GET", "/items/").0, 404);
        assert_eq!(body(&r, "GET", "/dir/"), "slash");
        assert_eq!(send(&r, "GET", "/dir").0, 404);
        assert_eq!(body(&r, "GET", "/"), "root");
        // The mount point itself (empty PATH_INFO) is `/`.
        assert_eq!(body(&r, "GET", ""), "root");
        assert_eq!(send(&r, "GET", "//").0, 404);
    }

    #[test]
    fn matches_below_the_mount_point() {
        let r = items();
        let req = Request::builder()
            .script_name("/api/v1")
            .path("/items/9")
            .build();
        let resp = r.call(&(), req).unwrap();
        assert_eq!(resp.body.into_bytes().unwrap(), b"show id=9");
    }

    #[test]
    fn many_routes() {
        let mut r: Router = Router::new();
        for i in 0..200 {
            let list: &'static str = Box::leak(format!("list{i}").into_boxed_str());
            let show: &'static str = Box::leak(format!("show{i}").into_boxed_str());
            r = r
                .get(&format!("/r{i}"), tag(list))
                .get(&format!("/r{i}/{{id}}/x"), tag(show))
                .post(&format!("/r{i}/{{id}}/x"), tag(show));
        }
        r = r.get("/{any}", tag("any"));
        for i in [0, 1, 99, 199] {
            assert_eq!(body(&r, "GET", &format!("/r{i}")), format!("list{i}"));
            assert_eq!(
                body(&r, "POST", &format!("/r{i}/7/x")),
                format!("show{i} id=7")
            );
            let (status, allow, _) = send(&r, "PUT", &format!("/r{i}/7/x"));
            assert_eq!((status, allow.as_deref()), (405, Some("GET, HEAD, POST")));
        }
        assert_eq!(body(&r, "GET", "/r200"), "any any=r200");
        assert_eq!(send(&r, "GET", "/r200/7/x").0, 404);
    }

    #[test]
    fn state_is_shared_with_handlers() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let r = Router::new()
            .post("/hit", |hits: &AtomicU32, _req, _p: &Params| {
                let n = hits.fetch_add(1, Ordering::Relaxed) + 1;
                Ok(Response::new(200).body(n.to_string()))
            })
            .get("/fail", |_: &AtomicU32, _req, _p: &Params| {
                Err(Error::new("store down"))
            });
        let hits = AtomicU32::new(0);
        for _ in 0..3 {
            r.call(
                &hits,
                Request::builder().method("POST").path("/hit").build(),
            )
            .unwrap();
        }
        assert_eq!(hits.load(Ordering::Relaxed), 3);
        let err = r.call(&hits, Request::new("GET", "/fail")).unwrap_err();
        assert_eq!(err.message(), "store down");
    }

    #[test]
    fn router_is_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Router<std::cell::Cell<u8>>>();
    }

    #[test]
    fn fallback_replaces_404_not_405() {
        let r: Router = Router::new().get("/a", tag("a")).fallback(|_, req, p| {
            assert_eq!(p, &Params::default());
            Ok(Response::new(200).body(format!("fallback {}", req.path_info)))
        });
        assert_eq!(body(&r, "GET", "/zzz"), "fallback /zzz");
        assert_eq!(send(&r, "POST", "/a").0, 405);
    }

    #[test]
    fn params_helpers() {
        let r: Router = Router::new().get("/n/{num}/{word}", |_, _req, p| {
            assert_eq!(p.route(), "/n/{num}/{word}");
            assert_eq!(p.parse::<u8>("num"), Some(12));
            assert_eq!(p.parse::<u8>("word"), None);
            assert_eq!(p.parse::<u8>("missing"), None);
            assert_eq!(p.get("missing"), None);
            Ok(Response::new(204))
        });
        assert_eq!(send(&r, "GET", "/n/12/abc").0, 204);
    }

    #[test]
    fn debug_lists_routes_most_specific_first() {
        let r = items();
        assert_eq!(
            format!("{r:?}"),
            r#"[GET,POST /items, GET /items/new, GET,DELETE,PUT,PATCH /items/{id}]"#
        );
    }

    #[test]
    fn same_pattern_merges_methods() {
        let r: Router = Router::new()
            .get("/x/{id}", tag("get"))
            .post("/x/{id}", tag("post"));
        assert_eq!(format!("{r:?}"), "[GET,POST /x/{id}]");
    }

    fn panics(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
        let err = std::panic::catch_unwind(f).unwrap_err();
        err.downcast_ref::<String>().cloned().unwrap_or_default()
    }

    #[test]
    fn bad_routes_panic() {
        let get = |p: &'static str| move || drop(Router::<()>::new().get(p, tag("x")));
        assert!(panics(get("items")).contains("must start with `/`"));
        assert!(panics(get("/a{b}")).contains("whole segment"));
        assert!(panics(get("/{}")).contains("bad capture"));
        assert!(panics(get("/{a}/{a}")).contains("appears twice"));
        assert!(panics(get("/{*a}/b")).contains("last segment"));
        let msg = panics(|| {
            drop(
                Router::<()>::new()
                    .get("/i/{id}", tag("x"))
                    .get("/i/{name}", tag("y")),
            )
        });
        assert!(msg.contains("conflicts with \"/i/{id}\""), "{msg}");
        let msg = panics(|| drop(Router::<()>::new().get("/i", tag("x")).get("/i", tag("y"))));
        assert!(msg.contains("registered twice"), "{msg}");
        let msg = panics(|| drop(Router::<()>::new().route(&["GE T"], "/", tag("x"))));
        assert!(msg.contains("not a valid HTTP method"), "{msg}");
        let msg = panics(|| drop(Router::<()>::new().route(&[], "/", tag("x"))));
        assert!(msg.contains("no methods"), "{msg}");
    }
}
