use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use filebridge::auth::derive_key;
use filebridge::config::MasterKey;
use serde_json::{Value, json};

use crate::helpers::{TestApp, cookie_value, session_cookie, spawn_app, spawn_app_with};

const MYSELF: &str = "/rest/api/2/myself";
const AUDIENCE: &str = "https://jira.example.test/filebridge";
const PUBLIC_ORIGIN: &str = "https://jira.example.test";

fn alice(app: &TestApp) -> String {
    let key = app.jira.add_user("alice", "Alice Example");
    app.jira.add_token("alice", "alice-pat");
    key
}

async fn me_with_cookie(app: &TestApp, cookie: &str) -> reqwest::Response {
    app.client
        .get(app.url("/api/v1/me"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

async fn problem(response: reqwest::Response) -> Value {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    response.json().await.unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn mint(app: &TestApp, claims: &Value) -> String {
    let secret = derive_key(
        &MasterKey::from_bytes(app.master_key()),
        b"filebridge/session-jwt/v1",
    );
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap()
}

fn claims(key: &str, aud: &str, exp: u64) -> Value {
    json!({"iss": "filebridge", "aud": aud, "sub": key, "name": "alice",
           "dn": "Alice Example", "adm": true, "iat": now(), "exp": exp})
}

#[tokio::test]
async fn a_personal_access_token_identifies_the_user_and_starts_a_session() {
    let app = spawn_app().await;
    let key = alice(&app);
    let response = app.me_with_token("alice-pat").await;
    assert_eq!(response.status(), 200);
    let cookie = session_cookie(&response).expect("session cookie issued");
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/filebridge"] {
        assert!(
            cookie.contains(attribute),
            "{attribute} missing in {cookie}"
        );
    }
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"key": key, "name": "alice", "display_name": "Alice Example", "is_admin": false})
    );
    // Jira saw the token as a bearer credential.
    let headers = app.jira.last_headers(MYSELF).unwrap();
    assert!(headers.contains(&("authorization".into(), "Bearer alice-pat".into())));

    // The session alone authenticates, without asking Jira again.
    let calls = app.jira.calls(MYSELF);
    let again = me_with_cookie(
        &app,
        &format!("filebridge_session={}", cookie_value(&cookie)),
    )
    .await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["key"], key);
    assert_eq!(app.jira.calls(MYSELF), calls);
}

#[tokio::test]
async fn jira_session_cookies_are_forwarded_and_nothing_else() {
    let app = spawn_app().await;
    let key = app.jira.add_user("bob", "Bob");
    app.jira.add_session("bob", "bob-jsession");
    let response = me_with_cookie(&app, "JSESSIONID=bob-jsession; tracking=abc; other=1").await;
    assert_eq!(response.status(), 200);
    assert!(session_cookie(&response).is_some());
    assert_eq!(response.json::<Value>().await.unwrap()["key"], key);
    let headers = app.jira.last_headers(MYSELF).unwrap();
    let cookie = &headers.iter().find(|(n, _)| n == "cookie").unwrap().1;
    assert_eq!(cookie, "JSESSIONID=bob-jsession");

    let remembered = app.jira.add_user("carol", "Carol");
    app.jira.add_remember_me("carol", "carol-remember");
    let response = me_with_cookie(&app, "seraph.rememberme.cookie=carol-remember").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["key"], remembered);
}

#[tokio::test]
async fn jira_answers_are_cached_and_concurrent_first_requests_share_one_call() {
    let app = spawn_app().await;
    alice(&app);
    let hold = app.jira.hold();
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let client = app.client.clone();
            let url = app.url("/api/v1/me");
            tokio::spawn(async move { client.get(url).bearer_auth("alice-pat").send().await })
        })
        .collect();
    // One verification is myself + mypermissions: two held requests.
    app.jira.wait_for_waiting(2).await;
    // Without coalescing, the other requests would reach Jira too; give them the chance.
    let more = tokio::time::timeout(Duration::from_millis(500), app.jira.wait_for_waiting(3)).await;
    assert!(more.is_err(), "a second verification reached Jira");
    hold.release();
    for request in requests {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(app.jira.calls(MYSELF), 1);
    // A later request within the cache lifetime does not ask Jira either.
    assert_eq!(app.me_with_token("alice-pat").await.status(), 200);
    assert_eq!(app.jira.calls(MYSELF), 1);
}

#[tokio::test]
async fn admins_are_jira_administrators_or_members_of_a_configured_group() {
    let app = spawn_app_with(|c| {
        c.set("SECURITY__ADMIN_GROUPS", "filebridge-admins,other-group");
    })
    .await;
    app.jira.add_user("root", "Root");
    app.jira.add_token("root", "root-pat");
    app.jira.grant_global("root", "ADMINISTER");
    app.jira.add_user("ops", "Ops");
    app.jira.add_token("ops", "ops-pat");
    app.jira.add_to_group("ops", "filebridge-admins");
    alice(&app);
    for (token, admin) in [("root-pat", true), ("ops-pat", true), ("alice-pat", false)] {
        let body: Value = app.me_with_token(token).await.json().await.unwrap();
        assert_eq!(body["is_admin"], admin, "{token}");
    }
}

