//! Webhook registration, as Jira 9 and Jira 10 expose it. Which API answers depends on the
//! version the fake reports: Jira 10 moved it and the old path answers 404 there.
//!
//! - Jira 9: `/rest/webhooks/1.0/webhook[/{id}]`. A webhook is `{self, name, url, events,
//!   filters: {"issue-related-events-section": jql}, excludeBody, enabled, lastUpdatedUser,
//!   lastUpdatedDisplayName, lastUpdated}`; there is no `id` field, the id ends `self`.
//! - Jira 10: `/rest/jira-webhook/1.0/webhooks[/{id}]`. A webhook is `{id, name, url, events,
//!   active, configuration, createdDate, updatedDate, scopeType, sslVerificationRequired}`.
//!   The signing secret is read from `configuration.SECRET` only (a top-level `secret` is
//!   ignored, as integrators report of real Jira) and never echoed back.
//!
//! Both need a Jira administrator. Lists answer a plain JSON array.

use actix_web::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::permissions;
use crate::routes::error_body;
use crate::world::{Context, User, World};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookApi {
    Jira9,
    Jira10,
}

/// A registered webhook, as the fake keeps it (and as [`crate::FakeJira::webhooks`] shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: u64,
    /// The API it was created through.
    pub api: WebhookApi,
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub jql: String,
    pub exclude_body: bool,
    pub enabled: bool,
    /// Jira 10's `configuration.SECRET`: deliveries are signed with it.
    pub secret: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub updated_by: String,
}

/// Handles a request to either API; `id` is the path segment after the collection.
pub(crate) fn handle(
    world: &mut World,
    base: &str,
    user: &User,
    api: WebhookApi,
    id: Option<&str>,
    method: &Method,
    body: &[u8],
) -> (StatusCode, Value) {
    let admin = permissions::lookup("ADMINISTER").expect("catalogue has ADMINISTER");
    if !world.has_permission(user, admin, Context::Global) {
        return (
            StatusCode::FORBIDDEN,
            error_body("You must be a Jira administrator to manage webhooks."),
        );
    }
    let id = match id.map(str::parse::<u64>) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => return (StatusCode::NOT_FOUND, error_body("No such webhook.")),
    };
    let position = |world: &World, id: u64| world.webhooks.iter().position(|w| w.id == id);
    match (method, id) {
        (&Method::GET, None) => {
            let all: Vec<Value> = world
                .webhooks
                .iter()
                .map(|w| render(base, api, w))
                .collect();
            (StatusCode::OK, Value::Array(all))
        }
        (&Method::GET, Some(id)) => match position(world, id) {
            Some(i) => (StatusCode::OK, render(base, api, &world.webhooks[i])),
            None => (StatusCode::NOT_FOUND, error_body("No such webhook.")),
        },
        (&Method::POST, None) => match parse(api, body) {
            Ok(fields) => {
                let now = world.tick();
                let webhook = Webhook {
                    id: world.next_webhook,
                    api,
                    created_ms: now,
                    updated_ms: now,
                    updated_by: user.key.clone(),
                    ..fields
                };
                world.next_webhook += 1;
                let answer = render(base, api, &webhook);
                world.webhooks.push(webhook);
                (StatusCode::CREATED, answer)
            }
            Err(refusal) => refusal,
        },
        (&Method::PUT, Some(id)) => {
            let Some(i) = position(world, id) else {
                return (StatusCode::NOT_FOUND, error_body("No such webhook."));
            };
            match parse(api, body) {
                Ok(fields) => {
                    let now = world.tick();
                    let old = &world.webhooks[i];
                    let webhook = Webhook {
                        id,
                        api,
                        created_ms: old.created_ms,
                        updated_ms: now,
                        updated_by: user.key.clone(),
                        ..fields
                    };
                    let answer = render(base, api, &webhook);
                    world.webhooks[i] = webhook;
                    (StatusCode::OK, answer)
                }
                Err(refusal) => refusal,
            }
        }
        (&Method::DELETE, Some(id)) => match position(world, id) {
            Some(i) => {
                world.webhooks.remove(i);
                (StatusCode::NO_CONTENT, Value::Null)
            }
            None => (StatusCode::NOT_FOUND, error_body("No such webhook.")),
        },
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            error_body("Method not allowed"),
        ),
    }
}

/// The fields of a create or update request (id and times are the caller's).
fn parse(api: WebhookApi, body: &[u8]) -> Result<Webhook, (StatusCode, Value)> {
    let bad = |field: &str, message: &str| {
        (
            StatusCode::BAD_REQUEST,
            json!({"errorMessages": [], "errors": {field: message}}),
        )
    };
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            error_body("Unexpected request body."),
        )
    })?;
    let text = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    let name = text("name")
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| bad("name", "The webhook name is required."))?;
    let url = text("url")
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .ok_or_else(|| bad("url", "The URL must be an absolute http(s) URL."))?;
    let events: Vec<String> = value
        .get("events")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let configuration = value.get("configuration");
    let config_text = |name: &str| {
        configuration
            .and_then(|c| c.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let (jql, exclude_body, enabled, secret) = match api {
        WebhookApi::Jira9 => (
            value
                .pointer("/filters/issue-related-events-section")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            value
                .get("excludeBody")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            value
                .get("enabled")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            None,
        ),
        WebhookApi::Jira10 => (
            config_text("FILTERS").unwrap_or_default(),
            config_text("EXCLUDE_BODY").is_some_and(|v| v == "true"),
            value.get("active").and_then(Value::as_bool).unwrap_or(true),
            config_text("SECRET").filter(|s| !s.is_empty()),
        ),
    };
    Ok(Webhook {
        id: 0,
        api,
        name,
        url,
        events,
        jql,
        exclude_body,
        enabled,
        secret,
        created_ms: 0,
        updated_ms: 0,
        updated_by: String::new(),
    })
}

fn render(base: &str, api: WebhookApi, webhook: &Webhook) -> Value {
    match api {
        WebhookApi::Jira9 => json!({
            "self": format!("{base}/rest/webhooks/1.0/webhook/{}", webhook.id),
            "name": webhook.name,
            "url": webhook.url,
            "excludeBody": webhook.exclude_body,
            "filters": {"issue-related-events-section": webhook.jql},
            "events": webhook.events,
            "enabled": webhook.enabled,
            "lastUpdatedUser": webhook.updated_by,
            "lastUpdatedDisplayName": webhook.updated_by,
            "lastUpdated": webhook.updated_ms,
        }),
        WebhookApi::Jira10 => json!({
            "id": webhook.id,
            "name": webhook.name,
            "url": webhook.url,
            "events": webhook.events,
            "active": webhook.enabled,
            "configuration": {
                "EXCLUDE_BODY": webhook.exclude_body.to_string(),
                "FILTERS": webhook.jql,
            },
            "createdDate": webhook.created_ms,
            "updatedDate": webhook.updated_ms,
            "scopeType": "global",
            "sslVerificationRequired": true,
        }),
    }
}
