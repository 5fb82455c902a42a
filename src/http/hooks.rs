//! Jira's webhook deliveries: `POST /hooks/jira` (Jira 10, signed with the webhook secret)
//! and `POST /hooks/jira/{token}` (Jira 9, which cannot sign: a random token in the URL).
//! Both live under `server.base_path` but outside `/api/v1`: Jira, not a person, calls them,
//! so no session or CSRF rules apply — the signature or token is the whole authentication.
//!
//! A delivery is verified, reduced to ids and keys ([`JiraEvent`]), and queued as one
//! `jira_event` job in its own transaction; the answer (202) goes back as soon as the job is
//! committed, so Jira's delivery threads are never held by filebridge's work. A second
//! delivery of the same event (same identity) answers the same and queues nothing. Refusals
//! (401 forged or unsigned, 413 too large, 400 not a Jira event) queue nothing and are logged
//! once, at warn, with the request id.

use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use secrecy::SecretString;
use sqlx::PgPool;

use super::{ApiError, RequestContext, resource};
use crate::config::Settings;
use crate::jira::webhook::{
    DELIVERY_ID_HEADER, JiraEvent, SIGNATURE_HEADER, WebhookError, check_token, verify_signature,
};
use crate::jobs::{self, NewJob};

/// The job kind the event handlers take (`events::JIRA_EVENT`).
const JOB_KIND: &str = "jira_event";

/// What the intake needs; built from the settings and registered as app data.
pub struct HookContext {
    /// `jira.webhook_secret`: verifies Jira 10's signatures. Without it `/hooks/jira`
    /// refuses everything.
    pub secret: Option<SecretString>,
    /// `jira.webhook_max_bytes`.
    pub max_bytes: usize,
    /// Where Jira is told to deliver (`jira.webhook_url`), for registering the webhook.
    pub webhook_url: url::Url,
    /// Wakes the job workers after deliveries, a few times a second at most.
    pub wakeup: jobs::Wakeup,
}

impl HookContext {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            secret: settings.jira.webhook_secret.clone(),
            max_bytes: settings.events.webhook_max_bytes,
            webhook_url: settings.events.webhook_url.clone(),
            wakeup: jobs::Wakeup::default(),
        }
    }
}

/// Registers `/hooks/jira` and `/hooks/jira/{token}`; call it in the `base_path` scope.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/hooks/jira").post(signed))
        .service(resource("/hooks/jira/{token}").post(tokened));
}

/// Jira 10: the body must carry a valid `X-Hub-Signature`.
async fn signed(
    req: HttpRequest,
    payload: web::Payload,
    context: web::Data<HookContext>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    let outcome = async {
        let secret = context.secret.as_ref().ok_or(WebhookError::NoSecret)?;
        let body = read_body(&req, payload, context.max_bytes).await?;
        let signature = req
            .headers()
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok());
        verify_signature(secret, &body, signature)?;
        intake(&req, &body, &pool, &context.wakeup).await
    }
    .await;
    respond(&req, outcome)
}

/// Jira 9: the path token must be the registered one.
async fn tokened(
    req: HttpRequest,
    payload: web::Payload,
    context: web::Data<HookContext>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    let outcome = async {
        let token = req.match_info().get("token").unwrap_or_default();
        // Checked before the body is read: a stranger's body is not worth reading.
        check_token(&pool, token).await?;
        let body = read_body(&req, payload, context.max_bytes).await?;
        intake(&req, &body, &pool, &context.wakeup).await
    }
    .await;
    respond(&req, outcome)
}

/// Parses and queues a verified delivery; `true` when it was new.
async fn intake(
    req: &HttpRequest,
    body: &[u8],
    pool: &PgPool,
    wakeup: &jobs::Wakeup,
) -> Result<bool, WebhookError> {
    let event = JiraEvent::parse(body)?;
    let delivery_id = req
        .headers()
        .get(DELIVERY_ID_HEADER)
        .and_then(|v| v.to_str().ok());
    let identity = event.identity(delivery_id);
    let payload = serde_json::to_value(&event)
        .map_err(|e| WebhookError::Malformed(format!("cannot keep the event: {e}")))?;
    let job = NewJob {
        kind: JOB_KIND.into(),
        payload,
        dedupe_key: Some(format!("jira:{identity}")),
        run_at: None,
    };
    // One statement, committed (durably) before the 202.
    let queued = jobs::enqueue_unnotified(pool, &job).await?;
    if queued.is_some() {
        wakeup.nudge(pool);
    }
    match queued {
        Some(id) => {
            tracing::info!(job = id, event = event.kind.as_str(), %identity, "Jira event queued")
        }
        None => {
            tracing::info!(event = event.kind.as_str(), %identity, "Jira event already queued; duplicate ignored")
        }
    }
    Ok(queued.is_some())
}

/// 202 for a delivery taken (new or duplicate); otherwise the refusal, logged once.
fn respond(
    req: &HttpRequest,
    outcome: Result<bool, WebhookError>,
) -> Result<HttpResponse, ApiError> {
    match outcome {
        Ok(_) => Ok(HttpResponse::Accepted().finish()),
        Err(error) => {
            // A database failure is logged where it becomes a 503 (problem.rs); refusals here.
            if !matches!(error, WebhookError::Database(_)) {
                let request_id = req
                    .extensions()
                    .get::<RequestContext>()
                    .map(|c| c.request_id.clone())
                    .unwrap_or_default();
                tracing::warn!(%request_id, path = req.path(), reason = %error, "Jira webhook refused");
            }
            Err(ApiError::from(error))
        }
    }
}

/// The raw body (the signature covers its exact bytes), refused past `max` bytes — by
/// `Content-Length` before reading, and while reading for chunked bodies.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    max: usize,
) -> Result<Vec<u8>, WebhookError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > max) {
        return Err(WebhookError::TooLarge(max));
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| WebhookError::Malformed(format!("unreadable body: {e}")))?;
        if body.len() + chunk.len() > max {
            return Err(WebhookError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
