//! Users' own storage accounts for delegated connections (see `crate::accounts`):
//!
//! - `GET /api/v1/storage-accounts`: the caller's delegated connections, connected or not;
//! - `GET /api/v1/storage-accounts/{id}/connect`: starts the sign-in (302 to Microsoft);
//! - `GET /oauth/microsoft/callback`: where Microsoft sends the browser back;
//! - `DELETE /api/v1/storage-accounts/{id}`: the caller disconnects;
//! - `DELETE /api/v1/admin/storage-accounts/{id}/{user_key}`: an admin revokes a user's.
//!
//! The sign-in's `state` is single use and names the user; it is also set in a cookie scoped
//! to the callback (`SameSite=Lax`, so it survives the redirect from Microsoft where the
//! strict session cookie does not): a callback whose state is not this browser's, or names
//! another user than the one whose credentials come with it, is refused. A browser (asking
//! for HTML) gets such a refusal, or Microsoft's, as a short page instead of JSON.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header::{CACHE_CONTROL, LOCATION};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

mod callback;

use super::{ApiError, RequestContext, resource};
use crate::accounts::{self, AccountError, CALLBACK_PATH, store};
use crate::audit::{self, Actor, AuditEvent, Outcome};
use crate::auth::{AdminUser, CurrentUser, User};
use crate::broker::Broker;
use crate::config::ServerSettings;
use crate::secrets::{SecretCipher, SecretsError};

/// Carries the sign-in's state from `/connect` to the callback in the same browser.
const STATE_COOKIE: &str = "filebridge_oauth_state";

/// Registers the API routes; call it inside the `/api/v1` scope.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/storage-accounts").get(list))
        .service(resource("/storage-accounts/{id}").delete(disconnect))
        .service(resource("/storage-accounts/{id}/connect").get(connect))
        .service(resource("/admin/storage-accounts/{id}/{user_key}").delete(revoke));
}

/// Registers the callback; call it in the base path's scope.
pub fn callback_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource(CALLBACK_PATH).get(callback::callback));
}

fn path_id(req: &HttpRequest) -> Result<Uuid, ApiError> {
    req.match_info()
        .get("id")
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or(ApiError::NotFound)
}

fn event(req: &HttpRequest, actor: &User, action: &'static str, id: Uuid) -> AuditEvent {
    let context = req.extensions().get::<RequestContext>().cloned();
    let mut event = AuditEvent::new(Actor::from(actor), action, Outcome::Success);
    event.target = Some(format!("connection:{id}"));
    event.client_ip = context.as_ref().and_then(|c| c.client_ip);
    event.request_id = context.map(|c| c.request_id);
    event
}

#[derive(sqlx::FromRow)]
struct DelegatedConnection {
    id: Uuid,
    name: String,
}

/// `GET /api/v1/storage-accounts`
async fn list(
    CurrentUser(user): CurrentUser,
    pool: web::Data<PgPool>,
    broker: web::Data<Broker>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = pool.acquire().await?;
    let connections: Vec<DelegatedConnection> = sqlx::query_as(
        "SELECT id, name FROM connections
         WHERE kind = 'sharepoint' AND settings ->> 'mode' = 'delegated' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let accounts = store::for_user(&mut conn, &user.key).await?;
    let items: Vec<_> = connections
        .into_iter()
        .map(|c| {
            let account = accounts.iter().find(|a| a.connection_id == c.id);
            json!({
                "connection_id": c.id,
                "connection_name": c.name,
                "connected": account.is_some(),
                "connected_at": account.and_then(|a| {
                    a.connected_at
                        .format(&time::format_description::well_known::Rfc3339)
                        .ok()
                }),
                "account": account.and_then(|a| a.account.clone()),
                "connect_url": broker.links().connect_url(c.id),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

#[derive(Deserialize)]
struct ConnectQuery {
    return_to: Option<String>,
}

/// `GET /api/v1/storage-accounts/{id}/connect[?return_to=/issues/PROJ-1]`
async fn connect(
    CurrentUser(user): CurrentUser,
    req: HttpRequest,
    query: web::Query<ConnectQuery>,
    pool: web::Data<PgPool>,
    cipher: web::Data<SecretCipher>,
    broker: web::Data<Broker>,
    server: web::Data<ServerSettings>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req)?;
    let app = broker
        .delegated(id)
        .await
        .map_err(|_| AccountError::NotDelegated)?
        .ok_or(AccountError::NotDelegated)?;
    let return_to = query
        .return_to
        .as_deref()
        .and_then(accounts::safe_return_to);
    let (state, url) = accounts::begin(
        &pool,
        &cipher,
        &app,
        broker.links(),
        id,
        &user.key,
        return_to,
    )
    .await?;
    let cookie = Cookie::build(STATE_COOKIE, state)
        .path(format!("{}{CALLBACK_PATH}", server.base_path))
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(
            accounts::STATE_LIFETIME.whole_seconds(),
        ))
        .finish();
    Ok(HttpResponse::Found()
        .insert_header((LOCATION, url.as_str()))
        .insert_header((CACHE_CONTROL, "no-store"))
        .cookie(cookie)
        .finish())
}

/// `DELETE /api/v1/storage-accounts/{id}`: the caller forgets their own account.
async fn disconnect(
    CurrentUser(user): CurrentUser,
    req: HttpRequest,
    pool: web::Data<PgPool>,
    broker: web::Data<Broker>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req)?;
    remove(
        &req,
        &pool,
        &broker,
        &user,
        id,
        &user.key,
        "storage_account.disconnect",
    )
    .await
}

/// `DELETE /api/v1/admin/storage-accounts/{id}/{user_key}`: an admin revokes a user's.
async fn revoke(
    AdminUser(admin): AdminUser,
    req: HttpRequest,
    pool: web::Data<PgPool>,
    broker: web::Data<Broker>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req)?;
    let user_key = req
        .match_info()
        .get("user_key")
        .ok_or(ApiError::NotFound)?
        .to_string();
    remove(
        &req,
        &pool,
        &broker,
        &admin,
        id,
        &user_key,
        "storage_account.revoke",
    )
    .await
}

/// Deletes the account and records it in one transaction; 404 if there was none.
async fn remove(
    req: &HttpRequest,
    pool: &PgPool,
    broker: &Broker,
    actor: &User,
    id: Uuid,
    user_key: &str,
    action: &'static str,
) -> Result<HttpResponse, ApiError> {
    let mut tx = pool.begin().await?;
    if !store::delete(&mut tx, id, user_key).await? {
        return Err(ApiError::NotFound);
    }
    let mut record = event(req, actor, action, id);
    record.details = json!({ "user_key": user_key });
    audit::record(&mut tx, &record).await?;
    tx.commit().await?;
    // Other instances hear of it from the table's trigger.
    broker.forget_user(id, user_key).await;
    Ok(HttpResponse::NoContent().finish())
}

impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::NotDelegated => ApiError::NotFound,
            e @ (AccountError::BadState | AccountError::SignInFailed(_)) => {
                ApiError::BadRequest(e.to_string())
            }
            AccountError::Storage(e) => ApiError::Storage(e),
            AccountError::Database(e) | AccountError::Secrets(SecretsError::Database(e)) => {
                ApiError::from(e)
            }
            AccountError::Audit(e) | AccountError::Secrets(SecretsError::Audit(e)) => {
                ApiError::Audit(e)
            }
            // A wrong master key or an altered row: the log has the message, with key ids.
            AccountError::Secrets(e) => ApiError::Internal(e.to_string()),
        }
    }
}
