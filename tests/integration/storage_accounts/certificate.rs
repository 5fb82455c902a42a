//! Delegated mode with the recommended credential: the app proves itself with a certificate
//! (a signed client assertion) when it redeems a user's sign-in and when it refreshes their
//! token; the app has no client secret at all.

use fake_graph::fixtures::{APP_CERT_PEM, APP_KEY_PEM};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::world;

#[tokio::test]
async fn sign_ins_and_refreshes_prove_the_app_with_its_certificate() {
    let world = world().await;
    world.graph.add_certificate(&world.client, APP_CERT_PEM);
    world.graph.remove_client_secrets(&world.client);
    let path = format!("/api/v1/admin/connections/{}", world.id);
    let connection: Value = world
        .app
        .get_as(&path, "root-pat")
        .await
        .json()
        .await
        .unwrap();
    let replaced = world
        .app
        .client
        .put(world.app.url(&path))
        .bearer_auth("root-pat")
        .json(&json!({
            "name": connection["name"],
            "kind": "sharepoint",
            "settings": connection["settings"],
            "secrets": {"client_secret": null, "certificate": APP_CERT_PEM, "private_key": APP_KEY_PEM},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        replaced.status(),
        StatusCode::OK,
        "{:?}",
        replaced.text().await
    );

    world.connect("alice-pat", &world.ms_alice).await;
    world
        .upload("alice-pat", "signed.txt", b"by certificate")
        .await;
    assert_eq!(world.names("alice-pat").await, ["signed.txt"]);
    assert_eq!(world.graph.token_requests_for("authorization_code"), 1);

    // The access token runs out: the refresh proves the app with the certificate too.
    let refreshes = world.graph.token_requests_for("refresh_token");
    world.graph.expire_access_tokens();
    assert_eq!(world.names("alice-pat").await, ["signed.txt"]);
    assert_eq!(
        world.graph.token_requests_for("refresh_token"),
        refreshes + 1
    );
    assert_eq!(
        world
            .graph
            .file_bytes(&world.drive, "/Jira/PROJ/PROJ-1/signed.txt")
            .as_deref(),
        Some(&b"by certificate"[..])
    );
}
