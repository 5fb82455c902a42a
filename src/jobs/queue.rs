//! Claiming, finishing and inspecting jobs.
//!
//! Every write a worker makes to a job it claimed names the claim (`lease_token`), not just
//! the instance: once a lease ran out and the job was claimed again, even by another worker of
//! the same instance, the old holder's late writes match nothing.

use std::time::Duration;

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Job, JobError, JobFailure};

/// How long finished jobs are kept by default: their dedupe keys must outlive Jira's
/// redeliveries of the same event, which stop after hours, not weeks.
pub const KEEP_FINISHED: Duration = Duration::from_secs(30 * 24 * 3600);
/// The first retry waits about this long; each further attempt doubles it.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// A `Retry-After` beyond this is not believed: a misconfigured proxy asking for a week would
/// otherwise park the job for a week, out of sight.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(24 * 3600);
/// Characters kept of a failure's reason; a backend's error body can be large.
const REASON_MAX: usize = 2000;
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

/// A job claimed by this instance.
#[derive(Debug)]
pub(super) struct Claimed {
    pub job: Job,
    pub token: Uuid,
    /// Taken before the claim was sent, so the lease as counted here ends no later than the
    /// database's.
    pub claimed_at: Instant,
}

/// Claims up to `n` due jobs, and jobs whose holder's lease ran out (with attempts left), in
/// one statement; rows other claimers hold are skipped, never waited for.
pub(super) async fn claim(
    pool: &PgPool,
    me: &str,
    n: usize,
    lease: Duration,
    max_attempts: u32,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let token = Uuid::new_v4();
    let claimed_at = Instant::now();
    let rows: Vec<(i64, String, serde_json::Value, i32)> = sqlx::query_as(
        // Two candidate lists, each read in order from its own partial index (`jobs_due`,
        // `jobs_leases`) and cut at `n`: one query with an OR sorted every due job first,
        // which grew with the queue (58 ms at 31,000 queued in the intake benchmark).
        "WITH expired AS (
             SELECT id, run_at FROM jobs
             WHERE state = 'running' AND locked_until < now() AND attempts < $4
             ORDER BY locked_until
             LIMIT $5
             FOR UPDATE SKIP LOCKED),
         due AS (
             SELECT id, run_at FROM jobs
             WHERE state = 'queued' AND run_at <= now()
             ORDER BY run_at
             LIMIT $5
             FOR UPDATE SKIP LOCKED),
         next AS (
             SELECT id FROM (SELECT * FROM expired UNION ALL SELECT * FROM due) candidates
             ORDER BY run_at, id
             LIMIT $5)
         UPDATE jobs j
         SET state = 'running', attempts = j.attempts + 1, locked_by = $1, lease_token = $2,
             locked_until = now() + make_interval(secs => $3), updated_at = now(),
             last_error = CASE WHEN j.state = 'running'
                 THEN format('the lease of %s ran out (its instance stopped or lost the database)',
                             coalesce(j.locked_by, 'a worker'))
                 ELSE j.last_error END
         FROM next WHERE j.id = next.id
         RETURNING j.id, j.kind, j.payload, j.attempts",
    )
    .bind(me)
    .bind(token)
    .bind(lease.as_secs_f64())
    .bind(i32::try_from(max_attempts).unwrap_or(i32::MAX))
    .bind(i64::try_from(n).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, kind, payload, attempts)| Claimed {
            job: Job {
                id,
                kind,
                payload,
                attempt: u32::try_from(attempts).unwrap_or(0),
            },
            token,
            claimed_at,
        })
        .collect())
}

/// Jobs whose lease ran out on their last allowed attempt die instead of being claimed again:
/// a job that keeps killing its instance must not take down one instance after another.
pub(super) async fn reap_expired(
    pool: &PgPool,
    max_attempts: u32,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE jobs SET state = 'dead', finished_at = now(), updated_at = now(),
             last_error = format('the lease of %s ran out on attempt %s, the last allowed',
                                 coalesce(locked_by, 'a worker'), attempts),
             locked_by = NULL, locked_until = NULL, lease_token = NULL
         WHERE id IN (
             SELECT id FROM jobs
             WHERE state = 'running' AND locked_until < now() AND attempts >= $1
             FOR UPDATE SKIP LOCKED)
         RETURNING id",
    )
    .bind(i32::try_from(max_attempts).unwrap_or(i32::MAX))
    .fetch_all(pool)
    .await
}

