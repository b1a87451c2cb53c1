//! Where `cache warm` finds its URL paths: command-line arguments, a list or
//! access-log file (`--from`), a sitemap (`--sitemap`).
//!
//! Every source yields [`Item`]s in the order they should be warmed: a path to
//! request, or an entry that cannot be a cached page (a query string, not a
//! path), reported as skipped instead of requested. The rules:
//!
//! - A list file (`-`: standard input): one path per line (`/about`) or a whole URL
//!   (`https://example.org/about`: only its path is used); blank lines and
//!   lines starting with `#` are ignored; file order, first occurrence wins.
//! - An access log (Apache/nginx `combined` or `common`): recognised by its
//!   first meaningful line having a quoted request line. Only `GET` requests
//!   answered 2xx or 3xx count (a 404 or 500 in the log is not a page to
//!   warm, and HEAD, POST... are not page views); other lines, and lines that
//!   do not parse, are counted as ignored. Paths are warmed most requested
//!   first (ties: first seen first).
//! - A sitemap: every `<loc>` of a `<urlset>` (CDATA and the five XML
//!   entities handled, character references too), or of a `<sitemapindex>`
//!   whose entries are read as local files beside the index (by their URL's
//!   last path segment), `.gz` ones decompressed.
//!
//! A target with a query string is skipped (`query-string`): the cache never
//! stores one. A line that is neither a path nor an http(s) URL is skipped
//! (`not-a-path`).

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

/// Why an entry was not requested.
pub(crate) const QUERY: &str = "query-string";
/// Why an entry was not requested.
pub(crate) const NOT_A_PATH: &str = "not-a-path";

/// Largest sitemap read (the protocol allows 50 MB uncompressed).
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// How deep sitemap indexes may nest.
const MAX_INDEX_DEPTH: usize = 2;

/// One entry of a source.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Item {
    /// A URL path (with its percent-encoding as written) to request.
    Path(String),
    /// An entry that is not requested, as written, and why.
    Skip(String, &'static str),
}

/// What a file gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) items: Vec<Item>,
    /// Lines (of an access log) or sitemap entries passed over, and what they were.
    pub(crate) ignored: Vec<(usize, &'static str)>,
}

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{}: {error}", path.display())]
    Read {
        path: PathBuf,
        // Not a `source`: the message says it once, also under `{:#}`.
        error: std::io::Error,
    },
    #[error("{}: larger than {} MiB", path.display(), MAX_FILE_BYTES >> 20)]
    TooLarge { path: PathBuf },
    #[error("{}: not a sitemap (no <urlset> or <sitemapindex>)", path.display())]
    NotSitemap { path: PathBuf },
}

/// A URL path or http(s) URL → the path to request, or why not.
pub(crate) fn target(text: &str) -> Item {
    let t = text.trim();
    let rest = if t.starts_with('/') {
        Some(t)
    } else {
        let lower = t.get(..8).unwrap_or(t).to_ascii_lowercase();
        let after = if lower.starts_with("http://") {
            Some(&t[7..])
        } else if lower.starts_with("https://") {
            Some(&t[8..])
        } else {
            None
        };
        // The authority ends at the first `/`, `?` or `#` (`?q` or `#f` right
        // after it: the path `/`, dealt with below).
        after.map(|a| a.find(['/', '?', '#']).map_or("/", |i| &a[i..]))
    };
    let Some(rest) = rest.filter(|r| !r.is_empty()) else {
        return Item::Skip(t.to_owned(), NOT_A_PATH);
    };
    let rest = rest.split('#').next().unwrap_or("");
    if rest.contains('?') {
        return Item::Skip(t.to_owned(), QUERY);
    }
    if rest.is_empty() {
        return Item::Path("/".to_owned());
    }
    if !rest.starts_with('/')
        || rest.starts_with("//")
        || rest
            .bytes()
            .any(|b| b <= b' ' || b >= 0x7f || matches!(b, b'"' | b'\\' | b'<' | b'>'))
    {
        return Item::Skip(t.to_owned(), NOT_A_PATH);
    }
    Item::Path(rest.to_owned())
}

/// `--from FILE`: a list of paths or an access log, read a line at a time
/// (a log of any size: only its distinct targets are kept).
pub(crate) fn from_file(path: &Path) -> Result<Found, SourceError> {
    // `-`: standard input (`zcat access.log.*.gz | plughost cache warm ... --from -`).
    let reader: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        open(path)?
    };
    from_reader(std::io::BufReader::new(reader)).map_err(|error| SourceError::Read {
        path: path.to_owned(),
        error,
    })
}

