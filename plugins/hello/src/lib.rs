//! The smallest app: answers `Hello, world!`, or the `greeting` from its config.

use plughost_sdk::{App, Config, Error, Request, Response};

struct Hello {
    greeting: String,
}

impl App for Hello {
    /// Copying a string never blocks, so the host may answer on its event loop.
    const NONBLOCKING: bool = true;

    fn new(config: &Config) -> Result<Self, Error> {
        let greeting = config.get("greeting").unwrap_or("Hello, world!");
        Ok(Hello {
            greeting: greeting.to_owned(),
        })
    }

    fn call(&self, _req: Request) -> Result<Response, Error> {
        Ok(Response::new(200)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(self.greeting.as_str()))
    }
}

plughost_sdk::export_plugin!(name: "hello", apps: { "main" => Hello });
