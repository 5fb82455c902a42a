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

mod session;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::Method;

use super::SharePoint;
use super::graph::{Body, DriveItem, read_json};
use crate::storage::{ByteStream, StorageError, StoragePath, Upload, WriteMode, Written};
use session::Session;

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
pub(super) fn fragment_len(acked: u64, total: u64) -> u64 {
    FRAGMENT.min(total - acked)
}

/// Reads the caller's body into a buffer, a piece at a time.
pub(super) struct Source {
    body: ByteStream,
    ended: bool,
}

impl Source {
    /// Appends to `buffer` until it holds `want` bytes or the body ends.
    pub(super) async fn fill(
        &mut self,
        buffer: &mut BytesMut,
        want: u64,
    ) -> Result<(), StorageError> {
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

pub(super) fn mismatch(announced: u64, got: u64) -> StorageError {
    StorageError::Interrupted(format!(
        "the body had {}{got} bytes, {announced} were announced",
        if got > announced { "more than " } else { "" }
    ))
}

pub(super) fn conflict_behavior(mode: WriteMode) -> &'static str {
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
pub(super) async fn explain(
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
}
