//! Idle timeouts. A total timeout would cut off large transfers, so the rule is: the
//! server may not stay silent longer than the idle timeout. For uploads, "silent" means it
//! neither takes body bytes nor answers while the caller has bytes ready; time spent
//! waiting on a slow caller does not count against the server.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

use super::client::silent;
use crate::storage::StorageError;

/// When an upload last moved, shared between the body stream and [`Progress::watch`].
pub(super) struct Progress {
    start: Instant,
    /// Milliseconds after `start` of the last movement.
    last_ms: AtomicU64,
    /// True while the body waits for the caller's next chunk.
    waiting_on_caller: AtomicBool,
}

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            waiting_on_caller: AtomicBool::new(false),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Runs `future` until it completes, or fails it once the server stayed idle too long.
    pub async fn watch<F: Future>(
        &self,
        idle: Duration,
        future: F,
    ) -> Result<F::Output, StorageError> {
        let mut future = std::pin::pin!(future);
        loop {
            let deadline = if self.waiting_on_caller.load(Ordering::Relaxed) {
                // The caller is the slow side; look again later.
                Instant::now() + idle
            } else {
                self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle
            };
            tokio::select! {
                output = &mut future => return Ok(output),
                _ = tokio::time::sleep_until(deadline) => {
                    let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
                    if !self.waiting_on_caller.load(Ordering::Relaxed)
                        && Instant::now() >= last + idle
                    {
                        return Err(silent(idle));
                    }
                }
            }
        }
    }
}

/// An upload body that records its movement in a [`Progress`].
pub(super) struct Tracked<S> {
    inner: S,
    progress: Arc<Progress>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, progress: Arc<Progress>) -> Self {
        progress.touch();
        Self { inner, progress }
    }
}

impl<S> Stream for Tracked<S>
where
    S: Stream<Item = Result<Bytes, StorageError>> + Unpin,
{
    type Item = Result<Bytes, StorageError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Being polled means the server took everything so far.
        self.progress.touch();
        let polled = self.inner.poll_next_unpin(cx);
        self.progress
            .waiting_on_caller
            .store(polled.is_pending(), Ordering::Relaxed);
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time with short durations: tokio's paused clock needs a feature we do not have.
    #[tokio::test]
    async fn a_silent_server_times_out_but_a_slow_caller_does_not() {
        let idle = Duration::from_millis(200);
        let progress = Progress::new();
        progress.touch();
        let never = std::future::pending::<()>();
        let started = Instant::now();
        assert!(matches!(
            progress.watch(idle, never).await,
            Err(StorageError::Unavailable(_))
        ));
        assert!(started.elapsed() >= idle);

        // While the caller has nothing ready, the watch keeps waiting.
        let progress = Progress::new();
        progress.waiting_on_caller.store(true, Ordering::Relaxed);
        let slow = tokio::time::sleep(Duration::from_millis(700));
        assert!(progress.watch(idle, slow).await.is_ok());
    }
}