/// As [`from_file`], from the file's text.
#[cfg(test)]
pub(crate) fn from_text(text: &str) -> Found {
    from_reader(text.as_bytes()).unwrap()
}

/// The first meaningful line decides: a quoted request line means a log.
fn from_reader(mut r: impl BufRead) -> std::io::Result<Found> {
    let mut state = None;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        // Logs may hold stray bytes (a client's invalid UTF-8 is escaped by
        // Apache, not always by others): a lossy line keeps every other one.
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let state = state.get_or_insert_with(|| {
            if !line.starts_with('/') && !line.starts_with('#') && line.contains('"') {
                Lines::Log(Log::default())
            } else {
                Lines::List(Found::default())
            }
        });
        match state {
            Lines::List(found) if !line.starts_with('#') => found.items.push(target(line)),
            Lines::List(_) => {}
            Lines::Log(log) => log.line(line),
        }
    }
    Ok(match state {
        None => Found::default(),
        Some(Lines::List(mut found)) => {
            found.items = dedup(found.items);
            found
        }
        Some(Lines::Log(log)) => log.finish(),
    })
}

enum Lines {
    List(Found),
    Log(Log),
}

/// An access log's counts so far.
#[derive(Default)]
struct Log {
    /// Per target: requests, and the line it was first seen on.
    counts: HashMap<String, (usize, usize)>,
    ignored: HashMap<&'static str, usize>,
    lines: usize,
}

impl Log {
    fn line(&mut self, line: &str) {
        self.lines += 1;
        match log_line(line) {
            Ok(t) => match self.counts.get_mut(t) {
                Some((n, _)) => *n += 1,
                None => {
                    self.counts.insert(t.to_owned(), (1, self.lines));
                }
            },
            Err(why) => *self.ignored.entry(why).or_default() += 1,
        }
    }

    fn finish(self) -> Found {
        let mut ranked: Vec<(String, (usize, usize))> = self.counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.1 .1.cmp(&b.1 .1)));
        let items = ranked.iter().map(|(t, _)| target(t)).collect();
        let mut ignored: Vec<(usize, &'static str)> =
            self.ignored.into_iter().map(|(why, n)| (n, why)).collect();
        ignored.sort_by_key(|&(_, why)| why);
        Found {
            // Two targets can name one path (`/a` and `http://h/a`).
            items: dedup(items),
            ignored,
        }
    }
}

/// One access-log line: the request target of a GET answered 2xx/3xx, or
/// why the line does not count.
pub(crate) fn log_line(line: &str) -> Result<&str, &'static str> {
    // The request line is the first quoted field; Apache escapes `"` in it as `\"`.
    let open = line.find('"').ok_or("not-a-log-line")?;
    let rest = &line[open + 1..];
    let mut close = None;
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => {
                close = Some(i);
                break;
            }
            _ => escaped = false,
        }
    }
    let close = close.ok_or("not-a-log-line")?;
    let request = &rest[..close];
    let status = rest[close + 1..]
        .split_whitespace()
        .next()
        .ok_or("not-a-log-line")?;
    let status: u16 = status.parse().map_err(|_| "not-a-log-line")?;
    let mut words = request.split_whitespace();
    let (method, target) = match (words.next(), words.next()) {
        (Some(m), Some(t)) => (m, t),
        // `"-"` (nginx: the client sent nothing) or a bare word.
        _ => return Err("not-a-request"),
    };
    if method != "GET" {
        return Err("not-get");
    }
    if !(200..400).contains(&status) {
        return Err("not-2xx-3xx");
    }
    Ok(target)
}

/// Keep the first of equal items.
fn dedup(items: Vec<Item>) -> Vec<Item> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|i| seen.insert(i.clone()))
        .collect()
}

/// `--sitemap FILE`.
pub(crate) fn sitemap(path: &Path) -> Result<Found, SourceError> {
    let mut found = Found::default();
    let mut visited = Vec::new();
    sitemap_into(path, 0, &mut visited, &mut found)?;
    found.items = dedup(found.items);
    Ok(found)
}

