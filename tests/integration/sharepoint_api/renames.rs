//! An issue folder renamed or moved in SharePoint itself (by a person, not through
//! filebridge) is found again by its driveItem id: the issue keeps its files, and the record
//! follows, audited.

use serde_json::json;
use sqlx::PgPool;

use super::{SECRET, jira_people, world_with};
use crate::helpers::spawn_app;

#[tokio::test]
async fn an_issue_folder_renamed_in_sharepoint_keeps_its_files() {
    let app = spawn_app().await;
    jira_people(&app);
    let w = world_with(app).await;
    let id = w
        .create_connection("legal", json!({"client_secret": SECRET}))
        .await;
    w.map(&id).await;
    assert_eq!(w.put("a.txt", b"a".to_vec()).await.status(), 201);

    // Someone renames the issue's folder in SharePoint, and moves it into a folder of its own.
    w.graph.move_item(
        &w.drive,
        "/Jira/PROJ/PROJ-1",
        "/Jira/PROJ/2026/PROJ-1 contract",
    );
    assert_eq!(
        w.listed("").await,
        [("a.txt".to_string(), "file".to_string(), Some(1))]
    );
    assert_eq!(w.put("b.txt", b"b".to_vec()).await.status(), 201);
    assert_eq!(
        w.graph
            .file_bytes(&w.drive, "/Jira/PROJ/2026/PROJ-1 contract/b.txt")
            .as_deref(),
        Some(&b"b"[..])
    );
    assert_eq!(
        w.graph.item_id(&w.drive, "/Jira/PROJ/PROJ-1"),
        None,
        "no second folder under the old name"
    );

    let pool = PgPool::connect(&w.app.database_url).await.unwrap();
    let recorded: String = sqlx::query_scalar("SELECT path FROM issue_folders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(recorded, "PROJ/2026/PROJ-1 contract");
    let relocations: Vec<(String, Option<String>, serde_json::Value)> = sqlx::query_as(
        "SELECT actor_name, path, details FROM audit_events
         WHERE action = 'issue_folder.relocate'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(relocations.len(), 1, "{relocations:?}");
    assert_eq!(relocations[0].0, "alice");
    assert_eq!(
        relocations[0].1.as_deref(),
        Some("PROJ/2026/PROJ-1 contract")
    );
    assert_eq!(relocations[0].2["from"]["path"], "PROJ/PROJ-1");

    // Moved out of the connection's root: nothing of it is reachable through the issue any
    // more (the record stays where it was; an upload makes a new folder there).
    w.graph
        .move_item(&w.drive, "/Jira/PROJ/2026/PROJ-1 contract", "/Elsewhere");
    assert_eq!(w.put("c.txt", b"c".to_vec()).await.status(), 201);
    assert_eq!(
        w.listed("").await,
        [("c.txt".to_string(), "file".to_string(), Some(1))]
    );
    let recorded: String = sqlx::query_scalar("SELECT path FROM issue_folders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(recorded, "PROJ/2026/PROJ-1 contract", "the record stands");
    let relocations: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE action = 'issue_folder.relocate'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(relocations, 1);
}
