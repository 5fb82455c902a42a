//! The connection's `timeout_secs` limits silences, not transfers: a download that stalls
//! mid-body fails within about the timeout instead of hanging its caller, while a download
//! read slowly (longer in all than the timeout) completes.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use super::{SECRET, env, path};
use filebridge::storage::StorageError;

/// Far above the 1 s timeout under test, far below a hang.
const BOUND: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_download_that_stalls_mid_body_fails_after_the_timeout() {
    let env = env().await;
    let content = vec![7u8; 1 << 20];
    env.graph.put_file(&env.drive, "/Jira/big.bin", content);
    let (storage, _) = env.open(
        env.settings(json!({"timeout_secs": 1})),
        &[("client_secret", SECRET)],
    );
    env.graph.stall_next_download(64 * 1024);
    let download = storage.read(&path("big.bin"), None).await.expect("read");
    let started = Instant::now();
    let mut body = download.body;
    let mut got = 0usize;
    let error = tokio::time::timeout(BOUND, async {
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => got += chunk.len(),
                Err(e) => return Some(e),
            }
        }
        None
    })
    .await
    .expect("the stalled download ended instead of hanging");
    assert!(
        matches!(&error, Some(StorageError::Unavailable(why)) if why.contains("SharePoint did not answer within 1s")),
        "{error:?}"
    );
    assert_eq!(got, 64 * 1024, "the bytes before the stall arrived");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn a_slow_reader_gets_the_whole_file_whatever_the_timeout() {
    let env = env().await;
    let content: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    env.graph
        .put_file(&env.drive, "/Jira/big.bin", content.clone());
    let (storage, _) = env.open(
        env.settings(json!({"timeout_secs": 1})),
        &[("client_secret", SECRET)],
    );
    let started = Instant::now();
    let download = storage.read(&path("big.bin"), None).await.expect("read");
    let mut body = download.body;
    let mut got = Vec::new();
    let mut pauses = 0;
    while let Some(chunk) = body.next().await {
        got.extend_from_slice(&chunk.expect("no timeout while the reader is the slow side"));
        // The reader is slow: twice it takes longer than the timeout before reading on.
        if pauses < 2 && got.len() > pauses * (2 << 20) {
            pauses += 1;
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
    }
    assert_eq!(pauses, 2);
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "longer than the timeout in all"
    );
    assert!(got == content, "the whole file, unchanged");
}

#[tokio::test]
async fn a_graph_that_never_answers_is_given_up_after_five_tries() {
    let env = env().await;
    // Takes connections and says nothing, ever.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = silent.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&accepted);
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket);
        }
    });
    let mut settings = env.settings(json!({"timeout_secs": 1}));
    settings["graph_url"] = json!(format!("http://{address}"));
    let (storage, _) = env.open(settings, &[("client_secret", SECRET)]);
    let started = Instant::now();
    let listed = tokio::time::timeout(BOUND, storage.list(&path("")))
        .await
        .expect("given up instead of hanging");
    assert!(
        matches!(&listed, Err(StorageError::Unavailable(why)) if why.contains("Microsoft Graph did not answer within 1s")),
        "{listed:?}"
    );
    // Each try waited the timeout, and was made on a fresh connection.
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 5);
    assert!(started.elapsed() >= Duration::from_secs(5));
    holder.abort();
}
