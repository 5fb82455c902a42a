//! Two instances on one database (a Data Center cluster): a user's refresh is serialised
//! across them by the account's row lock, and a revocation through one reaches the other's
//! cached token at once.

use std::time::Duration;

use filebridge::app::{Application, Migrations};
use futures_util::future::join_all;
use reqwest::StatusCode;

use super::{account_required, world};
use crate::helpers::{BASE, TestConfig, eventually, http_client};

/// A second instance: same database, Jira and master key; stopped when dropped.
struct Peer {
    address: String,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

async fn list(base: &str) -> reqwest::Response {
    http_client()
        .get(format!("{base}/api/v1/issues/PROJ-1/files"))
        .bearer_auth("alice-pat")
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_refresh_one_at_a_time_and_hear_of_revocations() {
    let world = world().await;
    world.connect("alice-pat", &world.ms_alice).await;
    let config = TestConfig {
        env: world.app.config.env.clone(),
        migrations: Migrations::Apply,
    };
    let built = Application::build(&config.settings(), config.migrations)
        .await
        .expect("second instance builds");
    let peer = Peer {
        address: format!("http://127.0.0.1:{}{BASE}", built.port()),
        handle: built.handle(),
    };
    tokio::spawn(built.run_until_stopped());
    let main = world.app.address.clone();

    // Neither instance holds an access token: both refresh, at the same moment. The fake
    // refuses a used refresh token, so both succeeding means the second waited for the
    // first's rotated token instead of presenting the one it replaced.
    for round in 1..=3 {
        world.graph.expire_access_tokens();
        let requests = (0..8).map(|i| list(if i % 2 == 0 { &main } else { &peer.address }));
        for response in join_all(requests).await {
            assert_eq!(response.status(), StatusCode::OK, "round {round}");
        }
        assert_eq!(
            world.graph.token_requests_for("refresh_token"),
            2 * round,
            "one refresh per instance per expiry"
        );
    }

    // Revoked through the main instance: the peer drops its still-valid cached token.
    let me: serde_json::Value = world
        .app
        .me_with_token("alice-pat")
        .await
        .json()
        .await
        .unwrap();
    let revoke = world
        .app
        .client
        .delete(world.app.url(&format!(
            "/api/v1/admin/storage-accounts/{}/{}",
            world.id,
            me["key"].as_str().unwrap()
        )))
        .bearer_auth("root-pat")
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    let peer_address = peer.address.clone();
    eventually("the peer refuses alice", Duration::from_secs(5), || {
        let address = peer_address.clone();
        async move { list(&address).await.status() == StatusCode::CONFLICT }
    })
    .await;
    account_required(&world, list(&peer.address).await).await;
}
