//! The service user's Jira calls (`src/jira/service.rs`) against the fake Jira: search paging
//! by the size Jira echoes, finding deleted issues, remote links, and rate limiting.

use std::time::Duration;

use fake_jira::FakeJira;
use filebridge::config::EgressSettings;
use filebridge::egress::EgressClient;
use filebridge::jira::{JiraClient, JiraError, RemoteLink, Upserted};
use secrecy::SecretString;
use time::OffsetDateTime;

const SERVICE_PAT: &str = "service-pat";

/// A Jira with project P (id 10000) holding P-1..P-5 and a service user who may browse and
/// link there; a client for it.
async fn setup() -> (FakeJira, JiraClient, SecretString) {
    let jira = FakeJira::start().await;
    jira.add_user("filebridge", "filebridge service");
    jira.add_token("filebridge", SERVICE_PAT);
    jira.add_project("P", "Project");
    for n in 1..=5 {
        jira.add_issue("P", &format!("P-{n}"));
    }
    jira.grant_project("filebridge", "P", "BROWSE_PROJECTS");
    jira.grant_project("filebridge", "P", "LINK_ISSUES");
    let base = url::Url::parse(&jira.base_url).expect("URL");
    let settings = EgressSettings {
        allow: Vec::new(),
        proxy: None,
        ca_file: None,
    };
    let egress = EgressClient::new(&settings, Some(&base)).expect("egress");
    let client = JiraClient::new(base, egress, Duration::from_secs(5));
    (jira, client, SecretString::from(SERVICE_PAT))
}

#[tokio::test]
async fn search_pages_by_the_size_jira_echoes() {
    let (jira, client, token) = setup().await;
    jira.set_search_cap(2);
    let projects = vec!["10000".to_string()];
    let mut keys = Vec::new();
    let mut start = Some(0);
    let mut pages = 0;
    while let Some(start_at) = start {
        let page = client
            .search_updated(&token, &projects, OffsetDateTime::UNIX_EPOCH, start_at)
            .await
            .expect("search");
        assert_eq!(page.max_results, 2, "Jira's cap, not the 100 asked for");
        assert_eq!(page.total, 5);
        keys.extend(page.issues.iter().map(|i| i.key.clone()));
        assert!(
            page.issues
                .iter()
                .all(|i| i.project_id == "10000" && i.project_key == "P")
        );
        start = page.next_start();
        pages += 1;
    }
    assert_eq!(
        keys,
        ["P-1", "P-2", "P-3", "P-4", "P-5"],
        "oldest change first"
    );
    assert_eq!(pages, 3);
    assert_eq!(jira.calls("/rest/api/2/search"), 3);

    // Only changes at or after the cursor, to the millisecond.
    let cursor = jira.issue_updated_ms("P-4");
    let since =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(cursor) * 1_000_000).expect("time");
    let page = client
        .search_updated(&token, &projects, since, 0)
        .await
        .expect("search");
    let found: Vec<_> = page
        .issues
        .iter()
        .map(|i| (i.key.as_str(), i.updated))
        .collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0], ("P-4", since));
    // No projects, no question to Jira.
    let none = client
        .search_updated(&token, &[], since, 0)
        .await
        .expect("empty");
    assert!(none.issues.is_empty() && none.next_start().is_none());
    assert_eq!(jira.calls("/rest/api/2/search"), 4);
}

#[tokio::test]
async fn deleted_and_hidden_issues_are_not_found() {
    let (jira, client, token) = setup().await;
    jira.set_search_cap(2);
    jira.delete_issue("P-2").await;
    jira.restrict_issue("P-3", &["somebody-else"]);
    let ids: Vec<String> = [
        "10100",
        "10101",
        "10102",
        "10103",
        "10104",
        "99999",
        "not-an-id",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut found: Vec<String> = client
        .existing_issue_ids(&token, &ids)
        .await
        .expect("search")
        .into_iter()
        .collect();
    found.sort();
    assert_eq!(found, ["10100", "10103", "10104"]);
}

#[tokio::test]
async fn rate_limits_and_outages_carry_the_wait() {
    let (jira, client, token) = setup().await;
    let projects = vec!["10000".to_string()];
    jira.rate_limit_next(1, 7);
    let refused = client
        .search_updated(&token, &projects, OffsetDateTime::UNIX_EPOCH, 0)
        .await;
    match refused {
        Err(JiraError::Unavailable {
            status,
            retry_after,
        }) => {
            assert_eq!(status, 429);
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
        }
        other => panic!("expected 429, got {other:?}"),
    }
    let page = client
        .search_updated(&token, &projects, OffsetDateTime::UNIX_EPOCH, 0)
        .await
        .expect("the next call goes through");
    assert_eq!(page.total, 5);

    jira.fail_next(1);
    let link = RemoteLink {
        global_id: "g".into(),
        url: "https://files.example/P-1".into(),
        title: "Files".into(),
        summary: None,
        icon_url: None,
    };
    match client.upsert_remote_link(&token, "P-1", &link).await {
        Err(JiraError::Unavailable {
            status: 503,
            retry_after,
        }) => assert_eq!(retry_after, Some(Duration::from_secs(5))),
        other => panic!("expected 503, got {other:?}"),
    }
}

#[tokio::test]
async fn remote_link_upsert_is_idempotent() {
    let (jira, client, token) = setup().await;
    let mut link = RemoteLink {
        global_id: "filebridge:issue:10100".into(),
        url: "https://jira.example/filebridge/issues/P-1".into(),
        title: "Files".into(),
        summary: Some("Files of P-1".into()),
        icon_url: Some("https://jira.example/filebridge/icon.png".into()),
    };
    assert_eq!(
        client
            .upsert_remote_link(&token, "10100", &link)
            .await
            .expect("create"),
        Upserted::Created
    );
    link.title = "Files (moved)".into();
    assert_eq!(
        client
            .upsert_remote_link(&token, "P-1", &link)
            .await
            .expect("update"),
        Upserted::Updated
    );
    let links = jira.remote_links("P-1");
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0]["object"]["title"], "Files (moved)");
    assert_eq!(
        links[0]["object"]["icon"]["url16x16"],
        "https://jira.example/filebridge/icon.png"
    );
    assert_eq!(links[0]["application"]["name"], "filebridge");

    assert!(
        client
            .delete_remote_link_by_global_id(&token, "P-1", &link.global_id)
            .await
            .expect("delete")
    );
    assert!(
        !client
            .delete_remote_link_by_global_id(&token, "P-1", &link.global_id)
            .await
            .expect("already gone")
    );
    assert!(jira.remote_links("P-1").is_empty());
}
