//! Cutting an upload's stream into the parts of a multipart upload.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::storage::{ByteStream, StorageError, Upload};

/// Bodies up to this size go in one `PutObject`; larger ones in parts of (at least) this
/// size. S3 wants parts of 5 MiB or more, except the last.
pub(super) const PART_SIZE: usize = 8 * 1024 * 1024;

/// S3 allows at most this many parts per upload.
pub(super) const MAX_PARTS: usize = 10_000;

/// S3's largest object.
const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024 * 1024;

/// The part size for a body of known length: 8 MiB, or more (in whole MiB) when 10,000
/// parts of 8 MiB would not hold it. Unknown lengths use 8 MiB, which caps them at 78 GiB.
pub(super) fn part_size(length: Option<u64>) -> Result<usize, StorageError> {
    let Some(length) = length else {
        return Ok(PART_SIZE);
    };
    if length > MAX_OBJECT_BYTES {
        return Err(StorageError::TooLarge(
            "S3 stores objects of at most 5 TiB".into(),
        ));
    }
    const MIB: u64 = 1024 * 1024;
    let needed = length.div_ceil(MAX_PARTS as u64).div_ceil(MIB) * MIB;
    let size = needed.max(PART_SIZE as u64);
    usize::try_from(size)
        .map_err(|_| StorageError::TooLarge("the part size does not fit in memory".into()))
}

/// Cuts the incoming stream into parts, checking it against its announced length.
pub(super) struct PartReader {
    body: ByteStream,
    expected: Option<u64>,
    part_size: usize,
    /// The unread rest of the last chunk.
    leftover: Bytes,
    pub read: u64,
    pub ended: bool,
}

impl PartReader {
    pub fn new(upload: Upload, part_size: usize) -> Self {
        Self {
            body: upload.body,
            expected: upload.length,
            part_size,
            leftover: Bytes::new(),
            read: 0,
            ended: false,
        }
    }

    /// The next part: full, or shorter (possibly empty) when the stream ended. When the
    /// length is known and reached, the stream's end is confirmed before returning, so a
    /// body of exactly one part is known to be complete.
    pub async fn next_part(&mut self) -> Result<Bytes, StorageError> {
        let capacity = match self.expected {
            Some(n) => usize::try_from(n.saturating_sub(self.read))
                .unwrap_or(self.part_size)
                .min(self.part_size)
                .saturating_add(self.leftover.len())
                .min(self.part_size),
            // Grows by doubling up to one part: a tiny upload does not reserve 8 MiB.
            None => 256 * 1024,
        };
        let mut part = BytesMut::with_capacity(capacity);
        loop {
            if !self.leftover.is_empty() {
                let take = self.leftover.len().min(self.part_size - part.len());
                part.extend_from_slice(&self.leftover.split_to(take));
            }
            let full = part.len() == self.part_size;
            let all_announced = self.expected.is_some_and(|n| self.read >= n);
            if self.ended || (full && !all_announced) || (full && !self.leftover.is_empty()) {
                break;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => {
                    self.read += chunk.len() as u64;
                    if let Some(n) = self.expected
                        && self.read > n
                    {
                        return Err(StorageError::Interrupted(format!(
                            "the body is longer than the announced {n} bytes"
                        )));
                    }
                    self.leftover = chunk;
                }
                Some(Err(e)) => return Err(e),
                None => {
                    self.ended = true;
                    if let Some(n) = self.expected
                        && self.read < n
                    {
                        return Err(StorageError::Interrupted(format!(
                            "the body ended after {} of {n} bytes",
                            self.read
                        )));
                    }
                }
            }
        }
        Ok(part.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn upload(chunks: Vec<Result<Bytes, StorageError>>, length: Option<u64>) -> Upload {
        Upload {
            body: Box::pin(stream::iter(chunks)),
            length,
        }
    }

    fn bytes(n: usize) -> Result<Bytes, StorageError> {
        Ok(Bytes::from(vec![7u8; n]))
    }

    #[test]
    fn part_sizes_grow_only_for_huge_known_lengths() {
        assert_eq!(part_size(None).unwrap(), PART_SIZE);
        assert_eq!(part_size(Some(1)).unwrap(), PART_SIZE);
        let most_in_default_parts = (MAX_PARTS * PART_SIZE) as u64;
        assert_eq!(part_size(Some(most_in_default_parts)).unwrap(), PART_SIZE);
        assert!(part_size(Some(most_in_default_parts + 1)).unwrap() > PART_SIZE);
        let huge = 1024 * 1024 * 1024 * 1024;
        let size = part_size(Some(huge)).unwrap() as u64;
        assert!(size * MAX_PARTS as u64 >= huge && size.is_multiple_of(1024 * 1024));
        assert!(part_size(Some(MAX_OBJECT_BYTES + 1)).is_err());
    }

    #[tokio::test]
    async fn parts_are_cut_at_the_part_size_across_chunks() {
        let mut reader = PartReader::new(upload(vec![bytes(5), bytes(7), bytes(3)], None), 4);
        let mut sizes = Vec::new();
        loop {
            let part = reader.next_part().await.unwrap();
            sizes.push(part.len());
            if part.is_empty() {
                break;
            }
        }
        assert_eq!(sizes, vec![4, 4, 4, 3, 0]);
        assert_eq!(reader.read, 15);
    }

    #[tokio::test]
    async fn a_body_of_exactly_its_announced_length_ends_in_one_part() {
        let mut reader = PartReader::new(upload(vec![bytes(2), bytes(2)], Some(4)), 4);
        assert_eq!(reader.next_part().await.unwrap().len(), 4);
        assert!(
            reader.ended,
            "the end is confirmed, so one PutObject suffices"
        );
    }

    #[tokio::test]
    async fn short_long_and_broken_bodies_are_refused() {
        let mut short = PartReader::new(upload(vec![bytes(3)], Some(10)), 4);
        assert!(matches!(
            short.next_part().await,
            Err(StorageError::Interrupted(_))
        ));

        let mut long = PartReader::new(upload(vec![bytes(3), bytes(3)], Some(4)), 4);
        assert!(matches!(
            long.next_part().await,
            Err(StorageError::Interrupted(_))
        ));

        let cut = vec![
            bytes(4),
            Err(StorageError::Interrupted("client gone".into())),
        ];
        let mut broken = PartReader::new(upload(cut, None), 4);
        assert_eq!(broken.next_part().await.unwrap().len(), 4);
        assert!(matches!(
            broken.next_part().await,
            Err(StorageError::Interrupted(_))
        ));
    }
}
