//! Administration endpoints (Jira administrators and members of `security.admin_groups`).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::auth::AdminUser;
use crate::egress::EgressClient;

/// `GET /api/v1/admin/egress`: every host filebridge contacted or refused since it started.
pub async fn egress_report(_: AdminUser, egress: web::Data<EgressClient>) -> HttpResponse {
    let hosts: Vec<_> = egress
        .report()
        .into_iter()
        .map(|(host, counts)| json!({"host": host, "contacted": counts.contacted, "refused": counts.refused}))
        .collect();
    HttpResponse::Ok().json(json!({ "hosts": hosts }))
}

/// `POST /api/v1/admin/reconcile`: queues a reconciliation with Jira now (besides the
/// schedule); answers 202 with the job's id, which `GET /api/v1/admin/jobs/{id}` follows.
pub async fn reconcile(
    req: actix_web::HttpRequest,
    admin: AdminUser,
    pool: web::Data<sqlx::PgPool>,
) -> Result<HttpResponse, super::ApiError> {
    let mut tx = pool.begin().await.map_err(super::ApiError::from)?;
    let job = crate::jobs::enqueue(
        &mut tx,
        &crate::jobs::NewJob {
            kind: crate::events::RECONCILE.into(),
            payload: json!({}),
            dedupe_key: None,
            run_at: None,
        },
    )
    .await
    .map_err(super::ApiError::from)?;
    let mut event = super::files::event(
        &req,
        crate::audit::Actor::from(&*admin.0),
        "reconcile.request",
        crate::audit::Outcome::Success,
    );
    event.details = json!({ "job_id": job });
    crate::audit::record(&mut tx, &event).await?;
    tx.commit().await.map_err(super::ApiError::from)?;
    Ok(HttpResponse::Accepted().json(json!({ "job_id": job })))
}
