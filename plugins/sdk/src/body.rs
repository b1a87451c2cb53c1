use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;

use crate::ffi::ForeignBody;

/// A response body: empty, bytes in memory, or a stream the host pulls from
/// chunk by chunk (so a large or slow body is never held whole in memory).
pub struct Body(pub(crate) Inner);

pub(crate) enum Inner {
    Empty,
    Bytes(Vec<u8>),
    /// Bytes shared with the app (e.g. a fixed page it answers every request
    /// with): handed to the host without a copy.
    Shared(Arc<[u8]>),
    Reader(Box<dyn Read + Send>),
    Iter(Box<dyn Iterator<Item = io::Result<Vec<u8>>> + Send>),
    /// A body that came from the host (the response of `next`), passed on untouched.
    Foreign(ForeignBody),
}

impl Body {
    /// No body.
    pub fn empty() -> Body {
        Body(Inner::Empty)
    }

    /// Stream from a reader; it is read in chunks as the client accepts them.
    pub fn from_reader(reader: impl Read + Send + 'static) -> Body {
        Body(Inner::Reader(Box::new(reader)))
    }

    /// Stream chunks from an iterator; an `Err` aborts the response.
    pub fn from_chunks<I>(chunks: I) -> Body
    where
        I: IntoIterator<Item = io::Result<Vec<u8>>>,
        I::IntoIter: Send + 'static,
    {
        Body(Inner::Iter(Box::new(chunks.into_iter())))
    }

    /// Exact length, when known without reading (the host uses it for
    /// `Content-Length`).
    pub fn size_hint(&self) -> Option<u64> {
        match &self.0 {
            Inner::Empty => Some(0),
            Inner::Bytes(b) => Some(b.len() as u64),
            Inner::Shared(b) => Some(b.len() as u64),
            Inner::Foreign(f) => f.size_hint(),
            Inner::Reader(_) | Inner::Iter(_) => None,
        }
    }

    /// Read the body as a stream (for filters that transform it).
    pub fn into_reader(self) -> Box<dyn Read + Send> {
        match self.0 {
            Inner::Empty => Box::new(io::empty()),
            Inner::Bytes(b) => Box::new(io::Cursor::new(b)),
            Inner::Shared(b) => Box::new(io::Cursor::new(b)),
            Inner::Reader(r) => r,
            Inner::Iter(it) => Box::new(IterReader {
                it,
                chunk: Vec::new(),
                pos: 0,
            }),
            Inner::Foreign(f) => Box::new(f),
        }
    }

    /// Read the whole body into memory (for small bodies; stream large ones with
    /// [`Body::into_reader`]).
    pub fn into_bytes(self) -> io::Result<Vec<u8>> {
        match self.0 {
            Inner::Bytes(b) => return Ok(b),
            Inner::Shared(b) => return Ok(b.to_vec()),
            _ => {}
        }
        let mut out = Vec::new();
        self.into_reader().read_to_end(&mut out)?;
        Ok(out)
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.0 {
            Inner::Empty => "empty",
            Inner::Bytes(_) => "bytes",
            Inner::Shared(_) => "shared",
            Inner::Reader(_) => "reader",
            Inner::Iter(_) => "iter",
            Inner::Foreign(_) => "foreign",
        };
        f.debug_struct("Body").field("kind", &kind).finish()
    }
}

impl From<Vec<u8>> for Body {
    fn from(b: Vec<u8>) -> Body {
        Body(Inner::Bytes(b))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Body {
        Body(Inner::Bytes(s.into_bytes()))
    }
}

impl From<&str> for Body {
    fn from(s: &str) -> Body {
        Body(Inner::Bytes(s.as_bytes().to_vec()))
    }
}

/// A request string (borrowed from the host or owned): copied into the body.
impl From<std::borrow::Cow<'_, str>> for Body {
    fn from(s: std::borrow::Cow<'_, str>) -> Body {
        Body(Inner::Bytes(s.into_owned().into_bytes()))
    }
}

impl From<&[u8]> for Body {
    fn from(s: &[u8]) -> Body {
        Body(Inner::Bytes(s.to_vec()))
    }
}

/// Shares the bytes instead of copying them: for an app that answers many
/// requests with the same body, keep it in an `Arc` and pass a clone.
impl From<Arc<[u8]>> for Body {
    fn from(b: Arc<[u8]>) -> Body {
        Body(Inner::Shared(b))
    }
}

/// Shares the text instead of copying it (see `From<Arc<[u8]>>`).
impl From<Arc<str>> for Body {
    fn from(s: Arc<str>) -> Body {
        Body(Inner::Shared(s.into()))
    }
}

/// Adapts a chunk iterator to `Read`.
pub(crate) struct IterReader {
    pub(crate) it: Box<dyn Iterator<Item = io::Result<Vec<u8>>> + Send>,
    pub(crate) chunk: Vec<u8>,
    pub(crate) pos: usize,
}

impl Read for IterReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.chunk.len() {
            match self.it.next() {
                None => return Ok(0),
                Some(chunk) => {
                    self.chunk = chunk?;
                    self.pos = 0;
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The request body: read it with `std::io::Read`. Dropping it unread is fine
/// (the host discards the rest).
///
/// Plugins get it from the host; tests build one with [`RequestBody::from_bytes`]
/// or [`RequestBody::from_reader`] (or through [`crate::Request::builder`]).
pub struct RequestBody(pub(crate) ReqInner);

pub(crate) enum ReqInner {
    Empty,
    /// The body the host handed over.
    Foreign(ForeignBody),
    /// A body built in the plugin (tests, or a filter replacing the body).
    Local(Box<dyn Read + Send>),
}

impl RequestBody {
    /// A request with no body.
    pub fn empty() -> RequestBody {
        RequestBody(ReqInner::Empty)
    }

    /// A body of these bytes (for tests, or a filter that rewrites the body).
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> RequestBody {
        RequestBody::from_reader(io::Cursor::new(bytes.into()))
    }

    /// A body streamed from a reader.
    pub fn from_reader(reader: impl Read + Send + 'static) -> RequestBody {
        RequestBody(ReqInner::Local(Box::new(reader)))
    }

    /// Read it all into memory.
    pub fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_to_end(&mut out)?;
        Ok(out)
    }
}

impl Default for RequestBody {
    fn default() -> RequestBody {
        RequestBody::empty()
    }
}

impl Read for RequestBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.0 {
            ReqInner::Empty => Ok(0),
            ReqInner::Foreign(f) => f.read(buf),
            ReqInner::Local(r) => r.read(buf),
        }
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequestBody")
    }
}
