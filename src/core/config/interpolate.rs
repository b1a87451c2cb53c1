//! `%(name)s` interpolation, as ConfigParser's BasicInterpolation: `%%` is a
//! literal `%`, any other `%` is an error, names are case-sensitive, and
//! substituted text is expanded again up to a fixed depth.
//!
//! Unlike ConfigParser, the work is also bounded: keys that each name the next
//! several times (`a = %(b)s%(b)s`, `b = %(c)s%(c)s`, ...) grow exponentially
//! within the depth limit, and sections resolved many times interpolate their
//! keys each time. A [`Budget`] shared by every value of one configuration load
//! turns both into an error instead of a hang or an exhausted memory.

/// How deep substitutions may nest before it is an error (ConfigParser's limit).
pub const MAX_DEPTH: usize = 10;
/// Most `%(name)s` substitutions one budget allows, at all depths.
pub const MAX_SUBSTITUTIONS: usize = 100_000;
/// Most bytes one budget lets expansions produce, counted at every depth.
pub const MAX_EXPANDED_BYTES: usize = 64 * 1024 * 1024;

/// What is left of the interpolation work allowed: one per configuration load
/// (`config::load`), or one per call of [`interpolate`].
#[derive(Debug, Clone)]
pub struct Budget {
    substitutions: usize,
    bytes: usize,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            substitutions: MAX_SUBSTITUTIONS,
            bytes: MAX_EXPANDED_BYTES,
        }
    }
}

impl Budget {
    fn push(&mut self, out: &mut String, text: &str) -> Result<(), Failure> {
        self.bytes = self
            .bytes
            .checked_sub(text.len())
            .ok_or(Failure::TooLarge)?;
        out.push_str(text);
        Ok(())
    }
}

/// Expand `value`, looking names up with `lookup` (which returns raw values),
/// with a budget of its own.
pub fn interpolate(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    interpolate_within(value, lookup, &mut Budget::default())
}

/// Expand `value`, spending from `budget`.
pub fn interpolate_within(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    budget: &mut Budget,
) -> Result<String, InterpolateError> {
    expand(value, lookup, 0, budget).map_err(|e| match e {
        Failure::Error(e) => e,
        Failure::TooLarge => InterpolateError::TooMuchWork {
            value: value.to_owned(),
        },
    })
}

/// Why a value cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    #[error("interpolation nested deeper than {MAX_DEPTH} levels (a loop?) in {value:?}")]
    TooDeep { value: String },
    #[error("bad interpolation syntax in {value:?}: expected `%(name)s`")]
    BadSyntax { value: String },
    #[error("`%({name})s` refers to a key that is not defined")]
    Undefined { name: String },
    #[error("a lone `%` in {value:?}: write `%%` for a literal percent sign")]
    LonePercent { value: String },
    #[error(
        "interpolating {value:?} goes over the limit of {MAX_SUBSTITUTIONS} substitutions \
         or {MAX_EXPANDED_BYTES} expanded bytes per configuration: do keys name each other \
         several times over?"
    )]
    TooMuchWork { value: String },
}

enum Failure {
    Error(InterpolateError),
    /// Over the budget: reported once, for the outermost value.
    TooLarge,
}

fn expand(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
    budget: &mut Budget,
) -> Result<String, Failure> {
    if depth > MAX_DEPTH {
        return Err(Failure::Error(InterpolateError::TooDeep {
            value: value.to_owned(),
        }));
    }
    let mut out = String::with_capacity(value.len().min(budget.bytes));
    let mut rest = value;
    while let Some(pos) = rest.find('%') {
        budget.push(&mut out, &rest[..pos])?;
        let tail = &rest[pos + 1..];
        if let Some(after) = tail.strip_prefix('%') {
            budget.push(&mut out, "%")?;
            rest = after;
        } else if let Some(spec) = tail.strip_prefix('(') {
            let Some(close) = spec.find(")s") else {
                return Err(Failure::Error(InterpolateError::BadSyntax {
                    value: value.to_owned(),
                }));
            };
            let name = &spec[..close];
            budget.substitutions = budget
                .substitutions
                .checked_sub(1)
                .ok_or(Failure::TooLarge)?;
            let Some(raw) = lookup(name) else {
                return Err(Failure::Error(InterpolateError::Undefined {
                    name: name.to_owned(),
                }));
            };
            let inner = expand(&raw, lookup, depth + 1, budget)?;
            budget.push(&mut out, &inner)?;
            rest = &spec[close + 2..];
        } else {
            return Err(Failure::Error(InterpolateError::LonePercent {
                value: value.to_owned(),
            }));
        }
    }
    budget.push(&mut out, rest)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn expands_names_recursively_and_percent_escapes() {
        let l = with(&[("here", "/srv"), ("cache", "%(here)s/cache")]);
        assert_eq!(
            interpolate("%(cache)s/x 100%%", &l).unwrap(),
            "/srv/cache/x 100%"
        );
    }

    #[test]
    fn errors() {
        let l = with(&[("a", "%(b)s"), ("b", "%(a)s"), ("Name", "x")]);
        assert!(interpolate("50%", &l)
            .unwrap_err()
            .to_string()
            .contains("lone `%`"));
        assert!(interpolate("%(n)d", &l)
            .unwrap_err()
            .to_string()
            .contains("bad interpolation"));
        assert!(interpolate("%(name)s", &l)
            .unwrap_err()
            .to_string()
            .contains("not defined"));
        assert!(interpolate("%(a)s", &l)
            .unwrap_err()
            .to_string()
            .contains("deeper than 10"));
    }

    /// Found while writing the `config_resolver` fuzz target: ten keys that
    /// each name the next eight times stay within the depth limit but expand
    /// to 8^9 copies (2 GiB here), which hung `plughost check` and ran out of
    /// memory. Empty values make the same shape a pure time bomb.
    #[test]
    fn fuzz_exponential_expansion_is_an_error_not_a_hang() {
        for leaf in ["xxxxxxxxxxxxxxxx", ""] {
            let keys = "abcdefghij";
            let pairs: Vec<(String, String)> = keys
                .chars()
                .zip(keys.chars().skip(1))
                .map(|(k, next)| (k.to_string(), format!("%({next})s").repeat(8)))
                .chain([("j".to_string(), leaf.to_string())])
                .collect();
            let lookup = |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            let started = std::time::Instant::now();
            let err = interpolate("%(a)s", &lookup).unwrap_err().to_string();
            assert!(err.contains("goes over the limit"), "{err}");
            assert!(started.elapsed() < std::time::Duration::from_secs(5));
            // A few levels of the same shape are fine.
            assert_eq!(interpolate("%(h)s", &lookup).unwrap(), leaf.repeat(64));
        }
    }

    #[test]
    fn one_budget_is_shared_by_every_value_expanded_with_it() {
        let l = with(&[("a", "xyz")]);
        let mut budget = Budget::default();
        for _ in 0..MAX_SUBSTITUTIONS {
            assert_eq!(interpolate_within("%(a)s", &l, &mut budget).unwrap(), "xyz");
        }
        let err = interpolate_within("%(a)s", &l, &mut budget)
            .unwrap_err()
            .to_string();
        assert!(err.contains("goes over the limit"), "{err}");
        // Plain text is still counted in bytes, and a fresh budget starts over.
        assert_eq!(interpolate("%(a)s", &l).unwrap(), "xyz");
    }
}
