//! The issue page (`GET /issues/{KEY}`) in a real browser: headless Chromium driven through
//! ChromeDriver (WebDriver) against the real application, the fake Jira and a filesystem
//! connection. The browser carries a Jira session cookie (`JSESSIONID`) for the app's origin,
//! as a Jira user's browser does behind the shared reverse proxy, and the page's script does
//! the rest: listing, sub-folders, breadcrumbs, upload and download.
//!
//! The browser (Chromium through ChromeDriver) is started as `browser` describes.

use fantoccini::Locator;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::browser::{Binaries, Browser, LogEntry, jira_cookie};
use crate::helpers::free_port;
use crate::helpers::{TestApp, map_to_directory, spawn_app_with};

const ALICE_SESSION: &str = "alice-jsessionid-0123456789";
const BOB_SESSION: &str = "bob-jsessionid-0123456789";
const CAROL_SESSION: &str = "carol-jsessionid-0123456789";

/// PROJ with PROJ-1, mapped to a filesystem connection. alice may browse and attach, bob
/// may only browse, carol may not browse; each is signed in to Jira (a `JSESSIONID`). The page is served on
/// the origin `server.public_url` names, as behind the real proxy, so the browser's `Origin`
/// on uploads is filebridge's own.
async fn world() -> (TestApp, tempfile::TempDir) {
    let app = spawn_on_public_origin().await;
    let jira = &app.jira;
    jira.add_project("PROJ", "Project");
    jira.add_issue("PROJ", "PROJ-1");
    for name in ["root", "alice", "bob", "carol"] {
        jira.add_user(name, name);
    }
    jira.add_token("root", "root-pat");
    jira.add_session("alice", ALICE_SESSION);
    jira.add_session("bob", BOB_SESSION);
    jira.add_session("carol", CAROL_SESSION);
    jira.grant_global("root", "ADMINISTER");
    for user in ["root", "alice"] {
        jira.grant_project(user, "PROJ", "BROWSE_PROJECTS");
        jira.grant_project(user, "PROJ", "CREATE_ATTACHMENTS");
    }
    jira.grant_project("bob", "PROJ", "BROWSE_PROJECTS");

    let root = tempfile::tempdir().unwrap();
    map_to_directory(&app, "root-pat", "local", root.path(), "PROJ", "Jira/PROJ").await;
    (app, root)
}

/// The application listening on the origin `server.public_url` names, as behind the real
/// proxy, so the browser's `Origin` on uploads is filebridge's own.
async fn spawn_on_public_origin() -> TestApp {
    let port = free_port();
    spawn_app_with(|config| {
        config
            .set("SERVER__LISTEN", &format!("127.0.0.1:{port}"))
            .set(
                "SERVER__PUBLIC_URL",
                &format!("http://127.0.0.1:{port}/filebridge"),
            );
    })
    .await
}

/// Uploads through the API, as a file someone put there before the page was opened.
async fn put(app: &TestApp, path: &str, body: Vec<u8>) {
    let response = app
        .client
        .put(app.url("/api/v1/issues/PROJ-1/files/content"))
        .query(&[("path", path)])
        .bearer_auth("root-pat")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "uploaded {path}");
}

/// `GET` of `href` from inside the page (same origin, the user's cookies): status, headers
/// and body bytes.
async fn fetch_in_page(browser: &Browser, href: &str) -> (u64, Value, Vec<u8>) {
    let answer = browser
        .client
        .execute_async(
            r#"
            const [href, done] = arguments;
            fetch(href, { credentials: "same-origin" })
              .then(async (r) => done({
                status: r.status,
                headers: {
                  disposition: r.headers.get("content-disposition"),
                  type: r.headers.get("content-type"),
                },
                bytes: Array.from(new Uint8Array(await r.arrayBuffer())),
              }))
              .catch((e) => done({ status: 0, headers: {}, bytes: [], error: String(e) }));
            "#,
            vec![json!(href)],
        )
        .await
        .expect("fetch in the page");
    let bytes = answer["bytes"]
        .as_array()
        .expect("bytes")
        .iter()
        .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
        .collect();
    (
        answer["status"].as_u64().unwrap(),
        answer["headers"].clone(),
        bytes,
    )
}

