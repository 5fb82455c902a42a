//! The `filesystem` storage kind: the shared behavioural suite on a temporary directory, and
//! what only a directory shows (temporary files, symbolic links, where bytes land, settings).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use filebridge::config::EgressSettings;
use filebridge::egress::EgressClient;
use filebridge::storage::{Storage, StorageError, StoragePath, Upload, registry};
use futures_util::stream;
use serde_json::{Value, json};

use crate::storage_suite;

mod answers;
mod confinement;
mod uploads;

fn egress() -> EgressClient {
    let settings = EgressSettings {
        allow: vec![],
        proxy: None,
        ca_file: None,
    };
    EgressClient::new(&settings, None).expect("egress client")
}

fn open_with(settings: Value) -> Result<Arc<dyn Storage>, StorageError> {
    registry::open("filesystem", &settings, &HashMap::new(), &egress())
}

fn open_at(root: &Path) -> Arc<dyn Storage> {
    open_with(json!({ "root": root })).expect("open the filesystem storage")
}

fn path(text: &str) -> StoragePath {
    StoragePath::parse(text, Default::default()).expect("a valid test path")
}

/// Names directly in `dir`, as on disk, sorted.
fn on_disk(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the directory")
        .map(|e| e.expect("entry").file_name().into_string().expect("UTF-8"))
        .collect();
    names.sort();
    names
}

fn chunk(content: &[u8]) -> Result<Bytes, StorageError> {
    Ok(Bytes::copy_from_slice(content))
}

fn cut_off(chunks: usize) -> Upload {
    let mut items: Vec<_> = (0..chunks).map(|_| chunk(&[7; 64 * 1024])).collect();
    items.push(Err(StorageError::Backend(
        "connection reset by peer".into(),
    )));
    Upload {
        body: Box::pin(stream::iter(items)),
        length: None,
    }
}

fn bytes(content: &[u8]) -> Upload {
    Upload {
        body: Box::pin(stream::iter([chunk(content)])),
        length: Some(content.len() as u64),
    }
}

/// The whole suite at once (the 200 MiB round trip included), the way the other kinds run it,
/// on a store with the Windows naming rules an SMB mount gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_run_all_with_windows_names() {
    let root = tempfile::tempdir().expect("tempdir");
    let storage = open_with(json!({ "root": root.path(), "windows_names": true }))
        .expect("open the filesystem storage with Windows names");
    storage_suite::run_all(storage).await;
    assert!(
        on_disk(root.path()).is_empty(),
        "the checks left files behind"
    );
}

/// The suite again with the default naming rules, in parallel with the one above; the large
/// round trip, which does not depend on names, runs only there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_without_the_large_file() {
    let root = tempfile::tempdir().expect("tempdir");
    storage_suite::run_all_except(open_at(root.path()), &["round_trip_large"]).await;
    assert!(
        on_disk(root.path()).is_empty(),
        "the checks left files behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_create_only_is_atomic() {
    let root = tempfile::tempdir().expect("tempdir");
    storage_suite::create_only_is_atomic(open_at(root.path())).await;
}
