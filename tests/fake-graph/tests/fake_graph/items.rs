//! Sites, drives, items by id and path, paging, downloads and simple uploads.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{env, inner_code};

#[tokio::test]
async fn sites_drives_and_items_by_id_and_path() {
    let env = env().await;
    let token = env.app_token().await;
    let (status, site) = env
        .get(&token, "/sites/contoso.sharepoint.com:/sites/eng")
        .await;
    assert_eq!(status, StatusCode::OK, "{site}");
    assert_eq!(site["id"], env.site);
    assert_eq!(site["webUrl"], "https://contoso.sharepoint.com/sites/eng");
    let (_, drives) = env
        .get(&token, &format!("/sites/{}/drives", env.site))
        .await;
    assert_eq!(drives["value"][0]["id"], env.drive);
    assert_eq!(drives["value"][0]["driveType"], "documentLibrary");
    let (status, drive) = env.get(&token, &format!("/sites/{}/drive", env.site)).await;
    assert_eq!(
        (status, drive["id"].as_str()),
        (StatusCode::OK, Some(env.drive.as_str()))
    );

    let file = env.graph.put_file(
        &env.drive,
        "/PROJ/PROJ-1/spec v2.pdf",
        b"%PDF-1.7 hello".to_vec(),
    );
    let folder = env.graph.item_id(&env.drive, "/PROJ").unwrap();
    let by_id = env
        .get(&token, &format!("/drives/{}/items/{file}", env.drive))
        .await
        .1;
    let by_path = env
        .get(
            &token,
            &format!("/drives/{}/root:/PROJ/PROJ-1/spec%20v2.pdf:", env.drive),
        )
        .await
        .1;
    let relative = env
        .get(
            &token,
            &format!("/drives/{}/items/{folder}:/PROJ-1/spec%20v2.pdf", env.drive),
        )
        .await
        .1;
    for item in [&by_id, &by_path, &relative] {
        assert_eq!(item["id"], file, "{item}");
        assert_eq!(item["name"], "spec v2.pdf");
        assert_eq!(item["size"], 14);
        assert_eq!(item["file"]["mimeType"], "application/pdf");
        assert_eq!(item["parentReference"]["driveId"], env.drive);
        assert_eq!(
            item["parentReference"]["path"],
            format!("/drives/{}/root:/PROJ/PROJ-1", env.drive)
        );
        assert!(item["eTag"].as_str().unwrap().starts_with("\"{"));
        assert!(item["cTag"].as_str().unwrap().starts_with("\"c:{"));
    }
    let (_, root) = env
        .get(&token, &format!("/drives/{}/root", env.drive))
        .await;
    assert_eq!(root["folder"]["childCount"], 1);
    assert!(root["root"].is_object());
    let tag = by_id["eTag"].as_str().unwrap();
    let unchanged = env
        .http
        .get(format!(
            "{}/v1.0/drives/{}/items/{file}",
            env.graph.base_url, env.drive
        ))
        .bearer_auth(&token)
        .header("if-none-match", tag)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    let (_, folder_json) = env
        .get(&token, &format!("/drives/{}/items/{folder}", env.drive))
        .await;
    assert!(
        folder_json.get("cTag").is_none(),
        "SharePoint sends no cTag for folders"
    );
    let (status, missing) = env
        .get(&token, &format!("/drives/{}/root:/nope.txt:", env.drive))
        .await;
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("itemNotFound"))
    );
}

#[tokio::test]
async fn a_2500_item_folder_is_listed_completely_through_next_links() {
    let env = env().await;
    let token = env.app_token().await;
    for i in 0..2500 {
        env.graph.put_file(
            &env.drive,
            &format!("/big/file-{i:04}.txt"),
            vec![b'x'; i % 7],
        );
    }
    for (top, pages) in [(None, 13), (Some(1000), 3)] {
        let mut url = format!("/drives/{}/root:/big:/children?$select=id,name", env.drive);
        if let Some(top) = top {
            url.push_str(&format!("&$top={top}"));
        }
        let mut names = HashSet::new();
        let mut seen_pages = 0;
        loop {
            let (status, page) = env.get(&token, &url).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            seen_pages += 1;
            let value = page["value"].as_array().unwrap();
            assert!(value.len() <= top.unwrap_or(200));
            names.extend(value.iter().map(|i| i["name"].as_str().unwrap().to_owned()));
            match page["@odata.nextLink"].as_str() {
                Some(next) => {
                    assert!(next.starts_with(&env.graph.base_url), "absolute: {next}");
                    url = next.to_owned();
                }
                None => break,
            }
        }
        assert_eq!((names.len(), seen_pages), (2500, pages));
    }
    let (status, body) = env
        .get(
            &token,
            &format!("/drives/{}/root/children?$top=0", env.drive),
        )
        .await;
    assert_eq!(
        (status, inner_code(&body)),
        (StatusCode::BAD_REQUEST, "invalidQueryOption")
    );
}

