//! The token endpoint's grants and the tokens they issue.
//!
//! - `client_credentials` ("OAuth 2.0 client credentials flow",
//!   https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow): the
//!   scope must be `{resource}/.default` (anything else is `invalid_scope`, AADSTS70011); the
//!   answer is `{token_type, expires_in, ext_expires_in, access_token}`, never a refresh token.
//!   The `/common` and `/organizations` endpoints refuse it (AADSTS9001023).
//! - `authorization_code` ("OAuth 2.0 authorization code flow",
//!   https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow, "Redeem a
//!   code for an access token"): the code is single-use (AADSTS54005 "already redeemed"),
//!   expires after the code lifetime (AADSTS70008), needs the same `redirect_uri` (AADSTS50011)
//!   and, when the authorize request had a `code_challenge`, a matching `code_verifier`
//!   (AADSTS501481). A refresh token comes only with `offline_access`, an `id_token` only with
//!   `openid`.
//! - `refresh_token` (same page, "Refresh the access token"): each use returns a new refresh
//!   token. Entra ID documents that refresh tokens "aren't revoked when used"; the fake is
//!   stricter by default ([`crate::FakeGraph::set_refresh_single_use`]): a used refresh token is
//!   refused with `invalid_grant` AADSTS70000 (InvalidGrant, "the refresh token isn't valid"), so
//!   a client that forgets to save the rotated token fails in tests. A revoked grant answers
//!   AADSTS50173 (FreshTokenNeeded), an expired one AADSTS700082 (expired due to inactivity), an
//!   unknown token AADSTS9002313.

use std::collections::{BTreeSet, HashMap};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{StsError, TenantRef, missing};
use crate::world::{AccessToken, App, RefreshToken, World};

/// OpenID Connect scopes, granted alongside Graph's.
const OIDC: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// Graph delegated permissions the fake knows (Microsoft Graph permissions reference,
/// https://learn.microsoft.com/graph/permissions-reference).
const DELEGATED: [&str; 9] = [
    "Files.Read",
    "Files.Read.All",
    "Files.ReadWrite",
    "Files.ReadWrite.All",
    "Sites.Read.All",
    "Sites.ReadWrite.All",
    "Sites.Manage.All",
    "Sites.FullControl.All",
    "User.Read",
];

/// What `{resource}/.default` stands for in a delegated request: the permissions a typical
/// filebridge app registration lists.
const REGISTERED: [&str; 3] = ["Files.ReadWrite.All", "Sites.ReadWrite.All", "User.Read"];

fn invalid_scope(scope: &str) -> StsError {
    StsError::bad(
        "invalid_scope",
        70011,
        format!(
            "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
        ),
    )
}

/// Parses a delegated `scope` parameter into canonical names (`Files.ReadWrite.All`,
/// `offline_access`, ...): Graph scopes may carry the resource prefix or not.
pub fn delegated_scopes(resource: &str, scope: &str) -> Result<BTreeSet<String>, StsError> {
    let mut scopes = BTreeSet::new();
    for raw in scope.split_whitespace() {
        let short = raw
            .strip_prefix(resource)
            .and_then(|s| s.strip_prefix('/'))
            .unwrap_or(raw);
        if short == ".default" {
            scopes.extend(REGISTERED.iter().map(|s| (*s).to_owned()));
            continue;
        }
        let known = OIDC
            .iter()
            .chain(DELEGATED.iter())
            .find(|k| k.eq_ignore_ascii_case(short));
        scopes.insert(known.ok_or_else(|| invalid_scope(raw))?.to_string());
    }
    if scopes.is_empty() {
        return Err(invalid_scope("''"));
    }
    Ok(scopes)
}

/// The `scope` an answer reports: Graph permissions without the resource prefix, then OIDC.
fn scope_string(scopes: &BTreeSet<String>) -> String {
    let mut graph: Vec<&str> = scopes
        .iter()
        .map(String::as_str)
        .filter(|s| !OIDC.contains(s))
        .collect();
    graph.extend(OIDC.iter().copied().filter(|s| scopes.contains(*s)));
    graph.join(" ")
}

