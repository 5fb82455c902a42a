//! Jira's webhooks, end to end: deliveries from the fake Jira (signed for Jira 10, by path
//! token for Jira 9) become rows in the `jobs` table holding ids and keys only; forged,
//! oversized and malformed ones are refused with problem documents and queue nothing;
//! registration is in `webhook_registration.rs`. Nothing here runs the job workers: the
//! assertions are on the `jobs` rows.

use fake_jira::DeliveryMode;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::PgPool;

use super::helpers::{TestApp, spawn_app_with};

pub(crate) const SECRET: &str = "hook-secret-0123456789";
pub(crate) const ADMIN_PAT: &str = "admin-pat";

/// An app with the webhook secret (unless `secret` is false) and a Jira where `admin` is a
/// Jira administrator and PROJ holds PROJ-1.
pub(crate) async fn app(secret: bool, max_bytes: Option<&str>) -> (TestApp, PgPool) {
    let app = spawn_app_with(|c| {
        if secret {
            c.set("JIRA__WEBHOOK_SECRET", SECRET);
        }
        if let Some(max) = max_bytes {
            c.set("JIRA__WEBHOOK_MAX_BYTES", max);
        }
    })
    .await;
    let jira = &app.jira;
    jira.add_user("admin", "Admin");
    jira.add_token("admin", ADMIN_PAT);
    jira.grant_global("admin", "ADMINISTER");
    jira.add_project("PROJ", "Project");
    jira.add_issue("PROJ", "PROJ-1");
    let pool = PgPool::connect(&app.database_url).await.expect("database");
    (app, pool)
}

/// The fake Jira delivers to the app as a Jira 10 webhook with the app's secret would.
async fn subscribe_signed(app: &TestApp) {
    let url = format!("{}/rest/jira-webhook/1.0/webhooks", app.jira.base_url);
    let response = app
        .client
        .post(url)
        .bearer_auth(ADMIN_PAT)
        .json(&json!({"name": "filebridge", "url": app.url("/hooks/jira"),
                      "events": ["jira:issue_created", "jira:issue_updated", "jira:issue_deleted"],
                      "configuration": {"SECRET": SECRET}}))
        .send()
        .await
        .expect("register in the fake");
    assert_eq!(response.status(), StatusCode::CREATED);
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub(crate) async fn jobs(pool: &PgPool) -> Vec<(String, Value, Option<String>)> {
    sqlx::query_as("SELECT kind, payload, dedupe_key FROM jobs ORDER BY id")
        .fetch_all(pool)
        .await
        .expect("jobs")
}

pub(crate) async fn post(
    app: &TestApp,
    path: &str,
    body: Vec<u8>,
    signature: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body);
    if let Some(signature) = signature {
        request = request.header("X-Hub-Signature", signature);
    }
    request.send().await.expect("request")
}

/// Asserts a problem document with this status and code.
pub(crate) async fn assert_problem(response: reqwest::Response, status: StatusCode, code: &str) {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ASCII")
        .to_string();
    assert_eq!(content_type, "application/problem+json");
    let problem: Value = response.json().await.expect("JSON");
    assert_eq!(problem["code"], code, "{problem}");
    assert!(problem["request_id"].is_string(), "{problem}");
}

#[tokio::test]
async fn signed_delivery_is_queued_with_ids_and_keys_only() {
    let (app, pool) = app(true, None).await;
    subscribe_signed(&app).await;
    let id = app.jira.create_issue("PROJ", "PROJ-2").await;
    let deliveries = app.jira.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, Some(202), "{deliveries:?}");
    assert!(
        deliveries[0].body.contains("Summary of PROJ-2"),
        "Jira sends content"
    );

    let rows = jobs(&pool).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (kind, payload, dedupe_key) = &rows[0];
    assert_eq!(kind, "jira_event");
    assert_eq!(payload["kind"], "jira:issue_created");
    assert_eq!(payload["issue"]["id"], id.as_str());
    assert_eq!(payload["issue"]["key"], "PROJ-2");
    assert_eq!(payload["issue"]["project_id"], "10000");
    assert_eq!(payload["issue"]["project_key"], "PROJ");
    assert!(payload["timestamp_ms"].is_i64());
    let stored = payload.to_string();
    assert!(
        !stored.contains("Summary") && !stored.contains("summary"),
        "{stored}"
    );
    assert!(
        dedupe_key
            .as_deref()
            .is_some_and(|k| k.starts_with("jira:")),
        "{dedupe_key:?}"
    );

    // A move carries the previous key.
    app.jira.add_project("NEW", "New");
    app.jira.move_issue_to("PROJ-2", "NEW", "NEW-1").await;
    let rows = jobs(&pool).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].1["previous_key"], "PROJ-2");
    assert_eq!(rows[1].1["issue"]["key"], "NEW-1");
}

