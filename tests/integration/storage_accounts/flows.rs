//! Consent, state binding, refresh rotation, revoked grants, disconnect and revoke, per-user
//! rights, encryption at rest, and app-only connections left as they were.

use fake_graph::Access;
use filebridge::config::MasterKey;
use filebridge::secrets::{Sealed, SecretCipher};
use futures_util::future::join_all;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::{account_required, create_connection, world};

#[tokio::test]
async fn users_connect_their_account_then_work_as_themselves() {
    let world = world().await;
    // Jira says yes, but alice has no Microsoft account connected yet.
    account_required(&world, world.list("alice-pat").await).await;
    let before = world.accounts("alice-pat").await;
    assert_eq!(before["items"][0]["connected"], false, "{before}");
    assert_eq!(before["items"][0]["connect_url"], world.connect_url());

    world.connect("alice-pat", &world.ms_alice).await;
    let after = world.accounts("alice-pat").await;
    let item = &after["items"][0];
    assert_eq!(item["connected"], true, "{after}");
    assert_eq!(item["account"], "alice@contoso.onmicrosoft.com");
    assert!(item["connected_at"].is_string());
    // Bob is another user: still not connected.
    assert_eq!(
        world.accounts("bob-pat").await["items"][0]["connected"],
        false
    );

    world.upload("alice-pat", "report.txt", b"hello").await;
    assert_eq!(world.names("alice-pat").await, ["report.txt"]);
    assert_eq!(
        world
            .graph
            .file_bytes(&world.drive, "/Jira/PROJ/PROJ-1/report.txt")
            .as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(world.actions().await, ["storage_account.connect"]);
}

#[tokio::test]
async fn the_state_works_once_in_the_browser_and_for_the_user_it_was_made_for() {
    let world = world().await;
    // Without the browser's state cookie (someone else's browser, or a forged link).
    let sign_in = world.sign_in("alice-pat", &world.ms_alice).await;
    let refused = world
        .callback(&sign_in.callback, None, Some("alice-pat"))
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    // A tampered state (in the link and the cookie alike) names no sign-in.
    let sign_in = world.sign_in("alice-pat", &world.ms_alice).await;
    let tampered = format!("{}x", sign_in.state);
    let callback = sign_in.callback.replace(&sign_in.state, &tampered);
    let cookie = format!("filebridge_oauth_state={tampered}");
    let refused = world
        .callback(&callback, Some(&cookie), Some("alice-pat"))
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    // Alice's state (and even her cookie) brought back by bob.
    let sign_in = world.sign_in("alice-pat", &world.ms_alice).await;
    let refused = world
        .callback(&sign_in.callback, Some(&sign_in.cookie), Some("bob-pat"))
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    // ... which used it up: alice herself cannot finish it afterwards.
    let used = world
        .callback(&sign_in.callback, Some(&sign_in.cookie), Some("alice-pat"))
        .await;
    assert_eq!(used.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        world.accounts("alice-pat").await["items"][0]["connected"],
        false
    );
    assert_eq!(
        world.accounts("bob-pat").await["items"][0]["connected"],
        false
    );

    // The browser that started it, with no credentials (the strict session cookie stays
    // behind on a redirect from another site): the cookie binds it.
    let sign_in = world.sign_in("alice-pat", &world.ms_alice).await;
    let ok = world
        .callback(&sign_in.callback, Some(&sign_in.cookie), None)
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let replay = world
        .callback(&sign_in.callback, Some(&sign_in.cookie), None)
        .await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        world.accounts("alice-pat").await["items"][0]["connected"],
        true
    );
    assert_eq!(
        world.accounts("bob-pat").await["items"][0]["connected"],
        false
    );
}

