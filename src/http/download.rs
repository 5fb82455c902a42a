//! Downloads: the file's bytes, or the asked-for range, streamed from the storage with
//! bounded buffers; always an attachment.

use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, web};
use bytes::Bytes;
use futures_util::TryStreamExt;

use super::ApiError;
use super::files::{Done, FileRequest, PathQuery};
use crate::broker::Need;
use crate::metrics::{Direction, Metrics};
use crate::storage::{ByteRange, Item};

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
    file: FileRequest,
    query: web::Query<PathQuery>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    if file.http().method() == Method::HEAD {
        let item = file
            .run(
                Need::Read,
                "file.stat",
                &query.path,
                async |handle, path| Ok(Done::new(handle.stat(&path).await?)),
            )
            .await?;
        let mut response = HttpResponse::Ok();
        file_headers(&mut response, &item);
        // A sized, empty body: actix sends its size as Content-Length and, for HEAD, no body.
        let nothing = futures_util::stream::empty::<Result<Bytes, actix_web::Error>>();
        return Ok(response.body(SizedStream::new(item.size.unwrap_or(0), nothing)));
    }
    let range = file
        .http()
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range);
    let download = file
        .run(
            Need::Read,
            "file.download",
            &query.path,
            async |handle, path| {
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
                let download = handle.read(&path, range).await?;
                // The bytes sent: the range's length, or the whole file.
                let sent = match download.range {
                    Some((start, end)) => Some(end - start + 1),
                    None => download.item.size,
                };
                Ok(Done::new((download, handle.storage_kind())).size(sent))
            },
        )
        .await?;
    let (download, kind) = download;
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
    let transferred = metrics.transfer(kind, Direction::down);
    let body = download.body.inspect_ok(move |chunk| {
        transferred.inc_by(chunk.len() as u64);
    });
    let body = body.map_err(|e| {
        // The status line is gone by now; cutting the stream short tells the client.
        tracing::warn!(error = %e, "download interrupted by the storage");
        actix_web::error::ErrorBadGateway(e.code())
    });
    Ok(response.body(SizedStream::new(length, body)))
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
