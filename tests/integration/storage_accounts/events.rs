//! Jira events on a delegated connection: filebridge has no identity of its own in that
//! storage, so its background work cannot make, move or archive folders there. Folders stay
//! where they are, recorded under the issue's current key, so users keep their files; the
//! jobs end done (not dead) and the audit trail says why nothing moved.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::{World, world_with};
use crate::events::{events_config, reconcile, register_webhook};
use crate::helpers::{eventually, free_port};

const WAIT: Duration = Duration::from_secs(30);

/// The delegated world with Jira events on: the service user `svc`, the webhook registered,
/// alice's Microsoft account connected and `report.txt` uploaded into PROJ-1.
async fn world() -> World {
    let world = world_with(|config| events_config(config, free_port())).await;
    let jira = &world.app.jira;
    jira.add_user("svc", "svc");
    jira.add_token("svc", "svc-pat");
    jira.grant_project("svc", "PROJ", "BROWSE_PROJECTS");
    jira.grant_project("svc", "PROJ", "LINK_ISSUES");
    register_webhook(&world.app).await;
    world.connect("alice-pat", &world.ms_alice).await;
    world.upload("alice-pat", "report.txt", b"hello").await;
    world
}

impl World {
    /// Waits until every job has ended; none may have failed (a job that cannot act in the
    /// storage must end, not retry until it is dead).
    async fn jobs_done(&self) {
        let pool = self.pool().await;
        eventually("every job done", WAIT, || {
            let pool = pool.clone();
            async move {
                let jobs: Vec<(String, String, Option<String>)> =
                    sqlx::query_as("SELECT kind, state, last_error FROM jobs")
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                let failed: Vec<_> = jobs.iter().filter(|j| j.2.is_some()).collect();
                assert!(failed.is_empty(), "failed jobs: {failed:?}");
                !jobs.is_empty() && jobs.iter().all(|j| j.1 == "done")
            }
        })
        .await;
    }

    async fn sync_jobs(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'sync_issue'")
            .fetch_one(&self.pool().await)
            .await
            .unwrap()
    }

    /// The app itself may write in the site (Sites.Selected), and the connection says it
    /// does background work.
    async fn background_as_app(&self) {
        self.graph
            .grant_sites_selected(&self.client, &self.site, fake_graph::Access::Write);
        let path = format!("/api/v1/admin/connections/{}", self.id);
        let mut connection: Value = self
            .app
            .get_as(&path, "root-pat")
            .await
            .json()
            .await
            .unwrap();
        connection["settings"]["background"] = "app".into();
        let replaced = self
            .app
            .client
            .put(self.app.url(&path))
            .bearer_auth("root-pat")
            .json(
                &serde_json::json!({"name": connection["name"], "kind": "sharepoint",
                                      "settings": connection["settings"]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            replaced.status(),
            StatusCode::OK,
            "{:?}",
            replaced.text().await
        );
    }

    /// The issue's recorded folder: (key, path, state).
    async fn record(&self) -> (String, String, String) {
        sqlx::query_as("SELECT issue_key, path, state FROM issue_folders")
            .fetch_one(&self.pool().await)
            .await
            .unwrap()
    }

    /// Audited folder changes: (action, path, note).
    async fn folder_audit(&self) -> Vec<(String, Option<String>, Option<String>)> {
        sqlx::query_as(
            "SELECT action, path, details->>'note' FROM audit_events
             WHERE action LIKE 'issue_folder.%' OR action LIKE 'mapping.follow%' ORDER BY seq",
        )
        .fetch_all(&self.pool().await)
        .await
        .unwrap()
    }

    async fn names_in(&self, issue: &str) -> Vec<String> {
        let response = self
            .app
            .get_as(&format!("/api/v1/issues/{issue}/files"), "alice-pat")
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    }

    fn file(&self, path: &str) -> Option<Vec<u8>> {
        self.graph.file_bytes(&self.drive, path).map(|b| b.to_vec())
    }
}

#[tokio::test]
async fn a_renamed_issue_keeps_its_folder_and_files_when_nobody_can_move_them() {
    let world = world().await;
    world.app.jira.rename_issue("PROJ-1", "PROJ-7").await;
    world.jobs_done().await;
    // Not moved (no user to act as), but recorded under the new key: the files are there.
    assert_eq!(
        world.record().await,
        ("PROJ-7".into(), "PROJ/PROJ-1".into(), "active".into())
    );
    assert_eq!(world.names_in("PROJ-7").await, ["report.txt"]);
    assert_eq!(
        world.file("/Jira/PROJ/PROJ-1/report.txt").as_deref(),
        Some(&b"hello"[..])
    );
    let audit = world.folder_audit().await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].0, "issue_folder.keep");
    assert_eq!(audit[0].1.as_deref(), Some("PROJ/PROJ-1"));
    let note = audit[0].2.as_deref().unwrap_or_default();
    assert!(
        note.contains("not moved to PROJ/PROJ-7") && note.contains("each user"),
        "{note}"
    );
    // The issue's link to its files says nothing of what is in them: each user sees other
    // files there.
    let links = world.app.jira.remote_links("PROJ-7");
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(
        links[0]["object"]["url"],
        format!("{}/issues/PROJ-7", super::PUBLIC)
    );
    assert!(links[0]["object"].get("summary").is_none(), "{links:?}");

