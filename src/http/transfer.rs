//! Moving bytes: downloads (with `Range`) and uploads (raw `PUT` and browser multipart
//! forms), streamed end to end with bounded buffers; nothing touches local disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use serde::Deserialize;
use sqlx::PgPool;

use super::ApiError;
use super::files::{PathQuery, audited, authorize};
use crate::auth::JiraCaller;
use crate::broker::{Broker, BrokerError, Need};
use crate::config::ServerSettings;
use crate::storage::{ByteRange, ByteStream, Item, StorageError, StoragePath, Upload, WriteMode};

/// Chunks buffered between the client and the storage: memory per transfer stays at a few
/// chunks whatever the file size.
const PIPE_CHUNKS: usize = 8;

/// A `Range` header we serve: one range (several are answered with the whole file, which
/// RFC 9110 allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeSpec {
    From(u64, Option<u64>),
    Suffix(u64),
}

fn parse_range(value: &str) -> Option<RangeSpec> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    if start.is_empty() {
        return end.parse().ok().filter(|n| *n > 0).map(RangeSpec::Suffix);
    }
    let start: u64 = start.parse().ok()?;
    let end: Option<u64> = if end.is_empty() {
        None
    } else {
        Some(end.parse().ok()?)
    };
    if end.is_some_and(|e| e < start) {
        return None;
    }
    Some(RangeSpec::From(start, end))
}

fn http_date(item: &Item) -> Option<String> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    item.modified
        .map(|m| m.to_offset(time::UtcOffset::UTC))
        .and_then(|m| m.format(&format).ok())
}

/// `attachment` always (with `nosniff`, set globally), so a stored HTML file can never run
/// as filebridge's page; the name both as ASCII fallback and RFC 8187 UTF-8.
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

fn file_headers(response: &mut actix_web::HttpResponseBuilder, item: &Item) {
    response
        .content_type("application/octet-stream")
        .insert_header((header::CONTENT_DISPOSITION, content_disposition(&item.name)))
        .insert_header((header::ACCEPT_RANGES, "bytes"));
    if let Some(etag) = &item.etag
        && let Ok(value) = HeaderValue::from_str(etag)
    {
        response.insert_header((header::ETAG, value));
    }
    if let Some(date) = http_date(item) {
        response.insert_header((header::LAST_MODIFIED, date));
    }
}

/// `GET|HEAD …/files/content?path=FILE`
pub async fn download(
    req: HttpRequest,
    caller: JiraCaller,
    query: web::Query<PathQuery>,
    broker: web::Data<Broker>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    let head = req.method() == Method::HEAD;
    let action = if head { "file.stat" } else { "file.download" };
    let handle = authorize(
        &req,
        &broker,
        &pool,
        &caller,
        Need::Read,
        action,
        &query.path,
    )
    .await?;
    let path = handle.path(&query.path)?;
    if head {
        let item = audited(
            &req,
            &pool,
            &handle,
            action,
            &path.to_string(),
            None,
            handle.stat(&path).await,
        )
        .await?;
        let mut response = HttpResponse::Ok();
        file_headers(&mut response, &item);
        // A sized, empty body: actix sends its size as Content-Length and, for HEAD, no body.
        let nothing = futures_util::stream::empty::<Result<Bytes, actix_web::Error>>();
        return Ok(response.body(SizedStream::new(item.size.unwrap_or(0), nothing)));
    }
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range);
    let result = async {
        let range = match range {
            None => None,
            Some(RangeSpec::From(start, end)) => Some(ByteRange { start, end }),
            Some(RangeSpec::Suffix(n)) => {
                let size = handle.stat(&path).await?.size.unwrap_or(0);
                Some(ByteRange {
                    start: size.saturating_sub(n),
                    end: None,
                })
            }
        };
        handle.read(&path, range).await
    }
    .await;
    let size = result.as_ref().ok().and_then(|d| d.item.size);
    let download = audited(
        &req,
        &pool,
        &handle,
        action,
        &path.to_string(),
        size,
        result,
    )
    .await?;
    let total = download.item.size.unwrap_or(0);
    let mut response = match download.range {
        Some(_) => HttpResponse::build(StatusCode::PARTIAL_CONTENT),
        None => HttpResponse::Ok(),
    };
    file_headers(&mut response, &download.item);
    let length = match download.range {
        Some((start, end)) => {
            response.insert_header((
                header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{total}"),
            ));
            end - start + 1
        }
        None => total,
    };
    let body = download.body.map_err(|e| {
        // The status line is gone by now; cutting the stream short tells the client.
        tracing::warn!(error = %e, "download interrupted by the storage");
        actix_web::error::ErrorBadGateway(e.code())
    });
    Ok(response.body(SizedStream::new(length, body)))
}

