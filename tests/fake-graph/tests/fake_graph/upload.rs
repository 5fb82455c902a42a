//! Upload sessions: fragments, Graph's ordering and size rules, resuming after a failure.

use std::time::Instant;

use bytes::Bytes;
use fake_graph::{FRAGMENT_UNIT, FragmentFault, MAX_FRAGMENT};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Env, env, inner_code};

async fn session(env: &Env, token: &str, name: &str, behaviour: &str) -> String {
    let path = format!("/drives/{}/root:/{name}:/createUploadSession", env.drive);
    let body = json!({"item": {"@microsoft.graph.conflictBehavior": behaviour, "name": name}});
    let (status, session) = env.call(Method::POST, token, &path, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(session["nextExpectedRanges"], json!(["0-"]));
    assert!(session["expirationDateTime"].is_string());
    session["uploadUrl"].as_str().unwrap().to_owned()
}

/// PUTs `data[start..=end]` without a bearer token.
async fn fragment(
    env: &Env,
    url: &str,
    data: &Bytes,
    start: usize,
    end: usize,
) -> Result<(StatusCode, Value), reqwest::Error> {
    let response = env
        .http
        .put(url)
        .header(
            "content-range",
            format!("bytes {start}-{end}/{}", data.len()),
        )
        .body(data.slice(start..=end))
        .send()
        .await?;
    let status = response.status();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

async fn status(env: &Env, url: &str) -> (StatusCode, Value) {
    let response = env.http.get(url).send().await.unwrap();
    (
        response.status(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// Uploads everything from the session's next expected byte on, in `size` fragments.
async fn upload_rest(env: &Env, url: &str, data: &Bytes, size: usize) -> (StatusCode, Value) {
    loop {
        let (_, state) = status(env, url).await;
        let next: usize = state["nextExpectedRanges"][0]
            .as_str()
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let end = (next + size).min(data.len()) - 1;
        let (code, body) = fragment(env, url, data, next, end).await.unwrap();
        if code != StatusCode::ACCEPTED {
            return (code, body);
        }
    }
}

/// `len` bytes of a pattern whose period (65,521, prime) lines up with no fragment size.
fn data(len: usize) -> Bytes {
    let pattern: Vec<u8> = (0..65_521usize).map(|i| (i * 31 % 251) as u8).collect();
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        let take = pattern.len().min(len - bytes.len());
        bytes.extend_from_slice(&pattern[..take]);
    }
    Bytes::from(bytes)
}

#[tokio::test]
async fn fragments_in_order_make_the_file() {
    let env = env().await;
    let token = env.app_token().await;
    let url = session(&env, &token, "report.bin", "fail").await;
    let unit = FRAGMENT_UNIT as usize;
    let data = data(2 * unit + 1234);
    let (code, body) = fragment(&env, &url, &data, 0, 2 * unit - 1).await.unwrap();
    assert_eq!(code, StatusCode::ACCEPTED);
    assert_eq!(
        body["nextExpectedRanges"],
        json!([format!("{}-{}", 2 * unit, data.len() - 1)])
    );
    let (code, item) = fragment(&env, &url, &data, 2 * unit, data.len() - 1)
        .await
        .unwrap();
    assert_eq!(code, StatusCode::CREATED, "{item}");
    assert_eq!(item["name"], "report.bin");
    assert_eq!(item["size"], data.len());
    assert_eq!(
        env.graph.file_bytes(&env.drive, "/report.bin").unwrap(),
        data
    );
    assert_eq!(env.graph.fragments_received(), 2);
    assert_eq!(env.graph.upload_sessions(), 0);
    // Replacing the file by id keeps its id.
    let id = item["id"].as_str().unwrap();
    let (_, replace) = env
        .call(
            Method::POST,
            &token,
            &format!("/drives/{}/items/{id}/createUploadSession", env.drive),
            None,
        )
        .await;
    let small = data.slice(..100);
    let (code, replaced) = fragment(&env, replace["uploadUrl"].as_str().unwrap(), &small, 0, 99)
        .await
        .unwrap();
    assert_eq!((code, replaced["id"].as_str()), (StatusCode::OK, Some(id)));
    // conflictBehavior fail refuses an existing name when the session is created.
    let path = format!(
        "/drives/{}/root:/report.bin:/createUploadSession",
        env.drive
    );
    let (code, body) = env
        .call(
            Method::POST,
            &token,
            &path,
            Some(json!({"item": {"@microsoft.graph.conflictBehavior": "fail"}})),
        )
        .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("nameAlreadyExists"))
    );
}

#[tokio::test]
async fn fragments_breaking_graphs_rules_are_refused_and_change_nothing() {
    let env = env().await;
    let token = env.app_token().await;
    let url = session(&env, &token, "rules.bin", "replace").await;
    let unit = FRAGMENT_UNIT as usize;
    let data = data(4 * unit);
    // 300 KiB is not a multiple of 320 KiB.
    let (code, body) = fragment(&env, &url, &data, 0, 300 * 1024 - 1)
        .await
        .unwrap();
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalidRequest")),
        "{body}"
    );
    assert_eq!(
        status(&env, &url).await.1["nextExpectedRanges"],
        json!(["0-"])
    );
    // Skipping ahead is out of order.
    let (code, body) = fragment(&env, &url, &data, unit, 2 * unit - 1)
        .await
        .unwrap();
    assert_eq!(
        (code, inner_code(&body)),
        (StatusCode::RANGE_NOT_SATISFIABLE, "fragmentOutOfOrder")
    );
    assert_eq!(body["error"]["code"], "invalidRange");
    assert_eq!(
        fragment(&env, &url, &data, 0, unit - 1).await.unwrap().0,
        StatusCode::ACCEPTED
    );
    // Sending the same range again overlaps.
    let (code, body) = fragment(&env, &url, &data, 0, unit - 1).await.unwrap();
    assert_eq!(
        (code, inner_code(&body)),
        (StatusCode::RANGE_NOT_SATISFIABLE, "fragmentOverlap")
    );
    // A different declared total.
    let response = env
        .http
        .put(&url)
        .header(
            "content-range",
            format!("bytes {unit}-{}/{}", 2 * unit - 1, 5 * unit),
        )
        .body(data.slice(unit..2 * unit))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        inner_code(&response.json().await.unwrap()),
        "fragmentLengthMismatch"
    );
    // The upload URL is pre-authenticated: a bearer token is refused.
    let response = env
        .http
        .put(&url)
        .bearer_auth(&token)
        .header(
            "content-range",
            format!("bytes {unit}-{}/{}", 2 * unit - 1, data.len()),
        )
        .body(data.slice(unit..2 * unit))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        status(&env, &url).await.1["nextExpectedRanges"],
        json!([format!("{unit}-{}", data.len() - 1)])
    );
    // Over 60 MiB in one fragment.
    let huge = Bytes::from(vec![0u8; MAX_FRAGMENT as usize + unit]);
    let (code, body) = fragment(
        &env,
        &session(&env, &token, "huge.bin", "fail").await,
        &huge,
        0,
        huge.len() - 1,
    )
    .await
    .unwrap();
    assert_eq!(
        (code, inner_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "maxFragmentLengthExceeded")
    );
    // Cancelling.
    assert_eq!(
        env.http.delete(&url).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let (code, body) = status(&env, &url).await;
    assert_eq!(
        (code, inner_code(&body)),
        (StatusCode::NOT_FOUND, "uploadSessionNotFound")
    );
    assert!(env.graph.item_id(&env.drive, "/rules.bin").is_none());
}

