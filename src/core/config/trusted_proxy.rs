//! waitress's trusted-proxy keys of `[server:]`: which peer may set the
//! client address, scheme and host through which proxy headers, and whether
//! proxy headers nobody trusts are removed before the app sees them.

/// One proxy header waitress knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    XForwardedFor,
    XForwardedHost,
    XForwardedProto,
    XForwardedPort,
    XForwardedBy,
    Forwarded,
}

impl ProxyHeader {
    /// Every header waitress treats as a proxy header (what clearing removes).
    pub const ALL: [ProxyHeader; 6] = [
        ProxyHeader::XForwardedFor,
        ProxyHeader::XForwardedHost,
        ProxyHeader::XForwardedProto,
        ProxyHeader::XForwardedPort,
        ProxyHeader::XForwardedBy,
        ProxyHeader::Forwarded,
    ];

    /// The header's name, lower-case.
    pub fn name(self) -> &'static str {
        match self {
            ProxyHeader::XForwardedFor => "x-forwarded-for",
            ProxyHeader::XForwardedHost => "x-forwarded-host",
            ProxyHeader::XForwardedProto => "x-forwarded-proto",
            ProxyHeader::XForwardedPort => "x-forwarded-port",
            ProxyHeader::XForwardedBy => "x-forwarded-by",
            ProxyHeader::Forwarded => "forwarded",
        }
    }

    fn parse(name: &str) -> Option<ProxyHeader> {
        ProxyHeader::ALL
            .into_iter()
            .find(|h| h.name().eq_ignore_ascii_case(name))
    }
}

/// The trusted-proxy settings; the default trusts no one and clears nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrustedProxy {
    /// `trusted_proxy`: a peer address, `localhost` for unix-socket peers, or `*`.
    pub proxy: Option<String>,
    /// `trusted_proxy_count`: how many proxies in front (values are taken
    /// this many entries from the right of a header's list).
    pub count: usize,
    /// `trusted_proxy_headers`.
    pub headers: Vec<ProxyHeader>,
    /// `clear_untrusted_proxy_headers`.
    pub clear_untrusted: bool,
}

impl TrustedProxy {
    /// `trusted_proxy_headers`: names separated by spaces (or commas).
    pub(crate) fn parse_headers(value: &str) -> Result<Vec<ProxyHeader>, String> {
        value
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
            .map(|t| {
                ProxyHeader::parse(t).ok_or_else(|| {
                    format!(
                        "unknown proxy header {t:?}; known: x-forwarded-for x-forwarded-host \
                         x-forwarded-proto x-forwarded-port x-forwarded-by forwarded"
                    )
                })
            })
            .collect()
    }

    /// The checks waitress makes once every key is read; `Err` names the
    /// offending key and says why. `set` says which keys were written.
    pub(crate) fn finish(
        &mut self,
        count_set: bool,
        headers_set: bool,
    ) -> Result<(), (&'static str, String)> {
        if self.proxy.is_none() {
            if count_set {
                return Err((
                    "trusted_proxy_count",
                    "has no effect without trusted_proxy".into(),
                ));
            }
            if headers_set {
                return Err((
                    "trusted_proxy_headers",
                    "has no effect without trusted_proxy".into(),
                ));
            }
            return Ok(());
        }
        if !count_set {
            self.count = 1;
        }
        if !headers_set {
            // waitress's backwards-compatible default.
            self.headers = vec![ProxyHeader::XForwardedProto];
        }
        let forwarded = self.headers.contains(&ProxyHeader::Forwarded);
        if forwarded && self.headers.iter().any(|h| *h != ProxyHeader::Forwarded) {
            return Err((
                "trusted_proxy_headers",
                "forwarded and the x-forwarded-* headers are mutually exclusive".into(),
            ));
        }
        Ok(())
    }

    /// Whether a peer (its IP, or `localhost` on a unix socket) is trusted.
    pub fn trusts(&self, peer: &str) -> bool {
        self.proxy.as_deref().is_some_and(|p| p == "*" || p == peer)
    }
}
