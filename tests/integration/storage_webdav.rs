//! The `webdav` storage against real servers: Apache mod_dav, WsgiDAV and rclone (see
//! `webdav_peers`): the shared behavioural suite, what each server does differently, and
//! servers that die or hang mid-request. Each server gets its own tests so they run in
//! parallel.
//!
//! Quirks found (and handled in `src/storage/webdav`):
//! - Apache: lower-case percent escapes in hrefs, `+` and `&` unescaped; MKCOL or PROPFIND
//!   below a file answers 400; MOVE into a missing folder answers 500; GET on a folder 404.
//! - WsgiDAV: `ns0:` prefixes, unquoted ETags; MOVE/COPY decode the Destination and then
//!   parse it as a URL, cutting names at `;` or `?` (files reach such names by copy); a
//!   cut-off PUT leaves its partial body on disk (uploads go to a temporary name).
//! - rclone: ignores `If-None-Match: *`; MKCOL on an existing folder answers 201; MOVE of a
//!   missing source or into a missing folder answers 403; PUT into a missing folder 404;
//!   directory listings are cached (`--dir-cache-time`), so files made behind its back on
//!   disk show up late.

#[path = "webdav_peers.rs"]
pub(crate) mod webdav_peers;

use std::time::Duration;

use bytes::Bytes;
use filebridge::storage::{ItemKind, NameRules, StorageError, StoragePath, Upload, WriteMode};
use futures_util::StreamExt;
use webdav_peers::{Kind, Peer, assert_no_temp_files, path, pattern, read_all, upload};

use crate::storage_suite;

