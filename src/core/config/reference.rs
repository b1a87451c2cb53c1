//! The values of `use`, `filter-with`, `next`, pipeline items and urlmap
//! entries: a URI (`egg:`, `lib:`, `config:`) or a section name.

use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;

use super::Source;
use crate::core::builtin::Catalog;

/// A reference to an app or filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reference {
    /// Code: a plugin entry or a built-in.
    Code(Source),
    /// `config:PATH#NAME`: section NAME of another file.
    Config { path: PathBuf, name: String },
    /// A section of the same file.
    Section(String),
}

/// Why a reference cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ReferenceError {
    #[error("empty reference")]
    Empty,
    #[error("`{value}`: expected {scheme}:{form}")]
    Incomplete {
        value: String,
        scheme: &'static str,
        form: &'static str,
    },
    #[error("`{value}`: plughost has no built-in `{name}`; built-ins: {}", known.join(", "))]
    NoSuchBuiltin {
        value: String,
        name: String,
        known: Vec<&'static str>,
    },
    #[error("`{value}`: expected call:module:function (not in format module:function)")]
    Call { value: String },
    #[error("`{value}`: unknown scheme `{scheme}`; known schemes: egg, lib, config")]
    UnknownScheme { value: String, scheme: String },
}

/// Parse `value`; relative paths resolve against `base` (the referencing file's directory).
pub(super) fn parse(
    value: &str,
    base: &Path,
    builtins: Catalog,
) -> Result<Reference, ReferenceError> {
    let value = value.trim();
    let scheme_end = value
        .find(':')
        .filter(|&i| i > 0 && value[..i].chars().all(|c| c.is_ascii_alphabetic()));
    let Some(i) = scheme_end else {
        if value.is_empty() {
            return Err(ReferenceError::Empty);
        }
        return Ok(Reference::Section(value.to_owned()));
    };
    let scheme = value[..i].to_ascii_lowercase();
    let rest = &value[i + 1..];
    let (target, fragment) = match rest.split_once('#') {
        Some((t, f)) => (t.trim(), f.trim()),
        None => (rest.trim(), ""),
    };
    let name = if fragment.is_empty() {
        "main"
    } else {
        fragment
    };
    match scheme.as_str() {
        "egg" => {
            let dist = target.split("==").next().unwrap_or(target).trim();
            if dist.is_empty() {
                return Err(incomplete(value, "egg", "NAME#ENTRY"));
            }
            if let Some(builtin) = builtins.lookup(dist, name) {
                return Ok(Reference::Code(Source::Builtin(builtin)));
            }
            if dist.eq_ignore_ascii_case("plughost") {
                if let Some(bridge) = python_bridge(name) {
                    return Ok(bridge);
                }
                return Err(ReferenceError::NoSuchBuiltin {
                    value: value.to_owned(),
                    name: name.to_owned(),
                    known: builtins.entries_of(dist),
                });
            }
            Ok(Reference::Code(Source::Egg {
                dist: dist.to_owned(),
                entry: name.to_owned(),
            }))
        }
        "lib" => {
            if target.is_empty() {
                return Err(incomplete(value, "lib", "PATH#ENTRY"));
            }
            Ok(Reference::Code(Source::Lib {
                path: base.join(target),
                entry: name.to_owned(),
            }))
        }
        "config" => {
            let target = target.replace('\\', "/");
            let target = target.strip_prefix("//").unwrap_or(&target);
            if target.is_empty() {
                return Err(incomplete(value, "config", "PATH#NAME"));
            }
            let decoded = percent_decode_str(target).decode_utf8_lossy().into_owned();
            Ok(Reference::Config {
                path: base.join(decoded),
                name: name.to_owned(),
            })
        }
        // Python code, run through the WSGI bridge; its protocol follows the
        // section's kind (app_factory, filter_factory), as in Paste.
        "call" => match rest.trim().split_once(':') {
            Some((m, a)) if !m.trim().is_empty() && !a.trim().is_empty() => {
                Ok(Reference::Code(Source::Python {
                    spec: rest.trim().to_owned(),
                    protocol: None,
                }))
            }
            _ => Err(ReferenceError::Call {
                value: value.to_owned(),
            }),
        },
        _ => Err(ReferenceError::UnknownScheme {
            value: value.to_owned(),
            scheme,
        }),
    }
}

