//! Storage connections: admin CRUD, secrets encrypted at rest (pg_dump shows none), key
//! rotation, deletion of connections in use, the test action, and the audit of each change.

use base64::Engine;
use filebridge::audit::Actor;
use filebridge::config::MasterKey;
use filebridge::connections::{self, ConnectionError};
use filebridge::secrets::{self, SecretCipher, SecretsError};
use reqwest::{Method, Response};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app};

const ROOT: &str = "/api/v1/admin/connections";
const PASSWORD: &str = "pw-Zq8vN3-never-shown";
const TOKEN: &str = "tok-Rk2pL7-never-shown";

/// The app, its database, and the admin's Jira user key (login `root`, token `root-pat`);
/// `alice` (token `alice-pat`) is no admin.
async fn setup() -> (TestApp, PgPool, String) {
    let app = spawn_app().await;
    let key = app.jira.add_user("root", "Root Admin");
    app.jira.add_token("root", "root-pat");
    app.jira.grant_global("root", "ADMINISTER");
    app.jira.add_user("alice", "Alice");
    app.jira.add_token("alice", "alice-pat");
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    (app, pool, key)
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Response {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// The response's body, checked to carry no secret value in any form.
async fn body_without_secrets(response: Response) -> Value {
    let text = response.text().await.unwrap();
    for secret in [PASSWORD, TOKEN] {
        let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        assert!(
            !text.contains(secret) && !text.contains(&b64),
            "a secret leaked: {text}"
        );
    }
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn create(app: &TestApp, name: &str, secrets: Value) -> Value {
    let body = json!({"name": name, "kind": "webdav",
        "settings": {"url": "https://nas.example.com/dav", "username": "svc"}, "secrets": secrets});
    let response = send(app, Method::POST, ROOT, "root-pat", Some(body)).await;
    assert_eq!(response.status(), 201);
    body_without_secrets(response).await
}

#[derive(Debug, sqlx::FromRow)]
struct Audited {
    actor_key: String,
    actor_name: String,
    target: Option<String>,
    outcome: String,
    details: Value,
    request_id: Option<String>,
}

async fn audited(pool: &PgPool, action: &str) -> Vec<Audited> {
    let sql = "SELECT actor_key, actor_name, target, outcome, details, request_id
        FROM audit_events WHERE action = $1 ORDER BY seq";
    sqlx::query_as(sql)
        .bind(action)
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// (key_id, ciphertext) of every stored secret, by name.
async fn stored(pool: &PgPool) -> Vec<(String, Vec<u8>)> {
    let sql = "SELECT key_id, ciphertext FROM connection_secrets ORDER BY name";
    sqlx::query_as(sql).fetch_all(pool).await.unwrap()
}

fn id_of(connection: &Value) -> Uuid {
    connection["id"].as_str().unwrap().parse().unwrap()
}

fn cipher(app: &TestApp) -> SecretCipher {
    SecretCipher::new(&MasterKey::from_bytes(app.master_key()))
}

#[tokio::test]
async fn crud_round_trip_shows_no_secret_and_audits_every_change() {
    let (app, pool, root_key) = setup().await;
    let created = create(&app, "nas", json!({"password": PASSWORD})).await;
    let id = id_of(&created);
    assert_eq!(created["name"], "nas");
    assert_eq!(created["kind"], "webdav");
    assert_eq!(created["settings"]["username"], "svc");
    assert_eq!(created["secret_names"], json!(["password"]));
    assert_eq!(created["created_by"], root_key.as_str());
    assert!(created["created_at"].is_string() && created["updated_at"].is_string());
    assert!(created.get("secrets").is_none());

    let list = body_without_secrets(app.get_as(ROOT, "root-pat").await).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0], created);
    let item = format!("{ROOT}/{id}");
    let got = body_without_secrets(app.get_as(&item, "root-pat").await).await;
    assert_eq!(got, created);

    // Replace: rename, new settings, add `token`, remove `password`.
    let change = json!({"name": "nas-2", "kind": "webdav", "settings": {"url": "https://nas2.example.com/dav"},
        "secrets": {"token": TOKEN, "password": null}});
    let response = send(&app, Method::PUT, &item, "root-pat", Some(change)).await;
    assert_eq!(response.status(), 200);
    let updated = body_without_secrets(response).await;
    assert_eq!(updated["name"], "nas-2");
    assert_eq!(
        updated["settings"],
        json!({"url": "https://nas2.example.com/dav"})
    );
    assert_eq!(updated["secret_names"], json!(["token"]));
    let got = body_without_secrets(app.get_as(&item, "root-pat").await).await;
    assert_eq!(got, updated);
    // Omitted secrets stay.
    let keep = json!({"name": "nas-2", "kind": "webdav", "settings": {}});
    let response = send(&app, Method::PUT, &item, "root-pat", Some(keep)).await;
    assert_eq!(
        body_without_secrets(response).await["secret_names"],
        json!(["token"])
    );

    let response = send(&app, Method::DELETE, &item, "root-pat", None).await;
    assert_eq!(response.status(), 204);
    assert_eq!(app.get_as(&item, "root-pat").await.status(), 404);
    let left = count(&pool, "connection_secrets").await;
    assert_eq!(left, 0, "the secrets went with the connection");

    let target = format!("connection:{id}");
    let changes = [("create", 1), ("update", 2), ("delete", 1)];
    for (action, times) in changes {
        let rows = audited(&pool, &format!("connection.{action}")).await;
        assert_eq!(rows.len(), times, "{action}: {rows:?}");
        for row in &rows {
            assert_eq!(
                (row.actor_key.as_str(), row.actor_name.as_str()),
                (root_key.as_str(), "root")
            );
            assert_eq!(row.target.as_deref(), Some(target.as_str()));
            assert_eq!(row.outcome, "success");
            assert!(row.request_id.is_some());
            assert!(!row.details.to_string().contains("never-shown"), "{row:?}");
        }
    }
    let created_event = &audited(&pool, "connection.create").await[0].details;
    assert_eq!(created_event["secrets_set"], json!(["password"]));
    let first_update = &audited(&pool, "connection.update").await[0].details;
    assert_eq!(first_update["secrets_set"], json!(["token"]));
    assert_eq!(first_update["secrets_removed"], json!(["password"]));
    assert_eq!(first_update["previous_name"], "nas");
}

#[tokio::test]
async fn only_admins_reach_any_connection_endpoint() {
    let (app, pool, _) = setup().await;
    let id = id_of(&create(&app, "nas", json!({"password": PASSWORD})).await);
    let item = format!("{ROOT}/{id}");
    let body = json!({"name": "x", "kind": "webdav", "settings": {}});
    let calls = [
        (Method::GET, ROOT.to_string(), None),
        (Method::POST, ROOT.to_string(), Some(body.clone())),
        (Method::GET, item.clone(), None),
        (Method::PUT, item.clone(), Some(body)),
        (Method::DELETE, format!("{item}?force=true"), None),
        (Method::POST, format!("{item}/test"), None),
    ];
    for (method, path, body) in calls {
        let response = send(&app, method.clone(), &path, "alice-pat", body).await;
        assert_eq!(response.status(), 403, "{method} {path}");
        let problem = body_without_secrets(response).await;
        assert_eq!(problem["code"], "admin_required");
    }
    assert_eq!(
        count(&pool, "connections").await,
        1,
        "nothing was created or deleted"
    );
    assert_eq!(
        count(&pool, "audit_events").await,
        1,
        "only the admin's create"
    );
}

#[tokio::test]
async fn secrets_are_encrypted_at_rest_and_absent_from_pg_dump() {
    let (app, pool, _) = setup().await;
    let id = id_of(&create(&app, "nas", json!({"password": PASSWORD})).await);
    let rows = stored(&pool).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, cipher(&app).key_id());
    let plain = PASSWORD.as_bytes();
    assert!(!rows[0].1.windows(plain.len()).any(|w| w == plain));

    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed under /usr/lib/postgresql")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .expect("a PostgreSQL version");
    let dump = std::process::Command::new(format!("/usr/lib/postgresql/{newest}/bin/pg_dump"))
        .arg("--dbname")
        .arg(&app.database_url)
        .output()
        .expect("run pg_dump");
    let stderr = String::from_utf8_lossy(&dump.stderr);
    assert!(dump.status.success(), "{stderr}");
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(text.contains("COPY public.connection_secrets") && text.contains("nas"));
    let b64 = base64::engine::general_purpose::STANDARD.encode(PASSWORD);
    for form in [PASSWORD.to_string(), b64, hex::encode(PASSWORD)] {
        assert!(!text.contains(&form), "the secret is in the dump as {form}");
    }

    // It still decrypts for the broker.
    let (kind, _, secrets) = connections::load_for_use(&pool, &cipher(&app), id)
        .await
        .unwrap();
    assert_eq!(kind, "webdav");
    assert_eq!(secrets["password"].expose_secret(), PASSWORD);
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_row_does_not_decrypt() {
    let (app, pool, _) = setup().await;
    let a = id_of(&create(&app, "a", json!({"password": PASSWORD})).await);
    let b = id_of(&create(&app, "b", json!({"password": TOKEN})).await);
    let swap = "UPDATE connection_secrets s SET nonce = o.nonce, ciphertext = o.ciphertext
        FROM connection_secrets o WHERE s.connection_id <> o.connection_id";
    sqlx::query(swap).execute(&pool).await.unwrap();
    for id in [a, b] {
        let err = connections::load_for_use(&pool, &cipher(&app), id)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ConnectionError::Secrets(SecretsError::Tampered)),
            "{err}"
        );
    }
}

