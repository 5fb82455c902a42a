//! Folder moves against storage: across two connections (copied, verified, then the source
//! removed), and with the storage down while the job runs (it waits and finishes later).

use std::time::Duration;

use serde_json::{Value, json};

use crate::events::world;
use crate::helpers::eventually;
use crate::storage_webdav::webdav_peers::{Kind, PASSWORD, Peer};

#[tokio::test]
async fn a_move_to_a_project_on_another_connection_copies_verifies_then_removes() {
    let w = world().await;
    let elsewhere = tempfile::tempdir().unwrap();
    let second = w.create_connection(elsewhere.path()).await;
    w.map("DEST", &second, "Archive/DEST").await;
    w.jira().create_issue("PROJ", "PROJ-1").await;
    w.wait_for_dir("Jira/PROJ/PROJ-1").await;
    w.wait_for_jobs().await;
    w.upload("PROJ-1", "a.txt", b"alpha").await;
    w.upload("PROJ-1", "sub/b.bin", b"\x00\x01\x02").await;

    w.jira().move_issue_to("PROJ-1", "DEST", "DEST-9").await;
    w.wait_for_jobs().await;
    let target = elsewhere.path().join("Archive/DEST/DEST-9");
    assert_eq!(std::fs::read(target.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(
        std::fs::read(target.join("sub/b.bin")).unwrap(),
        b"\x00\x01\x02"
    );
    assert!(
        !w.dir("Jira/PROJ/PROJ-1").exists(),
        "the source is removed after the copy"
    );
    let mut names = w.list("DEST-9").await;
    names.sort();
    assert_eq!(names, vec!["a.txt", "sub"]);
    let moves = w.audited("issue_folder.move").await;
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].1.as_deref(), Some("Archive/DEST/DEST-9"));
}

#[tokio::test]
async fn reconciliation_honours_jiras_rate_limiting() {
    let w = world().await;
    w.jira().set_delivery(fake_jira::DeliveryMode::Drop);
    w.jira().create_issue("PROJ", "PROJ-1").await;
    w.jira().rate_limit_next(2, 1);
    w.reconcile().await;
    w.wait_for_dir("Jira/PROJ/PROJ-1").await;
    w.wait_for_jobs().await;
    let (attempts, error): (i32, Option<String>) =
        sqlx::query_as("SELECT attempts, last_error FROM jobs WHERE kind = 'reconcile'")
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert!(
        attempts >= 2,
        "the throttled search was tried again ({attempts})"
    );
    assert!(
        error.unwrap_or_default().contains("429"),
        "the throttling is on record"
    );
}

#[tokio::test]
async fn jobs_wait_out_a_storage_outage_and_lose_nothing() {
    let w = world().await;
    let peer = Peer::start(Kind::Apache).await;
    let connection: Value = w
        .app
        .client
        .post(w.app.url("/api/v1/admin/connections"))
        .bearer_auth("root-pat")
        .json(&json!({"name": "nas", "kind": "webdav", "settings": peer.settings("2s"), "secrets": {"password": PASSWORD}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = connection["id"]
        .as_str()
        .expect("webdav connection created");
    w.map("DEST", id, "Jira/DEST").await;

    // The NAS hangs (it keeps its connections and answers nothing) while the event arrives.
    peer.signal("STOP");
    w.jira().create_issue("DEST", "DEST-1").await;
    let pool = w.pool.clone();
    eventually("a failed attempt", Duration::from_secs(30), || {
        let pool = pool.clone();
        async move {
            let failed: Option<String> =
                sqlx::query_scalar("SELECT last_error FROM jobs WHERE kind = 'jira_event'")
                    .fetch_optional(&pool)
                    .await
                    .unwrap()
                    .flatten();
            failed.is_some()
        }
    })
    .await;
    assert!(!peer.root.join("Jira/DEST/DEST-1").exists());
    peer.signal("CONT");
    eventually("the folder on the NAS", Duration::from_secs(60), || {
        let path = peer.root.join("Jira/DEST/DEST-1");
        async move { path.is_dir() }
    })
    .await;
    w.wait_for_jobs().await;
}
