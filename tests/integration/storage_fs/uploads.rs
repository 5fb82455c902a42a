//! Cut-off and abandoned uploads leave nothing behind, not even their temporary files.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use filebridge::storage::{StorageError, Upload, WriteMode};
use futures_util::stream;

use super::{chunk, cut_off, on_disk, open_at, path};

#[tokio::test]
async fn a_cut_off_upload_leaves_neither_a_temporary_file_nor_the_target() {
    let root = tempfile::tempdir().expect("tempdir");
    let storage = open_at(root.path());
    for mode in [WriteMode::CreateOnly, WriteMode::CreateOrReplace] {
        let result = storage.write(&path("cut.bin"), cut_off(3), mode).await;
        assert!(
            matches!(result, Err(StorageError::Interrupted(_))),
            "{mode:?}: {:?}",
            result.map(|w| w.item)
        );
        assert!(
            on_disk(root.path()).is_empty(),
            "{mode:?} left {:?}",
            on_disk(root.path())
        );
    }
    let short = Upload {
        body: Box::pin(stream::iter([chunk(b"only this")])),
        length: Some(100),
    };
    let result = storage
        .write(&path("short.bin"), short, WriteMode::CreateOnly)
        .await;
    assert!(
        matches!(result, Err(StorageError::Interrupted(_))),
        "short body accepted"
    );
    assert!(
        on_disk(root.path()).is_empty(),
        "a short body left {:?}",
        on_disk(root.path())
    );

    std::fs::write(root.path().join("keep.txt"), b"old").expect("seed keep.txt");
    let result = storage
        .write(&path("keep.txt"), cut_off(2), WriteMode::CreateOrReplace)
        .await;
    assert!(matches!(result, Err(StorageError::Interrupted(_))));
    assert_eq!(on_disk(root.path()), ["keep.txt"]);
    assert_eq!(
        std::fs::read(root.path().join("keep.txt")).expect("read"),
        b"old"
    );
}

/// Waits until a temporary upload file shows up in `dir`.
async fn temporary_file_in(dir: &Path) -> String {
    let appears = async {
        loop {
            let names = on_disk(dir);
            if let Some(name) = names.into_iter().find(|n| n.starts_with(".filebridge-")) {
                return name;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), appears)
        .await
        .expect("no temporary file appeared within 10 s")
}

/// A client that goes away mid-upload drops the write's future: the temporary file, which
/// lives in the target folder and is hidden from listings meanwhile, must go with it.
#[tokio::test]
async fn an_abandoned_upload_removes_its_temporary_file() {
    let parent = tempfile::tempdir().expect("tempdir");
    let root = parent.path().join("root");
    std::fs::create_dir_all(root.join("sub")).expect("create root/sub");
    let storage = open_at(&root);
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, StorageError>>(1);
    let body = stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    let upload = Upload {
        body: Box::pin(body),
        length: None,
    };
    sender.send(chunk(b"the first part")).await.expect("send");
    let target = path("sub/file.bin");
    let mut write = storage.write(&target, upload, WriteMode::CreateOrReplace);
    let sub = root.join("sub");
    let temporary = tokio::select! {
        result = &mut write => {
            panic!("the write ended while its body was open: {:?}", result.map(|w| w.item))
        }
        name = temporary_file_in(&sub) => name,
    };
    assert!(temporary.ends_with(".part"), "{temporary}");
    assert_eq!(
        on_disk(parent.path()),
        ["root"],
        "a file appeared beside the root"
    );
    assert_eq!(
        on_disk(&root),
        ["sub"],
        "a file appeared outside the target folder"
    );
    let listed = storage.list(&path("sub")).await.expect("list sub");
    assert!(
        listed.is_empty(),
        "the listing shows the upload in progress: {listed:?}"
    );

    drop(write);
    assert!(
        on_disk(&root.join("sub")).is_empty(),
        "left {:?}",
        on_disk(&root.join("sub"))
    );
    drop(sender);
}
