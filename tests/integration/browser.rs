//! Headless Chromium driven through ChromeDriver (WebDriver), for the tests of filebridge's
//! pages in a real browser: the issue page on its own (`issue_page`) and framed in Jira's
//! issue view by jira.js (`jira_panel`). Each test starts its own ChromeDriver on a port of
//! its choosing with a fresh profile; the browser carries a Jira session cookie
//! (`JSESSIONID`), as a Jira user's browser does behind the shared reverse proxy.
//!
//! Chromium and ChromeDriver come from Debian's packages `chromium` and `chromium-driver`
//! (installed by `scripts/peers/chromium ensure-installed`, which ./scripts/test runs);
//! `CHROMIUM` and `CHROMEDRIVER` name other binaries.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::cookies::Cookie;
use fantoccini::error::CmdError;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

/// How long any one condition in the browser may take to hold.
pub const WAIT: Duration = Duration::from_secs(30);

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
pub struct Binaries {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

impl Binaries {
    pub fn find() -> Self {
        Binaries {
            chromium: binary("CHROMIUM", "/usr/bin/chromium"),
            chromedriver: binary("CHROMEDRIVER", "/usr/bin/chromedriver"),
        }
    }
}

/// ChromeDriver on a port of its own choosing with one headless Chromium session, a fresh
/// profile each time. Dropping it kills ChromeDriver's whole process group, so a failed test
/// leaves no browser behind; `close` ends the session properly first.
pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start(binaries: &Binaries) -> Self {
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

    pub async fn close(self) {
        self.client
            .clone()
            .close()
            .await
            .expect("close the browser");
    }

    /// The console messages since the last call (ChromeDriver hands each out once).
    pub async fn console(&self) -> Vec<LogEntry> {
        let entries = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("read the browser's console");
        serde_json::from_value(entries).expect("log entries")
    }

    /// What filebridge's issue page shows, in one round trip.
    async fn state(&self) -> PageState {
        self.try_state().await.expect("read the page")
    }

    /// What filebridge's issue page shows, if the current document (the page, or the frame
    /// entered) can be read at all; a frame being replaced cannot.
    pub async fn try_state(&self) -> Result<PageState, CmdError> {
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
            .await?;
        Ok(serde_json::from_value(value).expect("page state"))
    }

    /// Polls the page until `ready` holds, for at most [`WAIT`]; fails with the last state.
    pub async fn until(&self, what: &str, ready: impl Fn(&PageState) -> bool) -> PageState {
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

    /// Carries the Jira session `session` on `asset`'s origin, as a signed-in Jira user's
    /// browser does. Cookies belong to an origin, so it visits the origin first (`asset`, a
    /// static file, not a page).
    pub async fn with_jira_session(&self, asset: &str, session: &str) {
        self.client.goto(asset).await.expect("open the origin");
        self.client
            .add_cookie(jira_cookie(session))
            .await
            .expect("set the Jira cookie");
    }

    /// Fails on any console problem since the last look but Chromium's "Failed to load
    /// resource" lines for the refused requests `refused` describes (each by substrings that
    /// must all be in the line).
    pub async fn expect_console(&self, phase: &str, refused: &[&[&str]]) {
        let unexpected: Vec<LogEntry> = self
            .console()
            .await
            .into_iter()
            .filter(|e| {
                e.is_problem()
                    && !(e.message.contains("Failed to load resource")
                        && refused
                            .iter()
                            .any(|parts| parts.iter().all(|part| e.message.contains(part))))
            })
            .collect();
        assert!(
            unexpected.is_empty(),
            "{phase}: the console shows {unexpected:#?}"
        );
    }

    /// Polls the console until an entry satisfies `wanted`; returns everything read.
    pub async fn console_until(
        &self,
        what: &str,
        wanted: impl Fn(&LogEntry) -> bool,
    ) -> Vec<LogEntry> {
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
    pub async fn assert_clean_console(&self, phase: &str) {
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
pub struct LogEntry {
    pub level: String,
    pub message: String,
}

impl LogEntry {
    pub fn is_problem(&self) -> bool {
        self.level == "SEVERE" || self.mentions_csp()
    }

    pub fn mentions_csp(&self) -> bool {
        self.message.contains("Content Security Policy")
    }
}

#[derive(Debug, Deserialize)]
pub struct PageState {
    pub hash: String,
    pub issue: Option<String>,
    pub status: Option<String>,
    pub error: bool,
    pub table: bool,
    pub upload: bool,
    pub crumbs: Vec<String>,
    pub rows: Vec<Row>,
}

#[derive(Debug, Deserialize)]
pub struct Row {
    pub name: String,
    pub href: Option<String>,
    pub size: String,
    pub modified: String,
}

impl PageState {
    pub fn listed(&self) -> Vec<(&str, &str)> {
        self.rows
            .iter()
            .map(|r| (r.name.as_str(), r.size.as_str()))
            .collect()
    }

    /// Loaded without an error message.
    pub fn settled(&self) -> bool {
        self.table && self.status.is_none() && !self.error
    }

    pub fn row(&self, name: &str) -> &Row {
        self.rows
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no row {name:?} in {:#?}", self.rows))
    }
}

/// The browser's session cookie for Jira, as Jira sets it on its host (path `/`, no
/// `SameSite`, so Lax).
pub fn jira_cookie(value: &str) -> Cookie<'static> {
    Cookie::parse(format!(
        "JSESSIONID={value}; Domain=127.0.0.1; Path=/; HttpOnly; SameSite=Lax"
    ))
    .expect("a cookie")
}
