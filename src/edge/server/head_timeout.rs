//! `header_timeout`, kept per connection instead of per request: a connection
//! that has no request in progress and has written nothing for the timeout
//! (a client dawdling over a head, slowloris, or an idle keep-alive) is
//! closed.
//!
//! hyper's own `header_read_timeout` arms a fresh timer for every request
//! head (an allocation and a registration with the timer wheel, then a
//! deregistration) and re-polls the read side after every response: on a
//! keep-alive connection of cache hits that cost more than answering. Here a
//! request costs one relaxed counter increment; a watchdog task per
//! connection (never polled with the connection's own task) looks at the
//! counter every quarter of the timeout and aborts the connection's task
//! after four quiet looks in a row, that is after between 1 and 1.25 times
//! the timeout without progress.
//!
//! Progress is a request starting or ending and bytes written to the client;
//! bytes read are not (a slowloris client sends some). A request in progress
//! (its body being read, the pipeline working, a streamed response body still
//! open) holds [`Busy`], so a slow app or a long download is never cut by it:
//! `body_timeout`, `request_timeout` and `send_timeout` govern those.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// One connection's progress, shared by its stream, its requests and its watchdog.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    progress: AtomicU64,
    busy: AtomicU32,
    /// The connection ended by itself: the watchdog may go.
    ended: Notify,
}

impl Activity {
    /// Something happened on the connection (a request came, bytes went out).
    pub(crate) fn tick(&self) {
        self.progress.fetch_add(1, Relaxed);
    }

    /// A request is in progress until the guard is dropped.
    pub(crate) fn busy(self: &Arc<Self>) -> Busy {
        self.tick();
        self.busy.fetch_add(1, Relaxed);
        Busy(self.clone())
    }

    /// The connection is over: its watchdog stops.
    pub(crate) fn end(&self) {
        self.ended.notify_one();
    }

    /// The progress count and whether a request is in progress.
    fn state(&self) -> (u64, bool) {
        (self.progress.load(Relaxed), self.busy.load(Relaxed) > 0)
    }
}

/// A request in progress (see [`Activity::busy`]).
#[derive(Debug)]
pub(crate) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Relaxed);
        self.0.tick();
    }
}

/// Looks taken per timeout: the connection closes after this many quiet ones.
const LOOKS: u32 = 4;

/// Abort `connection` (the task serving it, which closes the socket) once
/// `activity` has been quiet for `timeout`: no progress and no request in
/// progress at [`LOOKS`] looks in a row a quarter of `timeout` apart. Returns
/// whether it did; returns `false` as soon as the connection ends by itself.
pub(crate) async fn watchdog(
    connection: AbortHandle,
    activity: Arc<Activity>,
    timeout: Duration,
) -> bool {
    let step = (timeout / LOOKS).max(Duration::from_millis(1));
    let (mut seen, _) = activity.state();
    let mut quiet = 0;
    loop {
        tokio::select! {
            biased;
            () = activity.ended.notified() => return false,
            () = tokio::time::sleep(step) => {}
        }
        let (now, busy) = activity.state();
        if now != seen || busy {
            seen = now;
            quiet = 0;
            continue;
        }
        quiet += 1;
        if quiet == LOOKS {
            connection.abort();
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// A connection task that never ends by itself, and its activity.
    fn connection() -> (tokio::task::JoinHandle<()>, Arc<Activity>) {
        (
            tokio::spawn(std::future::pending::<()>()),
            Arc::new(Activity::default()),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_connection_is_closed_within_a_quarter_past_the_timeout() {
        let (task, activity) = connection();
        let t = Instant::now();
        assert!(watchdog(task.abort_handle(), activity, Duration::from_secs(8)).await);
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_secs(8) && waited <= Duration::from_secs(10),
            "{waited:?}"
        );
        assert!(task.await.unwrap_err().is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn progress_and_requests_in_progress_keep_it_open() {
        let (task, activity) = connection();
        let dog = tokio::spawn(watchdog(
            task.abort_handle(),
            activity.clone(),
            Duration::from_secs(4),
        ));
        let t = Instant::now();
        // Progress every 3 s for 30 s, then a request held for 20 s.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            activity.tick();
        }
        let busy = activity.busy();
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(!task.is_finished(), "cut while busy");
        drop(busy);
        // Then quiet: closed after the timeout.
        assert!(dog.await.unwrap());
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_secs(54) && waited <= Duration::from_secs(55),
            "{waited:?}"
        );
        assert!(task.await.unwrap_err().is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_goes_when_the_connection_ends() {
        let (task, activity) = connection();
        let dog = tokio::spawn(watchdog(
            task.abort_handle(),
            activity.clone(),
            Duration::from_secs(4),
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        activity.end();
        assert!(!dog.await.unwrap());
        assert!(!task.is_finished());
        task.abort();
    }
}