/// What a single server must get right beyond the shared behaviour: names that need
/// percent-encoding, server quirks around MKCOL/MOVE/If-None-Match, and cut-off uploads.
async fn server_specific_checks(peer: &Peer) {
    let storage = peer.storage();
    let s = storage.as_ref();
    storage.health().await.expect("health");

    // Names with every character that means something in a URL, emoji and NFD input.
    let folder = path("a b/R&D 100% #1+2");
    let created = s
        .create_folder(&folder)
        .await
        .expect("create nested folder");
    assert_eq!(created.kind, ItemKind::Folder);
    assert_eq!(created.path, "a b/R&D 100% #1+2");
    // Idempotent, whatever the server answers for MKCOL on an existing folder.
    s.create_folder(&folder).await.expect("create again");
    let odd = folder
        .child("x#%+&;?=📎 Cafe\u{301}.txt", NameRules::default())
        .expect("odd name");
    let written = s
        .write(&odd, upload(b"odd"), WriteMode::CreateOnly)
        .await
        .expect("write odd name");
    assert!(written.created);
    assert_eq!(written.item.name, "x#%+&;?=📎 Caf\u{e9}.txt");
    assert_eq!(written.item.size, Some(3));
    let listed = s.list(&folder).await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].path, odd.to_string());
    assert_eq!(listed[0].id, odd.to_string());
    assert_eq!(read_all(s, &odd, None).await, b"odd");
    // The listed path can be used as it is.
    let again = StoragePath::parse(&listed[0].path, NameRules::default()).expect("listed path");
    assert_eq!(s.stat(&again).await.expect("stat listed").size, Some(3));
    assert!(
        peer.files_on_disk()
            .contains(&"a b/R&D 100% #1+2/x#%+&;?=📎 Café.txt".to_string()),
        "the server stored the name unchanged: {:?}",
        peer.files_on_disk()
    );

    // `;` and `?` in a MOVE destination: WsgiDAV would cut the name there, so files are
    // copied to such names on it, and nothing may land under a cut-short name.
    let plain = path("a b/plain.txt");
    let semi = path("a b/semi;colon?.txt");
    s.write(&plain, upload(b"p"), WriteMode::CreateOnly)
        .await
        .expect("write plain");
    let renamed = s
        .rename(&plain, &semi)
        .await
        .expect("rename to `;` and `?`");
    assert_eq!(renamed.path, "a b/semi;colon?.txt");
    assert_eq!(read_all(s, &semi, None).await, b"p");
    assert!(matches!(s.stat(&plain).await, Err(StorageError::NotFound)));
    s.write(&plain, upload(b"q"), WriteMode::CreateOnly)
        .await
        .expect("write plain again");
    assert!(matches!(
        s.rename(&plain, &semi).await,
        Err(StorageError::AlreadyExists)
    ));
    s.delete(&plain).await.expect("delete plain");
    let semi_folder = s
        .create_folder(&path("a b/f"))
        .await
        .expect("create a folder");
    let moved = s.rename(&path(&semi_folder.path), &path("a b/f;x")).await;
    match (peer.kind, moved) {
        (Kind::WsgiDav, Err(StorageError::Conflict(_))) => s.delete(&path("a b/f")).await,
        (Kind::Apache | Kind::Rclone, Ok(item)) => s.delete(&path(&item.path)).await,
        (kind, other) => panic!("{kind:?}: folder rename to `f;x`: {other:?}"),
    }
    .expect("delete the folder");
    let mut in_a_b: Vec<String> = peer
        .files_on_disk()
        .into_iter()
        .filter(|f| f.starts_with("a b/") && f.matches('/').count() == 1)
        .collect();
    in_a_b.sort();
    assert_eq!(in_a_b, ["a b/R&D 100% #1+2", "a b/semi;colon?.txt"]);

    // Create-only refuses, replace reports it replaced; rclone ignores If-None-Match, so
    // this proves the MOVE-with-Overwrite path.
    assert!(matches!(
        s.write(&odd, upload(b"other"), WriteMode::CreateOnly).await,
        Err(StorageError::AlreadyExists)
    ));
    let replaced = s
        .write(&odd, upload(b"replaced"), WriteMode::CreateOrReplace)
        .await
        .expect("replace");
    assert!(!replaced.created);
    assert_eq!(read_all(s, &odd, None).await, b"replaced");

    // A file in the way of a folder, and a folder in the way of a file.
    let under_file = odd.child("sub", NameRules::default()).expect("sub");
    assert!(matches!(
        s.stat(&under_file).await,
        Err(StorageError::NotFound)
    ));
    let refused = s.create_folder(&under_file).await;
    assert!(
        matches!(refused, Err(StorageError::Conflict(_))),
        "{refused:?}"
    );
    assert!(matches!(
        s.create_folder(&odd).await,
        Err(StorageError::Conflict(_))
    ));
    assert!(matches!(
        s.write(&folder, upload(b"x"), WriteMode::CreateOrReplace)
            .await,
        Err(StorageError::Conflict(_))
    ));
    assert!(matches!(
        s.read(&folder, None).await.map(|_| ()),
        Err(StorageError::Conflict(_))
    ));
    // Writing into a missing folder creates nothing.
    assert!(matches!(
        s.write(
            &path("missing/f.txt"),
            upload(b"x"),
            WriteMode::CreateOrReplace
        )
        .await,
        Err(StorageError::NotFound)
    ));

    // MOVE: onto an existing name, from a missing one, into a missing folder.
    let other = path("a b/other.txt");
    s.write(&other, upload(b"o"), WriteMode::CreateOnly)
        .await
        .expect("write other");
    assert!(matches!(
        s.rename(&other, &odd).await,
        Err(StorageError::AlreadyExists)
    ));
    assert!(matches!(
        s.rename(&path("a b/nothing"), &path("a b/x")).await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        s.rename(&other, &path("nowhere/other.txt")).await,
        Err(StorageError::NotFound)
    ));
    let moved = s
        .rename(&other, &path("a b/R&D 100% #1+2/über.txt"))
        .await
        .expect("move into the odd folder");
    assert_eq!(moved.size, Some(1));
    let folder_moved = s
        .rename(&folder, &path("renamed #%"))
        .await
        .expect("rename a folder");
    assert_eq!(folder_moved.kind, ItemKind::Folder);
    assert_eq!(s.list(&path("renamed #%")).await.expect("list").len(), 2);

    // A cut-off upload leaves nothing under the target name and the old file intact, and no
    // temporary file behind.
    let target = path("renamed #%/über.txt");
    let cut: Vec<Result<Bytes, StorageError>> = vec![
        Ok(Bytes::from(vec![7u8; 256 * 1024])),
        Err(StorageError::Interrupted("the client went away".into())),
    ];
    let result = s
        .write(
            &target,
            Upload {
                body: Box::pin(futures_util::stream::iter(cut)),
                length: Some(1024 * 1024),
            },
            WriteMode::CreateOrReplace,
        )
        .await;
    assert!(
        matches!(result, Err(StorageError::Interrupted(_))),
        "{:?}",
        result.map(|w| w.item)
    );
    assert_eq!(read_all(s, &target, None).await, b"o");
    let fresh = path("renamed #%/never.bin");
    let cut: Vec<Result<Bytes, StorageError>> = vec![
        Ok(Bytes::from_static(b"partial")),
        Err(StorageError::Interrupted("gone".into())),
    ];
    let result = s
        .write(
            &fresh,
            Upload {
                body: Box::pin(futures_util::stream::iter(cut)),
                length: None,
            },
            WriteMode::CreateOnly,
        )
        .await;
    assert!(matches!(result, Err(StorageError::Interrupted(_))));
    assert!(matches!(s.stat(&fresh).await, Err(StorageError::NotFound)));
    assert_no_temp_files(peer).await;

    // Delete is recursive; a second delete finds nothing.
    s.delete(&path("renamed #%")).await.expect("delete folder");
    assert!(matches!(
        s.delete(&path("renamed #%")).await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        s.stat(&path("renamed #%/über.txt")).await,
        Err(StorageError::NotFound)
    ));
}

