//! A filter that makes chain order visible: it appends its `tag` to the request
//! header `X-Tag-Chain` on the way in and to the response header `X-Tag-Chain-Out`
//! on the way out. With `deny_prefix = /P` it answers 403 itself for paths under /P.
//!
//! The library also exports an app under the same name, `main` (as Paste
//! distributions do, e.g. `oslo.middleware#healthcheck`): it answers with the
//! chain of tags the request arrived with, so `use = egg:tag` means the filter
//! in a `[filter:]` section and the app in an `[app:]` section.

use plughost_sdk::{App, Config, Error, Filter, Next, Request, Response};

struct Tag {
    tag: String,
    deny_prefix: Option<String>,
}

fn append(current: Option<&str>, tag: &str) -> String {
    match current {
        Some(list) if !list.is_empty() => format!("{list},{tag}"),
        _ => tag.to_owned(),
    }
}

impl Filter for Tag {
    fn new(config: &Config) -> Result<Self, Error> {
        config.expect_keys(&["tag", "deny_prefix"])?;
        let tag = config.require("tag")?;
        if tag.is_empty() {
            return Err(Error::new("key `tag` must not be empty"));
        }
        Ok(Tag {
            tag: tag.to_owned(),
            deny_prefix: config.get("deny_prefix").map(str::to_owned),
        })
    }

    fn call(&self, mut req: Request, next: Next<'_>) -> Result<Response, Error> {
        if let Some(prefix) = &self.deny_prefix {
            if req.path_info.starts_with(prefix.as_str()) {
                return Ok(Response::new(403)
                    .header("Content-Type", "text/plain")
                    .header("X-Tag-Denied-By", self.tag.as_str())
                    .body("Forbidden\n"));
            }
        }
        let chain = append(req.header("x-tag-chain"), &self.tag);
        req.set_header("x-tag-chain", chain);
        let mut resp = next.call(req)?;
        let out = append(resp.header_value("X-Tag-Chain-Out"), &self.tag);
        resp.set_header("X-Tag-Chain-Out", out);
        Ok(resp)
    }
}

/// The app: `tag-chain: a,b` in the body, its own `tag` in `X-Tag-App`.
struct TagApp {
    tag: String,
}

impl App for TagApp {
    fn new(config: &Config) -> Result<Self, Error> {
        config.expect_keys(&["tag"])?;
        Ok(TagApp {
            tag: config.setting("tag").unwrap_or("app").to_owned(),
        })
    }

    fn call(&self, req: Request) -> Result<Response, Error> {
        let chain = req.header("x-tag-chain").unwrap_or("").to_owned();
        Ok(Response::new(200)
            .header("Content-Type", "text/plain; charset=utf-8")
            .header("X-Tag-App", self.tag.as_str())
            .body(format!("tag-chain: {chain}\n")))
    }
}

plughost_sdk::export_plugin!(
    name: "tag",
    apps: { "main" => TagApp },
    filters: { "main" => Tag },
);
