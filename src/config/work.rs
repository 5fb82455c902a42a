//! Settings of the background work: the job queue, reconciliation with Jira, and what happens
//! to the folders of issues as Jira changes them.

use std::time::Duration;

use url::Url;

use super::layers::Layered;
use super::{ConfigError, ServerSettings};

#[derive(Debug, Clone)]
pub struct JobsSettings {
    /// Jobs worked at once by this instance.
    pub workers: usize,
    /// Attempts before a job is set aside as dead (visible to admins).
    pub max_attempts: u32,
    /// How long a claimed job stays claimed without a heartbeat; after it, another instance
    /// takes the job over (the holder was killed or cut off).
    pub lease: Duration,
    /// Upper bound of the exponential backoff between attempts.
    pub backoff_max: Duration,
}

#[derive(Debug, Clone)]
pub struct EventsSettings {
    /// Where Jira delivers webhooks; defaults to `server.public_url` + `/hooks/jira`.
    pub webhook_url: Url,
    /// Largest webhook body accepted.
    pub webhook_max_bytes: usize,
    /// Whether issues get a "Files" remote link to their folder.
    pub remote_links: bool,
    /// How often Jira is searched for changes the webhooks missed; `None` is never (on
    /// demand only).
    pub reconcile_interval: Option<Duration>,
    /// How far before the last cursor each search starts, for clock skew and Jira's index lag.
    pub reconcile_overlap: Duration,
    /// Deleted issues' folders move to `_archived` under the project root (true) or stay
    /// where they are (false). Files are never deleted.
    pub archive_deleted: bool,
}

pub(super) fn jobs(layers: &Layered) -> Result<JobsSettings, ConfigError> {
    let workers: usize = layers.required("jobs.workers")?;
    if !(1..=64).contains(&workers) {
        return Err(layers.invalid("jobs.workers", "must be between 1 and 64"));
    }
    let max_attempts: u32 = layers.required("jobs.max_attempts")?;
    if max_attempts == 0 {
        return Err(layers.invalid("jobs.max_attempts", "must be at least 1"));
    }
    let lease = layers.duration("jobs.lease")?;
    if lease < Duration::from_secs(1) {
        return Err(layers.invalid("jobs.lease", "must be at least 1s"));
    }
    let backoff_max = layers.duration("jobs.backoff_max")?;
    if backoff_max < Duration::from_secs(1) {
        return Err(layers.invalid("jobs.backoff_max", "must be at least 1s"));
    }
    Ok(JobsSettings {
        workers,
        max_attempts,
        lease,
        backoff_max,
    })
}

pub(super) fn events(
    layers: &Layered,
    server: &ServerSettings,
) -> Result<EventsSettings, ConfigError> {
    let webhook_url = match layers.string("jira.webhook_url")? {
        Some(text) => super::http_url(layers, "jira.webhook_url", &text, super::Userinfo::Refused)?,
        None => {
            let base = server.public_url.as_str().trim_end_matches('/');
            Url::parse(&format!("{base}/hooks/jira"))
                .map_err(|e| layers.invalid("server.public_url", e))?
        }
    };
    let webhook_max_bytes: usize = layers.required("jira.webhook_max_bytes")?;
    if webhook_max_bytes < 1024 {
        return Err(layers.invalid("jira.webhook_max_bytes", "must be at least 1024"));
    }
    let interval = layers.duration("reconcile.interval")?;
    let reconcile_interval = match interval {
        d if d.is_zero() => None,
        d if d < Duration::from_secs(10) => {
            return Err(layers.invalid("reconcile.interval", "must be 0 (off) or at least 10s"));
        }
        d => Some(d),
    };
    Ok(EventsSettings {
        webhook_url,
        webhook_max_bytes,
        remote_links: layers.required("jira.remote_links")?,
        reconcile_interval,
        reconcile_overlap: layers.duration("reconcile.overlap")?,
        archive_deleted: layers.required("folders.archive_deleted")?,
    })
}
