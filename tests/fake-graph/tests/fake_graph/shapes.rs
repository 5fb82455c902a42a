//! The fake's bodies against the shapes Microsoft documents. Microsoft's OpenAPI/CSDL
//! description of Graph v1.0 is not available offline here (the CSDL is a 2 MB+ XML file in
//! microsoftgraph/msgraph-metadata), so each shape is pinned by serde structs written from the
//! resource pages: `deny_unknown_fields` catches a property the page doesn't list, required
//! fields catch a missing one.
//!
//! - driveItem, itemReference, file, folder, fileSystemInfo:
//!   https://learn.microsoft.com/graph/api/resources/driveitem (and the linked facet pages)
//! - drive: https://learn.microsoft.com/graph/api/resources/drive
//! - site: https://learn.microsoft.com/graph/api/resources/site
//! - uploadSession: https://learn.microsoft.com/graph/api/resources/uploadsession
//! - error: https://learn.microsoft.com/graph/errors
//! - token response and STS errors: the v2.0 auth code and client credentials pages.

#![allow(dead_code)]

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::common::env;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DriveItem {
    id: String,
    name: String,
    e_tag: String,
    c_tag: Option<String>,
    created_date_time: String,
    last_modified_date_time: String,
    size: u64,
    web_url: String,
    parent_reference: ItemReference,
    file_system_info: FileSystemInfo,
    file: Option<File>,
    folder: Option<Folder>,
    root: Option<HashMap<String, Value>>,
    #[serde(rename = "@microsoft.graph.downloadUrl")]
    download_url: Option<String>,
    #[serde(rename = "@odata.context")]
    context: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ItemReference {
    drive_id: String,
    drive_type: String,
    id: Option<String>,
    name: Option<String>,
    path: Option<String>,
    site_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileSystemInfo {
    created_date_time: String,
    last_modified_date_time: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    mime_type: String,
    hashes: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Folder {
    child_count: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Drive {
    id: String,
    name: String,
    description: String,
    drive_type: String,
    created_date_time: String,
    last_modified_date_time: String,
    web_url: String,
    owner: HashMap<String, HashMap<String, String>>,
    quota: Quota,
    #[serde(rename = "@odata.context")]
    context: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Quota {
    deleted: u64,
    remaining: u64,
    state: String,
    total: u64,
    used: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Site {
    id: String,
    name: String,
    display_name: String,
    web_url: String,
    created_date_time: String,
    last_modified_date_time: String,
    site_collection: HashMap<String, String>,
    root: Option<HashMap<String, Value>>,
    #[serde(rename = "@odata.context")]
    context: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UploadSession {
    upload_url: Option<String>,
    expiration_date_time: String,
    next_expected_ranges: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Collection<T> {
    value: Vec<T>,
    #[serde(rename = "@odata.context")]
    context: String,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorBody {
    error: OdataError,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct OdataError {
    code: String,
    message: String,
    inner_error: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenResponse {
    token_type: String,
    expires_in: u64,
    ext_expires_in: u64,
    access_token: String,
    scope: Option<String>,
    refresh_token: Option<String>,
    id_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StsError {
    error: String,
    error_description: String,
    error_codes: Vec<u32>,
    timestamp: String,
    trace_id: String,
    correlation_id: String,
    error_uri: String,
}

fn shape<T: serde::de::DeserializeOwned>(body: &Value) -> T {
    serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{e}: {body:#}"))
}

fn iso(text: &str) -> bool {
    text.len() == 20 && text.ends_with('Z') && text.as_bytes()[10] == b'T'
}

#[tokio::test]
async fn bodies_have_the_documented_shapes() {
    let env = env().await;
    let (_, token) = env
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", &env.app),
            ("client_secret", crate::common::SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .await;
    let token: TokenResponse = shape(&token);
    let token = token.access_token;
    let (_, error) = env
        .token_request(&[("grant_type", "client_credentials")])
        .await;
    let _: StsError = shape(&error);

    env.graph
        .put_file(&env.drive, "/PROJ/a.txt", b"abc".to_vec());
    let (_, file) = env
        .get(&token, &format!("/drives/{}/root:/PROJ/a.txt:", env.drive))
        .await;
    let file: DriveItem = shape(&file);
    assert!(
        file.file.is_some()
            && file.folder.is_none()
            && file.c_tag.is_some()
            && file.download_url.is_some()
    );
    assert!(iso(&file.created_date_time) && iso(&file.last_modified_date_time));
    let (_, folder) = env
        .get(&token, &format!("/drives/{}/root:/PROJ:", env.drive))
        .await;
    let folder: DriveItem = shape(&folder);
    assert!(folder.folder.is_some() && folder.c_tag.is_none() && folder.download_url.is_none());
    let (_, root) = env
        .get(&token, &format!("/drives/{}/root", env.drive))
        .await;
    let root: DriveItem = shape(&root);
    assert!(root.root.is_some() && root.parent_reference.id.is_none());
    let (_, page) = env
        .get(&token, &format!("/drives/{}/root/children", env.drive))
        .await;
    let _: Collection<DriveItem> = shape(&page);
    let (_, drives) = env
        .get(&token, &format!("/sites/{}/drives", env.site))
        .await;
    let _: Collection<Drive> = shape(&drives);
    let (_, drive) = env.get(&token, &format!("/drives/{}", env.drive)).await;
    let _: Drive = shape(&drive);
    let (_, site) = env.get(&token, &format!("/sites/{}", env.site)).await;
    let _: Site = shape(&site);
    let (status, session) = env
        .call(
            Method::POST,
            &token,
            &format!("/drives/{}/root:/b.bin:/createUploadSession", env.drive),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let session: UploadSession = shape(&session);
    let url = session.upload_url.unwrap();
    let status: Value = env
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let status: UploadSession = shape(&status);
    assert!(status.upload_url.is_none() && iso(&status.expiration_date_time));
    let (_, missing) = env
        .get(&token, &format!("/drives/{}/root:/nope:", env.drive))
        .await;
    let error: ErrorBody = shape(&missing);
    assert!(
        error.error.inner_error.contains_key("request-id")
            && error.error.inner_error.contains_key("date")
    );
}
