//! Compressed twins (`compress = gzip br`): beside each stored page, `PAGE.gz`
//! and `PAGE.br` (what nginx's `gzip_static`/`brotli_static`, WP Super Cache
//! and Rails use), written after the page on a blocking thread, each by the
//! same temp-and-rename discipline, so the miss never waits for them. A twin
//! carries its page's mtime (set before its rename) and is served only while
//! the page beside it has that same mtime: never without its page, never for
//! another version of it. Hits negotiate `Accept-Encoding` (q-values,
//! `identity;q=0`).

use std::io::{self, Read, Write};

use http::{header, HeaderMap, HeaderValue};
use rustix::fs::{futimens, unlinkat, AtFlags, Timespec, Timestamps};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use super::dir::{open_beneath, CacheDir, Lookup, TempFile, DIR_FLAGS};
use super::path::CachePath;

/// One twin encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enc {
    Br,
    Gzip,
}

/// Every twin suffix, for purge and eviction.
pub(super) const SUFFIXES: [&str; 2] = [".br", ".gz"];

impl Enc {
    pub(super) fn suffix(self) -> &'static str {
        match self {
            Enc::Br => ".br",
            Enc::Gzip => ".gz",
        }
    }

    fn token(self) -> &'static str {
        match self {
            Enc::Br => "br",
            Enc::Gzip => "gzip",
        }
    }

    pub(super) fn header(self) -> HeaderValue {
        HeaderValue::from_static(self.token())
    }

    fn compress(self, data: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Enc::Gzip => {
                let mut e = flate2::write::GzEncoder::new(
                    Vec::with_capacity(data.len() / 3),
                    flate2::Compression::new(6),
                );
                e.write_all(data)?;
                e.finish()
            }
            Enc::Br => {
                let mut out = Vec::with_capacity(data.len() / 3);
                {
                    let mut w = brotli::CompressorWriter::new(&mut out, 4096, 6, 22);
                    w.write_all(data)?;
                }
                Ok(out)
            }
        }
    }
}

/// The compress keys of a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Compress {
    /// Preference order for equal q-values: br before gzip.
    pub encs: Vec<Enc>,
    /// Media types that get twins (lowercase).
    pub types: Vec<String>,
    /// Pages smaller than this get none.
    pub min_size: u64,
}

/// `compress_types` unless set: text formats worth compressing.
pub(super) const DEFAULT_TYPES: &str = "text/html text/css text/plain text/xml text/csv \
    text/javascript application/javascript application/json application/xml \
    application/rss+xml application/atom+xml image/svg+xml";
/// `compress_min_size` unless set.
pub(super) const DEFAULT_MIN_SIZE: u64 = 256;

/// `compress = gzip br` (either or both, any order).
pub(super) fn parse_encs(v: &str) -> Result<Vec<Enc>, String> {
    let mut encs = Vec::new();
    for t in v.split([' ', ',']).filter(|t| !t.is_empty()) {
        let enc = match t.to_ascii_lowercase().as_str() {
            "gzip" => Enc::Gzip,
            "br" => Enc::Br,
            _ => return Err(format!("`{t}`: expected `gzip`, `br` or both")),
        };
        if !encs.contains(&enc) {
            encs.push(enc);
        }
    }
    if encs.is_empty() {
        return Err("expected `gzip`, `br` or both".into());
    }
    encs.sort_by_key(|e| *e as u8);
    Ok(encs)
}

impl Compress {
    /// Whether a page of `media_type` gets twins.
    pub(super) fn wants(&self, media_type: &str) -> bool {
        self.types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(media_type))
    }
}

/// What a request accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Choice {
    Twin(Enc),
    Identity,
    /// Nothing offered is acceptable (`identity;q=0` and no acceptable twin).
    None,
}

/// The q-value `headers` give `token` (`*` for the rest), or None if unmentioned.
fn q_of(headers: &HeaderMap, token: &str) -> (Option<f32>, Option<f32>) {
    let (mut exact, mut star) = (None, None);
    for v in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(v) = v.to_str() else { continue };
        for item in v.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
                .next()
                .map_or(Some(1.0), |q| {
                    q.trim()
                        .parse::<f32>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q))
                })
                .unwrap_or(0.0);
            if name.eq_ignore_ascii_case(token) {
                exact = Some(exact.map_or(q, |e: f32| e.max(q)));
            } else if name == "*" {
                star = Some(q);
            }
        }
    }
    (exact, star)
}

