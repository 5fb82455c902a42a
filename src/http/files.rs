//! The files of an issue (`/api/v1/issues/{key}/files`) or a project
//! (`/api/v1/projects/{key}/files`): list, create folders, move, delete. Transfers are in
//! `download.rs` and `upload.rs`. Every action is checked against Jira by the broker and
//! audited with the real user.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};
use serde::Deserialize;
use sqlx::PgPool;

use super::{ApiError, RequestContext, download, resource, upload};
use crate::audit::{self, Actor, AuditEvent, Outcome};
use crate::auth::JiraCaller;
use crate::broker::{Broker, BrokerError, FolderHandle, Need, Scope};
use crate::storage::StoragePath;

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

/// What every file handler needs, extracted together: the request, the caller (with a Jira
/// credential), the broker and the pool. Its methods are the one path from a request to an
/// audited storage operation.
pub struct FileRequest {
    req: HttpRequest,
    caller: JiraCaller,
    broker: web::Data<Broker>,
    pool: web::Data<PgPool>,
}

impl FromRequest for FileRequest {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let caller = JiraCaller::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let caller = caller.await?;
            let missing = || ApiError::Internal("file routes are not configured".into());
            let broker = req
                .app_data::<web::Data<Broker>>()
                .cloned()
                .ok_or_else(missing)?;
            let pool = req
                .app_data::<web::Data<PgPool>>()
                .cloned()
                .ok_or_else(missing)?;
            Ok(Self {
                req,
                caller,
                broker,
                pool,
            })
        })
    }
}

/// What an operation did, for its answer and its audit record.
pub struct Done<T> {
    pub value: T,
    pub size: Option<u64>,
    /// The path to record, when it is not the one the request named (a move's target).
    pub path: Option<String>,
    pub details: serde_json::Value,
}

impl<T> Done<T> {
    pub fn new(value: T) -> Self {
        Self {
            value,
            size: None,
            path: None,
            details: serde_json::json!({}),
        }
    }

    pub fn size(mut self, size: Option<u64>) -> Self {
        self.size = size;
        self
    }
}

impl FileRequest {
    pub fn http(&self) -> &HttpRequest {
        &self.req
    }

    /// Authorises, validates `raw_path` with the storage's rules, runs `op`, and records the
    /// outcome: refusals, invalid names and failures are audited like successes.
    pub async fn run<T>(
        &self,
        need: Need,
        action: &'static str,
        raw_path: &str,
        op: impl AsyncFnOnce(&FolderHandle, StoragePath) -> Result<Done<T>, BrokerError>,
    ) -> Result<T, ApiError> {
        let handle = self.authorize(need, action, raw_path).await?;
        let result = match handle.path(raw_path) {
            Ok(path) => op(&handle, path).await,
            Err(e) => Err(e),
        };
        self.record(&handle, action, raw_path, result).await
    }

    /// Checks the caller's permission, auditing a refusal.
    pub async fn authorize(
        &self,
        need: Need,
        action: &'static str,
        raw_path: &str,
    ) -> Result<FolderHandle, ApiError> {
        let scope = scope_of(&self.req)?;
        match self
            .broker
            .authorize(&self.caller, scope.clone(), need)
            .await
        {
            Ok(handle) => Ok(handle),
            Err(e) => {
                let outcome = match &e {
                    BrokerError::Forbidden(_) | BrokerError::NotFound => Outcome::Denied,
                    BrokerError::NotMapped(_) => Outcome::Failed("not_mapped"),
                    _ => Outcome::Failed("unavailable"),
                };
                let mut event = event(&self.req, Actor::from(&*self.caller.user), action, outcome);
                event.target = Some(scope.target());
                event.path = Some(raw_path.to_string());
                // A refusal is worth recording, but not worth failing the answer over.
                if let Err(audit_error) = audit::record_alone(&self.pool, &event).await {
                    tracing::warn!(error = %audit_error, "could not audit a refused request");
                }
                Err(e.into())
            }
        }
    }

    /// Records the outcome of an operation on `handle`. The operation's error wins over an
    /// audit failure; an audit failure after a success is reported as such (the operation
    /// happened, the trail missed it).
    pub async fn record<T>(
        &self,
        handle: &FolderHandle,
        action: &'static str,
        raw_path: &str,
        result: Result<Done<T>, BrokerError>,
    ) -> Result<T, ApiError> {
        let outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(BrokerError::Storage(e)) => Outcome::Failed(e.code()),
            Err(BrokerError::Forbidden(_)) => Outcome::Denied,
            Err(_) => Outcome::Failed("unavailable"),
        };
        let mut event = event(&self.req, Actor::from(handle.user()), action, outcome);
        event.target = Some(handle.target());
        event.path = Some(raw_path.to_string());
        let mut details = serde_json::json!({});
        if let Ok(done) = &result {
            event.size = done.size.and_then(|s| i64::try_from(s).ok());
            if let Some(path) = &done.path {
                event.path = Some(path.clone());
            }
            details = done.details.clone();
        }
        details["storage"] = serde_json::Value::from(handle.storage_kind());
        event.details = details;
        let recorded = audit::record_alone(&self.pool, &event).await;
        let done = result?;
        recorded.map_err(ApiError::Unrecorded)?;
        Ok(done.value)
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

async fn list(file: FileRequest, query: web::Query<PathQuery>) -> Result<HttpResponse, ApiError> {
    let items = file
        .run(
            Need::Read,
            "file.list",
            &query.path,
            async |handle, path| Ok(Done::new(handle.list(&path).await?)),
        )
        .await?;
    // Serialised straight from the items, not through a `serde_json::Value` tree.
    #[derive(serde::Serialize)]
    struct Listing<'a> {
        items: &'a [crate::storage::Item],
    }
    Ok(HttpResponse::Ok().json(Listing { items: &items }))
}

async fn create_folder(
    file: FileRequest,
    query: web::Query<PathQuery>,
) -> Result<HttpResponse, ApiError> {
    let item = file
        .run(
            Need::Write,
            "folder.create",
            &query.path,
            async |handle, path| Ok(Done::new(handle.create_folder(&path).await?)),
        )
        .await?;
    Ok(HttpResponse::Created().json(item))
}

#[derive(Deserialize)]
struct MoveBody {
    from: String,
    to: String,
}

async fn move_item(file: FileRequest, body: web::Json<MoveBody>) -> Result<HttpResponse, ApiError> {
    let item = file
        .run(
            Need::Write,
            "file.move",
            &body.from,
            async |handle, from| {
                let to = handle.path(&body.to)?;
                handle.may_delete(&from).await?;
                let item = handle.rename(&from, &to).await?;
                // Recorded under the target, so the mover owns the result (DELETE_OWN).
                let mut done = Done::new(item);
                done.path = Some(to.to_string());
                done.details = serde_json::json!({ "from": from.to_string() });
                Ok(done)
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(item))
}

async fn delete(file: FileRequest, query: web::Query<PathQuery>) -> Result<HttpResponse, ApiError> {
    file.run(
        Need::Delete,
        "file.delete",
        &query.path,
        async |handle, path| {
            handle.may_delete(&path).await?;
            Ok(Done::new(handle.delete(&path).await?))
        },
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
