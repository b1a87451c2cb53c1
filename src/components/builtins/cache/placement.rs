//! Where a cache may sit: checks made while the pipeline is built, so `check`
//! and start-up refuse a layout that would serve one client's page to another.
//!
//! - The cache keys pages by path alone, so nothing below it may answer
//!   differently per host (an urlmap with `domain` entries).
//! - Two cache sections may share one cache_dir only if they map URLs to files
//!   the same way; otherwise one's pages alias the other's.

use std::path::PathBuf;

use crate::core::builtin::{DirClaims, SettingError};
use crate::core::config::{Component, Node};

/// Why a cache above `inner` would mix hosts' pages, if it would.
pub(super) fn host_blind(c: &Component, inner: &Node) -> Result<(), SettingError> {
    let Some((map, line, domain)) = domain_entry(inner) else {
        return Ok(());
    };
    Err(SettingError::new(format!(
        "the pipeline below this cache answers per host ([{}] in {} has `domain {domain}` at line {line}), \
         but the cache keys pages by path alone, so one host's page would be served for another; \
         put a cache inside each domain's app instead of around the urlmap (a cache below [{}] is fine)",
        map.section,
        map.file.display(),
        c.section,
    )))
}

/// The first urlmap entry with a domain anywhere in `node`.
fn domain_entry(node: &Node) -> Option<(&Component, usize, &str)> {
    match node {
        Node::App(_) => None,
        Node::Filter { inner, .. } => domain_entry(inner),
        Node::UrlMap {
            map,
            mounts,
            not_found,
        } => mounts
            .iter()
            .find_map(|m| m.key.domain.as_deref().map(|d| (map, m.line, d)))
            .or_else(|| mounts.iter().find_map(|m| domain_entry(&m.app)))
            .or_else(|| not_found.as_deref().and_then(domain_entry)),
    }
}

/// Record that the section `c` keeps pages in `dir` (canonical) with
/// `mapping`; refuse it if another section keeps pages there another way.
pub(super) fn claim(
    claims: &mut DirClaims,
    c: &Component,
    dir: PathBuf,
    mapping: String,
) -> Result<(), SettingError> {
    claims
        .claim(c, dir.clone(), mapping.clone())
        .map_err(|other| {
            SettingError::key(
                "cache_dir",
                format!(
                "`{}` is also the cache_dir of [{}] ({}), which maps URLs to files differently \
                 ({} there, {mapping} here); one section's pages would alias the other's. \
                 Give each section its own cache_dir, or the same settings",
                dir.display(),
                other.section,
                other.at,
                other.mapping,
            ),
            )
        })
}