/// The refused request itself is the one kind of console error Chromium reports (its
/// "Failed to load resource" line for any answer of 400 or more); anything else fails.
async fn expect_only_refusals(browser: &Browser, phase: &str, route: &str, status: u16) {
    let route = format!("/api/v1/issues/PROJ-1{route}");
    let status = format!("status of {status} ");
    browser
        .expect_console(phase, &[&[route.as_str(), status.as_str()]])
        .await;
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
}

#[tokio::test]
async fn issue_page_lists_navigates_uploads_and_downloads_in_chromium() {
    let binaries = Binaries::find();
    let (app, root) = world().await;
    let folder = root.path().join("Jira/PROJ/PROJ-1");
    put(&app, "notes.txt", b"hello world".to_vec()).await;
    put(&app, "report.bin", pattern(2500)).await;
    put(&app, "docs/inner.txt", b"inside".to_vec()).await;

    let browser = Browser::start(&binaries).await;
    let client = &browser.client;
    browser
        .with_jira_session(&app.url("/static/issue.css"), ALICE_SESSION)
        .await;
    let page = app.url("/issues/PROJ-1");
    client.goto(&page).await.expect("open the issue page");

    // The listing: names, sizes, a modification time for files.
    let state = browser
        .until("the issue's folder is listed", |s| {
            s.settled() && s.rows.len() == 3
        })
        .await;
    assert_eq!(state.issue.as_deref(), Some("PROJ-1"));
    assert_eq!(state.crumbs, ["PROJ-1"]);
    assert!(state.upload, "the upload form is offered");
    assert_eq!(
        state.listed(),
        [
            ("docs/", ""),
            ("notes.txt", "11 B"),
            ("report.bin", "2.4 KiB")
        ]
    );
    assert!(!state.row("notes.txt").modified.is_empty());
    assert_eq!(client.title().await.unwrap(), "Files of PROJ-1");
    browser.assert_clean_console("the listing").await;

    // Into the sub-folder by its link, back by the breadcrumb.
    client
        .find(Locator::LinkText("docs/"))
        .await
        .expect("the folder's link")
        .click()
        .await
        .expect("click the folder");
    let state = browser
        .until("the sub-folder is listed", |s| {
            s.hash == "#path=docs" && s.settled() && s.listed() == [("inner.txt", "6 B")]
        })
        .await;
    assert_eq!(state.crumbs, ["PROJ-1", "docs"]);
    client
        .find(Locator::LinkText("PROJ-1"))
        .await
        .expect("the breadcrumb to the issue's folder")
        .click()
        .await
        .expect("click the breadcrumb");
    browser
        .until("back in the issue's folder", |s| {
            s.hash == "#path=" && s.settled() && s.rows.len() == 3
        })
        .await;
    client
        .find(Locator::LinkText("docs/"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .until("the sub-folder again", |s| {
            s.settled() && s.listed() == [("inner.txt", "6 B")]
        })
        .await;
    browser.assert_clean_console("navigating").await;

    // Upload into the sub-folder through the file input: byte-identical on disk, listed.
    let local = tempfile::tempdir().unwrap();
    let name = "upload ü+1.bin";
    let bytes = pattern(70_000);
    let source = local.path().join(name);
    std::fs::write(&source, &bytes).unwrap();
    client
        .find(Locator::Id("file"))
        .await
        .expect("the file input")
        .send_keys(source.to_str().unwrap())
        .await
        .expect("choose the file");
    let state = browser
        .until("the uploaded file is listed", |s| {
            s.settled() && s.rows.iter().any(|r| r.name == name)
        })
        .await;
    assert_eq!(
        state.listed(),
        [("inner.txt", "6 B"), (name, "68.4 KiB")],
        "listed beside what was there"
    );
    let on_disk = folder.join("docs").join(name);
    assert_eq!(
        std::fs::read(&on_disk).expect("the upload is on disk"),
        bytes,
        "byte-identical"
    );
    // The same file again, changed since: the input takes it (a second change event) and the
    // upload replaces the first.
    let bytes = pattern(1_500);
    std::fs::write(&source, &bytes).unwrap();
    client
        .find(Locator::Id("file"))
        .await
        .unwrap()
        .send_keys(source.to_str().unwrap())
        .await
        .expect("choose the file again");
    let state = browser
        .until("the replaced file is listed", |s| {
            s.settled() && s.rows.iter().any(|r| r.name == name && r.size == "1.5 KiB")
        })
        .await;
    assert_eq!(state.rows.len(), 2, "{state:#?}");
    assert_eq!(std::fs::read(&on_disk).unwrap(), bytes, "replaced on disk");
    browser.assert_clean_console("uploading").await;

    // The file's link downloads it, with the user's cookies, as an attachment.
    let href = state.row(name).href.clone().expect("a download link");
    assert!(
        href.starts_with(&app.url("/api/v1/issues/PROJ-1/files/content?path=")),
        "{href}"
    );
    let (status, headers, body) = fetch_in_page(&browser, &href).await;
    assert_eq!(status, 200, "{headers}");
    assert!(
        headers["disposition"]
            .as_str()
            .is_some_and(|d| d.starts_with("attachment;")),
        "{headers}"
    );
    assert_eq!(body, bytes, "the download is the uploaded file");
    client
        .find(Locator::LinkText("PROJ-1"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let report = browser
        .until("the issue's folder for the report's link", |s| {
            s.hash == "#path=" && s.settled() && s.rows.len() == 3
        })
        .await;
    let (status, _, body) =
        fetch_in_page(&browser, report.row("report.bin").href.as_deref().unwrap()).await;
    assert_eq!((status, body), (200, pattern(2500)));
    browser.assert_clean_console("downloading").await;

    // The check above would see a violation: an inline script is refused and reported.
    client
        .execute(
            r#"const s = document.createElement("script");
               s.textContent = "window.inlineRan = true";
               document.body.append(s);
               return window.inlineRan === true;"#,
            vec![],
        )
        .await
        .map(|ran| assert_eq!(ran, json!(false), "the page's CSP refuses inline scripts"))
        .unwrap();
    let seen = browser
        .console_until("the CSP violation of an inline script", |e| {
            e.is_problem() && e.mentions_csp()
        })
        .await;
    let others: Vec<&LogEntry> = seen
        .iter()
        .filter(|e| e.is_problem() && !e.message.contains("inline script"))
        .collect();
    assert!(others.is_empty(), "the console shows {others:#?}");

    // A user who may look but not attach: the refused upload is explained, the list stays.
    client.delete_all_cookies().await.unwrap();
    client.add_cookie(jira_cookie(BOB_SESSION)).await.unwrap();
    client.goto(&page).await.unwrap();
    browser
        .until("bob's listing", |s| s.settled() && s.rows.len() == 3)
        .await;
    let refused = local.path().join("refused.txt");
    std::fs::write(&refused, b"not allowed").unwrap();
    client
        .find(Locator::Id("file"))
        .await
        .unwrap()
        .send_keys(refused.to_str().unwrap())
        .await
        .unwrap();
    let state = browser
        .until("the refused upload is explained", |s| s.error && s.table)
        .await;
    let shown = state.status.clone().unwrap_or_default();
    assert!(
        shown.starts_with("refused.txt: Forbidden: ")
            && shown.contains("CREATE_ATTACHMENTS")
            && shown.ends_with("(403)"),
        "shows {shown:?}"
    );
    assert_eq!(state.rows.len(), 3, "{state:#?}");
    assert!(!folder.join("refused.txt").exists(), "nothing stored");
    expect_only_refusals(&browser, "bob's upload", "/files/content", 403).await;

    // A user who may not see the issue gets the page with the API's answer on it.
    let api_answer: Value = app
        .client
        .get(app.url("/api/v1/issues/PROJ-1/files?path="))
        .header("cookie", format!("JSESSIONID={CAROL_SESSION}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api_answer["status"], 404, "{api_answer}");
    let detail = api_answer["detail"].as_str().unwrap().to_string();
    client.delete_all_cookies().await.unwrap();
    client.add_cookie(jira_cookie(CAROL_SESSION)).await.unwrap();
    client.goto(&page).await.unwrap();
    let state = browser
        .until("the refusal is shown", |s| s.error && s.status.is_some())
        .await;
    let shown = state.status.clone().unwrap();
    assert!(
        shown.contains(&detail),
        "shows {shown:?}, the API said {detail:?}"
    );
    assert!(shown.contains("404"), "shows {shown:?}");
    assert!(!state.table && !state.upload, "{state:#?}");
    assert_eq!(state.issue.as_deref(), Some("PROJ-1"));
    expect_only_refusals(&browser, "carol's listing", "/files?path=", 404).await;

    browser.close().await;
}

/// A file above Graph's 4 MiB simple-upload limit (and the 4 MiB a form part of unknown length
/// may have on SharePoint) chosen on the issue page of an issue mapped to a SharePoint
/// connection: the page's raw `PUT` carries the file's length, so it goes up in an upload
/// session and is stored whole.
// Two threads: hashing the file runs beside the app and the fake Graph.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_page_uploads_a_large_file_to_sharepoint_in_chromium() {
    let binaries = Binaries::find();
    let app = spawn_on_public_origin().await;
    crate::sharepoint_api::jira_people(&app);
    app.jira.add_session("alice", ALICE_SESSION);
    let w = crate::sharepoint_api::world_with(app).await;
    let id = w
        .create_connection(
            "legal",
            json!({"client_secret": crate::sharepoint_api::SECRET}),
        )
        .await;
    w.map(&id).await;
    // Something to list, so the page settles on a table rather than "This folder is empty."
    assert_eq!(w.put("readme.txt", b"read me".to_vec()).await.status(), 201);

    let browser = Browser::start(&binaries).await;
    let client = &browser.client;
    browser
        .with_jira_session(&w.app.url("/static/issue.css"), ALICE_SESSION)
        .await;
    client
        .goto(&w.app.url("/issues/PROJ-1"))
        .await
        .expect("open the issue page");
    browser
        .until("the issue's folder is listed", |s| {
            s.settled() && s.listed() == [("readme.txt", "7 B")]
        })
        .await;

    let local = tempfile::tempdir().unwrap();
    let name = "scan 2026.bin";
    let bytes = pattern(6 * 1024 * 1024 + 4321);
    let source = local.path().join(name);
    std::fs::write(&source, &bytes).unwrap();
    client
        .find(Locator::Id("file"))
        .await
        .expect("the file input")
        .send_keys(source.to_str().unwrap())
        .await
        .expect("choose the file");
    let state = browser
        .until("the large file is listed", |s| {
            s.settled() && s.rows.iter().any(|r| r.name == name)
        })
        .await;
    assert_eq!(
        state.listed(),
        [("readme.txt", "7 B"), (name, "6.0 MiB")],
        "listed beside what was there"
    );
    let stored = w
        .graph
        .file_bytes(&w.drive, &format!("/Jira/PROJ/PROJ-1/{name}"))
        .expect("the file is in SharePoint");
    assert_eq!(stored.len(), bytes.len(), "stored whole");
    assert_eq!(
        hex::encode(Sha256::digest(&stored)),
        hex::encode(Sha256::digest(&bytes)),
        "byte-identical"
    );
    assert!(
        w.graph.fragments_received() >= 1,
        "sent in an upload session, its size known up front"
    );
    assert_eq!(w.graph.upload_sessions(), 0, "the session is finished");
    browser
        .assert_clean_console("uploading to SharePoint")
        .await;
    browser.close().await;
}
