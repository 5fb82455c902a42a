//! The `webdav` kind against a Nextcloud (the fake of `fake_nextcloud`, over a real Apache):
//! chunked upload v2 for large files and those of unknown length, one plain PUT for small
//! ones, 423 during the assembly, aborts, create-only, the fallback for servers that only
//! look like Nextcloud, and the shared behavioural suite.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use filebridge::egress::EgressClient;
use filebridge::storage::{Storage, StorageError, Upload, WriteMode, registry};
use futures_util::{StreamExt, stream};
use secrecy::SecretString;

use crate::fake_nextcloud::webdav_peers::{self, PASSWORD, USER, path, pattern, read_all, upload};
use crate::fake_nextcloud::{FakeNextcloud, Options};
use crate::storage_suite;

const MIB: usize = 1024 * 1024;

fn open(
    settings: serde_json::Value,
    egress: &EgressClient,
) -> Result<Arc<dyn Storage>, StorageError> {
    let secrets = HashMap::from([(
        "password".to_string(),
        SecretString::from(PASSWORD.to_string()),
    )]);
    registry::open("webdav", &settings, &secrets, egress)
}

/// The storage with 5 MiB chunks (Nextcloud's minimum) and the given idle timeout.
fn storage(fake: &FakeNextcloud, timeout: &str) -> Arc<dyn Storage> {
    let settings = serde_json::json!({
        "url": fake.url(), "username": USER, "timeout": timeout, "chunk_size": "5 MiB",
    });
    open(settings, &webdav_peers::egress()).expect("open the storage")
}

/// A body of unknown length, in 64 KiB pieces.
fn unknown_length(data: &[u8]) -> Upload {
    Upload {
        length: None,
        ..upload(data)
    }
}

/// `data` in 64 KiB pieces, as a stream that owns them.
fn pieces(data: Vec<u8>) -> impl futures_util::Stream<Item = Result<Bytes, StorageError>> {
    let data = Bytes::from(data);
    let starts = (0..data.len()).step_by(64 * 1024);
    stream::iter(starts.map(move |at| Ok(data.slice(at..data.len().min(at + 64 * 1024)))))
}

#[tokio::test]
async fn a_large_file_goes_in_chunks_and_reads_back_the_same() {
    let fake = FakeNextcloud::start().await;
    let egress = webdav_peers::egress();
    let settings = serde_json::json!({"url": fake.url(), "username": USER, "chunk_size": 5 * MIB});
    let s = open(settings, &egress).expect("open");
    let data = pattern(23 * MIB);
    let target = path("big.bin");
    let written = s.write(&target, upload(&data), WriteMode::CreateOnly).await;
    let written = written.expect("write 23 MiB");
    assert!(written.created);
    assert_eq!(written.item.size, Some(data.len() as u64));

    let destination = format!("{}big.bin", fake.url());
    let mkcols = fake.requests("MKCOL", "/remote.php/dav/uploads/filebridge/filebridge-");
    assert_eq!(mkcols.len(), 1, "{:#?}", fake.seen());
    assert_eq!(mkcols[0].destination.as_deref(), Some(destination.as_str()));
    let chunks = fake.chunk_puts();
    let names: Vec<&str> = chunks.iter().map(|c| &c.path[c.path.len() - 6..]).collect();
    assert_eq!(names, ["/00001", "/00002", "/00003", "/00004", "/00005"]);
    let sizes: Vec<u64> = chunks.iter().map(|c| c.bytes).collect();
    let m = MIB as u64;
    assert_eq!(sizes, [5 * m, 5 * m, 5 * m, 5 * m, 3 * m]);
    for chunk in &chunks {
        assert_eq!(chunk.status, 201);
        assert_eq!(chunk.destination.as_deref(), Some(destination.as_str()));
        assert_eq!(chunk.total_length, Some(data.len().to_string()));
        assert_eq!(chunk.content_length, Some(chunk.bytes.to_string()));
    }
    let moves = fake.assembly_moves();
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].overwrite.as_deref(), Some("F"));
    assert_eq!(moves[0].total_length, Some(data.len().to_string()));
    let assemblies = fake.assemblies();
    assert_eq!(assemblies.len(), 1);
    assert_eq!(assemblies[0].destination, destination);
    assert!(fake.requests("PUT", "/remote.php/dav/files/").is_empty());
    assert!(fake.upload_folders().is_empty());

    assert!(
        read_all(s.as_ref(), &target, None).await == data,
        "content differs"
    );
    assert_eq!(fake.files(), ["big.bin"]);
    // Everything went through the egress client, to the configured server only.
    let host = url::Url::parse(&fake.url()).expect("URL");
    let host = format!("127.0.0.1:{}", host.port().expect("port"));
    assert_eq!(egress.report().keys().collect::<Vec<_>>(), [&host]);
}

