//! Uploads. Up to 4 MiB a file goes in one `PUT …:/content` once the whole body is in hand,
//! so a body that breaks off never reaches SharePoint. Larger files go through an upload
//! session ("driveItem: createUploadSession"): fragments of [`FRAGMENT`] bytes, a multiple of
//! 320 KiB as Graph requires, each held in memory until Graph acknowledges it, so memory per
//! upload stays at about one fragment whatever the file size. A fragment that fails is
//! resumed from the session's `nextExpectedRanges`. SharePoint commits the file only when the
//! last byte arrives; a body that breaks off or a session that cannot go on is cancelled
//! (`DELETE uploadUrl`), which leaves nothing under the name and an existing file as it was.
//!
//! Graph needs the session's total size in every fragment's `Content-Range` (a `*` total is
//! refused), so a body of unknown length can only go by session once it has ended: such
//! bodies are held in memory up to the connection's `unknown_length_buffer_mib` (4 MiB by
//! default) and refused as `too_large` beyond it. Raw `PUT` uploads with `Content-Length`
//! have no such limit.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE};
use serde::Deserialize;
use serde_json::json;

use super::SharePoint;
use super::graph::{Body, DriveItem, MAX_RETRY_WAIT, read_json, retry_after};
use crate::storage::{ByteStream, StorageError, StoragePath, Upload, WriteMode, Written};

/// Graph's simple-upload limit.
pub(super) const SIMPLE_LIMIT: u64 = 4 * 1024 * 1024;
/// Fragments other than the last must be multiples of this.
pub(super) const UNIT: u64 = 320 * 1024;
/// 10 MiB: a 1 GiB file in about a hundred requests, little to send again after a failure.
pub(super) const FRAGMENT: u64 = 32 * UNIT;
// Graph's rules, checked when compiling: a multiple of 320 KiB, at most 60 MiB, and above
// the simple-upload limit (smaller files never reach a session).
const _: () =
    assert!(FRAGMENT.is_multiple_of(UNIT) && FRAGMENT <= 60 << 20 && FRAGMENT > SIMPLE_LIMIT);

/// The size of the fragment that starts at `acked` of `total` bytes.
fn fragment_len(acked: u64, total: u64) -> u64 {
    FRAGMENT.min(total - acked)
}

/// How often one fragment is tried in all before the upload is given up.
const FRAGMENT_ATTEMPTS: u32 = 5;

/// Reads the caller's body into a buffer, a piece at a time.
struct Source {
    body: ByteStream,
    ended: bool,
}

impl Source {
    /// Appends to `buffer` until it holds `want` bytes or the body ends.
    async fn fill(&mut self, buffer: &mut BytesMut, want: u64) -> Result<(), StorageError> {
        while !self.ended && (buffer.len() as u64) < want {
            match self.body.next().await {
                Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(e),
                None => self.ended = true,
            }
        }
        Ok(())
    }
}

pub(super) async fn write(
    sp: &SharePoint,
    path: &StoragePath,
    upload: Upload,
    mode: WriteMode,
) -> Result<Written, StorageError> {
    let mut source = Source {
        body: upload.body,
        ended: false,
    };
    let mut buffer = BytesMut::new();
    let total = match upload.length {
        Some(length) if length > SIMPLE_LIMIT => length,
        known => {
            // One byte more than allowed shows a body longer than announced or the limit.
            let limit = known.unwrap_or(sp.unknown_length_buffer);
            source.fill(&mut buffer, limit + 1).await?;
            let got = buffer.len() as u64;
            match known {
                Some(length) if got != length => return Err(mismatch(length, got)),
                None if got > limit => {
                    return Err(StorageError::TooLarge(format!(
                        "SharePoint needs the size of a file over {} MiB before it is sent; \
                         upload it with Content-Length",
                        limit >> 20
                    )));
                }
                _ => {}
            }
            if got <= SIMPLE_LIMIT {
                return simple(sp, path, buffer.freeze(), mode).await;
            }
            got
        }
    };
    let session = Session::create(sp, path, mode).await?;
    match session.send_all(sp, &mut source, buffer, total).await {
        Ok(written) => Ok(written),
        Err(e) => {
            session.cancel(sp).await;
            Err(e)
        }
    }
}

fn mismatch(announced: u64, got: u64) -> StorageError {
    StorageError::Interrupted(format!(
        "the body had {}{got} bytes, {announced} were announced",
        if got > announced { "more than " } else { "" }
    ))
}

fn conflict_behavior(mode: WriteMode) -> &'static str {
    match mode {
        WriteMode::CreateOnly => "fail",
        WriteMode::CreateOrReplace => "replace",
    }
}

