//! filebridge's "Files" panel in Jira's issue view, end to end in a real browser: headless
//! Chromium (see `browser`) opens the fake Jira's `/browse/{KEY}` through real nginx or
//! Apache configured with the shipped snippets (see `proxy_peers`); the page loads
//! `/filebridge/static/jira.js` through nginx's sub_filter recipe (jira-banner.conf), Jira's
//! announcement banner, or both, and the script frames filebridge's issue page in the
//! right-hand column. The browser is signed in to Jira (`JSESSIONID` on the proxy's origin),
//! and the frame lists the issue's folder as that user.

use std::time::Duration;

use fantoccini::Locator;
use serde::Deserialize;
use serde_json::Value;

use crate::browser::{Binaries, Browser, PageState, WAIT};
use crate::proxy::{Stack, stack};
use crate::proxy_peers::Kind;

const ALICE_SESSION: &str = "alice-jsessionid-panel-0123456789";
const CAROL_SESSION: &str = "carol-jsessionid-panel-0123456789";
const BANNER: &str = r#"<script src="/filebridge/static/jira.js"></script>"#;
/// One file in each issue's folder, uploaded before the page is opened.
const PROJ_1_FILE: &str = "plan for PROJ-1.txt";
const PROJ_2_FILE: &str = "minutes of PROJ-2.txt";

/// The proxy's stack (PROJ-1 mapped to a filesystem connection) with PROJ-2 beside PROJ-1
/// and a file in each; alice (may browse and attach in PROJ) and carol (may not browse PROJ)
/// are signed in to Jira.
async fn world(kind: Kind) -> Stack {
    let s = stack(kind).await;
    let jira = &s.app.jira;
    jira.add_issue("PROJ", "PROJ-2");
    jira.add_session("alice", ALICE_SESSION);
    jira.add_user("carol", "carol");
    jira.add_session("carol", CAROL_SESSION);
    put(&s, "PROJ-1", PROJ_1_FILE, "the plan").await;
    put(&s, "PROJ-2", PROJ_2_FILE, "what was said").await;
    s
}

/// Uploads through the proxy, as someone did before the page was opened.
async fn put(s: &Stack, issue: &str, name: &str, body: &str) {
    let response = s
        .client
        .put(s.url(&format!("/api/v1/issues/{issue}/files/content")))
        .query(&[("path", name)])
        .bearer_auth("root-pat")
        .body(body.to_string())
        .send()
        .await
        .expect("upload through the proxy");
    assert_eq!(response.status(), 201, "uploaded {name} to {issue}");
}

/// A browser signed in to Jira as the owner of `session`, on the proxy's origin (cookies
/// belong to an origin: visit it first, on a filebridge asset, then sign in).
async fn signed_in(binaries: &Binaries, s: &Stack, session: &str) -> Browser {
    let browser = Browser::start(binaries).await;
    browser
        .with_jira_session(&s.url("/static/issue.css"), session)
        .await;
    browser
}

/// Jira's page as the script left it: the panel and what the script tags and Jira's markup
/// around it say.
#[derive(Debug, Deserialize)]
struct JiraPage {
    /// `document.readyState`.
    ready: String,
    /// jira.js ran (it sets `window.filebridgePanel`).
    loaded: bool,
    /// `<script src="/filebridge/static/jira.js">` tags on the page.
    scripts: usize,
    /// The issue key in Jira's header, if any.
    key: Option<String>,
    /// Elements `#filebridge-module`, anywhere.
    modules: usize,
    /// Frames inside them.
    frames: usize,
    /// The ids of `#viewissuesidebar`'s modules, in order.
    sidebar: Vec<String>,
    title: Option<String>,
    src: Option<String>,
}

/// The panel: Jira's page, and what filebridge's page inside the frame shows.
#[derive(Debug)]
struct Panel {
    page: JiraPage,
    frame: Option<Frame>,
}