    // Syncing the issue again (reconciliation) changes nothing and audits nothing.
    let syncs = world.sync_jobs().await;
    reconcile(&world.app).await;
    world.jobs_done().await;
    assert!(
        world.sync_jobs().await > syncs,
        "the issue was synced again"
    );
    assert_eq!(world.record().await.0, "PROJ-7");
    assert_eq!(world.folder_audit().await.len(), 1);
}

#[tokio::test]
async fn new_issues_get_their_folder_from_the_first_upload_and_deleted_ones_stay_put() {
    let world = world().await;
    world.app.jira.create_issue("PROJ", "PROJ-2").await;
    world.jobs_done().await;
    // Nothing made in SharePoint, nothing recorded: the first upload makes the folder.
    assert_eq!(world.graph.item_id(&world.drive, "/Jira/PROJ/PROJ-2"), None);
    assert!(world.folder_audit().await.is_empty());

    world.app.jira.delete_issue("PROJ-1").await;
    world.jobs_done().await;
    let (key, path, state) = world.record().await;
    assert_eq!((key.as_str(), path.as_str()), ("PROJ-1", "PROJ/PROJ-1"));
    assert_eq!(state, "archived");
    assert_eq!(
        world.file("/Jira/PROJ/PROJ-1/report.txt").as_deref(),
        Some(&b"hello"[..]),
        "never deleted, and left where it was"
    );
    let audit = world.folder_audit().await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].0, "issue_folder.archive");
    assert!(
        audit[0]
            .2
            .as_deref()
            .unwrap_or_default()
            .starts_with("left in place"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_project_key_change_keeps_the_root_and_the_files() {
    let world = world().await;
    world.app.jira.change_project_key("PROJ", "NEWP").await;
    world.jobs_done().await;
    let mapping: Value = world
        .app
        .get_as("/api/v1/admin/projects/NEWP/mapping", "root-pat")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        mapping["root"], "PROJ",
        "the root keeps its name: {mapping}"
    );
    assert_eq!(world.names_in("NEWP-1").await, ["report.txt"]);
    assert_eq!(
        world.record().await,
        ("NEWP-1".into(), "PROJ/PROJ-1".into(), "active".into())
    );
    let audit = world.folder_audit().await;
    let actions: Vec<&str> = audit.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(
        actions,
        ["mapping.follow_key", "issue_folder.keep"],
        "{audit:?}"
    );
    assert!(
        audit[0]
            .2
            .as_deref()
            .unwrap_or_default()
            .contains("root not renamed"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn with_background_as_the_app_folders_follow_their_issues() {
    let world = world().await;
    world.background_as_app().await;

    world.app.jira.rename_issue("PROJ-1", "PROJ-7").await;
    world.app.jira.create_issue("PROJ", "PROJ-2").await;
    world.jobs_done().await;
    assert_eq!(
        world.file("/Jira/PROJ/PROJ-7/report.txt").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(world.graph.item_id(&world.drive, "/Jira/PROJ/PROJ-1"), None);
    assert!(
        world
            .graph
            .item_id(&world.drive, "/Jira/PROJ/PROJ-2")
            .is_some()
    );
    assert_eq!(world.names_in("PROJ-7").await, ["report.txt"]);
    let actions: Vec<String> = world
        .folder_audit()
        .await
        .into_iter()
        .map(|a| a.0)
        .collect();
    actions.iter().for_each(|a| {
        assert!(
            a == "issue_folder.move" || a == "issue_folder.create",
            "{a}"
        )
    });
    assert_eq!(actions.len(), 2, "{actions:?}");
    // What the app sees is not what users see: still no count on the link.
    let links = world.app.jira.remote_links("PROJ-7");
    assert!(links[0]["object"].get("summary").is_none(), "{links:?}");
}

#[tokio::test]
async fn folders_kept_in_place_move_with_their_next_change_once_the_app_may_act() {
    let world = world().await;
    world.app.jira.rename_issue("PROJ-1", "PROJ-7").await;
    world.jobs_done().await;
    assert_eq!(world.record().await.1, "PROJ/PROJ-1", "kept in place");
    world.background_as_app().await;
    world.app.jira.rename_issue("PROJ-7", "PROJ-8").await;
    world.jobs_done().await;
    assert_eq!(
        world.record().await,
        ("PROJ-8".into(), "PROJ/PROJ-8".into(), "active".into())
    );
    assert_eq!(
        world.file("/Jira/PROJ/PROJ-8/report.txt").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(world.graph.item_id(&world.drive, "/Jira/PROJ/PROJ-1"), None);
    let actions: Vec<String> = world
        .folder_audit()
        .await
        .into_iter()
        .map(|a| a.0)
        .collect();
    assert_eq!(actions, ["issue_folder.keep", "issue_folder.move"]);
}

#[tokio::test]
async fn a_folder_renamed_in_sharepoint_is_found_by_id_when_its_issue_moves() {
    let world = world().await;
    world.background_as_app().await;
    world
        .graph
        .move_item(&world.drive, "/Jira/PROJ/PROJ-1", "/Jira/PROJ/Contracts");
    world.app.jira.rename_issue("PROJ-1", "PROJ-7").await;
    world.jobs_done().await;
    assert_eq!(
        world.file("/Jira/PROJ/PROJ-7/report.txt").as_deref(),
        Some(&b"hello"[..]),
        "moved from where it was renamed to"
    );
    assert_eq!(
        world.graph.item_id(&world.drive, "/Jira/PROJ/Contracts"),
        None
    );
    assert_eq!(world.record().await.1, "PROJ/PROJ-7");
}

#[tokio::test]
async fn a_name_given_in_sharepoint_stays_until_the_issue_gets_a_new_key() {
    let world = world().await;
    world.background_as_app().await;
    world
        .graph
        .move_item(&world.drive, "/Jira/PROJ/PROJ-1", "/Jira/PROJ/Contracts");
    assert_eq!(world.names_in("PROJ-1").await, ["report.txt"]);
    assert_eq!(world.record().await.1, "PROJ/Contracts");
    // Syncing the issue (nothing changed in Jira) leaves the name someone gave it.
    reconcile(&world.app).await;
    world.jobs_done().await;
    assert!(world.sync_jobs().await > 0);
    assert_eq!(
        world.file("/Jira/PROJ/Contracts/report.txt").as_deref(),
        Some(&b"hello"[..])
    );
    // Someone already gave it the new key's name in SharePoint: the move finds nothing to do.
    world
        .graph
        .move_item(&world.drive, "/Jira/PROJ/Contracts", "/Jira/PROJ/PROJ-9");
    world.app.jira.rename_issue("PROJ-1", "PROJ-9").await;
    world.jobs_done().await;
    assert_eq!(
        world.record().await,
        ("PROJ-9".into(), "PROJ/PROJ-9".into(), "active".into())
    );
    assert_eq!(world.names_in("PROJ-9").await, ["report.txt"]);
}
