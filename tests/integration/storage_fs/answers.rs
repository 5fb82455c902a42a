//! What only a directory answers: its settings, a missing parent, reserved temporary names,
//! NFD names on disk, a root that disappears.

use std::collections::HashMap;

use filebridge::storage::{StorageError, StoragePath, WriteMode, registry};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::{bytes, egress, on_disk, open_at, open_with, path};

#[tokio::test]
async fn open_refuses_bad_settings_with_a_clear_message() {
    let message = |settings: Value| match open_with(settings.clone()) {
        Ok(_) => panic!("{settings} was accepted"),
        Err(e) => e.to_string(),
    };
    let relative = message(json!({ "root": "relative/dir" }));
    assert!(
        relative.contains("absolute") && relative.contains("relative/dir"),
        "{relative}"
    );
    let missing = format!("/nonexistent-{}", uuid::Uuid::new_v4().simple());
    let text = message(json!({ "root": missing }));
    assert!(
        text.contains("does not exist") && text.contains(&missing),
        "{text}"
    );
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    let text = message(json!({ "root": file.path() }));
    assert!(text.contains("not a directory"), "{text}");
    let text = message(json!({}));
    assert!(text.contains("missing field `root`"), "{text}");
    let dir = tempfile::tempdir().expect("tempdir");
    let text = message(json!({ "root": dir.path(), "rot": "/typo" }));
    assert!(text.contains("unknown field `rot`"), "{text}");
    let secrets = HashMap::from([("password".to_string(), SecretString::from("hunter2"))]);
    let refused = registry::open(
        "filesystem",
        &json!({ "root": dir.path() }),
        &secrets,
        &egress(),
    );
    let text = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.contains("no secrets") && !text.contains("hunter2"),
        "{text}"
    );

    assert!(!open_at(dir.path()).name_rules().windows);
    let windows = open_with(json!({ "root": dir.path(), "windows_names": true })).expect("open");
    assert!(windows.name_rules().windows);
}

#[tokio::test]
async fn directory_specific_answers() {
    let root = tempfile::tempdir().expect("tempdir");
    let storage = open_at(root.path());
    std::fs::write(root.path().join("file.txt"), b"x").expect("seed");

    let write = storage
        .write(
            &path("no/such/folder.txt"),
            bytes(b"x"),
            WriteMode::CreateOnly,
        )
        .await;
    assert!(
        matches!(write, Err(StorageError::NotFound)),
        "a missing parent"
    );
    let write = storage
        .write(
            &path("file.txt/inner.txt"),
            bytes(b"x"),
            WriteMode::CreateOnly,
        )
        .await;
    assert!(
        matches!(write, Err(StorageError::Conflict(_))),
        "a file as parent"
    );
    let read = storage.read(&StoragePath::root(), None).await;
    assert!(
        matches!(read, Err(StorageError::Conflict(_))),
        "reading a folder"
    );
    let deleted = storage.delete(&StoragePath::root()).await;
    assert!(
        matches!(deleted, Err(StorageError::Conflict(_))),
        "deleting the root"
    );
    let listed = storage.list(&path("file.txt")).await;
    assert!(
        matches!(listed, Err(StorageError::Conflict(_))),
        "listing a file"
    );

    // Leftovers of a crash are hidden, and the names are filebridge's own.
    std::fs::write(root.path().join(".filebridge-0123.part"), b"partial").expect("seed");
    let names: Vec<String> = storage
        .list(&StoragePath::root())
        .await
        .expect("list")
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["file.txt"]);
    let reserved = storage.read(&path(".filebridge-0123.part"), None).await;
    assert!(
        matches!(reserved, Err(StorageError::InvalidName(_))),
        "reading a temporary file"
    );
    let write = storage
        .write(
            &path(".filebridge-x.part"),
            bytes(b"x"),
            WriteMode::CreateOnly,
        )
        .await;
    assert!(
        matches!(write, Err(StorageError::InvalidName(_))),
        "writing one"
    );

    // A share written by macOS clients holds NFD names; requests arrive in NFC.
    std::fs::write(root.path().join("Cafe\u{301}.txt"), b"nfd").expect("seed");
    let nfc = path("Caf\u{e9}.txt");
    let listed = storage.list(&StoragePath::root()).await.expect("list");
    assert!(
        listed
            .iter()
            .any(|i| i.name == "Caf\u{e9}.txt" && i.path == "Caf\u{e9}.txt")
    );
    let stat = storage.stat(&nfc).await.expect("stat the NFC name");
    assert_eq!(stat.size, Some(3));
    let again = storage
        .write(&nfc, bytes(b"dup"), WriteMode::CreateOnly)
        .await;
    assert!(
        matches!(again, Err(StorageError::AlreadyExists)),
        "an NFC twin was created"
    );

    // Renaming only the case of a name is a rename (on this case-sensitive disk an ordinary
    // one; on a case-insensitive share the target "exists" as the source itself).
    storage
        .rename(&path("file.txt"), &path("FILE.txt"))
        .await
        .expect("case-only rename");
    assert!(on_disk(root.path()).contains(&"FILE.txt".to_string()));
}

#[tokio::test]
async fn health_fails_when_the_root_is_gone() {
    let parent = tempfile::tempdir().expect("tempdir");
    let root = parent.path().join("root");
    std::fs::create_dir(&root).expect("mkdir");
    let storage = open_at(&root);
    storage.health().await.expect("healthy at first");
    std::fs::remove_dir(&root).expect("remove the root");
    match storage.health().await {
        Err(StorageError::Unavailable(message)) => assert!(message.contains("gone"), "{message}"),
        other => panic!("health of a removed root: {other:?}"),
    }
}
