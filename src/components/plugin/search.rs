//! Finding `libNAME.so` for `egg:NAME` on the plugin path.

use std::path::{Path, PathBuf};

/// The environment variable that puts directories first on the plugin path.
pub(crate) const PLUGIN_PATH_ENV: &str = "PLUGHOST_PLUGIN_PATH";

/// The file name of plugin `name`: `libNAME.so` with dashes as underscores
/// (what cargo names a `cdylib`).
pub(crate) fn library_file_name(name: &str) -> String {
    format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

/// The directories to search, in order: `PLUGHOST_PLUGIN_PATH` (`:`
/// separated), the configuration's own directories (`plugin_path` in
/// `[DEFAULT]`, then `target/release` and `target/debug` beside the config
/// file), the directory of the running `plughost` binary (so a built
/// checkout runs its examples), and last `../lib/plughost` beside that
/// binary (an installed layout: `/usr/local/bin/plughost` and
/// `/usr/local/lib/plughost/`).
pub(crate) fn search_dirs(config_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os(PLUGIN_PATH_ENV)
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    dirs.extend(config_dirs.iter().cloned());
    if let Some(bin) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned))
    {
        let installed = bin.parent().map(|prefix| prefix.join("lib/plughost"));
        dirs.push(bin);
        dirs.extend(installed);
    }
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let fresh = !seen.contains(d);
        seen.push(d.clone());
        fresh
    });
    dirs
}

/// Find the library of plugin `name`; on failure, every path that was tried.
pub(crate) fn find_library(name: &str, dirs: &[PathBuf]) -> Result<PathBuf, Vec<PathBuf>> {
    let file = library_file_name(name);
    let candidates: Vec<PathBuf> = dirs.iter().map(|d| d.join(&file)).collect();
    candidates
        .iter()
        .find(|p| is_file(p))
        .cloned()
        .ok_or(candidates)
}

fn is_file(p: &Path) -> bool {
    p.metadata().map(|m| m.is_file()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_cargo() {
        assert_eq!(
            library_file_name("c-hello"),
            format!(
                "{}c_hello{}",
                std::env::consts::DLL_PREFIX,
                std::env::consts::DLL_SUFFIX
            )
        );
    }

    #[test]
    fn missing_lists_every_candidate() {
        let dirs = vec![
            PathBuf::from("/nonexistent/a"),
            PathBuf::from("/nonexistent/b"),
        ];
        let tried = find_library("x", &dirs).unwrap_err();
        assert_eq!(tried.len(), 2);
        assert!(tried[1].starts_with("/nonexistent/b"));
    }
}
