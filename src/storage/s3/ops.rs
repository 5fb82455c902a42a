//! Reading, folders, moving and deleting.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use reqwest::Method;
use reqwest::header::HeaderMap;

use super::client::{Call, Payload, download_body};
use super::errors::error_from;
use super::listing::item_from_headers;
use super::xml::{self, ListedObject};
use super::{S3Storage, folder_item};
use crate::storage::{ByteRange, Download, Item, StorageError, StoragePath};

/// `CopyObject` takes objects up to 5 GiB; larger ones would need `UploadPartCopy`.
const MAX_COPY_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// `DeleteObjects` takes at most this many keys per call.
const DELETE_BATCH: usize = 1000;

/// How many copies or deletes of a folder's keys run at once.
const PARALLEL: usize = 8;

/// A `Content-Range`: the inclusive span served (none in a 416's `bytes */100`) and the
/// file's size, when given.
struct ContentRange {
    span: Option<(u64, u64)>,
    total: Option<u64>,
}

/// `bytes 0-9/100` → 0-9 of 100; `bytes */100` → the size alone.
fn content_range(headers: &HeaderMap) -> Option<ContentRange> {
    let text = headers.get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    let (span, total) = text.trim().strip_prefix("bytes ")?.split_once('/')?;
    let total = total.parse::<u64>().ok();
    let span = match span.split_once('-') {
        Some((start, end)) => Some((start.parse().ok()?, end.parse().ok()?)),
        None => None,
    };
    Some(ContentRange { span, total })
}

impl S3Storage {
    pub(super) async fn read_file(
        &self,
        path: &StoragePath,
        range: Option<ByteRange>,
    ) -> Result<Download, StorageError> {
        if path.is_root() {
            return Err(StorageError::Conflict(
                "a folder has no content to read".into(),
            ));
        }
        let key = self.key(path);
        let relative = path.to_string();
        let mut call = Call::new(Method::GET, &key).streamed();
        if let Some(range) = range {
            let end = range.end.map(|e| e.to_string()).unwrap_or_default();
            call = call.header("range", format!("bytes={}-{end}", range.start));
        }
        let response = self.client.send_raw(&call).await?;
        let status = response.status().as_u16();
        if status == 416 {
            let size = match content_range(response.headers()).and_then(|c| c.total) {
                Some(size) => size,
                None => self.stat_path(path).await?.size.unwrap_or(0),
            };
            return Err(StorageError::RangeNotSatisfiable { size });
        }
        // A missing key may answer 403 (see `head_key`).
        if status == 404 || (status == 403 && !self.key_listed(&key).await?) {
            return Err(if self.folder_exists(path).await? {
                StorageError::Conflict(format!("`{path}` is a folder"))
            } else {
                StorageError::NotFound
            });
        }
        if !response.status().is_success() {
            return Err(error_from(response).await);
        }

        let (served, item) = if status == 206 {
            let ContentRange { span, total } =
                content_range(response.headers()).ok_or_else(|| {
                    StorageError::Backend("a partial answer without a usable Content-Range".into())
                })?;
            let item = item_from_headers(&relative, response.headers(), total);
            (span, item)
        } else {
            let item = item_from_headers(&relative, response.headers(), None);
            let size = item.size.unwrap_or(0);
            match range {
                None => (None, item),
                // The whole file is the asked-for range only when it starts at 0; some stores
                // answer an open range from 0 with 200.
                Some(r) if r.start == 0 && size > 0 => {
                    let end = r.end.map_or(size - 1, |e| e.min(size - 1));
                    if end != size - 1 {
                        return Err(StorageError::Backend(
                            "the storage ignored the requested range".into(),
                        ));
                    }
                    (Some((0, end)), item)
                }
                Some(_) if size == 0 => return Err(StorageError::RangeNotSatisfiable { size }),
                Some(_) => {
                    return Err(StorageError::Backend(
                        "the storage ignored the requested range".into(),
                    ));
                }
            }
        };
        Ok(Download {
            item,
            range: served,
            body: download_body(response, self.client.timeout),
        })
    }

    /// Puts a marker for the folder and each missing parent; markers are zero-byte, so
    /// putting one again changes nothing that matters.
    pub(super) async fn make_folder(&self, path: &StoragePath) -> Result<Item, StorageError> {
        let segments = path.segments();
        for depth in 1..=segments.len() {
            let relative = segments[..depth].join("/");
            let file_key = format!("{}{relative}", self.base);
            if self.head_key(&file_key).await?.is_some() {
                return Err(StorageError::Conflict(format!(
                    "`{relative}` is a file, not a folder"
                )));
            }
            let marker = format!("{file_key}/");
            self.client
                .send(&Call::new(Method::PUT, &marker).payload(Payload::Unsigned(Bytes::new())))
                .await?;
        }
        Ok(folder_item(&path.to_string()))
    }

