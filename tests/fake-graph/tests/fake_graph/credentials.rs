//! Client credentials: secrets, certificate assertions, scopes, and the bearer check on Graph.

use fake_graph::JWT_BEARER;
use fake_graph::fixtures::{APP_CERT_PEM, APP_KEY_PEM, OTHER_CERT_PEM, OTHER_KEY_PEM};
use jsonwebtoken::Algorithm;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Env, SECRET, env};

const SCOPE: &str = "https://graph.microsoft.com/.default";

async fn with_assertion(env: &Env, assertion: &str) -> (StatusCode, Value) {
    env.token_request(&[
        ("grant_type", "client_credentials"),
        ("client_id", &env.app),
        ("scope", SCOPE),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
    ])
    .await
}

fn assert_sts(status: StatusCode, body: &Value, expected_status: u16, error: &str, code: u64) {
    assert_eq!(status.as_u16(), expected_status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{description}"
    );
    assert!(description.contains("\r\nTrace ID: ") && description.contains("\r\nCorrelation ID: "));
    for field in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(body[field].is_string(), "{field} missing: {body}");
    }
}

#[tokio::test]
async fn client_secret_gives_an_app_only_token_that_graph_accepts() {
    let env = env().await;
    let (status, body) = env
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", &env.app),
            ("client_secret", SECRET),
            ("scope", SCOPE),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert!(
        body.get("refresh_token").is_none(),
        "client credentials never give a refresh token"
    );
    let token = body["access_token"].as_str().unwrap();
    let (status, site) = env.get(token, &format!("/sites/{}", env.site)).await;
    assert_eq!(status, StatusCode::OK, "{site}");
    assert_eq!(env.graph.token_requests(), 1);
    assert_eq!(env.graph.tokens_issued(), 1);
}

#[tokio::test]
async fn secret_and_request_errors_are_answered_as_entra_id_does() {
    let env = env().await;
    let app = env.app.clone();
    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str, u64);
    let cases: Vec<Case> = vec![
        (
            vec![("client_secret", "wrong")],
            401,
            "invalid_client",
            7000215,
        ),
        (vec![], 401, "invalid_client", 7000218),
        (
            vec![("client_secret", SECRET), ("scope", "Files.ReadWrite.All")],
            400,
            "invalid_scope",
            70011,
        ),
    ];
    for (extra, status_code, error, code) in cases {
        let mut params = vec![
            ("grant_type", "client_credentials"),
            ("client_id", app.as_str()),
        ];
        if !extra.iter().any(|(k, _)| *k == "scope") {
            params.push(("scope", SCOPE));
        }
        params.extend(extra);
        let (status, body) = env.token_request(&params).await;
        assert_sts(status, &body, status_code, error, code);
    }
    let unknown_app = [
        ("grant_type", "client_credentials"),
        ("client_id", "00000000-0000-0000-0000-000000000000"),
        ("client_secret", SECRET),
        ("scope", SCOPE),
    ];
    let (status, body) = env.token_request(&unknown_app).await;
    assert_sts(status, &body, 400, "unauthorized_client", 700016);
    let (status, body) = env
        .token_request(&[
            ("grant_type", "password"),
            ("client_id", &app),
            ("client_secret", SECRET),
        ])
        .await;
    assert_sts(status, &body, 400, "unsupported_grant_type", 70003);
    let wrong_tenant = env
        .http
        .post(env.graph.token_url("fabrikam.onmicrosoft.com"))
        .body("grant_type=client_credentials")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    let status = wrong_tenant.status();
    assert_sts(
        status,
        &wrong_tenant.json().await.unwrap(),
        400,
        "invalid_request",
        90002,
    );
    assert_eq!(env.graph.token_requests(), 6);
    assert_eq!(env.graph.tokens_issued(), 0);
}

