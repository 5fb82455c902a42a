//! Reconciliation: Jira's webhooks are best effort, so on a schedule (and on demand) every
//! mapped project's issues changed since the last run are searched for and re-synced, and
//! recorded folders whose issues Jira no longer has are archived.
//!
//! The search is `updated >= cursor - overlap ORDER BY updated ASC`, paged as Jira echoes; the
//! cursor (per project, in Postgres) only moves forward, after the jobs for a page are queued
//! in the same transaction, so a crash re-reads rather than skips. The same update seen twice
//! (the overlap) is one job: the job's key is the issue id and its `updated` time.

use std::collections::HashSet;

use serde::Serialize;
use time::OffsetDateTime;

use super::{EventError, Lifecycle, RECONCILE, SYNC_ISSUE, SyncIssue};
use crate::broker::records;
use crate::jobs::{self, NewJob};

/// What one run did, per project and in total (returned to the admin API and logged).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub projects: usize,
    /// Issues found changed, queued for a sync.
    pub changed: usize,
    /// Recorded issues Jira no longer has, queued for archiving.
    pub missing: usize,
}

/// `id in (...)` batches for finding deleted issues.
const ID_BATCH: usize = 100;

pub async fn run(lc: &Lifecycle) -> Result<Report, EventError> {
    let mut report = Report::default();
    let mappings: Vec<(String, OffsetDateTime)> =
        sqlx::query_as("SELECT project_id, created_at FROM project_mappings ORDER BY project_id")
            .fetch_all(&lc.pool)
            .await?;
    for (project_id, mapped_at) in mappings {
        changed_since_cursor(lc, &project_id, mapped_at, &mut report).await?;
        missing_issues(lc, &project_id, &mut report).await?;
        report.projects += 1;
    }
    tracing::info!(?report, "reconciliation done");
    Ok(report)
}

async fn changed_since_cursor(
    lc: &Lifecycle,
    project_id: &str,
    mapped_at: OffsetDateTime,
    report: &mut Report,
) -> Result<(), EventError> {
    let token = lc.token()?;
    let cursor: Option<OffsetDateTime> =
        sqlx::query_scalar("SELECT cursor FROM reconcile_cursors WHERE project_id = $1")
            .bind(project_id)
            .fetch_optional(&lc.pool)
            .await?;
    // A project never reconciled starts where its mapping did: older issues get their folder
    // on first use, not all at once.
    let since = cursor.unwrap_or(mapped_at) - lc.settings.reconcile_overlap;
    let projects = [project_id.to_string()];
    let mut start_at = 0u32;
    loop {
        let page = lc
            .jira
            .search_updated(token, &projects, since, start_at)
            .await?;
        let mut tx = lc.pool.begin().await?;
        let mut newest = cursor;
        for issue in &page.issues {
            let queued = jobs::enqueue(
                &mut tx,
                &NewJob {
                    kind: SYNC_ISSUE.into(),
                    payload: sync_payload(&issue.id, false)?,
                    dedupe_key: Some(format!(
                        "sync:{}:{}",
                        issue.id,
                        issue.updated.unix_timestamp_nanos() / 1_000_000
                    )),
                    run_at: None,
                },
            )
            .await?;
            if queued.is_some() {
                report.changed += 1;
            }
            newest = newest.max(Some(issue.updated));
        }
        if let Some(newest) = newest {
            sqlx::query(
                "INSERT INTO reconcile_cursors (project_id, cursor) VALUES ($1, $2)
                 ON CONFLICT (project_id) DO UPDATE
                     SET cursor = GREATEST(reconcile_cursors.cursor, $2), updated_at = now()",
            )
            .bind(project_id)
            .bind(newest)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        match page.next_start() {
            Some(next) => start_at = next,
            None => return Ok(()),
        }
    }
}

async fn missing_issues(
    lc: &Lifecycle,
    project_id: &str,
    report: &mut Report,
) -> Result<(), EventError> {
    let token = lc.token()?;
    let recorded: Vec<String> = records::active_in_project(&lc.pool, project_id)
        .await?
        .into_iter()
        .map(|r| r.issue_id)
        .collect();
    for batch in recorded.chunks(ID_BATCH) {
        let existing: HashSet<String> = lc.jira.existing_issue_ids(token, batch).await?;
        let mut tx = lc.pool.begin().await?;
        for id in batch.iter().filter(|id| !existing.contains(*id)) {
            jobs::enqueue(
                &mut tx,
                &NewJob {
                    kind: SYNC_ISSUE.into(),
                    payload: sync_payload(id, true)?,
                    dedupe_key: None,
                    run_at: None,
                },
            )
            .await?;
            report.missing += 1;
        }
        tx.commit().await?;
    }
    Ok(())
}

fn sync_payload(issue_id: &str, deleted: bool) -> Result<serde_json::Value, EventError> {
    serde_json::to_value(SyncIssue {
        issue_id: issue_id.to_string(),
        deleted,
        previous: None,
    })
    .map_err(|e| EventError::Payload(e.to_string()))
}

/// Queues a reconciliation run. `slot` names a scheduled run (every instance's scheduler
/// asks for the same slot; one job results); `None` is an admin's extra run.
pub async fn request(pool: &sqlx::PgPool, slot: Option<i64>) -> Result<Option<i64>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    jobs::enqueue(
        &mut conn,
        &NewJob {
            kind: RECONCILE.into(),
            payload: serde_json::json!({}),
            dedupe_key: slot.map(|slot| format!("reconcile:{slot}")),
            run_at: None,
        },
    )
    .await
}

/// Every instance runs this; each interval yields one queued run, whichever instance asks.
pub async fn schedule(pool: sqlx::PgPool, interval: std::time::Duration) {
    let secs = interval.as_secs().max(1) as i64;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let slot = OffsetDateTime::now_utc().unix_timestamp() / secs;
        if let Err(e) = request(&pool, Some(slot)).await {
            tracing::warn!(error = %e, "could not queue the scheduled reconciliation; next interval");
        }
    }
}