#[tokio::test]
async fn missing_or_rejected_credentials_are_401_without_a_redirect() {
    let app = spawn_app().await;
    let response = app.get("/api/v1/me").await;
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    assert_eq!(problem(response).await["code"], "unauthenticated");

    let response = app.me_with_token("no-such-token").await;
    assert_eq!(response.status(), 401);
    assert!(session_cookie(&response).is_none());
    assert_eq!(problem(response).await["code"], "jira_rejected_credentials");

    alice(&app);
    app.jira.revoke_credential("alice-pat");
    assert_eq!(app.me_with_token("alice-pat").await.status(), 401);

    let response = app
        .client
        .get(app.url("/api/v1/me"))
        .header("authorization", "Basic YWxpY2U6cHc=")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(problem(response).await["code"], "malformed_credentials");
}

#[tokio::test]
async fn jira_down_gives_503_with_retry_after_and_recovers() {
    let app = spawn_app().await;
    alice(&app);
    app.jira.set_unavailable(true);
    let response = app.me_with_token("alice-pat").await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body = problem(response).await;
    assert_eq!(body["code"], "jira_unavailable");
    // A failure is not cached.
    app.jira.set_unavailable(false);
    assert_eq!(app.me_with_token("alice-pat").await.status(), 200);

    // Jira gone entirely (connection refused).
    let other = spawn_app().await;
    alice(&other);
    other.jira.stop().await;
    let response = other.me_with_token("alice-pat").await;
    assert_eq!(response.status(), 503);
    assert_eq!(problem(response).await["code"], "jira_unavailable");
}

#[tokio::test]
async fn a_slow_jira_gives_503_after_the_timeout() {
    let app = spawn_app_with(|c| {
        c.set("JIRA__TIMEOUT", "1s");
    })
    .await;
    alice(&app);
    let _hold = app.jira.hold();
    let response = app.me_with_token("alice-pat").await;
    assert_eq!(response.status(), 503);
    assert_eq!(problem(response).await["code"], "jira_unavailable");
}

#[tokio::test]
async fn bad_session_tokens_are_401() {
    let app = spawn_app().await;
    let key = alice(&app);
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let good_claims = claims(&key, AUDIENCE, now() + 600);
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good_claims)
    );
    let wrong_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &good_claims,
        &jsonwebtoken::EncodingKey::from_secret(b"not the derived key at all......"),
    )
    .unwrap();
    let cases = [
        ("malformed", "not-a-jwt".to_string()),
        ("expired", mint(&app, &claims(&key, AUDIENCE, now() - 3600))),
        ("wrong signature", wrong_key),
        ("alg none", alg_none),
        (
            "another base path",
            mint(
                &app,
                &claims(&key, "https://jira.example.test/other", now() + 600),
            ),
        ),
    ];
    // The properly minted token is accepted: the failures above are about what they claim.
    let valid = me_with_cookie(
        &app,
        &format!("filebridge_session={}", mint(&app, &good_claims)),
    )
    .await;
    assert_eq!(valid.status(), 200);
    for (what, token) in cases {
        let response = me_with_cookie(&app, &format!("filebridge_session={token}")).await;
        assert_eq!(response.status(), 401, "{what}");
        assert_eq!(problem(response).await["code"], "session_invalid", "{what}");
    }
    assert_eq!(app.jira.calls(MYSELF), 0, "session checks never call Jira");
}

#[tokio::test]
async fn an_invalid_session_falls_back_to_valid_jira_cookies() {
    let app = spawn_app().await;
    app.jira.add_user("bob", "Bob");
    app.jira.add_session("bob", "bob-jsession");
    let response =
        me_with_cookie(&app, "filebridge_session=garbage; JSESSIONID=bob-jsession").await;
    assert_eq!(response.status(), 200);
    assert!(
        session_cookie(&response).is_some(),
        "a fresh session replaces the bad one"
    );
}

