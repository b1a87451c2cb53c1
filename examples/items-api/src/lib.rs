//! A JSON items API: `GET /items[?q=TEXT&limit=N]`, `POST /items` with
//! `{"name": ...}`, `GET /items/{id}`, `DELETE /items/{id}`, and a filter
//! `api_key` that refuses writes without the configured `X-Api-Key`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use plughost_sdk::{App, Config, Error, Filter, Next, Params, Request, Response, Router};
use serde_json::{json, Value};

#[derive(Default)]
struct Store {
    next: u64,
    items: BTreeMap<u64, String>,
}

struct Items {
    store: Mutex<Store>,
    router: Router<Mutex<Store>>,
}

fn item(id: u64, name: &str) -> Value {
    json!({ "id": id, "name": name })
}

fn list(store: &Mutex<Store>, req: Request, _: &Params) -> Result<Response, Error> {
    let limit = match req.query_param("limit") {
        Some(n) => n
            .parse()
            .map_err(|_| Error::bad_request("limit must be a number"))?,
        None => usize::MAX,
    };
    let q = req.query_param("q").unwrap_or_default();
    let store = store.lock().unwrap();
    let found: Vec<Value> = store
        .items
        .iter()
        .filter(|(_, name)| name.contains(&q))
        .take(limit)
        .map(|(id, name)| item(*id, name))
        .collect();
    Response::json(200, &found)
}

fn create(store: &Mutex<Store>, mut req: Request, _: &Params) -> Result<Response, Error> {
    let body: Value = req.json(64 * 1024)?;
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return Err(Error::unprocessable("`name` (a string) is required"));
    };
    let mut store = store.lock().unwrap();
    store.next += 1;
    let id = store.next;
    store.items.insert(id, name.to_owned());
    Ok(Response::json(201, &item(id, name))?
        .header("Location", format!("{}/items/{id}", req.script_name)))
}

fn id(p: &Params) -> Result<u64, Error> {
    p.parse("id")
        .ok_or_else(|| Error::not_found("no such item"))
}

fn show(store: &Mutex<Store>, _: Request, p: &Params) -> Result<Response, Error> {
    let id = id(p)?;
    let store = store.lock().unwrap();
    let name = store
        .items
        .get(&id)
        .ok_or_else(|| Error::not_found("no such item"))?;
    Response::json(200, &item(id, name))
}

fn remove(store: &Mutex<Store>, _: Request, p: &Params) -> Result<Response, Error> {
    let id = id(p)?;
    match store.lock().unwrap().items.remove(&id) {
        Some(_) => Ok(Response::new(204)),
        None => Err(Error::not_found("no such item")),
    }
}

impl App for Items {
    fn new(config: &Config) -> Result<Self, Error> {
        config.expect_keys(&[])?;
        let router = Router::new()
            .get("/items", list)
            .post("/items", create)
            .get("/items/{id}", show)
            .delete("/items/{id}", remove);
        Ok(Items {
            store: Mutex::default(),
            router,
        })
    }

    fn call(&self, req: Request) -> Result<Response, Error> {
        self.router.call(&self.store, req)
    }
}

/// Refuses requests other than GET and HEAD without `X-Api-Key: KEY`.
pub struct ApiKey {
    key: String,
}

impl Filter for ApiKey {
    fn new(config: &Config) -> Result<Self, Error> {
        config.expect_keys(&["key"])?;
        Ok(ApiKey {
            key: config.require("key")?.to_owned(),
        })
    }

    fn call(&self, req: Request, next: Next<'_>) -> Result<Response, Error> {
        let reads = req.method == "GET" || req.method == "HEAD";
        if !reads && req.header("x-api-key") != Some(self.key.as_str()) {
            return Err(Error::forbidden("writes need X-Api-Key"));
        }
        next.call(req)
    }
}

plughost_sdk::export_plugin!(
    name: "items_api",
    apps: { "main" => Items },
    filters: { "api_key" => ApiKey },
);

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> ApiKey {
        let config = Config::new("api_key", vec![], vec![("key".into(), "s3cret".into())]);
        ApiKey::new(&config).unwrap()
    }

    /// The filter, tested without a host: `Next::from_fn` is the rest of the pipeline.
    #[test]
    fn writes_need_the_key_and_reads_pass() {
        let passed = |req: Request| Ok(Response::text(200, format!("passed {}", req.method)));
        let post = Request::builder().method("POST").path("/items").build();
        let err = filter().call(post, Next::from_fn(passed)).unwrap_err();
        assert_eq!(err.status_code(), 403);

        let post = Request::builder()
            .method("POST")
            .path("/items")
            .header("X-Api-Key", "s3cret")
            .build();
        let resp = filter().call(post, Next::from_fn(passed)).unwrap();
        assert_eq!(resp.status, 200);

        let get = Request::builder().method("GET").path("/items").build();
        assert_eq!(
            filter().call(get, Next::from_fn(passed)).unwrap().status,
            200
        );
    }

    #[test]
    fn a_misspelt_key_is_refused() {
        let config = Config::new("api_key", vec![], vec![("kye".into(), "x".into())]);
        assert!(ApiKey::new(&config).is_err());
    }
}
