//! The names of the components built into the host, each reachable under its
//! plughost name and its Paste Deploy (or wsgi_cache, waitress) name.

/// A built-in component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// `egg:plughost#urlmap`: a composite mapping path prefixes to apps.
    UrlMap,
    /// `egg:plughost#static`: files from `document_root`.
    Static,
    /// `egg:plughost#cache`: the disk page cache filter.
    Cache,
    /// `egg:plughost#translogger`: an access log in Apache combined format.
    TransLogger,
    /// `egg:plughost#metrics`: the host's metrics for Prometheus.
    Metrics,
    /// `egg:plughost#http`: the HTTP server (only in `[server:]` sections).
    Http,
}

/// Where a built-in fits in a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    App,
    Composite,
    Filter,
    Server,
}

/// (distribution, entry) → built-in. Distribution names match case-insensitively.
const TABLE: &[(&str, &str, Builtin)] = &[
    ("plughost", "urlmap", Builtin::UrlMap),
    ("Paste", "urlmap", Builtin::UrlMap),
    ("plughost", "static", Builtin::Static),
    ("Paste", "static", Builtin::Static),
    ("plughost", "cache", Builtin::Cache),
    ("wsgi_cache", "middleware", Builtin::Cache),
    ("wsgi-cache", "middleware", Builtin::Cache),
    ("plughost", "translogger", Builtin::TransLogger),
    ("Paste", "translogger", Builtin::TransLogger),
    ("plughost", "metrics", Builtin::Metrics),
    ("plughost", "http", Builtin::Http),
    ("Paste", "http", Builtin::Http),
    ("waitress", "main", Builtin::Http),
];

impl Builtin {
    /// The built-in named by `egg:DIST#ENTRY`, if any.
    pub fn lookup(dist: &str, entry: &str) -> Option<Builtin> {
        TABLE
            .iter()
            .find(|(d, e, _)| d.eq_ignore_ascii_case(dist) && *e == entry)
            .map(|(_, _, b)| *b)
    }

    /// Whether `egg:DIST` is a distribution the host provides itself (so an
    /// unknown entry is reported as such, not as a missing library).
    pub fn is_builtin_dist(dist: &str) -> bool {
        TABLE.iter().any(|(d, _, _)| d.eq_ignore_ascii_case(dist))
    }

    /// What the built-in is.
    pub fn role(self) -> Role {
        match self {
            Builtin::UrlMap => Role::Composite,
            Builtin::Static | Builtin::Metrics => Role::App,
            Builtin::Cache | Builtin::TransLogger => Role::Filter,
            Builtin::Http => Role::Server,
        }
    }

    /// The canonical `egg:` URI.
    pub fn uri(self) -> &'static str {
        match self {
            Builtin::TransLogger => "egg:plughost#translogger",
            Builtin::Metrics => "egg:plughost#metrics",
            Builtin::UrlMap => "egg:plughost#urlmap",
            Builtin::Static => "egg:plughost#static",
            Builtin::Cache => "egg:plughost#cache",
            Builtin::Http => "egg:plughost#http",
        }
    }

    /// Entries of built-in distributions, for error messages.
    pub fn entries_of(dist: &str) -> Vec<&'static str> {
        TABLE
            .iter()
            .filter(|(d, _, _)| d.eq_ignore_ascii_case(dist))
            .map(|(_, e, _)| *e)
            .collect()
    }
}
