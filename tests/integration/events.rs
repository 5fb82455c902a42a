//! Folders that follow their issues, end to end: the fake Jira changes issues and delivers
//! its webhooks to filebridge (registered through the admin API), the job workers move the
//! folders in a real directory, and reconciliation repairs what the webhooks missed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fake_jira::{DeliveryMode, FakeJira};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::free_port;
use crate::helpers::{TestApp, TestConfig, cluster_url, create_database, eventually, start};

const SECRET: &str = "webhook-secret-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(30);

pub struct World {
    pub app: TestApp,
    pub root: tempfile::TempDir,
    pub pool: PgPool,
}

pub fn events_config(config: &mut TestConfig, port: u16) {
    config
        .set("SERVER__LISTEN", &format!("127.0.0.1:{port}"))
        .set("JIRA__SERVICE_TOKEN", "svc-pat")
        .set("JIRA__WEBHOOK_SECRET", SECRET)
        .set(
            "JIRA__WEBHOOK_URL",
            &format!("http://127.0.0.1:{port}/filebridge/hooks/jira"),
        )
        .set("JOBS__LEASE", "3s")
        .set("JOBS__BACKOFF_MAX", "2s")
        .set("RECONCILE__INTERVAL", "0");
}

/// PROJ and DEST mapped to `Jira/PROJ` and `Jira/DEST` of one directory (issue folders
/// created automatically), OTHER not mapped; the webhook registered; `root` a Jira admin,
/// `svc` the service user, `alice` may browse and attach everywhere.
pub async fn world_with(tweak: impl FnOnce(&mut TestConfig)) -> World {
    crate::helpers::init_logging();
    let jira = FakeJira::start().await;
    let database_url = create_database(&cluster_url()).await;
    let mut config = TestConfig::new(&database_url, &jira.base_url);
    events_config(&mut config, free_port());
    tweak(&mut config);
    for project in ["PROJ", "DEST", "OTHER"] {
        jira.add_project(project, project);
    }
    for (name, token) in [
        ("root", "root-pat"),
        ("svc", "svc-pat"),
        ("alice", "alice-pat"),
    ] {
        jira.add_user(name, name);
        jira.add_token(name, token);
    }
    jira.grant_global("root", "ADMINISTER");
    for project in ["PROJ", "DEST", "OTHER"] {
        for user in ["root", "svc", "alice"] {
            jira.grant_project(user, project, "BROWSE_PROJECTS");
        }
        jira.grant_project("alice", project, "CREATE_ATTACHMENTS");
        jira.grant_project("svc", project, "LINK_ISSUES");
    }
    let app = start(config, jira, database_url.clone()).await;
    let pool = PgPool::connect(&database_url).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let world = World { app, root, pool };
    let connection = world.create_connection(world.root.path()).await;
    for project in ["PROJ", "DEST"] {
        world
            .map(project, &connection, &format!("Jira/{project}"))
            .await;
    }
    register_webhook(&world.app).await;
    world
}

/// Registers filebridge's webhook in the fake Jira as the administrator `root`.
pub async fn register_webhook(app: &TestApp) {
    let registered = app
        .client
        .post(app.url("/api/v1/admin/jira/webhook"))
        .bearer_auth("root-pat")
        .send()
        .await
        .unwrap();
    assert!(
        registered.status().is_success(),
        "webhook registered: {}",
        registered.text().await.unwrap()
    );
    assert_eq!(app.jira.webhooks().len(), 1);
}

/// Asks for a reconciliation as the administrator `root`; 202 expected.
pub async fn reconcile(app: &TestApp) {
    let run = app
        .client
        .post(app.url("/api/v1/admin/reconcile"))
        .bearer_auth("root-pat")
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 202);
}

pub async fn world() -> World {
    world_with(|_| {}).await
}

impl World {
    pub fn jira(&self) -> &FakeJira {
        &self.app.jira
    }