fn sitemap_into(
    path: &Path,
    depth: usize,
    visited: &mut Vec<PathBuf>,
    found: &mut Found,
) -> Result<(), SourceError> {
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    if visited.contains(&key) {
        return Ok(());
    }
    visited.push(key);
    let text = read_text(path)?;
    match parse_sitemap(&text) {
        Some(Sitemap::Urls(locs)) => found.items.extend(locs.iter().map(|l| target(l))),
        Some(Sitemap::Index(locs)) => {
            let dir = path.parent().unwrap_or(Path::new("."));
            for loc in locs {
                let file = local_file(&loc).map(|f| dir.join(f));
                match file.filter(|f| f.is_file()) {
                    Some(f) if depth < MAX_INDEX_DEPTH => {
                        sitemap_into(&f, depth + 1, visited, found)?
                    }
                    Some(_) => push_ignored(found, "sitemap-index-too-deep"),
                    None => {
                        tracing::warn!(
                            "{}: sitemap {loc} is not a file beside the index; skipped",
                            path.display()
                        );
                        push_ignored(found, "sitemap-not-local");
                    }
                }
            }
        }
        None => {
            return Err(SourceError::NotSitemap {
                path: path.to_owned(),
            })
        }
    }
    Ok(())
}

fn push_ignored(found: &mut Found, why: &'static str) {
    match found.ignored.iter_mut().find(|(_, w)| *w == why) {
        Some((n, _)) => *n += 1,
        None => found.ignored.push((1, why)),
    }
}

/// A sitemap index entry → the name of the file beside the index: its URL's
/// last path segment (`https://h/maps/a.xml` → `a.xml`), or a relative name.
fn local_file(loc: &str) -> Option<&str> {
    let path = loc.split(['?', '#']).next().unwrap_or("");
    let name = path.rsplit('/').next().unwrap_or("");
    (!name.is_empty() && name != "." && name != "..").then_some(name)
}

/// A parsed sitemap document.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sitemap {
    /// `<urlset>`: page URLs.
    Urls(Vec<String>),
    /// `<sitemapindex>`: other sitemaps.
    Index(Vec<String>),
}

/// Find the document kind and every `<loc>` (any namespace prefix), without
/// an XML parser: comments skipped, CDATA and entities decoded.
pub(crate) fn parse_sitemap(text: &str) -> Option<Sitemap> {
    let mut kind = None;
    let mut locs = Vec::new();
    let mut rest = text;
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |e| &after[e + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else { break };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        if tag.starts_with(['?', '!', '/']) || tag.ends_with('/') {
            continue;
        }
        let name = tag.split(|c: char| c.is_whitespace()).next().unwrap_or("");
        let local = name.rsplit(':').next().unwrap_or(name);
        match local {
            "urlset" if kind.is_none() => kind = Some(false),
            "sitemapindex" if kind.is_none() => kind = Some(true),
            "loc" => {
                let close = format!("</{name}>");
                let (content, after) = match loc_content(rest, &close) {
                    Some(x) => x,
                    None => break,
                };
                let loc = decode(content);
                if !loc.trim().is_empty() {
                    locs.push(loc.trim().to_owned());
                }
                rest = after;
            }
            _ => {}
        }
    }
    match kind? {
        false => Some(Sitemap::Urls(locs)),
        true => Some(Sitemap::Index(locs)),
    }
}

/// The raw content up to `close` (which may appear inside CDATA), and what follows.
fn loc_content<'a>(text: &'a str, close: &str) -> Option<(&'a str, &'a str)> {
    let mut i = 0;
    loop {
        let here = &text[i..];
        let c = here.find(close)?;
        match here.find("<![CDATA[") {
            Some(s) if s < c => {
                let end = here[s..].find("]]>")? + s + 3;
                i += end;
            }
            _ => return Some((&text[..i + c], &text[i + c + close.len()..])),
        }
    }
}

