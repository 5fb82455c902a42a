//! `GET /{tenant}/oauth2/v2.0/authorize`, driven by a test instead of a browser.
//!
//! Follows "OAuth 2.0 authorization code flow"
//! (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow), "Request an
//! authorization code": `client_id`, `response_type=code`, `redirect_uri` (must be registered for
//! the app), `scope`, `state` (echoed), `code_challenge` and `code_challenge_method` (`S256` or
//! `plain`; `code_challenge` is required when a method is given). A request the service cannot
//! send back (unknown tenant or app, unregistered redirect URI) gets an error page (400) instead
//! of a redirect, as the service shows one. Otherwise the answer is a 302 to the redirect URI
//! with `code` and `state`, or with `error` and `error_description` from the page's "Error codes
//! for authorization endpoint errors".
//!
//! The sign-in and consent screens are replaced by test controls: the user the "browser" is
//! signed in as ([`crate::FakeGraph::sign_in`]; none gives `error=login_required`, AADSTS50058)
//! and the scripted outcome of the next request ([`crate::FakeGraph::script_authorize`]:
//! `consent_required`, AADSTS65001, or `access_denied`, AADSTS65004). Only `response_mode=query`
//! is implemented.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::grants::delegated_scopes;
use super::{StsError, TenantRef, find_app, resolve_tenant};
use crate::Shared;
use crate::world::{AuthCode, AuthorizeOutcome, World};

fn redirect(redirect_uri: &str, params: &[(&str, &str)]) -> HttpResponse {
    let query = serde_urlencoded::to_string(params).unwrap_or_default();
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    HttpResponse::Found()
        .insert_header((
            header::LOCATION,
            format!("{redirect_uri}{separator}{query}"),
        ))
        .finish()
}

fn error_page(error: &StsError) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!DOCTYPE html><title>Sign in to your account</title><p>{}</p>",
            error.description()
        ))
}

pub async fn authorize(
    req: HttpRequest,
    path: web::Path<String>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let query: HashMap<String, String> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let mut world = shared.world();
    let tenant = match resolve_tenant(&world, &path) {
        Ok(tenant) => tenant,
        Err(error) => return error_page(&error),
    };
    let client_id = query.get("client_id").map(String::as_str).unwrap_or("");
    let app = match find_app(&world, &tenant, client_id) {
        Ok(app) => app,
        Err(error) => return error_page(&error),
    };
    let redirect_uri = query.get("redirect_uri").cloned().unwrap_or_default();
    if !app.redirect_uris.contains(&redirect_uri) {
        return error_page(&StsError::bad(
            "invalid_request",
            50011,
            format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the \
                 redirect URIs configured for the application '{client_id}'."
            ),
        ));
    }
    let state = query.get("state").cloned();
    match decide(&mut world, &tenant, &app.client_id, &query, &redirect_uri) {
        Ok(code) => {
            let mut params = vec![("code", code.as_str())];
            if let Some(state) = &state {
                params.push(("state", state));
            }
            redirect(&redirect_uri, &params)
        }
        Err(error) => {
            let description = error.description();
            let mut params = vec![("error", error.error), ("error_description", &description)];
            if let Some(state) = &state {
                params.push(("state", state));
            }
            redirect(&redirect_uri, &params)
        }
    }
}

/// Checks the request and the scripted user, and issues a code.
fn decide(
    world: &mut World,
    tenant: &TenantRef,
    client_id: &str,
    query: &HashMap<String, String>,
    redirect_uri: &str,
) -> Result<String, StsError> {
    let request = |code, message: &str| StsError::bad("invalid_request", code, message);
    if query.get("response_type").map(String::as_str) != Some("code") {
        return Err(StsError::bad(
            "unsupported_response_type",
            70005,
            "The app returned an unsupported response type: only 'code' is supported.",
        ));
    }
    let scope = query.get("scope").map(String::as_str).unwrap_or("");
    let scopes = delegated_scopes(&world.settings.graph_resource, scope)?;
    let pkce = match (
        query.get("code_challenge"),
        query.get("code_challenge_method"),
    ) {
        (None, Some(_)) => {
            return Err(request(
                50147,
                "The code_challenge parameter is required when code_challenge_method is given.",
            ));
        }
        (None, None) => None,
        (Some(challenge), method) => {
            let method = method.map(String::as_str).unwrap_or("plain");
            if method != "S256" && method != "plain" {
                return Err(request(
                    501491,
                    "Invalid code_challenge_method: use S256 or plain.",
                ));
            }
            if method == "S256" && challenge.len() != 43 {
                return Err(request(501491, "Invalid size of Code_Challenge parameter."));
            }
            Some((challenge.clone(), method.to_owned()))
        }
    };
    let Some(user_id) = world.signed_in.clone() else {
        return Err(StsError::bad(
            "login_required",
            50058,
            "A silent sign-in request was sent but no user is signed in.",
        ));
    };
    let user_tenant = world.users.get(&user_id).map(|u| u.tenant_id.clone());
    let app_tenant = world.apps.get(client_id).map(|a| a.tenant_id.clone());
    if let TenantRef::Tenant(id) = tenant
        && user_tenant.as_ref() != Some(id)
    {
        return Err(StsError::bad(
            "access_denied",
            50020,
            "User account does not exist in tenant and cannot access the application in that tenant.",
        ));
    }
    if user_tenant != app_tenant {
        return Err(StsError::bad(
            "access_denied",
            50020,
            "User account does not exist in the application's tenant.",
        ));
    }
    match world
        .authorize_script
        .pop_front()
        .unwrap_or(AuthorizeOutcome::Approve)
    {
        AuthorizeOutcome::Approve => {}
        AuthorizeOutcome::ConsentRequired => {
            return Err(StsError::bad(
                "consent_required",
                65001,
                format!(
                    "The user or administrator has not consented to use the application with ID '{client_id}'. Send an interactive authorization request for this user and resource."
                ),
            ));
        }
        AuthorizeOutcome::AccessDenied => {
            return Err(StsError::bad(
                "access_denied",
                65004,
                "User declined to consent to access the app.",
            ));
        }
    }
    let code = world.secret();
    let expires_at = world.now() + world.settings.code_lifetime;
    world.codes.insert(
        code.clone(),
        AuthCode {
            client_id: client_id.to_owned(),
            user: user_id,
            redirect_uri: redirect_uri.to_owned(),
            scopes,
            pkce,
            expires_at,
            redeemed: false,
        },
    );
    Ok(code)
}
