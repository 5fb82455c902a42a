//! Nothing is read or written outside the root: symbolic links out of it are refused, and
//! every file filebridge creates lands under it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use filebridge::storage::{ItemKind, StorageError, StoragePath, WriteMode};

use super::{bytes, cut_off, on_disk, open_at, path};

#[tokio::test]
async fn symbolic_links_out_of_the_root_are_refused() {
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("secret.txt"), b"secret").expect("seed secret");
    let root = tempfile::tempdir().expect("tempdir");
    let r = root.path();
    std::os::unix::fs::symlink(outside.path(), r.join("escape")).expect("link");
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), r.join("escape.txt"))
        .expect("link");
    std::os::unix::fs::symlink(r.join("nowhere"), r.join("dangling")).expect("link");
    std::fs::create_dir(r.join("real")).expect("mkdir");
    std::fs::write(r.join("real/f.txt"), b"inside").expect("seed");
    std::os::unix::fs::symlink(r.join("real"), r.join("alias")).expect("link");
    let storage = open_at(r);

    let denied = |what: &str, result: Result<(), StorageError>| {
        assert!(
            matches!(result, Err(StorageError::PermissionDenied)),
            "{what}: {result:?}"
        );
    };
    denied("stat escape", storage.stat(&path("escape")).await.map(drop));
    denied(
        "stat escape/secret.txt",
        storage.stat(&path("escape/secret.txt")).await.map(drop),
    );
    denied(
        "read escape.txt",
        storage.read(&path("escape.txt"), None).await.map(drop),
    );
    denied(
        "read dangling",
        storage.read(&path("dangling"), None).await.map(drop),
    );
    denied("list escape", storage.list(&path("escape")).await.map(drop));
    let write = storage
        .write(&path("escape/new.txt"), bytes(b"x"), WriteMode::CreateOnly)
        .await;
    denied("write escape/new.txt", write.map(drop));
    let write = storage
        .write(&path("escape.txt"), bytes(b"x"), WriteMode::CreateOrReplace)
        .await;
    denied("replace escape.txt", write.map(drop));
    denied(
        "mkdir escape/sub",
        storage.create_folder(&path("escape/sub")).await.map(drop),
    );
    let rename = storage
        .rename(&path("escape.txt"), &path("stolen.txt"))
        .await;
    denied("rename escape.txt", rename.map(drop));
    let rename = storage
        .rename(&path("real/f.txt"), &path("escape/f.txt"))
        .await;
    denied("move into escape", rename.map(drop));
    denied("delete escape", storage.delete(&path("escape")).await);
    denied(
        "delete escape/secret.txt",
        storage.delete(&path("escape/secret.txt")).await,
    );

    let listed = storage.list(&StoragePath::root()).await.expect("list");
    let listed: BTreeMap<String, ItemKind> = listed.into_iter().map(|i| (i.name, i.kind)).collect();
    assert_eq!(
        listed,
        BTreeMap::from([
            ("alias".into(), ItemKind::Folder),
            ("real".into(), ItemKind::Folder)
        ]),
        "links out of the root (or nowhere) must not be listed"
    );
    let inside = storage.read(&path("alias/f.txt"), None).await;
    assert!(
        inside.is_ok(),
        "a link that stays inside the root is followed"
    );
    assert_eq!(on_disk(outside.path()), ["secret.txt"]);
    assert_eq!(
        std::fs::read(outside.path().join("secret.txt")).expect("read"),
        b"secret"
    );
}

/// Every file a mix of operations creates, the temporary ones included, is under the root:
/// nothing beside it, nothing in the system's temporary folder.
#[tokio::test]
async fn content_is_written_only_under_the_root() {
    let parent = tempfile::tempdir().expect("tempdir");
    let root = parent.path().join("root");
    let sibling = parent.path().join("sibling");
    std::fs::create_dir_all(&root).expect("mkdir root");
    std::fs::create_dir_all(&sibling).expect("mkdir sibling");
    std::fs::write(sibling.join("other.txt"), b"untouched").expect("seed");
    let system_temp = filebridge_names_in(&std::env::temp_dir());
    let storage = open_at(&root);

    storage.create_folder(&path("a/b")).await.expect("mkdir");
    storage
        .write(&path("a/b/f.txt"), bytes(b"one"), WriteMode::CreateOnly)
        .await
        .expect("write");
    let replace = storage
        .write(
            &path("a/b/f.txt"),
            bytes(b"two"),
            WriteMode::CreateOrReplace,
        )
        .await;
    replace.expect("replace");
    let cut = storage
        .write(&path("a/g.txt"), cut_off(4), WriteMode::CreateOrReplace)
        .await;
    assert!(cut.is_err());
    storage
        .rename(&path("a/b"), &path("c"))
        .await
        .expect("rename");
    storage.health().await.expect("health");

    assert_eq!(on_disk(parent.path()), ["root", "sibling"]);
    assert_eq!(on_disk(&sibling), ["other.txt"]);
    assert_eq!(
        std::fs::read(sibling.join("other.txt")).expect("read"),
        b"untouched"
    );
    let mut files = Vec::new();
    walk(&root, &mut files);
    assert_eq!(files, [root.join("c/f.txt")]);
    assert_eq!(std::fs::read(root.join("c/f.txt")).expect("read"), b"two");
    assert_eq!(filebridge_names_in(&std::env::temp_dir()), system_temp);
}

fn filebridge_names_in(dir: &Path) -> Vec<String> {
    on_disk(dir)
        .into_iter()
        .filter(|n| n.contains("filebridge"))
        .collect()
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            walk(&entry.path(), files);
        } else {
            files.push(entry.path());
        }
    }
}
