//! filebridge's script in Jira's own pages, through the proxy: nginx's sub_filter recipe
//! (packaging/nginx/jira-banner.conf, included in the test site's Jira location) adds it
//! to the fake Jira's issue view, Jira's announcement banner does the same behind either
//! proxy, and the script it names loads from the same site.

use super::{header, stack};
use crate::proxy_peers::Kind;

const TAG: &str = r#"<script src="/filebridge/static/jira.js"#;

async fn jira_pages_load_the_script(kind: Kind, banner: bool) {
    let s = stack(kind).await;
    if banner {
        s.app.jira.set_announcement_banner(Some(
            r#"<script src="/filebridge/static/jira.js"></script>"#,
        ));
    }
    let page = s
        .client
        .get(format!("{}/browse/PROJ-1", s.proxy.origin))
        .send()
        .await
        .expect("Jira's issue view through the proxy");
    assert_eq!(page.status(), 200, "{}", s.proxy.log());
    let html = page.text().await.expect("page");
    assert!(html.contains(r#"data-issue-key="PROJ-1""#), "{html}");
    // nginx adds one tag to every page, the banner another: the script adds one panel.
    let expected = usize::from(kind == Kind::Nginx) + usize::from(banner);
    assert_eq!(html.matches(TAG).count(), expected, "{html}");

    let script = s
        .client
        .get(format!("{}/filebridge/static/jira.js", s.proxy.origin))
        .send()
        .await
        .expect("jira.js through the proxy");
    assert_eq!(script.status(), 200);
    assert!(header(&script, "content-type").starts_with("text/javascript"));
    let direct = s
        .app
        .get("/static/jira.js")
        .await
        .bytes()
        .await
        .expect("direct");
    assert_eq!(script.bytes().await.expect("jira.js"), direct);
}

#[tokio::test]
async fn nginx_adds_the_script_to_jira_pages() {
    jira_pages_load_the_script(Kind::Nginx, false).await;
}

#[tokio::test]
async fn nginx_and_the_banner_together_add_it_twice() {
    jira_pages_load_the_script(Kind::Nginx, true).await;
}

#[tokio::test]
async fn apache_serves_the_script_of_jira_s_banner() {
    jira_pages_load_the_script(Kind::Apache, true).await;
}
