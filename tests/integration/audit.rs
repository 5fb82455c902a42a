//! The audit trail: hash chain, tamper detection, export, retention, purge.

use filebridge::audit::{self, Actor, AuditEvent, ExportFormat, Filter, Outcome};
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{cluster_url, create_database, spawn_app};

async fn migrated_pool() -> PgPool {
    let url = create_database(&cluster_url()).await;
    let pool = PgPool::connect(&url).await.unwrap();
    filebridge::db::migrate(&pool).await.unwrap();
    pool
}

fn event(n: usize) -> AuditEvent {
    let mut e = AuditEvent::new(
        Actor {
            key: "JIRAUSER10100".into(),
            name: "alice".into(),
        },
        "file.download",
        Outcome::Success,
    );
    e.target = Some(format!("issue:PROJ-{n}"));
    e.path = Some(format!("docs/report {n}.pdf"));
    e.size = Some(1000 + n as i64);
    e.client_ip = Some("198.51.100.7".parse().unwrap());
    e.request_id = Some(format!("req-{n}"));
    e
}

async fn record_n(pool: &PgPool, n: usize) {
    for i in 1..=n {
        audit::record_alone(pool, &event(i)).await.unwrap();
    }
}

#[tokio::test]
async fn an_intact_chain_verifies_and_edits_or_deletions_are_found() {
    let pool = migrated_pool().await;
    record_n(&pool, 6).await;
    let v = audit::verify(&pool).await.unwrap();
    assert_eq!((v.checked, v.problem), (6, None));

    sqlx::query("UPDATE audit_events SET path = 'innocent.txt' WHERE seq = 3")
        .execute(&pool)
        .await
        .unwrap();
    let v = audit::verify(&pool).await.unwrap();
    assert_eq!(v.checked, 2);
    assert!(v.problem.unwrap().contains("row 3 was altered"));

    // Recomputing the edited row's own hash does not help: the next row no longer follows.
    let pool = migrated_pool().await;
    record_n(&pool, 6).await;
    sqlx::query("DELETE FROM audit_events WHERE seq = 4")
        .execute(&pool)
        .await
        .unwrap();
    let problem = audit::verify(&pool).await.unwrap().problem.unwrap();
    assert!(problem.contains("row 4 is missing"), "{problem}");

    let pool = migrated_pool().await;
    record_n(&pool, 3).await;
    sqlx::query("UPDATE audit_events SET prev_hash = hash WHERE seq = 2")
        .execute(&pool)
        .await
        .unwrap();
    let problem = audit::verify(&pool).await.unwrap().problem.unwrap();
    assert!(problem.contains("row 2 does not follow"), "{problem}");
}

#[tokio::test]
async fn concurrent_writers_extend_one_chain_and_rollbacks_leave_nothing() {
    let pool = migrated_pool().await;
    let writers: Vec<_> = (1..=24)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move { audit::record_alone(&pool, &event(i)).await })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    let v = audit::verify(&pool).await.unwrap();
    assert_eq!((v.checked, v.problem), (24, None));

    let mut tx = pool.begin().await.unwrap();
    audit::record(&mut tx, &event(99)).await.unwrap();
    tx.rollback().await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 24);
}

