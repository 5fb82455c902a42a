//! Sites.Selected for app-only tokens, and per-user visibility for delegated tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fake_graph::Access;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{Env, REDIRECT, SECRET, env};

#[tokio::test]
async fn sites_selected_reaches_only_granted_sites() {
    let env = env().await;
    let other = env
        .graph
        .add_site(&env.tenant, "contoso.sharepoint.com", "/sites/hr", "HR");
    let other_drive = env.graph.default_drive(&other);
    env.graph
        .put_file(&other_drive, "/salaries.xlsx", b"secret".to_vec());
    let token = env.app_token().await;
    let (status, body) = env.get(&token, &format!("/sites/{other}")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("accessDenied"))
    );
    assert_eq!(
        env.get(&token, "/sites/contoso.sharepoint.com:/sites/hr")
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        env.get(
            &token,
            &format!("/drives/{other_drive}/root:/salaries.xlsx:")
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        env.get(&token, &format!("/drives/{}/root", env.drive))
            .await
            .0,
        StatusCode::OK
    );
    // Read-only on a site: writes are refused.
    env.graph
        .grant_sites_selected(&env.app, &other, Access::Read);
    assert_eq!(
        env.get(
            &token,
            &format!("/drives/{other_drive}/root:/salaries.xlsx:")
        )
        .await
        .0,
        StatusCode::OK
    );
    let (status, body) = env
        .call(
            Method::POST,
            &token,
            &format!("/drives/{other_drive}/root/children"),
            Some(json!({"name": "x", "folder": {}})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("accessDenied"))
    );
    env.graph.revoke_site(&env.app, &other);
    assert_eq!(
        env.get(&token, &format!("/sites/{other}")).await.0,
        StatusCode::FORBIDDEN
    );
    // Sites.ReadWrite.All reaches everything.
    env.graph.grant_all_sites(&env.app, Access::Write);
    assert_eq!(
        env.get(&token, &format!("/sites/{other}/drives")).await.0,
        StatusCode::OK
    );
    // ... including users' OneDrives, by object id or UPN; /me needs a delegated token.
    let carol = env
        .graph
        .add_user(&env.tenant, "carol@contoso.onmicrosoft.com", "Carol");
    let carol_drive = env.graph.add_onedrive(&carol);
    let (status, drive) = env.get(&token, &format!("/users/{carol}/drive")).await;
    assert_eq!(
        (status, drive["id"].as_str()),
        (StatusCode::OK, Some(carol_drive.as_str()))
    );
    let by_upn = env
        .get(&token, "/users/carol@contoso.onmicrosoft.com/drive/root")
        .await;
    assert_eq!(by_upn.0, StatusCode::OK);
    assert_eq!(
        env.get(&token, "/me/drive").await.0,
        StatusCode::BAD_REQUEST
    );
    // Another tenant's site doesn't exist for this app.
    let fabrikam = env.graph.add_tenant("fabrikam.onmicrosoft.com");
    let foreign = env
        .graph
        .add_site(&fabrikam, "fabrikam.sharepoint.com", "/sites/x", "X");
    assert_eq!(
        env.get(&token, &format!("/sites/{foreign}")).await.0,
        StatusCode::NOT_FOUND
    );
}

/// A delegated token for `user` with `scopes`, through authorize and code redemption.
async fn user_token(env: &Env, user: &str, scopes: &str) -> String {
    env.graph.sign_in(user);
    let verifier = "v".repeat(50);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(&verifier));
    let params = [
        ("client_id", env.app.as_str()),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", scopes),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    let url = format!(
        "{}?{}",
        env.graph.authorize_url(&env.tenant),
        serde_urlencoded::to_string(params).unwrap()
    );
    let response = env.http.get(url).send().await.unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(location.split_once('?').unwrap().1).unwrap();
    let code = &query.iter().find(|(k, _)| k == "code").unwrap().1;
    let (status, body) = env
        .token_request(&[
            ("grant_type", "authorization_code"),
            ("client_id", &env.app),
            ("client_secret", SECRET),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

fn names(page: &Value) -> Vec<&str> {
    page["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn two_users_see_different_files_in_the_same_folder() {
    let env = env().await;
    let (g, d) = (&env.graph, &env.drive);
    let alice = g.add_user(&env.tenant, "alice@contoso.onmicrosoft.com", "Alice");
    let bob = g.add_user(&env.tenant, "bob@contoso.onmicrosoft.com", "Bob");
    let proj = g.put_folder(d, "/PROJ");
    g.put_file(d, "/PROJ/PROJ-1/design.pdf", b"design".to_vec());
    let secret = g.put_file(d, "/PROJ/PROJ-1/contract.pdf", b"contract".to_vec());
    let issue = g.item_id(d, "/PROJ/PROJ-1").unwrap();
    g.set_visibility(&alice, d, &proj, Some(Access::Write));
    g.set_visibility(&bob, d, &issue, Some(Access::Read));
    g.set_visibility(&bob, d, &secret, None);
    let scopes = "Files.ReadWrite.All Sites.ReadWrite.All offline_access";
    let alice_token = user_token(&env, &alice, scopes).await;
    let bob_token = user_token(&env, &bob, scopes).await;
    let listing = format!("/drives/{d}/root:/PROJ/PROJ-1:/children");
    let (_, page) = env.get(&alice_token, &listing).await;
    assert_eq!(names(&page), ["contract.pdf", "design.pdf"]);
    let (status, page) = env.get(&bob_token, &listing).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(names(&page), ["design.pdf"]);
    let (status, body) = env
        .get(&bob_token, &format!("/drives/{d}/items/{secret}"))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("itemNotFound"))
    );
    assert_eq!(
        env.get(&bob_token, &format!("/drives/{d}/items/{secret}/content"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // Bob can't see /PROJ itself, only his subtree, and can't write there.
    assert_eq!(
        env.get(&bob_token, &format!("/drives/{d}/items/{proj}"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = env
        .put_content(&bob_token, "/PROJ/PROJ-1/new.txt", b"x".to_vec())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = env
        .put_content(&alice_token, "/PROJ/PROJ-1/new.txt", b"x".to_vec())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // Each user's own OneDrive; someone else's is not found.
    let alice_drive = g.add_onedrive(&alice);
    g.put_file(&alice_drive, "/mine.txt", b"m".to_vec());
    assert_eq!(
        env.get(&alice_token, "/me/drive/root:/mine.txt:").await.0,
        StatusCode::OK
    );
    assert_eq!(
        env.get(
            &bob_token,
            &format!("/drives/{alice_drive}/root:/mine.txt:")
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        env.get(&bob_token, "/me/drive").await.0,
        StatusCode::NOT_FOUND
    );
    // A token without Files.*.All or Sites.*.All reaches only the user's own OneDrive.
    let narrow = user_token(&env, &alice, "Files.ReadWrite").await;
    assert_eq!(env.get(&narrow, "/me/drive/root").await.0, StatusCode::OK);
    assert_eq!(env.get(&narrow, &listing).await.0, StatusCode::NOT_FOUND);
    let reader = user_token(&env, &alice, "Files.Read.All").await;
    assert_eq!(env.get(&reader, &listing).await.0, StatusCode::OK);
    assert_eq!(
        env.put_content(&reader, "/PROJ/PROJ-1/other.txt", b"x".to_vec())
            .await
            .0,
        StatusCode::FORBIDDEN
    );
}
