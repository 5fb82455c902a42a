//! Claiming, finishing and inspecting jobs. (Skeleton: filled in by the job-queue work.)

use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;

use super::JobError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Dead,
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
        })
    }
}

/// A job as admins see it.
#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    pub id: i64,
    pub kind: String,
    pub state: JobState,
    pub attempts: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub run_at: OffsetDateTime,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub limit: Option<i64>,
}

pub async fn list(_pool: &PgPool, _filter: &JobFilter) -> Result<Vec<JobSummary>, JobError> {
    Ok(Vec::new())
}

pub async fn get(_pool: &PgPool, _id: i64) -> Result<JobSummary, JobError> {
    Err(JobError::NotFound)
}

pub async fn retry(_pool: &PgPool, _id: i64) -> Result<JobSummary, JobError> {
    Err(JobError::NotFound)
}

pub async fn discard(_pool: &PgPool, _id: i64) -> Result<(), JobError> {
    Err(JobError::NotFound)
}
