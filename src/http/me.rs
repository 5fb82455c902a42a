//! The caller's identity, and signing out of filebridge's session.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::auth::{AuthContext, CurrentUser};

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
pub async fn end_session(_: CurrentUser, ctx: web::Data<AuthContext>) -> HttpResponse {
    HttpResponse::NoContent()
        .cookie(ctx.identity.sessions().removal_cookie())
        .finish()
}
