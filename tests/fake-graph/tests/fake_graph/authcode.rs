//! Delegated sign-in: authorize with PKCE, code redemption, refresh rotation, revoked grants.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fake_graph::AuthorizeOutcome;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::{Env, REDIRECT, SECRET, env};

const VERIFIER: &str = "a-code-verifier-that-is-at-least-43-characters-long";
const SCOPES: &str =
    "offline_access openid https://graph.microsoft.com/Files.ReadWrite.All Sites.ReadWrite.All";

/// GET /authorize; answers the status and the redirect's query parameters.
async fn authorize(env: &Env, extra: &[(&str, &str)]) -> (StatusCode, HashMap<String, String>) {
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER));
    let mut params = vec![
        ("client_id", env.app.as_str()),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", SCOPES),
        ("state", "state-123"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    for (k, v) in extra {
        params.retain(|(key, _)| key != k);
        params.push((k, v));
    }
    let url = format!(
        "{}?{}",
        env.graph.authorize_url(&env.tenant),
        serde_urlencoded::to_string(&params).unwrap()
    );
    let response = env.http.get(url).send().await.unwrap();
    let status = response.status();
    let query = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .and_then(|l| {
            l.split_once('?')
                .map(|(base, q)| (base.to_owned(), q.to_owned()))
        })
        .map(|(base, q)| {
            assert_eq!(base, REDIRECT);
            serde_urlencoded::from_str(&q).unwrap()
        })
        .unwrap_or_default();
    (status, query)
}

async fn redeem(env: &Env, code: &str, verifier: &str, redirect: &str) -> (StatusCode, Value) {
    env.token_request(&[
        ("grant_type", "authorization_code"),
        ("client_id", &env.app),
        ("client_secret", SECRET),
        ("code", code),
        ("redirect_uri", redirect),
        ("code_verifier", verifier),
    ])
    .await
}

async fn refresh(env: &Env, token: &str) -> (StatusCode, Value) {
    env.token_request(&[
        ("grant_type", "refresh_token"),
        ("client_id", &env.app),
        ("client_secret", SECRET),
        ("refresh_token", token),
    ])
    .await
}

/// Alice, with a OneDrive, signed in.
fn alice(env: &Env) -> String {
    let alice = env
        .graph
        .add_user(&env.tenant, "alice@contoso.onmicrosoft.com", "Alice Smith");
    env.graph.add_onedrive(&alice);
    env.graph.sign_in(&alice);
    alice
}

#[tokio::test]
async fn code_with_pkce_gives_tokens_for_the_user() {
    let env = env().await;
    let alice = alice(&env);
    let (status, query) = authorize(&env, &[]).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(query["state"], "state-123");
    let (status, body) = redeem(&env, &query["code"], VERIFIER, REDIRECT).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["refresh_token"].is_string());
    let scope = body["scope"].as_str().unwrap();
    assert!(
        scope.contains("Files.ReadWrite.All") && scope.contains("offline_access"),
        "{scope}"
    );
    let id_token = body["id_token"].as_str().unwrap();
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(id_token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["oid"], alice);
    assert_eq!(
        claims["preferred_username"],
        "alice@contoso.onmicrosoft.com"
    );
    assert_eq!(claims["tid"], env.tenant);
    let token = body["access_token"].as_str().unwrap();
    let (status, drive) = env.get(token, "/me/drive").await;
    assert_eq!(status, StatusCode::OK, "{drive}");
    assert_eq!(drive["driveType"], "business");
    // The code is single-use.
    let (status, body) = redeem(&env, &query["code"], VERIFIER, REDIRECT).await;
    assert_eq!(
        (status, body["error_codes"][0].as_u64()),
        (StatusCode::BAD_REQUEST, Some(54005))
    );
}

