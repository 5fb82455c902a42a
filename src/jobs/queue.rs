//! Jobs as administrators see and handle them (list, retry, discard), the clean-up of
//! finished jobs, and the backoff between attempts. The workers' side (claims and leases) is
//! in `claims.rs`.

use std::time::Duration;

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use super::JobError;

/// How long finished jobs are kept by default: their dedupe keys must outlive Jira's
/// redeliveries of the same event, which stop after hours, not weeks.
pub const KEEP_FINISHED: Duration = Duration::from_secs(30 * 24 * 3600);
/// The first retry waits about this long; each further attempt doubles it.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// A `Retry-After` beyond this is not believed: a misconfigured proxy asking for a week would
/// otherwise park the job for a week, out of sight.
pub(super) const RETRY_AFTER_MAX: Duration = Duration::from_secs(24 * 3600);
/// Characters kept of a failure's reason; a backend's error body can be large.
pub(super) const REASON_MAX: usize = 2000;
const LIST_DEFAULT: i64 = 100;
/// Most jobs one list returns.
pub const LIST_MAX: i64 = 1000;

/// The columns of [`JobSummary`], in one place for every query that returns one.
macro_rules! summary_columns {
    () => {
        "id, kind, state, attempts, payload, dedupe_key, run_at, locked_by, locked_until, \
         last_error, created_at, updated_at, finished_at"
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Dead,
    /// Set aside for good by an administrator.
    Discarded,
}

impl JobState {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "dead" => JobState::Dead,
            "discarded" => JobState::Discarded,
            _ => return None,
        })
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
            JobState::Discarded => "discarded",
        })
    }
}

/// A job as admins see it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct JobSummary {
    pub id: i64,
    pub kind: String,
    pub state: JobState,
    pub attempts: i32,
    /// Ids and keys only: jobs carry no Jira content.
    pub payload: serde_json::Value,
    pub dedupe_key: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub run_at: OffsetDateTime,
    /// The instance working it, while it runs.
    pub locked_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub locked_until: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    /// Default 100, at most [`LIST_MAX`].
    pub limit: Option<i64>,
}

/// What an admin action changed.
#[derive(Debug, Clone)]
pub struct Changed {
    pub previous: JobState,
    pub job: JobSummary,
}

/// Jobs, newest first.
pub async fn list(pool: &PgPool, filter: &JobFilter) -> Result<Vec<JobSummary>, JobError> {
    let limit = filter.limit.unwrap_or(LIST_DEFAULT).clamp(1, LIST_MAX);
    let sql = concat!(
        "SELECT ",
        summary_columns!(),
        " FROM jobs WHERE ($1::text IS NULL OR state = $1) ORDER BY id DESC LIMIT $2"
    );
    Ok(sqlx::query_as(sql)
        .bind(filter.state)
        .bind(limit)
        .fetch_all(pool)
        .await?)
}

pub async fn get(pool: &PgPool, id: i64) -> Result<JobSummary, JobError> {
    let sql = concat!("SELECT ", summary_columns!(), " FROM jobs WHERE id = $1");
    sqlx::query_as(sql)
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(JobError::NotFound)
}

/// Locks a dead or queued job for an admin action in `conn`'s transaction.
async fn lock_settled(
    conn: &mut PgConnection,
    id: i64,
    action: &'static str,
) -> Result<JobState, JobError> {
    let state: Option<JobState> =
        sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    match state {
        None => Err(JobError::NotFound),
        Some(s @ (JobState::Dead | JobState::Queued)) => Ok(s),
        Some(other) => Err(JobError::WrongState(other, action)),
    }
}

/// Queues a dead job again with fresh attempts, to run now; a queued job waiting out its
/// backoff runs now too. Call it in the transaction that audits it.
pub async fn retry(conn: &mut PgConnection, id: i64) -> Result<Changed, JobError> {
    let previous = lock_settled(conn, id, "retried").await?;
    let sql = concat!(
        "UPDATE jobs SET state = 'queued', attempts = 0, run_at = now(), finished_at = NULL,
                locked_by = NULL, locked_until = NULL, lease_token = NULL, updated_at = now()
         WHERE id = $1 RETURNING ",
        summary_columns!()
    );
    let job: JobSummary = sqlx::query_as(sql).bind(id).fetch_one(&mut *conn).await?;
    // Delivered at commit: idle workers take the job at once.
    sqlx::query("SELECT pg_notify('filebridge_jobs', '')")
        .execute(&mut *conn)
        .await?;
    Ok(Changed { previous, job })
}

/// Sets a dead or queued job aside for good. The row stays (as `discarded`, removed with the
/// finished jobs) so its dedupe key still swallows late duplicates of the same event, which
/// would only fail the same way. Call it in the transaction that audits it.
pub async fn discard(conn: &mut PgConnection, id: i64) -> Result<Changed, JobError> {
    let previous = lock_settled(conn, id, "discarded").await?;
    let sql = concat!(
        "UPDATE jobs SET state = 'discarded', finished_at = now(), updated_at = now()
         WHERE id = $1 RETURNING ",
        summary_columns!()
    );
    let job = sqlx::query_as(sql).bind(id).fetch_one(&mut *conn).await?;
    Ok(Changed { previous, job })
}

/// Deletes done and discarded jobs that finished more than `older_than` ago (normally
/// [`KEEP_FINISHED`]); dead jobs stay until an admin acts. Meant to run daily; any number of
/// instances may run it at once. Returns how many went.
pub async fn purge_finished(pool: &PgPool, older_than: Duration) -> Result<u64, JobError> {
    let mut removed = 0;
    loop {
        // In batches, so a first run over months of jobs holds no long lock.
        let batch = sqlx::query(
            "DELETE FROM jobs WHERE id IN (
                 SELECT id FROM jobs
                 WHERE state IN ('done', 'discarded')
                   AND finished_at < now() - make_interval(secs => $1)
                 LIMIT 5000 FOR UPDATE SKIP LOCKED)",
        )
        .bind(older_than.as_secs_f64())
        .execute(pool)
        .await?
        .rows_affected();
        removed += batch;
        if batch == 0 {
            return Ok(removed);
        }
    }
}

/// How long to wait before attempt `attempt + 1` after attempt `attempt` failed: about 1 s
/// doubling per attempt, capped at `max`, with "equal jitter" (between half the step and the
/// step): jobs that failed together (a storage outage) spread out instead of retrying in step,
/// and the wait still grows with every attempt.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    let step = BACKOFF_BASE
        .checked_mul(1u32 << doublings)
        .unwrap_or(max)
        .min(max);
    let half = step / 2;
    half + half.mul_f64(rand::random::<f64>())
}
