//! `/api/v1/admin/connections`: storage connections, for administrators only.
//!
//! Secrets are write-only: a body may set (`"name": "value"`) or remove (`"name": null`) them,
//! and responses list only their names. Every change is audited in its own transaction; a
//! refused change (bad input, name taken, in use, not found) is audited as failed.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::{ApiError, RequestContext, resource};
use crate::audit::{self, Actor, AuditEvent, Outcome};
use crate::auth::AdminUser;
use crate::broker::Broker;
use crate::connections::{self, Connection, ConnectionError, ConnectionSpec, check_secret};
use crate::egress::EgressClient;
use crate::secrets::{SecretCipher, SecretsError};
use crate::storage::{StorageError, registry};

/// Connection bodies are small; this leaves room for a PEM key or two.
const MAX_BODY: usize = 256 * 1024;
/// A connection test that gets no answer in this time reports the storage unavailable
/// rather than holding the admin's request open.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);
const FIELDS: [&str; 4] = ["name", "kind", "settings", "secrets"];

/// Registers the `/admin/connections` scope; call it inside the `/api/v1` scope.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin/connections")
            .service(resource("").get(list).post(create))
            .service(resource("/{id}").get(show).put(replace).delete(remove))
            .service(resource("/{id}/test").post(test)),
    );
}

async fn list(_: AdminUser, pool: web::Data<PgPool>) -> Result<HttpResponse, ApiError> {
    let items = connections::list(&pool).await?;
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

async fn show(
    _: AdminUser,
    req: HttpRequest,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req)?;
    let mut conn = pool.acquire().await.map_err(ConnectionError::from)?;
    Ok(HttpResponse::Ok().json(connections::get(&mut conn, id).await?))
}

async fn create(
    admin: AdminUser,
    req: HttpRequest,
    payload: web::Payload,
    pool: web::Data<PgPool>,
    cipher: web::Data<SecretCipher>,
) -> Result<HttpResponse, ApiError> {
    let who = Who::new(&admin, &req);
    let result: Result<Connection, ConnectionError> = async {
        let (spec, secrets) = parse_body(read_json(&req, payload).await?, false)?;
        // Nulls were refused above for a create, so every entry has a value.
        let secrets: BTreeMap<String, SecretString> = secrets
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name, v)))
            .collect();
        let mut tx = pool.begin().await?;
        let created =
            connections::create(&mut tx, &cipher, &spec, &secrets, &who.actor.key).await?;
        let details = json!({
            "name": created.name,
            "kind": created.kind,
            "secrets_set": created.secret_names,
        });
        let event = who.event(
            "connection.create",
            Outcome::Success,
            Some(created.id),
            details,
        );
        audit::record(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(created)
    }
    .await;
    match result {
        Ok(created) => Ok(HttpResponse::Created().json(created)),
        Err(e) => Err(who.refused(&pool, "connection.create", None, e).await),
    }
}

