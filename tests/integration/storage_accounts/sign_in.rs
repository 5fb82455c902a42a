//! The sign-in as users meet it. In Chromium (`in_chromium`): the issue page of a delegated
//! connection asks a user without an account to connect it, the link goes through the fake
//! Microsoft sign-in (declined once, then accepted) and back to the page, which lists the
//! issue's files; in Jira's panel (through nginx, see `jira_panel`) the link opens a tab of
//! its own and the framed page lists the files once the user comes back. Over HTTP (here): a
//! sign-in Microsoft did not complete is a page for a browser and the problem document for
//! others, uses up its state and connects nothing.

mod in_chromium;

use fake_graph::AuthorizeOutcome;
use reqwest::StatusCode;
use serde_json::Value;

use super::{World, world};

/// What Chromium sends when it navigates.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,\
                              image/avif,image/webp,image/apng,*/*;q=0.8";

/// `connect_url?return_to=…`, encoded as the page and the callback's "Try again" link do.
fn returning(connect_url: &str, path: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("return_to", path)
        .finish();
    format!("{connect_url}?{query}")
}

/// Microsoft's redirect back, followed with the state cookie and `accept`.
async fn callback_accepting(
    world: &World,
    callback: &str,
    cookie: &str,
    accept: &str,
) -> reqwest::Response {
    world
        .app
        .client
        .get(world.app.url(callback))
        .header("cookie", cookie)
        .header("accept", accept)
        .send()
        .await
        .unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_declined_sign_in_is_a_page_for_the_browser_uses_up_its_state_and_connects_nothing() {
    let world = world().await;
    world.graph.script_authorize(AuthorizeOutcome::AccessDenied);
    let sign_in = world
        .sign_in_returning("alice-pat", &world.ms_alice, Some("/issues/PROJ-1"))
        .await;
    assert!(
        sign_in.callback.contains("error=access_denied"),
        "{}",
        sign_in.callback
    );

    // The browser: a page saying what happened, Microsoft's reason, and a way to try again
    // (the same connection, back to the same page).
    let page = callback_accepting(&world, &sign_in.callback, &sign_in.cookie, BROWSER_ACCEPT).await;
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert!(header(&page, "content-security-policy").contains("default-src 'none'"));
    assert_eq!(header(&page, "cache-control"), "no-store");
    let removal = header(&page, "set-cookie");
    assert!(
        removal.starts_with("filebridge_oauth_state=;") && removal.contains("Max-Age=0"),
        "the state cookie goes: {removal}"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Your Microsoft account was not connected"),
        "{html}"
    );
    assert!(
        html.contains("access_denied: AADSTS65004: User declined to consent to access the app."),
        "Microsoft's reason: {html}"
    );
    let again = returning(&world.connect_url(), "/issues/PROJ-1");
    assert!(
        html.contains(&format!(r#"<a href="{again}">Try again</a>"#)),
        "{again} in {html}"
    );

    // The state was used up by that answer: the same callback again is refused, as a page
    // that offers no sign-in of its own (this one is not known any more).
    let replay =
        callback_accepting(&world, &sign_in.callback, &sign_in.cookie, BROWSER_ACCEPT).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        header(&replay, "set-cookie"),
        "",
        "an unknown sign-in's cookie may be another tab's: it stays"
    );
    let html = replay.text().await.unwrap();
    assert!(html.contains("not valid any more"), "{html}");
    assert!(!html.contains("Try again"), "{html}");

    // Without a state at all: refused as before (a page, too).
    let missing = callback_accepting(
        &world,
        "/oauth/microsoft/callback?code=x",
        &sign_in.cookie,
        BROWSER_ACCEPT,
    )
    .await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert!(missing.text().await.unwrap().contains("not valid any more"));

    // API clients (asking for JSON, or for anything) keep the problem document.
    for accept in ["application/json", "*/*"] {
        world.graph.script_authorize(AuthorizeOutcome::AccessDenied);
        let sign_in = world.sign_in("alice-pat", &world.ms_alice).await;
        let refused = callback_accepting(&world, &sign_in.callback, &sign_in.cookie, accept).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{accept}");
        assert_eq!(
            header(&refused, "content-type"),
            "application/problem+json",
            "{accept}"
        );
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(problem["code"], "bad_request", "{problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail
                .starts_with("Microsoft did not complete the sign-in: access_denied: AADSTS65004"),
            "{problem}"
        );
        let replay = callback_accepting(&world, &sign_in.callback, &sign_in.cookie, accept).await;
        assert_eq!(replay.status(), StatusCode::BAD_REQUEST, "{accept}");
        let problem: Value = replay.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains("already used"),
            "{problem}"
        );
    }

    // Nothing connected, and nothing recorded: failed sign-ins are not audited.
    assert_eq!(
        world.accounts("alice-pat").await["items"][0]["connected"],
        false
    );
    assert!(world.actions().await.is_empty());
    // Alice tries again, and this time accepts.
    world.connect("alice-pat", &world.ms_alice).await;
    assert_eq!(world.actions().await, ["storage_account.connect"]);
}

#[tokio::test]
async fn a_sign_in_that_cannot_be_finished_is_a_page_too() {
    let world = world().await;
    let sign_in = world
        .sign_in_returning("alice-pat", &world.ms_alice, Some("/issues/PROJ-1"))
        .await;
    // Microsoft refuses the app's credential when filebridge redeems the code (the secret
    // expired in between, say).
    world.graph.remove_client_secrets(&world.client);
    let page = callback_accepting(&world, &sign_in.callback, &sign_in.cookie, BROWSER_ACCEPT).await;
    assert_eq!(page.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert!(header(&page, "set-cookie").starts_with("filebridge_oauth_state=;"));
    let html = page.text().await.unwrap();
    assert!(html.contains("filebridge could not finish it"), "{html}");
    let again = returning(&world.connect_url(), "/issues/PROJ-1");
    assert!(
        html.contains(&format!(r#"<a href="{again}">Try again</a>"#)),
        "{html}"
    );
    // Used up all the same, and nothing connected.
    let replay =
        callback_accepting(&world, &sign_in.callback, &sign_in.cookie, BROWSER_ACCEPT).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        world.accounts("alice-pat").await["items"][0]["connected"],
        false
    );
}
