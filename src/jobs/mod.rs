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

mod claims;
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

/// Adds a job, unless one with the same `dedupe_key` exists already (then `None`), and wakes
/// idle workers on every instance (at commit, when `conn` is a transaction).
pub async fn enqueue(conn: &mut PgConnection, job: &NewJob) -> Result<Option<i64>, sqlx::Error> {
    let id = enqueue_unnotified(&mut *conn, job).await?;
    if id.is_some() {
        sqlx::query("SELECT pg_notify('filebridge_jobs', '')")
            .execute(conn)
            .await?;
    }
    Ok(id)
}

/// Adds a job in one statement (its own transaction when `db` is the pool), without waking
/// the workers: for the webhook intake, which wakes them through a [`Wakeup`] instead. A
/// `pg_notify` in every intake transaction made all commits take turns on PostgreSQL's
/// notification lock (the intake benchmark halved its rate on it).
pub async fn enqueue_unnotified<'e>(
    db: impl sqlx::PgExecutor<'e>,
    job: &NewJob,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO jobs (kind, payload, dedupe_key, run_at)
         VALUES ($1, $2, $3, COALESCE($4, now()))
         ON CONFLICT (dedupe_key) DO NOTHING
         RETURNING id",
    )
    .bind(&job.kind)
    .bind(&job.payload)
    .bind(&job.dedupe_key)
    .bind(job.run_at)
    .fetch_optional(db)
    .await
}

/// Wakes the workers of every instance after jobs were added, at most once per
/// [`Wakeup::EVERY`]: a burst of webhooks costs a handful of notifications, not one each.
/// Workers also poll every second, so a skipped nudge delays a job by well under that.
#[derive(Debug, Default)]
pub struct Wakeup {
    /// Milliseconds since `origin` of the last notification sent.
    last: std::sync::atomic::AtomicU64,
    origin: std::sync::OnceLock<std::time::Instant>,
}

impl Wakeup {
    pub const EVERY: Duration = Duration::from_millis(50);

    pub fn nudge(&self, pool: &sqlx::PgPool) {
        use std::sync::atomic::Ordering;
        let origin = *self.origin.get_or_init(std::time::Instant::now);
        // +1 so the very first nudge (last = 0) always sends.
        let now = u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX) + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < Self::EVERY.as_millis() as u64 {
            return;
        }
        if self
            .last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return; // another request is sending it
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            if let Err(e) = sqlx::query("SELECT pg_notify('filebridge_jobs', '')")
                .execute(&pool)
                .await
            {
                tracing::debug!(error = %e, "could not wake the job workers; they poll anyway");
            }
        });
    }
}