fn access_token(world: &mut World, token: AccessToken) -> (String, i64) {
    let value = world.secret();
    let lifetime = token.expires_at - world.now();
    world.access_tokens.insert(value.clone(), token);
    (value, lifetime)
}

pub fn client_credentials(
    world: &mut World,
    tenant: &TenantRef,
    app: &App,
    form: &HashMap<String, String>,
) -> Result<Value, StsError> {
    if matches!(tenant, TenantRef::Common) {
        return Err(StsError::bad(
            "invalid_request",
            9001023,
            "The grant type isn't supported over the /common or /consumers endpoints. Please use \
             the /organizations or tenant-specific endpoint.",
        ));
    }
    let scope = form.get("scope").ok_or_else(|| missing("scope"))?;
    let expected = format!("{}/.default", world.settings.graph_resource);
    if scope.split_whitespace().collect::<Vec<_>>() != [expected.as_str()] {
        return Err(StsError::bad(
            "invalid_scope",
            70011,
            format!(
                "The provided value for the input parameter 'scope' is not valid. The scope \
                 {scope} is not valid. Client credential flows must have a scope value with \
                 /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    }
    let expires_at = world.now() + world.settings.access_token_lifetime;
    let (value, lifetime) = access_token(
        world,
        AccessToken {
            client_id: app.client_id.clone(),
            tenant_id: app.tenant_id.clone(),
            user: None,
            scopes: BTreeSet::new(),
            expires_at,
        },
    );
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": value,
    }))
}

/// Tokens for a user: access token, plus a refresh token with `offline_access` and an
/// unsigned `id_token` with `openid`.
fn delegated(
    world: &mut World,
    base: &str,
    app: &App,
    user_id: &str,
    scopes: &BTreeSet<String>,
) -> Value {
    let now = world.now();
    let user = world
        .users
        .get(user_id)
        .cloned()
        .expect("a grant's user exists");
    let (value, lifetime) = access_token(
        world,
        AccessToken {
            client_id: app.client_id.clone(),
            tenant_id: user.tenant_id.clone(),
            user: Some(user_id.to_owned()),
            scopes: scopes
                .iter()
                .filter(|s| !OIDC.contains(&s.as_str()))
                .cloned()
                .collect(),
            expires_at: now + world.settings.access_token_lifetime,
        },
    );
    let mut body = json!({
        "token_type": "Bearer",
        "scope": scope_string(scopes),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": value,
    });
    if scopes.contains("offline_access") {
        let refresh = world.secret();
        let generation = *world.grant_generation.get(user_id).unwrap_or(&0);
        world.refresh_tokens.insert(
            refresh.clone(),
            RefreshToken {
                client_id: app.client_id.clone(),
                user: user_id.to_owned(),
                scopes: scopes.clone(),
                generation,
                issued_at: now,
                used: false,
                expired: false,
            },
        );
        body["refresh_token"] = json!(refresh);
    }
    if scopes.contains("openid") {
        // "An unsigned JSON Web Token" as the refresh section of the auth code flow page puts
        // it; the claims are those of the ID token reference (v2.0).
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"none"}"#);
        let claims = json!({
            "aud": app.client_id,
            "iss": format!("{base}/{}/v2.0", user.tenant_id),
            "iat": now, "nbf": now, "exp": now + 3600,
            "name": user.display_name,
            "oid": user.id,
            "preferred_username": user.upn,
            "sub": user.id,
            "tid": user.tenant_id,
            "ver": "2.0",
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        body["id_token"] = json!(format!("{header}.{claims}."));
    }
    body
}

/// The requested scopes for a redemption or refresh: all of `granted` when none are named,
/// else the named ones, which must be among `granted`.
fn narrowed(
    world: &World,
    granted: &BTreeSet<String>,
    form: &HashMap<String, String>,
) -> Result<BTreeSet<String>, StsError> {
    let Some(scope) = form.get("scope") else {
        return Ok(granted.clone());
    };
    let asked = delegated_scopes(&world.settings.graph_resource, scope)?;
    if let Some(extra) = asked.iter().find(|s| !granted.contains(*s)) {
        return Err(StsError::bad(
            "invalid_grant",
            65001,
            format!(
                "The user or administrator has not consented to use the application with the \
                 scope '{extra}'. Send an interactive authorization request for this user and \
                 resource."
            ),
        ));
    }
    // The refresh token keeps the whole grant; only the access token is narrowed.
    Ok(asked
        .union(
            &granted
                .iter()
                .filter(|s| OIDC.contains(&s.as_str()))
                .cloned()
                .collect(),
        )
        .cloned()
        .collect())
}

pub fn authorization_code(
    world: &mut World,
    base: &str,
    app: &App,
    form: &HashMap<String, String>,
) -> Result<Value, StsError> {
    let code = form.get("code").ok_or_else(|| missing("code"))?;
    let redirect_uri = form
        .get("redirect_uri")
        .ok_or_else(|| missing("redirect_uri"))?;
    let invalid = |code: u32, message: &str| StsError::bad("invalid_grant", code, message);
    let now = world.now();
    let grant = world
        .codes
        .get(code)
        .filter(|c| c.client_id == app.client_id)
        .cloned()
        .ok_or_else(|| {
            invalid(
                9002313,
                "Invalid request. Request is malformed or invalid: the code is not valid.",
            )
        })?;
    if grant.redeemed {
        return Err(invalid(
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
        ));
    }
    if grant.expires_at <= now {
        return Err(invalid(
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
        ));
    }
    if &grant.redirect_uri != redirect_uri {
        return Err(invalid(
            50011,
            &format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URI used to obtain the authorization code."
            ),
        ));
    }
    if let Some((challenge, method)) = &grant.pkce {
        let verifier = form
            .get("code_verifier")
            .ok_or_else(|| missing("code_verifier"))?;
        let computed = match method.as_str() {
            "S256" => URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
            _ => verifier.clone(),
        };
        if &computed != challenge {
            return Err(invalid(
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
            ));
        }
    }
    let scopes = narrowed(world, &grant.scopes, form)?;
    world.codes.get_mut(code).expect("looked up above").redeemed = true;
    let mut body = delegated(world, base, app, &grant.user, &scopes);
    // The refresh token carries the whole grant, not the narrowed scopes.
    if let Some(refresh) = body.get("refresh_token").and_then(Value::as_str)
        && let Some(token) = world.refresh_tokens.get_mut(refresh)
    {
        token.scopes = grant.scopes.clone();
    }
    body["scope"] = json!(scope_string(&scopes));
    Ok(body)
}

pub fn refresh(
    world: &mut World,
    base: &str,
    app: &App,
    form: &HashMap<String, String>,
) -> Result<Value, StsError> {
    let value = form
        .get("refresh_token")
        .ok_or_else(|| missing("refresh_token"))?;
    let invalid = |code: u32, message: &str| StsError::bad("invalid_grant", code, message);
    let token = world
        .refresh_tokens
        .get(value)
        .cloned()
        .ok_or_else(|| invalid(9002313, "Invalid request. Request is malformed or invalid."))?;
    if token.client_id != app.client_id {
        return Err(invalid(
            70000,
            "Provided grant is invalid or malformed: the refresh token was issued to a different client.",
        ));
    }
    if token.generation < *world.grant_generation.get(&token.user).unwrap_or(&0) {
        return Err(invalid(
            50173,
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.",
        ));
    }
    if token.expired {
        return Err(invalid(
            700082,
            &format!(
                "The refresh token has expired due to inactivity. The token was issued on {} and was inactive for 90.00:00:00.",
                crate::clock::iso(token.issued_at)
            ),
        ));
    }
    if token.used && world.settings.refresh_single_use {
        return Err(invalid(
            70000,
            "Provided grant is invalid or malformed: the refresh token was already used (the fake refuses rotated refresh tokens).",
        ));
    }
    let scopes = narrowed(world, &token.scopes, form)?;
    world
        .refresh_tokens
        .get_mut(value)
        .expect("looked up above")
        .used = true;
    let body = delegated(world, base, app, &token.user, &scopes);
    if let Some(refresh) = body.get("refresh_token").and_then(Value::as_str)
        && let Some(new) = world.refresh_tokens.get_mut(refresh)
    {
        new.scopes = token.scopes.clone();
    }
    Ok(body)
}
