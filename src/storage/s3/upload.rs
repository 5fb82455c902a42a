//! Writing: one `PutObject` for small bodies, a multipart upload with bounded memory for
//! the rest, aborted on any failure so that nothing appears under the key.

use std::sync::Arc;

use bytes::Bytes;
use reqwest::Method;

use super::client::{Call, Client, Payload};
use super::parts::{MAX_PARTS, PART_SIZE, PartReader, part_size};
use super::xml::{self, CompletedUpload, InitiatedUpload};
use super::{S3Storage, file_item};
use crate::storage::{StorageError, StoragePath, Upload, WriteMode, Written};

impl S3Storage {
    pub(super) async fn write_file(
        &self,
        path: &StoragePath,
        upload: Upload,
        mode: WriteMode,
    ) -> Result<Written, StorageError> {
        if path.is_root() {
            return Err(StorageError::Conflict(
                "the root folder cannot be written to".into(),
            ));
        }
        let key = self.key(path);
        // Both answers are needed for a new file (the common case), so they are asked at once.
        let (existing, folder) =
            futures_util::future::try_join(self.head_key(&key), self.folder_exists(path)).await?;
        let existed = existing.is_some();
        if existed && mode == WriteMode::CreateOnly {
            return Err(StorageError::AlreadyExists);
        }
        if !existed && folder {
            return Err(match mode {
                WriteMode::CreateOnly => StorageError::AlreadyExists,
                WriteMode::CreateOrReplace => {
                    StorageError::Conflict(format!("`{path}` is a folder"))
                }
            });
        }

        let length = upload.length;
        let mut reader = PartReader::new(upload, part_size(length)?);
        let first = reader.next_part().await?;
        let etag = if reader.ended {
            self.put_single(&key, first, mode).await?
        } else {
            self.put_multipart(&key, first, &mut reader, mode).await?
        };
        // Built from what is known rather than fetched with another HEAD: S3 reports no
        // modification time on a write, so `modified` stays empty until the next listing.
        Ok(Written {
            item: file_item(&path.to_string(), Some(reader.read), None, etag),
            created: !existed,
        })
    }

    /// One `PutObject`; the new ETag.
    async fn put_single(
        &self,
        key: &str,
        body: Bytes,
        mode: WriteMode,
    ) -> Result<Option<String>, StorageError> {
        let mut call = Call::new(Method::PUT, key)
            .payload(Payload::Unsigned(body))
            .timeout(self.data_timeout());
        if mode == WriteMode::CreateOnly {
            // Closes the race between the HEAD above and this write on stores that support
            // conditional writes (AWS since 2024, moto).
            call = call.header("if-none-match", "*");
        }
        let response = self.client.send(&call).await?;
        Ok(etag_header(&response))
    }

    async fn put_multipart(
        &self,
        key: &str,
        first: Bytes,
        reader: &mut PartReader,
        mode: WriteMode,
    ) -> Result<Option<String>, StorageError> {
        let create = Call::new(Method::POST, key).query("uploads", "").no_retry();
        let upload_id =
            InitiatedUpload::parse(&self.client.send_for_text(&create).await?)?.upload_id;
        let guard = AbortGuard {
            client: Arc::clone(&self.client),
            key: key.to_string(),
            upload_id: Some(upload_id.clone()),
        };
        match self
            .upload_parts(key, &upload_id, first, reader, mode)
            .await
        {
            Ok(etag) => {
                guard.disarm();
                Ok(etag)
            }
            Err(e) => {
                guard.abort().await;
                Err(e)
            }
        }
    }

    /// Uploads part N while part N+1 is read from the client: at most two parts in memory.
    /// The new object's ETag.
    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        first: Bytes,
        reader: &mut PartReader,
        mode: WriteMode,
    ) -> Result<Option<String>, StorageError> {
        let mut etags = Vec::new();
        let mut current = first;
        loop {
            let number = etags.len() + 1;
            if number > MAX_PARTS {
                return Err(StorageError::TooLarge(format!(
                    "an upload of unknown length may be at most {} GiB on S3",
                    MAX_PARTS * PART_SIZE / (1024 * 1024 * 1024)
                )));
            }
            let (etag, next) = futures_util::future::try_join(
                self.upload_part(key, upload_id, number, current),
                reader.next_part(),
            )
            .await?;
            etags.push(etag);
            if next.is_empty() {
                break;
            }
            current = next;
        }
        let mut call = Call::new(Method::POST, key)
            .query("uploadId", upload_id)
            .header("content-type", "application/xml")
            .payload(Payload::Signed(Bytes::from(xml::complete_body(&etags))))
            .timeout(self.data_timeout());
        if mode == WriteMode::CreateOnly {
            call = call.header("if-none-match", "*");
        }
        let text = self.client.send_for_text(&call).await?;
        Ok(CompletedUpload::parse(&text)?.etag)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: usize,
        bytes: Bytes,
    ) -> Result<String, StorageError> {
        let call = Call::new(Method::PUT, key)
            .query("partNumber", number.to_string())
            .query("uploadId", upload_id)
            .payload(Payload::Unsigned(bytes))
            .timeout(self.data_timeout());
        let response = self.client.send(&call).await?;
        etag_header(&response).ok_or_else(|| {
            StorageError::Backend(format!("the storage returned no ETag for part {number}"))
        })
    }
}

fn etag_header(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Aborts a multipart upload that did not complete: on an error (awaited, so the parts are
/// gone when `write` returns) or, when the write itself is dropped half-way (the client
/// went away), from a spawned task. Parts left behind would be stored, and billed, until a
/// lifecycle rule removes them.
struct AbortGuard {
    client: Arc<Client>,
    key: String,
    upload_id: Option<String>,
}

impl AbortGuard {
    fn disarm(mut self) {
        self.upload_id = None;
    }

    async fn abort(mut self) {
        if let Some(id) = self.upload_id.take() {
            abort_upload(&self.client, &self.key, &id).await;
        }
    }
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        let Some(id) = self.upload_id.take() else {
            return;
        };
        let client = Arc::clone(&self.client);
        let key = std::mem::take(&mut self.key);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move { abort_upload(&client, &key, &id).await });
            }
            Err(_) => tracing::warn!(key, upload_id = id, "s3: multipart upload left behind"),
        }
    }
}

async fn abort_upload(client: &Client, key: &str, upload_id: &str) {
    let call = Call::new(Method::DELETE, key).query("uploadId", upload_id);
    match client.send(&call).await {
        Ok(_) | Err(StorageError::NotFound) => {}
        Err(e) => tracing::warn!(
            key,
            upload_id,
            error = %e,
            "s3: could not abort a multipart upload; a lifecycle rule (AbortIncompleteMultipartUpload) removes it"
        ),
    }
}