#[tokio::test]
async fn rotated_refresh_tokens_are_saved_and_refreshes_are_serialised() {
    let world = world().await;
    world.connect("alice-pat", &world.ms_alice).await;
    world.upload("alice-pat", "a.txt", b"a").await;
    assert_eq!(world.graph.token_requests_for("refresh_token"), 1);
    let stored = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, Vec<u8>>("SELECT ciphertext FROM storage_accounts")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let first = stored(world.pool().await).await;

    // Every access token dies: eight concurrent requests get 401 from Graph, and one refresh
    // serves them all. The fake refuses a used refresh token, so it succeeding proves the
    // rotated one was saved.
    world.graph.expire_access_tokens();
    let lists = join_all((0..8).map(|_| world.list("alice-pat"))).await;
    for response in lists {
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(world.graph.token_requests_for("refresh_token"), 2);
    let second = stored(world.pool().await).await;
    assert_ne!(
        first, second,
        "the rotated refresh token replaced the old one"
    );

    // Once more, past the clock: still one refresh per expiry.
    world.graph.advance_clock(7200);
    assert_eq!(world.names("alice-pat").await, ["a.txt"]);
    assert_eq!(world.graph.token_requests_for("refresh_token"), 3);
}

#[tokio::test]
async fn a_revoked_grant_asks_the_user_to_connect_again() {
    let world = world().await;
    world.connect("alice-pat", &world.ms_alice).await;
    assert!(world.names("alice-pat").await.is_empty());
    world.graph.revoke_grant(&world.ms_alice);
    world.graph.expire_access_tokens();
    account_required(&world, world.list("alice-pat").await).await;
    // The dead grant is gone, and every request says the same until alice reconnects.
    assert_eq!(
        world.accounts("alice-pat").await["items"][0]["connected"],
        false
    );
    account_required(&world, world.list("alice-pat").await).await;
    assert_eq!(
        world.actions().await,
        ["storage_account.connect", "storage_account.expire"]
    );
    world.connect("alice-pat", &world.ms_alice).await;
    assert!(world.names("alice-pat").await.is_empty());
}

#[tokio::test]
async fn users_disconnect_and_admins_revoke() {
    let world = world().await;
    let path = format!("/api/v1/storage-accounts/{}", world.id);
    world.connect("alice-pat", &world.ms_alice).await;
    assert!(world.names("alice-pat").await.is_empty());
    let delete = |url: String, pat: &'static str| {
        let request = world
            .app
            .client
            .delete(world.app.url(&url))
            .bearer_auth(pat);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(
        delete(path.clone(), "alice-pat").await,
        StatusCode::NO_CONTENT
    );
    account_required(&world, world.list("alice-pat").await).await;
    assert_eq!(
        delete(path.clone(), "alice-pat").await,
        StatusCode::NOT_FOUND
    );

    world.connect("alice-pat", &world.ms_alice).await;
    assert!(world.names("alice-pat").await.is_empty());
    let me: Value = world
        .app
        .me_with_token("alice-pat")
        .await
        .json()
        .await
        .unwrap();
    let key = me["key"].as_str().unwrap();
    let admin = format!("/api/v1/admin/storage-accounts/{}/{key}", world.id);
    assert_eq!(
        delete(admin.clone(), "bob-pat").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        delete(admin.clone(), "root-pat").await,
        StatusCode::NO_CONTENT
    );
    account_required(&world, world.list("alice-pat").await).await;
    assert_eq!(
        world.actions().await,
        [
            "storage_account.connect",
            "storage_account.disconnect",
            "storage_account.connect",
            "storage_account.revoke"
        ]
    );
}

#[tokio::test]
async fn two_users_see_what_sharepoint_lets_each_see() {
    let world = world().await;
    world.connect("alice-pat", &world.ms_alice).await;
    world.connect("bob-pat", &world.ms_bob).await;
    world.upload("alice-pat", "plan.txt", b"plan").await;
    world.upload("alice-pat", "salaries.txt", b"secret").await;
    let hidden = world
        .graph
        .item_id(&world.drive, "/Jira/PROJ/PROJ-1/salaries.txt")
        .unwrap();
    world
        .graph
        .set_visibility(&world.ms_bob, &world.drive, &hidden, None);
    assert_eq!(world.names("alice-pat").await, ["plan.txt", "salaries.txt"]);
    // Same issue, same Jira permissions: SharePoint hides the file from bob.
    assert_eq!(world.names("bob-pat").await, ["plan.txt"]);
    let download = world
        .app
        .client
        .get(world.app.url("/api/v1/issues/PROJ-1/files/content"))
        .query(&[("path", "salaries.txt")])
        .bearer_auth("bob-pat")
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::NOT_FOUND);
    // Read-only for bob in SharePoint: his upload is refused by SharePoint.
    let root = world.graph.root_id(&world.drive);
    world
        .graph
        .set_visibility(&world.ms_bob, &world.drive, &root, Some(Access::Read));
    let upload = world
        .app
        .client
        .put(world.app.url("/api/v1/issues/PROJ-1/files/content"))
        .query(&[("path", "bob.txt")])
        .bearer_auth("bob-pat")
        .body(&b"x"[..])
        .send()
        .await
        .unwrap();
    assert!(upload.status().is_client_error() || upload.status().is_server_error());
    assert!(
        world
            .graph
            .item_id(&world.drive, "/Jira/PROJ/PROJ-1/bob.txt")
            .is_none()
    );
}