#[tokio::test]
async fn exports_are_complete_filterable_and_safe_for_spreadsheets() {
    let pool = migrated_pool().await;
    record_n(&pool, 3).await;
    let mut formula = event(4);
    formula.path = Some("=HYPERLINK(\"http://evil\",\"x\"),y".into());
    formula.actor = Actor {
        key: "JIRAUSER10200".into(),
        name: "bob".into(),
    };
    audit::record_alone(&pool, &formula).await.unwrap();

    let mut csv = Vec::new();
    let n = audit::export(&pool, &Filter::default(), ExportFormat::Csv, &mut csv)
        .await
        .unwrap();
    assert_eq!(n, 4);
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("seq,at,actor_key,actor_name,action"));
    assert_eq!(lines.len(), 5);
    assert!(lines[1].contains("JIRAUSER10100,alice,file.download,issue:PROJ-1,docs/report 1.pdf,1001,success,198.51.100.7,req-1"));
    assert!(
        lines[4].contains("\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\"),y\""),
        "{}",
        lines[4]
    );

    let mut jsonl = Vec::new();
    let filter = Filter {
        actor: Some("bob".into()),
        ..Filter::default()
    };
    assert_eq!(
        audit::export(&pool, &filter, ExportFormat::Jsonl, &mut jsonl)
            .await
            .unwrap(),
        1
    );
    let row: Value = serde_json::from_slice(jsonl.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(row["actor_key"], "JIRAUSER10200");
    assert_eq!(row["seq"], 4);
    assert_eq!(row["hash"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn retention_removes_old_events_and_the_chain_still_verifies() {
    let pool = migrated_pool().await;
    record_n(&pool, 5).await;
    let removed = audit::purge_older_than(&pool, 0, Actor::operator())
        .await
        .unwrap();
    assert_eq!(removed, 5);
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT seq, action FROM audit_events")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![(6, "audit.retention".to_string())],
        "the purge is itself recorded"
    );
    let v = audit::verify(&pool).await.unwrap();
    assert_eq!((v.checked, v.problem), (1, None));
    record_n(&pool, 2).await;
    assert_eq!(audit::verify(&pool).await.unwrap().problem, None);
    // Deleting the row right after the anchor is still found.
    sqlx::query("DELETE FROM audit_events WHERE seq = 6")
        .execute(&pool)
        .await
        .unwrap();
    assert!(audit::verify(&pool).await.unwrap().problem.is_some());
}

#[tokio::test]
async fn admins_read_the_trail_over_http() {
    let app = spawn_app().await;
    app.jira.add_user("root", "Root");
    app.jira.add_token("root", "root-pat");
    app.jira.grant_global("root", "ADMINISTER");
    app.jira.add_user("alice", "Alice");
    app.jira.add_token("alice", "alice-pat");
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    record_n(&pool, 3).await;

    assert_eq!(
        app.get_as("/api/v1/admin/audit", "alice-pat")
            .await
            .status(),
        403
    );
    let body: Value = app
        .get_as("/api/v1/admin/audit", "root-pat")
        .await
        .json()
        .await
        .unwrap();
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["actor_name"], "alice");
    assert_eq!(events[2]["path"], "docs/report 3.pdf");

    let csv = app
        .get_as("/api/v1/admin/audit?format=csv&limit=2", "root-pat")
        .await;
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        csv.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    assert_eq!(
        csv.text().await.unwrap().lines().count(),
        3,
        "header and two rows"
    );

    let bad = app
        .get_as("/api/v1/admin/audit?since=yesterday", "root-pat")
        .await;
    assert_eq!(bad.status(), 400);
    let future = app
        .get_as("/api/v1/admin/audit?since=2999-01-01T00:00:00Z", "root-pat")
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(future["events"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn purge_removes_every_filebridge_table() {
    let pool = migrated_pool().await;
    record_n(&pool, 2).await;
    let dropped = filebridge::purge::purge_everything(&pool).await.unwrap();
    assert!(dropped.contains(&"audit_events") && dropped.contains(&"_sqlx_migrations"));
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(left.is_empty(), "tables left behind: {left:?}");
    // A later install starts from scratch.
    filebridge::db::migrate(&pool).await.unwrap();
}

#[tokio::test]
async fn retention_applies_by_policy_at_start_and_on_demand() {
    let url = create_database(&cluster_url()).await;
    let pool = PgPool::connect(&url).await.unwrap();
    filebridge::db::migrate(&pool).await.unwrap();
    record_n(&pool, 3).await;
    sqlx::query("UPDATE audit_events SET at = at - interval '40 days'")
        .execute(&pool)
        .await
        .unwrap();
    // Ages were rewritten, so the chain no longer verifies; retention removes those rows and
    // anchors the chain after them, and what is left verifies again.
    let jira = fake_jira::FakeJira::start().await;
    let mut config = crate::helpers::TestConfig::new(&url, &jira.base_url);
    config.set("AUDIT__RETENTION_DAYS", "30");
    let app = crate::helpers::start(config, jira, url).await;
    crate::helpers::eventually(
        "retention ran at start",
        std::time::Duration::from_secs(20),
        || {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM audit_events WHERE action = 'audit.retention'",
                )
                .fetch_one(&pool)
                .await
                .unwrap()
                    == 1
            }
        },
    )
    .await;
    let v = audit::verify(&pool).await.unwrap();
    assert_eq!((v.checked, v.problem), (1, None));

    app.jira.add_user("root", "Root");
    app.jira.add_token("root", "root-pat");
    app.jira.grant_global("root", "ADMINISTER");
    record_n(&pool, 2).await;
    let response = app
        .client
        .delete(app.url("/api/v1/admin/audit"))
        .query(&[("older_than_days", "0")])
        .bearer_auth("root-pat")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["removed"], 3);
    let actor: String =
        sqlx::query_scalar("SELECT actor_name FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(actor, "root");
    assert_eq!(audit::verify(&pool).await.unwrap().problem, None);
}
