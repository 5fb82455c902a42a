//! Downloads: GET with `Range`, streamed with bounded memory. A server that ignores the
//! range and sends the whole file still yields exactly the asked-for bytes.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, HeaderMap, RANGE};
use reqwest::{Method, StatusCode};

use super::client::{Client, SERVER, status_error};
use super::ops;
use crate::storage::http::idle_limited;
use crate::storage::{ByteRange, ByteStream, Download, ItemKind, StorageError, StoragePath};

pub(super) async fn read(
    client: &Client,
    path: &StoragePath,
    range: Option<ByteRange>,
) -> Result<Download, StorageError> {
    // Stat first: GET on a folder answers an HTML index on some servers, which must not be
    // served as the folder's content. It also gives the size a range is checked against.
    let mut item = ops::stat(client, path).await?;
    if item.kind == ItemKind::Folder {
        return Err(StorageError::Conflict(format!("{path} is a folder")));
    }
    if let (Some(range), Some(size)) = (range, item.size)
        && (range.start >= size || range.end.is_some_and(|end| end < range.start))
    {
        return Err(StorageError::RangeNotSatisfiable { size });
    }
    let url = client.url(path, false)?;
    let header = range.map(|r| match r.end {
        Some(end) => format!("bytes={}-{end}", r.start),
        None => format!("bytes={}-", r.start),
    });
    let response = client
        .send(Method::GET, url, |b| match &header {
            Some(value) => b.header(RANGE, value.as_str()),
            None => b,
        })
        .await?;
    let status = response.status();
    let headers = response.headers().clone();
    let idle = client.idle;
    match (status, range) {
        (StatusCode::PARTIAL_CONTENT, Some(asked)) => {
            let (first, last, total) = content_range(&headers).ok_or_else(|| {
                StorageError::Backend("206 without a usable Content-Range".into())
            })?;
            if first != asked.start || last < first {
                return Err(StorageError::Backend(format!(
                    "asked for bytes from {}, the server sent {first}-{last}",
                    asked.start
                )));
            }
            item.size = total.or(item.size);
            let body = window(
                idle_limited(response.bytes_stream(), idle, SERVER),
                0,
                last - first + 1,
            );
            Ok(Download {
                item,
                range: Some((first, last)),
                body: Box::pin(body),
            })
        }
        (StatusCode::OK, Some(asked)) => {
            // The server ignored the range: cut it out of the whole file ourselves.
            let total = content_length(&headers)
                .or(item.size)
                .ok_or_else(|| StorageError::Backend("no length for a range read".into()))?;
            item.size = Some(total);
            if asked.start >= total {
                return Err(StorageError::RangeNotSatisfiable { size: total });
            }
            let last = asked.end.map_or(total - 1, |end| end.min(total - 1));
            let body = window(
                idle_limited(response.bytes_stream(), idle, SERVER),
                asked.start,
                last - asked.start + 1,
            );
            Ok(Download {
                item,
                range: Some((asked.start, last)),
                body: Box::pin(body),
            })
        }
        (StatusCode::OK, None) => {
            item.size = content_length(&headers).or(item.size);
            let body: ByteStream = Box::pin(idle_limited(response.bytes_stream(), idle, SERVER));
            Ok(Download {
                item,
                range: None,
                body,
            })
        }
        (StatusCode::RANGE_NOT_SATISFIABLE, _) => {
            let size = content_range(&headers)
                .and_then(|(_, _, total)| total)
                .or(item.size)
                .unwrap_or(0);
            Err(StorageError::RangeNotSatisfiable { size })
        }
        _ => Err(status_error(status, &headers, "GET")),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `bytes first-last/total` (total may be `*`), or `bytes */total` as `(0, 0, total)`.
fn content_range(headers: &HeaderMap) -> Option<(u64, u64, Option<u64>)> {
    let text = headers.get(CONTENT_RANGE)?.to_str().ok()?.trim();
    let rest = text.strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let total = total.trim().parse().ok();
    if span.trim() == "*" {
        return Some((0, 0, total));
    }
    let (first, last) = span.split_once('-')?;
    Some((first.trim().parse().ok()?, last.trim().parse().ok()?, total))
}

/// Skips `skip` bytes, then passes exactly `take` bytes; a body that ends sooner ends in an
/// error, so a short read is never mistaken for the whole range.
fn window<S>(stream: S, skip: u64, take: u64) -> impl Stream<Item = Result<Bytes, StorageError>>
where
    S: Stream<Item = Result<Bytes, StorageError>> + Send + 'static,
{
    let stream = Box::pin(stream);
    futures_util::stream::unfold(
        (stream, skip, take),
        |(mut stream, mut skip, mut take)| async move {
            loop {
                if take == 0 {
                    return None;
                }
                match stream.next().await {
                    None => {
                        let short = StorageError::Backend(format!(
                            "the server's answer ended {take} bytes early"
                        ));
                        return Some((Err(short), (stream, 0, 0)));
                    }
                    Some(Err(e)) => return Some((Err(e), (stream, 0, 0))),
                    Some(Ok(mut chunk)) => {
                        let len = chunk.len() as u64;
                        if skip >= len {
                            skip -= len;
                            continue;
                        }
                        // skip < len, so it fits in usize.
                        chunk = chunk.slice(usize::try_from(skip).unwrap_or(0)..);
                        skip = 0;
                        if chunk.len() as u64 > take {
                            chunk.truncate(usize::try_from(take).unwrap_or(0));
                        }
                        take -= chunk.len() as u64;
                        return Some((Ok(chunk), (stream, skip, take)));
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    async fn collect(skip: u64, take: u64, chunks: &[&'static str]) -> Result<String, String> {
        let stream = futures_util::stream::iter(
            chunks
                .iter()
                .map(|c| Ok(Bytes::from_static(c.as_bytes())))
                .collect::<Vec<_>>(),
        );
        let mut out = String::new();
        let mut window = Box::pin(window(stream, skip, take));
        while let Some(chunk) = window.next().await {
            match chunk {
                Ok(c) => out.push_str(std::str::from_utf8(&c).unwrap()),
                Err(e) => return Err(format!("{out}|{e}")),
            }
        }
        Ok(out)
    }

    #[tokio::test]
    async fn windows_cut_exactly_the_range() {
        assert_eq!(
            collect(0, 10, &["0123", "456789", "abc"]).await.unwrap(),
            "0123456789"
        );
        assert_eq!(
            collect(5, 3, &["0123", "456789", "abc"]).await.unwrap(),
            "567"
        );
        assert_eq!(collect(4, 1, &["0123", "456789"]).await.unwrap(), "4");
        assert_eq!(
            collect(10, 3, &["0123", "456789", "abc"]).await.unwrap(),
            "abc"
        );
        let short = collect(2, 5, &["0123"]).await.unwrap_err();
        assert!(short.starts_with("23|"), "{short}");
    }

    #[test]
    fn content_range_forms() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_RANGE,
            HeaderValue::from_static("bytes 100-199/1234"),
        );
        assert_eq!(content_range(&h), Some((100, 199, Some(1234))));
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 0-0/*"));
        assert_eq!(content_range(&h), Some((0, 0, None)));
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes */77"));
        assert_eq!(content_range(&h), Some((0, 0, Some(77))));
        h.insert(CONTENT_RANGE, HeaderValue::from_static("items 1-2/3"));
        assert_eq!(content_range(&h), None);
    }
}
