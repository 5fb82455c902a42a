//! Scripted throttling with Retry-After.

use fake_graph::RequestClass;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{SECRET, env};

#[tokio::test]
async fn throttled_requests_carry_retry_after_then_pass() {
    let env = env().await;
    let token = env.app_token().await;
    let root = format!("/drives/{}/root", env.drive);
    env.graph.throttle_next(2, 429, 7, RequestClass::GraphRead);
    // Writes are not in the class.
    let (status, _) = env
        .call(
            Method::POST,
            &token,
            &format!("{root}/children"),
            Some(json!({"name": "a", "folder": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for _ in 0..2 {
        let response = env
            .http
            .get(format!("{}/v1.0{root}", env.graph.base_url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "7");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "activityLimitReached");
        assert_eq!(body["error"]["innerError"]["code"], "throttledRequest");
    }
    assert_eq!(env.get(&token, &root).await.0, StatusCode::OK);
    assert_eq!(env.graph.throttled_requests(), 2);

    env.graph.throttle_next(1, 503, 3, RequestClass::Graph);
    let response = env
        .http
        .delete(format!("{}/v1.0{root}:/a", env.graph.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            response.status(),
            response.headers()["retry-after"].to_str().unwrap()
        ),
        (StatusCode::SERVICE_UNAVAILABLE, "3")
    );

    env.graph.throttle_next(1, 429, 1, RequestClass::Token);
    let (status, body) = env
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", &env.app),
            ("client_secret", SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            Some("temporarily_unavailable")
        )
    );
    env.app_token().await;

    let id = env.graph.put_file(&env.drive, "/f.txt", b"f".to_vec());
    let response = env
        .http
        .get(format!(
            "{}/v1.0/drives/{}/items/{id}/content",
            env.graph.base_url, env.drive
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    env.graph.throttle_next(1, 503, 2, RequestClass::Download);
    assert_eq!(
        env.http.get(&location).send().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        env.http.get(&location).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(env.graph.throttled_requests(), 5);
}
