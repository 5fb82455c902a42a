//! systemd's notification protocol for the `Type=notify` unit (sd_notify(3)).
//!
//! - `READY=1` once the listener is bound and the database has answered. With migrations
//!   applied at start it has answered already; with `serve --no-migrate` and the database
//!   away, systemd keeps the unit in "activating" (so `After=filebridge.service` waits) while
//!   this retries.
//! - `STATUS=` lines for `systemctl status`: what the daemon waits for, where it listens.
//! - `STOPPING=1` as soon as a stop signal arrives, not after the requests in flight finish.
//! - `WATCHDOG=1` every half `WatchdogSec=`, from a task on the async runtime: if the
//!   runtime wedges the pings stop and systemd restarts the service.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd) nothing is sent and no task runs, so the
//! daemon behaves the same under any other supervisor and in tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;
use sqlx::PgPool;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

use crate::db::{self, DbError, SchemaStatus};

/// Pause between two readiness checks while the database is away. Each check is itself
/// bounded by `database.acquire_timeout`.
const RETRY: Duration = Duration::from_secs(1);

pub struct Notifier {
    enabled: bool,
    /// STOPPING=1 is sent once: by the signal task, or after the server stopped otherwise.
    stopping_sent: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Notifier {
    /// Starts the watchdog and the stop-signal tasks when systemd asked for notifications.
    /// Call it inside the runtime, before anything slow (migrations), so the watchdog is fed
    /// from the start.
    pub fn start(shutdown_grace: Duration) -> Self {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let stopping_sent = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        if enabled {
            // WATCHDOG_PID (when set) must be ours: watchdog_enabled checks it.
            if let Some(period) = sd_notify::watchdog_enabled()
                .map(|timeout| timeout / 2)
                .filter(|period| !period.is_zero())
            {
                tasks.push(tokio::spawn(watchdog(period)));
            }
            tasks.push(tokio::spawn(stopping_on_signal(
                Arc::clone(&stopping_sent),
                shutdown_grace,
            )));
        }
        Self {
            enabled,
            stopping_sent,
            tasks,
        }
    }

    pub fn status(&self, text: &str) {
        if self.enabled {
            send(&[NotifyState::Status(text)]);
        }
    }

    /// Sends READY=1 (with a STATUS line naming `address`) once the database answers,
    /// retrying until it does; the server is already bound and accepting.
    pub fn ready_when_database_answers(&mut self, pool: PgPool, address: SocketAddr) {
        if self.enabled {
            self.tasks
                .push(tokio::spawn(ready_when_answering(pool, address)));
        }
    }

    /// The server has stopped: says so if no signal did, and ends the tasks.
    pub fn stopped(self) {
        if self.enabled && !self.stopping_sent.swap(true, Ordering::SeqCst) {
            send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
        }
        for task in self.tasks {
            task.abort();
        }
    }
}

fn send(states: &[NotifyState]) {
    // Not fatal: a service manager that went away cannot be helped by stopping the daemon.
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

async fn watchdog(period: Duration) {
    let mut ticks = tokio::time::interval(period);
    // After a stall, ping once and keep the period rather than bursting to catch up.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        send(&[NotifyState::Watchdog]);
    }
}

/// actix-web stops on these signals itself (SIGQUIT without waiting); tokio delivers each
/// signal to every listener, so this one only adds the notification.
async fn stopping_on_signal(stopping_sent: Arc<AtomicBool>, grace: Duration) {
    let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::quit()),
    ) else {
        tracing::warn!("cannot listen for stop signals; systemd learns of the stop at exit");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = quit.recv() => {}
    }
    if !stopping_sent.swap(true, Ordering::SeqCst) {
        let status = format!(
            "stopping: finishing the requests and jobs in flight (up to {}s each)",
            grace.as_secs()
        );
        send(&[NotifyState::Stopping, NotifyState::Status(&status)]);
    }
}

async fn ready_when_answering(pool: PgPool, address: SocketAddr) {
    let mut waited = false;
    let status = loop {
        match db::schema_status(&pool).await {
            Ok(status) => break Ok(status),
            Err(e @ (DbError::Unreachable(_) | DbError::Timeout(_))) => {
                if !waited {
                    tracing::warn!(error = %e, "waiting for the database before reporting ready");
                }
                waited = true;
                send(&[NotifyState::Status(&format!(
                    "listening on {address}; waiting for the database: {e}"
                ))]);
                tokio::time::sleep(RETRY).await;
            }
            // The database answered, with a schema this binary will not serve: ready in
            // systemd's sense (the process works), not ready for traffic (/readyz says 503).
            Err(e) => break Err(e),
        }
    };
    if waited {
        tracing::info!("the database answers");
    }
    let detail = match status {
        Ok(SchemaStatus::Current { version }) => format!("database schema {version}"),
        Ok(SchemaStatus::Pending { .. }) => {
            "database migrations pending: run filebridge migrate (/readyz answers 503)".into()
        }
        Ok(SchemaStatus::Newer { database, binary }) => format!(
            "database schema {database} is newer than this binary ({binary}); /readyz answers 503"
        ),
        Err(e) => format!("{e}; /readyz answers 503"),
    };
    send(&[
        NotifyState::Ready,
        NotifyState::Status(&format!("ready: listening on {address}; {detail}")),
    ]);
}