/// Renews the lease; false when the claim is no longer ours.
pub(super) async fn heartbeat(
    pool: &PgPool,
    id: i64,
    token: Uuid,
    lease: Duration,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE jobs SET locked_until = now() + make_interval(secs => $3)
         WHERE id = $1 AND lease_token = $2 AND state = 'running'",
    )
    .bind(id)
    .bind(token)
    .bind(lease.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What was recorded of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recorded {
    Done,
    /// Failed; queued again, due after this long.
    Requeued(Duration),
    /// Failed on its last allowed attempt, or in a way retrying cannot help.
    Dead,
}

/// Records an attempt's outcome: done; or, failed, queued again after
/// `max(Retry-After, backoff)`, or dead. `None` when the claim is no longer ours (then
/// nothing is written: the job is someone else's now).
pub(super) async fn finish(
    pool: &PgPool,
    claimed: &Claimed,
    outcome: &Result<(), JobFailure>,
    max_attempts: u32,
    backoff_max: Duration,
) -> Result<Option<Recorded>, sqlx::Error> {
    let attempt = claimed.job.attempt;
    let (recorded, reason) = match outcome {
        Ok(()) => (Recorded::Done, None),
        Err(JobFailure::Fatal(reason)) => (Recorded::Dead, Some(reason)),
        Err(JobFailure::Retry { reason, .. }) if attempt >= max_attempts => {
            (Recorded::Dead, Some(reason))
        }
        Err(JobFailure::Retry { reason, after }) => {
            let asked = after.unwrap_or_default().min(RETRY_AFTER_MAX);
            let delay = asked.max(backoff(attempt, backoff_max));
            (Recorded::Requeued(delay), Some(reason))
        }
    };
    let (state, delay) = match recorded {
        Recorded::Done => (JobState::Done, None),
        Recorded::Requeued(delay) => (JobState::Queued, Some(delay.as_secs_f64())),
        Recorded::Dead => (JobState::Dead, None),
    };
    let reason: Option<String> = reason.map(|r| r.chars().take(REASON_MAX).collect());
    // A done job keeps the last error of its failed attempts, if any, as history.
    let done = sqlx::query(
        "UPDATE jobs SET state = $3, last_error = coalesce($4, last_error), updated_at = now(),
             run_at = coalesce(now() + make_interval(secs => $5), run_at),
             finished_at = CASE WHEN $3 IN ('done', 'dead') THEN now() END,
             locked_by = NULL, locked_until = NULL, lease_token = NULL
         WHERE id = $1 AND lease_token = $2 AND state = 'running'",
    )
    .bind(claimed.job.id)
    .bind(claimed.token)
    .bind(state)
    .bind(reason)
    .bind(delay)
    .execute(pool)
    .await?;
    Ok((done.rows_affected() == 1).then_some(recorded))
}

/// Hands an unfinished job back (a graceful stop): queued, unclaimed, and the attempt not
/// counted, since the job did not fail; other instances are woken to take it at once.
/// False when the claim is no longer ours.
pub(super) async fn release(pool: &PgPool, id: i64, token: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "WITH released AS (
             UPDATE jobs SET state = 'queued', attempts = greatest(attempts - 1, 0),
                 updated_at = now(), locked_by = NULL, locked_until = NULL, lease_token = NULL
             WHERE id = $1 AND lease_token = $2 AND state = 'running'
             RETURNING id)
         SELECT pg_notify('filebridge_jobs', '') FROM released",
    )
    .bind(id)
    .bind(token)
    .fetch_optional(pool)
    .await?;
    Ok(done.is_some())
}
