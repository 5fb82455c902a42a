//! Uploads: raw `PUT` bodies and browser multipart forms, streamed to the storage through a
//! bounded pipe; nothing touches local disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;

use super::ApiError;
use super::files::{Done, FileRequest, PathQuery};
use crate::broker::{BrokerError, Need};
use crate::config::ServerSettings;
use crate::metrics::{Direction, Metrics};
use crate::storage::{ByteStream, StorageError, Upload, WriteMode, Written};

/// Chunks buffered between the client and the storage: memory per transfer stays at a few
/// chunks whatever the file size.
const PIPE_CHUNKS: usize = 8;

/// Feeds a request body (which actix keeps on its own thread) to a storage through a bounded
/// channel, counting bytes against the upload limit and in the metrics.
fn pipe<S, E>(
    source: S,
    limit: Option<u64>,
    too_large: Arc<AtomicBool>,
    transferred: Counter,
) -> ByteStream
where
    S: Stream<Item = Result<Bytes, E>> + 'static,
    E: std::fmt::Display,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, StorageError>>(PIPE_CHUNKS);
    actix_web::rt::spawn(async move {
        let mut source = std::pin::pin!(source);
        let mut total: u64 = 0;
        while let Some(chunk) = source.next().await {
            let item = match chunk {
                Ok(bytes) => {
                    total = total.saturating_add(bytes.len() as u64);
                    transferred.inc_by(bytes.len() as u64);
                    match limit {
                        Some(limit) if total > limit => {
                            too_large.store(true, Ordering::Relaxed);
                            Err(StorageError::TooLarge(format!("more than {limit} bytes")))
                        }
                        _ => Ok(bytes),
                    }
                }
                Err(e) => Err(StorageError::Interrupted(e.to_string())),
            };
            let stop = item.is_err();
            // A closed receiver means the storage gave up; stop reading the client.
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

fn too_large(limit: u64) -> StorageError {
    StorageError::TooLarge(format!(
        "the upload is larger than the limit of {limit} bytes"
    ))
}

/// Whatever a backend made of the pipe's error, an upload over the limit is answered 413.
fn over_limit(
    result: Result<Written, BrokerError>,
    limit: Option<u64>,
    flag: &AtomicBool,
) -> Result<Written, BrokerError> {
    match (result, limit) {
        (Err(_), Some(limit)) if flag.load(Ordering::Relaxed) => Err(too_large(limit).into()),
        (result, _) => result,
    }
}

/// `PUT …/files/content?path=FILE`: the raw body becomes the file. 201 when new, 200 when
/// replaced; `If-None-Match: *` refuses to replace with 412.
pub async fn upload(
    file: FileRequest,
    query: web::Query<PathQuery>,
    body: web::Payload,
    server: web::Data<ServerSettings>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    let headers = file.http().headers();
    let create_only = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == b"*");
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = server.max_upload_bytes;
    let mode = if create_only {
        WriteMode::CreateOnly
    } else {
        WriteMode::CreateOrReplace
    };
    let result = file
        .run(
            Need::Write,
            "file.upload",
            &query.path,
            async move |handle, path| {
                if let (Some(length), Some(limit)) = (length, limit)
                    && length > limit
                {
                    // Refused before a byte is read or stored.
                    return Err(too_large(limit).into());
                }
                let flag = Arc::new(AtomicBool::new(false));
                let upload = Upload {
                    body: pipe(
                        body,
                        limit,
                        Arc::clone(&flag),
                        metrics.transfer(handle.storage_kind(), Direction::up),
                    ),
                    length,
                };
                let written = over_limit(handle.write(&path, upload, mode).await, limit, &flag)?;
                let size = written.item.size;
                Ok(Done::new(written).size(size))
            },
        )
        .await;
    let written = match result {
        Err(ApiError::Storage(StorageError::AlreadyExists)) if create_only => {
            return Err(ApiError::PreconditionFailed(
                "a file already exists there and If-None-Match: * forbids replacing it".into(),
            ));
        }
        other => other?,
    };
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(written.item))
}

#[derive(Deserialize)]
pub struct FormQuery {
    #[serde(default)]
    path: String,
    /// Replace files of the same name (default: refuse with 409, losing nothing).
    #[serde(default)]
    overwrite: bool,
}

/// `POST …/files/upload?path=DIR`: `multipart/form-data` from a browser; every file part is
/// stored in DIR under its own name, and each is audited on its own.
pub async fn upload_form(
    file: FileRequest,
    query: web::Query<FormQuery>,
    mut form: actix_multipart::Multipart,
    server: web::Data<ServerSettings>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    let handle = file
        .authorize(Need::Write, "file.upload", &query.path)
        .await?;
    let mode = if query.overwrite {
        WriteMode::CreateOrReplace
    } else {
        WriteMode::CreateOnly
    };
    let limit = server.max_upload_bytes;
    let mut items = Vec::new();
    while let Some(field) = form.next().await {
        let field =
            field.map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?;
        let Some(name) = field
            .content_disposition()
            .and_then(|d| d.get_filename())
            // Old browsers send a whole client path; only its last segment is the name.
            .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n).to_string())
        else {
            continue;
        };
        let raw = match query.path.trim_end_matches('/') {
            "" => name,
            folder => format!("{folder}/{name}"),
        };
        let result = match handle.path(&raw) {
            Ok(path) => {
                let flag = Arc::new(AtomicBool::new(false));
                let upload = Upload {
                    body: pipe(
                        field,
                        limit,
                        Arc::clone(&flag),
                        metrics.transfer(handle.storage_kind(), Direction::up),
                    ),
                    length: None,
                };
                over_limit(handle.write(&path, upload, mode).await, limit, &flag).map(|written| {
                    let size = written.item.size;
                    Done::new(written).size(size)
                })
            }
            Err(e) => Err(e),
        };
        items.push(
            file.record(&handle, "file.upload", &raw, result)
                .await?
                .item,
        );
    }
    if items.is_empty() {
        return Err(ApiError::BadRequest("the form carries no file".into()));
    }
    Ok(HttpResponse::Created().json(serde_json::json!({ "items": items })))
}