#[tokio::test]
async fn rotation_reencrypts_every_secret_in_one_audited_step() {
    let (app, pool, _) = setup().await;
    let a = id_of(&create(&app, "a", json!({"password": PASSWORD})).await);
    let b = id_of(&create(&app, "b", json!({"token": TOKEN})).await);
    let old = MasterKey::from_bytes(app.master_key());
    let new = MasterKey::from_bytes(rand::random());
    let (old_cipher, new_cipher) = (SecretCipher::new(&old), SecretCipher::new(&new));
    let before = stored(&pool).await;
    let ops = Actor {
        key: "cli:ops".into(),
        name: "ops".into(),
    };

    let rotated = secrets::rotate(&pool, &old, &new, ops.clone())
        .await
        .unwrap();
    assert_eq!(rotated, 2);
    let after = stored(&pool).await;
    for ((key_id, ciphertext), (_, previous)) in after.iter().zip(&before) {
        assert_eq!(key_id, new_cipher.key_id());
        assert_ne!(ciphertext, previous);
    }
    let (_, _, sa) = connections::load_for_use(&pool, &new_cipher, a)
        .await
        .unwrap();
    let (_, _, sb) = connections::load_for_use(&pool, &new_cipher, b)
        .await
        .unwrap();
    assert_eq!(sa["password"].expose_secret(), PASSWORD);
    assert_eq!(sb["token"].expose_secret(), TOKEN);
    let err = connections::load_for_use(&pool, &old_cipher, a)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ConnectionError::Secrets(SecretsError::WrongKey { .. })
    ));
    let message = err.to_string();
    assert!(message.contains(new_cipher.key_id()) && message.contains(old_cipher.key_id()));

    let events = audited(&pool, "keys.rotate").await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].actor_key.as_str(), events[0].outcome.as_str()),
        ("cli:ops", "success")
    );
    let details = &events[0].details;
    assert_eq!(details["count"], 2);
    assert_eq!(details["old_key_id"], old_cipher.key_id());
    assert_eq!(details["new_key_id"], new_cipher.key_id());

    // From a key the secrets are not under: refused whole, nothing changes, nothing audited.
    let stranger = MasterKey::from_bytes(rand::random());
    let err = secrets::rotate(&pool, &stranger, &old, ops)
        .await
        .unwrap_err();
    assert!(matches!(err, SecretsError::WrongKey { .. }), "{err}");
    assert_eq!(stored(&pool).await, after);
    assert_eq!(audited(&pool, "keys.rotate").await.len(), 1);
}