#[tokio::test]
async fn pkce_redirect_and_expiry_are_checked_at_redemption() {
    let env = env().await;
    alice(&env);
    let (_, query) = authorize(&env, &[]).await;
    let (status, body) = redeem(
        &env,
        &query["code"],
        "the-wrong-verifier-the-wrong-verifier-xxxxxxx",
        REDIRECT,
    )
    .await;
    assert_eq!(
        (
            status,
            body["error"].as_str(),
            body["error_codes"][0].as_u64()
        ),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"), Some(501481))
    );
    let (status, body) = redeem(
        &env,
        &query["code"],
        VERIFIER,
        "http://localhost:8080/other",
    )
    .await;
    assert_eq!(
        (status, body["error_codes"][0].as_u64()),
        (StatusCode::BAD_REQUEST, Some(50011))
    );
    env.graph.advance_clock(601);
    let (status, body) = redeem(&env, &query["code"], VERIFIER, REDIRECT).await;
    assert_eq!(
        (status, body["error_codes"][0].as_u64()),
        (StatusCode::BAD_REQUEST, Some(70008))
    );
}

#[tokio::test]
async fn authorize_errors_redirect_or_show_a_page() {
    let env = env().await;
    // Nobody signed in.
    let (status, query) = authorize(&env, &[]).await;
    assert_eq!(
        (status, query["error"].as_str()),
        (StatusCode::FOUND, "login_required")
    );
    alice(&env);
    env.graph
        .script_authorize(AuthorizeOutcome::ConsentRequired);
    let (_, query) = authorize(&env, &[]).await;
    assert_eq!(query["error"], "consent_required");
    assert!(query["error_description"].starts_with("AADSTS65001:"));
    assert_eq!(query["state"], "state-123");
    env.graph.script_authorize(AuthorizeOutcome::AccessDenied);
    assert_eq!(authorize(&env, &[]).await.1["error"], "access_denied");
    let (_, query) = authorize(&env, &[("scope", "Files.Bogus")]).await;
    assert_eq!(query["error"], "invalid_scope");
    let (_, query) = authorize(&env, &[("code_challenge_method", "S512")]).await;
    assert_eq!(query["error"], "invalid_request");
    // An unregistered redirect URI is never redirected to.
    let (status, query) = authorize(&env, &[("redirect_uri", "https://evil.example/cb")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(query.is_empty());
    // Back to approving.
    assert!(authorize(&env, &[]).await.1.contains_key("code"));
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_used_one_is_refused() {
    let env = env().await;
    let alice = alice(&env);
    let (_, query) = authorize(&env, &[]).await;
    let first = redeem(&env, &query["code"], VERIFIER, REDIRECT).await.1["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = refresh(&env, &first).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    let (status, body) = refresh(&env, &first).await;
    assert_eq!(
        (
            status,
            body["error"].as_str(),
            body["error_codes"][0].as_u64()
        ),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"), Some(70000))
    );
    // Asking for a scope that was never granted.
    let (status, body) = env
        .token_request(&[
            ("grant_type", "refresh_token"),
            ("client_id", &env.app),
            ("client_secret", SECRET),
            ("refresh_token", &second),
            ("scope", "Files.Read User.Read Sites.Manage.All"),
        ])
        .await;
    assert_eq!(
        (status, body["error_codes"][0].as_u64()),
        (StatusCode::BAD_REQUEST, Some(65001))
    );
    let (status, body) = refresh(&env, &second).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let third = body["refresh_token"].as_str().unwrap().to_owned();
    // Entra ID's documented behaviour, when the fake is told to allow reuse.
    env.graph.set_refresh_single_use(false);
    assert_eq!(refresh(&env, &second).await.0, StatusCode::OK);
    env.graph.expire_refresh_tokens(&alice);
    assert_eq!(refresh(&env, &third).await.1["error_codes"][0], 700082);
    let (_, query) = authorize(&env, &[]).await;
    let fourth = redeem(&env, &query["code"], VERIFIER, REDIRECT).await.1["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    env.graph.revoke_grant(&alice);
    let (status, body) = refresh(&env, &fourth).await;
    assert_eq!(
        (status, body["error_codes"][0].as_u64()),
        (StatusCode::BAD_REQUEST, Some(50173))
    );
    assert_eq!(refresh(&env, "garbage").await.1["error_codes"][0], 9002313);
    assert_eq!(env.graph.token_requests_for("authorization_code"), 2);
    assert_eq!(env.graph.token_requests_for("refresh_token"), 8);
}
