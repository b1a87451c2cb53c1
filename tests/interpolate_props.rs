//! Property tests of Paste Deploy interpolation (`config::interpolate`).

use plughost::config::interpolate::{interpolate, MAX_DEPTH, MAX_SUBSTITUTIONS};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// A lookup over `pairs`.
fn lookup(pairs: &[(String, String)]) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// Key names as they appear in INI files (no `)s` inside).
fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_ .-]{0,10}"
}

/// A chain `k0 -> k1 -> ... -> k{len}`: each key names the next `fanout` times,
/// the last is `leaf` (or the chain loops back to `k0`).
fn chain(len: usize, fanout: usize, leaf: Option<&str>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = (0..len)
        .map(|i| (format!("k{i}"), format!("%(k{})s", i + 1).repeat(fanout)))
        .collect();
    match leaf {
        Some(leaf) => pairs.push((format!("k{len}"), leaf.to_owned())),
        // Loop: the last key names the first.
        None => pairs.last_mut().unwrap().1 = "%(k0)s".repeat(fanout),
    }
    pairs
}

proptest! {
    // A failing case is saved beside this file (`*.proptest-regressions`) and replayed first.
    #![proptest_config(ProptestConfig {
        cases: 500,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn text_without_percent_is_unchanged(text in "[^%]*") {
        prop_assert_eq!(interpolate(&text, &|_| None), Ok(text));
    }

    #[test]
    fn double_percent_is_always_one_percent(parts in prop::collection::vec("[^%]*", 1..6)) {
        prop_assert_eq!(interpolate(&parts.join("%%"), &|_| None), Ok(parts.join("%")));
    }

    #[test]
    fn a_defined_key_with_a_plain_value_yields_that_value(
        before in "[^%]*",
        key in name(),
        value in "[^%]*",
        after in "[^%]*",
    ) {
        let pairs = vec![(key.clone(), value.clone())];
        prop_assert_eq!(
            interpolate(&format!("{before}%({key})s{after}"), &lookup(&pairs)),
            Ok(format!("{before}{value}{after}"))
        );
    }

    #[test]
    fn an_undefined_key_is_an_error(key in name(), defined in name()) {
        prop_assume!(key != defined);
        let pairs = vec![(defined, "x".to_owned())];
        let err = interpolate(&format!("%({key})s"), &lookup(&pairs)).unwrap_err().to_string();
        prop_assert!(err.contains("not defined"), "{}", err);
    }

    /// A loop of any length (1 is a key naming itself) stops at the depth
    /// limit with an error instead of overflowing the stack.
    #[test]
    fn reference_loops_error_at_the_depth_limit(len in 1usize..200, fanout in 1usize..4) {
        let pairs = chain(len, fanout, None);
        let err = interpolate("%(k0)s", &lookup(&pairs)).unwrap_err().to_string();
        prop_assert!(err.contains(&format!("deeper than {MAX_DEPTH}")), "{}", err);
    }

    /// A chain of `len + 1` nested references resolves up to the depth limit.
    #[test]
    fn chains_resolve_up_to_the_depth_limit(len in 0usize..20, leaf in "[^%]{0,8}") {
        let pairs = chain(len, 1, Some(&leaf));
        let result = interpolate("%(k0)s", &lookup(&pairs));
        if len < MAX_DEPTH {
            prop_assert_eq!(result, Ok(leaf));
        } else {
            let err = result.unwrap_err().to_string();
            prop_assert!(err.contains(&format!("deeper than {MAX_DEPTH}")), "{}", err);
        }
    }

    /// Arbitrary text over the syntax's characters, with arbitrary values,
    /// never panics, and `%` survives only as the expansion of `%%`.
    #[test]
    fn never_panics(
        text in "[%()sa-c ]{0,40}|.{0,20}",
        pairs in prop::collection::vec(("[a-c]{0,2}", "[%()sa-c]{0,12}"), 0..6),
    ) {
        let plain = !text.contains('%') && pairs.iter().all(|(_, v)| !v.contains('%'));
        match interpolate(&text, &lookup(&pairs)) {
            Ok(out) => {
                if plain {
                    prop_assert_eq!(out, text);
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

proptest! {
    // Fewer cases: one that goes over the limit spends all 100000 substitutions.
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// Keys naming the next several times grow exponentially: the result is
    /// exact while the substitutions fit the budget, an error after.
    #[test]
    fn fanout_is_exact_or_an_error(len in 0usize..MAX_DEPTH, fanout in 1usize..12, leaf in "[a-z]{0,8}") {
        let pairs = chain(len, fanout, Some(&leaf));
        let substitutions: usize = (0..=len as u32).map(|i| fanout.pow(i)).sum();
        let result = interpolate("%(k0)s", &lookup(&pairs));
        if substitutions <= MAX_SUBSTITUTIONS {
            prop_assert_eq!(result, Ok(leaf.repeat(fanout.pow(len as u32))));
        } else {
            let err = result.unwrap_err().to_string();
            prop_assert!(err.contains("goes over the limit"), "{}", err);
        }
    }
}
