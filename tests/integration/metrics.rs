//! `/metrics`: what Prometheus reads, who may read it, and what it never contains.

use std::collections::HashMap;

use serde_json::Value;

use crate::helpers::{TestApp, map_to_directory, spawn_app_with};

/// PROJ-7 mapped to a filesystem connection; alice may read and attach.
async fn world(
    tweak: impl FnOnce(&mut crate::helpers::TestConfig),
) -> (TestApp, tempfile::TempDir) {
    let app = spawn_app_with(tweak).await;
    let jira = &app.jira;
    jira.add_project("SECRETPROJ", "Project");
    jira.add_issue("SECRETPROJ", "SECRETPROJ-7");
    for (name, token) in [("root", "root-pat"), ("alice.wonder", "alice-pat")] {
        jira.add_user(name, name);
        jira.add_token(name, token);
        jira.grant_project(name, "SECRETPROJ", "BROWSE_PROJECTS");
        jira.grant_project(name, "SECRETPROJ", "CREATE_ATTACHMENTS");
    }
    jira.grant_global("root", "ADMINISTER");
    let root = tempfile::tempdir().unwrap();
    map_to_directory(&app, "root-pat", "local", root.path(), "SECRETPROJ", "Jira").await;
    (app, root)
}

/// Every sample line, by its name and labels as written (`name{labels}`), to its value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample line");
            (series.to_string(), value.parse::<f64>().expect("a number"))
        })
        .collect()
}

fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no sample {series} in {samples:#?}"))
}

#[tokio::test]
async fn metrics_count_requests_bytes_jira_caches_jobs_pool_and_egress_without_user_data() {
    let (app, _root) = world(|_| {}).await;
    let file = "/api/v1/issues/SECRETPROJ-7/files";
    let body = vec![7u8; 300_000];
    let put = app
        .client
        .put(app.url(&format!("{file}/content")))
        .query(&[("path", "payroll-2026.xlsx")])
        .bearer_auth("alice-pat")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    for _ in 0..2 {
        let got = app
            .client
            .get(app.url(&format!("{file}/content")))
            .query(&[("path", "payroll-2026.xlsx")])
            .bearer_auth("alice-pat")
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(got.bytes().await.unwrap().len(), body.len());
    }
    let missing = app
        .get_as(&format!("{file}/content?path=nope.txt"), "alice-pat")
        .await;
    assert_eq!(missing.status(), 404);

    let scraped = app.get("/metrics").await;
    assert_eq!(scraped.status(), 200);
    assert!(
        scraped.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    let text = scraped.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    let s = samples(&text);

    let route = "/filebridge/api/v1/issues/{key}/files/content";
    assert_eq!(
        value(
            &s,
            &format!(
                r#"filebridge_http_requests_total{{route="{route}",method="GET",status="200"}}"#
            )
        ),
        2.0
    );
    assert_eq!(
        value(
            &s,
            &format!(
                r#"filebridge_http_requests_total{{route="{route}",method="PUT",status="201"}}"#
            )
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            &format!(
                r#"filebridge_http_requests_total{{route="{route}",method="GET",status="404"}}"#
            )
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            &format!(
                r#"filebridge_http_request_duration_seconds_count{{route="{route}",method="GET"}}"#
            )
        ),
        3.0
    );
    assert_eq!(
        value(
            &s,
            r#"filebridge_storage_transferred_bytes_total{kind="filesystem",direction="up"}"#
        ),
        300_000.0
    );
    assert_eq!(
        value(
            &s,
            r#"filebridge_storage_transferred_bytes_total{kind="filesystem",direction="down"}"#
        ),
        600_000.0
    );
    // alice's identity and permissions were asked once, then served from the caches.
    assert!(
        value(
            &s,
            r#"filebridge_cache_lookups_total{cache="permissions",result="hit"}"#
        ) >= 2.0
    );
    assert!(
        value(
            &s,
            r#"filebridge_cache_lookups_total{cache="permissions",result="miss"}"#
        ) >= 1.0
    );
    assert!(
        value(
            &s,
            r#"filebridge_cache_lookups_total{cache="identity",result="hit"}"#
        ) >= 2.0
    );
    assert!(value(&s, r#"filebridge_jira_requests_total{outcome="2xx"}"#) >= 3.0);
    assert!(value(&s, "filebridge_jira_request_duration_seconds_count") >= 3.0);
    for state in ["queued", "retrying", "running", "dead", "discarded"] {
        assert!(
            s.contains_key(&format!(r#"filebridge_jobs{{state="{state}"}}"#)),
            "{state}"
        );
    }
    assert_eq!(value(&s, "filebridge_db_pool_max_connections"), 4.0);
    assert!(value(&s, r#"filebridge_db_pool_connections{state="in_use"}"#) >= 0.0);
    let jira_host = app.jira.base_url.trim_start_matches("http://");
    assert!(
        value(
            &s,
            &format!(r#"filebridge_egress_contacted_total{{host="{jira_host}"}}"#)
        ) >= 3.0
    );

    // Nothing about who, which issue or which file.
    for private in ["alice", "SECRETPROJ", "payroll", "nope.txt", "-pat"] {
        assert!(
            !text.contains(private),
            "{private} leaked into /metrics:\n{text}"
        );
    }
}

#[tokio::test]
async fn metrics_are_refused_outside_metrics_allow_even_through_a_trusted_proxy() {
    let (app, _root) = world(|c| {
        c.set("METRICS__ALLOW", "10.9.8.0/24");
    })
    .await;
    let refused = app.get("/metrics").await;
    assert_eq!(refused.status(), 403);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "forbidden");

    // The test client is a trusted proxy (loopback): the client it names decides.
    let via_proxy = |client: &'static str| {
        app.client
            .get(app.url("/metrics"))
            .header("X-Forwarded-For", client)
            .send()
    };
    assert_eq!(via_proxy("10.9.8.7").await.unwrap().status(), 200);
    assert_eq!(via_proxy("203.0.113.5").await.unwrap().status(), 403);
}

#[tokio::test]
async fn an_empty_metrics_allow_turns_metrics_off() {
    let (app, _root) = world(|c| {
        c.set("METRICS__ALLOW", "");
    })
    .await;
    assert_eq!(app.get("/metrics").await.status(), 403);
}