#[tokio::test]
async fn certificate_assertions_rs256_and_ps256_are_accepted() {
    let env = env().await;
    for alg in [Algorithm::RS256, Algorithm::PS256] {
        let assertion = env.assertion(alg, APP_KEY_PEM, APP_CERT_PEM, |_| {});
        let (status, body) = with_assertion(&env, &assertion).await;
        assert_eq!(status, StatusCode::OK, "{alg:?}: {body}");
        // The tenant may be named by its domain too, with the audience to match.
        let by_domain = env.assertion(alg, APP_KEY_PEM, APP_CERT_PEM, |c| {
            c["aud"] = json!(env.graph.token_url("contoso.onmicrosoft.com"));
        });
        let body = serde_urlencoded::to_string([
            ("grant_type", "client_credentials"),
            ("client_id", env.app.as_str()),
            ("scope", SCOPE),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", by_domain.as_str()),
        ])
        .unwrap();
        let response = env
            .http
            .post(env.graph.token_url("contoso.onmicrosoft.com"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn assertions_with_a_wrong_key_or_claims_are_refused() {
    let env = env().await;
    // Signed with another key but naming the registered certificate.
    let forged = env.assertion(Algorithm::RS256, OTHER_KEY_PEM, APP_CERT_PEM, |_| {});
    let (status, body) = with_assertion(&env, &forged).await;
    assert_sts(status, &body, 401, "invalid_client", 700027);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("signature value did not match")
    );
    // A certificate that was never registered.
    let unknown = env.assertion(Algorithm::PS256, OTHER_KEY_PEM, OTHER_CERT_PEM, |_| {});
    let (status, body) = with_assertion(&env, &unknown).await;
    assert_sts(status, &body, 401, "invalid_client", 700027);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("The key was not found")
    );

    type Change = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Change, u64)> = vec![
        (
            Box::new(|c| c["aud"] = json!("https://login.microsoftonline.com/x/oauth2/v2.0/token")),
            50027,
        ),
        (Box::new(|c| c["sub"] = json!("someone-else")), 50048),
        (
            Box::new(|c| {
                c["iss"] = json!("another-app");
                c["sub"] = json!("another-app");
            }),
            700021,
        ),
        (
            Box::new(|c| {
                c["exp"] = json!(1_000_000);
                c["nbf"] = json!(999_000);
            }),
            700024,
        ),
        (
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
            50027,
        ),
    ];
    for (change, code) in cases {
        let assertion = env.assertion(Algorithm::RS256, APP_KEY_PEM, APP_CERT_PEM, change);
        let (status, body) = with_assertion(&env, &assertion).await;
        assert_sts(status, &body, 401, "invalid_client", code);
    }
    // A jti is good once.
    let once = env.assertion(Algorithm::RS256, APP_KEY_PEM, APP_CERT_PEM, |c| {
        c["jti"] = json!("fixed-jti")
    });
    assert_eq!(with_assertion(&env, &once).await.0, StatusCode::OK);
    let (status, body) = with_assertion(&env, &once).await;
    assert_sts(status, &body, 401, "invalid_client", 50013);
    // The fake's clock moves past the assertion's expiry.
    let later = env.assertion(Algorithm::RS256, APP_KEY_PEM, APP_CERT_PEM, |_| {});
    env.graph.advance_clock(3600);
    let (status, body) = with_assertion(&env, &later).await;
    assert_sts(status, &body, 401, "invalid_client", 700024);
    // A wrong assertion type is a malformed request.
    let (status, body) = env
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", &env.app),
            ("scope", SCOPE),
            ("client_assertion_type", "jwt"),
            ("client_assertion", &later),
        ])
        .await;
    assert_sts(status, &body, 400, "invalid_request", 9002313);
}

#[tokio::test]
async fn graph_refuses_missing_unknown_and_expired_tokens() {
    let env = env().await;
    let path = format!("/drives/{}/root", env.drive);
    let response = env
        .http
        .get(format!("{}/v1.0{path}", env.graph.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response
            .headers()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Bearer ")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert_eq!(body["error"]["message"], "Access token is empty.");
    assert!(body["error"]["innerError"]["request-id"].is_string());
    let (status, body) = env.get("not-a-token", &path).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("InvalidAuthenticationToken"))
    );

    env.graph.set_access_token_lifetime(120);
    let token = env.app_token().await;
    assert_eq!(env.get(&token, &path).await.0, StatusCode::OK);
    env.graph.advance_clock(121);
    let (status, body) = env.get(&token, &path).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["error"]["message"],
        "Lifetime validation failed, the token is expired."
    );
    let fresh = env.app_token().await;
    assert_eq!(env.get(&fresh, &path).await.0, StatusCode::OK);
    env.graph.expire_access_tokens();
    assert_eq!(env.get(&fresh, &path).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn concurrent_token_requests_are_all_counted() {
    let env = env().await;
    let (a, b, c) = tokio::join!(env.app_token(), env.app_token(), env.app_token());
    assert!(a != b && b != c);
    assert_eq!(env.graph.token_requests(), 3);
    assert_eq!(env.graph.token_requests_for("client_credentials"), 3);
    assert_eq!(env.graph.token_requests_for("refresh_token"), 0);
}