#[tokio::test]
async fn oversized_credentials_are_refused_cleanly() {
    let app = spawn_app().await;
    let response = app.me_with_token(&"x".repeat(9000)).await;
    assert_eq!(response.status(), 401);
    assert_eq!(problem(response).await["code"], "credentials_too_large");
    let response = me_with_cookie(&app, &format!("JSESSIONID={}", "y".repeat(9000))).await;
    assert_eq!(response.status(), 401);
    assert_eq!(app.jira.calls(MYSELF), 0);
    // Large cookies filebridge does not use (Jira's own, analytics) do not count.
    app.jira.add_user("bob", "Bob");
    app.jira.add_session("bob", "bob-jsession");
    let big_unrelated = format!(
        "JSESSIONID=bob-jsession; jira.editor.state={}",
        "q".repeat(9000)
    );
    assert_eq!(me_with_cookie(&app, &big_unrelated).await.status(), 200);
    // Beyond what the HTTP parser accepts at all: refused by the server, not a 500 or a hang.
    let response = app
        .client
        .get(app.url("/api/v1/me"))
        .header("x-huge", "z".repeat(128 * 1024))
        .send()
        .await;
    match response {
        Ok(r) => assert!(r.status().is_client_error(), "{}", r.status()),
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn cookie_authenticated_unsafe_requests_need_the_same_origin() {
    let app = spawn_app().await;
    alice(&app);
    let login = app.me_with_token("alice-pat").await;
    let cookie = format!(
        "filebridge_session={}",
        cookie_value(&session_cookie(&login).unwrap())
    );
    let delete = |origin: Option<&str>, requested_with: bool| {
        let mut request = app
            .client
            .delete(app.url("/api/v1/session"))
            .header("cookie", cookie.clone());
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if requested_with {
            request = request.header("x-requested-with", "XMLHttpRequest");
        }
        request.send()
    };
    let response = delete(None, false).await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(problem(response).await["code"], "cross_site_request");
    let response = delete(Some("https://evil.example"), true).await.unwrap();
    assert_eq!(response.status(), 403);

    for (origin, requested_with) in [(Some(PUBLIC_ORIGIN), false), (None, true)] {
        let response = delete(origin, requested_with).await.unwrap();
        assert_eq!(response.status(), 204);
        let removal = session_cookie(&response).expect("removal cookie");
        assert!(removal.contains("Max-Age=0"), "{removal}");
    }
    // A bearer token is not sent by browsers on their own: no origin check.
    let response = app
        .client
        .delete(app.url("/api/v1/session"))
        .bearer_auth("alice-pat")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

#[tokio::test]
async fn admin_endpoints_need_an_admin_and_report_egress() {
    let app = spawn_app().await;
    alice(&app);
    app.jira.add_user("root", "Root");
    app.jira.add_token("root", "root-pat");
    app.jira.grant_global("root", "SYSTEM_ADMIN");

    let response = app.get_as("/api/v1/admin/egress", "alice-pat").await;
    assert_eq!(response.status(), 403);
    assert_eq!(problem(response).await["code"], "admin_required");

    let response = app.get_as("/api/v1/admin/egress", "root-pat").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let jira_host = format!("127.0.0.1:{}", app.jira.addr().port());
    let hosts = body["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1, "only Jira was contacted: {body}");
    assert_eq!(hosts[0]["host"], jira_host.as_str());
    // Alice's and root's verification: myself + mypermissions each.
    assert_eq!(hosts[0]["contacted"], 4);
    assert_eq!(hosts[0]["refused"], 0);
}

#[tokio::test]
async fn a_session_started_from_jira_cookies_does_not_survive_a_different_jira_login() {
    let app = spawn_app().await;
    let alice_key = app.jira.add_user("alice", "Alice");
    app.jira.add_session("alice", "alice-jsession");
    let bob_key = app.jira.add_user("bob", "Bob");
    app.jira.add_session("bob", "bob-jsession");

    let login = me_with_cookie(&app, "JSESSIONID=alice-jsession").await;
    let session = cookie_value(&session_cookie(&login).unwrap());
    let calls = app.jira.calls(MYSELF);

    // Beside the Jira cookies it was started with, the session stands on its own.
    let same = me_with_cookie(
        &app,
        &format!("filebridge_session={session}; JSESSIONID=alice-jsession"),
    )
    .await;
    assert_eq!(
        same.json::<Value>().await.unwrap()["key"],
        alice_key.as_str()
    );
    assert_eq!(app.jira.calls(MYSELF), calls);

    // Bob signed in to Jira in the same browser: he is Bob, not Alice.
    let switched = me_with_cookie(
        &app,
        &format!("filebridge_session={session}; JSESSIONID=bob-jsession"),
    )
    .await;
    assert_eq!(switched.status(), 200);
    assert!(
        session_cookie(&switched).is_some(),
        "Bob gets his own session"
    );
    assert_eq!(
        switched.json::<Value>().await.unwrap()["key"],
        bob_key.as_str()
    );

    // Alice signed out of Jira, which gives the browser a new, anonymous JSESSIONID: her
    // filebridge session is not enough on its own.
    app.jira.revoke_credential("alice-jsession");
    let signed_out = me_with_cookie(
        &app,
        &format!("filebridge_session={session}; JSESSIONID=anonymous-after-logout"),
    )
    .await;
    assert_eq!(signed_out.status(), 401);
}

#[tokio::test]
async fn signing_out_hands_out_no_new_session() {
    let app = spawn_app().await;
    alice(&app);
    let response = app
        .client
        .delete(app.url("/api/v1/session"))
        .bearer_auth("alice-pat")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let cookies: Vec<_> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert!(
        cookies[0].starts_with("filebridge_session=;") && cookies[0].contains("Max-Age=0"),
        "{cookies:?}"
    );
}