#[tokio::test]
async fn downloads_redirect_to_a_url_that_honours_range() {
    let env = env().await;
    let token = env.app_token().await;
    let content: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let id = env.graph.put_file(&env.drive, "/data.bin", content.clone());
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
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let whole = env.http.get(&location).send().await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.bytes().await.unwrap().as_ref(), content.as_slice());
    for (range, status, expected, content_range) in [
        (
            "bytes=100-199",
            206,
            &content[100..200],
            Some("bytes 100-199/10000"),
        ),
        (
            "bytes=9990-",
            206,
            &content[9990..],
            Some("bytes 9990-9999/10000"),
        ),
        (
            "bytes=-10",
            206,
            &content[9990..],
            Some("bytes 9990-9999/10000"),
        ),
        ("bytes=20000-", 416, &content[..0], Some("bytes */10000")),
    ] {
        let response = env
            .http
            .get(&location)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{range}");
        assert_eq!(
            response
                .headers()
                .get("content-range")
                .map(|v| v.to_str().unwrap()),
            content_range
        );
        if status == 206 {
            assert_eq!(response.bytes().await.unwrap().as_ref(), expected);
        }
    }
    let (_, item) = env
        .get(&token, &format!("/drives/{}/items/{id}", env.drive))
        .await;
    let annotated = item["@microsoft.graph.downloadUrl"].as_str().unwrap();
    assert_eq!(
        env.http.get(annotated).send().await.unwrap().status(),
        StatusCode::OK
    );
    env.graph.advance_clock(3601);
    assert_eq!(
        env.http.get(&location).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn simple_uploads_follow_conflict_behaviour_and_the_4_mib_limit() {
    let env = env().await;
    let token = env.app_token().await;
    let (status, created) = env
        .put_content(&token, "/a/notes.txt", b"one".to_vec())
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the parent folder must exist: {created}"
    );
    env.graph.put_folder(&env.drive, "/a");
    let (status, created) = env
        .put_content(&token, "/a/notes.txt", b"one".to_vec())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, replaced) = env
        .put_content(&token, "/a/notes.txt", b"two!".to_vec())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replaced["id"], created["id"]);
    assert_ne!(replaced["eTag"], created["eTag"]);
    assert_ne!(replaced["cTag"], created["cTag"]);
    assert_eq!(
        env.graph
            .file_bytes(&env.drive, "/a/notes.txt")
            .unwrap()
            .as_ref(),
        b"two!"
    );
    let url = |behaviour: &str| {
        format!(
            "{}/v1.0/drives/{}/root:/a/notes.txt:/content?@microsoft.graph.conflictBehavior={behaviour}",
            env.graph.base_url, env.drive
        )
    };
    let fail = env
        .http
        .put(url("fail"))
        .bearer_auth(&token)
        .body("three")
        .send()
        .await
        .unwrap();
    assert_eq!(fail.status(), StatusCode::CONFLICT);
    assert_eq!(
        fail.json::<Value>().await.unwrap()["error"]["code"],
        "nameAlreadyExists"
    );
    let rename = env
        .http
        .put(url("rename"))
        .bearer_auth(&token)
        .body("three")
        .send()
        .await
        .unwrap();
    assert_eq!(rename.status(), StatusCode::CREATED);
    assert_eq!(rename.json::<Value>().await.unwrap()["name"], "notes 1.txt");
    let (status, body) = env
        .put_content(
            &token,
            "/a/big.bin",
            vec![0; fake_graph::SIMPLE_UPLOAD_LIMIT + 1],
        )
        .await;
    assert_eq!(
        (status, inner_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "maxFileSizeExceeded")
    );
    assert!(env.graph.item_id(&env.drive, "/a/big.bin").is_none());
    let (status, _) = env
        .put_content(
            &token,
            "/a/exact.bin",
            vec![0; fake_graph::SIMPLE_UPLOAD_LIMIT],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // The documented `{parent-id}:/{filename}:/content` form, and replacing by id.
    let folder = env.graph.item_id(&env.drive, "/a").unwrap();
    let base = format!("{}/v1.0/drives/{}", env.graph.base_url, env.drive);
    let by_parent = env
        .http
        .put(format!("{base}/items/{folder}:/via%20id.txt:/content"))
        .bearer_auth(&token)
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(by_parent.status(), StatusCode::CREATED);
    let id = by_parent.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_id = env
        .http
        .put(format!("{base}/items/{id}/content"))
        .bearer_auth(&token)
        .body("w")
        .send()
        .await
        .unwrap();
    assert_eq!(by_id.status(), StatusCode::OK);
    assert_eq!(
        env.graph
            .file_bytes(&env.drive, "/a/via id.txt")
            .unwrap()
            .as_ref(),
        b"w"
    );
}