async fn simple(
    sp: &SharePoint,
    path: &StoragePath,
    content: Bytes,
    mode: WriteMode,
) -> Result<Written, StorageError> {
    let mut url = sp
        .graph
        .url(&format!("{}/content", sp.address(path).await?))?;
    url.query_pairs_mut()
        .append_pair("@microsoft.graph.conflictBehavior", conflict_behavior(mode));
    // Replacing is idempotent; a create-only PUT repeated after a lost answer would find its
    // own file and fail, so it goes once.
    let repeatable = mode == WriteMode::CreateOrReplace;
    let response = sp
        .graph
        .call(Method::PUT, url, Body::Bytes(content), repeatable)
        .await;
    let response = match response {
        Ok(response) => response,
        Err(e) => return Err(explain(sp, path, e, mode).await),
    };
    let created = response.status().as_u16() == 201;
    let item: DriveItem = read_json(response).await?;
    Ok(Written {
        item: item.into_item(path.to_string()),
        created,
    })
}

/// Graph refuses a file upload onto a folder with a bare 400: look, and say so.
async fn explain(
    sp: &SharePoint,
    path: &StoragePath,
    error: StorageError,
    mode: WriteMode,
) -> StorageError {
    if !matches!(error, StorageError::Backend(_)) {
        return error;
    }
    match super::ops::stat(sp, path).await {
        Ok((item, _)) if item.kind == crate::storage::ItemKind::Folder => match mode {
            WriteMode::CreateOnly => StorageError::AlreadyExists,
            WriteMode::CreateOrReplace => StorageError::Conflict(format!("`{path}` is a folder")),
        },
        _ => error,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionAnswer {
    upload_url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionStatus {
    #[serde(default)]
    next_expected_ranges: Vec<String>,
}

struct Session {
    url: url::Url,
    path: StoragePath,
}

/// What one fragment PUT came to.
enum Sent {
    /// Graph has the bytes up to here.
    Next(u64),
    Done(Written),
    /// Worth resuming after `wait`.
    Failed(StorageError, Option<Duration>),
    /// Not worth resuming: the session is gone, the name taken, no room left.
    Fatal(StorageError),
}

/// How long one fragment may take, answer included.
const FRAGMENT_TIMEOUT: Duration = Duration::from_secs(300);

impl Session {
    async fn create(
        sp: &SharePoint,
        path: &StoragePath,
        mode: WriteMode,
    ) -> Result<Session, StorageError> {
        let url = sp
            .graph
            .url(&format!("{}/createUploadSession", sp.address(path).await?))?;
        let body = json!({"item": {"@microsoft.graph.conflictBehavior": conflict_behavior(mode)}});
        // Repeated after a lost answer: a session made twice is left to expire unused.
        let response = match sp
            .graph
            .call(Method::POST, url, Body::Json(body), true)
            .await
        {
            Ok(response) => response,
            Err(e) => return Err(explain(sp, path, e, mode).await),
        };
        let answer: SessionAnswer = read_json(response).await?;
        Ok(Session {
            url: sp.graph.issued(&answer.upload_url)?,
            path: path.clone(),
        })
    }

    /// Sends `total` bytes: those already in `pending`, then the rest of `source`.
    async fn send_all(
        &self,
        sp: &SharePoint,
        source: &mut Source,
        mut pending: BytesMut,
        total: u64,
    ) -> Result<Written, StorageError> {
        let mut acked = 0u64;
        loop {
            let want = fragment_len(acked, total);
            source.fill(&mut pending, want).await?;
            let have = pending.len() as u64;
            if have < want {
                return Err(mismatch(total, acked + have));
            }
            let last = acked + want == total;
            if last {
                // The body must end here: one byte more is a body longer than announced.
                source.fill(&mut pending, want + 1).await?;
                if pending.len() as u64 > want {
                    return Err(mismatch(total, total + 1));
                }
            }
            // Held until Graph has all of it, for resending.
            let fragment = pending.split_to(want as usize).freeze();
            let (start, end) = (acked, acked + want);
            let mut failures = 0;
            while acked < end {
                let piece = fragment.slice((acked - start) as usize..);
                match self.put(sp, piece, acked, total).await {
                    Sent::Next(next) if next > acked && next <= end => acked = next,
                    Sent::Next(next) => {
                        return Err(StorageError::Backend(format!(
                            "upload session: Graph expects byte {next} next, not in {acked}-{end}"
                        )));
                    }
                    Sent::Done(written) if last => return Ok(written),
                    Sent::Fatal(error) => return Err(error),
                    Sent::Done(_) => {
                        return Err(StorageError::Backend(
                            "upload session: Graph committed the file before its end".into(),
                        ));
                    }
                    Sent::Failed(error, wait) => {
                        failures += 1;
                        if failures >= FRAGMENT_ATTEMPTS {
                            return Err(error);
                        }
                        let backoff = Duration::from_millis(500 * u64::from(failures));
                        tokio::time::sleep(wait.unwrap_or(backoff).min(MAX_RETRY_WAIT)).await;
                        tracing::debug!(%error, acked, "sharepoint: resuming an upload session");
                        match self.next_expected(sp).await {
                            Ok(next) if next >= start && next <= end => acked = next,
                            Ok(next) => {
                                return Err(StorageError::Backend(format!(
                                    "upload session: Graph expects byte {next} next, not in \
                                     {start}-{end}"
                                )));
                            }
                            // The last fragment's answer was lost after SharePoint committed
                            // the file: the session is gone and the file is there.
                            Err(StorageError::NotFound) if last => {
                                let (item, _) = super::ops::stat(sp, &self.path).await?;
                                if item.size == Some(total) {
                                    return Ok(Written {
                                        item,
                                        created: true,
                                    });
                                }
                                return Err(error);
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
    }

    /// PUTs `piece` at `offset` to the pre-authenticated upload URL (no `Authorization`: Graph
    /// refuses it there).
    async fn put(&self, sp: &SharePoint, piece: Bytes, offset: u64, total: u64) -> Sent {
        let length = piece.len() as u64;
        let range = format!("bytes {offset}-{}/{total}", offset + length - 1);
        let sent = sp
            .graph
            .egress
            .request(Method::PUT, self.url.clone())
            .with(|b| {
                b.header(CONTENT_LENGTH, length)
                    .header(CONTENT_RANGE, range)
                    .body(piece)
                    .timeout(FRAGMENT_TIMEOUT)
            })
            .send()
            .await;
        let response = match sent {
            Err(refused) => return Sent::Fatal(StorageError::Backend(refused.to_string())),
            Ok(Err(e)) => {
                return Sent::Failed(super::graph::transport(e, "sending a fragment"), None);
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        match status {
            202 => match read_json::<SessionStatus>(response).await {
                Ok(answer) => match first_expected(&answer.next_expected_ranges) {
                    Some(next) => Sent::Next(next),
                    None => {
                        Sent::Failed(StorageError::Backend("no nextExpectedRanges".into()), None)
                    }
                },
                Err(e) => Sent::Failed(e, None),
            },
            200 | 201 => match read_json::<DriveItem>(response).await {
                Ok(item) => Sent::Done(Written {
                    item: item.into_item(self.path.to_string()),
                    created: status == 201,
                }),
                Err(e) => Sent::Failed(e, None),
            },
            // Throttled, a server error, or a fragment Graph did not take as sent (416 for
            // an overlap or a gap): ask the session where it stands and go on from there.
            429 | 416 | 500..=599 => {
                let wait = retry_after(response.headers());
                Sent::Failed(
                    super::graph::error_from(response, "sending a fragment").await,
                    wait,
                )
            }
            _ => {
                let error = super::graph::error_from(response, "sending a fragment").await;
                Sent::Fatal(error)
            }
        }
    }

    /// The start of the session's first expected range.
    async fn next_expected(&self, sp: &SharePoint) -> Result<u64, StorageError> {
        let response = sp
            .graph
            .send(
                Method::GET,
                self.url.clone(),
                Body::Empty,
                true,
                false,
                |b| b,
            )
            .await?;
        let status: SessionStatus = read_json(response).await?;
        first_expected(&status.next_expected_ranges).ok_or_else(|| {
            StorageError::Backend("upload session without nextExpectedRanges".into())
        })
    }

    /// Best effort: an abandoned session also expires on its own.
    async fn cancel(&self, sp: &SharePoint) {
        let result = sp
            .graph
            .send(
                Method::DELETE,
                self.url.clone(),
                Body::Empty,
                true,
                false,
                |b| b,
            )
            .await;
        if let Err(error) = result {
            tracing::debug!(%error, "sharepoint: cancelling an upload session failed");
        }
    }
}

/// `["26-", "30-40"]` → 26.
fn first_expected(ranges: &[String]) -> Option<u64> {
    ranges
        .iter()
        .filter_map(|r| r.split('-').next()?.trim().parse::<u64>().ok())
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_are_multiples_of_320_kib_but_the_last() {
        assert_eq!(UNIT, 327_680);
        for total in [
            SIMPLE_LIMIT + 1,
            17 * 1024 * 1024 + 1,
            FRAGMENT,
            3 * FRAGMENT,
            1 << 30,
        ] {
            let mut acked = 0;
            let mut sizes = Vec::new();
            while acked < total {
                let len = fragment_len(acked, total);
                sizes.push(len);
                acked += len;
            }
            assert_eq!(acked, total);
            let (last, rest) = sizes.split_last().unwrap();
            assert!(rest.iter().all(|s| *s == FRAGMENT), "{total}: {sizes:?}");
            assert!(*last > 0 && *last <= FRAGMENT);
        }
        // 1 GiB: 102 fragments of 10 MiB and one of 4 MiB.
        assert_eq!((1u64 << 30).div_ceil(FRAGMENT), 103);
    }

    #[test]
    fn next_expected_ranges_parse() {
        assert_eq!(first_expected(&["12345-".into()]), Some(12345));
        assert_eq!(first_expected(&["77-99".into(), "5-6".into()]), Some(5));
        assert_eq!(first_expected(&[]), None);
        assert_eq!(first_expected(&["x".into()]), None);
    }
}
