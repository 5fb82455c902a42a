//! Several instances on one database, as on every node of a Jira Data Center cluster: a
//! change made through one instance reaches the others' caches within a second, through
//! Postgres LISTEN/NOTIFY, not the caches' time limit (a minute).

use std::time::{Duration, Instant};

use filebridge::app::{Application, Migrations};
use serde_json::{Value, json};

use crate::helpers::{BASE, TestApp, TestConfig, http_client, map_to_directory, spawn_app};

/// A second instance of `app`: same database, same Jira, same master key.
struct Peer {
    address: String,
    handle: actix_web::dev::ServerHandle,
}

impl Peer {
    async fn start(app: &TestApp) -> Self {
        let config = TestConfig {
            env: app.config.env.clone(),
            migrations: Migrations::Apply,
        };
        let built = Application::build(&config.settings(), config.migrations)
            .await
            .expect("second instance builds");
        let address = format!("http://127.0.0.1:{}{BASE}", built.port());
        let handle = built.handle();
        tokio::spawn(built.run_until_stopped());
        Self { address, handle }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

/// The names in PROJ-1's folder, as `base` (an instance's address) lists them for alice.
async fn names(base: &str) -> Vec<String> {
    let response = http_client()
        .get(format!("{base}/api/v1/issues/PROJ-1/files"))
        .bearer_auth("alice-pat")
        .send()
        .await
        .unwrap();
    if response.status() != 200 {
        return vec![format!("HTTP {}", response.status())];
    }
    let body: Value = response.json().await.unwrap();
    let mut names: Vec<String> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Polls `check` every 20 ms and returns how long it took to pass; fails after 5 s.
async fn time_until(what: &str, check: impl AsyncFn() -> bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not seen within 5 s");
}

struct World {
    app: TestApp,
    connection: String,
    first: tempfile::TempDir,
    second: tempfile::TempDir,
}

async fn world() -> World {
    let app = spawn_app().await;
    let jira = &app.jira;
    jira.add_project("PROJ", "Project");
    jira.add_issue("PROJ", "PROJ-1");
    for (name, token) in [("root", "root-pat"), ("alice", "alice-pat")] {
        jira.add_user(name, name);
        jira.add_token(name, token);
        jira.grant_project(name, "PROJ", "BROWSE_PROJECTS");
    }
    jira.grant_global("root", "ADMINISTER");
    // Two storage roots, told apart by what PROJ-1's folder holds in each.
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    for (dir, file) in [(&first, "in-first.txt"), (&second, "in-second.txt")] {
        for root in ["Jira/PROJ", "Moved/PROJ"] {
            let folder = dir.path().join(root).join("PROJ-1");
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(
                folder.join(format!("{root}-{file}").replace('/', "_")),
                b"x",
            )
            .unwrap();
        }
    }
    let connection =
        map_to_directory(&app, "root-pat", "nas", first.path(), "PROJ", "Jira/PROJ").await;
    World {
        app,
        connection,
        first,
        second,
    }
}

#[tokio::test]
async fn a_connection_changed_on_one_instance_is_used_by_the_other_within_a_second() {
    let w = world().await;
    let other = Peer::start(&w.app).await;
    let before = vec!["Jira_PROJ-in-first.txt".to_string()];
    // Both instances have opened (and cached) the connection.
    assert_eq!(names(&w.app.address).await, before);
    assert_eq!(names(&other.address).await, before);

    let changed = w
        .app
        .client
        .put(
            w.app
                .url(&format!("/api/v1/admin/connections/{}", w.connection)),
        )
        .bearer_auth("root-pat")
        .json(&json!({"name": "nas", "kind": "filesystem", "settings": {"root": w.second.path()}}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200, "{}", changed.text().await.unwrap());
    let after = vec!["Jira_PROJ-in-second.txt".to_string()];
    assert_eq!(names(&w.app.address).await, after, "the changing instance");
    let took = time_until("the other instance using the new root", async || {
        names(&other.address).await == after
    })
    .await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    drop(w.first);
}

#[tokio::test]
async fn a_mapping_changed_on_one_instance_is_used_by_the_other_within_a_second() {
    let w = world().await;
    let other = Peer::start(&w.app).await;
    let before = vec!["Jira_PROJ-in-first.txt".to_string()];
    assert_eq!(names(&other.address).await, before);

    let changed = w
        .app
        .client
        .put(w.app.url("/api/v1/admin/projects/PROJ/mapping"))
        .bearer_auth("root-pat")
        .json(&json!({"connection_id": w.connection, "root": "Moved/PROJ"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let after = vec!["Moved_PROJ-in-first.txt".to_string()];
    let took = time_until("the other instance using the new mapping", async || {
        names(&other.address).await == after
    })
    .await;
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // And a removed mapping: the other instance stops serving the folder.
    let removed = w
        .app
        .client
        .delete(w.app.url("/api/v1/admin/projects/PROJ/mapping"))
        .bearer_auth("root-pat")
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    let took = time_until("the other instance forgetting the mapping", async || {
        names(&other.address).await == vec!["HTTP 404 Not Found".to_string()]
    })
    .await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    drop(w.second);
}

#[tokio::test]
async fn listening_takes_no_connection_from_the_pool_that_serves_requests() {
    // One connection for requests, waited for a second at most: if either LISTEN held it,
    // every request below would fail.
    let app = crate::helpers::spawn_app_with(|config| {
        config
            .set("DATABASE__MAX_CONNECTIONS", "1")
            .set("DATABASE__ACQUIRE_TIMEOUT", "1s");
    })
    .await;
    app.jira.add_user("root", "root");
    app.jira.add_token("root", "root-pat");
    app.jira.grant_global("root", "ADMINISTER");
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    // Both listeners are in place: the job queue's and the configuration's.
    crate::helpers::eventually("two LISTEN connections", Duration::from_secs(30), || {
        let pool = pool.clone();
        async move {
            let listening: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND query LIKE 'LISTEN %'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            listening == 2
        }
    })
    .await;
    for _ in 0..3 {
        let response = app.get_as("/api/v1/admin/connections", "root-pat").await;
        assert_eq!(response.status(), 200);
    }
}
