//! The Microsoft identity platform's v2.0 endpoints: `POST /{tenant}/oauth2/v2.0/token` and
//! `GET /{tenant}/oauth2/v2.0/authorize` (`authorize.rs`).
//!
//! The token endpoint follows "OAuth 2.0 client credentials flow"
//! (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow) and
//! "OAuth 2.0 authorization code flow"
//! (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow): client
//! authentication by `client_secret` (form or HTTP Basic) or `client_assertion`; grants
//! `client_credentials`, `authorization_code` and `refresh_token` (`grants.rs`). Error bodies are
//! the documented shape, `{error, error_description: "AADSTSnnnn: …\r\nTrace ID: …\r\nCorrelation
//! ID: …\r\nTimestamp: …", error_codes, timestamp, trace_id, correlation_id, error_uri}`;
//! `invalid_client` answers 401 (as the service does for a wrong secret), every other error 400.

mod assertion;
mod authorize;
mod certificate;
mod grants;

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

pub use authorize::authorize;
pub use certificate::Certificate;

use crate::Shared;
use crate::faults::RequestClass;
use crate::world::{App, World};

/// `client_assertion_type` for certificate credentials.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An identity-platform error, before the per-request ids and timestamp are added.
#[derive(Debug)]
pub struct StsError {
    pub status: u16,
    pub error: &'static str,
    pub code: u32,
    pub message: String,
}

impl StsError {
    pub fn new(status: u16, error: &'static str, code: u32, message: impl Into<String>) -> Self {
        StsError {
            status,
            error,
            code,
            message: message.into(),
        }
    }

    pub fn bad(error: &'static str, code: u32, message: impl Into<String>) -> Self {
        StsError::new(400, error, code, message)
    }

    /// `AADSTSnnnn: message`.
    pub fn description(&self) -> String {
        format!("AADSTS{}: {}", self.code, self.message)
    }

    pub fn respond(&self, world: &mut World, base: &str) -> HttpResponse {
        let (trace, correlation) = (world.guid(), world.guid());
        let timestamp = crate::clock::sts(world.now());
        let body = json!({
            "error": self.error,
            "error_description": format!(
                "{}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {timestamp}",
                self.description()
            ),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("{base}/error?code={}", self.code),
        });
        HttpResponse::build(status(self.status))
            .insert_header((header::CACHE_CONTROL, "no-store, no-cache"))
            .json(body)
    }
}

pub fn status(code: u16) -> actix_web::http::StatusCode {
    actix_web::http::StatusCode::from_u16(code).expect("a valid status")
}

/// The tenant a request names: a tenant id, a verified domain, or `common`/`organizations`
/// (resolved to the client's own tenant: every fake app is single-tenant).
pub enum TenantRef {
    Tenant(String),
    Common,
}

fn resolve_tenant(world: &World, name: &str) -> Result<TenantRef, StsError> {
    if name.eq_ignore_ascii_case("common") || name.eq_ignore_ascii_case("organizations") {
        return Ok(TenantRef::Common);
    }
    world
        .tenant_by_name(name)
        .map(|t| TenantRef::Tenant(t.id.clone()))
        .ok_or_else(|| {
            StsError::bad(
                "invalid_request",
                90002,
                format!(
                    "Tenant '{name}' not found. Check to make sure you have the correct tenant ID."
                ),
            )
        })
}

/// The app registration named by `client_id` in the tenant.
fn find_app(world: &World, tenant: &TenantRef, client_id: &str) -> Result<App, StsError> {
    let app = world.apps.get(client_id).filter(|app| match tenant {
        TenantRef::Tenant(id) => &app.tenant_id == id,
        TenantRef::Common => true,
    });
    app.cloned().ok_or_else(|| {
        StsError::bad(
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory. This \
                 can happen if the application has not been installed by the administrator of \
                 the tenant or consented to by any user in the tenant."
            ),
        )
    })
}

fn missing(name: &str) -> StsError {
    StsError::bad(
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{name}'."),
    )
}

/// Client authentication: a secret (form field or HTTP Basic) or a certificate assertion.
fn authenticate(
    world: &mut World,
    req: &HttpRequest,
    form: &HashMap<String, String>,
    app: &App,
    audiences: &[String],
) -> Result<(), StsError> {
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(_, secret)| secret.to_owned()));
    let secret = form.get("client_secret").cloned().or(basic);
    if let Some(assertion) = form.get("client_assertion") {
        if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
            return Err(StsError::bad(
                "invalid_request",
                9002313,
                format!("Invalid request. client_assertion_type must be '{JWT_BEARER}'."),
            ));
        }
        return assertion::verify(world, app, assertion, audiences);
    }
    match secret {
        Some(secret) if app.secrets.contains(&secret) => Ok(()),
        Some(_) => Err(StsError::new(
            401,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is \
                 the client secret value, not the client secret ID, for a secret added to app \
                 '{}'.",
                app.client_id
            ),
        )),
        None => Err(StsError::new(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or \
             'client_secret'.",
        )),
    }
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub async fn token(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let tenant_name = path.into_inner();
    let base = shared.base_url.clone();
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    let mut world = shared.world();
    world.counters.token_requests += 1;
    *world
        .counters
        .token_requests_by_grant
        .entry(grant)
        .or_default() += 1;
    if let Some((code, retry_after)) = world.faults.take_throttle(RequestClass::Token, true) {
        world.counters.throttled += 1;
        let error = StsError::new(
            code,
            "temporarily_unavailable",
            90024,
            "RequestBudgetExceededError - A transient error has occurred. Try again.",
        );
        let mut response = error.respond(&mut world, &base);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(retry_after));
        return response;
    }

    match token_inner(&mut world, &req, &base, &tenant_name, &form) {
        Ok(body) => {
            world.counters.tokens_issued += 1;
            HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-store, no-cache"))
                .json(body)
        }
        Err(error) => error.respond(&mut world, &base),
    }
}

fn token_inner(
    world: &mut World,
    req: &HttpRequest,
    base: &str,
    tenant_name: &str,
    form: &HashMap<String, String>,
) -> Result<serde_json::Value, StsError> {
    let tenant = resolve_tenant(world, tenant_name)?;
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| missing("grant_type"))?;
    let client_id = form.get("client_id").ok_or_else(|| missing("client_id"))?;
    let app = find_app(world, &tenant, client_id)?;
    // The assertion's audience is the token endpoint the client called, with the tenant as it
    // named it or as its id.
    let mut audiences = vec![format!("{base}/{tenant_name}/oauth2/v2.0/token")];
    audiences.push(format!("{base}/{}/oauth2/v2.0/token", app.tenant_id));
    authenticate(world, req, form, &app, &audiences)?;
    match grant_type.as_str() {
        "client_credentials" => grants::client_credentials(world, &tenant, &app, form),
        "authorization_code" => grants::authorization_code(world, base, &app, form),
        "refresh_token" => grants::refresh(world, base, &app, form),
        other => Err(StsError::bad(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{other}'."),
        )),
    }
}