async fn replace(
    admin: AdminUser,
    req: HttpRequest,
    payload: web::Payload,
    pool: web::Data<PgPool>,
    cipher: web::Data<SecretCipher>,
    broker: web::Data<Broker>,
) -> Result<HttpResponse, ApiError> {
    let who = Who::new(&admin, &req);
    let id = path_id(&req)?;
    let result: Result<Connection, ConnectionError> = async {
        let (spec, secrets) = parse_body(read_json(&req, payload).await?, true)?;
        let mut tx = pool.begin().await?;
        let (before, after, changes) =
            connections::update(&mut tx, &cipher, id, &spec, &secrets, &who.actor.key).await?;
        let mut details = json!({
            "name": after.name,
            "kind": after.kind,
            "settings_changed": before.settings != after.settings,
            "secrets_set": changes.set,
            "secrets_removed": changes.removed,
        });
        if before.name != after.name {
            details["previous_name"] = json!(before.name);
        }
        if before.kind != after.kind {
            details["previous_kind"] = json!(before.kind);
        }
        let event = who.event("connection.update", Outcome::Success, Some(id), details);
        audit::record(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(after)
    }
    .await;
    match result {
        Ok(updated) => {
            // This node stops using the old settings at once; others within a minute.
            broker.forget_connection(id).await;
            Ok(HttpResponse::Ok().json(updated))
        }
        Err(e) => Err(who.refused(&pool, "connection.update", Some(id), e).await),
    }
}

#[derive(Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

async fn remove(
    admin: AdminUser,
    req: HttpRequest,
    pool: web::Data<PgPool>,
    broker: web::Data<Broker>,
) -> Result<HttpResponse, ApiError> {
    let who = Who::new(&admin, &req);
    let id = path_id(&req)?;
    let result: Result<(), ConnectionError> = async {
        // Parsed here rather than by an extractor, so a non-admin gets 403 whatever the query.
        let query = web::Query::<DeleteQuery>::from_query(req.query_string())
            .map_err(|e| ConnectionError::Invalid(format!("invalid query string: {e}")))?;
        let mut tx = pool.begin().await?;
        let (deleted, mappings) = connections::delete(&mut tx, id, query.force).await?;
        let details = json!({
            "name": deleted.name,
            "kind": deleted.kind,
            "force": query.force,
            "mappings_removed": mappings,
            "secrets_removed": deleted.secret_names,
        });
        let event = who.event("connection.delete", Outcome::Success, Some(id), details);
        audit::record(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            broker.forget_connection(id).await;
            Ok(HttpResponse::NoContent().finish())
        }
        Err(e) => Err(who.refused(&pool, "connection.delete", Some(id), e).await),
    }
}

/// Opens the storage and runs its health check: a real round trip with the credentials.
async fn test(
    admin: AdminUser,
    req: HttpRequest,
    pool: web::Data<PgPool>,
    cipher: web::Data<SecretCipher>,
    egress: web::Data<EgressClient>,
) -> Result<HttpResponse, ApiError> {
    let who = Who::new(&admin, &req);
    let id = path_id(&req)?;
    let connection = {
        let mut conn = pool.acquire().await.map_err(ConnectionError::from)?;
        connections::get(&mut conn, id).await?
    };
    let (result, code) = match connections::load_for_use(&pool, &cipher, id).await {
        Ok((kind, settings, secrets)) => {
            let probe = async {
                registry::open(&kind, &settings, &secrets, &egress)?
                    .health()
                    .await
            };
            let checked = tokio::time::timeout(TEST_TIMEOUT, probe)
                .await
                .unwrap_or_else(|_| {
                    Err(StorageError::Unavailable(format!(
                        "no answer within {} s",
                        TEST_TIMEOUT.as_secs()
                    )))
                });
            let code = checked.as_ref().err().map(StorageError::code);
            (checked.map_err(ApiError::from), code)
        }
        Err(ConnectionError::Secrets(
            e @ (SecretsError::WrongKey { .. } | SecretsError::Tampered),
        )) => {
            let code = match e {
                SecretsError::WrongKey { .. } => "wrong_key",
                _ => "tampered",
            };
            (Err(ConnectionError::Secrets(e).into()), Some(code))
        }
        // Nothing was tried (gone meanwhile, database trouble): nothing to audit.
        Err(e) => return Err(e.into()),
    };
    let outcome = code.map_or(Outcome::Success, Outcome::Failed);
    let details = json!({ "name": connection.name, "kind": connection.kind });
    let event = who.event("connection.test", outcome, Some(id), details);
    audit::record_alone(&pool, &event).await?;
    result.map(|()| HttpResponse::Ok().json(json!({ "ok": true })))
}

/// Who is acting and from where, for the audit trail.
struct Who {
    actor: Actor,
    context: Option<RequestContext>,
}

impl Who {
    fn new(admin: &AdminUser, req: &HttpRequest) -> Self {
        Self {
            actor: Actor {
                key: admin.0.key.clone(),
                name: admin.0.name.clone(),
            },
            context: req.extensions().get::<RequestContext>().cloned(),
        }
    }

    fn event(
        &self,
        action: &'static str,
        outcome: Outcome,
        id: Option<Uuid>,
        details: Value,
    ) -> AuditEvent {
        let mut event = AuditEvent::new(self.actor.clone(), action, outcome);
        event.target = id.map(|id| format!("connection:{id}"));
        event.client_ip = self.context.as_ref().and_then(|c| c.client_ip);
        event.request_id = self.context.as_ref().map(|c| c.request_id.clone());
        event.details = details;
        event
    }

    /// Audits a change refused for the caller's reasons (best effort: the refusal stands
    /// even if the record cannot be written), and turns the error into the response.
    async fn refused(
        &self,
        pool: &PgPool,
        action: &'static str,
        id: Option<Uuid>,
        error: ConnectionError,
    ) -> ApiError {
        let code = match &error {
            ConnectionError::Invalid(_) => Some("bad_request"),
            ConnectionError::NameTaken(_) | ConnectionError::InUse(_) => Some("conflict"),
            ConnectionError::NotFound => Some("not_found"),
            _ => None,
        };
        if let Some(code) = code {
            let details = json!({ "reason": error.to_string() });
            let event = self.event(action, Outcome::Failed(code), id, details);
            if let Err(e) = audit::record_alone(pool, &event).await {
                tracing::warn!(error = %e, action, "could not audit a refused change");
            }
        }
        error.into()
    }
}

/// An id that is not a UUID names no connection.
fn path_id(req: &HttpRequest) -> Result<Uuid, ApiError> {
    req.match_info()
        .get("id")
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or(ApiError::NotFound)
}

/// Reads the body after authentication (an extractor could refuse a bad body to a caller
/// who is not even an admin), as a JSON value, so no typed-parse error can echo a secret.
async fn read_json(req: &HttpRequest, payload: web::Payload) -> Result<Value, ConnectionError> {
    let invalid = |m: String| ConnectionError::Invalid(m);
    let essence = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if essence != "application/json" && !essence.ends_with("+json") {
        return Err(invalid(
            "send the body as JSON (Content-Type: application/json)".into(),
        ));
    }
    let bytes = match payload.to_bytes_limited(MAX_BODY).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => return Err(invalid(format!("reading the body failed: {e}"))),
        Err(_) => return Err(invalid(format!("the body is larger than {MAX_BODY} bytes"))),
    };
    // Parsing into a plain value only fails on syntax, whose messages quote no input.
    serde_json::from_slice(&bytes).map_err(|e| invalid(format!("invalid JSON body: {e}")))
}

