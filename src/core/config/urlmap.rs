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

/// Why an urlmap key is not a path expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MountKeyError {
    #[error("`domain` needs a host name")]
    NoHost,
    #[error("`port` needs a number")]
    NoPort,
    #[error("`{0}` given twice")]
    Twice(&'static str),
    #[error("`port {0}`: not a port number")]
    BadPort(String),
    #[error("more than one path")]
    TwoPaths,
    #[error("`{0}`: a path must start with `/`")]
    NotAPath(String),
    #[error("`port` needs `domain`")]
    PortWithoutDomain,
}

/// Parse a path expression.
pub(crate) fn parse_key(key: &str) -> Result<MountKey, MountKeyError> {
    let mut domain = None;
    let mut port = None;
    let mut path = None;
    let mut tokens = key.split_whitespace();
    while let Some(token) = tokens.next() {
        match token {
            "domain" => {
                let host = tokens.next().ok_or(MountKeyError::NoHost)?;
                if domain.replace(host.to_owned()).is_some() {
                    return Err(MountKeyError::Twice("domain"));
                }
            }
            "port" => {
                let n = tokens.next().ok_or(MountKeyError::NoPort)?;
                let n: u16 = n
                    .parse()
                    .map_err(|_| MountKeyError::BadPort(n.to_owned()))?;
                if port.replace(n).is_some() {
                    return Err(MountKeyError::Twice("port"));
                }
            }
            p if p.starts_with('/') => {
                if path.replace(normalize(p)).is_some() {
                    return Err(MountKeyError::TwoPaths);
                }
            }
            other => return Err(MountKeyError::NotAPath(other.to_owned())),
        }
    }
    if port.is_some() && domain.is_none() {
        return Err(MountKeyError::PortWithoutDomain);
    }
    Ok(MountKey {
        domain,
        port,
        path: path.unwrap_or_default(),
    })
}

/// Collapse runs of `/` and cut a trailing `/`.
pub(crate) fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(segment);
    }
    out
}

/// Paste's order: entries with a domain first (by domain, then longest path),
/// then the rest, longest path first.
pub(crate) fn sort_key(key: &MountKey) -> (bool, String, std::cmp::Reverse<usize>) {
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
            .to_string()
            .contains("more than one path"));
        assert!(parse_key("port 80 /")
            .unwrap_err()
            .to_string()
            .contains("needs `domain`"));
        assert!(parse_key("blog")
            .unwrap_err()
            .to_string()
            .contains("must start with `/`"));
        assert!(parse_key("domain a domain b")
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }
}
