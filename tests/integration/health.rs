use std::time::Duration;

use filebridge::app::Migrations;

use crate::helpers::{
    OwnCluster, create_database, eventually, spawn_app, spawn_app_with, start, wait_until_refused,
};

#[tokio::test]
async fn healthz_answers_with_security_headers_and_a_request_id() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "SAMEORIGIN");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'self'")
    );
    let id = headers["x-request-id"].to_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "generated request id: {id}"
    );
}

#[tokio::test]
async fn readyz_is_200_with_a_current_schema() {
    let app = spawn_app().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
}

#[tokio::test]
async fn readyz_is_503_while_migrations_are_pending() {
    let app = spawn_app_with(|c| c.migrations = Migrations::Skip).await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "not_ready");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("migrations are pending")
    );

    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    filebridge::db::migrate(&pool).await.unwrap();
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn readyz_goes_503_when_postgres_stops_and_back_to_200_by_itself() {
    let cluster = OwnCluster::start(None);
    let database_url = create_database(&cluster.url).await;
    let jira = fake_jira::FakeJira::start().await;
    let config = crate::helpers::TestConfig::new(&database_url, &jira.base_url);
    let app = start(config, jira, database_url).await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    cluster.pause();
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503, "database stopped");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "database_unavailable", "{body}");
    // Liveness does not depend on the database.
    assert_eq!(app.get("/healthz").await.status(), 200);

    cluster.resume();
    eventually("readyz back to 200", Duration::from_secs(20), || async {
        app.get("/readyz").await.status() == 200
    })
    .await;
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_get_problem_documents() {
    let app = spawn_app().await;
    for path in ["/nope", "/api/v1/nope"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 404);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "not_found");
        assert_eq!(body["status"], 404);
        assert!(body["request_id"].is_string());
    }
    // Outside the base path too.
    let outside = app
        .client
        .get(format!("http://127.0.0.1:{}/healthz", app.port))
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status(), 404);

    let response = app.client.post(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "method_not_allowed");
}

#[tokio::test]
async fn request_ids_are_taken_only_from_trusted_proxies() {
    let trusting = spawn_app().await;
    let response = trusting
        .client
        .get(trusting.url("/healthz"))
        .header("x-request-id", "proxy-id-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "proxy-id-42");

    let distrusting = spawn_app_with(|c| {
        c.set("SERVER__TRUSTED_PROXIES", "10.9.9.9/32");
    })
    .await;
    let response = distrusting
        .client
        .get(distrusting.url("/healthz"))
        .header("x-request-id", "forged-id")
        .send()
        .await
        .unwrap();
    assert_ne!(response.headers()["x-request-id"], "forged-id");
}

#[tokio::test]
async fn a_graceful_stop_lets_the_request_in_flight_finish() {
    let app = spawn_app().await;
    app.jira.add_user("alice", "Alice");
    app.jira.add_token("alice", "alice-pat");
    let hold = app.jira.hold();
    let in_flight = tokio::spawn({
        let request = app
            .client
            .get(app.url("/api/v1/me"))
            .bearer_auth("alice-pat");
        async move { request.send().await }
    });
    app.jira.wait_for_waiting(1).await;
    // What SIGTERM does: stop accepting, wait for in-flight requests within the grace period.
    let stopping = tokio::spawn(app.handle.stop(true));
    wait_until_refused(app.port).await;
    assert!(!in_flight.is_finished());
    hold.release();
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(response.status(), 200);
    stopping.await.unwrap();
    app.stopped.await.unwrap().expect("server exits cleanly");
}