type SecretUpdates = BTreeMap<String, Option<SecretString>>;

/// `{"name", "kind", "settings", "secrets"}`; `null` secrets (removal) only for an update.
fn parse_body(
    body: Value,
    update: bool,
) -> Result<(ConnectionSpec, SecretUpdates), ConnectionError> {
    let invalid = |m: String| Err(ConnectionError::Invalid(m));
    let Value::Object(mut body) = body else {
        return invalid(format!(
            "the body must be a JSON object with {}",
            FIELDS.join(", ")
        ));
    };
    if let Some(unknown) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return invalid(format!(
            "unknown field `{unknown}`; the fields are {}",
            FIELDS.join(", ")
        ));
    }
    let mut text = |field: &str| match body.remove(field) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(ConnectionError::Invalid(format!(
            "`{field}` must be a string"
        ))),
    };
    let name = text("name")?;
    let kind = text("kind")?;
    let settings = body.remove("settings").unwrap_or(Value::Null);
    let spec = ConnectionSpec::new(&name, &kind, settings)?;
    let secrets = match body.remove("secrets") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(secrets)) => secrets,
        Some(_) => return invalid("`secrets` must be an object of name: string".into()),
    };
    let mut updates = BTreeMap::new();
    for (secret, value) in secrets {
        let value = match value {
            Value::String(s) => Some(SecretString::from(s)),
            Value::Null if update => None,
            Value::Null => {
                return invalid(format!("secret `{secret}` is null; leave it out instead"));
            }
            _ => {
                return invalid(format!(
                    "secret `{secret}` must be a string (or null to remove it)"
                ));
            }
        };
        check_secret(&secret, value.as_ref())?;
        updates.insert(secret, value);
    }
    Ok((spec, updates))
}

impl From<ConnectionError> for ApiError {
    fn from(error: ConnectionError) -> Self {
        match error {
            ConnectionError::NotFound => ApiError::NotFound,
            ConnectionError::NameTaken(_) | ConnectionError::InUse(_) => {
                ApiError::Conflict(error.to_string())
            }
            ConnectionError::Invalid(message) => ApiError::BadRequest(message),
            ConnectionError::Database(e) | ConnectionError::Secrets(SecretsError::Database(e)) => {
                ApiError::from(e)
            }
            ConnectionError::Audit(e) | ConnectionError::Secrets(SecretsError::Audit(e)) => {
                ApiError::Audit(e)
            }
            // A wrong master key or an altered row: the log has the message, with key ids.
            ConnectionError::Secrets(e) => ApiError::Internal(e.to_string()),
        }
    }
}
