//! The sign-in in Chromium: on the issue page itself, and framed in Jira's panel.

use fake_graph::AuthorizeOutcome;
use fantoccini::Locator;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::{create_connection, microsoft, world_on};
use super::returning;
use crate::browser::{Binaries, Browser, WAIT};
use crate::helpers::{free_port, spawn_app_with};
use crate::proxy::stack;
use crate::proxy_peers::Kind;

const ALICE_SESSION: &str = "alice-jsessionid-sign-in-0123456789";

/// The page's connect prompt, as the user sees it.
#[derive(Debug, Deserialize)]
struct Prompt {
    shown: bool,
    text: String,
    href: Option<String>,
    target: String,
    rel: String,
    /// The note that the sign-in opens in a new tab.
    tab: bool,
    /// The page's status line, if shown.
    status: Option<String>,
}

async fn prompt(browser: &Browser) -> Result<Prompt, fantoccini::error::CmdError> {
    let value = browser
        .client
        .execute(
            r#"
            const $ = (id) => document.getElementById(id);
            const link = $("connect-link");
            return {
              shown: !!$("connect") && !$("connect").hidden,
              text: $("connect") ? $("connect").innerText : "",
              href: link && link.hasAttribute("href") ? link.href : null,
              target: link ? link.target : "",
              rel: link ? link.rel : "",
              tab: !!$("connect-tab") && !$("connect-tab").hidden,
              status: $("status") && !$("status").hidden ? $("status").textContent : null,
            };
            "#,
            vec![],
        )
        .await?;
    Ok(serde_json::from_value(value).expect("the prompt"))
}

