//! Where a Python entry point comes from, for `check`: `use = egg:DIST#ENTRY`
//! with no native `libDIST.so` runs through the WSGI bridge, and `check`
//! names the distribution, its version, the entry point's `module:attr` and
//! the module's file. Read from the environment's installed metadata
//! (`*.dist-info/entry_points.txt` in `site-packages`) without running
//! Python, in the environment the bridge will use: `$VIRTUAL_ENV`, else
//! `PLUGHOST_PYTHON` (`--python`) naming a virtualenv.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// The entry point groups of a component's kind, in Paste's order.
pub(crate) fn groups(filter: bool) -> &'static [&'static str] {
    if filter {
        &["paste.filter_factory", "paste.filter_app_factory"]
    } else {
        &["paste.app_factory"]
    }
}

/// `{distribution, version, group, object, file}` of `dist`'s entry point
/// `entry`, if the environment has it.
pub(crate) fn origin(dist: &str, entry: &str, filter: bool) -> Option<Value> {
    for site in site_packages()? {
        let Some(info) = dist_info(&site, dist) else {
            continue;
        };
        let text = std::fs::read_to_string(info.join("entry_points.txt")).ok()?;
        for group in groups(filter) {
            let Some(object) = lookup(&text, group, entry) else {
                continue;
            };
            let module = object.split(':').next().unwrap_or_default().trim();
            let version = info
                .file_name()?
                .to_string_lossy()
                .trim_end_matches(".dist-info")
                .rsplit_once('-')
                .map(|(_, v)| v.to_owned());
            return Some(json!({
                "distribution": dist,
                "version": version,
                "group": group,
                "object": object,
                "file": module_file(&site, module).map(|p| p.display().to_string()),
            }));
        }
    }
    None
}

/// The `site-packages` directories of the environment the bridge uses.
fn site_packages() -> Option<Vec<PathBuf>> {
    let env = std::env::var_os("VIRTUAL_ENV")
        .or_else(|| std::env::var_os("PLUGHOST_PYTHON"))
        .map(PathBuf::from)?;
    // `--python` may name the interpreter inside the venv.
    let env = if env.is_file() {
        env.parent()?.parent()?.to_path_buf()
    } else {
        env
    };
    let mut out = Vec::new();
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(env.join(lib)) else {
            continue;
        };
        for e in entries.flatten() {
            let site = e.path().join("site-packages");
            if e.file_name().to_string_lossy().starts_with("python") && site.is_dir() {
                out.push(site);
            }
        }
    }
    Some(out)
}

/// Distribution names compare as PEP 503 normalises them.
fn normal(name: &str) -> String {
    name.to_ascii_lowercase().replace(['-', '.'], "_")
}

fn dist_info(site: &Path, dist: &str) -> Option<PathBuf> {
    let want = normal(dist);
    std::fs::read_dir(site).ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let stem = name.strip_suffix(".dist-info")?;
        let (n, _) = stem.rsplit_once('-')?;
        (normal(n) == want).then(|| e.path())
    })
}

/// `name = module:attr` of `[group]` in an `entry_points.txt`.
fn lookup(text: &str, group: &str, entry: &str) -> Option<String> {
    let mut in_group = false;
    for line in text.lines().map(str::trim) {
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_group = section.trim() == group;
        } else if in_group {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == entry {
                    return Some(v.trim().to_owned());
                }
            }
        }
    }
    None
}

/// The file a module is imported from, when it sits in `site` (a package's
/// `__init__.py` or a module's `.py`).
fn module_file(site: &Path, module: &str) -> Option<PathBuf> {
    let rel: PathBuf = module.split('.').collect();
    [rel.join("__init__.py"), rel.with_extension("py")]
        .into_iter()
        .map(|r| site.join(r))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_txt() {
        let text = "[paste.app_factory]\nmain = tinypyr:main\n\n[paste.filter_factory]\nstamp = tinypyr:stamp_factory\n";
        assert_eq!(
            lookup(text, "paste.app_factory", "main").as_deref(),
            Some("tinypyr:main")
        );
        assert_eq!(lookup(text, "paste.app_factory", "stamp"), None);
        assert_eq!(
            lookup(text, "paste.filter_factory", "stamp").as_deref(),
            Some("tinypyr:stamp_factory")
        );
        assert_eq!(normal("My.Dist-Name"), "my_dist_name");
    }

    #[test]
    fn a_module_file_and_a_dist_info() {
        let tmp = tempfile::tempdir().unwrap();
        let site = tmp.path();
        std::fs::create_dir_all(site.join("pkg/sub")).unwrap();
        std::fs::write(site.join("pkg/sub/__init__.py"), "").unwrap();
        std::fs::write(site.join("single.py"), "").unwrap();
        std::fs::create_dir(site.join("My_Dist-1.2.dist-info")).unwrap();
        assert_eq!(
            module_file(site, "pkg.sub"),
            Some(site.join("pkg/sub/__init__.py"))
        );
        assert_eq!(module_file(site, "single"), Some(site.join("single.py")));
        assert_eq!(module_file(site, "missing"), None);
        assert_eq!(
            dist_info(site, "my-dist"),
            Some(site.join("My_Dist-1.2.dist-info"))
        );
    }
}