    pub async fn create_connection(&self, dir: &Path) -> String {
        let connection: Value = self
            .app
            .client
            .post(self.app.url("/api/v1/admin/connections"))
            .bearer_auth("root-pat")
            .json(&json!({"name": format!("local {}", dir.display()), "kind": "filesystem", "settings": {"root": dir}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        connection["id"]
            .as_str()
            .expect("connection created")
            .to_string()
    }

    pub async fn map(&self, project: &str, connection: &str, root: &str) {
        let mapping = self
            .app
            .client
            .put(
                self.app
                    .url(&format!("/api/v1/admin/projects/{project}/mapping")),
            )
            .bearer_auth("root-pat")
            .json(&json!({"connection_id": connection, "root": root, "auto_create": true}))
            .send()
            .await
            .unwrap();
        assert!(mapping.status().is_success(), "{project} mapped");
    }

    pub fn dir(&self, relative: &str) -> PathBuf {
        self.root.path().join(relative)
    }

    pub async fn wait_for_dir(&self, relative: &str) {
        let path = self.dir(relative);
        eventually(&format!("{relative} exists"), WAIT, || {
            let path = path.clone();
            async move { path.is_dir() }
        })
        .await;
    }

    /// Waits until no job is queued or running, and none is dead.
    pub async fn wait_for_jobs(&self) {
        let pool = self.pool.clone();
        eventually("every job done", WAIT, || {
            let pool = pool.clone();
            async move {
                let open: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')",
                )
                .fetch_one(&pool)
                .await
                .unwrap();
                open == 0
            }
        })
        .await;
        let dead: Vec<(i64, String, Option<String>)> =
            sqlx::query_as("SELECT id, kind, last_error FROM jobs WHERE state = 'dead'")
                .fetch_all(&self.pool)
                .await
                .unwrap();
        assert!(dead.is_empty(), "dead jobs: {dead:?}");
    }

    pub async fn upload(&self, issue: &str, path: &str, body: &'static [u8]) {
        let response = self
            .app
            .client
            .put(
                self.app
                    .url(&format!("/api/v1/issues/{issue}/files/content")),
            )
            .query(&[("path", path)])
            .bearer_auth("alice-pat")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "upload to {issue}");
    }

    pub async fn list(&self, issue: &str) -> Vec<String> {
        let listing: Value = self
            .app
            .client
            .get(self.app.url(&format!("/api/v1/issues/{issue}/files")))
            .bearer_auth("alice-pat")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        listing["items"]
            .as_array()
            .unwrap_or_else(|| panic!("a listing: {listing}"))
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    }

    pub async fn audited(&self, action: &str) -> Vec<(String, Option<String>)> {
        sqlx::query_as("SELECT actor_key, path FROM audit_events WHERE action = $1 ORDER BY seq")
            .bind(action)
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    pub async fn reconcile(&self) {
        reconcile(&self.app).await;
    }

    pub async fn record(&self, issue_id: &str) -> Option<(String, String, String)> {
        sqlx::query_as("SELECT issue_key, path, state FROM issue_folders WHERE issue_id = $1")
            .bind(issue_id)
            .fetch_optional(&self.pool)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn folders_follow_issues_through_create_rename_move_and_delete() {
    let w = world().await;
    let id = w.jira().create_issue("PROJ", "PROJ-1").await;
    w.wait_for_dir("Jira/PROJ/PROJ-1").await;
    w.wait_for_jobs().await;
    // The remote link points at filebridge's page for the issue.
    let links = w.jira().remote_links("PROJ-1");
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0]["globalId"], format!("filebridge:issue={id}"));
    assert_eq!(links[0]["object"]["title"], "Files");
    assert_eq!(
        links[0]["object"]["url"],
        "https://jira.example.test/filebridge/issues/PROJ-1"
    );
    assert_eq!(links[0]["object"]["summary"], "0 files");

    w.upload("PROJ-1", "report.pdf", b"%PDF").await;
    w.jira().rename_issue("PROJ-1", "PROJ-7").await;
    w.wait_for_dir("Jira/PROJ/PROJ-7").await;
    w.wait_for_jobs().await;
    assert!(
        !w.dir("Jira/PROJ/PROJ-1").exists(),
        "the old folder is gone"
    );
    assert_eq!(
        std::fs::read(w.dir("Jira/PROJ/PROJ-7/report.pdf")).unwrap(),
        b"%PDF"
    );
    assert_eq!(w.list("PROJ-7").await, vec!["report.pdf"]);
    let links = w.jira().remote_links("PROJ-7");
    assert_eq!(links.len(), 1, "still one link: {links:?}");
    assert_eq!(links[0]["object"]["summary"], "1 file");

    w.jira().move_issue_to("PROJ-7", "DEST", "DEST-3").await;
    w.wait_for_dir("Jira/DEST/DEST-3").await;
    w.wait_for_jobs().await;
    assert!(!w.dir("Jira/PROJ/PROJ-7").exists());
    assert_eq!(w.list("DEST-3").await, vec!["report.pdf"]);
    assert_eq!(
        w.record(&id).await,
        Some(("DEST-3".into(), "Jira/DEST/DEST-3".into(), "active".into()))
    );

    w.jira().delete_issue("DEST-3").await;
    w.wait_for_dir("Jira/DEST/_archived/DEST-3").await;
    w.wait_for_jobs().await;
    assert_eq!(
        std::fs::read(w.dir("Jira/DEST/_archived/DEST-3/report.pdf")).unwrap(),
        b"%PDF",
        "archived, never deleted"
    );
    assert_eq!(w.record(&id).await.unwrap().2, "archived");

    let system = "system:jira-events".to_string();
    assert_eq!(
        w.audited("issue_folder.create").await,
        vec![(system.clone(), Some("Jira/PROJ/PROJ-1".into()))]
    );
    assert_eq!(
        w.audited("issue_folder.move").await,
        vec![
            (system.clone(), Some("Jira/PROJ/PROJ-7".into())),
            (system.clone(), Some("Jira/DEST/DEST-3".into()))
        ]
    );
    assert_eq!(
        w.audited("issue_folder.archive").await,
        vec![(system, Some("Jira/DEST/_archived/DEST-3".into()))]
    );
    // Nothing of the issue's content was kept: payloads hold ids and keys only.
    let payloads: Vec<Value> = sqlx::query_scalar("SELECT payload FROM jobs")
        .fetch_all(&w.pool)
        .await
        .unwrap();
    for payload in payloads {
        let text = payload.to_string();
        assert!(
            !text.contains("summary") && !text.contains("Summary of"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn an_issue_moved_to_an_unmapped_project_keeps_its_folder_and_files() {
    let w = world().await;
    let id = w.jira().create_issue("PROJ", "PROJ-1").await;
    w.wait_for_dir("Jira/PROJ/PROJ-1").await;
    w.wait_for_jobs().await;
    w.upload("PROJ-1", "a.txt", b"a").await;
    w.jira().move_issue_to("PROJ-1", "OTHER", "OTHER-1").await;
    w.wait_for_jobs().await;
    assert!(w.dir("Jira/PROJ/PROJ-1/a.txt").is_file(), "left in place");
    let (key, path, state) = w.record(&id).await.unwrap();
    assert_eq!(
        (key.as_str(), path.as_str(), state.as_str()),
        ("OTHER-1", "Jira/PROJ/PROJ-1", "active")
    );
}

#[tokio::test]
async fn a_project_key_change_renames_the_root_and_the_issue_folders() {
    let w = world().await;
    w.jira().create_issue("PROJ", "PROJ-1").await;
    w.wait_for_dir("Jira/PROJ/PROJ-1").await;
    w.wait_for_jobs().await;
    w.upload("PROJ-1", "a.txt", b"a").await;
    w.jira().change_project_key("PROJ", "NEWP").await;
    w.wait_for_dir("Jira/NEWP/NEWP-1").await;
    w.wait_for_jobs().await;
    assert!(!w.dir("Jira/PROJ").exists(), "the old root is gone");
    assert!(w.dir("Jira/NEWP/NEWP-1/a.txt").is_file());
    let mapping: Value = w
        .app
        .client
        .get(w.app.url("/api/v1/admin/projects/NEWP/mapping"))
        .bearer_auth("root-pat")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mapping["root"], "Jira/NEWP", "{mapping}");
    assert_eq!(w.list("NEWP-1").await, vec!["a.txt"]);
}

#[tokio::test]
async fn reconciliation_repairs_dropped_webhooks() {
    let w = world().await;
    w.jira().set_delivery(DeliveryMode::Drop);
    let kept = w.jira().create_issue("PROJ", "PROJ-1").await;
    let gone = w.jira().create_issue("PROJ", "PROJ-2").await;
    w.jira().create_issue("OTHER", "OTHER-1").await;
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0, "nothing arrived");
    assert!(!w.dir("Jira/PROJ/PROJ-1").exists());

    w.reconcile().await;
    w.wait_for_dir("Jira/PROJ/PROJ-1").await;
    w.wait_for_dir("Jira/PROJ/PROJ-2").await;
    w.wait_for_jobs().await;
    assert!(
        !w.dir("Jira/OTHER").exists(),
        "unmapped projects are not searched"
    );
    assert!(w.record(&kept).await.is_some());

    // A deletion nobody announced: the next run no longer finds the issue and archives it.
    w.jira().delete_issue("PROJ-2").await;
    w.reconcile().await;
    w.wait_for_dir("Jira/PROJ/_archived/PROJ-2").await;
    w.wait_for_jobs().await;
    assert_eq!(w.record(&gone).await.unwrap().2, "archived");
    assert!(
        w.dir("Jira/PROJ/PROJ-1").is_dir(),
        "the kept issue keeps its folder"
    );
    // The cursor survives in the database.
    let cursors: i64 = sqlx::query_scalar("SELECT count(*) FROM reconcile_cursors")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(cursors, 1);
}

#[tokio::test]
async fn duplicate_and_out_of_order_webhooks_end_in_jiras_current_state() {
    let w = world().await;
    w.jira().set_delivery(DeliveryMode::Queue);
    w.jira().create_issue("PROJ", "PROJ-1").await;
    w.jira().move_issue_to("PROJ-1", "DEST", "DEST-1").await;
    assert_eq!(w.jira().queued_deliveries(), 2);
    // The move arrives before the creation.
    let sent = w.jira().deliver_queued(&[1, 0]).await;
    assert!(
        sent.iter()
            .all(|d| d.status.is_some_and(|s| (200..300).contains(&s))),
        "{sent:?}"
    );
    w.wait_for_dir("Jira/DEST/DEST-1").await;
    w.wait_for_jobs().await;
    assert!(
        !w.dir("Jira/PROJ/PROJ-1").exists(),
        "no folder for the issue's old place"
    );
    // A second delivery of the same event is not queued again.
    w.jira().set_delivery(DeliveryMode::Send);
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    let again = w.jira().redeliver(0).await;
    assert!(
        again.status.is_some_and(|s| (200..300).contains(&s)),
        "{again:?}"
    );
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(w.audited("issue_folder.create").await.len(), 1);
}

#[tokio::test]
async fn jira_throttling_and_outages_delay_jobs_without_losing_them() {
    let w = world().await;
    // The remote link call is throttled twice, then Jira fails once.
    w.jira().rate_limit_next(2, 1);
    let id = w.jira().create_issue("PROJ", "PROJ-1").await;
    w.wait_for_dir("Jira/PROJ/PROJ-1").await;
    w.wait_for_jobs().await;
    assert_eq!(w.jira().remote_links("PROJ-1").len(), 1);
    let attempts: i32 = sqlx::query_scalar("SELECT max(attempts) FROM jobs")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 3, "two throttled attempts, then success");

    w.jira().fail_next(1);
    w.jira().rename_issue("PROJ-1", "PROJ-2").await;
    w.wait_for_dir("Jira/PROJ/PROJ-2").await;
    w.wait_for_jobs().await;
    assert_eq!(w.record(&id).await.unwrap().0, "PROJ-2");
}

#[tokio::test]
async fn a_folder_nobody_recorded_is_adopted_when_its_issue_gets_a_new_key() {
    let w = world().await;
    // An issue and a folder from before filebridge kept records: no event, no record.
    w.jira().add_issue("PROJ", "PROJ-1");
    std::fs::create_dir_all(w.dir("Jira/PROJ/PROJ-1")).unwrap();
    std::fs::write(w.dir("Jira/PROJ/PROJ-1/old.txt"), b"kept").unwrap();
    w.jira().rename_issue("PROJ-1", "PROJ-5").await;
    w.wait_for_dir("Jira/PROJ/PROJ-5").await;
    w.wait_for_jobs().await;
    assert_eq!(
        std::fs::read(w.dir("Jira/PROJ/PROJ-5/old.txt")).unwrap(),
        b"kept"
    );
    assert!(!w.dir("Jira/PROJ/PROJ-1").exists(), "moved, not copied");
    assert_eq!(w.list("PROJ-5").await, vec!["old.txt"]);
}