/// Feeds a request body (which actix keeps on its own thread) to a storage through a bounded
/// channel, counting bytes against the upload limit.
fn pipe<S, E>(source: S, limit: Option<u64>, too_large: Arc<AtomicBool>) -> ByteStream
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

fn over_limit(
    result: Result<crate::storage::Written, BrokerError>,
    limit: Option<u64>,
    flag: &AtomicBool,
) -> Result<crate::storage::Written, BrokerError> {
    match (result, limit) {
        (Err(_), Some(limit)) if flag.load(Ordering::Relaxed) => Err(StorageError::TooLarge(
            format!("the upload is larger than the limit of {limit} bytes"),
        )
        .into()),
        (result, _) => result,
    }
}

/// `PUT …/files/content?path=FILE`: the raw body becomes the file. 201 when new, 200 when
/// replaced; `If-None-Match: *` refuses to replace with 412.
pub async fn upload(
    req: HttpRequest,
    caller: JiraCaller,
    query: web::Query<PathQuery>,
    body: web::Payload,
    broker: web::Data<Broker>,
    pool: web::Data<PgPool>,
    server: web::Data<ServerSettings>,
) -> Result<HttpResponse, ApiError> {
    let handle = authorize(
        &req,
        &broker,
        &pool,
        &caller,
        Need::Write,
        "file.upload",
        &query.path,
    )
    .await?;
    let path = handle.path(&query.path)?;
    let create_only = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == b"*");
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = server.max_upload_bytes;
    let result = if let (Some(length), Some(limit)) = (length, limit)
        && length > limit
    {
        Err(StorageError::TooLarge(format!(
            "the upload is larger than the limit of {limit} bytes"
        ))
        .into())
    } else {
        let flag = Arc::new(AtomicBool::new(false));
        let upload = Upload {
            body: pipe(body, limit, Arc::clone(&flag)),
            length,
        };
        let mode = if create_only {
            WriteMode::CreateOnly
        } else {
            WriteMode::CreateOrReplace
        };
        over_limit(handle.write(&path, upload, mode).await, limit, &flag)
    };
    let size = result.as_ref().ok().and_then(|w| w.item.size);
    let written = match audited(
        &req,
        &pool,
        &handle,
        "file.upload",
        &path.to_string(),
        size,
        result,
    )
    .await
    {
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
/// stored in DIR under its own name.
pub async fn upload_form(
    req: HttpRequest,
    caller: JiraCaller,
    query: web::Query<FormQuery>,
    mut form: actix_multipart::Multipart,
    broker: web::Data<Broker>,
    pool: web::Data<PgPool>,
    server: web::Data<ServerSettings>,
) -> Result<HttpResponse, ApiError> {
    let handle = authorize(
        &req,
        &broker,
        &pool,
        &caller,
        Need::Write,
        "file.upload",
        &query.path,
    )
    .await?;
    let folder = handle.path(&query.path)?;
    let mode = if query.overwrite {
        WriteMode::CreateOrReplace
    } else {
        WriteMode::CreateOnly
    };
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
        let path: StoragePath = folder
            .join(&handle.path(&name)?, Default::default())
            .map_err(BrokerError::from)?;
        let flag = Arc::new(AtomicBool::new(false));
        let upload = Upload {
            body: pipe(field, server.max_upload_bytes, Arc::clone(&flag)),
            length: None,
        };
        let result = over_limit(
            handle.write(&path, upload, mode).await,
            server.max_upload_bytes,
            &flag,
        );
        let size = result.as_ref().ok().and_then(|w| w.item.size);
        let written = audited(
            &req,
            &pool,
            &handle,
            "file.upload",
            &path.to_string(),
            size,
            result,
        )
        .await?;
        items.push(written.item);
    }
    if items.is_empty() {
        return Err(ApiError::BadRequest("the form carries no file".into()));
    }
    Ok(HttpResponse::Created().json(serde_json::json!({ "items": items })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_parsed() {
        assert_eq!(parse_range("bytes=0-0"), Some(RangeSpec::From(0, Some(0))));
        assert_eq!(parse_range("bytes=100-"), Some(RangeSpec::From(100, None)));
        assert_eq!(parse_range("bytes=-500"), Some(RangeSpec::Suffix(500)));
        assert_eq!(parse_range("bytes=5-1"), None);
        assert_eq!(parse_range("bytes=0-1,5-6"), None);
        assert_eq!(parse_range("items=0-1"), None);
        assert_eq!(parse_range("bytes=-0"), None);
    }

    #[test]
    fn downloads_are_attachments_with_safe_names() {
        let header = content_disposition("rapport \"final\"; ü.html");
        assert!(
            header.starts_with("attachment; filename=\"rapport _final_; _.html\""),
            "{header}"
        );
        assert!(
            header.contains("filename*=UTF-8''rapport%20%22final%22%3B%20%C3%BC%2Ehtml"),
            "{header}"
        );
    }
}
