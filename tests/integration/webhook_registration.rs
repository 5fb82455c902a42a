//! Registering filebridge's webhook in the fake Jira, as Jira 10 (admin API, signing secret)
//! and as Jira 9 (library function, path token): twice leaves one webhook, and what Jira 9
//! delivers to the token URL is accepted by the intake.

use std::time::Duration;

use filebridge::config::EgressSettings;
use filebridge::egress::EgressClient;
use filebridge::jira::{EndpointKind, JiraClient, WebhookAction, register_webhook};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::hooks::{ADMIN_PAT, SECRET, app, assert_problem, jobs, post};

#[tokio::test]
async fn registration_through_the_admin_api_on_jira_10() {
    let (app, pool) = app(true, None).await;
    app.jira.add_user("alice", "Alice");
    app.jira.add_token("alice", "alice-pat");
    let register = |token: &'static str| {
        app.client
            .post(app.url("/api/v1/admin/jira/webhook"))
            .bearer_auth(token)
            .send()
    };
    assert_problem(
        register("alice-pat").await.expect("request"),
        StatusCode::FORBIDDEN,
        "admin_required",
    )
    .await;

    let first = register(ADMIN_PAT).await.expect("request");
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.expect("JSON");
    assert_eq!(
        (&first["endpoint"], &first["action"]),
        (&json!("jira10"), &json!("created"))
    );
    assert!(!first.to_string().contains(SECRET), "{first}");
    let second = register(ADMIN_PAT).await.expect("request");
    assert_eq!(second.status(), StatusCode::OK);
    let second: Value = second.json().await.expect("JSON");
    assert_eq!(
        (&second["action"], &second["webhook_id"]),
        (&json!("updated"), &first["webhook_id"])
    );

    let hooks = app.jira.webhooks();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0].secret.as_deref(), Some(SECRET));
    assert_eq!(
        hooks[0].url,
        "https://jira.example.test/filebridge/hooks/jira"
    );
    for event in [
        "jira:issue_created",
        "jira:issue_updated",
        "jira:issue_deleted",
        "project_created",
        "project_updated",
        "project_deleted",
    ] {
        assert!(hooks[0].events.iter().any(|e| e == event), "{event}");
    }
    let audited: Vec<(String, String)> = sqlx::query_as(
        "SELECT actor_name, outcome FROM audit_events WHERE action = 'jira.webhook.register' ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .expect("audit");
    assert_eq!(
        audited,
        [
            ("admin".into(), "success".into()),
            ("admin".into(), "success".into())
        ]
    );
}

#[tokio::test]
async fn jira_10_registration_needs_the_secret() {
    let (app, pool) = app(false, None).await;
    let response = app
        .client
        .post(app.url("/api/v1/admin/jira/webhook"))
        .bearer_auth(ADMIN_PAT)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let problem: Value = response.json().await.expect("JSON");
    assert_eq!(problem["code"], "webhook_secret_required");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("jira.webhook_secret")),
        "{problem}"
    );
    assert!(app.jira.webhooks().is_empty());
    let outcome: String = sqlx::query_scalar(
        "SELECT outcome FROM audit_events WHERE action = 'jira.webhook.register'",
    )
    .fetch_one(&pool)
    .await
    .expect("audited");
    assert_eq!(outcome, "failed:webhook_secret_required");
}

#[tokio::test]
async fn jira_9_registration_puts_a_token_in_the_url_that_the_intake_accepts() {
    let (app, pool) = app(false, None).await;
    app.jira.set_version(fake_jira::VERSION_9);
    let base = url::Url::parse(&app.jira.base_url).expect("URL");
    let egress = EgressClient::new(
        &EgressSettings {
            allow: Vec::new(),
            proxy: None,
            ca_file: None,
        },
        Some(&base),
    )
    .expect("egress");
    let client = JiraClient::new(base, egress, Duration::from_secs(5));
    let hooks_url = url::Url::parse(&app.url("/hooks/jira")).expect("URL");
    let admin = SecretString::from(ADMIN_PAT);

    let first = register_webhook(&client, &pool, &admin, None, &hooks_url)
        .await
        .expect("register");
    assert_eq!(
        (first.endpoint, first.action),
        (EndpointKind::Jira9, WebhookAction::Created)
    );
    let old_url = app.jira.webhooks()[0].url.clone();
    let second = register_webhook(&client, &pool, &admin, None, &hooks_url)
        .await
        .expect("register again");
    assert_eq!(
        (second.action, &second.webhook_id),
        (WebhookAction::Updated, &first.webhook_id)
    );
    let hooks = app.jira.webhooks();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let token = hooks[0]
        .url
        .strip_prefix(&format!("{hooks_url}/"))
        .expect("token after the URL")
        .to_string();
    assert_eq!(token.len(), 64, "{}", hooks[0].url);
    assert_eq!(hooks[0].secret, None, "Jira 9 cannot sign");

    // Only the token's digest is stored.
    let stored: Value =
        sqlx::query_scalar("SELECT value FROM settings WHERE key = 'jira.webhook_token_sha256'")
            .fetch_one(&pool)
            .await
            .expect("stored digest");
    assert_eq!(stored, json!(hex::encode(Sha256::digest(token.as_bytes()))));

    // Deliveries reach the intake through the token URL; the replaced token is refused.
    app.jira.create_issue("PROJ", "PROJ-2").await;
    assert_eq!(app.jira.deliveries()[0].status, Some(202));
    let rows = jobs(&pool).await;
    assert_eq!(
        (rows.len(), &rows[0].1["issue"]["key"]),
        (1, &json!("PROJ-2"))
    );
    let old_path = old_url
        .strip_prefix(app.address.as_str())
        .expect("app URL")
        .to_string();
    let body = app.jira.deliveries()[0].body.clone().into_bytes();
    assert_problem(
        post(&app, &old_path, body, None).await,
        StatusCode::UNAUTHORIZED,
        "webhook_unauthenticated",
    )
    .await;
    assert_eq!(jobs(&pool).await.len(), 1);
}
