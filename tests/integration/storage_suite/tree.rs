//! Checks of the tree: folders, large listings, renames, deletes, health, atomic creation.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use filebridge::storage::{ItemKind, Storage, StorageError, Upload, WriteMode};
use futures_util::{StreamExt, stream};

use super::scratch::{Scratch, bytes_upload};

const MANY: usize = 1500;

/// A folder of 1,500 files is listed completely (every page), each exactly once.
pub async fn large_folder_listing(storage: Arc<dyn Storage>) {
    let s = Scratch::new(storage, "large_folder_listing").await;
    let name = |i: usize| format!("item-{i:04}.txt");
    let results: Vec<Result<(), String>> = stream::iter(0..MANY)
        .map(|i| {
            let (s, name) = (&s, name(i));
            async move {
                let content = i.to_string().into_bytes();
                let len = content.len() as u64;
                let upload = bytes_upload(content, Some(len));
                let write = s.write(&name, upload, WriteMode::CreateOnly);
                write
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("write `{name}`: {e}"))
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        s.fail(e);
    }
    let listing = s.listing("").await;
    if listing.len() != MANY {
        s.fail(format!("listed {} items, wrote {MANY}", listing.len()));
    }
    for i in 0..MANY {
        let name = name(i);
        match listing.get(&name) {
            Some(item)
                if item.kind == ItemKind::File
                    && item.size == Some(i.to_string().len() as u64)
                    && item.path == format!("{}/{name}", s.base) => {}
            Some(item) => s.fail(format!("`{name}` is listed as {item:?}")),
            None => s.fail(format!("`{name}` is missing from the listing")),
        }
    }
    s.finish().await;
}

pub async fn folders_and_stat(storage: Arc<dyn Storage>) {
    let s = Scratch::new(storage, "folders_and_stat").await;
    for attempt in ["first", "second"] {
        let what = format!("create `a/b/c` with its parents ({attempt} time)");
        let item = s.ok(&what, s.storage.create_folder(&s.path("a/b/c")).await);
        if item.kind != ItemKind::Folder
            || item.name != "c"
            || item.path != s.path("a/b/c").to_string()
        {
            s.fail(format!("{what}: answered {item:?}"));
        }
    }
    s.ok(
        "create the existing `a`",
        s.storage.create_folder(&s.path("a")).await,
    );
    let folder = s.ok("stat `a/b`", s.storage.stat(&s.path("a/b")).await);
    if folder.kind != ItemKind::Folder
        || folder.name != "b"
        || folder.path != s.path("a/b").to_string()
    {
        s.fail(format!("stat `a/b`: {folder:?}"));
    }
    if !s.list("a/b/c").await.is_empty() {
        s.fail("an empty folder lists items");
    }
    s.put("a/f.txt", b"12345", WriteMode::CreateOnly).await;
    let file = s.ok("stat `a/f.txt`", s.storage.stat(&s.path("a/f.txt")).await);
    if file.kind != ItemKind::File
        || file.size != Some(5)
        || file.name != "f.txt"
        || file.path != s.path("a/f.txt").to_string()
    {
        s.fail(format!("stat `a/f.txt`: {file:?}"));
    }
    let listing = s.listing("a").await;
    let kinds: Vec<_> = listing
        .values()
        .map(|i| (i.name.as_str(), i.kind))
        .collect();
    if kinds != [("b", ItemKind::Folder), ("f.txt", ItemKind::File)] {
        s.fail(format!("listing `a`: {kinds:?}"));
    }
    s.assert_absent("missing").await;
    s.assert_absent("a/missing/deeper").await;
    let listed = s.storage.list(&s.path("missing")).await;
    s.refused("list `missing`", listed, &["not_found"]);
    let read = s.storage.read(&s.path("missing.txt"), None).await;
    s.refused("read `missing.txt`", read, &["not_found"]);
    let onto_file = s.storage.create_folder(&s.path("a/f.txt")).await;
    s.refused(
        "create a folder where a file is",
        onto_file,
        &["already_exists", "conflict"],
    );
    s.finish().await;
}

pub async fn rename_and_move(storage: Arc<dyn Storage>) {
    let s = Scratch::new(storage, "rename_and_move").await;
    s.put("a.txt", b"alpha", WriteMode::CreateOnly).await;
    let item = s.ok(
        "rename `a.txt` to `b.txt`",
        s.rename("a.txt", "b.txt").await,
    );
    if item.path != s.path("b.txt").to_string() || item.kind != ItemKind::File {
        s.fail(format!("rename `a.txt`: answered {item:?}"));
    }
    s.assert_absent("a.txt").await;
    s.ok(
        "create `dest`",
        s.storage.create_folder(&s.path("dest")).await,
    );
    s.ok(
        "move `b.txt` into `dest`",
        s.rename("b.txt", "dest/b.txt").await,
    );
    s.assert_absent("b.txt").await;
    if s.get("dest/b.txt").await != b"alpha" {
        s.fail("a moved file lost its content");
    }

    s.ok(
        "create `tree/sub`",
        s.storage.create_folder(&s.path("tree/sub")).await,
    );
    s.put("tree/x.txt", b"x", WriteMode::CreateOnly).await;
    s.put("tree/sub/y.txt", b"y", WriteMode::CreateOnly).await;
    let item = s.ok(
        "rename the folder `tree`",
        s.rename("tree", "renamed").await,
    );
    if item.kind != ItemKind::Folder || item.path != s.path("renamed").to_string() {
        s.fail(format!("rename `tree`: answered {item:?}"));
    }
    s.assert_absent("tree").await;
    let names: Vec<String> = s.listing("renamed").await.into_keys().collect();
    if names != ["sub", "x.txt"] {
        s.fail(format!("the renamed folder holds {names:?}"));
    }
    s.ok(
        "move `renamed` into `dest`",
        s.rename("renamed", "dest/renamed").await,
    );
    s.assert_absent("renamed").await;
    if s.get("dest/renamed/sub/y.txt").await != b"y" || s.get("dest/renamed/x.txt").await != b"x" {
        s.fail("a moved folder lost its content");
    }

    s.put("one.txt", b"1", WriteMode::CreateOnly).await;
    s.put("two.txt", b"2", WriteMode::CreateOnly).await;
    let clash = s.rename("one.txt", "two.txt").await;
    s.refused(
        "rename a file onto an existing file",
        clash,
        &["already_exists"],
    );
    if s.get("one.txt").await != b"1" || s.get("two.txt").await != b"2" {
        s.fail("a refused rename changed a file");
    }
    let clash = s.rename("one.txt", "dest").await;
    s.refused(
        "rename a file onto an existing folder",
        clash,
        &["already_exists"],
    );
    s.ok(
        "create `other`",
        s.storage.create_folder(&s.path("other")).await,
    );
    let clash = s.rename("other", "dest").await;
    s.refused(
        "rename a folder onto an existing folder",
        clash,
        &["already_exists"],
    );
    if s.get("dest/b.txt").await != b"alpha" {
        s.fail("a refused folder rename changed the target");
    }
    let missing = s.rename("missing.txt", "anything.txt").await;
    s.refused("rename a missing file", missing, &["not_found"]);
    let into_itself = s.rename("dest", "dest/inside").await;
    s.refused("move a folder into itself", into_itself, &["conflict"]);
    s.finish().await;
}

pub async fn delete(storage: Arc<dyn Storage>) {
    let s = Scratch::new(storage, "delete").await;
    s.put("file.txt", b"bye", WriteMode::CreateOnly).await;
    s.put("keep.txt", b"stay", WriteMode::CreateOnly).await;
    s.ok(
        "create `tree/sub`",
        s.storage.create_folder(&s.path("tree/sub")).await,
    );
    s.put("tree/a.txt", b"a", WriteMode::CreateOnly).await;
    s.put("tree/sub/b.txt", b"b", WriteMode::CreateOnly).await;

    s.ok(
        "delete `file.txt`",
        s.storage.delete(&s.path("file.txt")).await,
    );
    s.assert_absent("file.txt").await;
    s.ok(
        "delete the folder `tree`",
        s.storage.delete(&s.path("tree")).await,
    );
    s.assert_absent("tree").await;
    s.assert_absent("tree/sub/b.txt").await;
    let names: Vec<String> = s.listing("").await.into_keys().collect();
    if names != ["keep.txt"] {
        s.fail(format!("after deleting, the folder holds {names:?}"));
    }
    let again = s.storage.delete(&s.path("file.txt")).await;
    s.refused("delete a deleted file", again, &["not_found"]);
    let missing = s.storage.delete(&s.path("never/was")).await;
    s.refused("delete a missing path", missing, &["not_found"]);
    s.finish().await;
}

pub async fn health(storage: Arc<dyn Storage>) {
    let s = Scratch::new(storage, "health").await;
    s.ok("health", s.storage.health().await);
    s.finish().await;
}

/// Concurrent `CreateOnly` writes to one new name: exactly one wins and its bytes are the
/// file's; every other writer gets `already_exists`. The bodies wait for each other before
/// ending, so all writers pass any early existence check and race at the final step.
pub async fn create_only_is_atomic(storage: Arc<dyn Storage>) {
    const WRITERS: usize = 8;
    let s = Scratch::new(storage, "create_only_is_atomic").await;
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let target = s.path("contested.bin");
    let writes = (0..WRITERS).map(|i| {
        let content = vec![i as u8; 64 * 1024 + i];
        let len = content.len() as u64;
        let barrier = barrier.clone();
        let first: Result<Bytes, StorageError> = Ok(Bytes::from(content));
        // After its bytes, each body waits for the others; bounded, so a store that writes
        // fewer than WRITERS uploads at a time still finishes (with a weaker race).
        let wait = stream::once(async move {
            let _ = tokio::time::timeout(Duration::from_secs(20), barrier.wait()).await;
            Ok(Bytes::new())
        });
        let upload = Upload {
            body: Box::pin(stream::iter([first]).chain(wait)),
            length: Some(len),
        };
        let (storage, target) = (s.storage.clone(), target.clone());
        async move { storage.write(&target, upload, WriteMode::CreateOnly).await }
    });
    let results = futures_util::future::join_all(writes).await;
    let mut winners = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(written) if written.created => winners.push(i),
            Ok(written) => s.fail(format!("writer {i}: answered {written:?}")),
            Err(StorageError::AlreadyExists) => {}
            Err(e) => s.fail(format!("writer {i}: failed with {} ({e})", e.code())),
        }
    }
    let [winner] = winners[..] else {
        s.fail(format!(
            "expected exactly one writer to create the file, got {winners:?}"
        ));
    };
    if s.get("contested.bin").await != vec![winner as u8; 64 * 1024 + winner] {
        s.fail(format!(
            "the file does not hold the bytes of writer {winner}, who won"
        ));
    }
    let names: Vec<String> = s.listing("").await.into_keys().collect();
    if names != ["contested.bin"] {
        s.fail(format!("after the race the folder holds {names:?}"));
    }
    s.finish().await;
}
