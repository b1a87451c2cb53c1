//! The idle half of the backend pool: connections waiting for their next
//! request, reused last-in first-out (the most recently used connection is the
//! one least likely to have been closed by the backend's keep-alive timeout,
//! and the oldest ones age out), each dropped once idle for `idle_timeout`,
//! and never more than `max_idle` of them. Knows nothing about HTTP: what a
//! connection is and whether it is still alive is `backend.rs`'s business.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Idle entries, oldest at the front, most recent at the back.
#[derive(Debug)]
pub(crate) struct IdleStack<T> {
    entries: VecDeque<(T, Instant)>,
    idle_timeout: Duration,
    max_idle: usize,
}

impl<T> IdleStack<T> {
    pub(crate) fn new(idle_timeout: Duration, max_idle: usize) -> IdleStack<T> {
        IdleStack {
            entries: VecDeque::new(),
            idle_timeout,
            max_idle,
        }
    }

    /// The most recently returned entry that has not been idle too long.
    /// Entries found expired on the way are moved to `expired`, for the
    /// caller to drop outside its lock.
    pub(crate) fn pop(&mut self, now: Instant, expired: &mut Vec<T>) -> Option<T> {
        self.expire(now, expired);
        self.entries.pop_back().map(|(entry, _)| entry)
    }

    /// Return an entry, idle from `now`. When the stack is full the entry is
    /// handed back (to be dropped: more idle connections than the bound are
    /// not kept).
    pub(crate) fn push(&mut self, entry: T, now: Instant) -> Result<(), T> {
        if self.entries.len() >= self.max_idle {
            return Err(entry);
        }
        self.entries.push_back((entry, now));
        Ok(())
    }

    /// Move the entries idle for `idle_timeout` or longer into `expired`.
    pub(crate) fn expire(&mut self, now: Instant, expired: &mut Vec<T>) {
        while let Some((_, since)) = self.entries.front() {
            if now.saturating_duration_since(*since) < self.idle_timeout {
                break;
            }
            if let Some((entry, _)) = self.entries.pop_front() {
                expired.push(entry);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(30);

    #[test]
    fn the_most_recently_returned_entry_is_reused_first() {
        let t0 = Instant::now();
        let mut s = IdleStack::new(IDLE, 8);
        for n in 1..=3 {
            s.push(n, t0).unwrap();
        }
        let mut gone = Vec::new();
        assert_eq!(s.pop(t0, &mut gone), Some(3));
        s.push(4, t0).unwrap();
        assert_eq!(s.pop(t0, &mut gone), Some(4));
        assert_eq!(s.pop(t0, &mut gone), Some(2));
        assert_eq!(s.pop(t0, &mut gone), Some(1));
        assert_eq!(s.pop(t0, &mut gone), None);
        assert!(gone.is_empty());
    }

    #[test]
    fn entries_idle_for_the_timeout_expire_and_are_not_reused() {
        let t0 = Instant::now();
        let mut s = IdleStack::new(IDLE, 8);
        s.push("old", t0).unwrap();
        s.push("newer", t0 + Duration::from_secs(20)).unwrap();
        let mut gone = Vec::new();
        s.expire(t0 + Duration::from_secs(29), &mut gone);
        assert!(gone.is_empty());
        assert_eq!(s.len(), 2);
        // At 30 s the old one goes, the newer one (idle 10 s) stays.
        s.expire(t0 + IDLE, &mut gone);
        assert_eq!(gone, ["old"]);
        assert_eq!(s.len(), 1);
        // Past 50 s nothing is handed out: the newer one expired too.
        assert_eq!(s.pop(t0 + Duration::from_secs(50), &mut gone), None);
        assert_eq!(gone, ["old", "newer"]);
    }

    #[test]
    fn no_more_than_max_idle_entries_are_kept() {
        let t0 = Instant::now();
        let mut s = IdleStack::new(IDLE, 2);
        assert_eq!(s.push(1, t0), Ok(()));
        assert_eq!(s.push(2, t0), Ok(()));
        assert_eq!(s.push(3, t0), Err(3));
        assert_eq!(s.len(), 2);
        let mut gone = Vec::new();
        s.pop(t0, &mut gone);
        assert_eq!(s.push(3, t0), Ok(()));
    }
}
