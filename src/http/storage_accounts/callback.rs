//! `GET /oauth/microsoft/callback`: where Microsoft sends the browser back after a user's
//! sign-in, with a code or an error, and the sign-in's state.

use actix_web::cookie::Cookie;
use actix_web::http::header::{
    Accept, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION,
};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

use super::{STATE_COOKIE, event};
use crate::accounts::{self, AccountError, store};
use crate::audit;
use crate::auth::{MaybeUser, User};
use crate::broker::Broker;
use crate::http::{ApiError, pages};
use crate::secrets::SecretCipher;

#[derive(Deserialize)]
pub(super) struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /oauth/microsoft/callback?code=…&state=…` (or `?error=…&error_description=…`).
///
/// A person's browser lands here, so whatever keeps the account from being connected (a
/// sign-in Microsoft did not complete, a state that is not valid, a failure on the way) is a
/// short page for a client that asks for HTML first, as a browser's navigation does; everyone
/// else gets the problem document. Both carry the same status.
pub(super) async fn callback(
    MaybeUser(caller): MaybeUser,
    req: HttpRequest,
    query: web::Query<CallbackQuery>,
    pool: web::Data<PgPool>,
    cipher: web::Data<SecretCipher>,
    broker: web::Data<Broker>,
) -> Result<HttpResponse, ApiError> {
    let pending = match take_state(&req, &query, &pool, &cipher).await {
        Ok(pending) => pending,
        Err(e) if wants_html(&req) => return Ok(not_connected(&req, e, None)),
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
        Err(e) if wants_html(&req) => Ok(not_connected(&req, e, Some(&again))),
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
        .insert_header((CONTENT_SECURITY_POLICY, pages::STATIC_POLICY))
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

/// `error` as a page (see [`pages::not_connected`]), with the status the API would answer
/// (400 for the user's refusals, 5xx for failures on the way). A sign-in that is known
/// (`again`) was the state cookie's, used up now, so the cookie goes too; otherwise the cookie
/// may hold another sign-in under way in another tab, and stays.
fn not_connected(req: &HttpRequest, error: AccountError, again: Option<&str>) -> HttpResponse {
    let reason = match &error {
        AccountError::SignInFailed(reason) => Some(reason.clone()),
        AccountError::BadState => None,
        other => {
            tracing::warn!(error = %other, "a user's Microsoft sign-in could not be finished");
            None
        }
    };
    let why = match (&error, &reason) {
        (_, Some(reason)) => pages::NotConnected::Declined(reason),
        (AccountError::BadState, None) => pages::NotConnected::StaleState,
        _ => pages::NotConnected::Failed,
    };
    let status = ApiError::from(error).status_code();
    let mut page = HttpResponse::build(status);
    page.insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header((CONTENT_SECURITY_POLICY, pages::STATIC_POLICY));
    if again.is_some() {
        page.cookie(state_cookie_removal(req));
    }
    page.body(pages::not_connected(why, again))
}

const CONNECTED_PAGE: &str = "<!DOCTYPE html><meta charset=\"utf-8\"><title>Account connected</title>\
     <p>Your Microsoft account is connected to filebridge. You can close this tab and reload \
     the issue's files.</p>";
