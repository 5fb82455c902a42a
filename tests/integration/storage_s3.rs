//! The `s3` storage kind against a real moto server with signature checking on: the shared
//! behavioural suite, and what only S3 shows (signatures, multipart uploads left behind,
//! a server that dies or freezes mid-request).

use crate::moto_peer;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use filebridge::storage::{Storage, StorageError, StoragePath, Upload, WriteMode};
use futures_util::{StreamExt, stream};
use moto_peer::Moto;

use crate::storage_suite;

const PREFIX: &str = "jira/";

fn path(text: &str) -> StoragePath {
    StoragePath::parse(text, Default::default()).expect("a valid test path")
}

/// `len` bytes in 1 MiB chunks, then (if `fail`) the client going away.
fn body(len: usize, fail: bool) -> Upload {
    let mut chunks: Vec<Result<Bytes, StorageError>> = (0..len.div_ceil(1 << 20))
        .map(|i| Ok(Bytes::from(vec![i as u8; (len - (i << 20)).min(1 << 20)])))
        .collect();
    if fail {
        chunks.push(Err(StorageError::Interrupted(
            "the client went away".into(),
        )));
    }
    Upload {
        body: Box::pin(stream::iter(chunks)),
        length: None,
    }
}

// Two threads: generating and hashing the bodies runs beside the transfers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_against_moto() {
    let moto = Moto::start().await;
    let (storage, egress) = moto
        .open_with(&moto.settings(PREFIX), &moto.secret_access_key)
        .expect("open");
    storage_suite::run_all_except(
        storage.clone(),
        &["round_trip_large", "large_folder_listing"],
    )
    .await;
    // S3 promises atomic CreateOnly through `If-None-Match: *`.
    storage_suite::create_only_is_atomic(storage).await;
    let contacted = egress.report();
    assert!(
        contacted[&format!("127.0.0.1:{}", moto.port)].contacted > 0,
        "the storage's requests went through the egress client: {contacted:?}"
    );
    assert!(
        moto.multipart_uploads().await.is_empty(),
        "the suite left multipart uploads behind"
    );
}

// Two threads: generating and hashing the bodies runs beside the transfers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_file_round_trips() {
    let moto = Moto::start().await;
    storage_suite::round_trip_large(moto.open(PREFIX)).await;
}

// Two threads: generating and hashing the bodies runs beside the transfers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_of_1500_items_is_listed_completely() {
    // More than the 1,000 keys S3 puts on one page: only following every continuation token
    // lists them all.
    let moto = Moto::start().await;
    storage_suite::large_folder_listing(moto.open("")).await;
}

#[tokio::test]
async fn a_wrong_secret_or_key_fails_health_with_permission_denied() {
    let moto = Moto::start().await;
    let (right, _) = moto
        .open_with(&moto.settings(PREFIX), &moto.secret_access_key)
        .expect("open");
    right.health().await.expect("the right key is accepted");

    let (wrong_secret, _) = moto
        .open_with(&moto.settings(PREFIX), "not-the-secret")
        .expect("open");
    let refused = wrong_secret.health().await;
    assert!(
        matches!(refused, Err(StorageError::PermissionDenied)),
        "a wrong secret: {refused:?}"
    );
    let listed = wrong_secret.list(&StoragePath::root()).await;
    assert!(
        matches!(listed, Err(StorageError::PermissionDenied)),
        "{listed:?}"
    );

    let mut unknown_key = moto.settings(PREFIX);
    unknown_key["access_key_id"] = "AKIAUNKNOWNKEY000000".into();
    let (unknown, _) = moto
        .open_with(&unknown_key, &moto.secret_access_key)
        .expect("open");
    let refused = unknown.health().await;
    assert!(
        matches!(refused, Err(StorageError::PermissionDenied)),
        "an unknown key id: {refused:?}"
    );
}

#[tokio::test]
async fn a_missing_bucket_fails_health_clearly() {
    let moto = Moto::start().await;
    let mut settings = moto.settings("");
    settings["bucket"] = "no-such-bucket".into();
    let (storage, _) = moto
        .open_with(&settings, &moto.secret_access_key)
        .expect("open");
    match storage.health().await {
        Err(StorageError::Backend(message)) => {
            assert!(message.contains("bucket does not exist"), "{message}")
        }
        other => panic!("a missing bucket: {other:?}"),
    }
}