#[tokio::test]
async fn forged_unsigned_and_unknown_token_deliveries_are_refused() {
    let (app, pool) = app(true, None).await;
    let body = json!({"timestamp": 1, "webhookEvent": "jira:issue_deleted",
                      "issue": {"id": "10100", "key": "PROJ-1", "fields": {"project": {"id": "10000", "key": "PROJ"}}}})
    .to_string()
    .into_bytes();
    let forged = sign(b"another body");
    assert_problem(
        post(&app, "/hooks/jira", body.clone(), None).await,
        StatusCode::UNAUTHORIZED,
        "webhook_unauthenticated",
    )
    .await;
    assert_problem(
        post(&app, "/hooks/jira", body.clone(), Some(&forged)).await,
        StatusCode::UNAUTHORIZED,
        "webhook_unauthenticated",
    )
    .await;
    assert_problem(
        post(&app, "/hooks/jira", body.clone(), Some("sha1=00")).await,
        StatusCode::UNAUTHORIZED,
        "webhook_unauthenticated",
    )
    .await;
    // No Jira 9 token was ever registered, so none is valid.
    assert_problem(
        post(&app, "/hooks/jira/0123abcd", body.clone(), None).await,
        StatusCode::UNAUTHORIZED,
        "webhook_unauthenticated",
    )
    .await;
    assert!(jobs(&pool).await.is_empty());
    // The same body, signed, goes in.
    let signature = sign(&body);
    assert_eq!(
        post(&app, "/hooks/jira", body, Some(&signature))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(jobs(&pool).await.len(), 1);
}

#[tokio::test]
async fn without_a_secret_signed_deliveries_cannot_be_checked() {
    let (app, pool) = app(false, None).await;
    let body =
        br#"{"timestamp": 1, "webhookEvent": "project_deleted", "project": {"id": 1, "key": "P"}}"#
            .to_vec();
    let signature = sign(&body);
    assert_problem(
        post(&app, "/hooks/jira", body, Some(&signature)).await,
        StatusCode::UNAUTHORIZED,
        "webhook_unauthenticated",
    )
    .await;
    assert!(jobs(&pool).await.is_empty());
}

#[tokio::test]
async fn oversized_and_malformed_deliveries_are_refused() {
    let (app, pool) = app(true, Some("1024")).await;
    let big =
        json!({"timestamp": 1, "webhookEvent": "jira:issue_created", "padding": "x".repeat(2000)})
            .to_string()
            .into_bytes();
    let signature = sign(&big);
    assert_problem(
        post(&app, "/hooks/jira", big.clone(), Some(&signature)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "webhook_too_large",
    )
    .await;
    // Without Content-Length (chunked), the limit holds while reading.
    let chunks = futures_util::stream::iter(
        big.chunks(300)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let response = app
        .client
        .post(app.url("/hooks/jira"))
        .header("X-Hub-Signature", &signature)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "webhook_too_large").await;

    for body in [
        &b"not json at all"[..],
        br#"{"hello": "world"}"#,
        br#"{"webhookEvent": "jira:issue_created", "timestamp": 3}"#,
    ] {
        let signature = sign(body);
        assert_problem(
            post(&app, "/hooks/jira", body.to_vec(), Some(&signature)).await,
            StatusCode::BAD_REQUEST,
            "webhook_malformed",
        )
        .await;
    }
    assert!(jobs(&pool).await.is_empty());
}

#[tokio::test]
async fn a_duplicate_delivery_is_queued_once() {
    let (app, pool) = app(true, None).await;
    subscribe_signed(&app).await;
    app.jira.edit_summary("PROJ-1", "new words").await;
    let again = app.jira.redeliver(0).await;
    assert_eq!(again.status, Some(202), "a duplicate answers the same");
    assert_eq!(jobs(&pool).await.len(), 1);

    // Two changes delivered out of order are two jobs.
    app.jira.set_delivery(DeliveryMode::Queue);
    app.jira.edit_summary("PROJ-1", "newer").await;
    app.jira.delete_issue("PROJ-1").await;
    let sent = app.jira.deliver_queued(&[1, 0]).await;
    assert!(sent.iter().all(|d| d.status == Some(202)), "{sent:?}");
    let kinds: Vec<Value> = jobs(&pool)
        .await
        .into_iter()
        .map(|j| j.1["kind"].clone())
        .collect();
    assert_eq!(
        kinds,
        [
            json!("jira:issue_updated"),
            json!("jira:issue_deleted"),
            json!("jira:issue_updated")
        ]
    );
}
