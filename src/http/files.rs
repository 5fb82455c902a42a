//! The files of an issue (`/api/v1/issues/{key}/files`) or a project
//! (`/api/v1/projects/{key}/files`): list, create folders, move, delete. Transfers are in
//! `download.rs` and `upload.rs`. Every action is checked against Jira by the broker and
//! audited with the real user.

use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde::Deserialize;
use sqlx::PgPool;

use super::{ApiError, RequestContext, download, resource, upload};
use crate::audit::{self, Actor, AuditEvent, Outcome};
use crate::auth::JiraCaller;
use crate::broker::{Broker, BrokerError, FolderHandle, Need, Scope};

/// Which kind of folder a route serves, set per scope.
#[derive(Debug, Clone, Copy)]
pub enum FolderKind {
    Issue,
    Project,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    for (prefix, kind) in [
        ("/issues/{key}/files", FolderKind::Issue),
        ("/projects/{key}/files", FolderKind::Project),
    ] {
        cfg.service(
            web::scope(prefix)
                .app_data(web::Data::new(kind))
                .service(resource("").get(list).delete(delete))
                .service(
                    resource("/content")
                        .get(download::download)
                        .route(web::head().to(download::download))
                        .put(upload::upload),
                )
                .service(resource("/upload").post(upload::upload_form))
                .service(resource("/folders").post(create_folder))
                .service(resource("/move").post(move_item)),
        );
    }
}

#[derive(Deserialize)]
pub struct PathQuery {
    #[serde(default)]
    pub path: String,
}

/// The issue or project this request is about.
pub fn scope_of(req: &HttpRequest) -> Result<Scope, ApiError> {
    let key = req.match_info().get("key").unwrap_or_default().to_string();
    // Jira keys are short and plain; anything else cannot name an issue or project.
    if key.is_empty()
        || key.len() > 255
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::NotFound);
    }
    match req
        .app_data::<web::Data<FolderKind>>()
        .map(|k| *k.get_ref())
    {
        Some(FolderKind::Project) => Ok(Scope::Project(key)),
        _ => Ok(Scope::Issue(key)),
    }
}

/// Checks the caller's permission, auditing a refusal.
pub async fn authorize(
    req: &HttpRequest,
    broker: &Broker,
    pool: &PgPool,
    caller: &JiraCaller,
    need: Need,
    action: &'static str,
    path: &str,
) -> Result<FolderHandle, ApiError> {
    let scope = scope_of(req)?;
    match broker.authorize(caller, scope.clone(), need).await {
        Ok(handle) => Ok(handle),
        Err(e) => {
            let outcome = match &e {
                BrokerError::Forbidden(_) | BrokerError::NotFound => Outcome::Denied,
                BrokerError::NotMapped(_) => Outcome::Failed("not_mapped"),
                _ => Outcome::Failed("unavailable"),
            };
            let mut event = event(req, Actor::from(&*caller.user), action, outcome);
            event.target = Some(scope.target());
            event.path = Some(path.to_string());
            // A refusal is worth recording, but not worth failing the answer over.
            if let Err(audit_error) = audit::record_alone(pool, &event).await {
                tracing::warn!(error = %audit_error, "could not audit a refused request");
            }
            Err(e.into())
        }
    }
}

/// An audit event with who and from where filled in.
pub fn event(
    req: &HttpRequest,
    actor: Actor,
    action: &'static str,
    outcome: Outcome,
) -> AuditEvent {
    let mut event = AuditEvent::new(actor, action, outcome);
    if let Some(ctx) = req.extensions().get::<RequestContext>() {
        event.client_ip = ctx.client_ip;
        event.request_id = Some(ctx.request_id.clone());
    }
    event
}

/// Records the outcome of a file operation on `handle`; the operation's error, if any, wins
/// over an audit failure, and an audit failure fails an otherwise successful request (the
/// trail must not miss what happened).
pub async fn audited<T>(
    req: &HttpRequest,
    pool: &PgPool,
    handle: &FolderHandle,
    action: &'static str,
    path: &str,
    size: Option<u64>,
    result: Result<T, BrokerError>,
) -> Result<T, ApiError> {
    audited_with(
        req,
        pool,
        handle,
        (action, path, size),
        serde_json::json!({}),
        result,
    )
    .await
}

