//! `POST /api/v1/admin/jira/webhook`: registers filebridge's webhook in Jira (or updates the
//! one there), for administrators.
//!
//! Jira lets only its administrators manage webhooks, and filebridge's service user should not
//! be one (`doctor` warns when it is). So the call is made with the *caller's* Jira credential
//! (personal access token or Jira session cookies on the request): the caller must be a
//! filebridge administrator, and Jira then checks they are a Jira administrator too
//! (`jira_admin_required` otherwise). The change is audited as `jira.webhook.register`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use sqlx::PgPool;

use super::files::event;
use super::hooks::HookContext;
use super::{ApiError, resource};
use crate::audit::{self, Actor, Outcome};
use crate::auth::{AuthError, JiraCaller};
use crate::jira::{JiraClient, RegistrationError, WebhookAction, register_webhook_as};

const ACTION: &str = "jira.webhook.register";

/// Registers `/admin/jira/webhook`; call it inside the `/api/v1` scope.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/admin/jira/webhook").post(register));
}

async fn register(
    req: HttpRequest,
    caller: JiraCaller,
    pool: web::Data<PgPool>,
    jira: web::Data<JiraClient>,
    context: web::Data<HookContext>,
) -> Result<HttpResponse, ApiError> {
    if !caller.user.is_admin {
        return Err(AuthError::NotAdmin.into());
    }
    let audit_event = event(&req, Actor::from(&*caller.user), ACTION, Outcome::Success);
    let result = register_webhook_as(
        &jira,
        &pool,
        &caller.jira.credential,
        context.secret.as_ref(),
        &context.webhook_url,
        audit_event,
    )
    .await;
    match result {
        Ok(registration) => Ok(match registration.action {
            WebhookAction::Created => HttpResponse::Created().json(&registration),
            WebhookAction::Updated => HttpResponse::Ok().json(&registration),
        }),
        Err(error) => {
            // A refusal that is not the database's is recorded (best effort: the refusal
            // stands even if the record cannot be written).
            let code = match &error {
                RegistrationError::SecretRequired(_) => Some("webhook_secret_required"),
                RegistrationError::NotAdmin => Some("jira_admin_required"),
                RegistrationError::UnknownVersion(_) | RegistrationError::Jira(_) => {
                    Some("jira_error")
                }
                RegistrationError::Database(_) | RegistrationError::Audit(_) => None,
            };
            if let Some(code) = code {
                let mut failed = event(
                    &req,
                    Actor::from(&*caller.user),
                    ACTION,
                    Outcome::Failed(code),
                );
                failed.details = json!({ "reason": error.to_string() });
                if let Err(e) = audit::record_alone(&pool, &failed).await {
                    tracing::warn!(error = %e, "could not audit a refused webhook registration");
                }
            }
            Err(error.into())
        }
    }
}
