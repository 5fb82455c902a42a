//! The chunks of a Nextcloud chunked upload (see `chunked`): their size (the `chunk_size`
//! setting, within Nextcloud's limits), and cutting the upload's stream into them without
//! copying or collecting it. Each chunk is a stream over the shared source that ends after
//! its share of bytes; the rest of a piece that straddles a chunk boundary waits for the next
//! chunk. So a chunk of any size goes out as it arrives, and an upload holds no more than the
//! caller's current piece (plus what `body` keeps for a second try).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};

use crate::storage::{ByteStream, StorageError, Upload};

pub(super) const MIB: u64 = 1024 * 1024;
/// Nextcloud's limits ("5MB to 5GB" per chunk but the last, at most 10,000 chunks), read in
/// binary units: S3-backed Nextclouds pass chunks on as parts, which need 5 MiB.
const MIN_CHUNK: u64 = 5 * MIB;
const MAX_CHUNK: u64 = 5 * 1024 * MIB;
pub(super) const MAX_CHUNKS: u64 = 10_000;
/// A 1 GiB file in 100 requests, and little to send again when one fails; what Nextcloud's
/// own clients use.
const DEFAULT_CHUNK: u64 = 10 * MIB;

/// The `chunk_size` setting: bytes as a number, or text with a binary unit (`"10 MiB"`).
pub(super) fn parse_chunk_size(value: Option<&serde_json::Value>) -> Result<u64, StorageError> {
    let bad = |why: String| StorageError::Backend(format!("webdav settings: `chunk_size` {why}"));
    let bytes = match value {
        None => return Ok(DEFAULT_CHUNK),
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| bad(format!("must be a whole number of bytes, not {n}")))?,
        Some(serde_json::Value::String(text)) => {
            let split = text
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(text.len());
            let (digits, unit) = text.split_at(split);
            // Decimal units are refused, not guessed: 5 MB is below the 5 MiB minimum.
            let scale = match unit.trim() {
                "" | "B" => 1,
                "KiB" => 1024,
                "MiB" => MIB,
                "GiB" => 1024 * MIB,
                other => return Err(bad(format!("has the unit `{other}`; use MiB or GiB"))),
            };
            digits
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(scale))
                .ok_or_else(|| bad(format!("must be a size such as \"10 MiB\", not {text:?}")))?
        }
        Some(other) => {
            return Err(bad(format!(
                "must be a size such as \"10 MiB\", not {other}"
            )));
        }
    };
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&bytes) {
        return Err(bad(format!(
            "must be from 5 MiB to 5 GiB (Nextcloud's limits), not {bytes} bytes"
        )));
    }
    Ok(bytes)
}

/// The chunk size for a body: the configured one, or larger (in whole MiB) when 10,000
/// chunks of it would not hold the announced length.
pub(super) fn chunk_size_for(length: Option<u64>, configured: u64) -> Result<u64, StorageError> {
    let needed = length.unwrap_or(0).div_ceil(MAX_CHUNKS).div_ceil(MIB) * MIB;
    let size = needed.max(configured);
    if size > MAX_CHUNK {
        return Err(StorageError::TooLarge(
            "Nextcloud takes at most 10,000 chunks of 5 GiB".into(),
        ));
    }
    Ok(size)
}

/// How much of a body of unknown length is read before choosing how to send it: a body
/// that ends within it goes as one ordinary PUT of known length. The same bound as `body`'s
/// replay buffer, which holds the same pieces.
const LOOKAHEAD: usize = 256 * 1024;

/// For a body of unknown length, reads up to [`LOOKAHEAD`] bytes. A body that ends within
/// them comes back with its length known, so a small file (and an empty one, which no chunk
/// could carry) needs no chunked upload; a longer one keeps its unknown length, with what
/// was read put back in front.
pub(super) async fn look_ahead(upload: Upload) -> Result<Upload, StorageError> {
    if upload.length.is_some() {
        return Ok(upload);
    }
    let mut body = upload.body;
    let mut kept = Vec::new();
    let mut len = 0;
    while len <= LOOKAHEAD {
        match body.next().await {
            Some(Ok(piece)) => {
                len += piece.len();
                kept.push(Ok(piece));
            }
            Some(Err(error)) => return Err(interrupted(error)),
            None => {
                return Ok(Upload {
                    body: Box::pin(stream::iter(kept)),
                    length: Some(len as u64),
                });
            }
        }
    }
    Ok(Upload {
        body: Box::pin(stream::iter(kept).chain(body)),
        length: None,
    })
}

