//! Registering filebridge's webhook in Jira, idempotently: an existing filebridge webhook is
//! updated, never doubled.
//!
//! What was checked and where:
//! - Jira 9 (and 8): `GET|POST /rest/webhooks/1.0/webhook`, `PUT|DELETE
//!   /rest/webhooks/1.0/webhook/{id}`, body `{name, url, events, filters:
//!   {"issue-related-events-section": jql}, excludeBody}`. Answers carry no `id` but `self`,
//!   the webhook's URL ending in the id (<https://developer.atlassian.com/server/jira/platform/webhooks/>;
//!   floralvikings/jira-connector PR #238, <https://github.com/floralvikings/jira-connector/pull/238>).
//!   Jira 9 cannot sign deliveries, so the URL carries a random token instead.
//! - Jira 10: "Starting from Jira 10.0.x, the URL to webhook resource has changed to
//!   <JIRA_URL>/rest/jira-webhook/1.0/webhooks" (Atlassian's webhooks page, quoted in
//!   getsentry/sentry #92806, <https://github.com/getsentry/sentry/issues/92806>; Sentry picks
//!   the endpoint by `serverInfo.versionNumbers`, PR #90116). Webhooks there have a numeric
//!   `id`; the list answers a JSON array (jira.js `server/api/webhooks.ts`). The secret goes in
//!   `configuration.SECRET` — a top-level `secret` is silently ignored and deliveries then
//!   arrive unsigned (seen by integrators: OpenHands' Jira DC integration and others send
//!   `configuration: {SECRET, EXCLUDE_BODY: "false"}`).
//! - Both need a Jira administrator (jira.js: "Requires administrator permission"); the
//!   filebridge service user should not be one, so an administrator's credential is used.

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use url::Url;

use super::client::{Credential, JiraClient, JiraError};
use super::webhook::{TOKEN_SETTING, new_token, token_digest};
use crate::audit::{self, Actor, AuditError, AuditEvent, Outcome};

/// The name filebridge's webhook has in Jira (and how it is found again).
pub const WEBHOOK_NAME: &str = "filebridge";
/// The events filebridge acts on.
pub const EVENTS: [&str; 6] = [
    "jira:issue_created",
    "jira:issue_updated",
    "jira:issue_deleted",
    "project_created",
    "project_updated",
    "project_deleted",
];
const JIRA9_PATH: &str = "webhooks/1.0/webhook";
const JIRA10_PATH: &str = "jira-webhook/1.0/webhooks";

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error(
        "Jira {0} signs webhooks with a secret, and jira.webhook_secret is not set: set jira.webhook_secret (or jira.webhook_secret_file) and register again"
    )]
    SecretRequired(String),
    #[error("Jira refused to register the webhook: it takes a Jira administrator's credential")]
    NotAdmin,
    #[error("cannot tell which Jira version this is (`{0}`)")]
    UnknownVersion(String),
    #[error(transparent)]
    Jira(JiraError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl From<JiraError> for RegistrationError {
    fn from(error: JiraError) -> Self {
        match error {
            JiraError::Unauthorized => RegistrationError::NotAdmin,
            other => RegistrationError::Jira(other),
        }
    }
}

/// Which webhook API was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// `/rest/webhooks/1.0/webhook`, with a path token.
    Jira9,
    /// `/rest/jira-webhook/1.0/webhooks`, with a signing secret.
    Jira10,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookAction {
    Created,
    Updated,
}

/// What [`register_webhook`] did. Holds no secret and no token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registration {
    pub jira_version: String,
    pub endpoint: EndpointKind,
    pub action: WebhookAction,
    pub webhook_id: String,
    /// Other filebridge webhooks found and removed (left by earlier installs).
    pub removed_duplicates: Vec<String>,
}

/// For the command line: registers (or updates) the webhook with a Jira administrator's
/// personal access token, audited as the operator running the command.
pub async fn register_webhook(
    jira: &JiraClient,
    pool: &PgPool,
    token: &SecretString,
    secret: Option<&SecretString>,
    url: &Url,
) -> Result<Registration, RegistrationError> {
    let credential = Credential::Bearer(token.clone());
    let event = AuditEvent::new(Actor::operator(), "jira.webhook.register", Outcome::Success);
    register_webhook_as(jira, pool, &credential, secret, url, event).await
}