#[tokio::test]
async fn a_connection_in_use_is_deleted_only_with_force() {
    let (app, pool, _) = setup().await;
    let id = id_of(&create(&app, "nas", json!({})).await);
    let map =
        "INSERT INTO project_mappings (project_id, project_key, connection_id, root, updated_by)
        VALUES ('10000', 'PROJ', $1, 'Jira/PROJ', 'root')";
    sqlx::query(map).bind(id).execute(&pool).await.unwrap();
    let item = format!("{ROOT}/{id}");
    let response = send(&app, Method::DELETE, &item, "root-pat", None).await;
    assert_eq!(response.status(), 409);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem = body_without_secrets(response).await;
    assert_eq!(problem["code"], "conflict");
    assert!(
        problem["detail"].as_str().unwrap().contains("force=true"),
        "{problem}"
    );
    assert_eq!(
        app.get_as(&item, "root-pat").await.status(),
        200,
        "still there"
    );
    let refused = audited(&pool, "connection.delete").await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].outcome, "failed:conflict");

    let forced = format!("{item}?force=true");
    let response = send(&app, Method::DELETE, &forced, "root-pat", None).await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        count(&pool, "project_mappings").await,
        0,
        "the mapping went with it"
    );
    let events = audited(&pool, "connection.delete").await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].outcome, "success");
    assert_eq!(events[1].details["mappings_removed"], 1);
    assert_eq!(events[1].details["force"], true);
}

