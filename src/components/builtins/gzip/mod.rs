//! `egg:plughost#gzip` (= `egg:Paste#gzip`): compresses responses as they
//! stream, in the coding `Accept-Encoding` prefers among `encodings`. Only
//! responses worth it are touched: a compressible `types` media type, not
//! already encoded, not a range, HEAD, 1xx/204/304, `no-transform`, and not
//! known to be under `min_size`. Those that could be compressed get
//! `Vary: Accept-Encoding`; compressed ones lose Content-Length, and a
//! strong ETag becomes weak (the bytes differ from the identity response's).

mod encoder;
mod negotiate;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;
use http_body::{Body as _, Frame};

use crate::core::builtin::{Builtin, FilterSite, Make, SettingError};
use crate::core::{Body, BodyError, Handler, Request, Response, ResponseFuture};

use encoder::Encoder;
use negotiate::Coding;

pub(crate) const BUILTIN: Builtin = Builtin {
    name: "gzip",
    aliases: &[("Paste", "gzip")],
    make: Make::Filter(filter),
};

/// The default `types`: text, JSON, JavaScript, XML and SVG.
const DEFAULT_TYPES: &[&str] = &[
    "text/*",
    "application/json",
    "application/javascript",
    "application/xml",
    "image/svg+xml",
];

const KEYS: &str = "compress_level, encodings, min_size, types";

struct Gzip {
    next: Arc<dyn Handler>,
    level: u32,
    encodings: Vec<Coding>,
    min_size: u64,
    /// Lower-case media types; `major/*` matches a whole major type.
    types: Vec<String>,
}

fn filter(site: FilterSite<'_>) -> Result<Arc<dyn Handler>, SettingError> {
    let c = site.component;
    let mut gzip = Gzip {
        next: site.next,
        level: 6,
        encodings: vec![Coding::Gzip],
        min_size: 256,
        types: DEFAULT_TYPES.iter().map(|t| (*t).to_owned()).collect(),
    };
    for (key, value) in &c.local_conf {
        match key.as_str() {
            "compress_level" => {
                gzip.level = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|l| *l <= 9)
                    .ok_or_else(|| {
                        SettingError::key(key, format!("expected 0 to 9, found {value:?}"))
                    })?
            }
            "encodings" => {
                gzip.encodings = value
                    .split_whitespace()
                    .map(|t| {
                        Coding::parse(t).ok_or_else(|| {
                            SettingError::key(
                                key,
                                format!("unknown encoding {t:?}; known: gzip, br"),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?;
                if gzip.encodings.is_empty() {
                    return Err(SettingError::key(key, "empty; expected gzip and/or br"));
                }
            }
            "min_size" => {
                gzip.min_size = value.trim().parse().map_err(|_| {
                    SettingError::key(key, format!("expected a number of bytes, found {value:?}"))
                })?
            }
            "types" => {
                gzip.types = value
                    .split_whitespace()
                    .map(str::to_ascii_lowercase)
                    .collect();
                if let Some(bad) = gzip.types.iter().find(|t| !t.contains('/')) {
                    return Err(SettingError::key(key, format!("not a media type: {bad:?}")));
                }
            }
            other => {
                return Err(SettingError::key(
                    other,
                    format!("unknown gzip key; known keys: {KEYS}"),
                ))
            }
        }
    }
    Ok(Arc::new(gzip))
}

impl Handler for Gzip {
    fn call(&self, req: Request) -> ResponseFuture<'_> {
        let untouched = req.method == http::Method::HEAD || req.headers.contains_key(header::RANGE);
        let coding = negotiate::choose(&req.headers, &self.encodings);
        Box::pin(async move {
            let mut resp = self.next.call(req).await;
            if untouched || !self.compressible(&resp) {
                return resp;
            }
            add_vary(resp.headers_mut());
            let Some(coding) = coding else { return resp };
            let h = resp.headers_mut();
            h.remove(header::CONTENT_LENGTH);
            h.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(coding.token()),
            );
            if let Some(tag) = h.get(header::ETAG) {
                if !tag.as_bytes().starts_with(b"W/") {
                    let mut weak = b"W/".to_vec();
                    weak.extend_from_slice(tag.as_bytes());
                    if let Ok(v) = HeaderValue::from_bytes(&weak) {
                        h.insert(header::ETAG, v);
                    }
                }
            }
            let level = self.level;
            resp.map(|inner| {
                Body::new(Compressed {
                    inner,
                    encoder: Some(Encoder::new(coding, level)),
                    unflushed: false,
                })
            })
        })
    }
}

impl Gzip {
    /// Whether the response is one this filter would compress for a client
    /// that accepts it.
    fn compressible(&self, resp: &Response) -> bool {
        let status = resp.status();
        if status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status == StatusCode::PARTIAL_CONTENT
        {
            return false;
        }
        let h = resp.headers();
        let encoded = h
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if encoded || h.contains_key(header::CONTENT_RANGE) || no_transform(h) {
            return false;
        }
        let size = crate::core::headers::content_length(h)
            .ok()
            .flatten()
            .or_else(|| resp.body().size_hint().exact());
        if size.is_some_and(|n| n < self.min_size) {
            return false;
        }
        let Some(media) = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
        else {
            return false;
        };
        self.types.iter().any(|t| match t.strip_suffix("/*") {
            Some(major) => media.split('/').next() == Some(major),
            None => *t == media,
        })
    }
}

fn no_transform(h: &HeaderMap) -> bool {
    h.get_all(header::CACHE_CONTROL).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
        })
    })
}

/// `Vary: Accept-Encoding`, unless it (or `*`) is already there.
fn add_vary(h: &mut HeaderMap) {
    let present = h.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|t| {
                let t = t.trim();
                t == "*" || t.eq_ignore_ascii_case("accept-encoding")
            })
        })
    });
    if !present {
        h.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// The inner body, compressed as it arrives; trailers are dropped.
struct Compressed {
    inner: Body,
    /// `None` once finished.
    encoder: Option<Encoder>,
    /// Bytes written since the last flush.
    unflushed: bool,
}

impl http_body::Body for Compressed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(None);
            };
            let out = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        this.unflushed = true;
                        encoder.write(&data)
                    }
                    Err(_trailers) => continue,
                },
                Poll::Ready(Some(Err(e))) => {
                    this.encoder = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => this.encoder.take().expect("checked above").finish(),
                Poll::Pending if this.unflushed => {
                    this.unflushed = false;
                    encoder.flush()
                }
                Poll::Pending => return Poll::Pending,
            };
            match out {
                Ok(bytes) if bytes.is_empty() => continue,
                Ok(bytes) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Err(e) => {
                    this.encoder = None;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none()
    }
}
