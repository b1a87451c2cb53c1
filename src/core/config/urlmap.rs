//! The keys of an urlmap composite: path expressions such as `/blog`,
//! `domain example.com /blog` or `domain example.com port 8080 /`.

/// One parsed mount key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountKey {
    pub domain: Option<String>,
    pub port: Option<u16>,
    /// Normalised: runs of `/` collapsed, no trailing `/`; `/` itself is "".
    pub path: String,
}

/// Parse a path expression.
pub fn parse_key(key: &str) -> Result<MountKey, String> {
    let mut domain = None;
    let mut port = None;
    let mut path = None;
    let mut tokens = key.split_whitespace();
    while let Some(token) = tokens.next() {
        match token {
            "domain" => {
                let host = tokens.next().ok_or("`domain` needs a host name")?;
                if domain.replace(host.to_owned()).is_some() {
                    return Err("`domain` given twice".into());
                }
            }
            "port" => {
                let n = tokens.next().ok_or("`port` needs a number")?;
                let n: u16 = n
                    .parse()
                    .map_err(|_| format!("`port {n}`: not a port number"))?;
                if port.replace(n).is_some() {
                    return Err("`port` given twice".into());
                }
            }
            p if p.starts_with('/') => {
                if path.replace(normalize(p)).is_some() {
                    return Err("more than one path".into());
                }
            }
            other => return Err(format!("`{other}`: a path must start with `/`")),
        }
    }
    if port.is_some() && domain.is_none() {
        return Err("`port` needs `domain`".into());
    }
    Ok(MountKey {
        domain,
        port,
        path: path.unwrap_or_default(),
    })
}

/// Collapse runs of `/` and cut a trailing `/`.
pub fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(segment);
    }
    out
}

/// Paste's order: entries with a domain first (by domain, then longest path),
/// then the rest, longest path first.
pub fn sort_key(key: &MountKey) -> (bool, String, std::cmp::Reverse<usize>) {
    (
        key.domain.is_none(),
        key.domain.clone().unwrap_or_default(),
        std::cmp::Reverse(key.path.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_expressions() {
        assert_eq!(parse_key("/").unwrap().path, "");
        assert_eq!(parse_key("//blog//x/").unwrap().path, "/blog/x");
        let k = parse_key("domain example.com port 8080 /x").unwrap();
        assert_eq!(
            (k.domain.as_deref(), k.port, k.path.as_str()),
            (Some("example.com"), Some(8080), "/x")
        );
        assert!(parse_key("/a /b")
            .unwrap_err()
            .contains("more than one path"));
        assert!(parse_key("port 80 /")
            .unwrap_err()
            .contains("needs `domain`"));
        assert!(parse_key("blog")
            .unwrap_err()
            .contains("must start with `/`"));
        assert!(parse_key("domain a domain b")
            .unwrap_err()
            .contains("twice"));
    }
}
