//! Upload sessions ("driveItem: createUploadSession"): the fragments of one large upload, in
//! order, each resent from where Graph says it stands after a failure; cancelled when the
//! upload cannot go on.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE};
use serde::Deserialize;
use serde_json::json;

use super::{Source, conflict_behavior, explain, fragment_len, mismatch};
use crate::storage::sharepoint::SharePoint;
use crate::storage::sharepoint::graph::{
    Body, DriveItem, MAX_RETRY_WAIT, PIECE_TIMEOUT, error_from, read_json, retry_after, transport,
};
use crate::storage::sharepoint::ops::stat;
use crate::storage::{StorageError, StoragePath, WriteMode, Written};

/// How often one fragment is tried in all before the upload is given up.
const FRAGMENT_ATTEMPTS: u32 = 5;

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

pub(super) struct Session {
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

impl Session {
    pub(super) async fn create(
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
    pub(super) async fn send_all(
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
                            Err(StorageError::NotFound) if last => {
                                return self.committed(sp, total).await?.ok_or(error);
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
                    .timeout(sp.graph.timeout + PIECE_TIMEOUT)
            })
            .send()
            .await;
        let response = match sent {
            Err(refused) => return Sent::Fatal(StorageError::Backend(refused.to_string())),
            Ok(Err(e)) => {
                return Sent::Failed(transport(e, "sending a fragment"), None);
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
                Sent::Failed(error_from(response, "sending a fragment").await, wait)
            }
            _ => {
                let error = error_from(response, "sending a fragment").await;
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

    /// After the last fragment's answer was lost: SharePoint may have committed the file,
    /// which ends the session. The file is taken as this upload's if it has its size.
    async fn committed(
        &self,
        sp: &SharePoint,
        total: u64,
    ) -> Result<Option<Written>, StorageError> {
        let (item, _) = stat(sp, &self.path).await?;
        Ok((item.size == Some(total)).then_some(Written {
            item,
            created: true,
        }))
    }

    /// Best effort: an abandoned session also expires on its own.
    pub(super) async fn cancel(&self, sp: &SharePoint) {
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
    use super::first_expected;

    #[test]
    fn next_expected_ranges_parse() {
        assert_eq!(first_expected(&["12345-".into()]), Some(12345));
        assert_eq!(first_expected(&["77-99".into(), "5-6".into()]), Some(5));
        assert_eq!(first_expected(&[]), None);
        assert_eq!(first_expected(&["x".into()]), None);
    }
}
