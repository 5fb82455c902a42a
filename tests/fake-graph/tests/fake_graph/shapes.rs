//! The fake's bodies against the shapes Microsoft documents, from the resource pages: serde
//! structs where `deny_unknown_fields` catches a property the page doesn't list and required
//! fields catch a missing one. (`schema.rs` checks the same bodies against Microsoft's
//! published CSDL, an excerpt of which is in `tests/fake-graph/schema/`; the pages add what
//! the CSDL cannot say: which properties a response actually carries.)
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

/// An app-only token for the standard test app.
async fn token(env: &crate::common::Env) -> String {
    let (_, body) = env
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", &env.app),
            ("client_secret", crate::common::SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .await;
    let body: TokenResponse = shape(&body);
    body.access_token
}

#[tokio::test]
async fn token_responses_and_sts_errors() {
    let env = env().await;
    token(&env).await;
    let (_, error) = env
        .token_request(&[("grant_type", "client_credentials")])
        .await;
    let _: StsError = shape(&error);
}

#[tokio::test]
async fn drive_items_and_listings() {
    let env = env().await;
    let token = token(&env).await;
    env.graph
        .put_file(&env.drive, "/PROJ/a.txt", b"abc".to_vec());
    let item = |path: &str| format!("/drives/{}/root:{path}:", env.drive);
    let file: DriveItem = shape(&env.get(&token, &item("/PROJ/a.txt")).await.1);
    assert!(
        file.file
            .as_ref()
            .unwrap()
            .hashes
            .as_ref()
            .unwrap()
            .contains_key("quickXorHash")
    );
    assert!(file.file.is_some() && file.folder.is_none());
    assert!(file.c_tag.is_some() && file.download_url.is_some());
    assert!(iso(&file.created_date_time) && iso(&file.last_modified_date_time));
    let folder: DriveItem = shape(&env.get(&token, &item("/PROJ")).await.1);
    assert!(folder.folder.is_some() && folder.c_tag.is_none() && folder.download_url.is_none());
    let root = format!("/drives/{}/root", env.drive);
    let root_item: DriveItem = shape(&env.get(&token, &root).await.1);
    assert!(root_item.root.is_some() && root_item.parent_reference.id.is_none());
    let page = env.get(&token, &format!("{root}/children")).await.1;
    let _: Collection<DriveItem> = shape(&page);
}

#[tokio::test]
async fn drives_and_sites() {
    let env = env().await;
    let token = token(&env).await;
    let drives = env
        .get(&token, &format!("/sites/{}/drives", env.site))
        .await
        .1;
    let _: Collection<Drive> = shape(&drives);
    let _: Drive = shape(&env.get(&token, &format!("/drives/{}", env.drive)).await.1);
    let _: Site = shape(&env.get(&token, &format!("/sites/{}", env.site)).await.1);
}

#[tokio::test]
async fn upload_sessions_and_graph_errors() {
    let env = env().await;
    let token = token(&env).await;
    let path = format!("/drives/{}/root:/b.bin:/createUploadSession", env.drive);
    let (status, session) = env.call(Method::POST, &token, &path, Some(json!({}))).await;
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
    let missing = env
        .get(&token, &format!("/drives/{}/root:/nope:", env.drive))
        .await
        .1;
    let error: ErrorBody = shape(&missing);
    let inner = &error.error.inner_error;
    assert!(inner.contains_key("request-id") && inner.contains_key("date"));
}