/// The best of `offered` twins for `headers`, else identity, else none.
pub(super) fn negotiate(headers: &HeaderMap, offered: &[Enc]) -> Choice {
    if !headers.contains_key(header::ACCEPT_ENCODING) {
        return Choice::Identity;
    }
    let mut best: Option<(f32, Enc)> = None;
    for &enc in offered {
        let (exact, star) = q_of(headers, enc.token());
        let q = exact.or(star).unwrap_or(0.0);
        if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, enc));
        }
    }
    if let Some((_, enc)) = best {
        return Choice::Twin(enc);
    }
    let (exact, star) = q_of(headers, "identity");
    match exact.or(star) {
        Some(q) if q <= 0.0 => Choice::None,
        _ => Choice::Identity,
    }
}

/// Write the twins of the page at `page` (as it is on disk now) for `encs`;
/// returns the bytes written. A twin that would not be smaller is not kept.
pub(super) fn write(
    dir: &CacheDir,
    page: &CachePath,
    encs: &[Enc],
    min_size: u64,
    fsync: bool,
) -> io::Result<u64> {
    let Lookup::Hit(mut file, meta) = dir.lookup(page) else {
        return Ok(0);
    };
    if meta.len() < min_size {
        return Ok(0);
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut data)?;
    let mtime = Timespec {
        tv_sec: meta.mtime(),
        tv_nsec: meta.mtime_nsec() as _,
    };
    let mut total = 0;
    for &enc in encs {
        let bytes = enc.compress(&data)?;
        if bytes.len() >= data.len() {
            continue;
        }
        let twin = page.clone().with_suffix(enc.suffix());
        let mut temp = dir.parent_dir(&twin).and_then(TempFile::create)?;
        temp.file().write_all(&bytes)?;
        let times = Timestamps {
            last_access: mtime,
            last_modification: mtime,
        };
        futimens(temp.file().as_fd(), &times)?;
        temp.commit(twin.name(), fsync)?;
        total += bytes.len() as u64;
    }
    Ok(total)
}

/// Remove the twins of `rel` (relative to cache_dir), if any.
pub(super) fn remove(dir: &CacheDir, rel: &str) {
    let root = dir.root();
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let fd = if parent.is_empty() {
        None
    } else {
        match open_beneath(root.as_fd(), parent, DIR_FLAGS) {
            Ok(fd) => Some(fd),
            Err(_) => return,
        }
    };
    let at = fd.as_ref().map_or(root.as_fd(), |f| f.as_fd());
    for s in SUFFIXES {
        let _ = unlinkat(at, format!("{name}{s}").as_str(), AtFlags::empty());
    }
}

/// Whether a twin (by its metadata) belongs to the page version `page_mtime`.
pub(super) fn fresh(twin: &std::fs::Metadata, page_mtime: (i64, i64)) -> bool {
    (twin.mtime(), twin.mtime_nsec()) == page_mtime
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ae(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, v.parse().unwrap());
        h
    }

    #[test]
    fn negotiation() {
        let both = [Enc::Br, Enc::Gzip];
        assert_eq!(negotiate(&HeaderMap::new(), &both), Choice::Identity);
        assert_eq!(negotiate(&ae("gzip"), &both), Choice::Twin(Enc::Gzip));
        assert_eq!(negotiate(&ae("gzip, br"), &both), Choice::Twin(Enc::Br));
        assert_eq!(
            negotiate(&ae("br;q=0.5, gzip"), &both),
            Choice::Twin(Enc::Gzip)
        );
        assert_eq!(negotiate(&ae("GZIP;Q=0.1"), &both), Choice::Twin(Enc::Gzip));
        assert_eq!(negotiate(&ae("*"), &both), Choice::Twin(Enc::Br));
        assert_eq!(
            negotiate(&ae("*;q=0, gzip"), &both),
            Choice::Twin(Enc::Gzip)
        );
        assert_eq!(negotiate(&ae("gzip;q=0"), &both), Choice::Identity);
        assert_eq!(negotiate(&ae("deflate"), &both), Choice::Identity);
        assert_eq!(negotiate(&ae("identity;q=0"), &both), Choice::None);
        assert_eq!(negotiate(&ae("*;q=0"), &both), Choice::None);
        assert_eq!(negotiate(&ae("identity;q=0, gzip"), &[]), Choice::None);
        assert_eq!(negotiate(&ae("gzip;q=x"), &both), Choice::Identity);
        assert_eq!(negotiate(&ae(""), &both), Choice::Identity);
    }

    #[test]
    fn keys() {
        assert_eq!(parse_encs("gzip").unwrap(), [Enc::Gzip]);
        assert_eq!(parse_encs("gzip br").unwrap(), [Enc::Br, Enc::Gzip]);
        assert!(parse_encs("zstd").is_err());
        assert!(parse_encs("").is_err());
    }
}
