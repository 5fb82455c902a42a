//! Reading a file, whole or a byte range, as a stream with bounded memory.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::{blocking, paths};
use crate::storage::{ByteRange, ByteStream, Download, StorageError, StoragePath};

/// Bytes read per chunk: what one download holds in memory at a time.
const CHUNK: usize = 64 * 1024;

pub(super) async fn read(
    root: Arc<PathBuf>,
    path: &StoragePath,
    range: Option<ByteRange>,
) -> Result<Download, StorageError> {
    let target = path.clone();
    let (file, item) = blocking(move || {
        let location = paths::resolve(&root, &target)?;
        let file = std::fs::File::open(&location).map_err(paths::lookup)?;
        // The size comes from the open file, so it matches the bytes this handle can read.
        let metadata = file.metadata()?;
        if metadata.is_dir() {
            return Err(StorageError::Conflict(format!(
                "`{target}` is a folder, not a file"
            )));
        }
        Ok((file, paths::item_at(&target, &metadata)))
    })
    .await?;
    let size = item.size.unwrap_or(0);
    let (start, length, served) = match range {
        None => (0, size, None),
        Some(range) => {
            let (start, end) = clamp(range, size)?;
            (start, end - start + 1, Some((start, end)))
        }
    };
    let mut file = tokio::fs::File::from_std(file);
    if start > 0 {
        file.seek(SeekFrom::Start(start)).await?;
    }
    Ok(Download {
        item,
        range: served,
        body: exact(file.take(length), length),
    })
}

/// The inclusive range to serve: an end past the file is clamped to its last byte; a start
/// at or past the end (or an end before the start) cannot be served.
fn clamp(range: ByteRange, size: u64) -> Result<(u64, u64), StorageError> {
    let unsatisfiable = StorageError::RangeNotSatisfiable { size };
    if range.start >= size {
        return Err(unsatisfiable);
    }
    let last = size - 1;
    let end = range.end.map_or(last, |end| end.min(last));
    if end < range.start {
        return Err(unsatisfiable);
    }
    Ok((range.start, end))
}

/// Streams `reader` in bounded chunks and ends with an error, rather than quietly, when fewer
/// than `length` bytes came (the file shrank while being read): the HTTP layer has already
/// announced the length, so a short body must look like a failure.
fn exact(reader: impl AsyncRead + Unpin + Send + 'static, length: u64) -> ByteStream {
    let chunks = ReaderStream::with_capacity(reader, CHUNK);
    let state = (chunks, 0u64, false);
    Box::pin(stream::unfold(
        state,
        move |(mut chunks, sent, finished)| async move {
            if finished {
                return None;
            }
            match chunks.next().await {
                Some(Ok(bytes)) => {
                    let sent = sent + bytes.len() as u64;
                    Some((Ok(bytes), (chunks, sent, false)))
                }
                Some(Err(e)) => Some((Err(e.into()), (chunks, sent, true))),
                None if sent < length => Some((
                    Err(StorageError::Backend(format!(
                        "the file shrank while being read: {sent} of {length} bytes"
                    ))),
                    (chunks, sent, true),
                )),
                None => None,
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u64, end: Option<u64>) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn ranges_are_clamped_or_refused() {
        assert_eq!(clamp(range(0, Some(0)), 10).unwrap(), (0, 0));
        assert_eq!(clamp(range(3, None), 10).unwrap(), (3, 9));
        assert_eq!(clamp(range(3, Some(99)), 10).unwrap(), (3, 9));
        for (start, end, size) in [(10, None, 10), (0, None, 0), (5, Some(4), 10)] {
            match clamp(range(start, end), size) {
                Err(StorageError::RangeNotSatisfiable { size: s }) => assert_eq!(s, size),
                other => panic!("{start}-{end:?} of {size}: {other:?}"),
            }
        }
    }
}
