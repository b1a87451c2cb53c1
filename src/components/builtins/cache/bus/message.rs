//! One purge as it travels on the stream: what it covers, whether it is soft,
//! and which node made it (so that node does not apply it twice). Each node
//! maps the URL to files itself, with its own layout, host directories and
//! twins.

use std::collections::HashMap;

use redis::Value;

/// What a purge covers, as URLs (not files: nodes may lay their trees out
/// differently).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::components::builtins::cache) enum Target {
    /// One page: a URL path, or under `host_dirs` `http://HOST/path`.
    Page(String),
    /// The page and everything below it.
    Prefix(String),
    /// Every page with any of these tags.
    Tags(Vec<String>),
}

/// One purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::components::builtins::cache) struct Message {
    pub target: Target,
    pub soft: bool,
    /// The publishing process (`node_name/pid/start`); empty from `--bus`.
    pub origin: String,
}

impl Message {
    /// The entry's fields, for `XADD`.
    pub(super) fn fields(&self) -> Vec<(&'static str, String)> {
        let (kind, target) = match &self.target {
            Target::Page(u) => ("page", u.clone()),
            Target::Prefix(u) => ("prefix", u.clone()),
            Target::Tags(t) => ("tags", t.join(" ")),
        };
        vec![
            ("kind", kind.to_owned()),
            ("target", target),
            ("soft", if self.soft { "1" } else { "0" }.to_owned()),
            ("origin", self.origin.clone()),
        ]
    }

    /// An entry read back; `None` for one this version does not understand
    /// (skipped, and logged by the caller).
    pub(super) fn parse(map: &HashMap<String, Value>) -> Option<Message> {
        let get = |k: &str| -> Option<String> {
            match map.get(k)? {
                Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
                Value::SimpleString(s) => Some(s.clone()),
                _ => None,
            }
        };
        let target = get("target")?;
        let target = match get("kind")?.as_str() {
            "page" => Target::Page(target),
            "prefix" => Target::Prefix(target),
            "tags" => Target::Tags(
                target
                    .split(' ')
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => return None,
        };
        Some(Message {
            target,
            soft: get("soft").as_deref() == Some("1"),
            origin: get("origin").unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        for target in [
            Target::Page("http://a.example/x".into()),
            Target::Prefix("/blog".into()),
            Target::Tags(vec!["a42".into(), "home".into()]),
        ] {
            let m = Message {
                target,
                soft: true,
                origin: "n1/7/9".into(),
            };
            let map: HashMap<String, Value> = m
                .fields()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::BulkString(v.into_bytes())))
                .collect();
            assert_eq!(Message::parse(&map), Some(m));
        }
        let mut odd = HashMap::new();
        odd.insert("kind".to_owned(), Value::BulkString(b"ban".to_vec()));
        odd.insert("target".to_owned(), Value::BulkString(b"/".to_vec()));
        assert_eq!(Message::parse(&odd), None);
    }
}
