//! The cache's URL → file mapping on arbitrary paths: never panics, a mapped
//! path is a plain relative path that stays inside cache_dir, and the mapping is
//! injective (the file names the one URL that maps to it). The properties live
//! in `tests/props/cache_path.rs`, shared with the property test.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use plughost::cache::path::valid_index;

#[path = "../../tests/props/cache_path.rs"]
mod props;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// PATH_INFO, percent-decoded (arbitrary bytes).
    path_info: &'a [u8],
    /// Which bytes the client percent-encoded (see `props::encode_some`).
    encode: &'a [u8],
    /// A raw path unrelated to PATH_INFO instead of an encoding of it.
    raw: Option<&'a str>,
    /// `directory_index` (default `__index.html`), when valid.
    index: Option<&'a str>,
}

fuzz_target!(|input: Input| {
    let index = input.index.unwrap_or("__index.html");
    if !valid_index(index) {
        return;
    }
    let raw = match input.raw {
        Some(raw) => raw.to_owned(),
        None => props::encode_some(input.path_info, input.encode),
    };
    props::check(input.path_info, &raw, index);
});
