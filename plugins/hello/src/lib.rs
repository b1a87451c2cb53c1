//! The smallest app: answers `Hello, world!`, or the `greeting` from its config.

use std::sync::Arc;

use plughost_sdk::{App, Config, Error, Request, Response};

struct Hello {
    /// Shared with every response body, so answering copies nothing.
    greeting: Arc<str>,
}

impl App for Hello {
    /// Answering from memory never blocks, so the host may answer on its event loop.
    const NONBLOCKING: bool = true;

    fn new(config: &Config) -> Result<Self, Error> {
        config.expect_keys(&["greeting"])?;
        // Also from [DEFAULT], as a Paste factory reads its settings.
        let greeting = config.setting("greeting").unwrap_or("Hello, world!");
        // Through the SDK's `log` backend: one line in the host's log.
        log::info!("ready to greet with {greeting:?}");
        Ok(Hello {
            greeting: greeting.into(),
        })
    }

    fn call(&self, _req: Request) -> Result<Response, Error> {
        Ok(Response::new(200)
            // A page: the type the disk cache stores and serves (its `content_type`).
            .header("Content-Type", "text/html; charset=utf-8")
            .body(self.greeting.clone()))
    }
}

plughost_sdk::export_plugin!(name: "hello", apps: { "main" => Hello });