/// The library of the WSGI bridge plugin (plugins/wsgi): `libplughost_wsgi.so`.
const PYTHON_BRIDGE: &str = "plughost-wsgi";

/// `egg:plughost#wsgi` and `egg:plughost#wsgi-filter` are not built in: they
/// are the Python bridge plugin's entries, so the host never links libpython.
fn python_bridge(entry: &str) -> Option<Reference> {
    ["wsgi", "wsgi-filter"].contains(&entry).then(|| {
        Reference::Code(Source::Egg {
            dist: PYTHON_BRIDGE.to_owned(),
            entry: entry.to_owned(),
        })
    })
}

fn incomplete(value: &str, scheme: &'static str, form: &'static str) -> ReferenceError {
    ReferenceError::Incomplete {
        value: value.to_owned(),
        scheme,
        form,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::builtin::{Builtin, Make};

    static TEST_BUILTINS: &[Builtin] = &[
        Builtin {
            name: "urlmap",
            aliases: &[("Paste", "urlmap")],
            make: Make::Server,
        },
        Builtin {
            name: "cache",
            aliases: &[("wsgi_cache", "middleware")],
            make: Make::Server,
        },
    ];

    fn parse(value: &str, base: &Path) -> Result<Reference, ReferenceError> {
        super::parse(value, base, Catalog(TEST_BUILTINS))
    }

    #[test]
    fn forms() {
        let base = Path::new("/etc/x");
        assert_eq!(
            parse("egg:hello#greet", base).unwrap(),
            Reference::Code(Source::Egg {
                dist: "hello".into(),
                entry: "greet".into()
            })
        );
        assert_eq!(
            parse("EGG:echo==1.0", base).unwrap(),
            Reference::Code(Source::Egg {
                dist: "echo".into(),
                entry: "main".into()
            })
        );
        assert_eq!(
            parse("egg:Paste#urlmap", base).unwrap(),
            Reference::Code(Source::Builtin(&TEST_BUILTINS[0]))
        );
        assert_eq!(
            parse("egg:wsgi_cache#middleware", base).unwrap(),
            Reference::Code(Source::Builtin(&TEST_BUILTINS[1]))
        );
        assert_eq!(
            parse("lib:plugins/libx.so#a", base).unwrap(),
            Reference::Code(Source::Lib {
                path: "/etc/x/plugins/libx.so".into(),
                entry: "a".into()
            })
        );
        assert_eq!(
            parse("config:sub/other%20file.ini#blog", base).unwrap(),
            Reference::Config {
                path: "/etc/x/sub/other file.ini".into(),
                name: "blog".into()
            }
        );
        assert_eq!(
            parse("CONFIG:///abs/f.ini", base).unwrap(),
            Reference::Config {
                path: "/abs/f.ini".into(),
                name: "main".into()
            }
        );
        assert_eq!(
            parse("other", base).unwrap(),
            Reference::Section("other".into())
        );
        assert_eq!(
            parse("call:my.pkg:make_app", base).unwrap(),
            Reference::Code(Source::Python {
                spec: "my.pkg:make_app".into(),
                protocol: None
            })
        );
        assert!(parse("call:foo", base)
            .unwrap_err()
            .to_string()
            .contains("module:function"));
        assert!(parse("app:foo", base)
            .unwrap_err()
            .to_string()
            .contains("unknown scheme `app`"));
        assert_eq!(
            parse("egg:plughost#wsgi", base).unwrap(),
            Reference::Code(Source::Egg {
                dist: "plughost-wsgi".into(),
                entry: "wsgi".into()
            })
        );
        assert_eq!(
            parse("egg:PlugHost#wsgi-filter", base).unwrap(),
            Reference::Code(Source::Egg {
                dist: "plughost-wsgi".into(),
                entry: "wsgi-filter".into()
            })
        );
        assert!(parse("egg:plughost#nope", base)
            .unwrap_err()
            .to_string()
            .contains("no built-in `nope`"));
    }
}