    /// There is no rename in S3: every key is copied, and the sources are deleted only after
    /// every copy succeeded.
    pub(super) async fn move_path(
        &self,
        from: &StoragePath,
        to: &StoragePath,
    ) -> Result<Item, StorageError> {
        if from.is_root() || to.is_root() {
            return Err(StorageError::Conflict(
                "the root folder cannot be moved".into(),
            ));
        }
        if from == to {
            return Err(StorageError::AlreadyExists);
        }
        if to.starts_with(from) {
            return Err(StorageError::Conflict(
                "a folder cannot be moved into itself".into(),
            ));
        }
        let source_file = self.head_file(from).await?;
        let sources = match &source_file {
            Some(_) => Vec::new(),
            None => self.keys_under(&self.folder_prefix(from)).await?,
        };
        if source_file.is_none() && sources.is_empty() {
            return Err(StorageError::NotFound);
        }
        if self.head_file(to).await?.is_some() || self.folder_exists(to).await? {
            return Err(StorageError::AlreadyExists);
        }

        if let Some(item) = source_file {
            let (from_key, to_key) = (self.key(from), self.key(to));
            self.copy_object(&from_key, &to_key, item.size.unwrap_or(0))
                .await?;
            self.delete_keys(vec![from_key]).await?;
            return self.stat_path(to).await;
        }

        let (from_prefix, to_prefix) = (self.folder_prefix(from), self.folder_prefix(to));
        let pairs: Vec<(String, String, u64)> = sources
            .iter()
            .filter_map(|ListedObject { key, size, .. }| {
                let rest = key.strip_prefix(from_prefix.as_str())?;
                Some((key.clone(), format!("{to_prefix}{rest}"), size.unwrap_or(0)))
            })
            .collect();
        // Owned items: borrowed ones trip the compiler's higher-ranked lifetime check in a
        // `Send` future.
        let results: Vec<Result<String, StorageError>> = futures_util::stream::iter(pairs.clone())
            .map(|(source, target, size)| async move {
                self.copy_object(&source, &target, size)
                    .await
                    .map(|()| target)
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let copied: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect();
        if let Some(Err(first)) = results.into_iter().find(Result::is_err) {
            // Half a folder under the new name helps nobody: take the copies back.
            if let Err(e) = self.delete_keys(copied).await {
                tracing::warn!(error = %e, "s3: could not remove the copies of a failed move");
            }
            return Err(first);
        }
        self.delete_keys(pairs.into_iter().map(|(source, _, _)| source).collect())
            .await?;
        Ok(folder_item(&to.to_string()))
    }

    async fn copy_object(&self, source: &str, target: &str, size: u64) -> Result<(), StorageError> {
        if size > MAX_COPY_BYTES {
            return Err(StorageError::TooLarge(format!(
                "objects over 5 GiB cannot be moved on S3 by this version of filebridge (`{source}`)"
            )));
        }
        let copy_source = format!("/{}/{}", self.client.bucket, xml::encode_path(source));
        let call = Call::new(Method::PUT, target)
            .header("x-amz-copy-source", copy_source)
            .timeout(self.data_timeout());
        self.client.send_for_text(&call).await.map(|_| ())
    }

    pub(super) async fn delete_path(&self, path: &StoragePath) -> Result<(), StorageError> {
        if path.is_root() {
            return Err(StorageError::Conflict(
                "the root folder cannot be deleted".into(),
            ));
        }
        if self.head_file(path).await?.is_some() {
            return self.delete_keys(vec![self.key(path)]).await;
        }
        let keys: Vec<String> = self
            .keys_under(&self.folder_prefix(path))
            .await?
            .into_iter()
            .map(|object| object.key)
            .collect();
        if keys.is_empty() {
            return Err(StorageError::NotFound);
        }
        self.delete_keys(keys).await
    }

    /// Deletes keys: one `DeleteObject` for a single key, `DeleteObjects` in batches of
    /// 1,000 otherwise (keys XML cannot carry go one by one).
    pub(super) async fn delete_keys(&self, keys: Vec<String>) -> Result<(), StorageError> {
        let (batchable, single): (Vec<String>, Vec<String>) = if keys.len() == 1 {
            (Vec::new(), keys)
        } else {
            keys.into_iter().partition(|key| xml::xml_safe(key))
        };
        futures_util::stream::iter(single)
            .map(|key| async move {
                self.client
                    .send(&Call::new(Method::DELETE, &key))
                    .await
                    .map(|_| ())
            })
            .buffer_unordered(PARALLEL)
            .try_collect::<Vec<()>>()
            .await?;
        for batch in batchable.chunks(DELETE_BATCH) {
            self.delete_batch(batch).await?;
        }
        Ok(())
    }

    async fn delete_batch(&self, keys: &[String]) -> Result<(), StorageError> {
        let objects: Vec<rusty_s3::actions::ObjectIdentifier> = keys
            .iter()
            .map(|key| rusty_s3::actions::ObjectIdentifier::new(key.clone()))
            .collect();
        let mut action = self.client.rusty.delete_objects(None, objects.iter());
        action.set_quiet(true);
        let (body, md5) = action.body_with_md5();
        let call = Call::new(Method::POST, "")
            .query("delete", "")
            .header("content-md5", md5)
            .header("content-type", "application/xml")
            .payload(Payload::Signed(Bytes::from(body)));
        let text = self.client.send_for_text(&call).await?;
        let failures = xml::delete_failures(&text)?;
        match failures.first() {
            None => Ok(()),
            Some((key, code, message)) => {
                tracing::warn!(failed = failures.len(), key, code, "s3: keys not deleted");
                Err(match code.as_str() {
                    "AccessDenied" => StorageError::PermissionDenied,
                    _ => StorageError::Backend(format!(
                        "{} keys were not deleted, e.g. `{key}`: {code} {message}",
                        failures.len()
                    )),
                })
            }
        }
    }

    /// For requests that carry or copy file bytes: far longer than for metadata.
    pub(super) fn data_timeout(&self) -> Duration {
        self.client.timeout.saturating_mul(10)
    }
}
