//! Several filebridge instances on one database: a burst of webhooks worked exactly once
//! between two instances, and a job taken over when its instance is killed mid-way.

use std::process::Stdio;
use std::time::Duration;

use fake_jira::FakeJira;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::events::events_config;
use crate::helpers::free_port;
use crate::helpers::{TestConfig, cluster_url, create_database, eventually, http_client, start};

const BIN: &str = env!("CARGO_BIN_EXE_filebridge");

/// Users, projects and permissions as in `events::world`, without an application.
fn jira_world(jira: &FakeJira) {
    jira.add_project("PROJ", "PROJ");
    for (name, token) in [("root", "root-pat"), ("svc", "svc-pat")] {
        jira.add_user(name, name);
        jira.add_token(name, token);
        jira.grant_project(name, "PROJ", "BROWSE_PROJECTS");
    }
    jira.grant_global("root", "ADMINISTER");
    jira.grant_project("svc", "PROJ", "LINK_ISSUES");
}

/// Creates a filesystem connection, maps PROJ to `Jira/PROJ` in it, registers the webhook.
async fn set_up(base: &str, dir: &std::path::Path) {
    let client = http_client();
    let connection: Value = client
        .post(format!("{base}/api/v1/admin/connections"))
        .bearer_auth("root-pat")
        .json(&json!({"name": "local", "kind": "filesystem", "settings": {"root": dir}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mapped = client
        .put(format!("{base}/api/v1/admin/projects/PROJ/mapping"))
        .bearer_auth("root-pat")
        .json(&json!({"connection_id": connection["id"], "root": "Jira/PROJ"}))
        .send()
        .await
        .unwrap();
    assert!(mapped.status().is_success());
    let registered = client
        .post(format!("{base}/api/v1/admin/jira/webhook"))
        .bearer_auth("root-pat")
        .send()
        .await
        .unwrap();
    assert!(registered.status().is_success());
}

#[tokio::test]
async fn two_instances_work_a_burst_of_a_thousand_events_each_exactly_once() {
    crate::helpers::init_logging();
    let jira = FakeJira::start().await;
    jira_world(&jira);
    let database_url = create_database(&cluster_url()).await;
    let tweak = |config: &mut TestConfig| {
        events_config(config, free_port());
        config.set("JIRA__REMOTE_LINKS", "false");
    };
    let mut first = TestConfig::new(&database_url, &jira.base_url);
    tweak(&mut first);
    let a = start(first, jira, database_url.clone()).await;
    let mut second = TestConfig::new(&database_url, &a.jira.base_url);
    tweak(&mut second);
    // The second instance shares the database; its own fake Jira is never called.
    let b = start(second, FakeJira::start().await, database_url.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    set_up(&a.address, dir.path()).await;
    let pool = PgPool::connect(&database_url).await.unwrap();

    for n in 1..=1000 {
        a.jira.create_issue("PROJ", &format!("PROJ-{n}")).await;
    }
    eventually("1,000 jobs done", Duration::from_secs(120), || {
        let pool = pool.clone();
        async move {
            let done: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'done'")
                .fetch_one(&pool)
                .await
                .unwrap();
            done == 1000
        }
    })
    .await;
    let (jobs, once): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE attempts = 1) FROM jobs")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((jobs, once), (1000, 1000), "every job ran once");
    let (creates, paths): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT path) FROM audit_events WHERE action = 'issue_folder.create'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((creates, paths), (1000, 1000), "each folder created once");
    assert_eq!(
        std::fs::read_dir(dir.path().join("Jira/PROJ"))
            .unwrap()
            .count(),
        1000
    );
    drop(b);
}

#[tokio::test]
async fn a_job_whose_instance_is_killed_is_finished_by_another() {
    crate::helpers::init_logging();
    let jira = FakeJira::start().await;
    jira_world(&jira);
    let database_url = create_database(&cluster_url()).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut config = TestConfig::new(&database_url, &jira.base_url);
    events_config(&mut config, port);
    let mut daemon = tokio::process::Command::new(BIN)
        .arg("serve")
        .env_clear()
        .envs(&config.env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start filebridge");
    let base = format!("http://127.0.0.1:{port}/filebridge");
    let client = http_client();
    eventually("the daemon answers", Duration::from_secs(30), || {
        let request = client.get(format!("{base}/readyz")).send();
        async move { request.await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    set_up(&base, dir.path()).await;

    // The daemon takes the job and waits on Jira; then it is killed.
    let hold = jira.hold();
    jira.create_issue("PROJ", "PROJ-1").await;
    jira.wait_for_waiting(1).await;
    let pool = PgPool::connect(&database_url).await.unwrap();
    let running: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'running'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(running, 1);
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();
    hold.release();

    let mut other = TestConfig::new(&database_url, &jira.base_url);
    events_config(&mut other, free_port());
    let survivor = start(other, jira, database_url.clone()).await;
    eventually("the folder exists", Duration::from_secs(30), || {
        let path = dir.path().join("Jira/PROJ/PROJ-1");
        async move { path.is_dir() }
    })
    .await;
    eventually("the job is done", Duration::from_secs(30), || {
        let pool = pool.clone();
        async move {
            let state: String = sqlx::query_scalar("SELECT state FROM jobs")
                .fetch_one(&pool)
                .await
                .unwrap();
            state == "done"
        }
    })
    .await;
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        attempts, 2,
        "the killed attempt counts, the second finished it"
    );
    drop(survivor);
}