#[tokio::test]
async fn small_files_go_in_one_plain_put_to_their_name() {
    let fake = FakeNextcloud::start().await;
    let s = storage(&fake, "30s");
    let small = pattern(1000);
    s.write(&path("a.bin"), upload(&small), WriteMode::CreateOnly)
        .await
        .expect("write a known length");
    let unknown = pattern(100 * 1024);
    s.write(
        &path("b.bin"),
        unknown_length(&unknown),
        WriteMode::CreateOnly,
    )
    .await
    .expect("write an unknown length");
    let one_chunk = pattern(5 * MIB);
    s.write(&path("c.bin"), upload(&one_chunk), WriteMode::CreateOnly)
        .await
        .expect("write exactly one chunk");
    assert!(fake.requests("MKCOL", "/uploads/").is_empty());
    let puts = fake.requests("PUT", "/remote.php/dav/files/");
    let put = |name: &str, len: usize| {
        let found: Vec<_> = puts.iter().filter(|p| p.path.ends_with(name)).collect();
        assert_eq!(found.len(), 1, "{name}: {puts:#?}");
        assert_eq!(found[0].content_length, Some(len.to_string()), "{name}");
    };
    put("/a.bin", small.len());
    put("/b.bin", unknown.len());
    put("/c.bin", one_chunk.len());
    assert_eq!(puts.len(), 3, "no temporary names: {puts:#?}");
    assert!(read_all(s.as_ref(), &path("b.bin"), None).await == unknown);
    assert_eq!(fake.files(), ["a.bin", "b.bin", "c.bin"]);
}

#[tokio::test]
async fn bodies_of_unknown_length_go_in_chunks() {
    let fake = FakeNextcloud::start().await;
    let s = storage(&fake, "30s");
    let data = pattern(12 * MIB + 1);
    let written = s
        .write(&path("u.bin"), unknown_length(&data), WriteMode::CreateOnly)
        .await
        .expect("write");
    assert_eq!(written.item.size, Some(data.len() as u64));
    let chunks = fake.chunk_puts();
    let sizes: Vec<u64> = chunks.iter().map(|c| c.bytes).collect();
    let m = MIB as u64;
    assert_eq!(sizes, [5 * m, 5 * m, 2 * m + 1]);
    for chunk in chunks {
        assert_eq!((&chunk.content_length, &chunk.total_length), (&None, &None));
    }
    let moves = fake.assembly_moves();
    assert_eq!(moves[0].total_length, Some(data.len().to_string()));
    assert!(read_all(s.as_ref(), &path("u.bin"), None).await == data);

    // A length of exactly two chunks makes two, not a third empty one.
    fake.forget_seen();
    let exact = pattern(10 * MIB);
    s.write(
        &path("e.bin"),
        unknown_length(&exact),
        WriteMode::CreateOnly,
    )
    .await
    .expect("write");
    assert_eq!(fake.chunk_puts().len(), 2);
    assert!(read_all(s.as_ref(), &path("e.bin"), None).await == exact);
}

