//! What the cache did with one request, told to in-process callers (`plughost
//! cache warm`, soft purges): a response extension, never sent to a client.
//!
//! Only a request carrying [`REPORT`] or [`REFRESH`] in its environ extras gets
//! one, so a request from the network (whose extras only filters set) pays
//! nothing for it.

use tokio::sync::watch;

/// Environ key: with any value, the cache attaches a [`Report`] to the response.
pub const REPORT: &str = "plughost.cache.report";
/// Environ key: with any value, the cache asks the app even when the page is
/// cached, stores a storable answer in its place (atomically) and removes the
/// page otherwise; the response carries a [`Report`].
pub const REFRESH: &str = "plughost.cache.refresh";

/// The cache's part in one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered from the cache.
    Hit,
    /// The app's answer is now the page.
    Stored,
    /// The app answered and nothing was stored: why (the counter's name, e.g.
    /// `no-store-status`).
    NotStored(&'static str),
    /// The cache stayed out of the request: why (e.g. `bypass-query`).
    Bypass(&'static str),
    /// Storing failed: the error.
    Failed(String),
}

/// The outcome of one request, available once the response body has been read
/// (a store finishes after its body's last byte).
#[derive(Clone, Debug)]
pub struct Report(watch::Receiver<Option<Outcome>>);

impl Report {
    /// Wait for the outcome. Read the response body first (or concurrently):
    /// a store in progress ends with the body.
    pub async fn outcome(mut self) -> Outcome {
        let decided = match self.0.wait_for(Option::is_some).await {
            Ok(o) => o.clone(),
            Err(_) => None,
        };
        decided
            .or_else(|| self.0.borrow().clone())
            .unwrap_or(Outcome::Failed("the store was abandoned".into()))
    }

    /// The outcome if it is known already.
    pub fn now(&self) -> Option<Outcome> {
        self.0.borrow().clone()
    }
}

/// The sending half, carried by the store job. The first decision stands;
/// dropped undecided, it reports the store as abandoned.
pub(super) struct Reporter(Option<watch::Sender<Option<Outcome>>>);

impl Reporter {
    pub(super) fn new() -> (Reporter, Report) {
        let (tx, rx) = watch::channel(None);
        (Reporter(Some(tx)), Report(rx))
    }

    /// No one listens.
    pub(super) fn none() -> Reporter {
        Reporter(None)
    }

    pub(super) fn decide(&self, outcome: Outcome) {
        if let Some(tx) = &self.0 {
            tx.send_if_modified(|v| {
                let first = v.is_none();
                if first {
                    *v = Some(outcome);
                }
                first
            });
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.decide(Outcome::Failed("the store was abandoned".into()));
    }
}

/// Whether `extras` ask for a report (`refresh`: for a refresh).
pub(super) fn wanted(extras: &[(String, String)]) -> Option<Wanted> {
    if extras.is_empty() {
        return None;
    }
    let mut w = None;
    for (k, _) in extras {
        if k == REFRESH {
            return Some(Wanted::Refresh);
        }
        if k == REPORT {
            w = Some(Wanted::Report);
        }
    }
    w
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wanted {
    Report,
    Refresh,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_reporter_reports_abandoned() {
        let (r, report) = Reporter::new();
        drop(r);
        assert!(matches!(report.outcome().await, Outcome::Failed(_)));
    }

    #[tokio::test]
    async fn the_first_decision_stands() {
        let (r, report) = Reporter::new();
        r.decide(Outcome::Stored);
        r.decide(Outcome::NotStored("x"));
        assert_eq!(report.outcome().await, Outcome::Stored);
    }

    #[test]
    fn only_the_keys_ask() {
        assert_eq!(wanted(&[]), None);
        let e = |k: &str| {
            vec![
                ("x".to_owned(), "1".to_owned()),
                (k.to_owned(), "1".to_owned()),
            ]
        };
        assert_eq!(wanted(&e(REPORT)), Some(Wanted::Report));
        assert_eq!(wanted(&e(REFRESH)), Some(Wanted::Refresh));
        assert_eq!(wanted(&e("plughost.other")), None);
    }
}
