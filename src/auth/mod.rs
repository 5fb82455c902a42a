//! Authentication (who is calling, verified by Jira) and the extractors handlers use to
//! require it. A handler that takes [`CurrentUser`] or [`AdminUser`] cannot run before the
//! check has passed: the type is the proof.

mod credentials;
mod identity;
mod session;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::http::header::ORIGIN;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use serde::Serialize;

pub use credentials::{MAX_CREDENTIAL_BYTES, Presented, SESSION_COOKIE};
pub use identity::{Authenticated, IdentityService, JiraAccess};
pub use session::{SessionKeys, derive_key};

/// Jira's global permissions that make a user a filebridge administrator.
pub const ADMIN_PERMISSIONS: [&str; 2] = ["ADMINISTER", "SYSTEM_ADMIN"];

/// A user as Jira knows them. `key` is stable across renames; `name` is the login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub key: String,
    pub name: String,
    pub display_name: String,
    pub is_admin: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no credentials: send a Jira personal access token as Authorization: Bearer, or Jira session cookies"
    )]
    Missing,
    #[error("the Authorization header must be `Bearer <Jira personal access token>`")]
    MalformedAuthorization,
    #[error("the credentials are larger than {MAX_CREDENTIAL_BYTES} bytes")]
    CredentialTooLarge,
    #[error("Jira did not accept the credentials")]
    Rejected,
    #[error(
        "this needs Jira credentials on the request (a personal access token or Jira's session cookies), so Jira can be asked what this user may do"
    )]
    JiraCredentialsRequired,
    #[error("the filebridge session is not valid ({0}); sign in to Jira again")]
    SessionInvalid(&'static str),
    #[error(
        "a request authenticated by cookies must come from this site: send a same-origin Origin or an X-Requested-With header"
    )]
    CrossSite,
    #[error("this needs a Jira administrator or a member of a filebridge admin group")]
    NotAdmin,
    #[error("Jira is unavailable, so the user cannot be verified; try again shortly")]
    JiraUnavailable { retry_after: Option<Duration> },
    #[error("Jira gave an unexpected answer: {0}")]
    JiraBadResponse(String),
    #[error("{0}")]
    Internal(String),
}

/// Set on the request when a new session cookie should go out with the response.
pub struct PendingSession(pub actix_web::cookie::Cookie<'static>);

/// The authenticated caller. Extracting it performs authentication.
pub struct CurrentUser(pub Arc<User>);

/// An authenticated Jira administrator (or admin-group member).
pub struct AdminUser(pub Arc<User>);

/// An authenticated user whose request carries a Jira credential, so Jira can be asked about
/// their permissions on an issue or project.
pub struct JiraCaller {
    pub user: Arc<User>,
    pub jira: JiraAccess,
}

impl FromRequest for JiraCaller {
    type Error = crate::http::ApiError;
    type Future = Extraction<Self>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        extract(req, |authenticated| {
            let jira = authenticated
                .jira
                .ok_or(AuthError::JiraCredentialsRequired)?;
            Ok(JiraCaller {
                user: authenticated.user,
                jira,
            })
        })
    }
}

/// The caller if the request carries credentials, `None` if it carries none at all. For the
/// one route a browser reaches from another site (the sign-in callback), where the strict
/// session cookie is withheld; credentials that are present must still be valid.
pub struct MaybeUser(pub Option<Arc<User>>);

impl FromRequest for MaybeUser {
    type Error = crate::http::ApiError;
    type Future = Extraction<Self>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let ctx = req
                .app_data::<web::Data<AuthContext>>()
                .ok_or_else(|| AuthError::Internal("authentication is not configured".into()))?;
            let presented = Presented::from_request(&req, ctx.identity.forward_cookies())?;
            if presented.bearer.is_none()
                && presented.sessions.is_empty()
                && presented.jira_cookies.is_none()
            {
                return Ok(MaybeUser(None));
            }
            Ok(MaybeUser(Some(authenticate(&req).await?.user)))
        })
    }
}

/// What the authenticating extractors return.
pub type Extraction<T> = Pin<Box<dyn Future<Output = Result<T, crate::http::ApiError>>>>;

/// Authenticates the request, then turns the outcome into the extractor's type (which may
/// refuse it, e.g. for want of admin rights).
fn extract<T: 'static>(
    req: &HttpRequest,
    into: impl FnOnce(Authenticated) -> Result<T, AuthError> + 'static,
) -> Extraction<T> {
    let req = req.clone();
    Box::pin(async move { Ok(into(authenticate(&req).await?)?) })
}

/// Settings the extractors need besides the identity service.
pub struct AuthContext {
    pub identity: IdentityService,
    /// `scheme://host[:port]` of `server.public_url`: the only Origin accepted with cookies.
    pub public_origin: String,
}

impl FromRequest for CurrentUser {
    type Error = crate::http::ApiError;
    type Future = Extraction<Self>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        extract(req, |authenticated| Ok(CurrentUser(authenticated.user)))
    }
}

impl FromRequest for AdminUser {
    type Error = crate::http::ApiError;
    type Future = Extraction<Self>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        extract(req, |authenticated| {
            if authenticated.user.is_admin {
                Ok(AdminUser(authenticated.user))
            } else {
                Err(AuthError::NotAdmin)
            }
        })
    }
}

async fn authenticate(req: &HttpRequest) -> Result<Authenticated, AuthError> {
    let ctx = req
        .app_data::<web::Data<AuthContext>>()
        .ok_or_else(|| AuthError::Internal("authentication is not configured".into()))?;
    let presented = Presented::from_request(req, ctx.identity.forward_cookies())?;
    if presented.uses_cookies() && !is_safe(req.method()) && !same_site(req, &ctx.public_origin) {
        return Err(AuthError::CrossSite);
    }
    let mut authenticated = ctx.identity.authenticate(presented).await?;
    if let Some(token) = authenticated.new_session.take() {
        let cookie = ctx.identity.sessions().cookie(token);
        req.extensions_mut().insert(PendingSession(cookie));
    }
    Ok(authenticated)
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A same-origin `Origin`, or (when the browser sent none) an `X-Requested-With` header,
/// which a cross-site form cannot add.
fn same_site(req: &HttpRequest, public_origin: &str) -> bool {
    match req.headers().get(ORIGIN) {
        Some(origin) => origin.as_bytes() == public_origin.as_bytes(),
        None => req.headers().contains_key("x-requested-with"),
    }
}
