//! Folders that follow their issues: what filebridge does when Jira says (by webhook or by
//! reconciliation) that an issue or project changed.
//!
//! Every handler acts on Jira's *current* state, asked by issue id with the service user's
//! token, never on what the event said: a duplicate, late or out-of-order event then does no
//! harm, and a job that runs twice (its instance died mid-way) finds the work done.
//! Each change of a recorded folder is serialised per issue by an advisory lock, recorded in
//! `issue_folders` and audited in the same transaction.

mod folders;
mod links;
mod project;
pub mod reconcile;
mod transfer;

use std::sync::Arc;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use url::Url;

use crate::broker::{Broker, BrokerError};
use crate::config::EventsSettings;
use crate::jira::{JiraClient, JiraError};
use crate::jobs::{Handler, Job, JobFailure};
use crate::storage::StorageError;

/// Job kinds handled here.
pub const SYNC_ISSUE: &str = "sync_issue";
pub const PROJECT_CHANGED: &str = "project_changed";
pub const RECONCILE: &str = "reconcile";
pub const JIRA_EVENT: &str = "jira_event";

/// Bring one issue's folder in line with Jira.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncIssue {
    pub issue_id: String,
    /// Jira reported the issue deleted (an event, or reconciliation no longer finding it):
    /// only then does a 404 for the issue archive its folder. A 404 alone may just mean the
    /// service user lost sight of it.
    #[serde(default)]
    pub deleted: bool,
    /// The key and project the issue had before this change, when the event said so: a
    /// folder made under that key before filebridge kept records (or by hand) is adopted
    /// and moved instead of left behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Previous {
    pub key: String,
    pub project_id: String,
}

/// A project may have a new key: re-point its mapping and its folders.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectChanged {
    pub project_id: String,
}

/// Why a folder in a delegated connection stays put (in the audit trail, for the admin who
/// wonders why a folder still has the issue's old key).
const NO_USER: &str = "the storage works only as each user, with their own account, so \
                       filebridge cannot change folders in it without one";

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("jira.service_token is not set: filebridge cannot read Jira for events")]
    NoServiceToken,
    #[error(transparent)]
    Jira(#[from] JiraError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("{0}")]
    Broker(String),
    /// Needs a person: retrying will not help until something changes.
    #[error("{0}")]
    Stuck(String),
    #[error("bad job payload: {0}")]
    Payload(String),
}

impl From<BrokerError> for EventError {
    fn from(error: BrokerError) -> Self {
        match error {
            BrokerError::Storage(e) => EventError::Storage(e),
            BrokerError::Jira(e) => EventError::Jira(e),
            BrokerError::Database(e) => EventError::Database(e),
            other => EventError::Broker(other.to_string()),
        }
    }
}

impl From<EventError> for JobFailure {
    fn from(error: EventError) -> Self {
        let reason = error.to_string();
        match error {
            EventError::Payload(_) => JobFailure::Fatal(reason),
            EventError::Jira(JiraError::Unavailable { retry_after, .. }) => JobFailure::Retry {
                reason,
                after: retry_after,
            },
            EventError::Storage(StorageError::Throttled { retry_after }) => JobFailure::Retry {
                reason,
                after: retry_after,
            },
            // Everything else may heal (an outage, a fixed token, an admin moving a folder
            // out of the way); dead after the configured attempts, for an admin to see.
            _ => JobFailure::Retry {
                reason,
                after: None,
            },
        }
    }
}

/// What the handlers need, shared by every worker.
pub struct Lifecycle {
    pub(crate) pool: PgPool,
    pub(crate) jira: JiraClient,
    pub(crate) token: Option<SecretString>,
    pub(crate) broker: Arc<Broker>,
    pub(crate) settings: EventsSettings,
    /// `server.public_url`, for links back to filebridge.
    pub(crate) public_url: Url,
}

impl Lifecycle {
    pub fn new(
        pool: PgPool,
        jira: JiraClient,
        token: Option<SecretString>,
        broker: Arc<Broker>,
        settings: EventsSettings,
        public_url: Url,
    ) -> Self {
        Self {
            pool,
            jira,
            token,
            broker,
            settings,
            public_url,
        }
    }

    fn token(&self) -> Result<&SecretString, EventError> {
        self.token.as_ref().ok_or(EventError::NoServiceToken)
    }

    async fn dispatch(&self, job: &Job) -> Result<(), EventError> {
        match job.kind.as_str() {
            SYNC_ISSUE => {
                let sync: SyncIssue = payload(job)?;
                folders::sync_issue(self, &sync).await
            }
            PROJECT_CHANGED => {
                let change: ProjectChanged = payload(job)?;
                project::project_changed(self, &change.project_id).await
            }
            RECONCILE => reconcile::run(self).await.map(|_| ()),
            JIRA_EVENT => self.jira_event(job).await,
            other => Err(EventError::Payload(format!("unknown job kind `{other}`"))),
        }
    }

    /// A webhook, as queued by the intake: only its ids matter (see the module comment).
    async fn jira_event(&self, job: &Job) -> Result<(), EventError> {
        use crate::jira::webhook::{EventKind, JiraEvent};
        let event: JiraEvent = payload(job)?;
        match (&event.kind, &event.issue, &event.project) {
            (EventKind::IssueCreated | EventKind::IssueUpdated, Some(issue), _) => {
                let previous = event.previous_key.clone().map(|key| Previous {
                    key,
                    project_id: event
                        .previous_project_id
                        .clone()
                        .unwrap_or_else(|| issue.project_id.clone()),
                });
                let sync = SyncIssue {
                    issue_id: issue.id.clone(),
                    deleted: false,
                    previous,
                };
                folders::sync_issue(self, &sync).await
            }
            (EventKind::IssueDeleted, Some(issue), _) => {
                let sync = SyncIssue {
                    issue_id: issue.id.clone(),
                    deleted: true,
                    previous: None,
                };
                folders::sync_issue(self, &sync).await
            }
            (EventKind::ProjectUpdated, _, Some(project)) => {
                project::project_changed(self, &project.id).await
            }
            // Created and deleted projects have no mapping yet or keep theirs (an admin
            // removes it); other events do not concern folders.
            _ => Ok(()),
        }
    }
}

fn payload<T: serde::de::DeserializeOwned>(job: &Job) -> Result<T, EventError> {
    serde_json::from_value(job.payload.clone()).map_err(|e| EventError::Payload(e.to_string()))
}

/// The job handler the workers run.
pub struct EventHandler(pub Arc<Lifecycle>);

#[async_trait::async_trait]
impl Handler for EventHandler {
    async fn run(&self, job: &Job) -> Result<(), JobFailure> {
        self.0.dispatch(job).await.map_err(|e| {
            tracing::warn!(job = job.id, kind = %job.kind, attempt = job.attempt, error = %e, "job failed");
            JobFailure::from(e)
        })
    }
}

/// The actor events are audited as.
fn actor() -> crate::audit::Actor {
    crate::audit::Actor {
        key: "system:jira-events".into(),
        name: "Jira events".into(),
    }
}