#[tokio::test]
async fn a_failed_fragment_is_resumed_from_the_session_status() {
    let env = env().await;
    let token = env.app_token().await;
    let unit = FRAGMENT_UNIT as usize;
    let data = data(10 * unit + 77);
    for fault in [
        FragmentFault::Status(503),
        FragmentFault::Status(500),
        FragmentFault::Drop,
    ] {
        let url = session(&env, &token, "resume.bin", "replace").await;
        let before = env.graph.fragments_received();
        env.graph.fail_fragment(2, fault);
        assert_eq!(
            fragment(&env, &url, &data, 0, 4 * unit - 1)
                .await
                .unwrap()
                .0,
            StatusCode::ACCEPTED
        );
        match fragment(&env, &url, &data, 4 * unit, 8 * unit - 1).await {
            // A dropped connection reaches the client as an incomplete message.
            Ok((code, body)) => assert!(
                fault != FragmentFault::Drop && code.is_server_error(),
                "{fault:?}: {code} {body}"
            ),
            Err(error) => assert_eq!(fault, FragmentFault::Drop, "{error}"),
        }
        let (_, state) = status(&env, &url).await;
        assert_eq!(
            state["nextExpectedRanges"],
            json!([format!("{}-{}", 4 * unit, data.len() - 1)]),
            "{fault:?}"
        );
        let (code, item) = upload_rest(&env, &url, &data, 4 * unit).await;
        assert!(
            code == StatusCode::OK || code == StatusCode::CREATED,
            "{code} {item}"
        );
        assert_eq!(
            env.graph.file_bytes(&env.drive, "/resume.bin").unwrap(),
            data
        );
        assert_eq!(env.graph.fragments_received() - before, 4);
    }
}

#[tokio::test]
async fn a_one_gib_upload_with_a_failed_fragment_completes() {
    let env = env().await;
    let token = env.app_token().await;
    let started = Instant::now();
    let data = data(1 << 30);
    let url = session(&env, &token, "one-gib.bin", "fail").await;
    env.graph.fail_fragment(7, FragmentFault::Status(503));
    let fragment_size = 192 * FRAGMENT_UNIT as usize; // 60 MiB
    let (code, item) = upload_rest(&env, &url, &data, fragment_size).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{item}");
    let (code, item) = upload_rest(&env, &url, &data, fragment_size).await;
    assert_eq!(code, StatusCode::CREATED, "{item}");
    assert_eq!(item["size"], 1u64 << 30);
    assert!(env.graph.file_bytes(&env.drive, "/one-gib.bin").unwrap() == data);
    assert_eq!(env.graph.fragments_received(), 19);
    eprintln!("1 GiB through an upload session in {:?}", started.elapsed());
}
