//! `/api/v1/admin/jobs`: the background job queue, for administrators: what is queued,
//! running, dead (set aside after its last attempt) or finished, and the two actions on a job
//! that needs a person: retry and discard. Both actions are audited in the transaction that
//! makes them.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

use super::files::event;
use super::{ApiError, resource};
use crate::audit::{self, Actor, Outcome};
use crate::auth::AdminUser;
use crate::jobs::{self, Changed, JobFilter, JobState};

/// Registers the `/admin/jobs` scope; call it inside the `/api/v1` scope.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin/jobs")
            .service(resource("").get(list))
            .service(resource("/{id}").get(show).delete(discard))
            .service(resource("/{id}/retry").post(retry)),
    );
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    limit: Option<i64>,
}

async fn list(
    _: AdminUser,
    req: HttpRequest,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    // Parsed here rather than by an extractor, so a non-admin gets 403 whatever the query.
    let query = web::Query::<ListQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
    let state = match query.state.as_deref() {
        None | Some("") => None,
        Some(text) => Some(JobState::parse(text).ok_or_else(|| {
            ApiError::BadRequest(
                "`state` must be queued, running, done, dead or discarded".to_string(),
            )
        })?),
    };
    let filter = JobFilter {
        state,
        limit: query.limit,
    };
    let items = jobs::list(&pool, &filter).await?;
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

async fn show(
    _: AdminUser,
    req: HttpRequest,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    let job = jobs::get(&pool, path_id(&req)?).await?;
    Ok(HttpResponse::Ok().json(job))
}

async fn retry(
    admin: AdminUser,
    req: HttpRequest,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req)?;
    let mut tx = pool.begin().await.map_err(ApiError::from)?;
    let changed = jobs::retry(&mut tx, id).await?;
    record(&mut tx, &admin, &req, "job.retry", &changed).await?;
    tx.commit().await.map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(changed.job))
}

async fn discard(
    admin: AdminUser,
    req: HttpRequest,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req)?;
    let mut tx = pool.begin().await.map_err(ApiError::from)?;
    let changed = jobs::discard(&mut tx, id).await?;
    record(&mut tx, &admin, &req, "job.discard", &changed).await?;
    tx.commit().await.map_err(ApiError::from)?;
    Ok(HttpResponse::NoContent().finish())
}

/// The audit record of an admin action, in its transaction. The job's last error stays out:
/// it is a handler's or a peer's text, and the job list shows it anyway.
async fn record(
    tx: &mut sqlx::PgConnection,
    admin: &AdminUser,
    req: &HttpRequest,
    action: &'static str,
    changed: &Changed,
) -> Result<(), ApiError> {
    let mut audit_event = event(req, Actor::from(&*admin.0), action, Outcome::Success);
    audit_event.target = Some(format!("job:{}", changed.job.id));
    audit_event.details = json!({
        "kind": changed.job.kind,
        "previous_state": changed.previous,
        "dedupe_key": changed.job.dedupe_key,
    });
    audit::record(tx, &audit_event).await?;
    Ok(())
}

/// An id that is not a number names no job.
fn path_id(req: &HttpRequest) -> Result<i64, ApiError> {
    req.match_info()
        .get("id")
        .and_then(|id| id.parse().ok())
        .ok_or(ApiError::NotFound)
}
