//! `GET|PUT|DELETE /api/v1/admin/projects/{projectKey}/mapping`: which connection and folder
//! hold a project's files.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::ApiError;
use super::files::event;
use crate::audit::{self, Actor, Outcome};
use crate::auth::{AuthError, JiraCaller};
use crate::broker::Broker;
use crate::broker::mapping::{self, NewMapping};
use crate::jira::{JiraClient, JiraError};
use crate::storage::{NameRules, StoragePath};

#[derive(Deserialize)]
pub struct MappingBody {
    connection_id: Uuid,
    root: String,
    #[serde(default = "default_template")]
    issue_folder: String,
    #[serde(default = "default_true")]
    auto_create: bool,
}

fn default_template() -> String {
    "{issue.key}".into()
}

fn default_true() -> bool {
    true
}

/// An admin whose request carries Jira credentials (to resolve the project's id as them).
fn require_admin(caller: &JiraCaller) -> Result<(), ApiError> {
    if caller.user.is_admin {
        Ok(())
    } else {
        Err(AuthError::NotAdmin.into())
    }
}

fn project_key(req: &HttpRequest) -> String {
    req.match_info().get("key").unwrap_or_default().to_string()
}

pub async fn get(
    req: HttpRequest,
    caller: JiraCaller,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&caller)?;
    let found = mapping::by_project_key(&pool, &project_key(&req))
        .await
        .map_err(ApiError::from)?;
    match found {
        Some(m) => Ok(HttpResponse::Ok().json(m)),
        None => Err(ApiError::NotFound),
    }
}

pub async fn put(
    req: HttpRequest,
    caller: JiraCaller,
    body: web::Json<MappingBody>,
    pool: web::Data<PgPool>,
    jira: web::Data<JiraClient>,
    broker: web::Data<Broker>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&caller)?;
    let key = project_key(&req);
    StoragePath::parse(&body.root, NameRules::default())
        .map_err(|e| ApiError::BadRequest(format!("root: {e}")))?;
    mapping::check_template(&body.issue_folder).map_err(ApiError::BadRequest)?;
    let project = jira
        .project(&caller.jira.credential, &key)
        .await
        .map_err(|e| match e {
            JiraError::NotFound => ApiError::NotFound,
            other => ApiError::Auth(AuthError::from(other)),
        })?;
    let new = NewMapping {
        project_id: project.id.clone(),
        project_key: project.key.clone(),
        connection_id: body.connection_id,
        root: body.root.clone(),
        issue_folder: body.issue_folder.clone(),
        auto_create: body.auto_create,
    };
    let mut tx = pool.begin().await.map_err(ApiError::from)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM connections WHERE id = $1)")
            .bind(body.connection_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(ApiError::from)?;
    if !exists {
        return Err(ApiError::BadRequest(
            "connection_id names no connection".into(),
        ));
    }
    let created = mapping::upsert(&mut tx, &new, &caller.user.key)
        .await
        .map_err(ApiError::from)?;
    let mut audit_event = event(
        &req,
        Actor::from(&*caller.user),
        "mapping.set",
        Outcome::Success,
    );
    audit_event.target = Some(format!("project:{}", project.key));
    audit_event.details = serde_json::json!({
        "project_id": project.id, "connection_id": body.connection_id, "root": body.root,
        "issue_folder": body.issue_folder, "auto_create": body.auto_create, "created": created,
    });
    audit::record(&mut tx, &audit_event).await?;
    tx.commit().await.map_err(ApiError::from)?;
    // Other instances hear of it from Postgres; this one must not wait for that.
    broker.forget_mapping(&project.id).await;
    let stored = mapping::by_project_id(pool.get_ref(), &project.id)
        .await
        .map_err(ApiError::from)?
        .ok_or(ApiError::NotFound)?;
    Ok(if created {
        HttpResponse::Created().json(stored)
    } else {
        HttpResponse::Ok().json(stored)
    })
}

pub async fn delete(
    req: HttpRequest,
    caller: JiraCaller,
    pool: web::Data<PgPool>,
    broker: web::Data<Broker>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&caller)?;
    let Some(found) = mapping::by_project_key(&pool, &project_key(&req))
        .await
        .map_err(ApiError::from)?
    else {
        return Err(ApiError::NotFound);
    };
    let mut tx = pool.begin().await.map_err(ApiError::from)?;
    mapping::delete(&mut tx, &found.project_id)
        .await
        .map_err(ApiError::from)?;
    let mut audit_event = event(
        &req,
        Actor::from(&*caller.user),
        "mapping.delete",
        Outcome::Success,
    );
    audit_event.target = Some(format!("project:{}", found.project_key));
    audit_event.details =
        serde_json::json!({ "connection_id": found.connection_id, "root": found.root });
    audit::record(&mut tx, &audit_event).await?;
    tx.commit().await.map_err(ApiError::from)?;
    broker.forget_mapping(&found.project_id).await;
    // The files stay where they are: removing a mapping never deletes storage content.
    Ok(HttpResponse::NoContent().finish())
}
