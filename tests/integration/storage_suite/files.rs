//! Checks of file content: round trips, ranges, write modes, cut-off uploads.

use std::sync::Arc;

use bytes::Bytes;
use filebridge::storage::{ByteRange, ItemKind, Storage, StorageError, Upload, WriteMode};
use futures_util::stream;

use super::scratch::{Pattern, Scratch, Sent, bytes_upload, digest, generated_body};

/// The size of the large round trip.
pub const LARGE: u64 = 200 * 1024 * 1024;
/// Past the multipart / chunked-upload thresholds backends commonly use (5, 8 and 16 MiB),
/// and not a multiple of any chunk size.
const MEDIUM: u64 = 17 * 1024 * 1024 + 1;

/// Sends a generated body, then checks the write's answer, `stat`, and a full download hashed
/// as it streams against the hash of what was sent.
async fn round_trip(s: &Scratch, name: &str, seed: u64, len: u64, length_known: bool) {
    let sent = Sent::default();
    let upload = Upload {
        body: generated_body(seed, len, sent.clone(), false),
        length: length_known.then_some(len),
    };
    let what = format!("write the {len}-byte `{name}` (length given: {length_known})");
    let written = s.ok(&what, s.write(name, upload, WriteMode::CreateOnly).await);
    let (sent_hash, sent_len) = sent.result();
    if sent_len != len {
        s.fail(format!(
            "{what}: the store took only {sent_len} bytes of the body"
        ));
    }
    if !written.created || written.item.size != Some(len) || written.item.kind != ItemKind::File {
        s.fail(format!("{what}: answered {:?}", written));
    }
    let stat = s.ok(
        &format!("stat `{name}`"),
        s.storage.stat(&s.path(name)).await,
    );
    if stat.size != Some(len) {
        s.fail(format!("stat `{name}`: {:?} bytes, sent {len}", stat.size));
    }
    let what = format!("read `{name}`");
    let download = s.ok(&what, s.storage.read(&s.path(name), None).await);
    if download.range.is_some() || download.item.size != Some(len) {
        s.fail(format!(
            "{what}: range {:?} and size {:?} for a whole-file read of {len} bytes",
            download.range, download.item.size
        ));
    }
    let (got_hash, got_len) = digest(s, &what, download.body).await;
    if (got_hash.as_str(), got_len) != (sent_hash.as_str(), len) {
        s.fail(format!(
            "{what}: got {got_len} bytes with SHA-256 {got_hash}, sent {len} with {sent_hash}"
        ));
    }
}

/// 0-byte files (no chunk at all, and one empty chunk) and 1-byte files, with and without a
/// known length.
pub async fn round_trip_small(storage: Arc<dyn Storage>) {
    let s = Scratch::new(storage, "round_trip_small").await;
    let empty: Upload = Upload {
        body: Box::pin(stream::empty()),
        length: Some(0),
    };
    let written = s.write("empty-known.bin", empty, WriteMode::CreateOnly);
    s.ok("write an empty body of known length", written.await);
    let written = s.write(
        "empty-unknown.bin",
        bytes_upload(Vec::new(), None),
        WriteMode::CreateOnly,
    );
    s.ok("write an empty chunk of unknown length", written.await);
    let written = s.write(
        "one-unknown.bin",
        bytes_upload(vec![0x00], None),
        WriteMode::CreateOnly,
    );
    s.ok("write one byte of unknown length", written.await);
    s.put("one-known.bin", &[0xff], WriteMode::CreateOnly).await;
    for (name, content) in [
        ("empty-known.bin", &[][..]),
        ("empty-unknown.bin", &[]),
        ("one-unknown.bin", &[0x00]),
        ("one-known.bin", &[0xff]),
    ] {
        if s.get(name).await != content {
            s.fail(format!("`{name}` does not read back as written"));
        }
    }
    let listing = s.listing("").await;
    let sizes: Vec<_> = listing
        .values()
        .map(|i| (i.name.as_str(), i.size))
        .collect();
    let expected = [
        ("empty-known.bin", Some(0)),
        ("empty-unknown.bin", Some(0)),
        ("one-known.bin", Some(1)),
        ("one-unknown.bin", Some(1)),
    ];
    if sizes != expected {
        s.fail(format!("listing shows {sizes:?}, expected {expected:?}"));
    }
    s.finish().await;
}