/// A failure of the caller's body, as `body::Checked` reports it.
fn interrupted(error: StorageError) -> StorageError {
    match error {
        StorageError::Interrupted(_) | StorageError::TooLarge(_) => error,
        other => StorageError::Interrupted(other.to_string()),
    }
}

struct State {
    body: ByteStream,
    /// The unsent rest of the last piece read.
    pending: Bytes,
    /// Bytes read from the body, and handed on to chunks.
    read: u64,
    given: u64,
    expected: Option<u64>,
    ended: bool,
    /// The body's failure, given again to whoever asks next.
    failure: Option<StorageError>,
}

impl State {
    /// Makes `pending` non-empty: true when it is, false at the body's end.
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, StorageError>> {
        loop {
            if let Some(failure) = &self.failure {
                return Poll::Ready(Err(failure.clone()));
            }
            if !self.pending.is_empty() {
                return Poll::Ready(Ok(true));
            }
            if self.ended {
                return Poll::Ready(Ok(false));
            }
            let failure = match self.body.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(piece))) => {
                    self.read += piece.len() as u64;
                    self.pending = piece;
                    match self.expected {
                        Some(n) if self.read > n => StorageError::Interrupted(format!(
                            "the upload sent more than the {n} bytes it announced"
                        )),
                        _ => continue,
                    }
                }
                Poll::Ready(Some(Err(error))) => interrupted(error),
                Poll::Ready(None) => {
                    self.ended = true;
                    match self.expected {
                        Some(n) if self.read < n => StorageError::Interrupted(format!(
                            "the upload ended after {} of {n} bytes",
                            self.read
                        )),
                        _ => continue,
                    }
                }
            };
            self.failure = Some(failure);
        }
    }
}

/// The caller's body, checked against its announced length, to be cut into chunks.
pub(super) struct Source(Arc<Mutex<State>>);

impl Source {
    pub fn new(upload: Upload) -> Self {
        Self(Arc::new(Mutex::new(State {
            body: upload.body,
            pending: Bytes::new(),
            read: 0,
            given: 0,
            expected: upload.length,
            ended: false,
            failure: None,
        })))
    }

    /// Whether another byte is coming: waits for the body's next piece or its end, so no
    /// chunk is started for nothing (a body of exactly N chunks makes N, not N + 1).
    pub async fn has_more(&self) -> Result<bool, StorageError> {
        futures_util::future::poll_fn(|cx| match self.0.lock() {
            Ok(mut state) => state.fill(cx),
            Err(_) => Poll::Ready(Err(poisoned())),
        })
        .await
    }

    /// Bytes handed on to chunks so far.
    pub fn given(&self) -> u64 {
        self.0.lock().map(|s| s.given).unwrap_or(0)
    }

    /// The next chunk: at most `limit` bytes, fewer when the body ends first.
    pub fn chunk(&self, limit: u64) -> ByteStream {
        Box::pin(Chunk {
            state: Arc::clone(&self.0),
            left: limit,
        })
    }
}

fn poisoned() -> StorageError {
    StorageError::Backend("upload body lock poisoned".into())
}

struct Chunk {
    state: Arc<Mutex<State>>,
    left: u64,
}