#[derive(Debug)]
struct Frame {
    path: String,
    /// The frame's text, as the user reads it.
    text: String,
    state: PageState,
}

impl Panel {
    /// One module, the first in the sidebar, titled "Files", framing filebridge's page for
    /// `key` at the proxy's origin.
    fn frames(&self, origin: &str, key: &str) -> bool {
        let page = &self.page;
        page.modules == 1
            && page.frames == 1
            && page.sidebar.first().map(String::as_str) == Some("filebridge-module")
            && page.title.as_deref() == Some("Files")
            && page.src.as_deref() == Some(&format!("{origin}/filebridge/issues/{key}"))
            && self.frame.as_ref().is_some_and(|f| {
                f.path == format!("/filebridge/issues/{key}")
                    && f.state.issue.as_deref() == Some(key)
            })
    }

    /// The frame's listing, loaded without an error.
    fn listing(&self) -> Option<Vec<(&str, &str)>> {
        self.frame
            .as_ref()
            .filter(|f| f.state.settled())
            .map(|f| f.state.listed())
    }

    /// The frame's error message, once the page shows one.
    fn refusal(&self) -> Option<&str> {
        let state = &self.frame.as_ref()?.state;
        state.error.then_some(state.status.as_deref()).flatten()
    }
}

/// Entries in the tab's session history (the top page's and its frames').
async fn history_length(browser: &Browser) -> u64 {
    let length = browser
        .client
        .execute("return history.length;", vec![])
        .await
        .expect("history.length");
    length.as_u64().expect("a number")
}

async fn jira_page(browser: &Browser) -> JiraPage {
    let value = browser
        .client
        .execute(
            r##"
            const module = document.getElementById("filebridge-module");
            const frame = module && module.querySelector("iframe");
            const key = document.getElementById("key-val");
            const sidebar = document.getElementById("viewissuesidebar");
            return {
              ready: document.readyState,
              loaded: window.filebridgePanel === true,
              scripts: document.querySelectorAll('script[src="/filebridge/static/jira.js"]').length,
              key: key ? key.getAttribute("data-issue-key") : null,
              modules: document.querySelectorAll("#filebridge-module").length,
              frames: document.querySelectorAll("#filebridge-module iframe").length,
              sidebar: sidebar ? [...sidebar.children].map((m) => m.id) : [],
              title: module ? module.querySelector(".mod-header h2").textContent : null,
              src: frame ? frame.getAttribute("src") : null,
            };
            "##,
            vec![],
        )
        .await
        .expect("read Jira's page");
    serde_json::from_value(value).expect("Jira's page")
}

/// Into the panel's frame and out again: what filebridge's page shows there, or None while
/// there is no frame or it cannot be read (being replaced).
async fn frame(browser: &Browser) -> Option<Frame> {
    let client = &browser.client;
    let element = client
        .find(Locator::Css("#filebridge-module iframe"))
        .await
        .ok()?;
    element.enter_frame().await.ok()?;
    let read = async {
        let inside: Value = client
            .execute(
                "return { path: location.pathname, \
                          text: document.body ? document.body.innerText : '' };",
                vec![],
            )
            .await?;
        let state = browser.try_state().await?;
        Ok::<_, fantoccini::error::CmdError>(Frame {
            path: inside["path"].as_str().unwrap_or_default().to_string(),
            text: inside["text"].as_str().unwrap_or_default().to_string(),
            state,
        })
    }
    .await;
    client
        .enter_parent_frame()
        .await
        .expect("back to Jira's page");
    read.ok()
}

async fn panel(browser: &Browser) -> Panel {
    let page = jira_page(browser).await;
    let frame = if page.frames > 0 {
        frame(browser).await
    } else {
        None
    };
    Panel { page, frame }
}