#[tokio::test]
async fn a_cut_off_multipart_upload_leaves_no_object_and_no_upload() {
    let moto = Moto::start().await;
    let storage = moto.open(PREFIX);
    // Three full parts and a bit, then the client goes away.
    let target = path("cut/large.bin");
    let written = storage
        .write(&target, body(25 << 20, true), WriteMode::CreateOrReplace)
        .await;
    assert!(
        matches!(written, Err(StorageError::Interrupted(_))),
        "{written:?}"
    );
    let stat = storage.stat(&target).await;
    assert!(matches!(stat, Err(StorageError::NotFound)), "{stat:?}");
    assert_eq!(moto.multipart_uploads().await, Vec::<String>::new());

    // The same when the write itself is dropped half-way (a request handler cancelled): the
    // upload is aborted in the background.
    let (pause, resume) = tokio::sync::oneshot::channel::<()>();
    let stalled = stream::iter((0..12).map(|_| Ok(Bytes::from(vec![1u8; 1 << 20])))).chain(
        stream::once(async move {
            let _ = resume.await;
            Ok(Bytes::new())
        }),
    );
    let upload = Upload {
        body: Box::pin(stalled),
        length: None,
    };
    let writing = {
        let storage = storage.clone();
        let target = target.clone();
        tokio::spawn(async move {
            storage
                .write(&target, upload, WriteMode::CreateOrReplace)
                .await
        })
    };
    let peer = &moto;
    crate::helpers::eventually(
        "the multipart upload starts",
        Duration::from_secs(30),
        || async move { !peer.multipart_uploads().await.is_empty() },
    )
    .await;
    writing.abort();
    let _ = writing.await;
    drop(pause);
    crate::helpers::eventually(
        "the dropped upload is aborted",
        Duration::from_secs(30),
        || async move { peer.multipart_uploads().await.is_empty() },
    )
    .await;
    let stat = storage.stat(&target).await;
    assert!(matches!(stat, Err(StorageError::NotFound)), "{stat:?}");
}

#[tokio::test]
async fn the_server_killed_mid_download_is_unavailable_not_a_hang() {
    let mut moto = Moto::start().await;
    let storage = moto.open(PREFIX);
    // Larger than loopback's socket buffers, so most of it is still to come when moto dies.
    let target = path("big.bin");
    storage
        .write(&target, body(48 << 20, false), WriteMode::CreateOnly)
        .await
        .expect("write the file");
    let mut download = storage.read(&target, None).await.expect("start reading");
    let first = download.body.next().await.expect("a first chunk");
    assert!(first.is_ok(), "{first:?}");
    moto.kill().await;

    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = download.body.next().await {
            if let Err(e) = chunk {
                return Some(e);
            }
        }
        None
    })
    .await
    .expect("the broken download ends within 30 s instead of hanging");
    assert!(
        matches!(drained, Some(StorageError::Unavailable(_))),
        "the download ended with {drained:?}"
    );
    let after = tokio::time::timeout(Duration::from_secs(30), storage.health())
        .await
        .expect("health answers within 30 s");
    assert!(
        matches!(after, Err(StorageError::Unavailable(_))),
        "{after:?}"
    );
    let listed = tokio::time::timeout(Duration::from_secs(30), storage.list(&StoragePath::root()))
        .await
        .expect("a listing answers within 30 s");
    assert!(
        matches!(listed, Err(StorageError::Unavailable(_))),
        "{listed:?}"
    );
}

#[tokio::test]
async fn a_frozen_server_times_out_as_unavailable() {
    let moto = Moto::start().await;
    let mut settings = moto.settings(PREFIX);
    settings["timeout_secs"] = 2.into();
    let (storage, _) = moto
        .open_with(&settings, &moto.secret_access_key)
        .expect("open");
    storage.health().await.expect("healthy before the freeze");
    moto.freeze(true);
    let started = std::time::Instant::now();
    let frozen = tokio::time::timeout(Duration::from_secs(20), storage.health()).await;
    moto.freeze(false);
    let frozen = frozen.expect("health gives up on its own, well before 20 s");
    assert!(
        matches!(frozen, Err(StorageError::Unavailable(_))),
        "{frozen:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?} with a 2 s timeout",
        started.elapsed()
    );
    storage
        .health()
        .await
        .expect("healthy again after the thaw");
}