#[tokio::test]
async fn refresh_tokens_are_only_ciphertext_in_postgres() {
    let world = world().await;
    world.connect("alice-pat", &world.ms_alice).await;
    let pool = world.pool().await;
    let (connection, user, key_id, nonce, ciphertext): (
        uuid::Uuid,
        String,
        String,
        Vec<u8>,
        Vec<u8>,
    ) = sqlx::query_as(
        "SELECT connection_id, user_key, key_id, nonce, ciphertext FROM storage_accounts",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let cipher = SecretCipher::new(&MasterKey::from_bytes(world.app.master_key()));
    let sealed = Sealed {
        key_id,
        nonce,
        ciphertext: ciphertext.clone(),
    };
    let token = cipher
        .open(&sealed, &format!("storage_account:{connection}:{user}"))
        .expect("opens under its own row's binding");
    let token = token.expose_secret().to_string();
    assert!(token.len() > 16);
    // Bound to its row: under another user's binding it does not open.
    assert!(
        cipher
            .open(&sealed, &format!("storage_account:{connection}:bob"))
            .is_err()
    );
    // Nowhere in the database as plaintext (every row of every table, as text).
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
            .fetch_all(&pool)
            .await
            .unwrap();
    for table in tables {
        let dump: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT string_agg(t::text, '\n') FROM {table} t"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(
            !dump.unwrap_or_default().contains(&token),
            "plaintext in {table}"
        );
    }
    assert!(
        !ciphertext
            .windows(token.len())
            .any(|w| w == token.as_bytes())
    );
}

#[tokio::test]
async fn app_only_connections_are_unaffected() {
    let world = world().await;
    world
        .graph
        .grant_sites_selected(&world.client, &world.site, Access::Write);
    world
        .graph
        .put_file(&world.drive, "/Jira/PROJ/PROJ-1/shared.txt", "x");
    let id = create_connection(
        &world.app,
        "sp-app",
        json!({
            "tenant": "contoso.onmicrosoft.com",
            "client_id": world.client,
            "site": "https://contoso.sharepoint.com/sites/legal",
            "root": "Jira",
            "graph_url": world.graph.base_url,
            "login_url": world.graph.base_url,
            "graph_resource": "https://graph.microsoft.com",
        }),
    )
    .await;
    // PROJ moves to an app-mode connection on the same library (no file was written yet, so
    // PROJ-1 has no recorded folder and follows the mapping).
    let mapping = world
        .app
        .client
        .put(world.app.url("/api/v1/admin/projects/PROJ/mapping"))
        .bearer_auth("root-pat")
        .json(&json!({"connection_id": id, "root": "PROJ"}))
        .send()
        .await
        .unwrap();
    assert_eq!(mapping.status(), 200);
    // No account needed: the app's own token, as before.
    assert_eq!(world.names("alice-pat").await, ["shared.txt"]);
    assert_eq!(world.graph.token_requests_for("client_credentials"), 1);
    assert_eq!(world.graph.token_requests_for("refresh_token"), 0);
    // Listed nowhere, nothing to connect.
    let accounts = world.accounts("alice-pat").await;
    assert_eq!(accounts["items"].as_array().unwrap().len(), 1, "{accounts}");
    let connect = world
        .app
        .get_as(
            &format!("/api/v1/storage-accounts/{id}/connect"),
            "alice-pat",
        )
        .await;
    assert_eq!(connect.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_admins_connection_test_checks_the_apps_credential() {
    let world = world().await;
    let test = async || {
        let response = world
            .app
            .client
            .post(
                world
                    .app
                    .url(&format!("/api/v1/admin/connections/{}/test", world.id)),
            )
            .bearer_auth("root-pat")
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json::<Value>().await.unwrap())
    };
    // Nobody to act as in SharePoint, but Microsoft accepts the app's credential.
    let (status, body) = test().await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"ok": true})));
    // The secret no longer valid (expired, or deleted in Entra): the test says so.
    world.graph.remove_client_secrets(&world.client);
    let (status, body) = test().await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["code"], "permission_denied", "{body}");
}
