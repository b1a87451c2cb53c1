//! Warnings about things that are legal but probably mistakes: keys that are
//! near-misses of Paste Deploy's own keys (`filter_with = cache` is an
//! ordinary local key, so the cache is silently not applied), values with
//! what looks like an inline comment (Paste keeps ` ; text` as part of the
//! value), and sections of the served file that nothing used.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::ini::{IniFile, Section};
use super::lookup::{header_type, SectionType};
use crate::core::location::{Location, Warning};

use SectionType::{App, Composite, Filter, FilterApp, Pipeline, Server};

/// Paste's own keys, with the section types where each has a meaning.
const PASTE_KEYS: &[(&str, &[SectionType])] = &[
    ("use", &[App, Filter, Composite, FilterApp, Server]),
    ("filter-with", &[App, FilterApp, Pipeline, Composite]),
    ("next", &[FilterApp]),
    ("pipeline", &[Pipeline]),
    ("require", &[App, Filter, Composite, FilterApp]),
];

/// Every warning for `files` (the main file first); `used` holds the
/// (file, header) of each section the resolution visited.
pub(crate) fn lint(files: &[&IniFile], used: &HashSet<(PathBuf, String)>) -> Vec<Warning> {
    let mut out = Vec::new();
    for (i, file) in files.iter().enumerate() {
        for section in &file.sections {
            near_misses(&file.path, section, &mut out);
            inline_comments(&file.path, section, &mut out);
            if i == 0 {
                unused(&file.path, section, used, &mut out);
            }
        }
    }
    out
}

fn near_misses(file: &Path, section: &Section, out: &mut Vec<Warning>) {
    let Some((here, _)) = header_type(&section.header) else {
        return;
    };
    for entry in &section.entries {
        let key = entry.key.as_str();
        if key.starts_with("set ") || key.starts_with("get ") {
            continue;
        }
        let Some((meant, _)) = PASTE_KEYS
            .iter()
            .filter(|(_, types)| types.contains(&here))
            .find(|(paste, _)| key != *paste && near_miss(key, paste))
        else {
            continue;
        };
        out.push(Warning::new(
            Location::section(file, entry.line, &section.header).for_key(key),
            format!(
                "looks like a misspelling of `{meant}`: Paste Deploy passes it to the \
                 factory as an ordinary setting, so it has no effect as `{meant}`"
            ),
        ));
    }
}

/// Whether `key` was probably meant as `paste` (a different key).
fn near_miss(key: &str, paste: &str) -> bool {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| !matches!(c, '_' | '-' | ' ' | '.'))
            .flat_map(char::to_lowercase)
            .collect()
    };
    let (k, p) = (norm(key), norm(paste));
    if k == p {
        return true;
    }
    // Short keys (`use`, `next`) are one letter away from real words
    // (`user`, `text`), so only swapped neighbours count for them.
    if p.len() <= 4 {
        return k.len() == p.len() && swapped_neighbours(&k, &p);
    }
    edit_distance_at_most_one(&k, &p)
}

/// `a` is `b` with two neighbouring letters swapped.
fn swapped_neighbours(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let diff: Vec<usize> = (0..a.len().min(b.len()))
        .filter(|&i| a[i] != b[i])
        .collect();
    a.len() == b.len()
        && diff.len() == 2
        && diff[1] == diff[0] + 1
        && a[diff[0]] == b[diff[1]]
        && a[diff[1]] == b[diff[0]]
}

/// Damerau-Levenshtein distance ≤ 1 (one insertion, deletion, substitution
/// or swap of neighbours).
fn edit_distance_at_most_one(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let start = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[start..], &b[start..]);
    match (a.len(), b.len()) {
        (x, y) if x == y => {
            x <= 1 || a[1..] == b[1..] || (a[0] == b[1] && a[1] == b[0] && a[2..] == b[2..])
        }
        (x, y) if x + 1 == y => a == &b[1..],
        (x, y) if y + 1 == x => &a[1..] == b,
        _ => false,
    }
}

