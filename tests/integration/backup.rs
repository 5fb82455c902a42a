//! Backup is the PostgreSQL database (plus the master key, kept apart): a `pg_dump` restored
//! into an empty database serves the same files, decrypts the same secrets and verifies the
//! same audit trail. This is the procedure docs/backup.md gives.

use std::path::PathBuf;
use std::process::Command;

use filebridge::app::{Application, Migrations};
use filebridge::config::MasterKey;
use filebridge::connections;
use filebridge::secrets::SecretCipher;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{BASE, TestConfig, cluster_url, create_database, http_client, spawn_app};

const PASSWORD: &str = "nas-pw-kept-in-the-backup-encrypted";

fn pg_tool(name: &str) -> PathBuf {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed under /usr/lib/postgresql (./scripts/test installs it)")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .expect("a PostgreSQL version");
    PathBuf::from(format!("/usr/lib/postgresql/{newest}/bin/{name}"))
}

fn run(command: &mut Command) {
    let out = command.output().expect("run a PostgreSQL tool");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_pg_dump_restored_into_an_empty_database_serves_the_same_files_secrets_and_audit() {
    let app = spawn_app().await;
    let jira = &app.jira;
    jira.add_project("PROJ", "Project");
    jira.add_issue("PROJ", "PROJ-1");
    for (name, token) in [("root", "root-pat"), ("alice", "alice-pat")] {
        jira.add_user(name, name);
        jira.add_token(name, token);
        jira.grant_project(name, "PROJ", "BROWSE_PROJECTS");
        jira.grant_project(name, "PROJ", "CREATE_ATTACHMENTS");
    }
    jira.grant_global("root", "ADMINISTER");
    let files = tempfile::tempdir().unwrap();
    let admin = |method: reqwest::Method, path: &str, body: Value| {
        app.client
            .request(method, app.url(path))
            .bearer_auth("root-pat")
            .json(&body)
            .send()
    };
    let local: Value = admin(
        reqwest::Method::POST,
        "/api/v1/admin/connections",
        json!({"name": "local", "kind": "filesystem", "settings": {"root": files.path()}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let nas: Value = admin(
        reqwest::Method::POST,
        "/api/v1/admin/connections",
        json!({"name": "nas", "kind": "webdav",
               "settings": {"url": "https://nas.example.com/dav", "username": "svc"},
               "secrets": {"password": PASSWORD}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let mapped = admin(
        reqwest::Method::PUT,
        "/api/v1/admin/projects/PROJ/mapping",
        json!({"connection_id": local["id"], "root": "Jira/PROJ"}),
    )
    .await
    .unwrap();
    assert_eq!(mapped.status(), 201);
    let uploaded = app
        .client
        .put(app.url("/api/v1/issues/PROJ-1/files/content?path=contract.pdf"))
        .bearer_auth("alice-pat")
        .body("signed contract")
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 201);
    let original = PgPool::connect(&app.database_url).await.unwrap();
    let audited = filebridge::audit::verify(&original).await.unwrap();
    assert!(
        audited.problem.is_none() && audited.checked >= 4,
        "{audited:?}"
    );

    // The backup: one custom-format dump. The restore: into a new, empty database.
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("filebridge.dump");
    run(Command::new(pg_tool("pg_dump"))
        .args(["--format=custom", "--file"])
        .arg(&dump)
        .arg("--dbname")
        .arg(&app.database_url));
    let restored_url = create_database(&cluster_url()).await;
    run(Command::new(pg_tool("pg_restore"))
        .args(["--no-owner", "--exit-on-error", "--dbname"])
        .arg(&restored_url)
        .arg(&dump));

    // Another instance, with the same configuration and master key, on the restored copy.
    let mut config = TestConfig {
        env: app.config.env.clone(),
        migrations: Migrations::Apply,
    };
    config.set("DATABASE__URL", &restored_url);
    let built = Application::build(&config.settings(), config.migrations)
        .await
        .expect("builds on the restored database");
    let address = format!("http://127.0.0.1:{}{BASE}", built.port());
    let handle = built.handle();
    tokio::spawn(built.run_until_stopped());

    let listed: Value = http_client()
        .get(format!("{address}/api/v1/issues/PROJ-1/files"))
        .bearer_auth("alice-pat")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["name"], "contract.pdf", "{listed}");
    let content = http_client()
        .get(format!(
            "{address}/api/v1/issues/PROJ-1/files/content?path=contract.pdf"
        ))
        .bearer_auth("alice-pat")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(content, "signed contract");

    let restored = PgPool::connect(&restored_url).await.unwrap();
    let verified = filebridge::audit::verify(&restored).await.unwrap();
    assert!(verified.problem.is_none(), "{verified:?}");
    // The restored trail holds every event of the original, plus what the checks above did.
    assert!(
        verified.checked >= audited.checked,
        "{verified:?} vs {audited:?}"
    );

    let nas_id: Uuid = nas["id"].as_str().unwrap().parse().unwrap();
    let key = MasterKey::from_bytes(app.master_key());
    let (_, _, secrets) = connections::load_for_use(&restored, &SecretCipher::new(&key), nas_id)
        .await
        .expect("the secret decrypts with the same master key");
    assert_eq!(secrets["password"].expose_secret(), PASSWORD);
    // Without the master key, the backup's secrets are useless: keep the key's own backup.
    let other = MasterKey::from_bytes([9u8; 32]);
    assert!(
        connections::load_for_use(&restored, &SecretCipher::new(&other), nas_id)
            .await
            .is_err()
    );
    handle.stop(true).await;
}
