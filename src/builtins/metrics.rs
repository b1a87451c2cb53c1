//! `egg:plughost#metrics`: the host's metrics in the Prometheus text format.
//! Mount it anywhere, e.g. with urlmap at `/_metrics`.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue};

use crate::config::Component;
use crate::metrics::METRICS;
use crate::pipeline::{body, Handler, Request, ResponseFuture};

struct MetricsApp;

/// Create the metrics app; it takes no keys.
pub fn app(c: &Component) -> Result<Arc<dyn Handler>, String> {
    if let Some((key, _)) = c.local_conf.first() {
        return Err(format!("{key}: the metrics app takes no settings"));
    }
    Ok(Arc::new(MetricsApp))
}

impl Handler for MetricsApp {
    fn call(&self, _req: Request) -> ResponseFuture<'_> {
        Box::pin(async {
            let mut resp = http::Response::new(body::full(Bytes::from(METRICS.render())));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        })
    }
}
