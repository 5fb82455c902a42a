//! The caller's identity, and signing out of filebridge's session.

use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::auth::{AuthContext, CurrentUser, PendingSession};

/// `GET /api/v1/me`
pub async fn me(CurrentUser(user): CurrentUser) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "key": user.key,
        "name": user.name,
        "display_name": user.display_name,
        "is_admin": user.is_admin,
    }))
}

/// `DELETE /api/v1/session`: forgets filebridge's session cookie (Jira's own session is
/// Jira's business). Authenticated, so cookie callers pass the cross-site check first.
pub async fn end_session(
    _: CurrentUser,
    req: HttpRequest,
    ctx: web::Data<AuthContext>,
) -> HttpResponse {
    // Authenticating this very request may have minted a session; signing out must not
    // hand it out.
    req.extensions_mut().remove::<PendingSession>();
    HttpResponse::NoContent()
        .cookie(ctx.identity.sessions().removal_cookie())
        .finish()
}
