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

/// The server is shutting down (or handing its sockets to a new process):
/// every response then says `Connection: close`, and a connection with no
/// request in progress closes after [`DRAIN_QUIET`] without progress.
///
/// Closing an idle keep-alive connection at once races with a request the
/// client is sending on it right then, which would fail ("connection closed
/// before a response"); a client that keeps sending instead gets its answer,
/// told to reconnect, and reaches the new process.
#[derive(Debug, Default)]
pub(crate) struct Draining {
    on: std::sync::atomic::AtomicBool,
    started: Notify,
}

impl Draining {
    pub(crate) fn start(&self) {
        self.on.store(true, Relaxed);
        self.started.notify_waiters();
    }

    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Relaxed)
    }
}

/// How long a connection with nothing in progress may stay quiet once the
/// server drains: two looks this far apart.
const DRAIN_QUIET: Duration = Duration::from_millis(50);

/// Abort `connection` (the task serving it, which closes the socket) once
/// `activity` has been quiet for `timeout`: no progress and no request in
/// progress at [`LOOKS`] looks in a row a quarter of `timeout` apart. Returns
/// whether it did; returns `false` as soon as the connection ends by itself.
/// Once `draining` starts, the same with two looks [`DRAIN_QUIET`] apart.
pub(crate) async fn watchdog(
    connection: AbortHandle,
    activity: Arc<Activity>,
    timeout: Duration,
    draining: Arc<Draining>,
) -> bool {
    let mut step = (timeout / LOOKS).max(Duration::from_millis(1));
    let mut looks = LOOKS;
    let (mut seen, _) = activity.state();
    let mut quiet = 0;
    loop {
        let drain_starts = draining.started.notified();
        if draining.is_on() && looks != 2 {
            (step, looks, quiet) = (DRAIN_QUIET, 2, 0);
            seen = activity.state().0;
        }
        tokio::select! {
            biased;
            () = activity.ended.notified() => return false,
            () = drain_starts, if looks != 2 => continue,
            () = tokio::time::sleep(step) => {}
        }
        let (now, busy) = activity.state();
        if now != seen || busy {
            seen = now;
            quiet = 0;
            continue;
        }
        quiet += 1;
        if quiet == looks {
            connection.abort();
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// The watchdog of `task`, running.
    fn dog(
        task: &tokio::task::JoinHandle<()>,
        activity: &Arc<Activity>,
        timeout: Duration,
        draining: &Arc<Draining>,
    ) -> tokio::task::JoinHandle<bool> {
        tokio::spawn(watchdog(
            task.abort_handle(),
            activity.clone(),
            timeout,
            draining.clone(),
        ))
    }

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
        assert!(
            watchdog(
                task.abort_handle(),
                activity,
                Duration::from_secs(8),
                Arc::default()
            )
            .await
        );
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
        let dog = dog(&task, &activity, Duration::from_secs(4), &Arc::default());
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
        let dog = dog(&task, &activity, Duration::from_secs(4), &Arc::default());
        tokio::time::sleep(Duration::from_secs(1)).await;
        activity.end();
        assert!(!dog.await.unwrap());
        assert!(!task.is_finished());
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn draining_closes_a_quiet_connection_soon_and_a_busy_one_after_its_request() {
        let draining = Arc::new(Draining::default());
        let (idle, idle_activity) = connection();
        let (busy_task, busy_activity) = connection();
        let timeout = Duration::from_secs(30);
        let idle_dog = dog(&idle, &idle_activity, timeout, &draining);
        let busy_dog = dog(&busy_task, &busy_activity, timeout, &draining);
        let request = busy_activity.busy();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!idle.is_finished() && !busy_task.is_finished());
        let t = Instant::now();
        draining.start();
        assert!(idle_dog.await.unwrap());
        assert!(
            t.elapsed() <= Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
        // A request in progress holds its connection however long it takes.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!busy_task.is_finished());
        drop(request);
        assert!(busy_dog.await.unwrap());
        assert!(idle.await.unwrap_err().is_cancelled());
    }
}
