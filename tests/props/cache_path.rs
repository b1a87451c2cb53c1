//! The properties of the cache's URL → file mapping, shared by the property test
//! (`tests/cache_path_props.rs`) and the fuzz target (`fuzz/fuzz_targets/cache_path.rs`),
//! which include this file with `#[path]`.

use std::path::{Component, Path};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use plughost::cache::path::{map, CachePath, MAX_DEPTH, MAX_PATH_BYTES, MAX_SEGMENT_BYTES};

/// Everything but unreserved characters and `/`, as a client would encode.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `path_info` as a client could have sent it: every byte that cannot appear raw
/// in a request target is `%XX`, and each other byte is encoded when the next bit
/// of `choice` (cycled) is set, in upper or lower case hex by the bit after.
pub fn encode_some(path_info: &[u8], choice: &[u8]) -> String {
    let mut bits = choice
        .iter()
        .flat_map(|b| (0..8).map(move |i| b >> i & 1 == 1))
        .cycle();
    let mut raw = String::with_capacity(path_info.len() * 3);
    for &b in path_info {
        let must = !(0x21..0x7f).contains(&b) || b == b'%' || b == b'?' || b == b'#';
        let chosen = !choice.is_empty() && bits.next().unwrap_or(false);
        if must || chosen {
            let lower = !choice.is_empty() && bits.next().unwrap_or(false);
            if lower {
                raw.push_str(&format!("%{b:02x}"));
            } else {
                raw.push_str(&format!("%{b:02X}"));
            }
        } else {
            raw.push(b as char);
        }
    }
    raw
}

/// The URL path a mapped file stands for: `/rel`, or `/dir/` for a directory index.
pub fn url_of(p: &CachePath, index: &str) -> String {
    if p.name() == index {
        if p.parent().is_empty() {
            "/".to_owned()
        } else {
            format!("/{}/", p.parent())
        }
    } else {
        format!("/{}", p.rel())
    }
}

/// Check every property of `map(path_info, raw, index)`; `index` must be one
/// that `valid_index` accepts. `raw` need not be an encoding of `path_info`.
pub fn check(path_info: &[u8], raw: &str, index: &str) {
    let result = map(path_info, raw, index);
    let encoded_slash = raw.to_ascii_lowercase().contains("%2f");
    if encoded_slash {
        assert!(result.is_err(), "{raw:?} has %2F but maps to {result:?}");
    }
    let Ok(p) = result else { return };
    let rel = p.rel();
    let what = || {
        format!(
            "{:?} (raw {raw:?}, index {index:?}) -> {rel:?}",
            String::from_utf8_lossy(path_info)
        )
    };

    // The shape of the relative path.
    assert!(!rel.is_empty() && !rel.starts_with('/'), "{}", what());
    assert!(
        !rel.contains('\\') && !rel.chars().any(char::is_control),
        "{}",
        what()
    );
    let segments: Vec<&str> = rel.split('/').collect();
    for seg in &segments {
        assert!(
            !seg.is_empty() && !seg.starts_with('.'),
            "segment {seg:?}: {}",
            what()
        );
        assert!(
            seg.len() <= MAX_SEGMENT_BYTES,
            "segment {seg:?}: {}",
            what()
        );
    }
    // A directory index stands for the URL's last segment: at most one more.
    assert!(segments.len() <= MAX_DEPTH + 1, "{}", what());
    assert!(path_info.len() <= MAX_PATH_BYTES, "{}", what());
    if p.name() != index {
        assert!(segments.len() <= MAX_DEPTH, "{}", what());
    }
    assert_eq!(
        if p.parent().is_empty() {
            p.name().to_owned()
        } else {
            format!("{}/{}", p.parent(), p.name())
        },
        rel,
        "parent/name: {}",
        what()
    );

    // Lexically inside cache_dir, one normal component per segment.
    let base = Path::new("/var/cache/plughost");
    let joined = base.join(rel);
    assert!(joined.starts_with(base), "{}", what());
    let components: Vec<Component> = joined.strip_prefix(base).unwrap().components().collect();
    assert!(
        components.iter().all(|c| matches!(c, Component::Normal(_))),
        "{}",
        what()
    );
    assert_eq!(components.len(), segments.len(), "{}", what());

    // Injective: the file names its URL, which maps back to the same file
    // whatever the encoding the client used.
    let url = url_of(&p, index);
    assert_eq!(url.as_bytes(), path_info, "round trip: {}", what());
    let encoded = utf8_percent_encode(&url, PATH).to_string();
    assert_eq!(
        map(url.as_bytes(), &encoded, index).as_ref(),
        Ok(&p),
        "re-encoded {encoded:?}: {}",
        what()
    );
}
