//! Single flight: concurrent misses for one path call the app once. The first
//! becomes the leader; the others wait (bounded) for the outcome and then read
//! the stored file, or call the app themselves if nothing was stored. Waiters
//! never see the leader's response itself, so a personal response is never shared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// How a flight ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Pending,
    /// The file is in place: read it.
    Stored,
    /// Nothing was stored: call the app.
    NotStored,
}

type Map = Mutex<HashMap<Box<str>, watch::Receiver<Outcome>>>;

/// The flights in progress, by cache path.
#[derive(Default)]
pub(super) struct Flights {
    map: Arc<Map>,
}

/// The first miss for a path; dropping it without [`Leader::stored`] tells the
/// waiters nothing was stored (so an error, a disconnect or a panic releases them).
pub(super) struct Leader {
    map: Arc<Map>,
    key: Box<str>,
    tx: watch::Sender<Outcome>,
}

/// A later miss for a path with a flight in progress.
pub(super) struct Waiter {
    rx: watch::Receiver<Outcome>,
}

pub(super) enum Join {
    Leader(Leader),
    Waiter(Waiter),
}

impl Flights {
    /// Lead the flight for `key`, or wait on the one in progress.
    pub(super) fn join(&self, key: &str) -> Join {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = map.get(key) {
            return Join::Waiter(Waiter { rx: rx.clone() });
        }
        let (tx, rx) = watch::channel(Outcome::Pending);
        let key: Box<str> = key.into();
        map.insert(key.clone(), rx);
        Join::Leader(Leader {
            map: self.map.clone(),
            key,
            tx,
        })
    }

    /// Flights in progress.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Leader {
    /// The file is in place: waiters read it.
    pub(super) fn stored(self) {
        self.end(Outcome::Stored);
    }

    fn end(&self, outcome: Outcome) {
        {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            if map
                .get(&self.key)
                .is_some_and(|rx| rx.same_channel(&self.tx.subscribe()))
            {
                map.remove(&self.key);
            }
        }
        self.tx.send_if_modified(|o| {
            let pending = *o == Outcome::Pending;
            if pending {
                *o = outcome;
            }
            pending
        });
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.end(Outcome::NotStored);
    }
}

impl Waiter {
    /// The flight's outcome, or `NotStored` after `timeout`.
    pub(super) async fn wait(mut self, timeout: Duration) -> Outcome {
        match tokio::time::timeout(timeout, self.rx.wait_for(|o| *o != Outcome::Pending)).await {
            Ok(Ok(o)) => *o,
            _ => Outcome::NotStored,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_leader_and_waiters_see_its_outcome() {
        let f = Flights::default();
        let Join::Leader(leader) = f.join("a") else {
            panic!("first is the leader")
        };
        let Join::Waiter(w1) = f.join("a") else {
            panic!("second waits")
        };
        assert!(matches!(f.join("b"), Join::Leader(_)));
        let waiting = tokio::spawn(w1.wait(Duration::from_secs(30)));
        leader.stored();
        assert_eq!(waiting.await.unwrap(), Outcome::Stored);
        assert_eq!(f.len(), 0);

        // A dropped leader releases its waiters with NotStored.
        let Join::Leader(leader) = f.join("a") else {
            panic!()
        };
        let Join::Waiter(w) = f.join("a") else {
            panic!()
        };
        drop(leader);
        assert_eq!(w.wait(Duration::from_secs(30)).await, Outcome::NotStored);

        // A waiter gives up after its timeout.
        let Join::Leader(_leader) = f.join("c") else {
            panic!()
        };
        let Join::Waiter(w) = f.join("c") else {
            panic!()
        };
        assert_eq!(w.wait(Duration::from_millis(10)).await, Outcome::NotStored);
    }
}
