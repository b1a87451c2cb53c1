//! Purges against stores in flight, in this process.
//!
//! A miss that started before a purge may finish after it: its answer was
//! made from the old state, and renaming it into place would undo the purge.
//! So every store takes a [`Ticket`] when it asks the app, every purge records
//! what it removes ([`Scope`]) *before* it deletes anything, and a store
//! renames its file into place only through [`Guard::commit`], which checks,
//! under the same lock that records purges, that nothing covering its page was
//! purged since its ticket. Either the purge is recorded first (the commit
//! sees it and drops the file), or the rename happens first (and the purge,
//! which deletes after recording, removes the new file). No interleaving
//! leaves a pre-purge answer in place.
//!
//! History is bounded: a ticket older than what is kept counts as purged (the
//! store is dropped, the next request stores it again).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

/// Purges remembered for stores in flight.
const KEPT: usize = 4096;

/// What one purge covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::components::builtins::cache) enum Scope {
    /// One page (its relative path under cache_dir).
    Page(String),
    /// Every page at or below a relative path (`""`: the whole tree).
    Tree(String),
    /// Every page carrying a tag.
    Tag(String),
}

impl Scope {
    fn covers(&self, rel: &str, tags: &[String]) -> bool {
        match self {
            Scope::Page(p) => p == rel,
            Scope::Tree(t) => {
                t.is_empty()
                    || rel
                        .strip_prefix(t.as_str())
                        .is_some_and(|r| r.is_empty() || r.starts_with('/'))
            }
            Scope::Tag(t) => tags.iter().any(|x| x == t),
        }
    }
}

/// When a store asked the app.
#[derive(Debug, Clone, Copy)]
pub(in crate::components::builtins::cache) struct Ticket(u64);

#[derive(Default)]
struct Log {
    /// Purges recorded so far.
    epoch: u64,
    /// The latest purges: (epoch after it, scope).
    recent: VecDeque<(u64, Scope)>,
    /// Purges up to this epoch are forgotten.
    floor: u64,
}

/// One cache's record of purges.
#[derive(Default)]
pub(in crate::components::builtins::cache) struct Guard {
    log: Mutex<Log>,
}

impl Guard {
    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A store is about to ask the app.
    pub(in crate::components::builtins::cache) fn ticket(&self) -> Ticket {
        Ticket(self.lock().epoch)
    }

    /// Record purges (call before deleting anything).
    pub(in crate::components::builtins::cache) fn purging(
        &self,
        scopes: impl IntoIterator<Item = Scope>,
    ) {
        let mut log = self.lock();
        for scope in scopes {
            log.epoch += 1;
            let at = log.epoch;
            log.recent.push_back((at, scope));
            if log.recent.len() > KEPT {
                if let Some((gone, _)) = log.recent.pop_front() {
                    log.floor = gone;
                }
            }
        }
    }

    /// Run `rename` (the store's commit) unless a purge since `ticket` covers
    /// the page `rel` (with `tags`); `None` when it was dropped for that.
    pub(in crate::components::builtins::cache) fn commit<T>(
        &self,
        ticket: Ticket,
        rel: &str,
        tags: &[String],
        rename: impl FnOnce() -> T,
    ) -> Option<T> {
        let log = self.lock();
        let purged = ticket.0 < log.floor
            || log
                .recent
                .iter()
                .rev()
                .take_while(|(at, _)| *at > ticket.0)
                .any(|(_, s)| s.covers(rel, tags));
        if purged {
            return None;
        }
        let done = rename();
        drop(log);
        Some(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purge_after_the_ticket_drops_the_store() {
        let g = Guard::default();
        let t = g.ticket();
        g.purging([Scope::Page("a/b".into())]);
        assert_eq!(g.commit(t, "a/b", &[], || 1), None);
        assert_eq!(g.commit(t, "a/c", &[], || 2), Some(2));
        // A store that started after the purge commits.
        assert_eq!(g.commit(g.ticket(), "a/b", &[], || 3), Some(3));
    }

    #[test]
    fn trees_and_tags() {
        let g = Guard::default();
        let t = g.ticket();
        g.purging([Scope::Tree("blog".into()), Scope::Tag("t42".into())]);
        assert!(g.commit(t, "blog", &[], || ()).is_none());
        assert!(g.commit(t, "blog/x/y", &[], || ()).is_none());
        assert!(g.commit(t, "blogger", &[], || ()).is_some());
        assert!(g.commit(t, "news/1", &["t42".into()], || ()).is_none());
        assert!(g.commit(t, "news/2", &["t7".into()], || ()).is_some());
        g.purging([Scope::Tree(String::new())]);
        assert!(g.commit(t, "anything", &[], || ()).is_none());
    }

    #[test]
    fn forgotten_history_counts_as_purged() {
        let g = Guard::default();
        let t = g.ticket();
        g.purging((0..KEPT + 1).map(|i| Scope::Page(format!("p{i}"))));
        assert!(g.commit(t, "elsewhere", &[], || ()).is_none());
        assert!(g.commit(g.ticket(), "elsewhere", &[], || ()).is_some());
    }
}
