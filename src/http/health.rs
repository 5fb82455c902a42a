//! Liveness and readiness. `/healthz` answers while the process runs; `/readyz` only while
//! Postgres answers and the schema is what this binary expects, so a load balancer stops
//! sending traffic during an outage and resumes by itself afterwards.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;
use sqlx::PgPool;

use super::ApiError;
use crate::db::{self, DbError, SchemaStatus};

/// How long `/readyz` waits for the database before calling it unavailable.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn readyz(pool: web::Data<PgPool>) -> Result<HttpResponse, ApiError> {
    let status = tokio::time::timeout(READINESS_TIMEOUT, db::schema_status(&pool))
        .await
        .map_err(|_| ApiError::Database(DbError::Timeout(READINESS_TIMEOUT)))?
        .map_err(|e| match e {
            DbError::Unreachable(_) | DbError::Timeout(_) => ApiError::Database(e),
            other => ApiError::NotReady(other.to_string()),
        })?;
    match status {
        SchemaStatus::Current { version } => {
            Ok(HttpResponse::Ok().json(json!({ "status": "ready", "schema_version": version })))
        }
        SchemaStatus::Pending { applied, latest } => Err(ApiError::NotReady(format!(
            "database migrations are pending (applied {}, this binary needs {latest}); run filebridge migrate",
            applied
                .map(|v| v.to_string())
                .unwrap_or_else(|| "none".into())
        ))),
        SchemaStatus::Newer { database, binary } => Err(ApiError::NotReady(format!(
            "the database schema ({database}) is newer than this binary ({binary})"
        ))),
    }
}
