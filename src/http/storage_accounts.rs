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
use actix_web::http::header::{
    Accept, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION,
};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::{ApiError, RequestContext, pages, resource};
use crate::accounts::{self, AccountError, CALLBACK_PATH, store};
use crate::audit::{self, Actor, AuditEvent, Outcome};
use crate::auth::{AdminUser, CurrentUser, MaybeUser, User};
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
    cfg.service(resource(CALLBACK_PATH).get(callback));
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

#[derive(Deserialize)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /oauth/microsoft/callback?code=…&state=…` (or `?error=…&error_description=…`).
///
/// A person's browser lands here, so the refusals they can act on (a sign-in Microsoft did not
/// complete, a state that is not valid) are a short page (400) for a client that asks for
/// HTML first, as a browser's navigation does; everyone else gets the 400 problem document.
async fn callback(
    MaybeUser(caller): MaybeUser,
    req: HttpRequest,
    query: web::Query<CallbackQuery>,
    pool: web::Data<PgPool>,
    cipher: web::Data<SecretCipher>,
    broker: web::Data<Broker>,
) -> Result<HttpResponse, ApiError> {
    let pending = match take_state(&req, &query, &pool, &cipher).await {
        Ok(pending) => pending,
        Err(AccountError::BadState) if wants_html(&req) => {
            return Ok(not_connected(&req, &AccountError::BadState, None));
        }
        Err(e) => return Err(e.into()),
    };
    // Trying again starts a new sign-in for the same connection, going back to the same place.
    let again = broker
        .links()
        .connect_url_returning(pending.connection_id, pending.return_to.as_deref());
    match connect_back(
        caller.as_deref(),
        &req,
        &query,
        &pool,
        &cipher,
        &broker,
        pending,
    )
    .await
    {
        Ok(response) => Ok(response),
        Err(e @ (AccountError::BadState | AccountError::SignInFailed(_))) if wants_html(&req) => {
            Ok(not_connected(&req, &e, Some(&again)))
        }
        Err(e) => Err(e.into()),
    }
}

/// The sign-in this browser started, taken (deleted) on its own, so that whatever follows,
/// its state cannot be used again.
async fn take_state(
    req: &HttpRequest,
    query: &CallbackQuery,
    pool: &PgPool,
    cipher: &SecretCipher,
) -> Result<store::PendingSignIn, AccountError> {
    let state = query.state.as_deref().ok_or(AccountError::BadState)?;
    let cookie = req.cookie(STATE_COOKIE);
    // This browser started this sign-in: the cookie set by `/connect` holds the same state.
    if cookie.as_ref().map(|c| c.value()) != Some(state) {
        return Err(AccountError::BadState);
    }
    let mut conn = pool.acquire().await?;
    store::take_state(&mut conn, cipher, state)
        .await?
        .ok_or(AccountError::BadState)
}

/// Redeems the code of a taken sign-in for its user and stores the account.
async fn connect_back(
    caller: Option<&User>,
    req: &HttpRequest,
    query: &CallbackQuery,
    pool: &PgPool,
    cipher: &SecretCipher,
    broker: &Broker,
    pending: store::PendingSignIn,
) -> Result<HttpResponse, AccountError> {
    if caller.is_some_and(|c| c.key != pending.user_key) {
        return Err(AccountError::BadState);
    }
    if let Some(error) = &query.error {
        let why = query.error_description.as_deref().unwrap_or("");
        return Err(AccountError::SignInFailed(format!("{error}: {why}")));
    }
    let code = query.code.as_deref().ok_or(AccountError::BadState)?;
    let app = broker
        .delegated(pending.connection_id)
        .await
        .map_err(|_| AccountError::NotDelegated)?
        .ok_or(AccountError::NotDelegated)?;
    let mut tx = pool.begin().await?;
    let connected = accounts::finish(&mut tx, cipher, &app, broker.links(), pending, code).await?;
    let user = User {
        key: connected.user_key.clone(),
        name: caller.map_or_else(|| connected.user_key.clone(), |c| c.name.clone()),
        display_name: String::new(),
        is_admin: false,
    };
    let mut record = event(
        req,
        &user,
        "storage_account.connect",
        connected.connection_id,
    );
    record.details = json!({ "account": connected.account });
    audit::record(&mut tx, &record).await?;
    tx.commit().await?;
    // A fresh storage for the user: an old one may hold a token of a previous account.
    broker
        .forget_user(connected.connection_id, &connected.user_key)
        .await;
    let mut response = match broker.links().return_url(connected.return_to.as_deref()) {
        Some(url) => {
            let mut r = HttpResponse::SeeOther();
            r.insert_header((LOCATION, url));
            r
        }
        None => {
            let mut r = HttpResponse::Ok();
            r.insert_header((CONTENT_TYPE, "text/html; charset=utf-8"));
            r
        }
    };
    Ok(response
        .cookie(state_cookie_removal(req))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(CONNECTED_PAGE))
}

/// The state cookie is of no more use once its sign-in came back.
fn state_cookie_removal(req: &HttpRequest) -> Cookie<'static> {
    let mut removal = Cookie::build(STATE_COOKIE, "")
        .path(req.path().to_string())
        .finish();
    removal.make_removal();
    removal
}

/// A browser's navigation asks for HTML before anything else; API clients ask for JSON, for
/// anything (`*/*`), or say nothing.
fn wants_html(req: &HttpRequest) -> bool {
    req.get_header::<Accept>()
        .is_some_and(|accept| accept.preference().essence_str() == "text/html")
}

/// 400, as a page (see [`pages::not_connected`]). A sign-in that is known (`again`) was the
/// state cookie's, used up now, so the cookie goes too; otherwise the cookie may hold another
/// sign-in under way in another tab, and stays.
fn not_connected(req: &HttpRequest, error: &AccountError, again: Option<&str>) -> HttpResponse {
    let reason = match error {
        AccountError::SignInFailed(reason) => Some(reason.as_str()),
        _ => None,
    };
    let mut page = HttpResponse::BadRequest();
    page.insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header((CONTENT_SECURITY_POLICY, pages::STATIC_POLICY));
    if again.is_some() {
        page.cookie(state_cookie_removal(req));
    }
    page.body(pages::not_connected(reason, again))
}

const CONNECTED_PAGE: &str = "<!DOCTYPE html><meta charset=\"utf-8\"><title>Account connected</title>\
     <p>Your Microsoft account is connected to filebridge. You can close this tab and reload \
     the issue's files.</p>";

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