#[tokio::test]
async fn a_locked_target_is_tried_again_until_nextcloud_takes_it() {
    let fake = FakeNextcloud::start().await;
    let s = storage(&fake, "30s");
    fake.lock_moves(2);
    let data = pattern(6 * MIB);
    s.write(&path("l.bin"), upload(&data), WriteMode::CreateOnly)
        .await
        .expect("write after two 423s");
    let statuses: Vec<u16> = fake.assembly_moves().iter().map(|m| m.status).collect();
    assert_eq!(statuses, [423, 423, 201]);
    assert_eq!(fake.assemblies().len(), 1);
    assert!(read_all(s.as_ref(), &path("l.bin"), None).await == data);
}

/// A target locked for longer than the idle timeout is a `conflict`: this one file is busy
/// (another client holds it), the server as a whole is not asking to slow down.
#[tokio::test]
async fn a_target_locked_for_good_is_a_conflict_and_the_upload_is_removed() {
    let fake = FakeNextcloud::start().await;
    let s = storage(&fake, "2s");
    fake.lock_moves(usize::MAX);
    let started = tokio::time::Instant::now();
    let result = s
        .write(
            &path("l.bin"),
            upload(&pattern(6 * MIB)),
            WriteMode::CreateOnly,
        )
        .await;
    let elapsed = started.elapsed();
    match &result {
        Err(StorageError::Conflict(message)) => assert!(message.contains("locked"), "{message}"),
        other => panic!("{:?}", other.as_ref().map(|w| &w.item)),
    }
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    assert!(fake.assembly_moves().len() >= 3);
    assert!(fake.upload_folders().is_empty());
    assert!(fake.assemblies().is_empty());
    assert!(matches!(
        s.stat(&path("l.bin")).await,
        Err(StorageError::NotFound)
    ));
}

#[tokio::test]
async fn a_cut_off_upload_leaves_neither_file_nor_upload_folder() {
    let fake = FakeNextcloud::start().await;
    let s = storage(&fake, "30s");
    let failing = pieces(pattern(7 * MIB)).chain(stream::iter([Err(StorageError::Interrupted(
        "gone".into(),
    ))]));
    let cut = Upload {
        body: Box::pin(failing),
        length: None,
    };
    let result = s.write(&path("cut.bin"), cut, WriteMode::CreateOnly).await;
    assert!(
        matches!(result, Err(StorageError::Interrupted(_))),
        "{:?}",
        result.map(|w| w.item)
    );
    let short = Upload {
        length: Some(12 * MIB as u64),
        ..upload(&pattern(8 * MIB))
    };
    let result = s
        .write(&path("short.bin"), short, WriteMode::CreateOnly)
        .await;
    assert!(
        matches!(result, Err(StorageError::Interrupted(_))),
        "{:?}",
        result.map(|w| w.item)
    );
    assert_eq!(fake.upload_folders(), Vec::<String>::new());
    assert_eq!(fake.files(), Vec::<String>::new());
    assert!(fake.assemblies().is_empty());

    // Dropped mid-way (the user's connection went away): aborted in the background.
    fake.forget_seen();
    let stalled = pieces(pattern(6 * MIB)).chain(stream::pending());
    let stalled = Upload {
        body: Box::pin(stalled),
        length: None,
    };
    let dropped = path("dropped.bin");
    let write = s.write(&dropped, stalled, WriteMode::CreateOnly);
    let gave_up = tokio::time::timeout(Duration::from_secs(3), write).await;
    assert!(gave_up.is_err(), "the write ended on its own");
    assert_eq!(
        fake.chunk_puts().iter().filter(|c| c.status == 201).count(),
        1
    );
    fake.assert_no_upload_folders().await;
    assert_eq!(fake.files(), Vec::<String>::new());
}