/// A 17 MiB + 1 byte file of known length.
pub async fn round_trip_medium(storage: Arc<dyn Storage>) {
    let s = Scratch::new(storage, "round_trip_medium").await;
    round_trip(&s, "medium.bin", 17, MEDIUM, true).await;
    s.finish().await;
}

/// A 200 MiB file of unknown length (as browsers' multipart uploads arrive), generated and
/// hashed as it streams, never held in memory.
pub async fn round_trip_large(storage: Arc<dyn Storage>) {
    let s = Scratch::new(storage, "round_trip_large").await;
    round_trip(&s, "large.bin", 200, LARGE, false).await;
    s.finish().await;
}

pub async fn range_reads(storage: Arc<dyn Storage>) {
    let s = Scratch::new(storage, "range_reads").await;
    let content = Pattern::new(7).bytes(1000);
    s.put("range.bin", &content, WriteMode::CreateOnly).await;
    s.put("empty.bin", &[], WriteMode::CreateOnly).await;
    let cases = [
        ("the first byte", 0, Some(0), (0, 0)),
        ("a middle range", 100, Some(199), (100, 199)),
        ("a suffix to the end", 900, None, (900, 999)),
        ("an end past the file", 990, Some(5000), (990, 999)),
        ("the last byte", 999, Some(999), (999, 999)),
        ("everything as a range", 0, None, (0, 999)),
    ];
    for (label, start, end, (first, last)) in cases {
        let what = format!("read {label} (bytes={start}-{end:?})");
        let range = Some(ByteRange { start, end });
        let download = s.ok(&what, s.storage.read(&s.path("range.bin"), range).await);
        if download.range != Some((first, last)) || download.item.size != Some(1000) {
            s.fail(format!(
                "{what}: served {:?} of {:?} bytes, expected {first}-{last} of 1000",
                download.range, download.item.size
            ));
        }
        let mut body = Vec::new();
        let mut stream = download.body;
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            body.extend_from_slice(&s.ok(&what, chunk));
        }
        if body != content[first as usize..=last as usize] {
            s.fail(format!(
                "{what}: {} bytes that differ from the file's",
                body.len()
            ));
        }
    }
    for (name, start, end, size) in [
        ("range.bin", 1000, None, 1000),
        ("range.bin", 1000, Some(2000), 1000),
        ("range.bin", 5000, None, 1000),
        ("empty.bin", 0, None, 0),
    ] {
        let what = format!("read bytes={start}-{end:?} of the {size}-byte `{name}`");
        let read = s
            .storage
            .read(&s.path(name), Some(ByteRange { start, end }))
            .await;
        match s.refused(&what, read, &["range_not_satisfiable"]) {
            StorageError::RangeNotSatisfiable { size: told } if told == size => {}
            other => s.fail(format!("{what}: {other:?}, expected the size {size}")),
        }
    }
    s.finish().await;
}

