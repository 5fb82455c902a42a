//! The durable job queue on Postgres: Jira events and other background work survive restarts
//! and are shared by every filebridge instance on the database.
//!
//! Producers add jobs with [`enqueue`], in their own transaction when there is one, so a job
//! exists exactly when the change that asked for it was committed. [`Workers`] claim due jobs
//! with `FOR UPDATE SKIP LOCKED` under a lease they renew while working; a job whose lease
//! ran out (its instance died) is claimed again elsewhere. Handlers must therefore be
//! idempotent: filebridge's handlers act on Jira's current state, not on the event's.

use std::time::Duration;

use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;

mod queue;
mod worker;

pub use queue::{Changed, KEEP_FINISHED, LIST_MAX, backoff, purge_finished};
pub use queue::{JobFilter, JobState, JobSummary, discard, get, list, retry};
pub use worker::Workers;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("no such job")]
    NotFound,
    #[error("the job is {0}; only dead or queued jobs can be {1}")]
    WrongState(JobState, &'static str),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A job to add.
#[derive(Debug, Clone, Serialize)]
pub struct NewJob {
    /// Which handler runs it, e.g. `jira_event`.
    pub kind: String,
    pub payload: serde_json::Value,
    /// The same key queued twice is one job (Jira's event identity, for webhooks).
    pub dedupe_key: Option<String>,
    /// Not before; `None` is now.
    pub run_at: Option<OffsetDateTime>,
}

/// A claimed job, as a handler sees it.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub payload: serde_json::Value,
    /// Including this one.
    pub attempt: u32,
}

/// Why a job did not complete.
#[derive(Debug)]
pub enum JobFailure {
    /// Try again later: after `after` when the peer said so (`Retry-After`), else after the
    /// queue's exponential backoff with jitter. Counts as an attempt.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Retrying cannot help (bad payload, unknown kind): dead at once, for an admin to see.
    Fatal(String),
}

/// What this instance's pool has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub claimed: u64,
    pub completed: u64,
    /// Failed attempts queued again.
    pub retried: u64,
    /// Jobs set aside as dead by this pool (after their last attempt, or fatal failures).
    pub dead: u64,
    /// Handler panics (each also counted as retried or dead).
    pub panicked: u64,
    /// Jobs given up because their lease was lost or could not be renewed in time.
    pub lost_leases: u64,
    /// Jobs handed back unfinished by `stop`.
    pub released: u64,
    pub database_errors: u64,
}

/// Runs jobs. One handler serves every kind; it dispatches on `job.kind`.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn run(&self, job: &Job) -> Result<(), JobFailure>;
}

/// Adds a job, unless one with the same `dedupe_key` exists already (then `None`).
pub async fn enqueue(conn: &mut PgConnection, job: &NewJob) -> Result<Option<i64>, sqlx::Error> {
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO jobs (kind, payload, dedupe_key, run_at)
         VALUES ($1, $2, $3, COALESCE($4, now()))
         ON CONFLICT (dedupe_key) DO NOTHING
         RETURNING id",
    )
    .bind(&job.kind)
    .bind(&job.payload)
    .bind(&job.dedupe_key)
    .bind(job.run_at)
    .fetch_optional(&mut *conn)
    .await?;
    if id.is_some() {
        // Wakes idle workers on every instance at once instead of at their next poll.
        sqlx::query("SELECT pg_notify('filebridge_jobs', '')")
            .execute(conn)
            .await?;
    }
    Ok(id)
}
