//! Where a node is in the stream: the last entry it applied, kept in
//! `cache_dir/.plughost-bus/position` (written to a temporary file and renamed,
//! so a crash leaves the old position or the new one), with the stream's key
//! so a renamed `purge_stream` starts afresh.

use std::cmp::Ordering;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use super::super::state_file;

/// The position's directory under cache_dir (dot-named: no URL maps to it).
pub(in crate::components::builtins::cache) const DIR: &str = ".plughost-bus";
const FILE: &str = "position";

/// A stream entry ID, `MS-SEQ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(in crate::components::builtins::cache) struct EntryId {
    pub ms: u64,
    pub seq: u64,
}

impl EntryId {
    pub(in crate::components::builtins::cache) fn parse(s: &str) -> Option<EntryId> {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        Some(EntryId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// `0-0`: before every entry.
    pub(in crate::components::builtins::cache) fn is_start(&self) -> bool {
        self.ms == 0 && self.seq == 0
    }
}

impl PartialOrd for EntryId {
    fn partial_cmp(&self, other: &EntryId) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EntryId {
    fn cmp(&self, other: &EntryId) -> Ordering {
        (self.ms, self.seq).cmp(&(other.ms, other.seq))
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// The position saved for `stream`, if any.
pub(in crate::components::builtins::cache) fn load(
    root: BorrowedFd<'_>,
    stream: &str,
) -> io::Result<Option<EntryId>> {
    let Some(dir) = state_file::open_dir(root, DIR)? else {
        return Ok(None);
    };
    Ok(state_file::read(dir.as_fd(), FILE)?
        .and_then(|b| parse(&String::from_utf8_lossy(&b), stream)))
}

fn parse(text: &str, stream: &str) -> Option<EntryId> {
    let (key, id) = text.trim_end().rsplit_once(' ')?;
    (key == stream).then(|| EntryId::parse(id)).flatten()
}

/// Save `id` as the position in `stream`.
pub(in crate::components::builtins::cache) fn save(
    root: BorrowedFd<'_>,
    stream: &str,
    id: EntryId,
) -> io::Result<()> {
    let dir = state_file::make_dir(root, DIR)?;
    state_file::replace(
        dir.as_fd(),
        FILE,
        format!("{stream} {id}\n").as_bytes(),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_and_parse() {
        let a = EntryId::parse("1700000000000-0").unwrap();
        let b = EntryId::parse("1700000000000-3").unwrap();
        let c = EntryId::parse("1700000000001").unwrap();
        assert!(a < b && b < c);
        assert_eq!(b.to_string(), "1700000000000-3");
        assert!(EntryId::parse("0-0").unwrap().is_start());
        assert_eq!(EntryId::parse("x-1"), None);
    }

    #[test]
    fn saved_per_stream() {
        use super::super::super::dir::DIR_FLAGS;
        use rustix::fs::{openat, Mode};
        let tmp = tempfile::tempdir().unwrap();
        let root = openat(rustix::fs::CWD, tmp.path(), DIR_FLAGS, Mode::empty()).unwrap();
        assert_eq!(load(root.as_fd(), "s").unwrap(), None);
        let id = EntryId { ms: 5, seq: 2 };
        save(root.as_fd(), "plughost:purge", id).unwrap();
        assert_eq!(load(root.as_fd(), "plughost:purge").unwrap(), Some(id));
        assert_eq!(load(root.as_fd(), "other").unwrap(), None);
        assert_eq!(parse("garbage", "s"), None);
    }
}
