use crate::Error;

/// A section's configuration, as Paste Deploy hands it to a factory:
/// `local_conf` (the section's own keys) and `global_conf` (`[DEFAULT]` and `set`s).
#[derive(Debug, Clone, Default)]
pub struct Config {
    entry: String,
    global: Vec<(String, String)>,
    local: Vec<(String, String)>,
}

impl Config {
    /// A configuration; plugins get one from the host, tests may build their own.
    pub fn new(
        entry: impl Into<String>,
        global: Vec<(String, String)>,
        local: Vec<(String, String)>,
    ) -> Config {
        Config {
            entry: entry.into(),
            global,
            local,
        }
    }

    /// The entry name this instance was created for (`main` by default).
    pub fn entry(&self) -> &str {
        &self.entry
    }

    /// A key of the section (`local_conf`).
    pub fn get(&self, key: &str) -> Option<&str> {
        lookup(&self.local, key)
    }

    /// A key of the section that must be present: its `Err` names the key, so `?`
    /// in a factory gives a clear start-up error.
    pub fn require(&self, key: &str) -> Result<&str, Error> {
        self.get(key)
            .ok_or_else(|| Error::new(format!("missing required key `{key}`")))
    }

    /// A key of `global_conf` (`[DEFAULT]` and `set`s: settings shared by sections).
    pub fn global(&self, key: &str) -> Option<&str> {
        lookup(&self.global, key)
    }

    /// All of `local_conf`, in file order.
    pub fn local_conf(&self) -> &[(String, String)] {
        &self.local
    }

    /// All of `global_conf`.
    pub fn global_conf(&self) -> &[(String, String)] {
        &self.global
    }
}

fn lookup<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}