/// A wrong password is `permission_denied`, and every request went through the egress
/// client to the configured server and nowhere else.
async fn wrong_password_check(peer: &Peer) {
    let egress = webdav_peers::egress();
    let storage = peer.storage_through("wrong", "10s", &egress).expect("open");
    assert!(matches!(
        storage.health().await,
        Err(StorageError::PermissionDenied)
    ));
    assert!(matches!(
        storage.list(&StoragePath::root()).await,
        Err(StorageError::PermissionDenied)
    ));
    let port = url::Url::parse(&peer.url)
        .ok()
        .and_then(|u| u.port())
        .expect("the peer's port");
    let report = egress.report();
    let hosts: Vec<&String> = report.keys().collect();
    assert_eq!(hosts, [&format!("127.0.0.1:{port}")]);
    let counts = report.values().next().expect("one host");
    assert_eq!((counts.contacted, counts.refused), (2, 0));
}

/// The shared behavioural suite, all but the 200 MiB round trip, which has its own test.
/// `create_only_is_atomic` is not promised: Apache mod_dav checks `Overwrite: F` and then
/// renames in two steps, so of several uploads racing for one new name more than one can
/// "win" (seen: 4 of 8); WsgiDAV and rclone promise no better.
async fn suite(kind: Kind) {
    let peer = Peer::start(kind).await;
    storage_suite::run_all_except(peer.storage(), &["round_trip_large"]).await;
    assert_no_temp_files(&peer).await;
    assert!(
        peer.files_on_disk().is_empty(),
        "the checks left files behind on {kind:?}: {:?}",
        peer.files_on_disk()
    );
}

async fn quirks(kind: Kind) {
    let peer = Peer::start(kind).await;
    server_specific_checks(&peer).await;
    wrong_password_check(&peer).await;
}

async fn large(kind: Kind) {
    let peer = Peer::start(kind).await;
    storage_suite::round_trip_large(peer.storage()).await;
}

/// The server dies in the middle of a download: the stream ends in `unavailable` instead
/// of hanging, and the next request fails the same way at once.
async fn killed_mid_download(kind: Kind) {
    let mut peer = Peer::start(kind).await;
    let storage = peer
        .storage_with(webdav_peers::PASSWORD, "5s")
        .expect("open");
    let big = path("big.bin");
    storage
        .write(
            &big,
            upload(&pattern(48 * 1024 * 1024)),
            WriteMode::CreateOnly,
        )
        .await
        .expect("write");
    let download = storage.read(&big, None).await.expect("read");
    let mut body = download.body;
    body.next()
        .await
        .expect("a first chunk")
        .expect("first chunk");
    peer.kill().await;
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = body.next().await {
            if let Err(e) = chunk {
                return Some(e);
            }
        }
        None
    })
    .await
    .expect("the download ends instead of hanging");
    assert!(
        matches!(outcome, Some(StorageError::Unavailable(_))),
        "{outcome:?}"
    );
    let after = tokio::time::timeout(Duration::from_secs(30), storage.health())
        .await
        .expect("health returns");
    assert!(
        matches!(after, Err(StorageError::Unavailable(_))),
        "{after:?}"
    );
}

/// Each kind of test once per server, named `<server>::<test>`, so that the servers run in
/// parallel and one server's tests can be picked with a filter.
macro_rules! per_server {
    ($server:ident, $kind:ident) => {
        mod $server {
            use super::Kind;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn suite() {
                super::suite(Kind::$kind).await;
            }

            #[tokio::test]
            async fn quirks() {
                super::quirks(Kind::$kind).await;
            }

            #[tokio::test]
            async fn large_round_trip() {
                super::large(Kind::$kind).await;
            }

            #[tokio::test]
            async fn killed_mid_download() {
                super::killed_mid_download(Kind::$kind).await;
            }
        }
    };
}

per_server!(apache, Apache);
per_server!(wsgidav, WsgiDav);
per_server!(rclone, Rclone);

/// A server that accepts connections but never answers (frozen with SIGSTOP): every
/// operation gives up after the configured idle timeout.
#[tokio::test]
async fn a_hung_server_times_out() {
    let peer = Peer::start(Kind::Rclone).await;
    let storage = peer
        .storage_with(webdav_peers::PASSWORD, "1s")
        .expect("open");
    storage.health().await.expect("healthy before");
    peer.signal("STOP");
    let started = tokio::time::Instant::now();
    let health = tokio::time::timeout(Duration::from_secs(20), storage.health())
        .await
        .expect("health returns");
    let list = tokio::time::timeout(Duration::from_secs(20), storage.list(&StoragePath::root()))
        .await
        .expect("list returns");
    let write = tokio::time::timeout(
        Duration::from_secs(20),
        storage.write(&path("f"), upload(&pattern(1024)), WriteMode::CreateOnly),
    )
    .await
    .expect("write returns");
    peer.signal("CONT");
    assert!(
        matches!(health, Err(StorageError::Unavailable(_))),
        "{health:?}"
    );
    assert!(
        matches!(list, Err(StorageError::Unavailable(_))),
        "{list:?}"
    );
    assert!(
        matches!(write, Err(StorageError::Unavailable(_))),
        "{:?}",
        write.map(|w| w.item)
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}