impl Stream for Chunk {
    type Item = Result<Bytes, StorageError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let state = Arc::clone(&self.state);
        let Ok(mut state) = state.lock() else {
            return Poll::Ready(Some(Err(poisoned())));
        };
        match state.fill(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error))),
            Poll::Ready(Ok(false)) => Poll::Ready(None),
            Poll::Ready(Ok(true)) => {
                let take = usize::try_from(self.left)
                    .unwrap_or(usize::MAX)
                    .min(state.pending.len());
                let piece = state.pending.split_to(take);
                state.given += take as u64;
                self.left -= take as u64;
                Poll::Ready(Some(Ok(piece)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(pieces: &[&'static [u8]], length: Option<u64>) -> Upload {
        let items: Vec<Result<Bytes, StorageError>> =
            pieces.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Upload {
            body: Box::pin(stream::iter(items)),
            length,
        }
    }

    async fn collect(mut body: ByteStream) -> Result<Vec<u8>, StorageError> {
        let mut out = Vec::new();
        while let Some(piece) = body.next().await {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }

    async fn chunks(source: &Source, limit: u64) -> Result<Vec<Vec<u8>>, StorageError> {
        let mut out = Vec::new();
        while source.has_more().await? {
            out.push(collect(source.chunk(limit)).await?);
        }
        Ok(out)
    }

    #[test]
    fn chunk_sizes_are_parsed_and_bounded() {
        let parse = |v: serde_json::Value| parse_chunk_size(Some(&v));
        assert_eq!(parse_chunk_size(None).unwrap(), DEFAULT_CHUNK);
        assert_eq!(parse(serde_json::json!(5_242_880)).unwrap(), MIN_CHUNK);
        assert_eq!(parse(serde_json::json!("10 MiB")).unwrap(), 10 * MIB);
        assert_eq!(parse(serde_json::json!("5GiB")).unwrap(), MAX_CHUNK);
        assert_eq!(parse(serde_json::json!("6291456")).unwrap(), 6 * MIB);
        for bad in [
            serde_json::json!("4 MiB"),
            serde_json::json!("6 GiB"),
            serde_json::json!("10 MB"),
            serde_json::json!("ten"),
            serde_json::json!(-1),
            serde_json::json!(1.5),
            serde_json::json!(true),
            serde_json::json!("99999999999999999999 GiB"),
        ] {
            let error = parse(bad.clone()).expect_err(&bad.to_string()).to_string();
            assert!(error.contains("`chunk_size`"), "{bad}: {error}");
        }
    }

    #[test]
    fn large_known_lengths_get_larger_chunks() {
        assert_eq!(chunk_size_for(None, MIN_CHUNK).unwrap(), MIN_CHUNK);
        assert_eq!(
            chunk_size_for(Some(23 * MIB), MIN_CHUNK).unwrap(),
            MIN_CHUNK
        );
        // 100 GiB in 10,000 chunks needs 10.24 MiB each: 11 MiB.
        assert_eq!(
            chunk_size_for(Some(100 * 1024 * MIB), MIN_CHUNK).unwrap(),
            11 * MIB
        );
        assert!(chunk_size_for(Some(MAX_CHUNKS * MAX_CHUNK + 1), MIN_CHUNK).is_err());
    }

    #[tokio::test]
    async fn pieces_are_cut_at_chunk_boundaries_without_an_empty_last_chunk() {
        let source = Source::new(upload(&[b"abcde", b"", b"fgh", b"ij"], None));
        let got = chunks(&source, 4).await.unwrap();
        assert_eq!(got, [b"abcd".to_vec(), b"efgh".to_vec(), b"ij".to_vec()]);
        let exact = Source::new(upload(&[b"abcdefgh"], Some(8)));
        assert_eq!(chunks(&exact, 4).await.unwrap().len(), 2);
        assert_eq!(exact.given(), 8);
    }

    #[tokio::test]
    async fn announced_lengths_are_enforced_across_chunks() {
        let short = Source::new(upload(&[b"abcdef"], Some(9)));
        let error = chunks(&short, 4).await.unwrap_err();
        assert!(error.to_string().contains("after 6 of 9 bytes"), "{error}");
        let long = Source::new(upload(&[b"abcd", b"e"], Some(4)));
        let error = chunks(&long, 4).await.unwrap_err();
        assert!(
            error.to_string().contains("more than the 4 bytes"),
            "{error}"
        );
        // A failed body stays failed.
        assert!(long.has_more().await.is_err());
    }

    #[tokio::test]
    async fn look_ahead_measures_small_bodies_and_keeps_large_ones_whole() {
        let small = look_ahead(upload(&[b"ab", b"c"], None)).await.unwrap();
        assert_eq!(small.length, Some(3));
        assert_eq!(collect(small.body).await.unwrap(), b"abc");
        let empty = look_ahead(upload(&[], None)).await.unwrap();
        assert_eq!(empty.length, Some(0));
        let big: &'static [u8] = Box::leak(vec![7u8; LOOKAHEAD].into_boxed_slice());
        let large = look_ahead(upload(&[b"x", big, b"yz"], None)).await.unwrap();
        assert_eq!(large.length, None);
        assert_eq!(collect(large.body).await.unwrap().len(), LOOKAHEAD + 3);
        let failing: Vec<Result<Bytes, StorageError>> =
            vec![Err(StorageError::Backend("x".into()))];
        let failed = look_ahead(Upload {
            body: Box::pin(stream::iter(failing)),
            length: None,
        });
        assert!(matches!(failed.await, Err(StorageError::Interrupted(_))));
    }
}
