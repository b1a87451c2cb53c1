//! The proxy's HTTP/1.1 client codec, no I/O in it: the request head written
//! into a connection's reusable buffer, the request body's framing
//! (`Content-Length` when known, else chunked), the response head parsed with
//! `httparse` (interim 1xx responses skipped, a bounded head size, malformed
//! heads refused), keep-alive rules, and the response body decoded from the
//! connection's read buffer (`Content-Length`, chunked with its trailers
//! dropped, or until the connection closes) without holding more than what
//! was read.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

/// The most a response head (status line and headers, and any interim 1xx
/// heads before it) may take.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// The most header lines a response head may have.
const MAX_HEADERS: usize = 128;

/// A response the codec cannot read (the proxy answers 502).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed response from the backend: {0}")]
pub(crate) struct Malformed(pub &'static str);

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestFraming {
    /// No body and no length header (a GET without a body).
    None,
    Length(u64),
    Chunked,
}

impl RequestFraming {
    /// The framing for a body that `is_end` already or has an `exact` size:
    /// methods that normally carry a body say `Content-Length: 0` when empty,
    /// others send nothing; a body of unknown length is chunked.
    pub(crate) fn of(method: &Method, is_end: bool, exact: Option<u64>) -> RequestFraming {
        let len = if is_end { Some(0) } else { exact };
        match len {
            Some(0) if !matches!(*method, Method::POST | Method::PUT | Method::PATCH) => {
                RequestFraming::None
            }
            Some(n) => RequestFraming::Length(n),
            None => RequestFraming::Chunked,
        }
    }
}

/// Whether `target` can go on the request line as it is (visible ASCII).
pub(crate) fn valid_target(target: &str) -> bool {
    !target.is_empty() && target.bytes().all(|b| b > b' ' && b < 0x7f)
}

/// Start a request head in `buf`: the request line.
pub(crate) fn request_line(buf: &mut Vec<u8>, method: &Method, target: &str) {
    buf.extend_from_slice(method.as_str().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(target.as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\n");
}

/// One header line (`name` and `value` already valid).
pub(crate) fn header(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    buf.reserve(name.len() + value.len() + 4);
    buf.extend_from_slice(name);
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
}

/// End the request head: its framing header and the empty line.
pub(crate) fn end_head(buf: &mut Vec<u8>, framing: RequestFraming) {
    match framing {
        RequestFraming::None => {}
        RequestFraming::Length(n) => {
            buf.extend_from_slice(b"content-length: ");
            push_decimal(buf, n);
            buf.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => buf.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    buf.extend_from_slice(b"\r\n");
}

fn push_decimal(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// The line before a chunk of `len` bytes (chunked request bodies).
pub(crate) fn chunk_start(buf: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = len;
    loop {
        i -= 1;
        digits[i] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
    buf.extend_from_slice(b"\r\n");
}

/// What follows each chunk's data.
pub(crate) const CHUNK_END: &[u8] = b"\r\n";
/// The last chunk of a chunked request body (no trailers).
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (HEAD, 204, 304, `Content-Length: 0`).
    Empty,
    Length(u64),
    Chunked,
    /// Until the backend closes the connection.
    Close,
}

/// A final response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    /// As received (hop-by-hop ones too: the caller strips them).
    pub headers: HeaderMap,
    pub framing: Framing,
    /// Whether the connection may carry another request once the body is
    /// read (the backend did not ask to close it, and the body does not end
    /// with the connection).
    pub keep_alive: bool,
}

/// Parse the response head at the front of `buf`, skipping interim 1xx
/// responses: `None` while it is incomplete (read more and call again). The
/// head's bytes (and those of skipped 1xx heads) are taken from `buf`, whose
/// rest is the start of the body. `head_request`: the request was a HEAD
/// (no body whatever the headers say).
pub(crate) fn parse_head(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<ResponseHead>, Malformed> {
    loop {
        // Left uninitialised: httparse fills what it uses (a head has a few).
        let mut lines = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let config = httparse::ParserConfig::default();
        let len = match config.parse_response_with_uninit_headers(&mut parsed, buf, &mut lines) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                return Err(Malformed("response head too large"))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(Malformed("too many headers")),
            Err(_) => return Err(Malformed("invalid response head")),
        };
        let code = parsed.code.unwrap_or(0);
        if (100..200).contains(&code) {
            if code == 101 {
                return Err(Malformed("101 Switching Protocols was not asked for"));
            }
            buf.advance(len);
            continue;
        }
        let status = StatusCode::from_u16(code).map_err(|_| Malformed("invalid status code"))?;
        let version = match parsed.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        // Where each header's name and value lie in the head, for the values
        // to share the head's bytes once it is split off.
        let base = buf.as_ptr() as usize;
        let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
        let count = parsed.headers.len();
        for (span, h) in spans.iter_mut().zip(parsed.headers.iter()) {
            let name = h.name.as_ptr() as usize - base;
            let value = h.value.as_ptr() as usize - base;
            *span = (
                name as u32,
                (name + h.name.len()) as u32,
                value as u32,
                (value + h.value.len()) as u32,
            );
        }
        let head = buf.split_to(len).freeze();
        return build_head(&head, &spans[..count], status, version, head_request).map(Some);
    }
}

fn build_head(
    head: &Bytes,
    spans: &[(u32, u32, u32, u32)],
    status: StatusCode,
    version: Version,
    head_request: bool,
) -> Result<ResponseHead, Malformed> {
    let mut headers = HeaderMap::with_capacity(spans.len());
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut encoded = false;
    let mut close = false;
    let mut keep_alive = false;
    for &(n0, n1, v0, v1) in spans {
        let name = header_name(&head[n0 as usize..n1 as usize])?;
        let raw = &head[v0 as usize..v1 as usize];
        if name == http::header::CONTENT_LENGTH {
            let n = parse_length(raw)?;
            if length.is_some_and(|earlier| earlier != n) {
                return Err(Malformed("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if name == http::header::TRANSFER_ENCODING {
            // Chunked only when it is the last coding applied.
            encoded = true;
            chunked = last_token(raw).eq_ignore_ascii_case(b"chunked");
        } else if name == http::header::CONNECTION {
            for token in raw.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        let value = HeaderValue::from_maybe_shared(head.slice(v0 as usize..v1 as usize))
            .map_err(|_| Malformed("invalid header value"))?;
        headers.append(name, value);
    }
    // Transfer-Encoding overrides Content-Length (RFC 9112 6.3): the length is
    // not forwarded (the client would frame the decoded body by it), and a
    // connection that sent both is not trusted with another request.
    let ambiguous = encoded && length.is_some();
    if ambiguous {
        headers.remove(http::header::CONTENT_LENGTH);
    }
    let framing =
        if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            Framing::Empty
        } else if encoded {
            if chunked {
                Framing::Chunked
            } else {
                Framing::Close
            }
        } else {
            match length {
                Some(0) => Framing::Empty,
                Some(n) => Framing::Length(n),
                None => Framing::Close,
            }
        };
    let persistent = match version {
        Version::HTTP_10 => keep_alive && !close,
        _ => !close,
    };
    Ok(ResponseHead {
        status,
        version,
        headers,
        framing,
        keep_alive: persistent && !ambiguous && framing != Framing::Close,
    })
}

/// The names most responses carry, as most backends write them and in lower
/// case, found with a comparison or two instead of `HeaderName::from_bytes`'s
/// general lookup (a few hundred instructions a name). A static: a const would
/// be copied (and dropped) at each use.
static COMMON: [(&[u8], &[u8], HeaderName); 16] = {
    use http::header::*;
    [
        (b"Content-Length", b"content-length", CONTENT_LENGTH),
        (b"Content-Type", b"content-type", CONTENT_TYPE),
        (b"Date", b"date", DATE),
        (b"Server", b"server", SERVER),
        (b"Connection", b"connection", CONNECTION),
        (
            b"Transfer-Encoding",
            b"transfer-encoding",
            TRANSFER_ENCODING,
        ),
        (b"Cache-Control", b"cache-control", CACHE_CONTROL),
        (b"ETag", b"etag", ETAG),
        (b"Last-Modified", b"last-modified", LAST_MODIFIED),
        (b"Content-Encoding", b"content-encoding", CONTENT_ENCODING),
        (b"Vary", b"vary", VARY),
        (b"Expires", b"expires", EXPIRES),
        (b"Location", b"location", LOCATION),
        (b"Set-Cookie", b"set-cookie", SET_COOKIE),
        (b"Accept-Ranges", b"accept-ranges", ACCEPT_RANGES),
        (
            b"Keep-Alive",
            b"keep-alive",
            HeaderName::from_static("keep-alive"),
        ),
    ]
};

fn header_name(raw: &[u8]) -> Result<HeaderName, Malformed> {
    for (written, lower, name) in &COMMON {
        if written.len() == raw.len() && (raw == *written || raw == *lower) {
            return Ok(name.clone());
        }
    }
    HeaderName::from_bytes(raw).map_err(|_| Malformed("invalid header name"))
}

fn parse_length(raw: &[u8]) -> Result<u64, Malformed> {
    // A list of the same value (`5, 5`) is one length, as RFC 9110 8.6 allows.
    let mut value = None;
    for part in raw.split(|&b| b == b',') {
        let n = crate::core::headers::parse_content_length(part.trim_ascii())
            .ok_or(Malformed("invalid Content-Length"))?;
        if value.is_some_and(|v| v != n) {
            return Err(Malformed("conflicting Content-Length values"));
        }
        value = Some(n);
    }
    value.ok_or(Malformed("invalid Content-Length"))
}

fn last_token(raw: &[u8]) -> &[u8] {
    raw.rsplit(|&b| b == b',')
        .next()
        .unwrap_or(raw)
        .trim_ascii()
}

/// What the decoder made of the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    Data(Bytes),
    /// Read more from the connection, then decode again.
    More,
    /// The body is complete.
    End,
}

/// The response body's decoder, fed from the connection's read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoder {
    /// Bytes still to come of a `Content-Length` body.
    Length(u64),
    Chunked(Chunk),
    Close,
    Done,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// In a chunk-size line's hex digits: the size so far and how many digits.
    Size(u64, u8),
    /// In a chunk extension (ignored) up to the line's end, after the size.
    Extension(u64),
    /// Past the size line's CR.
    SizeLf(u64),
    /// Bytes still to come of a chunk's data.
    Data(u64),
    DataCr,
    DataLf,
    /// In the trailer section: at the start of a line or not.
    Trailer {
        line_start: bool,
    },
    /// Past the final empty line's CR.
    EndLf,
}

impl Decoder {
    pub(crate) fn new(framing: Framing) -> Decoder {
        match framing {
            Framing::Empty => Decoder::Done,
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::Chunked(Chunk::Size(0, 0)),
            Framing::Close => Decoder::Close,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        *self == Decoder::Done
    }

    /// The next piece of the body from `buf` (taken from it).
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Malformed> {
        match self {
            Decoder::Done => Ok(Decoded::End),
            Decoder::Length(0) => {
                *self = Decoder::Done;
                Ok(Decoded::End)
            }
            Decoder::Length(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                let take = (*left).min(buf.len() as u64);
                *left -= take;
                if *left == 0 {
                    *self = Decoder::Done;
                }
                Ok(Decoded::Data(buf.split_to(take as usize).freeze()))
            }
            Decoder::Close => {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                Ok(Decoded::Data(buf.split().freeze()))
            }
            Decoder::Chunked(state) => {
                let done = decode_chunked(state, buf)?;
                if matches!(done, Decoded::End) {
                    *self = Decoder::Done;
                }
                Ok(done)
            }
        }
    }

    /// The connection was closed by the backend: the end of a body that runs
    /// until then, an error for any other.
    pub(crate) fn eof(&mut self) -> Result<(), Malformed> {
        match self {
            Decoder::Close | Decoder::Done => {
                *self = Decoder::Done;
                Ok(())
            }
            _ => Err(Malformed("connection closed before the body ended")),
        }
    }

    /// Bytes still to come, when known.
    pub(crate) fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            Decoder::Done => Some(0),
            _ => None,
        }
    }
}

fn decode_chunked(state: &mut Chunk, buf: &mut BytesMut) -> Result<Decoded, Malformed> {
    const BAD: Malformed = Malformed("invalid chunked body");
    loop {
        if let Chunk::Data(left) = state {
            if buf.is_empty() {
                return Ok(Decoded::More);
            }
            let take = (*left).min(buf.len() as u64);
            *left -= take;
            if *left == 0 {
                *state = Chunk::DataCr;
            }
            return Ok(Decoded::Data(buf.split_to(take as usize).freeze()));
        }
        let Some(&b) = buf.first() else {
            return Ok(Decoded::More);
        };
        buf.advance(1);
        // A chunk's size line is done: its data, or the trailers after the last.
        let sized = |size: u64| {
            if size == 0 {
                Chunk::Trailer { line_start: true }
            } else {
                Chunk::Data(size)
            }
        };
        *state = match *state {
            Chunk::Size(size, digits) => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    if digits >= 16 {
                        return Err(Malformed("chunk size too large"));
                    }
                    let d = (b as char).to_digit(16).unwrap_or(0);
                    Chunk::Size(size << 4 | u64::from(d), digits + 1)
                }
                _ if digits == 0 => return Err(BAD),
                b';' | b' ' | b'\t' => Chunk::Extension(size),
                b'\r' => Chunk::SizeLf(size),
                b'\n' => sized(size),
                _ => return Err(BAD),
            },
            Chunk::Extension(size) => match b {
                b'\r' => Chunk::SizeLf(size),
                b'\n' => sized(size),
                _ => Chunk::Extension(size),
            },
            Chunk::SizeLf(size) => match b {
                b'\n' => sized(size),
                _ => return Err(BAD),
            },
            Chunk::Data(_) => unreachable!("handled above"),
            Chunk::DataCr => match b {
                b'\r' => Chunk::DataLf,
                b'\n' => Chunk::Size(0, 0),
                _ => return Err(BAD),
            },
            Chunk::DataLf => match b {
                b'\n' => Chunk::Size(0, 0),
                _ => return Err(BAD),
            },
            Chunk::Trailer { line_start: true } => match b {
                b'\r' => Chunk::EndLf,
                b'\n' => return Ok(Decoded::End),
                _ => Chunk::Trailer { line_start: false },
            },
            Chunk::Trailer { line_start: false } => Chunk::Trailer {
                line_start: b == b'\n',
            },
            Chunk::EndLf => match b {
                b'\n' => return Ok(Decoded::End),
                _ => return Err(BAD),
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_bytes(method: &Method, target: &str, framing: RequestFraming) -> String {
        let mut buf = Vec::new();
        request_line(&mut buf, method, target);
        header(&mut buf, b"host", b"backend:9000");
        header(&mut buf, b"x-forwarded-for", b"192.0.2.7");
        end_head(&mut buf, framing);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn the_request_head_is_the_line_headers_and_framing() {
        assert_eq!(
            head_bytes(&Method::GET, "/a%20b?q=1", RequestFraming::None),
            "GET /a%20b?q=1 HTTP/1.1\r\nhost: backend:9000\r\nx-forwarded-for: 192.0.2.7\r\n\r\n"
        );
        assert_eq!(
            head_bytes(&Method::PUT, "/", RequestFraming::Length(1234567890)),
            "PUT / HTTP/1.1\r\nhost: backend:9000\r\nx-forwarded-for: 192.0.2.7\r\n\
             content-length: 1234567890\r\n\r\n"
        );
        assert!(head_bytes(&Method::POST, "/", RequestFraming::Chunked)
            .ends_with("\r\ntransfer-encoding: chunked\r\n\r\n"));
        assert!(head_bytes(&Method::POST, "/", RequestFraming::Length(0))
            .ends_with("\r\ncontent-length: 0\r\n\r\n"));
    }

    #[test]
    fn request_framing_follows_the_body() {
        use RequestFraming::*;
        assert_eq!(RequestFraming::of(&Method::GET, true, Some(0)), None);
        assert_eq!(RequestFraming::of(&Method::HEAD, true, Some(0)), None);
        assert_eq!(RequestFraming::of(&Method::POST, true, Some(0)), Length(0));
        assert_eq!(RequestFraming::of(&Method::PUT, false, Some(7)), Length(7));
        assert_eq!(RequestFraming::of(&Method::GET, false, Some(7)), Length(7));
        assert_eq!(
            RequestFraming::of(&Method::POST, false, Option::None),
            Chunked
        );
        assert_eq!(RequestFraming::of(&Method::DELETE, false, Some(0)), None);
    }

    #[test]
    fn chunk_lines_are_hex() {
        let mut buf = Vec::new();
        chunk_start(&mut buf, 0x1a2b);
        chunk_start(&mut buf, 1);
        assert_eq!(buf, b"1a2b\r\n1\r\n");
    }

    #[test]
    fn request_targets_are_visible_ascii() {
        assert!(valid_target("/a%20b?x=1&y=%2F"));
        assert!(!valid_target("/a b"));
        assert!(!valid_target("/a\r\nX: y"));
        assert!(!valid_target(""));
    }

    fn parse(raw: &str, head_request: bool) -> Result<Option<ResponseHead>, Malformed> {
        parse_head(&mut BytesMut::from(raw.as_bytes()), head_request)
    }

    fn parsed(raw: &str) -> ResponseHead {
        parse(raw, false).unwrap().unwrap()
    }

    #[test]
    fn a_response_head_is_parsed_and_the_rest_is_the_body() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello"[..],
        );
        let head = parse_head(&mut buf, false).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.version, Version::HTTP_11);
        assert_eq!(head.framing, Framing::Length(5));
        assert!(head.keep_alive);
        let xa: Vec<_> = head.headers.get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);
        assert_eq!(head.headers["content-length"], "5");
        assert_eq!(&buf[..], b"hello");
    }

    #[test]
    fn common_and_other_header_names_are_read_in_any_case() {
        assert_eq!(
            header_name(b"Content-Length").unwrap(),
            http::header::CONTENT_LENGTH
        );
        assert_eq!(header_name(b"KEEP-ALIVE").unwrap(), "keep-alive");
        assert_eq!(header_name(b"content-type").unwrap(), "content-type");
        assert_eq!(header_name(b"ETag").unwrap(), "etag");
        assert_eq!(header_name(b"CONTENT-TYPE").unwrap(), "content-type");
        assert_eq!(header_name(b"X-Backend").unwrap(), "x-backend");
        assert_eq!(header_name(b"Content-Lengtx").unwrap(), "content-lengtx");
        assert!(header_name(b"Bad Name").is_err());
        assert!(header_name(b"").is_err());
    }

    #[test]
    fn an_incomplete_head_asks_for_more_and_a_huge_one_is_refused() {
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Le", false)
            .unwrap()
            .is_none());
        let huge = format!("HTTP/1.1 200 OK\r\nX-Big: {}", "a".repeat(MAX_HEAD));
        assert_eq!(
            parse(&huge, false).unwrap_err(),
            Malformed("response head too large")
        );
    }

    #[test]
    fn malformed_heads_are_refused() {
        for raw in [
            "HTTP/1.1 abc OK\r\n\r\n",
            "SMTP ready\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        ] {
            assert!(parse(raw, false).is_err(), "{raw:?} was accepted");
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert!(parse(&format!("HTTP/1.1 200 OK\r\n{many}\r\n"), false).is_err());
        // The same length repeated is one length.
        let head = parsed("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n");
        assert_eq!(head.framing, Framing::Length(3));
    }

    #[test]
    fn interim_responses_are_skipped() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
               HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"[..],
        );
        let head = parse_head(&mut buf, false).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::CREATED);
        assert!(!head.headers.contains_key("link"));
        assert_eq!(&buf[..], b"ok");
        // An interim head alone: consumed, the final one still to come.
        let mut buf = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2"[..]);
        assert!(parse_head(&mut buf, false).unwrap().is_none());
        assert_eq!(&buf[..], b"HTTP/1.1 2");
    }

    #[test]
    fn head_204_and_304_have_no_body_whatever_their_headers_say() {
        let head = parse("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, Framing::Empty);
        assert_eq!(head.headers["content-length"], "50");
        assert!(head.keep_alive);
        let head = parsed("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(head.framing, Framing::Empty);
        let head = parsed("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(head.framing, Framing::Empty);
        assert_eq!(
            parsed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").framing,
            Framing::Empty
        );
    }

    #[test]
    fn framing_and_keep_alive_rules() {
        let h = parsed(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
        );
        assert_eq!(h.framing, Framing::Chunked);
        // Both framings: the length goes, and so does the connection.
        assert!(!h.headers.contains_key("content-length"));
        assert!(!h.keep_alive);
        let h = parsed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.keep_alive);
        let h = parsed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert_eq!(h.framing, Framing::Close);
        assert!(!h.keep_alive);
        // No length: until the connection closes, which it then must.
        let h = parsed("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(h.framing, Framing::Close);
        assert!(!h.keep_alive);
        let h =
            parsed("HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.keep_alive);
        let h = parsed("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n");
        assert_eq!(h.version, Version::HTTP_10);
        assert!(!h.keep_alive);
        let h = parsed("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n");
        assert!(h.keep_alive);
        let h = parsed("HTTP/1.1 200 OK\r\nConnection: upgrade\r\nContent-Length: 1\r\n\r\n");
        assert!(h.keep_alive);
    }

    /// Decode `pieces` fed one after another (as reads would bring them),
    /// asking for more between them: the body and whether it ended.
    fn decode_all(mut decoder: Decoder, pieces: &[&[u8]]) -> Result<(Vec<u8>, bool), Malformed> {
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut pieces = pieces.iter();
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(d) => {
                    assert!(!d.is_empty());
                    body.extend_from_slice(&d)
                }
                Decoded::End => return Ok((body, true)),
                Decoded::More => match pieces.next() {
                    Some(p) => buf.extend_from_slice(p),
                    None => return Ok((body, false)),
                },
            }
        }
    }

    #[test]
    fn a_length_body_ends_at_its_length_and_leaves_what_follows() {
        let mut d = Decoder::new(Framing::Length(5));
        let mut buf = BytesMut::from(&b"hel"[..]);
        assert_eq!(d.decode(&mut buf).unwrap(), Decoded::Data("hel".into()));
        assert_eq!(d.remaining(), Some(2));
        assert_eq!(d.decode(&mut buf).unwrap(), Decoded::More);
        buf.extend_from_slice(b"loEXTRA");
        assert_eq!(d.decode(&mut buf).unwrap(), Decoded::Data("lo".into()));
        assert!(d.is_done());
        assert_eq!(d.decode(&mut buf).unwrap(), Decoded::End);
        assert_eq!(&buf[..], b"EXTRA");
        assert!(Decoder::new(Framing::Length(5)).eof().is_err());
    }

    #[test]
    fn a_body_until_close_ends_at_the_end_of_the_stream() {
        let (body, ended) = decode_all(Decoder::new(Framing::Close), &[b"ab", b"cd"]).unwrap();
        assert_eq!((body.as_slice(), ended), (&b"abcd"[..], false));
        let mut d = Decoder::new(Framing::Close);
        assert!(d.eof().is_ok());
        assert!(d.is_done());
    }

    const CHUNKED: &[u8] =
        b"5\r\nhello\r\n1A;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n";

    #[test]
    fn a_chunked_body_is_decoded_and_its_trailers_dropped() {
        let (body, ended) = decode_all(Decoder::new(Framing::Chunked), &[CHUNKED]).unwrap();
        assert!(ended);
        assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz");
    }

    #[test]
    fn a_chunked_body_split_anywhere_across_reads_decodes_the_same() {
        for cut in 1..CHUNKED.len() {
            for second in cut..CHUNKED.len() {
                let pieces = [&CHUNKED[..cut], &CHUNKED[cut..second], &CHUNKED[second..]];
                let (body, ended) = decode_all(Decoder::new(Framing::Chunked), &pieces).unwrap();
                assert!(ended, "cut at {cut}, {second}");
                assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz");
            }
        }
        // One byte per read.
        let pieces: Vec<&[u8]> = CHUNKED.chunks(1).collect();
        let (body, ended) = decode_all(Decoder::new(Framing::Chunked), &pieces).unwrap();
        assert!(ended);
        assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz");
    }

    #[test]
    fn a_chunked_body_cut_short_or_malformed_is_an_error() {
        let (_, ended) = decode_all(Decoder::new(Framing::Chunked), &[b"5\r\nhel"]).unwrap();
        assert!(!ended);
        let mut d = Decoder::new(Framing::Chunked);
        assert!(d.eof().is_err());
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloX\r\n",
            b"5\rX",
            b"11111111111111111\r\n",
            b"0\r\n\rX",
        ] {
            assert!(
                decode_all(Decoder::new(Framing::Chunked), &[bad]).is_err(),
                "{bad:?} was accepted"
            );
        }
        // What follows the last chunk stays for the connection to judge.
        let mut buf = BytesMut::from(&b"0\r\n\r\nNEXT"[..]);
        let mut d = Decoder::new(Framing::Chunked);
        assert_eq!(d.decode(&mut buf).unwrap(), Decoded::End);
        assert!(d.is_done());
        assert_eq!(&buf[..], b"NEXT");
    }
}
