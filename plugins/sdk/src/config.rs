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

    /// A setting as Paste factories read one: the section's own key, else the
    /// global one (`[DEFAULT]` or a `set`). Paste drops a local key that
    /// `[DEFAULT]` also defines, so a plugin that reads with `get` alone would
    /// lose it; `setting` finds it in `global_conf`.
    ///
    /// ```
    /// # use plughost_sdk::Config;
    /// let c = Config::new(
    ///     "main",
    ///     vec![("debug".into(), "true".into()), ("greeting".into(), "Hi".into())],
    ///     vec![("greeting".into(), "Hello".into())],
    /// );
    /// assert_eq!(c.setting("greeting"), Some("Hello")); // the section's own wins
    /// assert_eq!(c.setting("debug"), Some("true"));     // else [DEFAULT]'s
    /// assert_eq!(c.setting("missing"), None);
    /// ```
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.get(key).or_else(|| self.global(key))
    }

    /// Refuse any local key not in `known`, as the host's built-ins do, so a
    /// typo in deploy.ini is a start-up error instead of a setting silently
    /// ignored. The error names the first unknown key; the host points at that
    /// key's own line.
    ///
    /// ```
    /// # use plughost_sdk::Config;
    /// let c = Config::new("main", vec![], vec![("greetng".into(), "Hi".into())]);
    /// let err = c.expect_keys(&["greeting"]).unwrap_err();
    /// assert_eq!(err.to_string(), "unknown key `greetng`; this plugin's keys are: greeting");
    /// assert!(Config::default().expect_keys(&["greeting"]).is_ok());
    /// ```
    pub fn expect_keys(&self, known: &[&str]) -> Result<(), Error> {
        match self
            .local
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            Some((key, _)) => Err(Error::new(format!(
                "unknown key `{key}`; this plugin's keys are: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))),
            None => Ok(()),
        }
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