/// [`audited`] with extra details (a move's source).
pub async fn audited_with<T>(
    req: &HttpRequest,
    pool: &PgPool,
    handle: &FolderHandle,
    (action, path, size): (&'static str, &str, Option<u64>),
    mut details: serde_json::Value,
    result: Result<T, BrokerError>,
) -> Result<T, ApiError> {
    let outcome = match &result {
        Ok(_) => Outcome::Success,
        Err(BrokerError::Storage(e)) => Outcome::Failed(e.code()),
        Err(BrokerError::Forbidden(_)) => Outcome::Denied,
        Err(_) => Outcome::Failed("unavailable"),
    };
    let mut event = event(req, Actor::from(handle.user()), action, outcome);
    event.target = Some(handle.target());
    event.path = Some(path.to_string());
    event.size = size.and_then(|s| i64::try_from(s).ok());
    details["storage"] = serde_json::Value::from(handle.storage_kind());
    event.details = details;
    let recorded = audit::record_alone(pool, &event).await;
    let value = result?;
    recorded.map_err(ApiError::Unrecorded)?;
    Ok(value)
}

async fn list(
    req: HttpRequest,
    caller: JiraCaller,
    query: web::Query<PathQuery>,
    broker: web::Data<Broker>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    let handle = authorize(
        &req,
        &broker,
        &pool,
        &caller,
        Need::Read,
        "file.list",
        &query.path,
    )
    .await?;
    let path = handle.path(&query.path)?;
    let items = audited(
        &req,
        &pool,
        &handle,
        "file.list",
        &path.to_string(),
        None,
        handle.list(&path).await,
    )
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

async fn create_folder(
    req: HttpRequest,
    caller: JiraCaller,
    query: web::Query<PathQuery>,
    broker: web::Data<Broker>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    let handle = authorize(
        &req,
        &broker,
        &pool,
        &caller,
        Need::Write,
        "folder.create",
        &query.path,
    )
    .await?;
    let path = handle.path(&query.path)?;
    let item = audited(
        &req,
        &pool,
        &handle,
        "folder.create",
        &path.to_string(),
        None,
        handle.create_folder(&path).await,
    )
    .await?;
    Ok(HttpResponse::Created().json(item))
}

#[derive(Deserialize)]
struct MoveBody {
    from: String,
    to: String,
}

async fn move_item(
    req: HttpRequest,
    caller: JiraCaller,
    body: web::Json<MoveBody>,
    broker: web::Data<Broker>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    let handle = authorize(
        &req,
        &broker,
        &pool,
        &caller,
        Need::Write,
        "file.move",
        &body.from,
    )
    .await?;
    let from = handle.path(&body.from)?;
    let to = handle.path(&body.to)?;
    let result = async {
        handle.may_delete(&from).await?;
        handle.rename(&from, &to).await
    }
    .await;
    let details = serde_json::json!({ "from": from.to_string() });
    let item = audited_with(
        &req,
        &pool,
        &handle,
        ("file.move", &to.to_string(), None),
        details,
        result,
    )
    .await?;
    Ok(HttpResponse::Ok().json(item))
}

async fn delete(
    req: HttpRequest,
    caller: JiraCaller,
    query: web::Query<PathQuery>,
    broker: web::Data<Broker>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    let handle = authorize(
        &req,
        &broker,
        &pool,
        &caller,
        Need::Delete,
        "file.delete",
        &query.path,
    )
    .await?;
    let path = handle.path(&query.path)?;
    let result = async {
        handle.may_delete(&path).await?;
        handle.delete(&path).await
    }
    .await;
    audited(
        &req,
        &pool,
        &handle,
        "file.delete",
        &path.to_string(),
        None,
        result,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
