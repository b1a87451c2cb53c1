//! `%(name)s` interpolation, as ConfigParser's BasicInterpolation: `%%` is a
//! literal `%`, any other `%` is an error, names are case-sensitive, and
//! substituted text is expanded again up to a fixed depth.

/// How deep substitutions may nest before it is an error (ConfigParser's limit).
pub const MAX_DEPTH: usize = 10;

/// Expand `value`, looking names up with `lookup` (which returns raw values).
pub fn interpolate(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    expand(value, lookup, 0)
}

fn expand(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "interpolation nested deeper than {MAX_DEPTH} levels (a loop?) in {value:?}"
        ));
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos + 1..];
        if let Some(after) = tail.strip_prefix('%') {
            out.push('%');
            rest = after;
        } else if let Some(spec) = tail.strip_prefix('(') {
            let Some(close) = spec.find(")s") else {
                return Err(format!(
                    "bad interpolation syntax in {value:?}: expected `%(name)s`"
                ));
            };
            let name = &spec[..close];
            let Some(raw) = lookup(name) else {
                return Err(format!("`%({name})s` refers to a key that is not defined"));
            };
            out.push_str(&expand(&raw, lookup, depth + 1)?);
            rest = &spec[close + 2..];
        } else {
            return Err(format!(
                "a lone `%` in {value:?}: write `%%` for a literal percent sign"
            ));
        }
    }
    out.push_str(rest);
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
        assert!(interpolate("50%", &l).unwrap_err().contains("lone `%`"));
        assert!(interpolate("%(n)d", &l)
            .unwrap_err()
            .contains("bad interpolation"));
        assert!(interpolate("%(name)s", &l)
            .unwrap_err()
            .contains("not defined"));
        assert!(interpolate("%(a)s", &l)
            .unwrap_err()
            .contains("deeper than 10"));
    }
}