/// Registers (or updates) filebridge's webhook delivering to `url` (`…/hooks/jira`), as the
/// holder of `credential`. On Jira 9 a fresh path token is appended to `url` and its digest
/// stored; on Jira 10+ `secret` is required. `audit` is completed with what was done and
/// recorded in the transaction that stores the token digest.
pub async fn register_webhook_as(
    jira: &JiraClient,
    pool: &PgPool,
    credential: &Credential,
    secret: Option<&SecretString>,
    url: &Url,
    mut audit: AuditEvent,
) -> Result<Registration, RegistrationError> {
    let info = jira.server_info().await?;
    let major = info
        .major()
        .ok_or_else(|| RegistrationError::UnknownVersion(info.version.clone()))?;
    let base = url.as_str().trim_end_matches('/').to_string();
    let (endpoint, path, body, token) = if major >= 10 {
        let secret =
            secret.ok_or_else(|| RegistrationError::SecretRequired(info.version.clone()))?;
        let body = json!({
            "name": WEBHOOK_NAME,
            "url": base,
            "events": EVENTS,
            "active": true,
            "excludeBody": false,
            "configuration": { "SECRET": secret.expose_secret(), "EXCLUDE_BODY": "false" },
        });
        (EndpointKind::Jira10, JIRA10_PATH, body, None)
    } else {
        let token = new_token();
        let body = json!({
            "name": WEBHOOK_NAME,
            "url": format!("{base}/{token}"),
            "events": EVENTS,
            "filters": { "issue-related-events-section": "" },
            "excludeBody": false,
        });
        (EndpointKind::Jira9, JIRA9_PATH, body, Some(token))
    };

    let listed = jira
        .send(Method::GET, jira.rest_url(path)?, Some(credential), None)
        .await?;
    let listed: Value = listed.json()?;
    let ours: Vec<String> = items(&listed)
        .iter()
        .filter(|hook| is_ours(hook, &base))
        .filter_map(webhook_id)
        .collect();
    let (action, webhook_id) = match ours.first() {
        Some(id) => {
            let target = jira.rest_url(&format!("{path}/{id}"))?;
            jira.send(Method::PUT, target, Some(credential), Some(&body))
                .await?;
            (WebhookAction::Updated, id.clone())
        }
        None => {
            let created = jira
                .send(
                    Method::POST,
                    jira.rest_url(path)?,
                    Some(credential),
                    Some(&body),
                )
                .await?;
            let created: Value = created.json()?;
            let id = webhook_id(&created).ok_or_else(|| {
                JiraError::BadResponse("the created webhook has neither id nor self".into())
            })?;
            (WebhookAction::Created, id)
        }
    };
    // Earlier installs (or a copy made by hand) would deliver every event twice.
    let mut removed_duplicates = Vec::new();
    for id in ours.iter().skip(1) {
        let target = jira.rest_url(&format!("{path}/{id}"))?;
        match jira
            .send(Method::DELETE, target, Some(credential), None)
            .await
        {
            Ok(_) | Err(JiraError::NotFound) => removed_duplicates.push(id.clone()),
            Err(e) => return Err(e.into()),
        }
    }

    let registration = Registration {
        jira_version: info.version.clone(),
        endpoint,
        action,
        webhook_id,
        removed_duplicates,
    };
    let mut tx = pool.begin().await?;
    if let Some(token) = &token {
        sqlx::query(
            "INSERT INTO settings (key, value, updated_by) VALUES ($1, to_jsonb($2::text), $3)
             ON CONFLICT (key) DO UPDATE
             SET value = EXCLUDED.value, updated_at = now(), updated_by = EXCLUDED.updated_by",
        )
        .bind(TOKEN_SETTING)
        .bind(token_digest(token))
        .bind(&audit.actor.key)
        .execute(&mut *tx)
        .await?;
    }
    audit.target = Some(format!("jira-webhook:{}", registration.webhook_id));
    audit.details = serde_json::to_value(&registration).unwrap_or_default();
    audit::record(&mut tx, &audit).await?;
    tx.commit().await?;
    Ok(registration)
}

/// The webhooks of a list answer: Jira answers an array; a paged `{values: [...]}` is read too.
fn items(listed: &Value) -> Vec<Value> {
    match listed {
        Value::Array(items) => items.clone(),
        Value::Object(page) => page
            .get("values")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// filebridge's webhook: by name, or by delivering to filebridge's URL (with or without a
/// Jira 9 token after it).
fn is_ours(hook: &Value, base: &str) -> bool {
    let name = hook.get("name").and_then(Value::as_str).unwrap_or("");
    let url = hook.get("url").and_then(Value::as_str).unwrap_or("");
    name == WEBHOOK_NAME
        || url.trim_end_matches('/') == base
        || url
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Jira 10's numeric `id`, or the last segment of Jira 9's `self`.
fn webhook_id(hook: &Value) -> Option<String> {
    match hook.get("id") {
        Some(Value::Number(n)) => return Some(n.to_string()),
        Some(Value::String(s)) if !s.is_empty() => return Some(s.clone()),
        _ => {}
    }
    let link = hook.get("self").and_then(Value::as_str)?;
    let id = link.trim_end_matches('/').rsplit('/').next()?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_are_recognised_and_identified() {
        let base = "https://jira.example.com/filebridge/hooks/jira";
        let nine = json!({"self": "https://jira/rest/webhooks/1.0/webhook/12", "name": "x",
                          "url": format!("{base}/abc")});
        assert!(is_ours(&nine, base));
        assert_eq!(webhook_id(&nine).as_deref(), Some("12"));
        let ten = json!({"id": 3, "name": "filebridge", "url": "https://elsewhere/"});
        assert!(is_ours(&ten, base));
        assert_eq!(webhook_id(&ten).as_deref(), Some("3"));
        let other = json!({"id": 4, "name": "ci", "url": format!("{base}x")});
        assert!(!is_ours(&other, base));
        assert_eq!(items(&json!({"values": [ten.clone()]})).len(), 1);
        assert!(webhook_id(&json!({"self": "https://jira/x/"})).is_none());
    }
}