/// Decode CDATA sections, the five predefined entities and character references.
pub(crate) fn decode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("<![CDATA[") {
            let end = after.find("]]>").unwrap_or(after.len());
            out.push_str(&after[..end]);
            rest = after.get(end + 3..).unwrap_or("");
        } else if rest.starts_with('&') {
            let entity = rest.find(';').filter(|&e| e <= 12).map(|e| &rest[1..e]);
            let ch = entity.and_then(|e| match e {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let n = match e.strip_prefix("#x").or_else(|| e.strip_prefix("#X")) {
                        Some(h) => u32::from_str_radix(h, 16).ok(),
                        None => e.strip_prefix('#').and_then(|d| d.parse().ok()),
                    };
                    n.and_then(char::from_u32).filter(|&c| c != '\0')
                }
            });
            match (ch, entity) {
                (Some(c), Some(e)) => {
                    out.push(c);
                    rest = &rest[e.len() + 2..];
                }
                _ => {
                    out.push('&');
                    rest = &rest[1..];
                }
            }
        } else {
            let next = rest[1..].find(['&', '<']).map_or(rest.len(), |i| i + 1);
            out.push_str(&rest[..next]);
            rest = &rest[next..];
        }
    }
    out
}

/// A file, gzip-decompressed when its name ends in `.gz`.
fn open(path: &Path) -> Result<Box<dyn Read>, SourceError> {
    let file = std::fs::File::open(path).map_err(|error| SourceError::Read {
        path: path.to_owned(),
        error,
    })?;
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

/// A whole file as text (a sitemap), bounded.
fn read_text(path: &Path) -> Result<String, SourceError> {
    let mut bytes = Vec::new();
    open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| SourceError::Read {
            path: path.to_owned(),
            error,
        })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(SourceError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into()))
}
#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Item {
        Item::Path(s.to_owned())
    }

    #[test]
    fn targets_keep_only_the_path() {
        assert_eq!(target("/about"), p("/about"));
        assert_eq!(target("  /a%20b  "), p("/a%20b"));
        assert_eq!(target("https://example.org/blog/"), p("/blog/"));
        assert_eq!(target("HTTP://example.org"), p("/"));
        assert_eq!(target("http://example.org/x#frag"), p("/x"));
        assert_eq!(target("/s?q=1"), Item::Skip("/s?q=1".into(), QUERY));
        assert_eq!(
            target("https://h.example?x"),
            Item::Skip("https://h.example?x".into(), QUERY)
        );
        assert_eq!(target("about"), Item::Skip("about".into(), NOT_A_PATH));
        assert_eq!(
            target("ftp://h/x"),
            Item::Skip("ftp://h/x".into(), NOT_A_PATH)
        );
        assert_eq!(
            target("//evil/x"),
            Item::Skip("//evil/x".into(), NOT_A_PATH)
        );
        assert_eq!(target("/a b"), Item::Skip("/a b".into(), NOT_A_PATH));
    }

    #[test]
    fn a_list_keeps_file_order_once_each() {
        let found = from_text("# warm these\n/b\n\n/a\n/b\nhttp://h/c\nnope\n");
        assert_eq!(
            found.items,
            vec![
                p("/b"),
                p("/a"),
                p("/c"),
                Item::Skip("nope".into(), NOT_A_PATH)
            ]
        );
        assert!(found.ignored.is_empty());
    }

    const LOG: &str = r#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 200 2326 "-" "curl/8"
