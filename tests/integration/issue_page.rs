//! The issue page (`GET /issues/{KEY}`) in a real browser: headless Chromium driven through
//! ChromeDriver (WebDriver) against the real application, the fake Jira and a filesystem
//! connection. The browser carries a Jira session cookie (`JSESSIONID`) for the app's origin,
//! as a Jira user's browser does behind the shared reverse proxy, and the page's script does
//! the rest: listing, sub-folders, breadcrumbs, upload and download.
//!
//! Chromium and ChromeDriver come from Debian's packages `chromium` and `chromium-driver`
//! (installed by `scripts/peers/chromium ensure-installed`, which ./scripts/test runs);
//! `CHROMIUM` and `CHROMEDRIVER` name other binaries.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::cookies::Cookie;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::free_port;
use crate::helpers::{TestApp, spawn_app_with};

/// How long any one condition in the browser may take to hold.
const WAIT: Duration = Duration::from_secs(30);

const ALICE_SESSION: &str = "alice-jsessionid-0123456789";
const BOB_SESSION: &str = "bob-jsessionid-0123456789";
const CAROL_SESSION: &str = "carol-jsessionid-0123456789";

/// PROJ with PROJ-1, mapped to a filesystem connection. alice may browse and attach, bob
/// may only browse, carol may not browse; each is signed in to Jira (a `JSESSIONID`). The page is served on
/// the origin `server.public_url` names, as behind the real proxy, so the browser's `Origin`
/// on uploads is filebridge's own.
async fn world() -> (TestApp, tempfile::TempDir) {
    let port = free_port();
    let app = spawn_app_with(|config| {
        config
            .set("SERVER__LISTEN", &format!("127.0.0.1:{port}"))
            .set(
                "SERVER__PUBLIC_URL",
                &format!("http://127.0.0.1:{port}/filebridge"),
            );
    })
    .await;
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
    let connection: Value = app
        .client
        .post(app.url("/api/v1/admin/connections"))
        .bearer_auth("root-pat")
        .json(&json!({"name": "local", "kind": "filesystem", "settings": {"root": root.path()}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = connection["id"].as_str().expect("connection created");
    let mapping = app
        .client
        .put(app.url("/api/v1/admin/projects/PROJ/mapping"))
        .bearer_auth("root-pat")
        .json(&json!({"connection_id": id, "root": "Jira/PROJ"}))
        .send()
        .await
        .unwrap();
    assert_eq!(mapping.status(), 201, "mapping created");
    (app, root)
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

// --- the browser ------------------------------------------------------------------------

fn binary(variable: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.is_file(),
        "{} is missing, so the issue page cannot be tested in a browser. Run the tests with \
         ./scripts/test, which installs Chromium and ChromeDriver through \
         `scripts/peers/chromium ensure-installed` (as root: apt-get install chromium \
         chromium-driver); {variable}=PATH names another binary.",
        path.display()
    );
    path
}

/// Where Chromium and ChromeDriver are; fails the test, naming the install step, when either
/// is missing.
struct Binaries {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

impl Binaries {
    fn find() -> Self {
        Binaries {
            chromium: binary("CHROMIUM", "/usr/bin/chromium"),
            chromedriver: binary("CHROMEDRIVER", "/usr/bin/chromedriver"),
        }
    }
}

/// ChromeDriver on a port of its own choosing with one headless Chromium session, a fresh
/// profile each time. Dropping it kills ChromeDriver's whole process group, so a failed test
/// leaves no browser behind; `close` ends the session properly first.
struct Browser {
    client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(binaries: &Binaries) -> Self {
        let Binaries {
            chromium,
            chromedriver,
        } = binaries;
        let mut driver = tokio::process::Command::new(chromedriver)
            .args(["--port=0", "--log-level=WARNING"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", chromedriver.display()));
        // "ChromeDriver was started successfully on port 40027."
        let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
        let port = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.expect("chromedriver's stdout") {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').parse::<u16>().ok();
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("chromedriver announces its port");
        // Keep reading so that chromedriver never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = Capabilities::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1200,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        // The console (errors, CSP violations) through ChromeDriver's log endpoint.
        capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session through chromedriver");
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    async fn close(self) {
        self.client
            .clone()
            .close()
            .await
            .expect("close the browser");
    }

    /// The console messages since the last call (ChromeDriver hands each out once).
    async fn console(&self) -> Vec<LogEntry> {
        let entries = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("read the browser's console");
        serde_json::from_value(entries).expect("log entries")
    }

    /// What the page shows, in one round trip.
    async fn state(&self) -> PageState {
        let value = self
            .client
            .execute(
                r##"
                const $ = (id) => document.getElementById(id);
                const shown = (id) => !!$(id) && !$(id).hidden;
                return {
                  hash: location.hash,
                  issue: $("issue") ? $("issue").textContent : null,
                  status: shown("status") ? $("status").textContent : null,
                  error: !!$("status") && $("status").classList.contains("error"),
                  table: shown("items"),
                  upload: shown("upload"),
                  crumbs: [...document.querySelectorAll("#crumbs a")].map((a) => a.textContent),
                  rows: [...document.querySelectorAll("#items tbody tr")].map((tr) => ({
                    name: tr.cells[0].textContent,
                    href: tr.querySelector("a") ? tr.querySelector("a").href : null,
                    size: tr.cells[1].textContent,
                    modified: tr.cells[2].textContent,
                  })),
                };
                "##,
                vec![],
            )
            .await
            .expect("read the page");
        serde_json::from_value(value).expect("page state")
    }

    /// Polls the page until `ready` holds, for at most [`WAIT`]; fails with the last state.
    async fn until(&self, what: &str, ready: impl Fn(&PageState) -> bool) -> PageState {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let state = self.state().await;
            if ready(&state) {
                return state;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {what}; the page shows {state:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the console until an entry satisfies `wanted`; returns everything read.
    async fn console_until(&self, what: &str, wanted: impl Fn(&LogEntry) -> bool) -> Vec<LogEntry> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            seen.extend(self.console().await);
            if seen.iter().any(&wanted) {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for a console message: {what}; seen {seen:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails on any console error or any message about the Content Security Policy.
    async fn assert_clean_console(&self, phase: &str) {
        let bad: Vec<LogEntry> = self
            .console()
            .await
            .into_iter()
            .filter(LogEntry::is_problem)
            .collect();
        assert!(bad.is_empty(), "{phase}: the console shows {bad:#?}");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium runs in ChromeDriver's process group (made for it at spawn); after a
        // proper `close` only ChromeDriver is left in it.
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// ChromeDriver's `POST /session/{id}/se/log` for the `browser` log.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(r#"{"type":"browser"}"#.to_string()),
        )
    }
}

#[derive(Debug, Deserialize)]
struct LogEntry {
    level: String,
    message: String,
}

impl LogEntry {
    fn is_problem(&self) -> bool {
        self.level == "SEVERE" || self.mentions_csp()
    }

    fn mentions_csp(&self) -> bool {
        self.message.contains("Content Security Policy")
    }
}

#[derive(Debug, Deserialize)]
struct PageState {
    hash: String,
    issue: Option<String>,
    status: Option<String>,
    error: bool,
    table: bool,
    upload: bool,
    crumbs: Vec<String>,
    rows: Vec<Row>,
}

#[derive(Debug, Deserialize)]
struct Row {
    name: String,
    href: Option<String>,
    size: String,
    modified: String,
}

impl PageState {
    fn listed(&self) -> Vec<(&str, &str)> {
        self.rows
            .iter()
            .map(|r| (r.name.as_str(), r.size.as_str()))
            .collect()
    }

    /// Loaded without an error message.
    fn settled(&self) -> bool {
        self.table && self.status.is_none() && !self.error
    }

    fn row(&self, name: &str) -> &Row {
        self.rows
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no row {name:?} in {:#?}", self.rows))
    }
}

/// The browser's session cookie for Jira, as Jira sets it on its host (path `/`, no
/// `SameSite`, so Lax).
fn jira_cookie(value: &str) -> Cookie<'static> {
    Cookie::parse(format!(
        "JSESSIONID={value}; Domain=127.0.0.1; Path=/; HttpOnly; SameSite=Lax"
    ))
    .expect("a cookie")
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
    let expected = format!("status of {status} ");
    let unexpected: Vec<LogEntry> = browser
        .console()
        .await
        .into_iter()
        .filter(|e| {
            e.is_problem()
                && !(e.message.contains(&format!("/api/v1/issues/PROJ-1{route}"))
                    && e.message.contains(&expected))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "{phase}: the console shows {unexpected:#?}"
    );
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
    // Cookies belong to an origin: visit it first (an asset, not the page), then sign in.
    client
        .goto(&app.url("/static/issue.css"))
        .await
        .expect("open the origin");
    client
        .add_cookie(jira_cookie(ALICE_SESSION))
        .await
        .expect("set the Jira cookie");
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