pub async fn write_modes(storage: Arc<dyn Storage>) {
    let s = Scratch::new(storage, "write_modes").await;
    let first = s
        .put("file.txt", b"first version", WriteMode::CreateOnly)
        .await;
    if !first.created || first.item.size != Some(13) {
        s.fail(format!("a new file: answered {first:?}"));
    }
    let again = s.write(
        "file.txt",
        bytes_upload(b"second".to_vec(), Some(6)),
        WriteMode::CreateOnly,
    );
    s.refused(
        "CreateOnly onto an existing file",
        again.await,
        &["already_exists"],
    );
    if s.get("file.txt").await != b"first version" {
        s.fail("a refused CreateOnly changed the existing file");
    }
    // Shorter than before: a replacement must not leave the old tail behind.
    let replaced = s.put("file.txt", b"v3", WriteMode::CreateOrReplace).await;
    if replaced.created || replaced.item.size != Some(2) {
        s.fail(format!(
            "replacing: answered {replaced:?}, expected created=false, 2 bytes"
        ));
    }
    if s.get("file.txt").await != b"v3" {
        s.fail("CreateOrReplace did not replace the content");
    }
    let new = s.put("new.txt", b"new", WriteMode::CreateOrReplace).await;
    if !new.created {
        s.fail("CreateOrReplace of a new file answered created=false");
    }
    s.ok(
        "create `folder`",
        s.storage.create_folder(&s.path("folder")).await,
    );
    for mode in [WriteMode::CreateOnly, WriteMode::CreateOrReplace] {
        let onto = s.write("folder", bytes_upload(b"x".to_vec(), Some(1)), mode);
        let what = format!("{mode:?} where a folder is");
        s.refused(&what, onto.await, &["already_exists", "conflict"]);
    }
    let listing = s.listing("").await;
    let kinds: Vec<_> = listing
        .values()
        .map(|i| (i.name.as_str(), i.kind, i.size))
        .collect();
    let expected = [
        ("file.txt", ItemKind::File, Some(2)),
        ("folder", ItemKind::Folder, None),
        ("new.txt", ItemKind::File, Some(3)),
    ];
    if kinds != expected {
        s.fail(format!("listing shows {kinds:?}, expected {expected:?}"));
    }
    s.finish().await;
}

/// A body that sends `len` generated bytes and then fails.
fn failing(seed: u64, len: u64) -> Upload {
    Upload {
        body: generated_body(seed, len, Sent::default(), true),
        length: None,
    }
}

/// A body that announces `announced` bytes but ends cleanly after `len`.
fn short(len: u64, announced: u64) -> Upload {
    let chunk: Result<Bytes, StorageError> = Ok(Bytes::from(Pattern::new(3).bytes(len as usize)));
    Upload {
        body: Box::pin(stream::iter([chunk])),
        length: Some(announced),
    }
}

/// An upload cut off mid-stream fails and leaves nothing under the target name, and a file
/// that was there keeps its content.
pub async fn cut_off_upload(storage: Arc<dyn Storage>) {
    let s = Scratch::new(storage, "cut_off_upload").await;
    let attempts = [
        (
            "cut-new.bin",
            failing(1, MEDIUM),
            WriteMode::CreateOrReplace,
            "after 17 MiB",
        ),
        (
            "cut-create-only.bin",
            failing(2, 200_000),
            WriteMode::CreateOnly,
            "after 200 kB",
        ),
        (
            "short.bin",
            short(256 * 1024, 1024 * 1024),
            WriteMode::CreateOrReplace,
            "short",
        ),
    ];
    for (name, upload, mode, how) in attempts {
        let what = format!("write `{name}` cut off {how}");
        if s.write(name, upload, mode).await.is_ok() {
            s.fail(format!("{what}: succeeded"));
        }
        s.assert_absent(name).await;
    }
    let left: Vec<_> = s.list("").await.into_iter().map(|i| i.name).collect();
    if !left.is_empty() {
        s.fail(format!("cut-off uploads left {left:?} in the folder"));
    }
    s.put("keep.txt", b"old content", WriteMode::CreateOnly)
        .await;
    for (upload, how) in [(failing(3, 300_000), "cut off"), (short(10, 20), "short")] {
        let what = format!("replace `keep.txt` with an upload {how}");
        let write = s.write("keep.txt", upload, WriteMode::CreateOrReplace);
        if write.await.is_ok() {
            s.fail(format!("{what}: succeeded"));
        }
        if s.get("keep.txt").await != b"old content" {
            s.fail(format!("{what}: the previous content is gone"));
        }
    }
    s.put("after.txt", b"still works", WriteMode::CreateOnly)
        .await;
    let names: Vec<String> = s.listing("").await.into_keys().collect();
    if names != ["after.txt", "keep.txt"] {
        s.fail(format!(
            "after the cut-off uploads the folder holds {names:?}"
        ));
    }
    s.finish().await;
}