#[tokio::test]
async fn folders_without_markers_and_keys_outside_the_prefix() {
    let moto = Moto::start().await;
    // Keys written by another tool: content under a folder that has no marker, and a key
    // beside the connection's prefix that it must never show or touch.
    let put = |key: &'static str| {
        let moto = &moto;
        async move {
            let response = moto
                .signed(
                    reqwest::Method::PUT,
                    &format!("/{}/{key}", moto_peer::BUCKET),
                    "x",
                )
                .await;
            assert!(
                response.status().is_success(),
                "put {key}: {}",
                response.status()
            );
        }
    };
    put("jira/implicit/inner/file.txt").await;
    put("jira-other/secret.txt").await;
    put("outside.txt").await;
    let storage: Arc<dyn Storage> = moto.open(PREFIX);
    let root = storage
        .list(&StoragePath::root())
        .await
        .expect("list the root");
    let names: Vec<_> = root.iter().map(|i| (i.name.as_str(), i.kind)).collect();
    assert_eq!(names, [("implicit", filebridge::storage::ItemKind::Folder)]);
    let inner = storage.stat(&path("implicit/inner")).await.expect("stat");
    assert_eq!(inner.kind, filebridge::storage::ItemKind::Folder);
    storage
        .rename(&path("implicit"), &path("moved"))
        .await
        .expect("move a folder without a marker");
    let moved = storage.list(&path("moved/inner")).await.expect("list");
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].path, "moved/inner/file.txt");
    storage.delete(&path("moved")).await.expect("delete");
    assert!(
        storage
            .list(&StoragePath::root())
            .await
            .expect("list")
            .is_empty()
    );
    let whole_bucket = moto.open("");
    let mut left: Vec<_> = whole_bucket
        .list(&StoragePath::root())
        .await
        .expect("list the bucket")
        .into_iter()
        .map(|i| i.name)
        .collect();
    left.sort();
    // `jira/` is empty now, so it is gone: S3 has no empty folders without markers.
    assert_eq!(left, ["jira-other", "outside.txt"]);
}

/// The least-privilege policy of docs/storage-s3.md, as far as moto can evaluate it: moto
/// cannot check the `s3:prefix` condition on `s3:ListBucket` (it treats every condition as
/// failed), so listing is granted on the whole bucket here; and moto authorises
/// `DeleteObjects` against the bucket's ARN rather than each key's, so `s3:DeleteObject` is
/// granted on the bucket's ARN too. Everything else is exactly the documented set.
fn least_privilege_policy() -> String {
    let bucket = moto_peer::BUCKET;
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": format!("arn:aws:s3:::{bucket}"),
            },
            {
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                ],
                "Resource": format!("arn:aws:s3:::{bucket}/jira/*"),
            },
            {
                "Effect": "Allow",
                "Action": "s3:DeleteObject",
                "Resource": format!("arn:aws:s3:::{bucket}"),
            },
        ],
    })
    .to_string()
}

// Two threads: generating and hashing the bodies runs beside the transfers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_permissions_are_enough_and_nothing_outside_the_prefix_is_reachable() {
    let moto = Moto::start_with_policy(&least_privilege_policy()).await;
    let storage = moto.open(PREFIX);
    storage_suite::run_all_except(
        storage.clone(),
        &["round_trip_large", "large_folder_listing"],
    )
    .await;
    // A multipart upload cut off under the restricted key is still aborted.
    let cut = storage
        .write(&path("cut.bin"), body(9 << 20, true), WriteMode::CreateOnly)
        .await;
    assert!(matches!(cut, Err(StorageError::Interrupted(_))), "{cut:?}");
    assert_eq!(moto.multipart_uploads().await, Vec::<String>::new());

    let outside = moto.open("elsewhere/");
    let written = outside
        .write(&path("x.txt"), body(10, false), WriteMode::CreateOrReplace)
        .await;
    assert!(
        matches!(written, Err(StorageError::PermissionDenied)),
        "a write outside the granted prefix: {written:?}"
    );
}
