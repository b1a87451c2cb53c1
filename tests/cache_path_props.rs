//! Property tests of the cache's URL → file mapping (`builtins::cache::path::map`):
//! a mapped path is a plain relative path inside cache_dir within the limits,
//! and the mapping is injective. The properties are in `tests/props/cache_path.rs`,
//! shared with the `cache_path` fuzz target.

use plughost::cache::path::{map, valid_index, Refusal, MAX_DEPTH, MAX_SEGMENT_BYTES};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

#[path = "props/cache_path.rs"]
mod props;

/// Segments that are fine, and every kind the mapping must refuse.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => "[a-zA-Z0-9_~-]{1,8}",
        2 => "[a-z.]{1,4}",
        1 => Just(String::new()),
        1 => Just(".".to_owned()),
        1 => Just("..".to_owned()),
        1 => Just("__index.html".to_owned()),
        1 => Just("index.html".to_owned()),
        1 => "[a-z%\\\\ ]{1,4}",
        1 => "\\PC{1,3}",
        1 => "\\p{Cc}{1,2}",
        1 => ".{1,3}",
        1 => (MAX_SEGMENT_BYTES - 2..MAX_SEGMENT_BYTES + 2).prop_map(|n| "s".repeat(n)),
    ]
}

/// PATH_INFO: mostly `/seg/seg[/]`, sometimes arbitrary bytes.
fn path_info() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => (
            prop_oneof![
                4 => prop::collection::vec(segment(), 0..5),
                1 => prop::collection::vec(segment(), MAX_DEPTH - 2..MAX_DEPTH + 3),
            ],
            any::<bool>()
        ).prop_map(
            |(segments, slash)| {
                let mut p = format!("/{}", segments.join("/"));
                if slash && !p.ends_with('/') {
                    p.push('/');
                }
                p.into_bytes()
            }
        ),
        1 => prop::collection::vec(any::<u8>(), 0..40),
        1 => prop::collection::vec(prop::sample::select(b"/.a%\\\x00\xff".to_vec()), 0..20),
    ]
}

fn index() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("__index.html".to_owned()),
        1 => Just("index.html".to_owned()),
        1 => "[a-z._]{1,8}",
    ]
    .prop_filter("a valid directory_index", |i| valid_index(i))
}

proptest! {
    // A failing case is saved beside this file (`*.proptest-regressions`) and replayed first.
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn mapped_paths_are_safe_and_injective(
        path in path_info(),
        encode in prop::collection::vec(any::<u8>(), 0..8),
        index in index(),
    ) {
        let raw = props::encode_some(&path, &encode);
        props::check(&path, &raw, &index);
    }

    #[test]
    fn properties_hold_whatever_the_raw_path(
        path in path_info(),
        raw in "[/a-z%2Ff.]{0,12}",
        index in index(),
    ) {
        props::check(&path, &raw, &index);
    }

    /// Any `.`/`..` segment, raw or encoded, is refused (as an encoded slash,
    /// when the client also encoded a `/`).
    #[test]
    fn dot_segments_are_refused(
        before in prop::collection::vec("[a-z]{1,4}", 0..4),
        dots in prop_oneof![Just(".".to_owned()), Just("..".to_owned())],
        after in prop::collection::vec("[a-z]{1,4}", 0..4),
        slash in any::<bool>(),
        encode in prop::collection::vec(any::<u8>(), 0..4),
    ) {
        let mut segments = before;
        segments.push(dots);
        segments.extend(after);
        let mut path = format!("/{}", segments.join("/"));
        if slash {
            path.push('/');
        }
        let raw = props::encode_some(path.as_bytes(), &encode);
        let expected = if raw.to_ascii_lowercase().contains("%2f") {
            Refusal::EncodedSlash
        } else {
            Refusal::DotSegment
        };
        prop_assert_eq!(map(path.as_bytes(), &raw, "__index.html"), Err(expected));
    }
}
