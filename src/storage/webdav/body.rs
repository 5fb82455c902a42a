//! Upload bodies: the caller's stream with its announced length enforced, and the ability
//! to send its start again when a server closed the connection as the request went out.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::storage::{ByteStream, StorageError};

/// How much of a body is kept for a second try. A closed keep-alive connection fails at
/// once, while the first chunks are in flight; past this much the try is not repeated and
/// the kept chunks are freed, so each upload holds at most this much, and only at its start
/// (32 concurrent uploads: 8 MiB).
const REPLAY_LIMIT: usize = 256 * 1024;

/// The caller's body with its announced length enforced; its first failure is recorded.
pub(super) struct Checked {
    inner: ByteStream,
    sent: u64,
    expected: Option<u64>,
    failure: Arc<Mutex<Option<StorageError>>>,
    done: bool,
}

impl Checked {
    fn fail(&mut self, error: StorageError) -> Poll<Option<Result<Bytes, StorageError>>> {
        self.done = true;
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(error.clone());
        }
        Poll::Ready(Some(Err(error)))
    }
}

impl Stream for Checked {
    type Item = Result<Bytes, StorageError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                self.sent += chunk.len() as u64;
                match self.expected {
                    Some(expected) if self.sent > expected => self.fail(StorageError::Interrupted(
                        format!("the upload sent more than the {expected} bytes it announced"),
                    )),
                    _ => Poll::Ready(Some(Ok(chunk))),
                }
            }
            Poll::Ready(Some(Err(error))) => {
                let error = match error {
                    StorageError::Interrupted(_) | StorageError::TooLarge(_) => error,
                    other => StorageError::Interrupted(other.to_string()),
                };
                self.fail(error)
            }
            Poll::Ready(None) => match self.expected {
                Some(expected) if self.sent < expected => {
                    let sent = self.sent;
                    self.fail(StorageError::Interrupted(format!(
                        "the upload ended after {sent} of {expected} bytes"
                    )))
                }
                _ => {
                    self.done = true;
                    Poll::Ready(None)
                }
            },
        }
    }
}

struct State {
    inner: Checked,
    /// The chunks sent so far, while they fit in [`REPLAY_LIMIT`].
    kept: Vec<Bytes>,
    kept_len: usize,
    /// More than the limit went out: no replay.
    overflow: bool,
}

/// A body that can be started again from the beginning while little of it was sent.
pub(super) struct Rewindable {
    state: Arc<Mutex<State>>,
}

impl Rewindable {
    pub fn new(
        body: ByteStream,
        expected: Option<u64>,
        failure: Arc<Mutex<Option<StorageError>>>,
    ) -> Self {
        let inner = Checked {
            inner: body,
            sent: 0,
            expected,
            failure,
            done: false,
        };
        Self {
            state: Arc::new(Mutex::new(State {
                inner,
                kept: Vec::new(),
                kept_len: 0,
                overflow: false,
            })),
        }
    }

    /// The body from its start: kept chunks first, then the rest of the caller's stream.
    pub fn replay(&self) -> Replay {
        Replay {
            state: Arc::clone(&self.state),
            position: 0,
        }
    }

    pub fn can_replay(&self) -> bool {
        self.state.lock().map(|s| !s.overflow).unwrap_or(false)
    }
}

/// One pass over a [`Rewindable`] body. Only one pass is polled at a time: a new one is
/// made after the request that owned the previous one failed.
pub(super) struct Replay {
    state: Arc<Mutex<State>>,
    position: usize,
}

impl Stream for Replay {
    type Item = Result<Bytes, StorageError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let state = Arc::clone(&self.state);
        let Ok(mut state) = state.lock() else {
            return Poll::Ready(Some(Err(StorageError::Backend(
                "upload body lock poisoned".into(),
            ))));
        };
        if let Some(chunk) = state.kept.get(self.position).cloned() {
            self.position += 1;
            return Poll::Ready(Some(Ok(chunk)));
        }
        let polled = state.inner.poll_next_unpin(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled
            && !state.overflow
        {
            if state.kept_len + chunk.len() <= REPLAY_LIMIT {
                state.kept_len += chunk.len();
                state.kept.push(chunk.clone());
            } else {
                state.overflow = true;
                state.kept = Vec::new();
            }
            self.position = state.kept.len();
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(chunks: &[&'static [u8]]) -> Rewindable {
        let items: Vec<Result<Bytes, StorageError>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        Rewindable::new(
            Box::pin(futures_util::stream::iter(items)),
            None,
            Arc::new(Mutex::new(None)),
        )
    }

    async fn take(pass: &mut Replay, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..n {
            match pass.next().await {
                Some(chunk) => out.extend_from_slice(&chunk.unwrap()),
                None => break,
            }
        }
        out
    }

    #[tokio::test]
    async fn a_second_pass_starts_from_the_beginning() {
        let source = body(&[b"ab", b"cd", b"ef"]);
        let mut first = source.replay();
        assert_eq!(take(&mut first, 2).await, b"abcd");
        drop(first);
        assert!(source.can_replay());
        let mut second = source.replay();
        assert_eq!(take(&mut second, 10).await, b"abcdef");
    }

    #[tokio::test]
    async fn past_the_limit_nothing_is_kept() {
        let big: &'static [u8] = Box::leak(vec![1u8; REPLAY_LIMIT].into_boxed_slice());
        let source = body(&[b"x", big]);
        let mut first = source.replay();
        assert_eq!(take(&mut first, 2).await.len(), REPLAY_LIMIT + 1);
        assert!(!source.can_replay());
    }

    #[tokio::test]
    async fn announced_lengths_are_enforced() {
        let failure = Arc::new(Mutex::new(None));
        let items: Vec<Result<Bytes, StorageError>> = vec![Ok(Bytes::from_static(b"abc"))];
        let source = Rewindable::new(
            Box::pin(futures_util::stream::iter(items)),
            Some(5),
            Arc::clone(&failure),
        );
        let mut pass = source.replay();
        assert!(pass.next().await.unwrap().is_ok());
        assert!(matches!(
            pass.next().await,
            Some(Err(StorageError::Interrupted(_)))
        ));
        assert!(matches!(
            failure.lock().unwrap().take(),
            Some(StorageError::Interrupted(_))
        ));
    }
}