127.0.0.1 - - [10/Oct/2000:13:55:37 -0700] "GET /b HTTP/1.1" 200 10 "http://x/" "Mozilla/5.0 (\"quoted\")"
127.0.0.1 - - [10/Oct/2000:13:55:38 -0700] "GET /b HTTP/1.1" 304 0 "-" "-"
127.0.0.1 - - [10/Oct/2000:13:55:39 -0700] "POST /c HTTP/1.1" 200 1
127.0.0.1 - - [10/Oct/2000:13:55:40 -0700] "GET /missing HTTP/1.1" 404 12
127.0.0.1 - - [10/Oct/2000:13:55:41 -0700] "GET /s?q=1 HTTP/1.1" 200 12
10.0.0.1 - - [10/Oct/2000:13:55:42 +0000] "-" 400 0 "-" "-"
garbage
127.0.0.1 - frank [10/Oct/2000:13:55:43 -0700] "GET /b HTTP/1.0" 301 0
127.0.0.1 - - [10/Oct/2000:13:55:44 -0700] "GET /a\"x HTTP/1.1" 200 1
"#;

    #[test]
    fn an_access_log_counts_gets_that_succeeded_most_requested_first() {
        let found = from_text(LOG);
        assert_eq!(
            found.items,
            vec![
                p("/b"),
                p("/a"),
                Item::Skip("/s?q=1".into(), QUERY),
                Item::Skip("/a\\\"x".into(), NOT_A_PATH),
            ]
        );
        assert_eq!(
            found.ignored,
            vec![
                (1, "not-2xx-3xx"),
                (1, "not-a-log-line"),
                (1, "not-a-request"),
                (1, "not-get")
            ]
        );
    }

    #[test]
    fn a_gzipped_log_is_read_a_line_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("access.log.1.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, LOG.as_bytes()).unwrap();
        // A stray byte that is not UTF-8 costs only its own line.
        std::io::Write::write_all(&mut gz, b"h - - [x] \"GET /\xff HTTP/1.1\" 200 1\n").unwrap();
        std::fs::write(&file, gz.finish().unwrap()).unwrap();
        let found = from_file(&file).unwrap();
        assert_eq!(found.items[..2], [p("/b"), p("/a")]);
        assert_eq!(found.items.len(), 5);
        assert!(matches!(
            from_file(&dir.path().join("none")),
            Err(SourceError::Read { .. })
        ));
    }

    #[test]
    fn log_lines() {
        assert_eq!(
            log_line(r#"::1 - - [x] "GET http://h/p HTTP/1.1" 200 1"#),
            Ok("http://h/p")
        );
        assert_eq!(
            log_line(r#"h - - [x] "HEAD /p HTTP/1.1" 200 0"#),
            Err("not-get")
        );
        assert_eq!(
            log_line(r#"h - - [x] "GET /p HTTP/1.1" 503 0"#),
            Err("not-2xx-3xx")
        );
        assert_eq!(log_line(r#"h - - [x] "GET /p"#), Err("not-a-log-line"));
    }

    #[test]
    fn a_urlset_gives_every_loc() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- <loc>https://h/commented</loc> -->
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>https://example.org/</loc><lastmod>2024-01-01</lastmod></url>
  <url><loc>
     https://example.org/a&amp;b
  </loc></url>
  <url><loc><![CDATA[https://example.org/c&d]]></loc></url>
  <url><sm:loc>https://example.org/&#x65;&#102;</sm:loc></url>
  <url><loc>https://example.org/q?x=1&amp;y=2</loc></url>
  <url><loc/></url>
</urlset>"#;
        assert_eq!(
            parse_sitemap(xml),
            Some(Sitemap::Urls(vec![
                "https://example.org/".into(),
                "https://example.org/a&b".into(),
                "https://example.org/c&d".into(),
                "https://example.org/ef".into(),
                "https://example.org/q?x=1&y=2".into(),
            ]))
        );
        assert_eq!(parse_sitemap("<html><loc>x</loc></html>"), None);
    }

    #[test]
    fn entities_and_cdata() {
        assert_eq!(decode("a&lt;b&gt;&quot;&apos;&amp;"), "a<b>\"'&");
        assert_eq!(
            decode("&bogus; & &#0; &#1234567890;"),
            "&bogus; & &#0; &#1234567890;"
        );
        assert_eq!(decode("x<![CDATA[&amp;]]>y"), "x&amp;y");
    }

    #[test]
    fn a_sitemap_index_reads_the_files_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("sitemap.xml");
        std::fs::write(
            &index,
            "<sitemapindex><sitemap><loc>https://h/pages.xml</loc></sitemap>\
             <sitemap><loc>https://h/gone.xml</loc></sitemap>\
             <sitemap><loc>https://h/sitemap.xml</loc></sitemap>\
             <sitemap><loc>https://h/more.xml.gz</loc></sitemap></sitemapindex>",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pages.xml"),
            "<urlset><url><loc>https://h/one</loc></url><url><loc>https://h/two?x</loc></url></urlset>",
        )
        .unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(
            &mut gz,
            b"<urlset><url><loc>https://h/three</loc></url><url><loc>https://h/one</loc></url></urlset>",
        )
        .unwrap();
        std::fs::write(dir.path().join("more.xml.gz"), gz.finish().unwrap()).unwrap();
        let found = sitemap(&index).unwrap();
        assert_eq!(
            found.items,
            vec![
                p("/one"),
                Item::Skip("https://h/two?x".into(), QUERY),
                p("/three")
            ]
        );
        assert_eq!(found.ignored, vec![(1, "sitemap-not-local")]);
        std::fs::write(&index, "<html/>").unwrap();
        assert!(matches!(
            sitemap(&index),
            Err(SourceError::NotSitemap { .. })
        ));
    }
}
