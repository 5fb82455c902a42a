//! Changing the tree: folders, renames, moves, deletes, `If-Match`, and SharePoint's name
//! rules.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{env, inner_code};

#[tokio::test]
async fn folders_renames_moves_and_deletes() {
    let env = env().await;
    let token = env.app_token().await;
    let root_children = format!("/drives/{}/root/children", env.drive);
    let folder = |name: &str, behaviour: &str| {
        Some(json!({"name": name, "folder": {}, "@microsoft.graph.conflictBehavior": behaviour}))
    };
    let (status, a) = env
        .call(Method::POST, &token, &root_children, folder("PROJ", "fail"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    let (status, body) = env
        .call(Method::POST, &token, &root_children, folder("proj", "fail"))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("nameAlreadyExists"))
    );
    let (_, renamed) = env
        .call(
            Method::POST,
            &token,
            &root_children,
            folder("PROJ", "rename"),
        )
        .await;
    assert_eq!(renamed["name"], "PROJ 1");
    let file = env.graph.put_file(&env.drive, "/PROJ/x.txt", b"x".to_vec());
    let item = format!("/drives/{}/items/{file}", env.drive);
    let (_, before) = env.get(&token, &item).await;
    let (status, moved) = env
        .call(
            Method::PATCH,
            &token,
            &item,
            Some(json!({"name": "y.txt", "parentReference": {"id": renamed["id"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(
        moved["parentReference"]["path"],
        format!("/drives/{}/root:/PROJ%201", env.drive),
        "percent-encoded, as itemReference documents"
    );
    assert_ne!(moved["eTag"], before["eTag"]);
    assert_eq!(
        moved["cTag"], before["cTag"],
        "a move doesn't change the content"
    );
    env.graph
        .put_file(&env.drive, "/PROJ 1/z.txt", b"z".to_vec());
    let (status, body) = env
        .call(Method::PATCH, &token, &item, Some(json!({"name": "Z.TXT"})))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("nameAlreadyExists"))
    );
    let into_itself = env
        .call(
            Method::PATCH,
            &token,
            &format!("/drives/{}/items/{}", env.drive, a["id"].as_str().unwrap()),
            Some(json!({"parentReference": {"id": a["id"]}})),
        )
        .await;
    assert_eq!(into_itself.0, StatusCode::BAD_REQUEST);
    let stale = env
        .http
        .delete(format!("{}/v1.0{item}", env.graph.base_url))
        .bearer_auth(&token)
        .header("if-match", before["eTag"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let (status, _) = env.call(Method::DELETE, &token, &item, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(env.get(&token, &item).await.0, StatusCode::NOT_FOUND);
    let root = format!("/drives/{}/root", env.drive);
    assert_eq!(
        env.call(Method::DELETE, &token, &root, None).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn sharepoint_name_rules_are_enforced() {
    let env = env().await;
    let token = env.app_token().await;
    let root_children = format!("/drives/{}/root/children", env.drive);
    for bad in [
        "a:b",
        "a|b",
        " lead",
        "trail ",
        "dot.",
        "CON",
        "lpt1",
        ".lock",
        "desktop.ini",
        "~$x.docx",
        "a_vti_b",
        "Forms",
    ] {
        let (status, body) = env
            .call(
                Method::POST,
                &token,
                &root_children,
                Some(json!({"name": bad, "folder": {}})),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str(), inner_code(&body)),
            (
                StatusCode::BAD_REQUEST,
                Some("invalidRequest"),
                "invalidPath"
            ),
            "{bad:?}"
        );
    }
    let deep = "d".repeat(120);
    env.graph
        .put_folder(&env.drive, &format!("/{deep}/{deep}/{deep}"));
    let (status, body) = env
        .put_content(
            &token,
            &format!("/{deep}/{deep}/{deep}/file-name-that-crosses-400.txt"),
            b"x".to_vec(),
        )
        .await;
    assert_eq!(
        (status, inner_code(&body)),
        (StatusCode::BAD_REQUEST, "pathIsTooLong")
    );
    let (status, _) = env
        .put_content(
            &token,
            &format!("/{deep}/{deep}/{deep}/ok.txt"),
            b"x".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}
