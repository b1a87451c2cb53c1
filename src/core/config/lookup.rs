//! Finding the section for (kind, name), by Paste Deploy's rules.

use std::path::Path;

use super::ini::{IniFile, Section};
use super::{ConfigError, ErrorKind};

/// What is being looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Want {
    App,
    Filter,
    Server,
}

impl Want {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Want::App => "app",
            Want::Filter => "filter",
            Want::Server => "server",
        }
    }

    /// Prefix groups in search order; within a group, the first alias with a
    /// match wins silently (`[app:x]` over `[application:x]`).
    fn groups(self) -> &'static [&'static [&'static str]] {
        match self {
            Want::App => &[
                &["app", "application"],
                &["composite", "composit"],
                &["pipeline"],
                &["filter-app"],
            ],
            Want::Filter => &[&["filter"]],
            Want::Server => &[&["server"]],
        }
    }
}

/// The section type a header has, by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SectionType {
    App,
    Composite,
    Pipeline,
    FilterApp,
    Filter,
    Server,
}

fn section_type(prefix: &str) -> SectionType {
    match prefix {
        "app" | "application" => SectionType::App,
        "composite" | "composit" => SectionType::Composite,
        "pipeline" => SectionType::Pipeline,
        "filter-app" => SectionType::FilterApp,
        "filter" => SectionType::Filter,
        _ => SectionType::Server,
    }
}

/// A header's Paste section type and name (bare `[app]` is `main`), or `None`
/// for the sections Paste does not read (`[DEFAULT]`, `[loggers]`, `[uwsgi]`, ...).
pub(super) fn header_type(header: &str) -> Option<(SectionType, &str)> {
    let (prefix, name) = match header.split_once(':') {
        Some((prefix, name)) => (prefix.trim(), name.trim()),
        None => (header.trim(), "main"),
    };
    let known = [Want::App, Want::Filter, Want::Server]
        .iter()
        .flat_map(|w| w.groups().iter().copied().flatten())
        .any(|p| *p == prefix);
    known.then(|| (section_type(prefix), name))
}

/// `[prefix:name]` (name trimmed), or bare `[prefix]` for `main`.
pub(super) fn section_matches(header: &str, prefix: &str, name: &str) -> bool {
    if header == prefix {
        return name == "main";
    }
    header
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|rest| rest.trim() == name)
}

/// Find the one section for (want, name) in `ini`.
pub(super) fn find<'a>(
    ini: &'a IniFile,
    path: &Path,
    want: Want,
    name: &str,
) -> Result<(&'a Section, SectionType), ConfigError> {
    let mut searched = Vec::new();
    let mut found: Vec<(&Section, SectionType)> = Vec::new();
    for group in want.groups() {
        let mut in_group = Vec::new();
        for prefix in *group {
            searched.push(format!("[{prefix}:{name}]"));
            let matches: Vec<&Section> = ini
                .sections
                .iter()
                .filter(|s| section_matches(&s.header, prefix, name))
                .collect();
            if !matches.is_empty() {
                in_group = matches
                    .into_iter()
                    .map(|s| (s, section_type(prefix)))
                    .collect();
                break;
            }
        }
        found.extend(in_group);
    }
    match found.len() {
        1 => Ok(found[0]),
        0 => Err(ConfigError::new(
            ErrorKind::NoSection,
            path,
            format!(
                "no {} named `{name}`: looked for {}",
                want.as_str(),
                searched.join(", ")
            ),
        )),
        _ => {
            let list: Vec<String> = found
                .iter()
                .map(|(s, _)| format!("[{}] (line {})", s.header, s.line))
                .collect();
            Err(ConfigError::new(
                ErrorKind::Ambiguous,
                path,
                format!(
                    "{} `{name}` is ambiguous: {}",
                    want.as_str(),
                    list.join(", ")
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ini(text: &str) -> IniFile {
        IniFile::parse(Path::new("t.ini"), text).unwrap()
    }

    #[test]
    fn matching_rules() {
        assert!(section_matches("app:main", "app", "main"));
        assert!(section_matches("app: main ", "app", "main"));
        assert!(section_matches("app", "app", "main"));
        assert!(!section_matches("app", "app", "other"));
        assert!(!section_matches("App:main", "app", "main"));
        assert!(!section_matches("application:main", "app", "main"));
    }

    #[test]
    fn app_alias_wins_silently_but_groups_conflict() {
        let f = ini("[app:main]\n[application:main]\n");
        assert_eq!(
            find(&f, Path::new("t.ini"), Want::App, "main")
                .unwrap()
                .0
                .header,
            "app:main"
        );
        let f = ini("[app:main]\n[composite:main]\n");
        let e = find(&f, Path::new("t.ini"), Want::App, "main").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Ambiguous);
        assert!(
            e.message
                .contains("[app:main] (line 1), [composite:main] (line 2)"),
            "{}",
            e.message
        );
        let f = ini("[app]\n[app:main]\n");
        assert_eq!(
            find(&f, Path::new("t.ini"), Want::App, "main")
                .unwrap_err()
                .kind,
            ErrorKind::Ambiguous
        );
    }

    #[test]
    fn no_section_lists_what_was_searched() {
        let f = ini("[filter:main]\n");
        let e = find(&f, Path::new("t.ini"), Want::App, "x").unwrap_err();
        assert_eq!(
            e.message,
            "no app named `x`: looked for [app:x], [application:x], [composite:x], [composit:x], [pipeline:x], [filter-app:x]"
        );
        assert_eq!(
            find(&f, Path::new("t.ini"), Want::Filter, "main")
                .unwrap()
                .1,
            SectionType::Filter
        );
    }
}