#[tokio::test]
async fn the_test_action_round_trips_to_the_storage_and_is_audited() {
    let (app, pool, _) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let body = json!({"name": "disk", "kind": "filesystem", "settings": {"root": dir.path()}});
    let response = send(&app, Method::POST, ROOT, "root-pat", Some(body)).await;
    assert_eq!(response.status(), 201);
    let id = id_of(&body_without_secrets(response).await);
    let test = format!("{ROOT}/{id}/test");
    let response = send(&app, Method::POST, &test, "root-pat", None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"ok": true}));

    // The root disappears: the storage's error comes back as a problem document.
    drop(dir);
    let response = send(&app, Method::POST, &test, "root-pat", None).await;
    assert!(response.status().as_u16() >= 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem = body_without_secrets(response).await;
    let code = problem["code"].as_str().unwrap();

    let events = audited(&pool, "connection.test").await;
    let outcomes: Vec<&str> = events.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes, ["success", format!("failed:{code}").as_str()]);
    let target = format!("connection:{id}");
    assert!(
        events
            .iter()
            .all(|e| e.target.as_deref() == Some(target.as_str()))
    );
    assert_eq!(events[0].details["name"], "disk");
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_audited_as_failed() {
    let (app, pool, _) = setup().await;
    let post = |body: Value| send(&app, Method::POST, ROOT, "root-pat", Some(body));
    let s3 = |extra: Value| {
        let mut body = json!({"name": "x", "kind": "s3", "settings": {}});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let cases = [
        (s3(json!({"settings": {"password": PASSWORD}})), "secrets"),
        (s3(json!({"kind": "ftp"})), "kind"),
        (s3(json!({"name": ""})), "name"),
        (s3(json!({"settings": "url"})), "settings"),
        (
            s3(json!({"secrets": {"Pass word": PASSWORD}})),
            "secret names",
        ),
        (s3(json!({"secrets": {"password": 7}})), "string"),
        (s3(json!({"secret": {}})), "unknown field"),
    ];
    for (body, says) in cases {
        let response = post(body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        let problem = body_without_secrets(response).await;
        assert_eq!(problem["code"], "bad_request");
        assert!(
            problem["detail"].as_str().unwrap().contains(says),
            "{problem}"
        );
    }
    create(&app, "nas", json!({})).await;
    let response = post(s3(json!({"name": "nas"}))).await;
    assert_eq!(response.status(), 409);
    assert_eq!(body_without_secrets(response).await["code"], "conflict");
    let response = app.get_as(&format!("{ROOT}/not-a-uuid"), "root-pat").await;
    assert_eq!(response.status(), 404);

    assert_eq!(count(&pool, "connections").await, 1);
    let events = audited(&pool, "connection.create").await;
    let outcomes: Vec<&str> = events.iter().map(|e| e.outcome.as_str()).collect();
    let mut expected = vec!["failed:bad_request"; 7];
    expected.extend(["success", "failed:conflict"]);
    assert_eq!(outcomes, expected);
    assert!(
        events
            .iter()
            .all(|e| !e.details.to_string().contains("never-shown"))
    );
}
