//! Keeps every instance's caches of connections and mappings in step with Postgres.
//!
//! filebridge keeps no state on its node, so admins run one instance per Jira node behind
//! one load balancer. A change saved through any instance (or by a job) fires a trigger
//! (migration `config_notify`) that announces `connection:<id>` or `mapping:<project id>`
//! on [`CHANNEL`] at commit; each instance listens and drops its copy. While the listener
//! is disconnected, announcements are lost, so on every (re)connection everything cached is
//! dropped; the caches' time limit bounds what a missed announcement could cost.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use uuid::Uuid;

use super::Broker;

pub const CHANNEL: &str = "filebridge_config";

/// What an announcement names.
#[derive(Debug, PartialEq, Eq)]
enum Changed {
    Connection(Uuid),
    Mapping(String),
}

fn parse(payload: &str) -> Option<Changed> {
    match payload.split_once(':')? {
        ("connection", id) => id.parse().ok().map(Changed::Connection),
        ("mapping", project_id) if !project_id.is_empty() => {
            Some(Changed::Mapping(project_id.to_string()))
        }
        _ => None,
    }
}

/// Listens until the task is aborted, reconnecting with a growing pause (1 s to 30 s) when
/// Postgres is away.
pub async fn follow(pool: PgPool, broker: Arc<Broker>) {
    let pool = crate::db::listener_pool(&pool);
    let mut pause = Duration::from_secs(1);
    loop {
        match listen(&pool).await {
            Ok(mut listener) => {
                // Whatever changed while nobody listened is unknown: start afresh.
                broker.forget_configuration();
                pause = Duration::from_secs(1);
                tracing::debug!(channel = CHANNEL, "following configuration changes");
                receive(&mut listener, &broker).await;
                broker.forget_configuration();
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?pause, "cannot listen for configuration changes");
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Applies announcements until the connection is lost.
async fn receive(listener: &mut PgListener, broker: &Broker) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => match parse(notification.payload()) {
                Some(Changed::Connection(id)) => broker.forget_connection(id).await,
                Some(Changed::Mapping(project_id)) => broker.forget_mapping(&project_id).await,
                None => {
                    tracing::warn!(
                        payload = notification.payload(),
                        "unknown configuration change announced; forgetting everything"
                    );
                    broker.forget_configuration();
                }
            },
            Ok(None) => {
                tracing::warn!("lost the connection that follows configuration changes");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "following configuration changes failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_are_read() {
        let id = Uuid::new_v4();
        assert_eq!(
            parse(&format!("connection:{id}")),
            Some(Changed::Connection(id))
        );
        assert_eq!(
            parse("mapping:10000"),
            Some(Changed::Mapping("10000".into()))
        );
        assert_eq!(parse("connection:not-a-uuid"), None);
        assert_eq!(parse("mapping:"), None);
        assert_eq!(parse("settings:x"), None);
        assert_eq!(parse("garbage"), None);
    }
}