/// Polls until `ready` holds (`read` gives None while there is nothing to read yet), for at
/// most [`WAIT`]; fails with the last reading.
async fn poll<T: std::fmt::Debug>(
    what: &str,
    mut read: impl AsyncFnMut() -> Option<T>,
    ready: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let last = read().await;
        if last.as_ref().is_some_and(&ready) {
            return last.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}; last read {last:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The body's text and the address of the current document.
async fn document(browser: &Browser) -> Option<(String, String)> {
    let value: Value = browser
        .client
        .execute(
            "return [location.href, document.body ? document.body.innerText : ''];",
            vec![],
        )
        .await
        .ok()?;
    Some((
        value[0].as_str()?.to_string(),
        value[1].as_str()?.to_string(),
    ))
}

/// The issue page on its own, in Chromium: alice has no Microsoft account connected, so the
/// page asks her to connect it, with a link to the connection's `connect_url` and the page
/// (folder included) as `return_to`. She declines Microsoft's consent the first time and
/// lands on the callback's page, whose "Try again" link goes the same way; then she accepts,
/// and the browser comes back to the folder she was in, which lists the file SharePoint
/// holds. The app listens where its `server.public_url` says (Microsoft's redirect URI), as
/// behind the real proxy.
#[tokio::test]
async fn issue_page_asks_to_connect_and_comes_back_with_the_files_in_chromium() {
    let binaries = Binaries::find();
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}/filebridge");
    let app = spawn_app_with(|config| {
        config
            .set("SERVER__LISTEN", &format!("127.0.0.1:{port}"))
            .set("SERVER__PUBLIC_URL", &public);
    })
    .await;
    let world = world_on(app, &public).await;
    world.app.jira.add_session("alice", ALICE_SESSION);
    world.graph.put_file(
        &world.drive,
        "/Jira/PROJ/PROJ-1/Q3 plans/plan.txt",
        "the plan",
    );
    world
        .graph
        .put_file(&world.drive, "/Jira/PROJ/PROJ-1/top.txt", "top");
    // The "browser" at Microsoft is alice's Microsoft account.
    world.graph.sign_in(&world.ms_alice);

    let browser = Browser::start(&binaries).await;
    let client = &browser.client;
    browser
        .with_jira_session(&world.app.url("/static/issue.css"), ALICE_SESSION)
        .await;
    let page = world.app.url("/issues/PROJ-1#path=Q3%20plans");
    client.goto(&page).await.expect("open the issue page");

    let asked = poll(
        "the connect prompt",
        async || prompt(&browser).await.ok(),
        |p| p.shown,
    )
    .await;
    assert!(
        asked
            .text
            .contains("Connect your Microsoft account to see this issue's files"),
        "{asked:#?}"
    );
    let expected = returning(&world.connect_url(), "/issues/PROJ-1#path=Q3%20plans");
    assert_eq!(asked.href.as_deref(), Some(expected.as_str()), "{asked:#?}");
    assert_eq!(asked.target, "", "the same tab: {asked:#?}");
    assert!(!asked.tab, "no new-tab note outside Jira: {asked:#?}");
    assert_eq!(
        asked.status, None,
        "no error besides the prompt: {asked:#?}"
    );
    let state = browser.until("no listing", |s| !s.table && !s.upload).await;
    assert!(state.rows.is_empty(), "{state:#?}");

    // Declined at Microsoft: the callback's page, with Microsoft's reason and a way back.
    world.graph.script_authorize(AuthorizeOutcome::AccessDenied);
    client
        .find(Locator::Id("connect-link"))
        .await
        .expect("the connect link")
        .click()
        .await
        .expect("follow it");
    let (url, text) = poll(
        "the callback's page",
        async || document(&browser).await,
        |(url, _)| url.contains("/oauth/microsoft/callback?"),
    )
    .await;
    assert!(
        url.starts_with(&format!("{public}/oauth/microsoft/callback?")),
        "{url}"
    );
    assert!(
        text.contains("Your Microsoft account was not connected"),
        "{text}"
    );
    assert!(text.contains("User declined to consent"), "{text}");
    let again = client
        .find(Locator::LinkText("Try again"))
        .await
        .expect("the try-again link");
    assert_eq!(
        again.attr("href").await.unwrap().as_deref(),
        Some(expected.as_str())
    );
    assert_eq!(
        world.accounts("alice-pat").await["items"][0]["connected"],
        false,
        "declining connected nothing"
    );

    // Accepted: back in the folder she was in, listed.
    again.click().await.expect("try again");
    let state = browser
        .until("back on the issue page, listing the folder", |s| {
            s.settled() && s.listed() == [("plan.txt", "8 B")]
        })
        .await;
    assert_eq!(state.hash, "#path=Q3%20plans");
    assert_eq!(state.crumbs, ["PROJ-1", "Q3 plans"]);
    assert_eq!(client.current_url().await.unwrap().as_str(), page);
    assert!(!prompt(&browser).await.unwrap().shown);
    assert_eq!(
        world.accounts("alice-pat").await["items"][0]["account"],
        "alice@contoso.onmicrosoft.com"
    );
    assert_eq!(world.actions().await, ["storage_account.connect"]);

    // Microsoft stops honouring her grant while the page is open: her next upload is refused
    // (409), and the page asks again instead of showing the refusal.
    world.graph.revoke_grant(&world.ms_alice);
    world.graph.expire_access_tokens();
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("late.txt");
    std::fs::write(&source, b"late").unwrap();
    client
        .find(Locator::Id("file"))
        .await
        .expect("the file input")
        .send_keys(source.to_str().unwrap())
        .await
        .expect("choose the file");
    let asked = poll(
        "the connect prompt after the upload",
        async || prompt(&browser).await.ok(),
        |p| p.shown,
    )
    .await;
    assert_eq!(asked.href.as_deref(), Some(expected.as_str()), "{asked:#?}");
    assert_eq!(
        asked.status, None,
        "the prompt, not the refusal: {asked:#?}"
    );
    let stored = world
        .graph
        .file_bytes(&world.drive, "/Jira/PROJ/PROJ-1/Q3 plans/late.txt");
    assert_eq!(stored, None);
    // Chromium's lines for the refusals themselves (409 listing and upload, 400 callback),
    // nothing else.
    browser
        .expect_console(
            "the sign-in",
            &[
                &["/api/v1/issues/PROJ-1/files", "status of 409 "],
                &["/oauth/microsoft/callback?", "status of 400 "],
            ],
        )
        .await;
    browser.close().await;
}

/// What the panel's frame shows: the prompt and the listing. None while there is no frame or
/// it cannot be read.
async fn framed(browser: &Browser) -> Option<(Prompt, Vec<String>)> {
    let client = &browser.client;
    let element = client
        .find(Locator::Css("#filebridge-module iframe"))
        .await
        .ok()?;
    element.enter_frame().await.ok()?;
    let read = async {
        let prompt = prompt(browser).await.ok()?;
        let state = browser.try_state().await.ok()?;
        let listed = if state.settled() {
            state.rows.iter().map(|r| r.name.clone()).collect()
        } else {
            Vec::new()
        };
        Some((prompt, listed))
    }
    .await;
    client
        .enter_parent_frame()
        .await
        .expect("back to Jira's page");
    read
}

/// Jira's issue view through nginx with the "Files" panel (jira.js), PROJ mapped to a
/// delegated connection: the framed page asks alice to connect with a link that opens a new
/// tab (Microsoft's sign-in refuses to be framed) and carries no `return_to`, so the tab ends
/// on the "connected, you can close this tab" page. She signs in there and closes the tab;
/// back on Jira's page, the panel lists the issue's file without a reload of Jira's page.
#[tokio::test]
async fn jira_panel_opens_the_sign_in_in_a_tab_and_lists_once_back() {
    let binaries = Binaries::find();
    let s = stack(Kind::Nginx).await;
    let origin = s.proxy.origin.clone();
    let public = format!("{origin}/filebridge");
    let ms = microsoft(&public).await;
    let id = create_connection(&s.app, "sp-delegated", ms.settings()).await;
    // PROJ was on a filesystem connection; now its issues' files are in SharePoint.
    let mapping = s
        .client
        .put(s.url("/api/v1/admin/projects/PROJ/mapping"))
        .bearer_auth("root-pat")
        .json(&json!({"connection_id": id, "root": "PROJ"}))
        .send()
        .await
        .expect("map PROJ");
    assert_eq!(mapping.status(), StatusCode::OK, "mapping replaced");
    s.app.jira.add_session("alice", ALICE_SESSION);
    ms.graph
        .put_file(&ms.drive, "/Jira/PROJ/PROJ-1/plan.txt", "the plan");
    ms.graph.sign_in(&ms.ms_alice);

    let browser = Browser::start(&binaries).await;
    let client = &browser.client;
    browser
        .with_jira_session(&s.url("/static/issue.css"), ALICE_SESSION)
        .await;
    client
        .goto(&format!("{origin}/browse/PROJ-1"))
        .await
        .expect("open the issue in Jira");
    let jira_tab = client.window().await.expect("Jira's tab");

    let (asked, _) = poll(
        "the panel's connect prompt",
        async || framed(&browser).await,
        |(p, _)| p.shown,
    )
    .await;
    let connect_url = format!("{public}/api/v1/storage-accounts/{id}/connect");
    assert_eq!(
        asked.href.as_deref(),
        Some(connect_url.as_str()),
        "{asked:#?}"
    );
    assert_eq!(asked.target, "_blank", "{asked:#?}");
    assert!(asked.rel.split(' ').any(|r| r == "noopener"), "{asked:#?}");
    assert!(asked.tab, "the new-tab note: {asked:#?}");

    // Into the frame, follow the link: a new tab.
    client
        .find(Locator::Css("#filebridge-module iframe"))
        .await
        .expect("the frame")
        .enter_frame()
        .await
        .expect("into the frame");
    client
        .find(Locator::Id("connect-link"))
        .await
        .expect("the connect link")
        .click()
        .await
        .expect("follow it");
    client
        .enter_parent_frame()
        .await
        .expect("back to Jira's page");
    let tabs = poll(
        "the sign-in's tab",
        async || client.windows().await.ok(),
        |w| w.len() == 2,
    )
    .await;
    let sign_in_tab = tabs
        .into_iter()
        .find(|w| *w != jira_tab)
        .expect("a new tab");
    client
        .switch_to_window(sign_in_tab)
        .await
        .expect("to the sign-in's tab");
    let (url, text) = poll(
        "the connected page",
        async || document(&browser).await,
        |(_, text)| text.contains("connected"),
    )
    .await;
    assert!(
        url.starts_with(&format!("{public}/oauth/microsoft/callback?")),
        "{url}"
    );
    assert!(text.contains("You can close this tab"), "{text}");

    // She closes the tab: Jira's tab is shown again, and the panel looks again.
    client.close_window().await.expect("close the tab");
    client
        .switch_to_window(jira_tab)
        .await
        .expect("back to Jira's tab");
    let (after, listed) = poll(
        "the panel lists the file",
        async || framed(&browser).await,
        |(_, listed)| !listed.is_empty(),
    )
    .await;
    assert_eq!(listed, ["plan.txt"]);
    assert!(!after.shown, "{after:#?}");
    let accounts: Value = s
        .client
        .get(s.url("/api/v1/storage-accounts"))
        .bearer_auth("alice-pat")
        .send()
        .await
        .expect("alice's accounts")
        .json()
        .await
        .expect("JSON");
    assert_eq!(accounts["items"][0]["connected"], true, "{accounts}");
    browser
        .expect_console(
            "the panel's sign-in",
            &[
                &["/api/v1/issues/PROJ-1/files?path=", "status of 409 "],
                &[&format!("{origin}/favicon.ico")],
            ],
        )
        .await;
    browser.close().await;
}