fn inline_comments(file: &Path, section: &Section, out: &mut Vec<Warning>) {
    if header_type(&section.header).is_none() && section.header != "DEFAULT" {
        return;
    }
    for entry in &section.entries {
        let Some(mark) = [" ;", "\t;", " #", "\t#"]
            .iter()
            .find(|m| entry.value.contains(**m))
        else {
            continue;
        };
        out.push(Warning::new(
            Location::section(file, entry.line, &section.header).for_key(&entry.key),
            format!(
                "has `{}` in its value, which Paste Deploy keeps as part of the value \
                 (it has no inline comments); put the comment on a line of its own",
                mark.trim()
            ),
        ));
    }
}

fn unused(
    file: &Path,
    section: &Section,
    used: &HashSet<(PathBuf, String)>,
    out: &mut Vec<Warning>,
) {
    let Some((here, name)) = header_type(&section.header) else {
        return;
    };
    if here == Server || used.contains(&(file.to_owned(), section.header.clone())) {
        return;
    }
    let message = if here == Filter {
        "is not used: nothing in the served app's pipeline refers to it".to_owned()
    } else {
        format!(
            "is not used by the served app (if it is another entry point, serve it as {}#{})",
            file.file_name()
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
            name
        )
    };
    out.push(Warning::new(
        Location::section(file, section.line, &section.header),
        message,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings(text: &str, used: &[&str]) -> Vec<String> {
        let path = Path::new("/d/deploy.ini");
        let ini = IniFile::parse(path, text).unwrap();
        let used = used
            .iter()
            .map(|h| (path.to_owned(), (*h).to_owned()))
            .collect();
        lint(&[&ini], &used).iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn near_misses_of_paste_keys_are_named_with_their_line() {
        let w = warnings(
            "[app:main]\nuse = egg:x\nfilter_with = cache\n[filter:cache]\nuse = egg:plughost#cache\n",
            &["app:main"],
        );
        assert_eq!(
            w[0],
            "/d/deploy.ini:3: [app:main] key `filter_with` looks like a misspelling of `filter-with`: \
             Paste Deploy passes it to the factory as an ordinary setting, so it has no effect as `filter-with`"
        );
        assert_eq!(
            w[1],
            "/d/deploy.ini:4: [filter:cache]: is not used: nothing in the served app's pipeline refers to it"
        );
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn which_keys_are_near_misses() {
        for (key, paste) in [
            ("filterwith", "filter-with"),
            ("Filter-With", "filter-with"),
            ("filter-wiht", "filter-with"),
            ("filter-wth", "filter-with"),
            ("USE", "use"),
            ("ues", "use"),
            ("pipline", "pipeline"),
            ("requires", "require"),
        ] {
            assert!(near_miss(key, paste), "{key} vs {paste}");
        }
        for (key, paste) in [
            ("user", "use"),
            ("us", "use"),
            ("text", "next"),
            ("filter", "filter-with"),
            ("cache_dir", "use"),
        ] {
            assert!(!near_miss(key, paste), "{key} vs {paste}");
        }
    }

    #[test]
    fn next_is_a_key_only_in_filter_apps() {
        assert!(warnings("[app:main]\nuse = egg:x\nnxet = 1\n", &["app:main"]).is_empty());
        let w = warnings(
            "[filter-app:main]\nuse = egg:x\nnxet = app\n",
            &["filter-app:main"],
        );
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn a_value_with_an_inline_comment_is_warned_about() {
        let w = warnings(
            "[filter:c]\nuse = egg:plughost#cache\ncache_dir = ./cache ; where pages go\nok = a;b\n",
            &["filter:c"],
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("/d/deploy.ini:3: [filter:c] key `cache_dir` has `;`"),
            "{}",
            w[0]
        );
    }

    #[test]
    fn unused_apps_suggest_their_entry_point_and_other_sections_are_ignored() {
        let w = warnings(
            "[app:main]\nuse = egg:x\n[app:admin]\nuse = egg:y\n[server:main]\nuse = egg:waitress#main\n[loggers]\nkeys = root\n",
            &["app:main"],
        );
        assert_eq!(
            w,
            vec!["/d/deploy.ini:3: [app:admin]: is not used by the served app (if it is another entry point, serve it as deploy.ini#admin)"]
        );
    }
}