#[tokio::test]
async fn create_only_refuses_an_existing_target_and_replace_replaces() {
    let fake = FakeNextcloud::start().await;
    let s = storage(&fake, "30s");
    s.write(&path("x.bin"), upload(b"first"), WriteMode::CreateOnly)
        .await
        .expect("write");
    let again = s
        .write(
            &path("x.bin"),
            upload(&pattern(12 * MIB)),
            WriteMode::CreateOnly,
        )
        .await;
    assert!(matches!(again, Err(StorageError::AlreadyExists)));
    assert!(fake.requests("MKCOL", "/uploads/").is_empty());

    // The target appears while the chunks go up: the final MOVE's `Overwrite: F` refuses.
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let racing = pieces(pattern(6 * MIB)).chain(stream::once(async move {
        drop(wait.await);
        Ok(Bytes::from(pattern(MIB)))
    }));
    let racing = Upload {
        body: Box::pin(racing),
        length: None,
    };
    let task = tokio::spawn({
        let s = Arc::clone(&s);
        async move {
            s.write(&path("race.bin"), racing, WriteMode::CreateOnly)
                .await
        }
    });
    while !fake.chunk_puts().iter().any(|c| c.status == 201) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.write(&path("race.bin"), upload(b"won"), WriteMode::CreateOnly)
        .await
        .expect("the racing write");
    go.send(()).expect("the racing upload waits");
    let lost = task.await.expect("join");
    assert!(
        matches!(lost, Err(StorageError::AlreadyExists)),
        "{:?}",
        lost.map(|w| w.item)
    );
    assert_eq!(read_all(s.as_ref(), &path("race.bin"), None).await, b"won");
    assert!(fake.upload_folders().is_empty());

    let new = pattern(7 * MIB);
    let replaced = s
        .write(
            &path("x.bin"),
            unknown_length(&new),
            WriteMode::CreateOrReplace,
        )
        .await
        .expect("replace");
    assert!(!replaced.created);
    let last = fake.assembly_moves().last().map(|m| m.overwrite.clone());
    assert_eq!(last, Some(Some("T".to_string())));
    assert!(read_all(s.as_ref(), &path("x.bin"), None).await == new);
}

/// A server at a Nextcloud-like URL without upload folders (and accepting `.part` names):
/// uploads go the ordinary way, and the MKCOL is not tried again.
#[tokio::test]
async fn a_server_without_upload_folders_gets_ordinary_uploads() {
    let options = Options {
        uploads: false,
        refuse_part_names: false,
    };
    let fake = FakeNextcloud::start_with(options).await;
    let s = storage(&fake, "30s");
    for name in ["one.bin", "two.bin"] {
        let data = pattern(12 * MIB);
        s.write(&path(name), upload(&data), WriteMode::CreateOnly)
            .await
            .expect("write");
        assert!(read_all(s.as_ref(), &path(name), None).await == data);
    }
    assert_eq!(fake.requests("MKCOL", "/uploads/").len(), 1);
    assert_eq!(fake.requests("PUT", ".filebridge-").len(), 2);
    assert_eq!(fake.files(), ["one.bin", "two.bin"]);
}

#[test]
fn chunk_size_settings_are_checked() {
    let egress = webdav_peers::egress();
    let url = "https://nc.example.com/remote.php/dav/files/svc/";
    for bad in [
        serde_json::json!("4 MiB"),
        serde_json::json!("6 GiB"),
        serde_json::json!("10 MB"),
    ] {
        let settings = serde_json::json!({"url": url, "username": "svc", "chunk_size": bad});
        let refused = open(settings, &egress).err().expect("refused").to_string();
        assert!(refused.contains("`chunk_size`"), "{refused}");
    }
    let settings = serde_json::json!({"url": url, "username": "svc", "chunk_size": "1 GiB"});
    assert!(open(settings, &egress).is_ok());
}

/// The shared suite (all but the 200 MiB round trip, which has its own test) through the
/// fake: it refuses `.part` names as Nextcloud 30 does, so this also proves that no upload
/// uses a temporary name there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite() {
    let fake = FakeNextcloud::start().await;
    storage_suite::run_all_except(storage(&fake, "30s"), &["round_trip_large"]).await;
    assert!(!fake.chunk_puts().is_empty());
    assert!(fake.requests("PUT", ".filebridge-").is_empty());
    fake.assert_no_upload_folders().await;
    assert_eq!(fake.files(), Vec::<String>::new());
}

#[tokio::test]
async fn large_round_trip() {
    let fake = FakeNextcloud::start().await;
    storage_suite::round_trip_large(storage(&fake, "30s")).await;
    assert_eq!(fake.assemblies()[0].chunks.len(), 40);
}