/// Polls the panel until `ready` holds, for at most [`WAIT`]; fails with the last reading.
async fn until(browser: &Browser, what: &str, ready: impl Fn(&Panel) -> bool) -> Panel {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let panel = panel(browser).await;
        if ready(&panel) {
            return panel;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}; the page shows {panel:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Jira's page has been parsed and the script has run, and the page has rendered twice
/// since (the script places the panel on the animation frame after a change): whatever the
/// script does about the page as it is now, it has done.
async fn settle(browser: &Browser) -> JiraPage {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page = jira_page(browser).await;
        if page.ready == "complete" && page.loaded {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the page and jira.js; the page shows {page:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser
        .client
        .execute_async(
            "const done = arguments[0]; \
             requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done, 0)));",
            vec![],
        )
        .await
        .expect("two animation frames");
    jira_page(browser).await
}

/// Fails on any console problem but the refusals `allowed` (each given by substrings of
/// Chromium's "Failed to load resource" line for the refused request) and the fake Jira's
/// missing icon (`/favicon.ico`, which Chromium asks Jira's origin for at its own time).
async fn expect_console(browser: &Browser, origin: &str, phase: &str, allowed: &[&[&str]]) {
    let icon = format!("{origin}/favicon.ico");
    let icon = [icon.as_str()];
    let mut refused: Vec<&[&str]> = vec![&icon];
    refused.extend_from_slice(allowed);
    browser.expect_console(phase, &refused).await;
}

/// Through nginx with jira-banner.conf's sub_filter: the panel lists the issue's folder,
/// follows Jira when it swaps the issue view without reloading, and goes when the view does.
#[tokio::test]
async fn nginx_panel_lists_the_issue_and_follows_jira_s_view() {
    let started = std::time::Instant::now();
    let binaries = Binaries::find();
    let s = world(Kind::Nginx).await;
    let origin = s.proxy.origin.clone();
    let browser = signed_in(&binaries, &s, ALICE_SESSION).await;
    let client = &browser.client;
    client
        .goto(&format!("{origin}/browse/PROJ-1"))
        .await
        .expect("open the issue in Jira");

    let shown = until(&browser, "the panel lists PROJ-1's folder", |p| {
        p.frames(&origin, "PROJ-1") && p.listing().is_some()
    })
    .await;
    assert_eq!(shown.page.scripts, 1, "the sub_filter's tag: {shown:#?}");
    assert_eq!(
        shown.page.sidebar,
        ["filebridge-module", "peoplemodule"],
        "first in the right-hand column, beside Jira's own modules"
    );
    assert_eq!(shown.listing().unwrap(), [(PROJ_1_FILE, "8 B")]);
    let upload = shown.frame.as_ref().unwrap().state.upload;
    assert!(upload, "alice may attach: the upload form is offered");
    expect_console(&browser, &origin, "PROJ-1 in the panel", &[]).await;

    // Jira swaps the issue view for another issue without reloading the page.
    let history = history_length(&browser).await;
    client
        .execute(
            r#"const link = document.getElementById("key-val");
               link.setAttribute("data-issue-key", "PROJ-2");
               link.textContent = "PROJ-2";"#,
            vec![],
        )
        .await
        .expect("swap the issue view");
    let shown = until(&browser, "the panel lists PROJ-2's folder", |p| {
        p.frames(&origin, "PROJ-2") && p.listing().is_some()
    })
    .await;
    assert_eq!(shown.listing().unwrap(), [(PROJ_2_FILE, "13 B")]);
    assert!(!shown.frame.as_ref().unwrap().text.contains(PROJ_1_FILE));

    // Jira renders the whole issue view anew (header and right-hand column), for PROJ-1:
    // the panel comes back in the new column.
    client
        .execute(
            r##"const view = document.querySelector(".issue-view");
               const fresh = view.cloneNode(true);
               fresh.querySelector("#filebridge-module").remove();
               const link = fresh.querySelector("#key-val");
               link.setAttribute("data-issue-key", "PROJ-1");
               link.textContent = "PROJ-1";
               view.replaceWith(fresh);"##,
            vec![],
        )
        .await
        .expect("re-render the issue view");
    let shown = until(&browser, "the panel in the new column lists PROJ-1", |p| {
        p.frames(&origin, "PROJ-1") && p.listing().is_some()
    })
    .await;
    assert_eq!(shown.listing().unwrap(), [(PROJ_1_FILE, "8 B")]);

    // Jira changes only the link's data-issue-key (which the script reads first).
    client
        .execute(
            r#"document.getElementById("key-val").setAttribute("data-issue-key", "PROJ-2");"#,
            vec![],
        )
        .await
        .expect("change the issue key");
    let shown = until(&browser, "the panel follows the key to PROJ-2", |p| {
        p.frames(&origin, "PROJ-2") && p.listing().is_some()
    })
    .await;
    assert_eq!(shown.listing().unwrap(), [(PROJ_2_FILE, "13 B")]);
    expect_console(&browser, &origin, "following the issue view", &[]).await;

    // Following Jira added nothing to the browser's history: Back leaves Jira's page (for the
    // page opened before it) instead of taking the frame back to an earlier issue's folder
    // beside the issue on view.
    assert_eq!(
        history_length(&browser).await,
        history,
        "the panel's issue changes added history entries"
    );
    client.back().await.expect("Back");
    let before = s.url("/static/issue.css");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let url = client.current_url().await.expect("the address").to_string();
        if url == before {
            break;
        }
        let now = panel(&browser).await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "Back stays on {url}, showing {now:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The issue view goes (Jira shows something else): so does the panel.
    client
        .goto(&format!("{origin}/browse/PROJ-1"))
        .await
        .expect("open the issue again");
    until(&browser, "the panel lists PROJ-1's folder again", |p| {
        p.frames(&origin, "PROJ-1") && p.listing().is_some()
    })
    .await;
    client
        .execute(r#"document.getElementById("key-val").remove();"#, vec![])
        .await
        .expect("remove the issue link");
    let gone = until(&browser, "the panel is gone", |p| p.page.modules == 0).await;
    assert_eq!(gone.page.key, None);
    assert_eq!(gone.page.sidebar, ["peoplemodule"]);
    expect_console(&browser, &origin, "the issue view gone", &[]).await;

    browser.close().await;
    eprintln!("nginx panel: {:.1?}", started.elapsed());
}

/// The panel through `kind`, the script loaded by Jira's announcement banner (and through
/// nginx also by the sub_filter): one panel listing the issue's folder.
async fn banner_panel(kind: Kind) {
    let started = std::time::Instant::now();
    let binaries = Binaries::find();
    let s = world(kind).await;
    s.app.jira.set_announcement_banner(Some(BANNER));
    let origin = s.proxy.origin.clone();
    let browser = signed_in(&binaries, &s, ALICE_SESSION).await;
    browser
        .client
        .goto(&format!("{origin}/browse/PROJ-1"))
        .await
        .expect("open the issue in Jira");
    let shown = until(&browser, "the panel lists PROJ-1's folder", |p| {
        p.frames(&origin, "PROJ-1") && p.listing().is_some()
    })
    .await;
    assert_eq!(shown.listing().unwrap(), [(PROJ_1_FILE, "8 B")]);
    // Apache: the banner's tag only; nginx: the sub_filter's too.
    let tags = if kind == Kind::Nginx { 2 } else { 1 };
    assert_eq!(shown.page.scripts, tags, "{shown:#?}");
    // Both copies have run by now, and the page has rendered since: still one panel.
    let page = settle(&browser).await;
    assert_eq!((page.modules, page.frames), (1, 1), "{page:#?}");
    expect_console(&browser, &origin, "the banner's panel", &[]).await;
    browser.close().await;
    eprintln!("{kind:?} banner panel: {:.1?}", started.elapsed());
}

#[tokio::test]
async fn apache_panel_from_the_announcement_banner() {
    banner_panel(Kind::Apache).await;
}

#[tokio::test]
async fn nginx_panel_from_banner_and_sub_filter_is_one_panel() {
    banner_panel(Kind::Nginx).await;
}

/// A user who may not browse the project sees the panel (jira.js asks nothing of Jira)
/// with filebridge's refusal inside, and nothing of the folder.
#[tokio::test]
async fn nginx_panel_shows_the_refusal_to_a_user_without_permission() {
    let started = std::time::Instant::now();
    let binaries = Binaries::find();
    let s = world(Kind::Nginx).await;
    let origin = s.proxy.origin.clone();
    // What the API says to carol, through the proxy.
    let answer = s
        .client
        .get(s.url("/api/v1/issues/PROJ-1/files?path="))
        .header("cookie", format!("JSESSIONID={CAROL_SESSION}"))
        .send()
        .await
        .expect("the API as carol");
    let status = answer.status().as_u16();
    let problem: Value = answer.json().await.expect("a problem document");
    assert!(matches!(status, 403 | 404), "{status}: {problem}");
    let detail = problem["detail"].as_str().expect("a detail").to_string();

    let browser = signed_in(&binaries, &s, CAROL_SESSION).await;
    browser
        .client
        .goto(&format!("{origin}/browse/PROJ-1"))
        .await
        .expect("open the issue in Jira");
    let shown = until(&browser, "the panel shows the refusal", |p| {
        p.frames(&origin, "PROJ-1") && p.refusal().is_some()
    })
    .await;
    let refusal = shown.refusal().unwrap();
    assert!(
        refusal.contains(&detail) && refusal.ends_with(&format!("({status})")),
        "shows {refusal:?}; the API said {status} {detail:?}"
    );
    let frame = shown.frame.as_ref().unwrap();
    assert!(
        !frame.state.table && !frame.state.upload && frame.state.rows.is_empty(),
        "{frame:#?}"
    );
    assert!(!frame.text.contains(PROJ_1_FILE), "{frame:#?}");
    // The refused request is the one console error (Chromium's line for any answer >= 400).
    expect_console(
        &browser,
        &origin,
        "carol's panel",
        &[&[
            "/filebridge/api/v1/issues/PROJ-1/files?path=",
            &format!("status of {status} "),
        ]],
    )
    .await;
    browser.close().await;
    eprintln!("refusal in the panel: {:.1?}", started.elapsed());
}

/// A Jira page that is not an issue view (here Jira's page for an issue that does not
/// exist) loads the script too, and gets no panel, also after the page changes.
#[tokio::test]
async fn nginx_no_panel_outside_the_issue_view() {
    let started = std::time::Instant::now();
    let binaries = Binaries::find();
    let s = world(Kind::Nginx).await;
    let origin = s.proxy.origin.clone();
    let browser = signed_in(&binaries, &s, ALICE_SESSION).await;
    let client = &browser.client;
    client
        .goto(&format!("{origin}/browse/NOPE-1"))
        .await
        .expect("open Jira's page for a missing issue");
    let page = settle(&browser).await;
    assert_eq!(
        page.scripts, 1,
        "the sub_filter added the script: {page:#?}"
    );
    assert_eq!(page.key, None, "no issue view: {page:#?}");
    assert_eq!((page.modules, page.frames), (0, 0), "{page:#?}");
    let text: Value = client
        .execute("return document.body.innerText;", vec![])
        .await
        .unwrap();
    assert!(
        text.as_str().unwrap().contains("does not exist"),
        "Jira's page: {text}"
    );

    // The page changes (the script looks again): still nothing.
    client
        .execute(
            r#"const note = document.createElement("div");
               note.textContent = "something else";
               document.body.append(note);"#,
            vec![],
        )
        .await
        .unwrap();
    let page = settle(&browser).await;
    assert_eq!((page.modules, page.frames), (0, 0), "{page:#?}");
    expect_console(&browser, &origin, "a page without an issue", &[]).await;
    browser.close().await;
    eprintln!("no panel: {:.1?}", started.elapsed());
}
