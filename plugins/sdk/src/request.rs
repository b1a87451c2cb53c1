use crate::abi::PhNext;
use crate::{Error, RequestBody, Response};

/// The request, as WSGI's environ. Strings that came in as invalid UTF-8 are
/// shown lossily; the exact bytes are passed on to `next` if left unchanged.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// `http` or `https`.
    pub scheme: String,
    /// SCRIPT_NAME: the mount point, percent-decoded.
    pub script_name: String,
    /// PATH_INFO: the rest of the path, percent-decoded.
    pub path_info: String,
    /// The path exactly as the client sent it.
    pub raw_path: String,
    /// QUERY_STRING, raw, without `?`.
    pub query_string: String,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub protocol: String,
    pub server_name: String,
    pub server_port: u16,
    pub remote_addr: String,
    pub remote_port: u16,
    /// Lower-case names, in the order received; repeated headers stay separate.
    pub headers: Vec<(String, String)>,
    /// Extra environ keys set by filters upstream (and passed on downstream).
    pub extras: Vec<(String, String)>,
    /// The declared body length, if any.
    pub content_length: Option<u64>,
    pub body: RequestBody,
    /// Exact bytes of script_name and path_info as received, kept only when they
    /// were not valid UTF-8 (the strings above then differ from them).
    pub(crate) raw_script_name: Option<Vec<u8>>,
    pub(crate) raw_path_info: Option<Vec<u8>>,
}

impl Request {
    /// A request built by hand (for tests of plugin code).
    pub fn new(method: &str, path_info: &str) -> Request {
        Request {
            method: method.to_owned(),
            scheme: "http".into(),
            script_name: String::new(),
            path_info: path_info.to_owned(),
            raw_path: path_info.to_owned(),
            query_string: String::new(),
            protocol: "HTTP/1.1".into(),
            server_name: "localhost".into(),
            server_port: 80,
            remote_addr: "127.0.0.1".into(),
            remote_port: 0,
            headers: Vec::new(),
            extras: Vec::new(),
            content_length: None,
            body: RequestBody::empty(),
            raw_script_name: None,
            raw_path_info: None,
        }
    }

    /// The first value of a header (name matched case-insensitively).
    pub fn header<'a>(&'a self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Replace every value of a header with one value.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.remove_header(name);
        self.headers.push((name.to_ascii_lowercase(), value.into()));
    }

    /// Remove every value of a header.
    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// An extra environ key set by a filter upstream.
    pub fn extra(&self, key: &str) -> Option<&str> {
        self.extras
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Set an extra environ key for handlers downstream.
    pub fn set_extra(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        self.extras.retain(|(k, _)| *k != key);
        self.extras.push((key, value.into()));
    }
}

/// The rest of the pipeline, for a [`crate::Filter`]. Calling it consumes it, so it
/// can be called at most once.
pub struct Next<'a> {
    pub(crate) raw: &'a PhNext,
}

impl Next<'_> {
    /// Pass the request on and get the response of everything downstream.
    /// An `Err` means downstream failed (the host has logged why).
    pub fn call(self, req: Request) -> Result<Response, Error> {
        crate::ffi::call_next(self.raw, req)
    }
}
