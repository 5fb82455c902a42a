//! `GET /api/v1/admin/audit`: the audit trail for admins, as JSON or CSV.

use actix_web::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use sqlx::PgPool;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ApiError;
use crate::audit::{self, ExportFormat, Filter};
use crate::auth::AdminUser;

/// Rows per answer at most; page with `since` (the last row's time) for more, or use
/// `filebridge audit export`, which streams everything.
const MAX_ROWS: i64 = 10_000;

#[derive(Deserialize)]
pub struct AuditQuery {
    since: Option<String>,
    until: Option<String>,
    actor: Option<String>,
    format: Option<String>,
    limit: Option<i64>,
}

fn timestamp(name: &str, value: Option<&str>) -> Result<Option<OffsetDateTime>, ApiError> {
    value
        .map(|text| {
            OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
                ApiError::BadRequest(format!(
                    "`{name}` must be an RFC 3339 time such as 2026-11-22T08:00:00Z"
                ))
            })
        })
        .transpose()
}

#[derive(Deserialize)]
pub struct RetentionQuery {
    older_than_days: u32,
}

/// `DELETE /api/v1/admin/audit?older_than_days=N`: applies retention now; the removal is
/// itself recorded (with the admin as actor) and the chain stays verifiable.
pub async fn purge(
    AdminUser(user): AdminUser,
    pool: web::Data<PgPool>,
    query: web::Query<RetentionQuery>,
) -> Result<HttpResponse, ApiError> {
    let removed =
        audit::purge_older_than(&pool, query.older_than_days, audit::Actor::from(&*user)).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "removed": removed })))
}

pub async fn list(
    _: AdminUser,
    pool: web::Data<PgPool>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = Filter {
        since: timestamp("since", query.since.as_deref())?,
        until: timestamp("until", query.until.as_deref())?,
        actor: query.actor.clone(),
        limit: Some(query.limit.unwrap_or(1000).clamp(1, MAX_ROWS)),
    };
    match query.format.as_deref().unwrap_or("json") {
        "csv" => {
            let mut body = Vec::new();
            audit::export(&pool, &filter, ExportFormat::Csv, &mut body).await?;
            Ok(HttpResponse::Ok()
                .insert_header((CONTENT_TYPE, "text/csv; charset=utf-8"))
                .insert_header((
                    CONTENT_DISPOSITION,
                    "attachment; filename=\"filebridge-audit.csv\"",
                ))
                .body(body))
        }
        "json" => {
            let mut lines = Vec::new();
            audit::export(&pool, &filter, ExportFormat::Jsonl, &mut lines).await?;
            let events: Vec<serde_json::Value> = lines
                .split(|b| *b == b'\n')
                .filter(|line| !line.is_empty())
                .map(serde_json::from_slice)
                .collect::<Result<_, _>>()
                .map_err(|e| ApiError::Internal(format!("audit row as JSON: {e}")))?;
            Ok(HttpResponse::Ok().json(serde_json::json!({ "events": events })))
        }
        other => Err(ApiError::BadRequest(format!(
            "format `{other}` is not json or csv"
        ))),
    }
}
